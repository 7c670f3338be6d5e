//! `baton explain DATE`: why a date stands where it does, and its timeline, on demo
//! databases (a triggered date, a date blocked by a check then repaired, a deferred run).

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

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

fn explain_json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let out = baton(dir).args(args).args(["--json"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn kinds(e: &serde_json::Value) -> Vec<String> {
    e["timeline"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_triggered_date_is_explained_with_its_rule_and_timeline_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    baton(d)
        .args(["demo", "--dates", "2", "--end", "2024-03-05"])
        .assert()
        .success();
    let e = explain_json(d, &["explain", "2024-03-05"]);
    let g = &e["gates"][0];
    assert_eq!(g["gate"], "phase3_to_phase4");
    assert_eq!(g["standing"]["verdict"], "triggered", "{g}");
    assert_eq!(g["standing"]["generation"], 1);
    assert!(g["mode"] == "overnight" || g["mode"] == "same_day");
    assert!(
        g["processors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["state"] == "done"),
        "{g}"
    );
    assert!(
        g["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["met"] == true)
    );
    let kinds = kinds(&e);
    for k in [
        "landing",
        "run",
        "completion_published",
        "completion_applied",
        "trigger",
        "next_phase",
    ] {
        assert!(kinds.iter().any(|x| x == k), "timeline has {k}: {kinds:?}");
    }
    let times: Vec<String> = e["timeline"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["at"].as_str().unwrap().to_owned())
        .collect();
    let parsed: Vec<jiff::Timestamp> = times.iter().map(|t| t.parse().unwrap()).collect();
    assert!(parsed.windows(2).all(|w| w[0] <= w[1]), "oldest first");
    assert!(
        times.iter().all(|t| t.ends_with('Z')),
        "UTC in JSON: {times:?}"
    );
    // The first trigger comes after the landings and runs it counted.
    let first = |k: &str| kinds.iter().position(|x| x == k).unwrap();
    assert!(first("landing") < first("trigger") && first("run") < first("trigger"));
    let run = e["timeline"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "run")
        .unwrap();
    for field in [
        "holder",
        "token",
        "status",
        "rows_written",
        "duplicates_dropped",
    ] {
        assert!(
            !run["data"][field].is_null(),
            "run event has {field}: {run}"
        );
    }
    baton(d)
        .args(["explain", "2024-03-05"])
        .assert()
        .success()
        .stdout(predicate::str::contains("triggered generation 1 by"))
        .stdout(predicate::str::contains("timeline of 2024-03-05"))
        .stdout(predicate::str::contains("America/New_York"));
}

#[test]
fn a_blocked_date_names_the_check_with_its_measure_and_the_repair_shows_in_the_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    baton(d).arg("init").assert().success();
    let text = std::fs::read_to_string(d.join("baton.toml")).unwrap();
    let strict = text.replacen("column = \"minutes\"", "column = \"points_line\"", 1);
    std::fs::write(d.join("strict.toml"), &strict).unwrap();
    baton(d)
        .args([
            "--config",
            "strict.toml",
            "demo",
            "--dates",
            "1",
            "--end",
            "2024-03-05",
        ])
        .assert()
        .code(1);
    let e = explain_json(d, &["--config", "strict.toml", "explain", "2024-03-05"]);
    let g = &e["gates"][0];
    assert_eq!(g["standing"]["verdict"], "blocked", "{g}");
    assert_eq!(g["standing"]["check"], "active_player_minutes");
    let check = &g["checks"][0];
    assert_eq!(check["outcome"], "fail");
    assert!(
        check["evidence"]
            .as_str()
            .unwrap()
            .contains("points_line non-null in"),
        "{check}"
    );
    baton(d)
        .args(["--config", "strict.toml", "explain", "2024-03-05"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "check active_player_minutes blocks the trigger",
        ));
    let relaxed = strict.replacen("min_percent = 80", "min_percent = 1", 1);
    std::fs::write(d.join("relaxed.toml"), relaxed).unwrap();
    baton(d)
        .args([
            "--config",
            "relaxed.toml",
            "reconcile",
            "--date",
            "2024-03-05",
            "--fix",
        ])
        .assert()
        .success();
    let e = explain_json(d, &["--config", "relaxed.toml", "explain", "2024-03-05"]);
    assert_eq!(e["gates"][0]["standing"]["verdict"], "triggered");
    let repair = e["timeline"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "repair")
        .unwrap_or_else(|| panic!("a repair event: {}", e["timeline"]));
    assert_eq!(repair["data"]["by"], "cli");
    // The report over a window that holds the date counts the repair.
    let out = baton(d)
        .args([
            "--config",
            "relaxed.toml",
            "report",
            "--days",
            "366",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // 2024-03-05 is more than 366 days ago: outside the window.
    assert!(r["repairs"].as_array().unwrap().is_empty(), "{r}");
    assert_eq!(r["dates_checked"], 366);
    assert!(r["lateness"]["nbac_gamebook_scraper"].is_object(), "{r}");
}

#[test]
fn a_deferred_run_is_shown_waiting_on_its_landing_and_owed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    baton(d).arg("init").assert().success();
    let text = std::fs::read_to_string(d.join("baton.toml")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("wait_deadline_mins"))
        .unwrap()
        .to_owned();
    std::fs::write(d.join("baton.toml"), text.replacen(&line, "", 1)).unwrap();
    let cfg = ["--config", "baton.toml"];
    baton(d)
        .args(cfg)
        .args(["demo", "--dates", "1", "--end", "2024-03-05"])
        .assert()
        .success();
    baton(d)
        .args(cfg)
        .args(["run", "team_offense_game_summary", "--date", "2024-03-06"])
        .assert()
        .code(1);
    let e = explain_json(
        d,
        &[
            "--config",
            "baton.toml",
            "explain",
            "2024-03-06",
            "--gate",
            "phase3_to_phase4",
        ],
    );
    let g = &e["gates"][0];
    let offense = g["processors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["processor"] == "team_offense_game_summary")
        .unwrap();
    assert_eq!(offense["state"], "waiting_on_landing", "{offense}");
    assert_eq!(offense["jobs"][0], "nbac_gamebook_scraper");
    assert_eq!(g["standing"]["verdict"], "waiting");
    assert!(g["summary"].as_str().unwrap().contains("missing"));
    assert_eq!(e["owed_runs"][0]["processor"], "team_offense_game_summary");
    assert!(kinds(&e).iter().any(|k| k == "owed_run"));
    baton(d)
        .args(cfg)
        .args(["explain", "2024-03-06", "--gate", "nope"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown gate `nope`"));
}
