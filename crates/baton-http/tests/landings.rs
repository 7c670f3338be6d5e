//! `POST /api/v1/landings` over a real socket on SQLite: the token rule, both notice
//! shapes, batches counted per POST, and every rejection naming its field.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use baton_core::clock::ManualClock;
use baton_core::config::Pipeline;
use baton_core::model::Partition;
use baton_http::{Api, Metrics};
use baton_ports::{RequestKind, StateStore};
use baton_sqlite::{Durability, SqliteBackend};
use jiff::Timestamp;
use serde_json::Value;
use std::io::{Read, Write};
use std::sync::Arc;

const TOKEN: &str = "s3cret";

/// A POST over a fresh connection; the status and the JSON body.
fn post(addr: std::net::SocketAddr, path: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    request(addr, "POST", path, token, body)
}

/// A request over a fresh connection; the status and the JSON body.
fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let (status, text) = raw(addr, method, path, token, body);
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A request over a fresh connection; the status and the body as text.
fn raw(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let (_, text) = response.split_once("\r\n\r\n").unwrap();
    (status, text.to_owned())
}

struct Env {
    store: Arc<SqliteBackend>,
    server: baton_http::Server,
    _dir: tempfile::TempDir,
}

fn env() -> Env {
    let t0: Timestamp = "2024-03-10T12:00:00Z".parse().unwrap();
    let clock = Arc::new(ManualClock::new(t0));
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteBackend::open(&dir.path().join("b.db"), Durability::Full, clock.clone()).unwrap(),
    );
    let pipeline = Pipeline::reference().unwrap();
    for t in &pipeline.tables {
        baton_ports::Warehouse::ensure_table(store.as_ref(), t).unwrap();
    }
    let metrics = Arc::new(Metrics::new(&pipeline, t0));
    let api = Api {
        pipeline,
        store: store.clone(),
        warehouse: store.clone(),
        bus: store.clone(),
        clock,
        token: Some(TOKEN.into()),
        metrics,
    };
    let server = baton_http::spawn("127.0.0.1:0", api).unwrap();
    Env {
        store,
        server,
        _dir: dir,
    }
}

fn date() -> Partition {
    Partition::parse("2024-03-09").unwrap()
}

#[test]
fn a_landing_needs_the_token_and_records_a_batch_with_its_readers_requested() {
    let e = env();
    let addr = e.server.addr;
    let body = r#"{"job": "nbac_schedule_scraper", "date": "2024-03-09", "landed_at": "2024-03-10T06:02:00Z"}"#;
    for token in [None, Some("wrong")] {
        let (code, answer) = post(addr, "/api/v1/landings", token, body);
        assert_eq!(code, 401, "{answer}");
    }
    assert!(
        e.store.landings(date()).unwrap().is_empty(),
        "nothing changed"
    );

    let (code, answer) = post(addr, "/api/v1/landings", Some(TOKEN), body);
    assert_eq!(code, 201, "{answer}");
    assert_eq!(answer["job"], "nbac_schedule_scraper");
    assert_eq!(answer["date"], "2024-03-09");
    assert_eq!(answer["batch"], 1);
    assert_eq!(
        answer["requested"],
        serde_json::json!(["upcoming_player_game_context", "upcoming_team_game_context"])
    );
    let owed = e.store.pending_requests().unwrap();
    assert_eq!(
        owed.iter()
            .filter(|r| r.partition == date() && r.kind == RequestKind::Requested)
            .count(),
        2
    );

    // The original pipeline's Phase 2 completion, naming the job by its table.
    let phase2 =
        r#"{"output_table": "nbac_schedule", "game_date": "2024-03-09", "status": "success"}"#;
    let (code, answer) = post(addr, "/api/v1/landings", Some(TOKEN), phase2);
    assert_eq!(code, 201, "{answer}");
    assert_eq!(answer["job"], "nbac_schedule_scraper");
    assert_eq!(answer["batch"], 2);
    let landing = e.store.landings(date()).unwrap().pop().unwrap();
    assert_eq!(landing.batches, 2);
    assert_eq!(landing.landed_at.to_string(), "2024-03-10T06:02:00Z");

    // The date's detail shows every upstream job's first and latest landing and batches.
    let (code, detail) = request(addr, "GET", "/api/v1/dates/2024-03-09", None, "");
    assert_eq!(code, 200, "{detail}");
    let landings = detail["landings"].as_array().unwrap();
    assert_eq!(landings.len(), 4, "one per upstream job: {detail}");
    let schedule = &landings[0];
    assert_eq!(schedule["job"], "nbac_schedule_scraper");
    assert_eq!(schedule["batches"], 2);
    assert_eq!(schedule["landed_at"], "2024-03-10T06:02:00Z");
    assert_eq!(schedule["latest_at"], "2024-03-10T12:00:00Z");
    assert_eq!(landings[1]["batches"], 0);
    assert!(landings[1]["landed_at"].is_null());

    // The dashboard shows them in the date's row, in the pipeline's time zone.
    let (code, page) = raw(addr, "GET", "/?from=2024-03-09&to=2024-03-09", None, "");
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains("data-date=\"2024-03-09\" data-job=\"nbac_schedule_scraper\" data-batches=\"2\" data-first=\"2024-03-10T06:02:00Z\" data-latest=\"2024-03-10T12:00:00Z\""),
        "{page}"
    );
    assert!(
        page.contains("2 batches<br><small>first 03-10 01:02<br>latest 03-10 08:00</small>"),
        "{page}"
    );
    assert!(page.contains("data-job=\"nbac_gamebook_scraper\" data-batches=\"0\""));
}

#[test]
fn rejections_name_their_field_and_record_nothing() {
    let e = env();
    let addr = e.server.addr;
    let cases = [
        ("{", 400, "body"),
        (
            r#"{"job": "no_such_job", "date": "2024-03-09"}"#,
            400,
            "job",
        ),
        (
            r#"{"source_table": "no_such_table", "game_date": "2024-03-09", "status": "success"}"#,
            400,
            "source_table",
        ),
        (
            r#"{"job": "nbac_schedule_scraper", "date": "03/09/2024"}"#,
            400,
            "date",
        ),
        (
            r#"{"job": "nbac_schedule_scraper", "date": "2024-03-09", "landed_at": "soon"}"#,
            400,
            "landed_at",
        ),
        (
            r#"{"output_table": "nbac_schedule", "game_date": "2024-03-09", "status": "failed"}"#,
            422,
            "status",
        ),
    ];
    for (body, code, field) in cases {
        let (got, answer) = post(addr, "/api/v1/landings", Some(TOKEN), body);
        assert_eq!(got, code, "{body}: {answer}");
        assert_eq!(answer["field"], field, "{body}: {answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }
    let (_, answer) = post(
        addr,
        "/api/v1/landings",
        Some(TOKEN),
        r#"{"job": "no_such_job", "date": "2024-03-09"}"#,
    );
    assert!(
        answer["error"].as_str().unwrap().contains("no_such_job"),
        "{answer}"
    );
    assert!(e.store.landings(date()).unwrap().is_empty());
}
