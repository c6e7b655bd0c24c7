//! A generation: one loaded configuration with its routes, TLS acceptor,
//! user and listening socket. The first generation and every reload are
//! made by [`Generation::new`] from the same [`AppLoader`] path; only the
//! listening socket may be carried over from the generation before.

use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;

use log::{info, warn};

use crate::app::{App, AppLoader};
use crate::config::Config;
use crate::error::Error;
use crate::inherit::Inherited;
use crate::privileges::Ids;

/// Everything a generation's workers need.
pub(super) struct Generation {
    /// 1 for the first, one more for each reload.
    pub number: u64,
    pub config: Rc<Config>,
    pub app: Rc<App>,
    pub tls: Option<crate::tls::Acceptor>,
    pub ids: Option<Ids>,
    /// `None` only in a forked worker, which has taken it.
    pub listener: Option<Rc<TcpListener>>,
    /// The address the listener is bound to (the chosen port for port 0).
    pub addr: SocketAddr,
}

impl Generation {
    /// Loads the first generation (`previous` is `None`) or the one after
    /// `previous` (re-reading the configuration file). The listening
    /// socket is bound anew only when `listen` changed; the first
    /// generation takes it from `inherited` when sockets were passed.
    pub fn new(
        loader: &AppLoader,
        previous: Option<&Generation>,
        inherited: Option<&mut Inherited>,
    ) -> Result<Generation, Error> {
        let mut loaded = match previous {
            None => loader.load()?,
            Some(_) => loader.reload()?,
        };
        let (listener, addr) = match previous {
            Some(p) if p.listens_as(&loaded.config) => (p.listener.clone(), p.addr),
            None if inherited.is_some() => {
                let l = inherited
                    .map(|i| i.take(&loaded.config))
                    .transpose()?
                    .ok_or_else(|| Error::Runtime("no inherited socket".into()))?;
                let addr = l
                    .local_addr()
                    .map_err(|e| Error::runtime("local_addr", e))?;
                (Some(Rc::new(l)), addr)
            }
            _ => {
                let l = bind(loaded.config.server.listen)?;
                let addr = l
                    .local_addr()
                    .map_err(|e| Error::runtime("local_addr", e))?;
                if previous.is_some() {
                    info!("master pid {} listening on {addr}", std::process::id());
                }
                (Some(Rc::new(l)), addr)
            }
        };
        if let Some(p) = previous {
            if loaded.config.server.pid_file != p.config.server.pid_file {
                warn!("pid_file changes take effect at the next restart, not at a reload");
            }
            loaded
                .config
                .server
                .pid_file
                .clone_from(&p.config.server.pid_file);
            // What --check and the start test, a reload tests too (the
            // address only if it changed: a kept socket needs no bind).
            let host = crate::preflight::check(&loaded.config, !p.listens_as(&loaded.config));
            if let Some(e) = crate::config::ConfigError::join(host) {
                return Err(e.into());
            }
        }
        Ok(Generation {
            number: previous.map_or(1, |p| p.number + 1),
            config: Rc::new(loaded.config),
            app: Rc::new(loaded.app),
            tls: loaded.tls,
            ids: loaded.ids,
            listener,
            addr,
        })
    }

    /// Whether `config` listens where this generation does: unchanged
    /// text, or the address the listener is bound to (a config that said
    /// port 0 and now names the port chosen).
    fn listens_as(&self, config: &Config) -> bool {
        config.server.listen == self.config.server.listen || config.server.listen == self.addr
    }
}

/// Binds `addr` with `SO_REUSEADDR` and a deep backlog, non-blocking.
fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    use nix::sys::socket::{
        bind as nix_bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag,
        SockType, SockaddrStorage,
    };
    let family = if addr.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let fail =
        |what: &str, e: nix::Error| Error::Runtime(crate::preflight::listen_failed(addr, what, e));
    let fd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|e| fail("socket", e))?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(|e| fail("SO_REUSEADDR", e))?;
    nix_bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(addr),
    )
    .map_err(|e| fail("bind", e))?;
    let backlog = Backlog::new(4096).unwrap_or(Backlog::MAXCONN);
    listen(&fd, backlog).map_err(|e| fail("listen", e))?;
    Ok(TcpListener::from(fd))
}
