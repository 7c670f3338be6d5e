//! `baton dead-letters` end to end, and `publish completion` from a file, standard input
//! and a Pub/Sub push envelope: what is dead-lettered is listed (dated or not), shown whole
//! byte for byte, replayed to its topic once, or retired; BATON-H006 counts open letters.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use assert_cmd::Command;
use base64::Engine as _;
use std::path::Path;

fn baton(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("baton").unwrap();
    cmd.current_dir(dir)
        .env_remove("BATON_DB")
        .env_remove("BATON_CONFIG")
        .env_remove("RUST_LOG");
    cmd
}

fn json_of(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn serve_until_idle(dir: &Path) {
    baton(dir)
        .args(["serve", "--until-idle", "--poll-ms", "10"])
        .assert()
        .success();
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn dead_letters_are_listed_shown_replayed_once_and_retired() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    baton(d)
        .args(["demo", "--dates", "1", "--end", "2024-03-05"])
        .assert()
        .success();
    // 1: an unknown processor, dated.
    baton(d)
        .args([
            "publish",
            "completion",
            "--payload",
            r#"{"processor_name": "NopeProcessor", "game_date": "2024-03-05"}"#,
        ])
        .assert()
        .success();
    // 2: not UTF-8, from a file: no date, and every byte must be kept.
    let garbage: &[u8] = b"\xff\xfe{not json\x00\x80";
    std::fs::write(d.join("garbage.bin"), garbage).unwrap();
    baton(d)
        .args(["publish", "completion", "--payload-file", "garbage.bin"])
        .assert()
        .success();
    // 3: a push envelope on standard input whose message has a 1 MB status.
    let huge = "x".repeat(1 << 20);
    let message = format!(
        r#"{{"processor_name":"NopeProcessor","game_date":"2024-03-04","status":"{huge}","execution_id":"e1"}}"#
    );
    let envelope = format!(
        r#"{{"message":{{"data":"{}","attributes":{{"a":"b"}},"messageId":"pm-1"}},"subscription":"s"}}"#,
        b64(message.as_bytes())
    );
    baton(d)
        .args(["publish", "completion", "--payload-file", "-"])
        .write_stdin(envelope.clone())
        .assert()
        .success();
    // The same push delivered again (same messageId) is dropped by the bus.
    baton(d)
        .args(["publish", "completion", "--payload", "-"])
        .write_stdin(envelope)
        .assert()
        .success();
    serve_until_idle(d);

    let listed = json_of(baton(d).args(["dead-letters", "list", "--json"]));
    let letters = listed["letters"].as_array().unwrap();
    assert_eq!(letters.len(), 3, "{listed}");
    assert_eq!(listed["counts"]["open"], 3);
    assert_eq!(
        listed["counts"]["open_undated"], 1,
        "the non-UTF-8 letter is counted"
    );
    let undated = json_of(baton(d).args(["dead-letters", "list", "--undated", "--json"]));
    let id2 = undated["letters"][0]["id"].as_i64().unwrap();
    let shown = json_of(baton(d).args(["dead-letters", "show", &id2.to_string(), "--json"]));
    assert_eq!(
        shown["payload_base64"],
        b64(garbage),
        "the bytes as received"
    );
    assert_eq!(
        shown["payload"],
        serde_json::Value::Null,
        "not UTF-8: no text"
    );
    let big = letters.iter().find(|l| l["date"] == "2024-03-04").unwrap();
    assert_eq!(
        big["payload_bytes"].as_u64().unwrap() as usize,
        message.len()
    );
    assert!(
        big["reason"].as_str().unwrap().len() < 2048,
        "the reason repeats a capped field"
    );

    // Text output: a table, the counts, and status counts the undated letter too.
    baton(d)
        .args(["dead-letters", "list"])
        .assert()
        .success()
        .stdout(predicates::str::contains("3 open (1 naming no date)"));
    baton(d)
        .args(["status"])
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "dead letters: 3 open (1 naming no date)",
        ));

    // Retire needs a reason and happens once.
    baton(d)
        .args(["dead-letters", "retire", &id2.to_string(), "--reason", " "])
        .assert()
        .code(2);
    baton(d)
        .args([
            "dead-letters",
            "retire",
            &id2.to_string(),
            "--reason",
            "garbage from a test",
        ])
        .assert()
        .success();
    baton(d)
        .args([
            "dead-letters",
            "retire",
            &id2.to_string(),
            "--reason",
            "again",
        ])
        .assert()
        .code(2);
    baton(d)
        .args(["dead-letters", "show", "999"])
        .assert()
        .code(2);

    // Replay publishes the original payload back to its topic, once.
    let dated = json_of(baton(d).args(["dead-letters", "list", "--date", "2024-03-05", "--json"]));
    let id1 = dated["letters"][0]["id"].as_i64().unwrap();
    let replayed = json_of(baton(d).args(["dead-letters", "replay", &id1.to_string(), "--json"]));
    assert_eq!(replayed["letter"]["state"], "replayed");
    assert_eq!(replayed["published"], true);
    baton(d)
        .args(["dead-letters", "replay", &id1.to_string()])
        .assert()
        .code(2);
    serve_until_idle(d);
    // Its cause (an unknown processor) is not fixed here: it comes back as a new letter
    // with the same payload, which shows the bytes went back through the consumer.
    let after = json_of(baton(d).args(["dead-letters", "list", "--state", "all", "--json"]));
    assert_eq!(after["counts"]["open"], 2, "{after}");
    assert_eq!(after["counts"]["replayed"], 1);
    assert_eq!(after["counts"]["retired"], 1);
    let back = after["letters"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        back["payload"],
        letters.iter().find(|l| l["id"] == id1).unwrap()["payload"]
    );

    // BATON-H006 counts only open letters.
    let health = baton(d).args(["health", "--json"]).output().unwrap();
    let health: serde_json::Value = serde_json::from_slice(&health.stdout).unwrap();
    let h006 = health["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"] == "BATON-H006")
        .unwrap()
        .clone();
    assert!(
        h006["evidence"]
            .as_str()
            .unwrap_or_default()
            .starts_with("2 open"),
        "{h006}"
    );
}

#[test]
fn a_broken_push_envelope_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    baton(d)
        .args(["demo", "--dates", "1", "--end", "2024-03-05"])
        .assert()
        .success();
    baton(d)
        .args([
            "publish",
            "completion",
            "--payload",
            r#"{"message":{"data":"!!not base64"}}"#,
        ])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("message.data"));
    baton(d)
        .args(["publish", "completion", "--payload-file", "missing.json"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("missing.json"));
}
