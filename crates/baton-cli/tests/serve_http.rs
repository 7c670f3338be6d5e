//! `baton serve --listen` over a demo database: the JSON API with its token rule, the
//! OpenAPI document, `/metrics`, and the dashboard, loaded in a real headless Chromium.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const TOKEN: &str = "test-token-3f9a";

fn baton(dir: &Path) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("baton"));
    c.current_dir(dir)
        .env_remove("BATON_DB")
        .env_remove("BATON_CONFIG")
        .env_remove("BATON_LISTEN")
        .env_remove("RUST_LOG");
    c
}

/// A `serve` with its HTTP side on a free port; killed on drop.
struct Serve {
    child: Child,
    base: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path, token: Option<&str>) -> Serve {
    let mut cmd = baton(dir);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--reconcile-every-secs",
        "0",
    ])
    .env_remove("BATON_API_TOKEN")
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    if let Some(t) = token {
        cmd.env("BATON_API_TOKEN", t);
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("dashboard http://").nth(1) {
                let addr = rest.split('/').next().unwrap_or_default().to_owned();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("serve printed its address");
    Serve {
        child,
        base: format!("http://{addr}"),
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn get(url: &str) -> (u16, String) {
    let mut r = agent().get(url).call().unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

fn post(url: &str, token: Option<&str>) -> (u16, String) {
    let mut req = agent().post(url);
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut r = req.send_empty().unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn demo(dir: &Path) {
    let out = baton(dir)
        .args(["demo", "--dates", "5", "--end", "2024-03-05"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn generation(base: &str, date: &str) -> u64 {
    let (_, body) = get(&format!("{base}/api/v1/dates/{date}"));
    json(&body)["documents"][0]["document"]["generation"]
        .as_u64()
        .unwrap()
}

#[test]
fn the_api_answers_and_only_a_token_holder_changes_anything() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path());
    let s = serve(dir.path(), Some(TOKEN));
    let base = &s.base;

    assert_eq!(get(&format!("{base}/healthz")).0, 200);
    let (code, ready) = get(&format!("{base}/readyz"));
    assert_eq!((code, json(&ready)["ready"].as_bool()), (200, Some(true)));

    let (code, body) = get(&format!(
        "{base}/api/v1/dates?from=2024-03-01&to=2024-03-05"
    ));
    assert_eq!(code, 200);
    let dates = json(&body);
    assert_eq!(dates.as_array().unwrap().len(), 5);
    for d in dates.as_array().unwrap() {
        assert_eq!(d["exact"], true, "{d}");
        assert_eq!(d["document"]["completed_count"], 5);
    }
    let (_, body) = get(&format!("{base}/api/v1/dates/2024-03-03"));
    let detail = json(&body);
    assert!(detail["runs"].as_array().unwrap().len() >= 6, "{detail}");
    let (code, body) = get(&format!(
        "{base}/api/v1/health?from=2024-03-01&to=2024-03-05"
    ));
    assert_eq!(code, 200);
    assert!(
        json(&body)["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["code"] == "BATON-H001")
    );

    // Malformed input: 400, JSON, naming the field.
    let (code, body) = get(&format!(
        "{base}/api/v1/dates?from=2024-02-30&to=2024-03-05"
    ));
    assert_eq!((code, json(&body)["field"].as_str()), (400, Some("from")));
    let (code, body) = get(&format!("{base}/api/v1/dates/yesterday"));
    assert_eq!((code, json(&body)["field"].as_str()), (400, Some("date")));
    let (code, body) = post(&format!("{base}/api/v1/reconcile?fix=maybe"), Some(TOKEN));
    assert_eq!((code, json(&body)["field"].as_str()), (400, Some("fix")));

    // Without the token (or with a wrong one) a forced re-trigger is refused and changes nothing.
    let before = generation(base, "2024-03-03");
    assert_eq!(
        post(&format!("{base}/api/v1/dates/2024-03-03/trigger"), None).0,
        401
    );
    assert_eq!(
        post(
            &format!("{base}/api/v1/dates/2024-03-03/trigger"),
            Some("wrong")
        )
        .0,
        401
    );
    assert_eq!(
        post(&format!("{base}/api/v1/reconcile?fix=true"), None).0,
        401
    );
    assert_eq!(
        generation(base, "2024-03-03"),
        before,
        "a refused request changed nothing"
    );

    // With it: exactly one new generation, and its trigger is in the outbox.
    let (code, body) = post(
        &format!("{base}/api/v1/dates/2024-03-03/trigger"),
        Some(TOKEN),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["generation"].as_u64(), Some(before + 1));
    assert_eq!(generation(base, "2024-03-03"), before + 1);
    let (_, body) = get(&format!("{base}/api/v1/dates/2024-03-04"));
    assert_eq!(
        json(&body)["documents"][0]["document"]["generation"].as_u64(),
        Some(before),
        "other dates untouched"
    );

    let (code, body) = post(
        &format!("{base}/api/v1/reconcile?from=2024-03-01&to=2024-03-05"),
        Some(TOKEN),
    );
    assert_eq!(code, 200);
    assert_eq!(json(&body)["dates_checked"], 5);

    // The OpenAPI document in the repo is what is served, and documents every route.
    let (code, body) = get(&format!("{base}/api/v1/openapi.json"));
    assert_eq!(code, 200);
    let doc = json(&body);
    let in_repo = json(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/openapi.json"
        ))
        .unwrap(),
    );
    assert_eq!(doc, in_repo);
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/dates",
        "/api/v1/dates/{date}",
        "/api/v1/dates/{date}/trigger",
        "/api/v1/dates/{date}/explain",
        "/api/v1/health",
        "/api/v1/reconcile",
        "/api/v1/landings",
        "/api/v1/dead-letters",
        "/api/v1/dead-letters/{id}",
        "/api/v1/dead-letters/{id}/replay",
        "/api/v1/dead-letters/{id}/retire",
        "/api/v1/push/{topic}",
        "/",
        "/dates/{date}",
        "/lateness",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "openapi.json documents {path}"
        );
    }

    // Why a date stands where it does: the same explanation `baton explain --json` prints.
    let (code, body) = get(&format!("{base}/api/v1/dates/2024-03-05/explain"));
    assert_eq!(code, 200, "{body}");
    let e = json(&body);
    assert_eq!(e["gates"][0]["standing"]["verdict"], "triggered", "{e}");
    assert!(!e["timeline"]["events"].as_array().unwrap().is_empty());
    let (code, body) = get(&format!("{base}/api/v1/dates/2024-03-05/explain?gate=nope"));
    assert_eq!((code, json(&body)["field"].as_str()), (400, Some("gate")));
    let (code, _) = get(&format!("{base}/api/v1/dates/2024-13-05/explain"));
    assert_eq!(code, 400);

    let (code, metrics) = get(&format!("{base}/metrics"));
    assert_eq!(code, 200);
    for name in [
        "baton_completion_accuracy_ratio{gate=\"phase3_to_phase4\"} 1.0",
        "baton_outbox_backlog",
        "baton_consumer_lag{",
        "baton_upstream_lateness_seconds{job=\"nbac_gamebook_scraper\"}",
        "baton_lease_grants",
        "baton_fenced_writes_rejected_total",
        "baton_lease_takeovers_total",
        "baton_duplicates_dropped_total",
        "baton_triggers_total",
        "baton_run_duration_seconds",
        "baton_messages_consumed",
    ] {
        assert!(metrics.contains(name), "/metrics has {name}:\n{metrics}");
    }
}

#[test]
fn without_a_configured_token_every_post_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path());
    let s = serve(dir.path(), None);
    let (code, body) = post(
        &format!("{}/api/v1/dates/2024-03-03/trigger", s.base),
        Some("anything"),
    );
    assert_eq!(code, 401);
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("BATON_API_TOKEN")
    );
}

/// Finds Chromium, installing Debian's package when it is missing and we may.
fn chromium() -> Option<PathBuf> {
    let find = || {
        ["chromium", "chromium-browser", "google-chrome"]
            .iter()
            .find_map(|name| {
                Command::new("which")
                    .arg(name)
                    .output()
                    .ok()
                    .filter(|o| o.status.success())
                    .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            })
    };
    if let Some(p) = find() {
        return Some(p);
    }
    eprintln!("chromium is missing: installing Debian's `chromium` package for the browser test");
    let _ = Command::new("apt-get")
        .args(["install", "-y", "-qq", "chromium"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    find()
}

#[test]
fn the_dashboard_loads_in_a_real_browser_and_shows_every_cell() {
    let Some(browser) = chromium() else {
        eprintln!(
            "\n*** SKIPPED the browser test: chromium is not installed and could not be installed here ***\n"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path());
    let s = serve(dir.path(), Some(TOKEN));
    let url = format!("{}/?from=2024-03-01&to=2024-03-05", s.base);
    let profile = tempfile::tempdir().unwrap();
    let common = |c: &mut Command| {
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()));
    };
    let mut dump = Command::new(&browser);
    common(&mut dump);
    let out = dump
        .arg("--dump-dom")
        .arg(&url)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium ran");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("<table id=\"matrix\""),
        "the page rendered: {dom}"
    );
    for date in [
        "2024-03-01",
        "2024-03-02",
        "2024-03-03",
        "2024-03-04",
        "2024-03-05",
    ] {
        for p in [
            "team_offense_game_summary",
            "team_defense_game_summary",
            "upcoming_team_game_context",
            "upcoming_player_game_context",
            "player_game_summary",
            "player_daily_cache",
        ] {
            let cell = format!("data-date=\"{date}\" data-processor=\"{p}\" data-state=\"done\"");
            assert!(dom.contains(&cell), "cell {p} {date} is done");
        }
        assert!(
            dom.contains(&format!("data-date=\"{date}\" data-accuracy=\"100.0\"")),
            "chart point {date}"
        );
        // The demo lands each upstream job once per date: one batch, shown per job.
        let landing =
            format!("data-date=\"{date}\" data-job=\"nbac_schedule_scraper\" data-batches=\"1\"");
        assert!(dom.contains(&landing), "landing {date}");
    }
    assert_eq!(
        dom.matches("data-trigger=\"triggered\"").count(),
        5,
        "every date triggered once"
    );
    assert!(dom.contains("data-open=\"0\""), "no open alerts");

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let png = shots.join("dashboard.png");
    let _ = std::fs::remove_file(&png);
    let mut shot = Command::new(&browser);
    common(&mut shot);
    let status = shot
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1600,1000")
        .arg(&url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "a real screenshot"
    );
    eprintln!("dashboard screenshot for review: {}", png.display());
    assert!(
        dom.contains("<a href=\"/dates/2024-03-04\">done</a>"),
        "a matrix cell leads to its date's page"
    );

    // The date's page and the lateness view, each loaded and photographed.
    let date_url = format!("{}/dates/2024-03-04", s.base);
    let dom = dump_dom(&browser, &common, &date_url);
    assert!(
        dom.contains("data-verdict=\"triggered\""),
        "the date page says why: {dom}"
    );
    assert!(dom.contains("data-kind=\"trigger\"") && dom.contains("data-kind=\"run\""));
    assert!(dom.contains("title=\"2024-03-"), "UTC on hover");
    screenshot(&browser, &common, &date_url, &shots.join("date.png"));
    let late_url = format!("{}/lateness?from=2024-03-01&to=2024-03-05", s.base);
    let dom = dump_dom(&browser, &common, &late_url);
    assert!(
        dom.contains("data-date=\"2024-03-03\" data-job=\"nbac_schedule_scraper\""),
        "the lateness view has a cell per date and job: {dom}"
    );
    screenshot(&browser, &common, &late_url, &shots.join("lateness.png"));
}

fn dump_dom(browser: &Path, common: &dyn Fn(&mut Command), url: &str) -> String {
    let mut dump = Command::new(browser);
    common(&mut dump);
    let out = dump
        .arg("--dump-dom")
        .arg(url)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium ran");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn screenshot(browser: &Path, common: &dyn Fn(&mut Command), url: &str, png: &Path) {
    let _ = std::fs::remove_file(png);
    let mut shot = Command::new(browser);
    common(&mut shot);
    let status = shot
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1600,1000")
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "a real screenshot of {url}"
    );
    eprintln!("screenshot for review: {}", png.display());
}

#[test]
fn drift_lists_instances_not_at_the_expected_version_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path());
    let run = baton(dir.path())
        .args(["run", "team_offense_game_summary", "--date", "2024-03-03"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let ok = baton(dir.path())
        .args(["drift", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let report = json(&String::from_utf8_lossy(&ok.stdout));
    let worker = report["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["role"] == "worker")
        .expect("the worker heartbeated");
    assert_eq!(worker["version"], env!("CARGO_PKG_VERSION"));
    let drifted = baton(dir.path())
        .args(["drift", "--expect", "9.9.9"])
        .output()
        .unwrap();
    assert_eq!(drifted.status.code(), Some(1));
    let text = String::from_utf8_lossy(&drifted.stdout);
    assert!(
        text.contains("expected 9.9.9") && text.contains("drifted"),
        "{text}"
    );
}

#[test]
fn alerts_test_reaches_slack_and_the_webhook_and_list_shows_the_policies() {
    let slack = baton_testkit::receiver(0).unwrap();
    let hook = baton_testkit::receiver(0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret = format!("http://127.0.0.1:{}/services/T0/B0/sekrit", slack.port);
    let config = format!(
        "{}\n[[notifiers]]\nname = \"slack\"\nkind = \"slack\"\nurl_env = \"BATON_SLACK_WEBHOOK_URL\"\n\n[[notifiers]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{}/hook\"\n\n[[alerts]]\nname = \"processor-errors\"\nwatch = \"processor_errors\"\nthreshold = 0.2\nnotify = [\"slack\", \"hook\"]\n",
        baton_core::config::REFERENCE_TOML,
        hook.port
    );
    std::fs::write(dir.path().join("baton.toml"), config).unwrap();
    let out = baton(dir.path())
        .args(["--config", "baton.toml", "alerts", "test"])
        .env("BATON_SLACK_WEBHOOK_URL", &secret)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("slack: delivered") && stdout.contains("hook: delivered"),
        "{stdout}"
    );
    assert!(!stdout.contains("sekrit") && !String::from_utf8_lossy(&out.stderr).contains("sekrit"));
    let slack_got = slack.got.lock().unwrap().clone();
    assert_eq!(slack_got.len(), 1);
    assert_eq!(slack_got[0].0, "/services/T0/B0/sekrit");
    assert!(
        json(&slack_got[0].1)["text"]
            .as_str()
            .unwrap()
            .contains("test notice")
    );
    assert_eq!(hook.got.lock().unwrap().len(), 1);

    // Without the URL in the environment, it fails at start naming where it was to come from.
    let missing = baton(dir.path())
        .args(["--config", "baton.toml", "alerts", "test"])
        .env_remove("BATON_SLACK_WEBHOOK_URL")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("BATON_SLACK_WEBHOOK_URL"));

    let demo = baton(dir.path())
        .args([
            "--config",
            "baton.toml",
            "demo",
            "--dates",
            "2",
            "--end",
            "2024-03-05",
        ])
        .output()
        .unwrap();
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    let list = baton(dir.path())
        .args(["--config", "baton.toml", "alerts", "list", "--json"])
        .output()
        .unwrap();
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let policies = json(&String::from_utf8_lossy(&list.stdout));
    assert_eq!(policies[0]["policy"], "processor-errors");
    assert_eq!(policies[0]["state"], "never fired");
}

#[test]
fn bench_quick_runs_and_reports_every_figure_beside_its_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let out = baton(dir.path())
        .args(["bench", "--quick", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figures = json(&String::from_utf8_lossy(&out.stdout));
    let names: Vec<&str> = figures
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["figure"].as_str().unwrap())
        .collect();
    for wanted in [
        "orchestrator throughput",
        "trigger latency end to end p99",
        "landing to Phase 4 written p99",
        "serve CPU time idle",
        "dedup + fenced upsert",
        "in-memory dedup alone",
        "lease acquire + release, 8 concurrent workers",
        "reconcile, report mode",
        "health,",
        "serve resident memory, idle",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(wanted)),
            "{wanted} in {names:?}"
        );
    }
    // Figures are not asserted (no timed assertions); each is a positive measurement (the
    // idle serve's CPU time may be none at all), and a figure with a baseline carries its
    // ratio.
    for f in figures.as_array().unwrap() {
        let idle_cpu = f["figure"]
            .as_str()
            .unwrap()
            .starts_with("serve CPU time idle");
        let v = f["baton"].as_f64().unwrap();
        assert!(v > 0.0 || (idle_cpu && v == 0.0), "{f}");
        if f["baseline"].is_number() {
            assert!(f["ratio"].is_number(), "{f}");
        }
    }
}

/// The instances `baton drift --json` lists.
fn drift_instances(dir: &Path) -> Vec<serde_json::Value> {
    let out = baton(dir).args(["drift", "--json"]).output().unwrap();
    let report = json(&String::from_utf8_lossy(&out.stdout));
    report["instances"].as_array().cloned().unwrap_or_default()
}

#[test]
fn sigterm_stops_serve_cleanly_and_it_is_no_longer_listed_as_running() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path());
    // Whether the signal lands before or after its first heartbeat, the last record it
    // writes says it stopped.
    let mut serve = serve(dir.path(), None);
    let pid = serve.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let status = serve.child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "serve exits 0 on SIGTERM: {status:?}"
    );
    assert!(
        drift_instances(dir.path()).is_empty(),
        "a serve stopped on request is not listed"
    );
}

fn post_body(url: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut req = agent().post(url).header("Content-Type", "application/json");
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut r = req.send(body).unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

/// A push subscription pointed at `serve`: a good envelope is published and consumed, a
/// bad message inside one is dead-lettered, a broken envelope is a 400 naming the field;
/// the dead letters are listed and shown openly and replayed or retired with the token.
#[test]
fn push_envelopes_and_dead_letters_over_http() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path());
    let s = serve(dir.path(), Some(TOKEN));
    let base = &s.base;
    let push = format!("{base}/api/v1/push/phase3-completions");
    // "{"processor_name":"Nope","game_date":"2024-03-05"}" in base64.
    let bad_message = r#"{"message":{"data":"eyJwcm9jZXNzb3JfbmFtZSI6Ik5vcGUiLCJnYW1lX2RhdGUiOiIyMDI0LTAzLTA1In0=","messageId":"p-1"},"subscription":"s"}"#;
    assert_eq!(
        post_body(&push, None, bad_message).0,
        401,
        "the token is required"
    );
    let (code, body) = post_body(&push, Some(TOKEN), bad_message);
    assert_eq!(code, 202, "{body}");
    assert_eq!(json(&body)["message_id"], "push/p-1");
    let (code, body) = post_body(&push, Some(TOKEN), r#"{"message":{"data":"%%"}}"#);
    assert_eq!(code, 400, "{body}");
    assert_eq!(json(&body)["field"], "message.data");
    let (code, _) = post_body(
        &format!("{base}/api/v1/push/nope"),
        Some(TOKEN),
        bad_message,
    );
    assert_eq!(code, 404, "an unknown topic is refused");

    // The consumer dead-letters the pushed message: stop this serve, drain what it left
    // (deterministically, no waiting on a clock), and look through a new one.
    drop(s);
    let drained = baton(dir.path())
        .args(["serve", "--until-idle", "--poll-ms", "10"])
        .output()
        .unwrap();
    assert!(
        drained.status.success(),
        "{}",
        String::from_utf8_lossy(&drained.stderr)
    );
    let s = serve(dir.path(), Some(TOKEN));
    let base = &s.base;
    let (_, body) = get(&format!("{base}/api/v1/dead-letters"));
    let letters = json(&body);
    assert_eq!(letters["counts"]["open"], 1, "{letters}");
    let id = letters["letters"][0]["id"].as_i64().unwrap();
    assert_eq!(letters["letters"][0]["date"], "2024-03-05");
    let (code, body) = get(&format!("{base}/api/v1/dead-letters/{id}"));
    assert_eq!(code, 200);
    assert!(json(&body)["payload"].as_str().unwrap().contains("Nope"));
    assert_eq!(
        get(&format!("{base}/api/v1/dead-letters/{}", id + 100)).0,
        404
    );
    assert_eq!(get(&format!("{base}/api/v1/dead-letters/x")).0, 400);
    assert_eq!(
        get(&format!("{base}/api/v1/dead-letters?since=yesterday")).0,
        400
    );

    let retire = format!("{base}/api/v1/dead-letters/{id}/retire?reason=test");
    assert_eq!(post(&retire, None).0, 401);
    assert_eq!(
        post(
            &format!("{base}/api/v1/dead-letters/{id}/retire"),
            Some(TOKEN)
        )
        .0,
        400,
        "a reason is needed"
    );
    let (code, body) = post(&retire, Some(TOKEN));
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["state"], "retired");
    assert_eq!(post(&retire, Some(TOKEN)).0, 409, "retired is final");
    assert_eq!(
        post(
            &format!("{base}/api/v1/dead-letters/{id}/replay"),
            Some(TOKEN)
        )
        .0,
        409
    );
    let (_, body) = get(&format!("{base}/api/v1/dead-letters?state=all"));
    assert_eq!(json(&body)["counts"]["retired"], 1);
    let (_, page) = get(&format!("{base}/"));
    assert!(
        page.contains("Dead letters"),
        "the dashboard has a dead-letter view"
    );
}

/// What schemathesis (scripts/api-fuzz.sh) found, kept: the dashboard rendered any number
/// of dates (a decade took 16 s) and answered an undocumented 400; dead-letter ids past
/// int64 were not described as such.
#[test]
fn api_fuzz_findings_stay_fixed() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path());
    let s = serve(dir.path(), Some(TOKEN));
    let base = &s.base;
    let (code, body) = get(&format!("{base}/?days=367"));
    assert_eq!(code, 400, "{body}");
    assert_eq!(json(&body)["field"], "days");
    let (code, body) = get(&format!("{base}/?from=2000-01-01&to=2024-03-05"));
    assert_eq!(code, 400, "{body}");
    assert_eq!(get(&format!("{base}/?days=3661")).0, 400);
    assert_eq!(get(&format!("{base}/?days=30")).0, 200);
    let (code, body) = post(
        &format!("{base}/api/v1/dead-letters/318852176729925615616/replay"),
        Some(TOKEN),
    );
    assert_eq!(code, 400, "{body}");
    assert_eq!(json(&body)["field"], "id");
    let (_, doc) = get(&format!("{base}/api/v1/openapi.json"));
    let doc = json(&doc);
    assert!(
        doc["paths"]["/"]["get"]["responses"].get("400").is_some(),
        "the dashboard's 400 is documented"
    );
    assert_eq!(
        doc["paths"]["/api/v1/dead-letters/{id}"]["get"]["parameters"][0]["schema"]["format"],
        "int64"
    );
}

/// The local links (`href="/..."`) of an HTML page, without their fragment.
fn local_links(html: &str) -> Vec<String> {
    let mut links: Vec<String> = html
        .split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|l| l.starts_with('/'))
        .map(|l| l.split('#').next().unwrap_or(l).replace("&amp;", "&"))
        .collect();
    links.sort();
    links.dedup();
    links
}

#[test]
fn every_link_of_the_dashboard_and_its_pages_leads_somewhere() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path());
    let s = serve(dir.path(), None);
    let mut pages = vec!["/".to_owned(), "/lateness".to_owned()];
    let (_, home) = get(&format!("{}/", s.base));
    pages.extend(
        local_links(&home)
            .into_iter()
            .filter(|l| l.starts_with("/dates/"))
            .take(1),
    );
    let mut broken = Vec::new();
    for page in &pages {
        let (status, html) = get(&format!("{}{page}", s.base));
        assert_eq!(status, 200, "{page}");
        for link in local_links(&html) {
            let (status, _) = get(&format!("{}{link}", s.base));
            if status != 200 {
                broken.push(format!("{page} -> {link}: {status}"));
            }
        }
    }
    assert!(broken.is_empty(), "broken links: {broken:?}");
}
