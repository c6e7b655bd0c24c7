//! The embedding API: a [`Server`] is a configuration plus the handlers a
//! program registers; [`Server::run`] runs it as the pre-fork daemon, with
//! exactly the master, worker and signal behaviour of the `wssd` binary.
//!
//! ```no_run
//! use wssd::{Conn, Handler, HandlerResult, Message, Server};
//!
//! struct Shout;
//! impl Handler for Shout {
//!     fn on_message(&mut self, conn: &mut Conn<'_>, msg: Message) -> HandlerResult {
//!         conn.send_text(msg.to_text()?.to_uppercase());
//!         Ok(())
//!     }
//! }
//!
//! fn main() -> Result<(), wssd::Error> {
//!     Server::from_config_file("config/wssd.toml")?
//!         .route("/shout", || Shout)
//!         .run()
//! }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::{Config, ConfigError};
use crate::handler::{self, Handler, HandlerFactory};
use crate::route::{RouteTable, Template};

/// What a route leads to, in one generation.
pub(crate) struct RouteEntry {
    /// Makes the route's handler in each worker.
    pub factory: HandlerFactory,
    /// The route's message size limit.
    pub max_message_size: usize,
    /// For an `exec` route: its program; messages go to the program, not
    /// to the handler.
    pub exec: Option<Rc<crate::config::ExecConfig>>,
}

/// The routes of one generation, validated.
pub(crate) struct App {
    /// Route templates and their handlers.
    pub routes: RouteTable<RouteEntry>,
}

/// Why the daemon could not run.
#[derive(Debug)]
pub enum Error {
    /// The configuration is unusable (exit status 2).
    Config(ConfigError),
    /// Something at run time failed, e.g. binding the address (status 1).
    Runtime(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => write!(f, "configuration error: {e}"),
            Error::Runtime(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for Error {}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

impl Error {
    /// The process exit status for this error.
    pub fn exit_status(&self) -> i32 {
        match self {
            Error::Config(_) => 2,
            Error::Runtime(_) => 1,
        }
    }
}

/// A daemon to run: its configuration and the handlers of its routes.
pub struct Server {
    /// Re-read on SIGHUP; `None` for a server built from a `Config` value.
    pub(crate) config_path: Option<PathBuf>,
    pub(crate) config: Config,
    /// Routes registered in code: template and factory.
    code_routes: Vec<(String, HandlerFactory)>,
    /// Handlers registered by name, usable as `handler = "name"` in the file.
    named: HashMap<String, HandlerFactory>,
}

impl Server {
    /// Reads the configuration file; SIGHUP re-reads it.
    pub fn from_config_file(path: impl AsRef<Path>) -> Result<Server, Error> {
        let path = path.as_ref().to_path_buf();
        let config = Config::from_file(&path)?;
        Ok(Server {
            config_path: Some(path),
            config,
            code_routes: Vec::new(),
            named: HashMap::new(),
        })
    }

    /// Uses a configuration built in code; SIGHUP then keeps it as it is.
    pub fn from_config(config: Config) -> Server {
        Server {
            config_path: None,
            config,
            code_routes: Vec::new(),
            named: HashMap::new(),
        }
    }

    /// Serves `template` (e.g. `/chat/{room}`) with handlers made by
    /// `factory`, once in each worker process.
    pub fn route<H, F>(mut self, template: &str, factory: F) -> Server
    where
        H: Handler + 'static,
        F: Fn() -> H + 'static,
    {
        let f: HandlerFactory = Rc::new(move || Box::new(factory()) as Box<dyn Handler>);
        self.code_routes.push((template.to_string(), f));
        self
    }

    /// Registers a handler under `name`, so that `[[routes]]` in the file
    /// can use `handler = "name"`.
    pub fn handler<H, F>(mut self, name: &str, factory: F) -> Server
    where
        H: Handler + 'static,
        F: Fn() -> H + 'static,
    {
        let f: HandlerFactory = Rc::new(move || Box::new(factory()) as Box<dyn Handler>);
        self.named.insert(name.to_string(), f);
        self
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Validates everything `run` would need; `Ok` means it would start.
    pub fn check(&self) -> Result<(), Error> {
        self.build_app(&self.config)?;
        if let Some(tls) = &self.config.tls {
            crate::tls::load_acceptor(tls, &self.config.source)?;
        }
        crate::privileges::resolve(&self.config)?;
        Ok(())
    }

    /// Runs the daemon until SIGTERM or SIGINT has drained it. Sets up
    /// logging from `[log]` unless the program already did.
    pub fn run(self) -> Result<(), Error> {
        init_logging(&self.config.log.level);
        self.check()?;
        crate::master::run(self)
    }

    /// Re-reads the configuration file for a reload.
    pub(crate) fn reread(&self) -> Result<Config, ConfigError> {
        match &self.config_path {
            Some(p) => Config::from_file(p),
            None => Ok(self.config.clone()),
        }
    }

    /// Builds the route table for `config`: file routes first, then code
    /// routes; every error names its key.
    pub(crate) fn build_app(&self, config: &Config) -> Result<App, ConfigError> {
        let file = &config.source;
        let mut routes = RouteTable::default();
        let default_max = config.server.max_message_size;
        for (i, r) in config.routes.iter().enumerate() {
            let key = format!("routes[{i}]");
            let exec = r.exec.clone().map(Rc::new);
            let factory = exec
                .as_ref()
                .map(|_| crate::exec::handler_factory())
                .or_else(|| self.named.get(&r.handler).cloned())
                .or_else(|| handler::builtin(&r.handler, r.echo_self))
                .ok_or_else(|| {
                    let mut names: Vec<&str> = handler::BUILTIN_NAMES.to_vec();
                    names.extend(self.named.keys().map(String::as_str));
                    ConfigError::new(
                        file,
                        format!("{key}.handler"),
                        format!(
                            "unknown handler \"{}\": use one of {}",
                            r.handler,
                            names.join(", ")
                        ),
                    )
                })?;
            let template = Template::parse(&r.path)
                .map_err(|e| ConfigError::new(file, format!("{key}.path"), e.to_string()))?;
            let entry = RouteEntry {
                factory,
                max_message_size: r.max_message_size.unwrap_or(default_max),
                exec,
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
                exec: None,
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
}

/// Which process is logging: 0 for the master, `k + 1` for worker `k`.
static ROLE: AtomicUsize = AtomicUsize::new(0);

/// Marks this process as worker `index` in log lines.
pub(crate) fn set_worker_role(index: usize) {
    ROLE.store(index + 1, Ordering::Relaxed);
}

/// Sets up logging: `RUST_LOG` wins over `[log] level`.
pub fn init_logging(level: &str) {
    let mut builder = env_logger::Builder::new();
    builder.parse_filters(level);
    if let Ok(env) = std::env::var("RUST_LOG") {
        builder.parse_filters(&env);
    }
    builder.format(|buf, record| {
        let role = match ROLE.load(Ordering::Relaxed) {
            0 => "master".to_string(),
            k => format!("worker {}", k - 1),
        };
        writeln!(
            buf,
            "{} {:<5} wssd[{} {}]: {}",
            buf.timestamp_millis(),
            record.level(),
            std::process::id(),
            role,
            record.args()
        )
    });
    let _ = builder.try_init();
}

/// Entry point of the `wssd` binary: runs (or with `check`, validates) the
/// daemon configured by `config`; returns the exit status.
pub fn run_binary(config: &Path, check: bool) -> i32 {
    let server = match Server::from_config_file(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wssd: {e}");
            return e.exit_status();
        }
    };
    if check {
        return match server.check() {
            Ok(()) => {
                println!("wssd: configuration {} is valid", config.display());
                0
            }
            Err(e) => {
                eprintln!("wssd: {e}");
                e.exit_status()
            }
        };
    }
    match server.run() {
        Ok(()) => 0,
        Err(e) => {
            log::error!("{e}");
            eprintln!("wssd: {e}");
            e.exit_status()
        }
    }
}
