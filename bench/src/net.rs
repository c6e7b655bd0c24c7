//! Operating-system plumbing: non-blocking sockets bound to a chosen source
//! address, the open-file limit and the ephemeral port range.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;

use mio::net::TcpStream;
use nix::errno::Errno;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6};

/// Starts a non-blocking connect to `dest`, first binding the socket to
/// `source` (port chosen at connect time) when given.
pub fn connect(dest: SocketAddr, source: Option<Ipv4Addr>) -> io::Result<TcpStream> {
    let family = match dest {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    let fd = socket::socket(family, SockType::Stream, flags, None)?;
    if let Some(ip) = source {
        // Lets many sockets share a source port as long as the 4-tuple
        // differs; best effort (the bind works without it).
        let _ = socket::setsockopt(&fd, sockopt::IpBindAddressNoPort, &true);
        socket::bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(ip, 0)))?;
    }
    let result = match dest {
        SocketAddr::V4(v4) => socket::connect(fd.as_raw_fd(), &SockaddrIn::from(v4)),
        SocketAddr::V6(v6) => socket::connect(fd.as_raw_fd(), &SockaddrIn6::from(v6)),
    };
    match result {
        Ok(()) | Err(Errno::EINPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    let stream = TcpStream::from_std(std::net::TcpStream::from(fd));
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Whether a connect started by [`connect`] has completed: `Ok(true)` when
/// connected, `Ok(false)` while in progress, the error if it failed.
pub fn connect_done(stream: &TcpStream) -> io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc_einprogress()) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `EINPROGRESS` as a raw OS error number.
fn libc_einprogress() -> i32 {
    Errno::EINPROGRESS as i32
}

/// File descriptors kept free for everything but connections.
pub const FD_RESERVE: u64 = 64;

/// Raises the soft open-file limit to the hard limit; returns the new soft
/// limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard)
}

/// Number of ephemeral ports per source address (from
/// `/proc/sys/net/ipv4/ip_local_port_range`, 28,232 if unreadable).
pub fn ephemeral_ports() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(str::parse::<u32>);
            match (it.next(), it.next()) {
                (Some(Ok(lo)), Some(Ok(hi))) if hi >= lo => Some(hi - lo + 1),
                _ => None,
            }
        })
        .unwrap_or(28_232)
}

/// The source address of connection `index` when spreading over `count`
/// loopback addresses 127.0.0.2, 127.0.0.3, ...; `None` when `count` is 0.
pub fn source_addr(index: u32, count: u32) -> Option<Ipv4Addr> {
    if count == 0 {
        return None;
    }
    let n = 2 + index % count;
    let [_, b, c, d] = n.to_be_bytes();
    Some(Ipv4Addr::new(127, b, c, d))
}
