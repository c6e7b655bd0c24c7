use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use super::*;
use crate::handler::{ConnInfo, InfoRequest};
use crate::test_alloc;
use crate::worker::conn::State;
use crate::worker::session::Flush;
use crate::worker::stream::{Stream, Transport};
use crate::worker::upgrade::Upgrade;

const MAX_SEND_BUFFER: usize = 1 << 20;

/// A table of open connections on `/chat/{room}`, one per room name
/// in `rooms`, over real loopback sockets, each in its rooms; and the
/// clients' ends.
fn receivers(rooms: &[&str]) -> (Broadcasts, Slab<Conn>, Vec<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut b = Broadcasts::default();
    let mut conns = Slab::default();
    let mut clients = Vec::new();
    for (i, room) in rooms.iter().enumerate() {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.set_nonblocking(true).unwrap();
        let (server, peer) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let stream = Stream::new(Transport::Plain(crate::worker::socket::Socket::new(
            mio::net::TcpStream::from_std(server),
        )));
        let params = [("room".to_string(), room.to_string())];
        let request = InfoRequest {
            route: "/chat/{room}",
            path: "/chat/x",
            query: "",
            params: &params,
            headers: std::iter::empty(),
        };
        let id = ConnId(i as u64 + 1);
        let info = ConnInfo::new(id, peer, request, None, Default::default(), false);
        let up = Upgrade {
            info,
            route: 0,
            leftover: Vec::new(),
            counted: None,
            max_message_size: 1 << 20,
            deflate: None,
            echo: false,
        };
        let mut session = Session::new(stream, up, 1 << 20, Instant::now());
        let (slot, serial) = conns.vacant();
        b.join(slot, &mut session);
        conns.insert(
            slot,
            Conn {
                serial,
                accepted: Instant::now(),
                scheduled: None,
                state: State::Open(Box::new(session)),
                exec: None,
            },
        );
        clients.push(client);
    }
    (b, conns, clients)
}

/// A text broadcast to `room` of `/chat/{room}`.
fn to_room(room: &str, text: &str) -> Broadcast {
    Broadcast {
        key: RoomKey::Room("/chat/{room}".into(), vec![room.into()]),
        skip: None,
        message: Message::text(text.to_string()),
    }
}

/// The worker's end-of-turn flush (the loop's `flush_queued`).
fn flush_turn(b: &mut Broadcasts, conns: &mut Slab<Conn>) {
    let due = b.take_flush_due();
    for &slot in &due {
        let session = conns.get_mut(slot).and_then(Conn::session_mut).unwrap();
        session.flush_due = false;
        assert!(matches!(session.flush(), Flush::Done { .. }));
    }
    b.end_turn(due);
}

/// Server text frames as they are on the wire.
fn text_frames(texts: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in texts {
        out.extend_from_slice(&[0x81, t.len() as u8]);
        out.extend_from_slice(t.as_bytes());
    }
    out
}

/// Reads exactly `n` bytes (waiting up to a minute for them).
fn read_n(client: &mut TcpStream, n: usize) -> Vec<u8> {
    client.set_nonblocking(false).unwrap();
    client
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let mut got = vec![0; n];
    client.read_exact(&mut got).unwrap();
    client.set_nonblocking(true).unwrap();
    got
}

fn nothing_sent(client: &mut TcpStream) -> bool {
    let mut byte = [0];
    matches!(client.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[test]
fn a_burst_of_broadcasts_costs_no_allocation_per_receiver_and_one_flush_each() {
    let (mut b, mut conns, mut clients) = receivers(&["a"; 8]);
    let burst = ["one", "two", "three"];
    let mut allocations = Vec::new();
    for _turn in 0..3 {
        let broadcasts = burst.map(|text| to_room("a", text));
        let before = test_alloc::allocations();
        for broadcast in &broadcasts {
            let d = b.deliver(&mut conns, broadcast, MAX_SEND_BUFFER);
            assert_eq!((d.queued, d.dropped.len()), (8, 0));
        }
        // Queued for the end of the turn, not sent yet.
        assert!(clients.iter_mut().all(nothing_sent));
        assert_eq!(conns.get(0).and_then(Conn::session).unwrap().queued(), 17);
        flush_turn(&mut b, &mut conns);
        allocations.push(test_alloc::allocations() - before);
        for client in &mut clients {
            assert_eq!(read_n(client, 17), text_frames(&burst));
        }
    }
    // The first turn grows the worker's turn buffer and its list of
    // receivers to flush; then the frames are encoded once per
    // message into that buffer and each receiver writes its span of
    // it: no buffer per receiver (it used to be one per receiver per
    // turn, allocated for the copies and freed after the write).
    assert_eq!(
        allocations[1..],
        [0, 0],
        "allocations per turn: {allocations:?}"
    );
}

#[test]
fn a_turn_of_broadcasts_past_max_send_buffer_does_not_drop_its_receivers() {
    // The socket has not refused any of it: it is not a backlog.
    let (mut b, mut conns, _clients) = receivers(&["a"; 2]);
    let big = Broadcast {
        message: Message::binary(vec![7u8; 64 << 10]),
        ..to_room("a", "")
    };
    let max_send_buffer = 256 << 10;
    for _ in 0..8 {
        let d = b.deliver(&mut conns, &big, max_send_buffer);
        assert_eq!((d.queued, d.dropped.len()), (2, 0));
    }
    let session = conns.get(0).and_then(Conn::session).unwrap();
    assert_eq!(session.queued(), 8 * (10 + (64 << 10)));
    assert_eq!(session.backlog(), 0);
    for slot in b.take_flush_due() {
        let _ = conns
            .get_mut(slot)
            .and_then(Conn::session_mut)
            .unwrap()
            .flush();
    }
    b.end_turn(Vec::new());
}

#[test]
fn each_receiver_gets_its_frames_in_order_across_rooms_and_direct_sends() {
    let (mut b, mut conns, mut clients) = receivers(&["a", "b", "a"]);
    b.deliver(&mut conns, &to_room("a", "a1"), MAX_SEND_BUFFER);
    b.deliver(&mut conns, &to_room("b", "b1"), MAX_SEND_BUFFER);
    // Not adjacent to a1 in the turn's buffer.
    b.deliver(&mut conns, &to_room("a", "a2"), MAX_SEND_BUFFER);
    // A handler's reply to the first receiver, between broadcasts.
    let session = conns.get_mut(0).and_then(Conn::session_mut).unwrap();
    assert!(matches!(
        session.send(Message::text("direct"), MAX_SEND_BUFFER),
        Sent::Queued { .. }
    ));
    b.deliver(&mut conns, &to_room("a", "a3"), MAX_SEND_BUFFER);
    b.deliver(&mut conns, &to_room("b", "b2"), MAX_SEND_BUFFER);
    flush_turn(&mut b, &mut conns);
    let expected = [
        text_frames(&["a1", "a2", "direct", "a3"]),
        text_frames(&["b1", "b2"]),
        text_frames(&["a1", "a2", "a3"]),
    ];
    for (client, want) in clients.iter_mut().zip(expected) {
        assert_eq!(read_n(client, want.len()), want);
        assert!(nothing_sent(client));
    }
}
