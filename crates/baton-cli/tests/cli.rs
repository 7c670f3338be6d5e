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

fn range() -> [&'static str; 4] {
    ["--from", "2024-03-01", "--to", "2024-03-05"]
}

#[test]
fn the_incident_replayed_health_fails_reconcile_fixes_health_passes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The orchestrator loses half the completions: documents under-count.
    baton(d)
        .args([
            "demo",
            "--dates",
            "5",
            "--end",
            "2024-03-05",
            "--faults",
            "orchestrator_down=0.5",
        ])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("NOT exact"));
    let health = baton(d).arg("health").args(range()).output().unwrap();
    assert_eq!(
        health.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&health.stdout)
    );
    let text = String::from_utf8_lossy(&health.stdout);
    assert!(text.contains("FAIL  BATON-H001"), "{text}");
    assert!(
        text.contains("wrong: 2024-03-0"),
        "health names the dates: {text}"
    );
    // Report mode changes nothing and exits 1.
    baton(d)
        .arg("reconcile")
        .args(range())
        .assert()
        .code(1)
        .stdout(predicate::str::contains("BATON-R002"));
    baton(d).arg("reconcile").args(range()).assert().code(1);
    // One command repairs it.
    baton(d)
        .arg("reconcile")
        .args(range())
        .arg("--fix")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "re-checked: all dates are consistent",
        ));
    baton(d)
        .arg("reconcile")
        .args(range())
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "No issues found - all dates are consistent",
        ));
    baton(d)
        .args(["serve", "--until-idle", "--poll-ms", "10"])
        .assert()
        .success();
    baton(d)
        .arg("health")
        .args(range())
        .assert()
        .success()
        .stdout(predicate::str::contains("All checks passed"));
    let status = status_json(d);
    for date in status.as_array().unwrap() {
        assert_eq!(
            date["exact"], true,
            "every date exact after the repair: {date}"
        );
        assert_eq!(date["verdict"]["triggers"], 1);
    }
}

#[test]
fn health_and_reconcile_reject_bad_arguments_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    baton(d)
        .args(["demo", "--dates", "1", "--end", "2024-03-05"])
        .assert()
        .success();
    for args in [
        vec!["health", "--days", "0"],
        vec!["health", "2024-02-30"],
        vec!["reconcile", "--from", "2024-03-05", "--to", "2024-03-01"],
        vec!["reconcile", "--date", "yesterday"],
        vec!["reconcile", "--days", "0"],
    ] {
        let out = baton(d).args(&args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stderr.is_empty());
    }
    // Could not check: no database.
    let empty = tempfile::tempdir().unwrap();
    baton(empty.path()).arg("health").assert().code(2);
}

#[test]
fn a_late_scraper_is_reported_with_its_delay_in_the_pipeline_time_zone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    baton(d)
        .args([
            "demo",
            "--dates",
            "2",
            "--end",
            "2024-03-05",
            "--late",
            "nbac_gamebook_scraper=8h45m",
        ])
        .assert()
        .success();
    let out = baton(d)
        .args([
            "health",
            "--from",
            "2024-03-04",
            "--to",
            "2024-03-05",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "lateness warns, it does not fail"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let late = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"] == "BATON-H003")
        .unwrap();
    assert_eq!(late["level"], "WARN");
    assert!(
        late["evidence"].as_str().unwrap().contains(
            "nbac_gamebook_scraper: expected 06:00 America/New_York, landed 14:45, 8h45m late"
        ),
        "{late}"
    );
}

#[test]
fn a_failing_quality_check_blocks_the_trigger_until_reconcile_finds_it_passing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    baton(d).arg("init").assert().success();
    let text = std::fs::read_to_string(d.join("baton.toml")).unwrap();
    // Few players have a points line: 80% coverage of it fails on every date with games.
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
    let out = baton(d)
        .args(["--config", "strict.toml", "health", "2024-03-05"])
        .output()
        .unwrap();
    let text_out = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text_out}");
    assert!(
        text_out.contains("FAIL  BATON-H010") && text_out.contains("points_line non-null in"),
        "{text_out}"
    );
    let detail = baton(d)
        .args(["status", "--date", "2024-03-05", "--json"])
        .output()
        .unwrap();
    let detail: serde_json::Value = serde_json::from_slice(&detail.stdout).unwrap();
    let doc = &detail["documents"][0]["document"];
    assert_eq!(
        doc["triggered"], false,
        "a blocked gate is never marked triggered"
    );
    assert_eq!(doc["blocked"]["check"], "active_player_minutes");
    // The threshold is corrected; reconcile --fix re-measures and triggers.
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
        .success()
        .stdout(predicate::str::contains("triggered generation 1"));
    baton(d)
        .args([
            "--config",
            "relaxed.toml",
            "serve",
            "--until-idle",
            "--poll-ms",
            "10",
        ])
        .assert()
        .success();
    baton(d)
        .args(["--config", "relaxed.toml", "health", "2024-03-05"])
        .assert()
        .success();
}

#[test]
fn a_run_deferred_for_its_input_runs_when_the_landing_is_published() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Without a wait deadline (the reference's is 8 hours, long past for 2024 dates).
    baton(d).arg("init").assert().success();
    let text = std::fs::read_to_string(d.join("baton.toml")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("wait_deadline_mins"))
        .unwrap()
        .to_owned();
    std::fs::write(d.join("baton.toml"), text.replacen(&line, "", 1)).unwrap();
    let baton = |d: &Path| {
        let mut cmd = baton(d);
        cmd.env("BATON_CONFIG", "baton.toml");
        cmd
    };
    baton(d)
        .args(["demo", "--dates", "1", "--end", "2024-03-05"])
        .assert()
        .success();
    // Nothing has landed for the 6th: the run waits, and says for what.
    baton(d)
        .args(["run", "team_offense_game_summary", "--date", "2024-03-06"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "deferred: upstream job `nbac_gamebook_scraper` has not landed",
        ));
    baton(d)
        .args([
            "publish",
            "raw",
            "--job",
            "nbac_gamebook_scraper",
            "--date",
            "2024-03-06",
        ])
        .assert()
        .success();
    baton(d)
        .args(["serve", "--until-idle", "--poll-ms", "10"])
        .assert()
        .success();
    let detail = baton(d)
        .args(["status", "--date", "2024-03-06", "--json"])
        .output()
        .unwrap();
    let detail: serde_json::Value = serde_json::from_slice(&detail.stdout).unwrap();
    let runs = detail["runs"].as_array().unwrap();
    assert!(
        runs.iter()
            .any(|r| r["processor"] == "team_offense_game_summary" && r["status"] != "failed"),
        "the owed run ran: {runs:?}"
    );
}

#[test]
fn publishing_a_landing_twice_shows_two_batches_in_status() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    baton(d).arg("migrate").assert().success();
    for at in ["2024-03-07T10:00:00Z", "2024-03-07T11:30:00Z"] {
        baton(d)
            .args([
                "publish",
                "raw",
                "--job",
                "nbac_schedule_scraper",
                "--date",
                "2024-03-06",
                "--at",
                at,
            ])
            .assert()
            .success();
    }
    let out = baton(d)
        .args(["status", "--date", "2024-03-06", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let detail: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let landings = detail["landings"].as_array().unwrap();
    let schedule = landings
        .iter()
        .find(|l| l["job"] == "nbac_schedule_scraper")
        .unwrap();
    assert_eq!(schedule["batches"], 2, "{schedule}");
    assert_eq!(
        schedule["landed_at"], "2024-03-07T10:00:00Z",
        "the first landing is kept"
    );
    assert!(schedule["latest_at"].is_string(), "{schedule}");
    let gamebook = landings
        .iter()
        .find(|l| l["job"] == "nbac_gamebook_scraper")
        .unwrap();
    assert_eq!(gamebook["batches"], 0, "every upstream job is listed");
    assert!(gamebook["landed_at"].is_null());
    baton(d)
        .args(["status", "--date", "2024-03-06"])
        .assert()
        .success()
        .stdout(predicate::str::contains("first landed"))
        .stdout(predicate::str::contains("2024-03-07T10:00:00Z"));
}

#[test]
fn a_short_demo_then_default_health_and_reconcile_pass_and_status_shows_owed_runs() {
    // Found by a black-box tester: the history a short demo lands (dates it never ran)
    // made the default health range fail with BATON-R009.
    let dir = tempfile::tempdir().unwrap();
    baton(dir.path())
        .args(["demo", "--dates", "3", "--end", "2024-03-05"])
        .assert()
        .success();
    for cmd in ["health", "reconcile"] {
        baton(dir.path())
            .args([cmd, "--from", "2024-02-28", "--to", "2024-03-05"])
            .assert()
            .success();
    }
    // A new batch requests reruns: `status --date` shows them owed until serve runs them.
    baton(dir.path())
        .args([
            "publish",
            "raw",
            "--job",
            "nbac_gamebook_scraper",
            "--date",
            "2024-03-05",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("(batch 2)"));
    let out = baton(dir.path())
        .args(["status", "--date", "2024-03-05", "--json"])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let owed = status["owed_runs"].as_array().unwrap();
    assert!(
        owed.iter()
            .any(|r| r["processor"] == "team_offense_game_summary" && r["kind"] == "requested"),
        "{owed:?}"
    );
    baton(dir.path())
        .args(["serve", "--until-idle"])
        .assert()
        .success();
    let out = baton(dir.path())
        .args(["status", "--date", "2024-03-05", "--json"])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["owed_runs"].as_array().unwrap().len(), 0);
    let doc = &status["documents"][0]["document"];
    assert_eq!(
        doc["trigger_generation"], 1,
        "identical data: no new generation"
    );
    baton(dir.path())
        .args(["health", "--from", "2024-03-01", "--to", "2024-03-05"])
        .assert()
        .success();
}

/// The commands `baton [PATH] --help` lists (clap's "Commands:" section), but `help`.
fn subcommands(dir: &Path, path: &[&str]) -> Vec<String> {
    let mut args: Vec<&str> = path.to_vec();
    args.push("--help");
    let out = baton(dir).args(&args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split("Commands:")
        .nth(1)
        .map(|rest| rest.split("\n\n").next().unwrap_or_default().to_owned())
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect()
}

#[test]
fn help_begins_with_what_baton_does_and_every_command_has_an_example() {
    let dir = tempfile::tempdir().unwrap();
    let out = baton(dir.path()).arg("--help").output().unwrap();
    let top = String::from_utf8_lossy(&out.stdout);
    assert!(
        top.starts_with("baton makes phased batch data pipelines exact"),
        "{top}"
    );
    let commands = subcommands(dir.path(), &[]);
    assert!(commands.len() >= 10, "{commands:?}");
    let mut without = Vec::new();
    for command in &commands {
        let nested = subcommands(dir.path(), &[command]);
        let mut paths = vec![vec![command.as_str()]];
        paths.extend(nested.iter().map(|n| vec![command.as_str(), n.as_str()]));
        for path in paths {
            let mut args = path.clone();
            args.push("--help");
            let out = baton(dir.path()).args(&args).output().unwrap();
            let help = String::from_utf8_lossy(&out.stdout);
            if !help.contains("Examples:\n  baton") && !help.contains("Examples:\n  cargo") {
                without.push(path.join(" "));
            }
        }
    }
    assert!(
        without.is_empty(),
        "commands without an example: {without:?}"
    );
}
/// A temp dir with a migrated database and a config whose external processor
/// `external_one` runs `command` (a TOML array) and whose lease lives `ttl_secs`.
fn with_external_processor(dir: &Path, command: &str, ttl_secs: u32) {
    baton(dir)
        .args(["init", "--out", "baton.toml"])
        .assert()
        .success();
    let config = std::fs::read_to_string(dir.join("baton.toml")).unwrap();
    let config = config
        .replacen("ttl_secs = 600", &format!("ttl_secs = {ttl_secs}"), 1)
        .replacen(
            "# Phase 4: precompute",
            &format!("[[processors]]\nname = \"external_one\"\nphase = 5\ntable = \"external_one\"\nprimary_key = [\"game_date\", \"k\"]\ncommand = {command}\n\n# Phase 4: precompute"),
            1,
        );
    std::fs::write(dir.join("baton.toml"), config).unwrap();
    baton(dir)
        .args(["--config", "baton.toml", "migrate"])
        .assert()
        .success();
}

/// Waits (bounded) until `path` has content: the external command has started.
fn wait_for_file(path: &Path) -> String {
    for _ in 0..2000 {
        if let Ok(s) = std::fs::read_to_string(path)
            && s.ends_with('\n')
        {
            return s.trim().to_owned();
        }
        let (_tx, rx) = std::sync::mpsc::channel::<()>();
        let _ = rx.recv_timeout(std::time::Duration::from_millis(10));
    }
    panic!("{} never written", path.display())
}

/// Whether the process is gone (or a zombie), waiting a bounded time for the kill to land.
fn process_dead(pid: &str) -> bool {
    for _ in 0..400 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(s) if s.rsplit(')').next().unwrap().trim_start().starts_with('Z') => return true,
            Ok(_) => {
                let (_tx, rx) = std::sync::mpsc::channel::<()>();
                let _ = rx.recv_timeout(std::time::Duration::from_millis(25));
            }
        }
    }
    false
}

fn spawn_run(dir: &Path) -> std::process::Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("baton"))
        .current_dir(dir)
        .env_remove("BATON_DB")
        .env_remove("BATON_CONFIG")
        .args([
            "--config",
            "baton.toml",
            "run",
            "external_one",
            "--date",
            "2024-03-05",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn date_runs(dir: &Path) -> Vec<serde_json::Value> {
    let out = baton(dir)
        .args([
            "--config",
            "baton.toml",
            "status",
            "--date",
            "2024-03-05",
            "--json",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["runs"].as_array().unwrap().clone()
}

#[test]
fn issue_10_sigterm_to_baton_run_kills_the_commands_group_and_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let script = "sleep 600 & echo $! > grandchild.pid; wait";
    with_external_processor(dir.path(), &format!("[\"sh\", \"-c\", {script:?}]"), 600);
    let mut run = spawn_run(dir.path());
    let grandchild = wait_for_file(&dir.path().join("grandchild.pid"));
    std::process::Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status()
        .unwrap();
    let status = run.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(run.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "the run failed: {stderr}");
    assert!(process_dead(&grandchild), "the command's group is killed");
    let runs = date_runs(dir.path());
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["status"], "failed");
    assert!(
        runs[0]["error"].as_str().unwrap().contains("interrupted"),
        "{}",
        runs[0]
    );
}

#[test]
fn issue_10_a_sigkilled_run_is_shown_abandoned_and_its_command_dies_with_it() {
    let dir = tempfile::tempdir().unwrap();
    // The first run hangs; a rerun prints its row.
    let script = "import json, os, sys, time\nif not os.path.exists('ran'):\n    open('ran', 'w').close()\n    open('child.pid', 'w').write(str(os.getpid()) + '\\n')\n    time.sleep(600)\nprint(json.dumps({'game_date': sys.argv[1], 'k': 1}))";
    with_external_processor(
        dir.path(),
        &format!("[\"python3\", \"-c\", {script:?}, \"{{date}}\"]"),
        3,
    );
    let mut run = spawn_run(dir.path());
    let child = wait_for_file(&dir.path().join("child.pid"));
    run.kill().unwrap(); // SIGKILL: no handler runs
    run.wait().unwrap();
    assert!(
        process_dead(&child),
        "the command dies with baton (PR_SET_PDEATHSIG)"
    );
    // Once its 3 s lease lapses, health warns and status shows the run abandoned, though
    // nothing has marked it yet (both are read-only).
    let mut h013 = serde_json::Value::Null;
    for _ in 0..400 {
        let out = baton(dir.path())
            .args(["--config", "baton.toml", "health", "2024-03-05", "--json"])
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        h013 = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["code"] == "BATON-H013")
            .unwrap()
            .clone();
        if h013["level"] == "WARN" {
            break;
        }
        let (_tx, rx) = std::sync::mpsc::channel::<()>();
        let _ = rx.recv_timeout(std::time::Duration::from_millis(50));
    }
    assert_eq!(h013["level"], "WARN", "{h013}");
    assert!(
        h013["evidence"]
            .as_str()
            .unwrap()
            .starts_with("1 abandoned run with nothing run since; newest: external_one 2024-03-05"),
        "{h013}"
    );
    assert_eq!(date_runs(dir.path())[0]["status"], "abandoned");
    // The next run takes the lease over and marks the dead run abandoned in run history.
    baton(dir.path())
        .args([
            "--config",
            "baton.toml",
            "run",
            "external_one",
            "--date",
            "2024-03-05",
        ])
        .assert()
        .success();
    let runs = date_runs(dir.path());
    assert_eq!(runs[0]["status"], "abandoned");
    assert!(runs[0]["finished_at"].is_string(), "{}", runs[0]);
    assert_eq!(runs[1]["status"], "success");
    let out = baton(dir.path())
        .args(["--config", "baton.toml", "health", "2024-03-05", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let h013 = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"] == "BATON-H013")
        .unwrap();
    assert_eq!(h013["level"], "PASS", "rerun since: {h013}");
}

fn prune_json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let out = baton(dir)
        .args(["prune", "--json"])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn prune_reports_per_table_keeps_what_is_young_and_health_and_reconcile_still_pass() {
    let dir = tempfile::tempdir().unwrap();
    baton(dir.path())
        .args(["demo", "--dates", "3", "--end", "2024-03-05"])
        .assert()
        .success();
    // The demo wrote everything just now (its clock is real time): nothing is past the
    // window, so nothing goes (what does go is tested in baton-serve's retention test and the
    // conformance suite, on an injected clock).
    let dry = prune_json(dir.path(), &["--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["keep_runs"], 20);
    for table in ["runs", "outbox", "bus_messages"] {
        assert_eq!(dry["removed"][table].as_u64(), Some(0), "{dry}");
    }
    let done = prune_json(dir.path(), &[]);
    assert_eq!(done["dry_run"], false);
    assert_eq!(done["removed"]["outbox"].as_u64(), Some(0), "{done}");
    for cmd in ["health", "reconcile"] {
        baton(dir.path())
            .args([cmd, "--from", "2024-02-28", "--to", "2024-03-05"])
            .assert()
            .success();
    }
    baton(dir.path())
        .args(["prune"])
        .assert()
        .success()
        .stdout(predicate::str::contains("bus_messages"));
    baton(dir.path())
        .args(["prune", "--older-than-days", "3"])
        .assert()
        .code(2);
    baton(dir.path()).args(["init"]).assert().success();
    let path = dir.path().join("baton.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let line = text.lines().count() + 3;
    std::fs::write(&path, format!("{text}\n[retention]\nolder_than_days = 1\n")).unwrap();
    baton(dir.path())
        .args(["--config", "baton.toml", "prune"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "line {line}, key `retention.older_than_days`"
        )));
}

/// Tester's F6: an address `serve` cannot bind is bad usage (exit 2) with `--until-idle`
/// too, not a silent drain without HTTP; an address in use as well as one that is invalid.
#[test]
fn serve_until_idle_with_an_address_it_cannot_bind_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    baton(dir.path()).arg("migrate").assert().success();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let in_use = taken.local_addr().unwrap().to_string();
    for addr in ["999.1.1.1:80", in_use.as_str()] {
        for until_idle in [true, false] {
            let mut cmd = baton(dir.path());
            cmd.args(["serve", "--listen", addr])
                .env_remove("BATON_LISTEN");
            if until_idle {
                cmd.arg("--until-idle");
            }
            let out = cmd.output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{addr} until_idle={until_idle}: {stderr}"
            );
            assert!(stderr.contains("cannot listen on"), "{stderr}");
        }
    }
}
