//! `connections.max.idle.ms`: a client that connects and sends nothing, or stalls in the
//! middle of a request, is disconnected (as Kafka does); active clients are not.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::TestServer;

fn closed_within(mut s: TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    s.set_read_timeout(Some(limit)).expect("timeout");
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Ok(0) => Some(start.elapsed()),
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(start.elapsed()),
        Err(_) => None,
    }
}

#[test]
fn idle_and_stalled_connections_are_closed() {
    let mut server = TestServer::start(&["connections.max.idle.ms=700"]);
    let silent = TcpStream::connect(server.direct_addr()).expect("connect");
    let mut stalled = TcpStream::connect(server.direct_addr()).expect("connect");
    // A size prefix announcing 100 bytes, then only 3 of them.
    stalled.write_all(&[0, 0, 0, 100, 0, 3, 0]).expect("write");
    let t = closed_within(silent, Duration::from_secs(10)).expect("silent connection closed");
    assert!(t < Duration::from_secs(5), "closed after {t:?}");
    let t = closed_within(stalled, Duration::from_secs(10)).expect("stalled connection closed");
    assert!(t < Duration::from_secs(5), "closed after {t:?}");
    server.assert_healthy("after idle connections were closed");
}
