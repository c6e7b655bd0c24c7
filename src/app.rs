//! The application the daemon runs: where its configuration comes from,
//! the handlers registered in code, and the one way a generation's
//! configuration, routes, TLS acceptor and user are loaded, for the first
//! generation and for every reload alike.
//!
//! [`AppLoader`] is what the master holds; [`Loaded`] is one generation's
//! validated pieces; [`App`] is the route table the workers serve.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::config::{Compression, Config, ConfigError};
use crate::error::Error;
use crate::handler::{self, HandlerFactory};
use crate::privileges::{self, Ids};
use crate::route::{RouteTable, Template};

/// What a route leads to, in one generation.
pub(crate) struct RouteEntry {
    /// Makes the route's handler in each worker.
    pub factory: HandlerFactory,
    /// The route's message size limit.
    pub max_message_size: usize,
    /// Whether the route accepts permessage-deflate offers.
    pub compression: bool,
}

/// The routes of one generation, validated.
pub(crate) struct App {
    /// Route templates and their handlers.
    pub routes: RouteTable<RouteEntry>,
}

/// One generation, loaded and validated, before anything is bound.
pub(crate) struct Loaded {
    /// The configuration it was loaded from.
    pub config: Config,
    /// Its routes.
    pub app: App,
    /// The TLS acceptor, when `[tls]` is configured.
    pub tls: Option<native_tls::TlsAcceptor>,
    /// The user and group workers switch to, when configured.
    pub ids: Option<Ids>,
}

/// The configuration source and the handlers registered in code.
pub(crate) struct AppLoader {
    /// Re-read on reload; `None` for a configuration built in code.
    config_path: Option<PathBuf>,
    /// The configuration read at start (or given in code).
    config: Config,
    /// Routes registered in code: template and factory.
    code_routes: Vec<(String, HandlerFactory)>,
    /// Handlers registered by name, usable as `handler = "name"` in the file.
    named: HashMap<String, HandlerFactory>,
}

impl AppLoader {
    /// A loader for `config`, re-read from `config_path` on reload if given.
    pub fn new(config_path: Option<PathBuf>, config: Config) -> AppLoader {
        AppLoader {
            config_path,
            config,
            code_routes: Vec::new(),
            named: HashMap::new(),
        }
    }

    /// The configuration read at start.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Serves `template` with handlers made by `factory`.
    pub fn add_route(&mut self, template: &str, factory: HandlerFactory) {
        self.code_routes.push((template.to_string(), factory));
    }

    /// Makes `factory` usable as `handler = "name"`.
    pub fn add_handler(&mut self, name: &str, factory: HandlerFactory) {
        self.named.insert(name.to_string(), factory);
    }

    /// Loads the first generation, from the configuration read at start.
    pub fn load(&self) -> Result<Loaded, Error> {
        self.load_from(self.config.clone())
    }

    /// Loads the next generation: re-reads the file (a configuration
    /// given in code stays as it is), then as [`load`](Self::load).
    pub fn reload(&self) -> Result<Loaded, Error> {
        let config = match &self.config_path {
            Some(p) => Config::from_file(p)?,
            None => self.config.clone(),
        };
        self.load_from(config)
    }

    /// Validates `config` into a generation: routes, TLS, user and group.
    fn load_from(&self, config: Config) -> Result<Loaded, Error> {
        let app = self.build_app(&config)?;
        let tls = match &config.tls {
            Some(t) => Some(crate::tls::load_acceptor(t, &config.source)?),
            None => None,
        };
        let ids = privileges::resolve(&config)?;
        Ok(Loaded {
            config,
            app,
            tls,
            ids,
        })
    }

    /// Builds the route table for `config`: file routes first, then code
    /// routes; every error names its key.
    fn build_app(&self, config: &Config) -> Result<App, ConfigError> {
        let file = &config.source;
        let mut routes = RouteTable::default();
        let default_max = config.server.max_message_size;
        for (i, r) in config.routes.iter().enumerate() {
            let key = format!("routes[{i}]");
            let factory = self.factory(&r.handler, r.echo_self).ok_or_else(|| {
                ConfigError::new(
                    file,
                    format!("{key}.handler"),
                    format!(
                        "unknown handler \"{}\": use one of {}",
                        r.handler,
                        self.handler_names().join(", ")
                    ),
                )
            })?;
            let template = Template::parse(&r.path)
                .map_err(|e| ConfigError::new(file, format!("{key}.path"), e.to_string()))?;
            let entry = RouteEntry {
                factory,
                max_message_size: r.max_message_size.unwrap_or(default_max),
                compression: r.compression(&config.server) == Compression::Deflate,
            };
            routes
                .add(template, entry)
                .map_err(|e| ConfigError::new(file, format!("{key}.path"), e.to_string()))?;
        }
        for (path, factory) in &self.code_routes {
            let key = format!("route(\"{path}\")");
            let template =
                Template::parse(path).map_err(|e| ConfigError::new(file, &key, e.to_string()))?;
            let entry = RouteEntry {
                factory: factory.clone(),
                max_message_size: default_max,
                compression: config.server.compression == Compression::Deflate,
            };
            routes
                .add(template, entry)
                .map_err(|e| ConfigError::new(file, &key, e.to_string()))?;
        }
        if routes.is_empty() {
            return Err(ConfigError::new(
                file,
                "routes",
                "no routes: add at least one [[routes]] table with a path and a handler",
            ));
        }
        Ok(App { routes })
    }

    /// The factory `handler = "name"` names: registered in code, or built in.
    fn factory(&self, name: &str, echo_self: bool) -> Option<HandlerFactory> {
        self.named
            .get(name)
            .cloned()
            .or_else(|| handler::builtin(name, echo_self))
    }

    /// Every name `handler = ...` accepts, for error messages.
    fn handler_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = handler::BUILTIN_NAMES.to_vec();
        names.extend(self.named.keys().map(String::as_str));
        names
    }
}
