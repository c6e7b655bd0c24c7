//! The application the daemon runs: where its configuration comes from,
//! the handlers registered in code, and the one way a generation's
//! configuration, routes, TLS acceptor and user are loaded, for the first
//! generation and for every reload alike.
//!
//! [`AppLoader`] is what the master holds; [`Loaded`] is one generation's
//! validated pieces; [`App`] is the route table the workers serve.

use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;

use crate::config::{Compression, Config, ConfigError, ExecConfig};
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
    /// The route's subprotocols, in the server's order of preference.
    pub subprotocols: Vec<String>,
    /// Refuse (400) a client that offers none of `subprotocols`.
    pub subprotocol_required: bool,
    /// For an `exec` route: its program; messages go to the program, not
    /// to the handler.
    pub exec: Option<Rc<ExecConfig>>,
    /// Whether the route accepts permessage-deflate offers.
    pub compression: bool,
    /// The route runs the built-in `echo` (not a handler registered in
    /// code under that name): the worker echoes without calling it.
    pub builtin_echo: bool,
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
    pub tls: Option<crate::tls::Acceptor>,
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

    /// Validates the configuration read at start as [`load`](Self::load)
    /// does, and checks it against this host (see [`crate::preflight`]),
    /// collecting every problem instead of stopping at the first.
    pub fn check(&self) -> Result<(), Error> {
        self.check_for_start(false)
    }

    /// As [`check`](Self::check); with `listen_inherited` (systemd or an
    /// old master passed the socket) the address is not test-bound.
    pub fn check_for_start(&self, listen_inherited: bool) -> Result<(), Error> {
        let config = &self.config;
        let mut errors = Vec::new();
        errors.extend(self.build_app(config).err());
        if let Some(tls) = &config.tls {
            errors.extend(crate::tls::load_acceptor(tls, &config.source).err());
        }
        errors.extend(privileges::resolve(config).err());
        errors.extend(crate::preflight::check(config, !listen_inherited));
        match ConfigError::join(errors) {
            None => Ok(()),
            Some(e) => Err(e.into()),
        }
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
    /// routes; every error names its key, and every bad route is
    /// reported, not only the first.
    fn build_app(&self, config: &Config) -> Result<App, ConfigError> {
        let file = &config.source;
        let mut routes = RouteTable::default();
        let mut errors = Vec::new();
        let default_max = config.server.max_message_size;
        for (i, r) in config.routes.iter().enumerate() {
            let key = format!("routes[{i}]");
            let exec = r.exec.clone().map(Rc::new);
            let factory = match exec {
                Some(_) => Some(exec_handler()),
                None => self.factory(&r.handler, r.echo_self),
            };
            if factory.is_none() {
                errors.push(ConfigError::new(
                    file,
                    format!("{key}.handler"),
                    format!(
                        "unknown handler \"{}\": use one of {}",
                        r.handler,
                        self.handler_names().join(", ")
                    ),
                ));
            }
            let template = match Template::parse(&r.path) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(ConfigError::new(file, format!("{key}.path"), e.to_string()));
                    continue;
                }
            };
            let Some(factory) = factory else { continue };
            let builtin_echo =
                exec.is_none() && r.handler == "echo" && !self.named.contains_key("echo");
            let entry = RouteEntry {
                factory,
                builtin_echo,
                max_message_size: r.max_message_size.unwrap_or(default_max),
                subprotocols: r.subprotocols.clone(),
                subprotocol_required: r.subprotocol_required,
                exec,
                compression: r.compression(&config.server) == Compression::Deflate,
            };
            if let Err(e) = routes.add(template, entry) {
                errors.push(ConfigError::new(file, format!("{key}.path"), e.to_string()));
            }
        }
        for (path, factory) in &self.code_routes {
            let key = format!("route(\"{path}\")");
            let entry = RouteEntry {
                factory: factory.clone(),
                max_message_size: default_max,
                subprotocols: Vec::new(),
                subprotocol_required: false,
                exec: None,
                compression: config.server.compression == Compression::Deflate,
                builtin_echo: false,
            };
            let added = Template::parse(path)
                .map_err(|e| e.to_string())
                .and_then(|t| routes.add(t, entry).map_err(|e| e.to_string()));
            if let Err(e) = added {
                errors.push(ConfigError::new(file, &key, e));
            }
        }
        if routes.is_empty() && errors.is_empty() {
            errors.push(ConfigError::new(
                file,
                "routes",
                "no routes: add at least one [[routes]] table with a path and a handler",
            ));
        }
        match ConfigError::join(errors) {
            None => Ok(App { routes }),
            Some(e) => Err(e),
        }
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

/// The handler of an `exec` route: the worker hands the route's messages
/// to its program, so this only answers what a handler must (pings are
/// answered by the session before the handler is called).
struct ExecDelegated;

impl handler::Handler for ExecDelegated {
    fn on_message(
        &mut self,
        _conn: &mut handler::Conn<'_>,
        _message: crate::message::Message,
    ) -> handler::HandlerResult {
        Ok(())
    }
}

/// The handler factory of `exec` routes (see `ExecDelegated`).
fn exec_handler() -> HandlerFactory {
    Rc::new(|| Box::new(ExecDelegated) as Box<dyn handler::Handler>)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn every_bad_route_is_reported() {
        let text = "[[routes]]\npath = \"/a\"\nhandler = \"nope\"\n\n\
                    [[routes]]\npath = \"no-slash\"\nhandler = \"echo\"\n\n\
                    [[routes]]\npath = \"/ok\"\nhandler = \"echo\"\n\n\
                    [[routes]]\npath = \"/ok\"\nhandler = \"echo\"\n";
        let config = Config::from_str(text, Path::new("w.toml")).unwrap();
        let loader = AppLoader::new(None, config.clone());
        let Err(e) = loader.build_app(&config) else {
            panic!("bad routes accepted");
        };
        let keys: Vec<&str> = e.all().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            ["routes[0].handler", "routes[1].path", "routes[3].path"]
        );
    }
}
