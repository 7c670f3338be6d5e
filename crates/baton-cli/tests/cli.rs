//! End-to-end tests of the built `baton` binary in a temp dir.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use assert_cmd::Command;
use predicates::prelude::*;
use std::path::Path;

fn baton(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("baton").unwrap();
    cmd.current_dir(dir)
        .env_remove("BATON_DB")
        .env_remove("BATON_CONFIG")
        .env_remove("RUST_LOG");
    cmd
}

fn status_json(dir: &Path) -> serde_json::Value {
    let out = baton(dir).args(["status", "--json"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn demo_with_the_incident_faults_is_exact_and_replays_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    baton(dir.path())
        .args([
            "demo",
            "--dates",
            "3",
            "--end",
            "2024-03-05",
            "--faults",
            "duplicate=0.3,drop=0.2,reorder=0.2,crash=0.05,pause=0.1",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("All 3 dates exact"))
        .stdout(predicate::str::contains("5/5"));
    assert!(
        dir.path().join("baton-demo.db").exists(),
        "the demo leaves its database behind"
    );

    let before = status_json(dir.path());
    assert_eq!(before.as_array().unwrap().len(), 3);
    for d in before.as_array().unwrap() {
        assert_eq!(d["exact"], true, "{d}");
        assert_eq!(d["verdict"]["triggers"], 1);
    }

    // Publishing a completion again by hand changes no count and triggers nothing.
    let detail = baton(dir.path())
        .args(["status", "--date", "2024-03-04", "--json"])
        .output()
        .unwrap();
    let detail: serde_json::Value = serde_json::from_slice(&detail.stdout).unwrap();
    let run_id = detail["documents"][0]["document"]["entries"]["player_game_summary"]["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let record_count =
        detail["documents"][0]["document"]["entries"]["player_game_summary"]["record_count"]
            .as_u64()
            .unwrap()
            .to_string();
    baton(dir.path())
        .args([
            "publish",
            "completion",
            "--processor",
            "player_game_summary",
            "--date",
            "2024-03-04",
            "--run-id",
            &run_id,
            "--record-count",
            &record_count,
        ])
        .assert()
        .success();
    baton(dir.path())
        .args(["serve", "--until-idle", "--poll-ms", "10"])
        .assert()
        .success();
    let after = status_json(dir.path());
    for (b, a) in before
        .as_array()
        .unwrap()
        .iter()
        .zip(after.as_array().unwrap())
    {
        assert_eq!(
            b["verdict"]["completed_count"],
            a["verdict"]["completed_count"]
        );
        assert_eq!(a["verdict"]["triggers"], 1, "no second trigger");
    }
    let detail = baton(dir.path())
        .args(["status", "--date", "2024-03-04", "--json"])
        .output()
        .unwrap();
    let detail: serde_json::Value = serde_json::from_slice(&detail.stdout).unwrap();
    let seen =
        detail["documents"][0]["document"]["entries"]["player_game_summary"]["messages_seen"]
            .as_u64()
            .unwrap();
    assert!(
        seen >= 2,
        "the replay was applied as a duplicate: messages_seen {seen}"
    );
}

#[test]
fn a_malformed_message_published_by_hand_is_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    baton(dir.path())
        .args(["demo", "--dates", "1", "--end", "2024-03-05"])
        .assert()
        .success();
    baton(dir.path())
        .args([
            "publish",
            "completion",
            "--payload",
            r#"{"processor_name": "NopeProcessor", "game_date": "2024-03-05"}"#,
        ])
        .assert()
        .success();
    baton(dir.path())
        .args(["serve", "--until-idle", "--poll-ms", "10"])
        .assert()
        .success();
    let status = status_json(dir.path());
    assert_eq!(status[0]["verdict"]["dead_letters"], 1, "{status}");
}

#[test]
fn a_bad_config_fails_at_start_naming_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    baton(dir.path()).args(["init"]).assert().success();
    let path = dir.path().join("baton.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains(r#"primary_key = ["game_date", "team_abbr"]"#))
        .unwrap()
        + 1;
    std::fs::write(
        &path,
        text.replacen(
            r#"primary_key = ["game_date", "team_abbr"]"#,
            "primary_key = []",
            1,
        ),
    )
    .unwrap();
    baton(dir.path())
        .args(["--config", "baton.toml", "demo", "--dates", "1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "line {line}, key `processors[0].primary_key`"
        )));
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    baton(dir.path())
        .args(["status"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("does not exist"));
    baton(dir.path())
        .args(["demo", "--faults", "explode=0.5"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown fault `explode`"));
    baton(dir.path())
        .args(["run", "x", "--date", "2024-13-01"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("2024-13-01"));
    baton(dir.path())
        .args(["demo", "--dates", "1", "--end", "2024-03-05"])
        .assert()
        .success();
    baton(dir.path())
        .args(["run", "nope", "--date", "2024-03-05"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown processor `nope`"));
}

#[test]
fn run_reports_its_attempt_and_replaces_rows_through_the_fence() {
    let dir = tempfile::tempdir().unwrap();
    baton(dir.path())
        .args(["demo", "--dates", "1", "--end", "2024-03-05"])
        .assert()
        .success();
    let out = baton(dir.path())
        .args([
            "run",
            "team_offense_game_summary",
            "--date",
            "2024-03-05",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["result"]["outcome"], "ran");
    assert_eq!(report["attempts"][0]["status"], "success");
    assert!(
        report["attempts"][0]["token"].as_u64().unwrap() >= 2,
        "a later run carries a larger token"
    );
    let status = status_json(dir.path());
    assert_eq!(status[0]["verdict"]["duplicate_rows"], 0);
}
