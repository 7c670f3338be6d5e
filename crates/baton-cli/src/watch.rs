//! What tells operators about the running system: `baton drift` (over the instances'
//! heartbeats, which `baton_serve::service` writes), `baton alerts list|test`, this
//! build's version and commit, and the HTTP side's token.

use crate::{Cli, EXIT_FAILED, Exit, Outcome, load_pipeline, open_existing};
use anyhow::anyhow;
use baton_core::alert::Incident;
use baton_core::clock::{Clock, SystemClock};
use baton_core::config::Pipeline;
use baton_core::heartbeat;
use clap::{Args, Subcommand};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use jiff::SignedDuration;

/// This build's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// This build's commit (`unknown` outside a git checkout).
pub const COMMIT: &str = env!("BATON_COMMIT");

/// The API token: `BATON_API_TOKEN`, else the file `api.token_file` names.
pub fn api_token(pipeline: &Pipeline) -> Result<Option<String>, Exit> {
    if let Ok(t) = std::env::var("BATON_API_TOKEN")
        && !t.trim().is_empty()
    {
        return Ok(Some(t.trim().to_owned()));
    }
    match &pipeline.api.token_file {
        Some(path) => std::fs::read_to_string(path)
            .map(|t| Some(t.trim().to_owned()).filter(|t| !t.is_empty()))
            .map_err(|e| Exit::usage(anyhow!("api.token_file: cannot read {path}: {e}"))),
        None => Ok(None),
    }
}

/// `baton drift`.
#[derive(Args, Debug)]
pub struct DriftArgs {
    /// The version every instance should run (default: this binary's).
    #[arg(long)]
    expect: Option<String>,
    /// Workers not seen for this long are left out (they may simply have no work).
    #[arg(long, default_value_t = 24)]
    worker_window_hours: u32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn drift(cli: &Cli, args: &DriftArgs) -> Outcome {
    let pipeline = load_pipeline(cli)?;
    let b = open_existing(cli, &pipeline)?;
    let now = SystemClock.now();
    let expect = args.expect.clone().unwrap_or_else(|| VERSION.to_owned());
    let worker_window = SignedDuration::from_hours(i64::from(args.worker_window_hours));
    let mut rows = Vec::new();
    for r in b.store.ops_records("instance/")? {
        let Ok(body) = serde_json::from_str::<serde_json::Value>(&r.body) else {
            continue;
        };
        let role = body["role"].as_str().unwrap_or("?").to_owned();
        let age = now.duration_since(r.updated_at);
        if role == "worker" && age > worker_window {
            continue;
        }
        // A `serve` gone for a day has been replaced, not stalled; one stopped on request
        // (its last heartbeat says so) is not running at all.
        let stopped = !body["stopped_at"].is_null();
        if role != "worker" && (stopped || heartbeat::is_gone(r.updated_at, now)) {
            continue;
        }
        let version = body["version"].as_str().unwrap_or("?").to_owned();
        let mut problems = Vec::new();
        if version != expect {
            problems.push(format!("runs {version}, expected {expect}"));
        }
        if role != "worker" && heartbeat::is_stale(r.updated_at, now) {
            problems.push(format!("no heartbeat for {}s", age.as_secs()));
        }
        rows.push(serde_json::json!({
            "instance": r.key.trim_start_matches("instance/"), "role": role,
            "host": body["host"], "version": version, "commit": body["commit"],
            "last_seen": r.updated_at.to_string(), "problems": problems,
        }));
    }
    let drifted = rows
        .iter()
        .filter(|r| r["problems"].as_array().is_some_and(|p| !p.is_empty()))
        .count();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"expected": expect, "instances": rows, "drifted": drifted})
            )?
        );
    } else {
        let mut t = Table::new();
        t.load_style(UTF8_FULL_CONDENSED).set_header(vec![
            "instance",
            "version",
            "commit",
            "last seen",
            "problems",
        ]);
        for r in &rows {
            let problems: Vec<&str> = r["problems"]
                .as_array()
                .map(|p| p.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            t.add_row(vec![
                r["instance"].as_str().unwrap_or_default().to_owned(),
                r["version"].as_str().unwrap_or_default().to_owned(),
                r["commit"].as_str().unwrap_or_default().to_owned(),
                r["last_seen"].as_str().unwrap_or_default().to_owned(),
                if problems.is_empty() {
                    "ok".to_owned()
                } else {
                    problems.join("; ")
                },
            ]);
        }
        println!("{t}");
        if drifted == 0 {
            println!("No drift: {} instances at {expect}.", rows.len());
        } else {
            println!("{drifted} of {} instances drifted or stale.", rows.len());
        }
    }
    Ok(if drifted == 0 { 0 } else { EXIT_FAILED })
}

/// `baton alerts`.
#[derive(Args, Debug)]
pub struct AlertsArgs {
    #[command(subcommand)]
    what: AlertsCommand,
}

#[derive(Subcommand, Debug)]
enum AlertsCommand {
    /// The policies, their figures now, and their latest incidents with delivery state.
    #[command(after_help = crate::help::ALERTS_LIST)]
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sends a test notice through every notifier (or one), changing no incident.
    #[command(after_help = crate::help::ALERTS_TEST)]
    Test {
        /// Only this notifier.
        #[arg(long)]
        notifier: Option<String>,
    },
}

/// `baton alerts list|test`.
pub fn alerts(cli: &Cli, args: &AlertsArgs) -> Outcome {
    let pipeline = load_pipeline(cli)?;
    match &args.what {
        AlertsCommand::Test { notifier } => test_notifiers(&pipeline, notifier.as_deref()),
        AlertsCommand::List { json } => list_alerts(cli, &pipeline, *json),
    }
}

/// Sends a test notice through every notifier (or the one named); exit 1 when any
/// delivery failed.
fn test_notifiers(pipeline: &Pipeline, notifier: Option<&str>) -> Outcome {
    let notifiers = baton_serve::alerting::notifiers(pipeline).map_err(Exit::usage)?;
    let chosen: Vec<_> = notifiers
        .iter()
        .filter(|n| notifier.is_none_or(|w| n.name() == w))
        .collect();
    if chosen.is_empty() {
        return Err(Exit::usage(anyhow!(
            "no notifier {}(configure [[notifiers]] in the config)",
            notifier.map_or(String::new(), |n| format!("named `{n}` "))
        )));
    }
    let mut failed = 0;
    for n in chosen {
        match baton_serve::alerting::test_notifier(n.as_ref(), SystemClock.now()) {
            Ok(()) => println!("{}: delivered", n.name()),
            Err(e) => {
                failed += 1;
                println!("{}: FAILED: {e}", n.name());
            }
        }
    }
    Ok(if failed == 0 { 0 } else { EXIT_FAILED })
}

/// The policies, each with its figure now and its latest incident (as a table or JSON).
fn list_alerts(cli: &Cli, pipeline: &Pipeline, json: bool) -> Outcome {
    let b = open_existing(cli, pipeline)?;
    let now = SystemClock.now();
    let incidents = baton_serve::alerting::incidents(b.store.as_ref())?;
    let mut rows = Vec::new();
    for p in &pipeline.alerts {
        let (value, summary) = baton_serve::alerting::measure(
            p,
            pipeline,
            b.store.as_ref(),
            b.warehouse.as_ref(),
            b.bus.as_ref(),
            now,
        )?;
        let incident = incidents.iter().find(|i| i.policy == p.name);
        rows.push(serde_json::json!({
            "policy": p.name, "watch": p.watch.as_str(), "threshold": p.threshold,
            "window_mins": p.window.as_secs() / 60, "quiet_mins": p.quiet.as_secs() / 60,
            "notify": p.notify, "value": value, "now": summary,
            "state": incident.map_or("never fired", |i| if i.is_open() { "OPEN" } else { "closed" }),
            "incident": incident,
        }));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!("{}", alerts_table(pipeline, &rows, &incidents));
        if pipeline.alerts.is_empty() {
            println!("No alert policies configured ([[alerts]] in the config).");
        }
    }
    Ok(0)
}

/// One row per policy: its threshold, its figure now, its state and its incident's notices.
fn alerts_table(pipeline: &Pipeline, rows: &[serde_json::Value], incidents: &[Incident]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED).set_header(vec![
        "policy",
        "watch",
        "threshold",
        "now",
        "state",
        "notices",
    ]);
    for (p, r) in pipeline.alerts.iter().zip(rows) {
        let notices = incidents
            .iter()
            .find(|i| i.policy == p.name)
            .map(notices_text)
            .unwrap_or_default();
        t.add_row(vec![
            p.name.clone(),
            p.watch.as_str().to_owned(),
            p.threshold.to_string(),
            format!(
                "{:.3}: {}",
                r["value"].as_f64().unwrap_or(0.0),
                r["now"].as_str().unwrap_or("")
            ),
            r["state"].as_str().unwrap_or("").to_owned(),
            notices,
        ]);
    }
    t
}

/// An incident's notices, one a line: kind, notifier and delivery state.
fn notices_text(incident: &Incident) -> String {
    incident
        .notices
        .iter()
        .map(|n| {
            format!(
                "{} -> {}: {}",
                n.kind,
                n.notifier,
                if n.delivered {
                    "delivered".to_owned()
                } else {
                    format!(
                        "{} attempts, {}",
                        n.attempts,
                        n.last_error.as_deref().unwrap_or("pending")
                    )
                }
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
