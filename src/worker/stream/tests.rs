//! A `wss://` stream closing behind a full socket, against OpenSSL as the
//! client over a real loopback connection.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use nix::sys::socket::{setsockopt, sockopt};
use openssl::ssl::{ShutdownState, SslConnector, SslMethod, SslVerifyMode};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{Stream, Transport};
use crate::worker::socket::ReadAhead;
use crate::worker::tls::Tls;

/// How long any step may take on a slow, loaded machine; only a broken
/// test waits this long.
const DEADLINE: Duration = Duration::from_secs(60);

/// A server configuration with a fresh self-signed P-256 certificate.
fn acceptor() -> crate::tls::Acceptor {
    use openssl::{asn1::Asn1Time, ec, hash::MessageDigest, nid::Nid, pkey::PKey, x509};
    let group = ec::EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = PKey::from_ec_key(ec::EcKey::generate(&group).unwrap()).unwrap();
    let mut name = x509::X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "localhost").unwrap();
    let name = name.build();
    let mut cert = x509::X509Builder::new().unwrap();
    cert.set_version(2).unwrap();
    cert.set_subject_name(&name).unwrap();
    cert.set_issuer_name(&name).unwrap();
    cert.set_pubkey(&key).unwrap();
    cert.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    cert.set_not_after(&Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    cert.sign(&key, MessageDigest::sha256()).unwrap();
    let chain = vec![CertificateDer::from(cert.build().to_der().unwrap())];
    let pkcs8 = PrivateKeyDer::Pkcs8(key.private_key_to_pkcs8().unwrap().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, pkcs8)
        .unwrap();
    Arc::new(config)
}

/// Calls `step` (after arming the socket, as a readiness event would)
/// until it says done.
fn until(what: &str, mut step: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !step() {
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::yield_now();
    }
}

/// The client thread: the plaintext it read, and whether close_notify came.
type Reader = std::thread::JoinHandle<(Vec<u8>, bool)>;

/// A TLS stream whose socket sends little at a time, and a client
/// thread that reads nothing until told, then everything to the end:
/// it returns the plaintext and whether close_notify came.
fn pair() -> (Stream, mpsc::Sender<()>, Reader) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (go, wait) = mpsc::channel::<()>();
    let client = std::thread::spawn(move || {
        let tcp = TcpStream::connect(addr).unwrap();
        setsockopt(&tcp.as_fd(), sockopt::RcvBuf, &(16 * 1024)).unwrap();
        tcp.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut connector = SslConnector::builder(SslMethod::tls_client()).unwrap();
        connector.set_verify(SslVerifyMode::NONE);
        let mut tls = connector.build().connect("localhost", tcp).unwrap();
        wait.recv().unwrap();
        let mut got = Vec::new();
        let end = tls.read_to_end(&mut got);
        assert!(end.is_ok(), "the client's read: {end:?}");
        (got, tls.get_shutdown().contains(ShutdownState::RECEIVED))
    });
    let (server, _) = listener.accept().unwrap();
    setsockopt(&server.as_fd(), sockopt::SndBuf, &(16 * 1024)).unwrap();
    server.set_nonblocking(true).unwrap();
    let socket = ReadAhead::new(mio::net::TcpStream::from_std(server));
    let mut tls = Tls::new(&acceptor(), socket).unwrap();
    until("the TLS handshake", || {
        tls.arm(false);
        tls.handshake().unwrap()
    });
    (Stream::new(Transport::Tls(Box::new(tls))), go, client)
}

/// Output queued behind a full socket, then the write side closed: the
/// close waits for the socket to take every record (rustls keeps up to
/// 64 KiB of them beyond what `out` still holds) and close_notify, so the
/// client reads all of it, and the end, uncut.
#[test]
fn closing_a_tls_stream_behind_a_full_socket_sends_every_record_then_close_notify() {
    let (mut stream, go, client) = pair();
    let data: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    stream.queue(&data);
    let first = stream.flush();
    assert_eq!(
        first.map_err(|e| e.kind()),
        Err(io::ErrorKind::WouldBlock),
        "the socket is full before the client reads"
    );
    go.send(()).unwrap();
    until("the write side closed", || {
        stream.arm(false);
        stream.close_write()
    });
    assert_eq!(stream.queued(), 0, "closed with nothing left to send");
    drop(stream);
    let (got, close_notify) = client.join().unwrap();
    assert_eq!(got.len(), data.len(), "every byte arrived");
    assert!(got == data, "in order");
    assert!(close_notify, "the end was close_notify, not a cut");
}
