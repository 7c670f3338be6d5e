//! End-to-end tests of the built `baton` binary at its edges: configs that must fail at
//! start, topics nobody reads, pipes closed early, locked and read-only databases.

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

/// `baton init`'s config in `dir`, edited by `edit`; the line of `needle` in the result.
fn config_with(dir: &Path, edit: impl Fn(&str) -> String, needle: &str) -> usize {
    baton(dir).args(["init"]).assert().success();
    let path = dir.join("baton.toml");
    let text = edit(&std::fs::read_to_string(&path).unwrap());
    std::fs::write(&path, &text).unwrap();
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn a_second_processor_on_a_table_differing_only_in_case_fails_at_start() {
    let dir = tempfile::tempdir().unwrap();
    // The issue's case: another processor writes `Team_Offense_Game_Summary`, which SQLite
    // takes for `team_offense_game_summary`.
    let line = config_with(
        dir.path(),
        |t| {
            t.replacen(
                r#"table = "team_defense_game_summary""#,
                r#"table = "Team_Offense_Game_Summary""#,
                1,
            )
        },
        "Team_Offense_Game_Summary",
    );
    baton(dir.path())
        .args(["--config", "baton.toml", "demo", "--dates", "1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "line {line}, key `processors[2].table`"
        )))
        .stderr(predicate::str::contains("team_offense_game_summary"));
    assert!(!dir.path().join("baton-demo.db").exists());
}

#[test]
fn a_processor_writing_batons_own_table_fails_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let line = config_with(
        dir.path(),
        |t| {
            t.replacen(
                r#"table = "team_defense_game_summary""#,
                r#"table = "Runs""#,
                1,
            )
        },
        r#"table = "Runs""#,
    );
    baton(dir.path())
        .args(["--config", "baton.toml", "migrate"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "line {line}, key `processors[2].table`"
        )))
        .stderr(predicate::str::contains("baton's own"));
}

/// A one-date demo database in `dir`.
fn demo(dir: &Path) {
    baton(dir)
        .args(["demo", "--dates", "1", "--end", "2024-03-05"])
        .assert()
        .success();
}

#[test]
fn publishing_a_completion_on_a_topic_no_gate_reads_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path());
    baton(dir.path())
        .args([
            "publish",
            "completion",
            "--processor",
            "player_game_summary",
            "--date",
            "2024-03-05",
            "--topic",
            "phase3-completion",
            "--run-id",
            "r1",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("`phase3-completion`"))
        .stderr(predicate::str::contains("phase3-completions"));
    // The topic a gate reads is still accepted.
    baton(dir.path())
        .args([
            "publish",
            "completion",
            "--processor",
            "player_game_summary",
            "--date",
            "2024-03-05",
            "--topic",
            "phase3-completions",
            "--run-id",
            "r1",
        ])
        .assert()
        .success();
}

/// Runs `baton args` with its stdout a pipe whose reader is already closed, so its first
/// write fails with a broken pipe; returns the exit code and stderr.
fn into_closed_pipe(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("baton"))
        .current_dir(dir)
        .env_remove("BATON_DB")
        .env_remove("BATON_CONFIG")
        .env_remove("RUST_LOG")
        .args(args)
        .stdout(writer)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn printing_commands_end_quietly_with_their_verdict_when_the_reader_has_gone() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path());
    let date = ["--date", "2024-03-05"];
    for args in [
        &["health", "--date", "2024-03-05"][..],
        &["reconcile", "--date", "2024-03-05"],
        &["status"],
        &["status", "--date", "2024-03-05"],
        &["status", "--json"],
        &["alerts", "list"],
        &["drift", "--json"],
        &["health", "--json", date[0], date[1]],
    ] {
        let (code, stderr) = into_closed_pipe(dir.path(), args);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?} is quiet: {stderr}");
        // The verdict is kept: each of these passes on the demo's date, except `drift`,
        // which finds the demo's instances not heartbeating (1) or none (0).
        assert!(matches!(code, Some(0 | 1)), "{args:?}: {code:?}");
        if args[0] != "drift" {
            assert_eq!(code, Some(0), "{args:?}");
        }
    }
    // A failing verdict keeps its code: with the date's document lost, reconcile finds it.
    let conn = rusqlite::Connection::open(dir.path().join("baton-demo.db")).unwrap();
    conn.execute_batch("DELETE FROM documents").unwrap();
    drop(conn);
    for args in [
        &["reconcile", "--date", "2024-03-05"][..],
        &["health", "--date", "2024-03-05"],
    ] {
        let (code, stderr) = into_closed_pipe(dir.path(), args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?} is quiet: {stderr}");
    }
}

#[test]
fn reconcile_fix_on_a_database_locked_past_its_timeout_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path());
    // Something for --fix to write: the date's document is lost.
    let holder = rusqlite::Connection::open(dir.path().join("baton-demo.db")).unwrap();
    holder.execute_batch("DELETE FROM documents").unwrap();
    // Another connection holds the write lock for the whole command.
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    baton(dir.path())
        .env("BATON_SQLITE_BUSY_TIMEOUT_MS", "200")
        .args(["reconcile", "--date", "2024-03-05", "--fix"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("locked").or(predicate::str::contains("busy")));
    // Reading is not blocked by a writer (write-ahead log): plain reconcile still checks,
    // and its finding is a verdict (1), not a backend error.
    baton(dir.path())
        .env("BATON_SQLITE_BUSY_TIMEOUT_MS", "200")
        .args(["reconcile", "--date", "2024-03-05"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("BATON-R001"));
    holder.execute_batch("ROLLBACK").unwrap();
}

/// This process's effective user id (the owner of `/proc/self`).
fn euid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").unwrap().uid()
}

/// `baton args` as a user who may only read the database: `nobody` when the tests run as
/// root (root may write any file), else this user with the file and directory read-only.
fn as_reader(dir: &Path, args: &[&str]) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("baton"));
    cmd.current_dir(dir)
        .env_remove("BATON_DB")
        .env_remove("BATON_CONFIG")
        .env_remove("RUST_LOG")
        .args(args);
    if euid() == 0 {
        cmd.uid(65534).gid(65534);
    }
    cmd.output().unwrap()
}

#[test]
fn read_only_commands_work_on_a_database_the_user_may_only_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path());
    let db = dir.path().join("baton-demo.db");
    let mode =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    mode(&db, 0o444);
    for dir_mode in [0o755, 0o555] {
        // 0o755 (owned by another user when root): the lock file may exist; 0o555: no
        // lock file can be made and none is left over.
        mode(dir.path(), dir_mode);
        for args in [
            &["status", "--date", "2024-03-05"][..],
            &["health", "--date", "2024-03-05"],
            &["reconcile", "--date", "2024-03-05"],
            &["explain", "2024-03-05"],
            &["report", "--days", "7"],
            &["dead-letters", "list"],
        ] {
            let out = as_reader(dir.path(), args);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{args:?} in a {dir_mode:o} dir: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // Writing is refused as a backend error, naming the database.
        let out = as_reader(dir.path(), &["reconcile", "--date", "2024-03-05", "--fix"]);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("baton-demo.db"));
    }
    mode(dir.path(), 0o755);
    mode(&db, 0o644);
    // A schema older than this baton's cannot be migrated read-only: the error says so.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("PRAGMA user_version = 1").unwrap();
    drop(conn);
    mode(&db, 0o444);
    let out = as_reader(dir.path(), &["status"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("baton migrate"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    mode(&db, 0o644);
}

#[test]
fn health_and_reconcile_print_the_stored_count_and_trigger_not_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path());
    // The stored document says 3 complete and no trigger; its entries and the truth say 5.
    let conn = rusqlite::Connection::open(dir.path().join("baton-demo.db")).unwrap();
    conn.execute_batch(
        "UPDATE documents SET completed_count = 3, triggered = 0,
           body = json_set(body, '$.completed_count', 3, '$.triggered', json('false'), '$.triggered_at', NULL)",
    )
    .unwrap();
    drop(conn);
    for args in [
        &["health", "--date", "2024-03-05"][..],
        &["reconcile", "--date", "2024-03-05"],
    ] {
        let out = baton(dir.path()).args(args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stdout}");
        assert!(stdout.contains("count 3/5"), "{args:?}: {stdout}");
        assert!(stdout.contains("not triggered"), "{args:?}: {stdout}");
        assert!(!stdout.contains("stored 5/5"), "{args:?}: {stdout}");
    }
    let out = baton(dir.path())
        .args(["reconcile", "--date", "2024-03-05", "--json"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let date = &json["mismatched_dates"][0];
    assert_eq!(date["stored_count"], 3, "{json}");
    assert_eq!(date["triggered"], false, "{json}");
}

#[test]
fn a_forged_log_line_in_a_message_field_is_escaped() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path());
    // The processor's name carries a newline, a fake log line and a clear-screen sequence.
    let payload = r#"{"processor_name": "nope\n2024-03-05T00:00:00Z ERROR forged line\u001b[2J", "game_date": "2024-03-05"}"#;
    baton(dir.path())
        .args(["publish", "completion", "--payload", payload])
        .assert()
        .success();
    let out = baton(dir.path())
        .args(["serve", "--until-idle", "--poll-ms", "10"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("dead-lettered"), "{stderr}");
    assert!(stderr.contains("forged line"), "{stderr}");
    assert!(
        !stderr
            .lines()
            .any(|l| l.starts_with("2024-03-05T00:00:00Z ERROR")),
        "a line was forged: {stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "an escape sequence reached the log: {stderr:?}"
    );
}

#[test]
fn no_log_level_prints_a_webhook_url() {
    let dir = tempfile::tempdir().unwrap();
    config_with(
        dir.path(),
        |t| {
            format!(
                "{t}\n[[notifiers]]\nname = \"slack\"\nkind = \"slack\"\nurl_env = \"BATON_SLACK_WEBHOOK_URL\"\n"
            )
        },
        "[[notifiers]]",
    );
    // Nothing listens on port 9: the delivery fails after the client has logged its request.
    let out = baton(dir.path())
        .env("RUST_LOG", "trace")
        .env(
            "BATON_SLACK_WEBHOOK_URL",
            "http://127.0.0.1:9/services/T000/B000/webhooksecret",
        )
        .args(["--config", "baton.toml", "alerts", "test"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("slack"), "{all}");
    assert!(!all.contains("webhooksecret"), "{all}");
}

/// A file that is not a SQLite database: every command that opens it fails with a
/// permanent backend error.
fn not_a_database(dir: &Path) {
    std::fs::write(dir.join("bad.db"), "not a database ".repeat(40)).unwrap();
}

#[test]
fn a_backend_error_says_its_kind_and_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    not_a_database(dir.path());
    for (args, code) in [
        (&["--db", "bad.db", "status"][..], 3),
        (&["--db", "bad.db", "health"], 2),
    ] {
        let out = baton(dir.path()).args(args).assert().code(code);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert_eq!(
            stderr.matches("backend error").count(),
            1,
            "{args:?}: {stderr}"
        );
        assert_eq!(
            stderr.matches("file is not a database").count(),
            1,
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains("database bad.db"), "{args:?}: {stderr}");
    }
}

/// Runs `baton args` with its stderr a pipe whose reader is already closed; returns the
/// exit code and stdout.
fn with_stderr_closed(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("baton"))
        .current_dir(dir)
        .env_remove("BATON_DB")
        .env_remove("BATON_CONFIG")
        .env("RUST_LOG", "info")
        .args(args)
        .stderr(writer)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_closed_stderr_does_not_make_the_binary_panic() {
    let dir = tempfile::tempdir().unwrap();
    not_a_database(dir.path());
    baton(dir.path())
        .args(["--db", "ok.db", "migrate"])
        .assert()
        .success();
    // An error message (exit 3), and a log line at error level (a run that fails: exit 1).
    let (code, _) = with_stderr_closed(dir.path(), &["--db", "bad.db", "status"]);
    assert_eq!(code, Some(3));
    let (code, stdout) = with_stderr_closed(
        dir.path(),
        &[
            "--db",
            "ok.db",
            "run",
            "team_offense_game_summary",
            "--date",
            "2024-03-01",
        ],
    );
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("failed"), "{stdout}");
}
