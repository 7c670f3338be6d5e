//! The token rule of every `POST`, over a real socket on SQLite: checked before any
//! parameter is read (an unauthenticated malformed request is 401, not 400), and every
//! refused `POST` logged without the token.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use baton_core::clock::ManualClock;
use baton_core::config::Pipeline;
use baton_http::{Api, Metrics};
use baton_sqlite::{Durability, SqliteBackend};
use jiff::Timestamp;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

const TOKEN: &str = "s3cret-token-value";

/// A POST over a fresh connection with `auth` as the Authorization header; the status.
fn post(addr: std::net::SocketAddr, path: &str, auth: Option<&str>, body: &str) -> u16 {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response[9..12].parse().unwrap()
}

/// What the process logged, captured once for this test binary.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn serve(dir: &std::path::Path) -> baton_http::Server {
    let t0: Timestamp = "2024-03-10T12:00:00Z".parse().unwrap();
    let clock = Arc::new(ManualClock::new(t0));
    let store =
        Arc::new(SqliteBackend::open(&dir.join("b.db"), Durability::Full, clock.clone()).unwrap());
    let pipeline = Pipeline::reference().unwrap();
    let metrics = Arc::new(Metrics::new(&pipeline, t0));
    let api = Api {
        pipeline,
        store: store.clone(),
        warehouse: store.clone(),
        bus: store,
        clock,
        token: Some(TOKEN.into()),
        metrics,
    };
    baton_http::spawn("127.0.0.1:0", api).unwrap()
}

#[test]
fn the_token_is_checked_before_parameters_and_every_refused_post_is_logged() {
    let log = Captured::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    let addr = server.addr;
    let wrong = "Bearer not-the-token";
    // Malformed parameters and bodies without (or with a wrong) token: 401 every time.
    for auth in [None, Some(wrong)] {
        assert_eq!(post(addr, "/api/v1/reconcile?fix=maybe", auth, ""), 401);
        assert_eq!(post(addr, "/api/v1/dates/yesterday/trigger", auth, ""), 401);
        assert_eq!(post(addr, "/api/v1/landings", auth, "{not json"), 401);
        assert_eq!(post(addr, "/api/v1/no-such-route", auth, ""), 401);
    }
    // With the token, the same malformed requests are judged on their parameters.
    let right = format!("Bearer {TOKEN}");
    assert_eq!(
        post(addr, "/api/v1/reconcile?fix=maybe", Some(&right), ""),
        400
    );
    assert_eq!(
        post(addr, "/api/v1/dates/yesterday/trigger", Some(&right), ""),
        400
    );
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let refused: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("API request refused"))
        .collect();
    assert_eq!(refused.len(), 10, "{text}");
    assert!(
        refused
            .iter()
            .any(|l| l.contains("/api/v1/landings") && l.contains("401"))
    );
    assert!(
        refused
            .iter()
            .any(|l| l.contains("status=400") && l.contains("fix")),
        "{text}"
    );
    assert!(
        !text.contains(TOKEN) && !text.contains("not-the-token"),
        "{text}"
    );
}
