//! The embedding API: a [`Server`] is a configuration plus the handlers a
//! program registers; [`Server::run`] runs it as the pre-fork daemon, with
//! exactly the master, worker and signal behaviour of the `wssd` binary.
//!
//! It is a thin layer over the crate's `app` module, which the master loads each
//! generation from.
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

use std::path::Path;
use std::rc::Rc;

use crate::app::AppLoader;
use crate::config::Config;
use crate::error::Error;
use crate::handler::{Handler, HandlerFactory};

/// A daemon to run: its configuration and the handlers of its routes.
pub struct Server {
    loader: AppLoader,
}

impl Server {
    /// Reads the configuration file; SIGHUP re-reads it.
    ///
    /// # Errors
    /// [`Error::Config`] when the file cannot be read or is invalid.
    pub fn from_config_file(path: impl AsRef<Path>) -> Result<Server, Error> {
        let path = path.as_ref().to_path_buf();
        let config = Config::from_file(&path)?;
        Ok(Server {
            loader: AppLoader::new(Some(path), config),
        })
    }

    /// Uses a configuration built in code; SIGHUP then keeps it as it is.
    #[must_use]
    pub fn from_config(config: Config) -> Server {
        Server {
            loader: AppLoader::new(None, config),
        }
    }

    /// Serves `template` (e.g. `/chat/{room}`) with handlers made by
    /// `factory`, once in each worker process.
    #[must_use]
    pub fn route<H, F>(mut self, template: &str, factory: F) -> Server
    where
        H: Handler + 'static,
        F: Fn() -> H + 'static,
    {
        self.loader.add_route(template, boxed(factory));
        self
    }

    /// Registers a handler under `name`, so that `[[routes]]` in the file
    /// can use `handler = "name"`.
    #[must_use]
    pub fn handler<H, F>(mut self, name: &str, factory: F) -> Server
    where
        H: Handler + 'static,
        F: Fn() -> H + 'static,
    {
        self.loader.add_handler(name, boxed(factory));
        self
    }

    /// The configuration in force.
    #[must_use]
    pub fn config(&self) -> &Config {
        self.loader.config()
    }

    /// Validates everything `run` would need, on this host too (the
    /// listen address can be bound, the pid file's directory is
    /// writable); `Ok` means it would start.
    ///
    /// # Errors
    /// [`Error::Config`] naming the file, key and reason of every problem
    /// found, not only the first.
    pub fn check(&self) -> Result<(), Error> {
        self.loader.check()
    }

    /// Runs the daemon until SIGTERM or SIGINT has drained it. Sets up
    /// logging from `[log]` unless the program already did.
    ///
    /// # Errors
    /// [`Error::Config`] for an unusable configuration,
    /// [`Error::Runtime`] when binding, forking or polling fails.
    pub fn run(self) -> Result<(), Error> {
        let config = self.loader.config();
        crate::logging::init(&config.log, &config.source)?;
        let inherited = crate::inherit::Inherited::from_env()?;
        self.loader.check_for_start(inherited.is_some())?;
        crate::master::run(self.loader, inherited)
    }
}

/// A factory for boxed handlers, as the route table keeps them.
fn boxed<H, F>(factory: F) -> HandlerFactory
where
    H: Handler + 'static,
    F: Fn() -> H + 'static,
{
    Rc::new(move || Box::new(factory()) as Box<dyn Handler>)
}
