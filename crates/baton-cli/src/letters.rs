//! `baton dead-letters list|show|replay|retire`: what is in the dead-letter queue and why,
//! and what to do with a letter once its cause is fixed. The logic is
//! `baton_serve::dead_letters`, shared with the HTTP API and the dashboard.

use crate::{Cli, Exit, Outcome, load_pipeline, open_existing, open_existing_read_only};
use anyhow::anyhow;
use baton_core::dead_letter::{FIELD_CAP_BYTES, LetterState, clip};
use baton_serve::dead_letters::{self, Error, Filter, View};
use comfy_table::Table;
use comfy_table::presets::UTF8_FULL_CONDENSED;

#[derive(clap::Args, Debug)]
pub struct LettersArgs {
    #[command(subcommand)]
    what: LettersCommand,
}

#[derive(clap::Subcommand, Debug)]
enum LettersCommand {
    /// List dead letters (open ones unless --state says otherwise), oldest first.
    #[command(after_help = crate::help::DEAD_LETTERS_LIST)]
    List(ListArgs),
    /// Show one letter whole: reason, topic, payload, and how to replay it.
    #[command(after_help = crate::help::DEAD_LETTERS_SHOW)]
    Show(IdArgs),
    /// Publish a letter's original payload back to its topic (after fixing its cause) and
    /// mark it replayed.
    #[command(after_help = crate::help::DEAD_LETTERS_REPLAY)]
    Replay(IdArgs),
    /// Mark a letter retired (nothing to replay), with a reason.
    #[command(after_help = crate::help::DEAD_LETTERS_RETIRE)]
    Retire(RetireArgs),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum StateArg {
    Open,
    Replayed,
    Retired,
    All,
}

#[derive(clap::Args, Debug)]
struct ListArgs {
    /// Which letters, by state.
    #[arg(long, value_enum, default_value = "open")]
    state: StateArg,
    /// Only letters from this topic.
    #[arg(long)]
    topic: Option<String>,
    /// Only letters recorded at or after this time (RFC 3339, e.g. 2024-03-01T00:00:00Z).
    #[arg(long)]
    since: Option<jiff::Timestamp>,
    /// Only letters whose payload names this date.
    #[arg(long, value_parser = crate::parse_date)]
    date: Option<baton_core::Partition>,
    /// Only letters whose payload names no date that parses.
    #[arg(long)]
    undated: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct IdArgs {
    /// The letter's id (from `dead-letters list`).
    id: i64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct RetireArgs {
    /// The letter's id (from `dead-letters list`).
    id: i64,
    /// Why nothing is to be replayed (kept with the letter).
    #[arg(long)]
    reason: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Not found and refused are the operator's input (2); a backend failure is 3.
fn exit(e: Error) -> Exit {
    match e {
        Error::Backend(b) => Exit::backend(b),
        other => Exit::usage(anyhow!("{other}")),
    }
}

pub fn run(cli: &Cli, args: &LettersArgs) -> Outcome {
    let pipeline = load_pipeline(cli)?;
    // Listing and showing only read: a user who may only read the database can do them.
    let reads_only = matches!(args.what, LettersCommand::List(_) | LettersCommand::Show(_));
    let b = if reads_only {
        open_existing_read_only(cli, &pipeline)?
    } else {
        open_existing(cli, &pipeline)?
    };
    let store = b.store.as_ref();
    match &args.what {
        LettersCommand::List(a) => list(store, a),
        LettersCommand::Show(a) => {
            let letter = store
                .dead_letter_by_id(a.id)?
                .ok_or_else(|| exit(Error::NotFound(a.id)))?;
            print_one(&View::of(&letter), a.json)
        }
        LettersCommand::Replay(a) => {
            let r = dead_letters::replay(&pipeline, store, b.bus.as_ref(), a.id).map_err(exit)?;
            if a.json {
                crate::outln!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                crate::outln!(
                    "dead letter {} replayed: published to {} as {}{}",
                    a.id,
                    r.topic,
                    r.message_id,
                    if r.published {
                        ""
                    } else {
                        " (the bus already had it)"
                    }
                );
            }
            Ok(0)
        }
        LettersCommand::Retire(a) => {
            let view = dead_letters::retire(store, a.id, &a.reason).map_err(exit)?;
            if a.json {
                crate::outln!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                crate::outln!("dead letter {} retired: {}", a.id, a.reason);
            }
            Ok(0)
        }
    }
}

fn list(store: &dyn baton_ports::StateStore, a: &ListArgs) -> Outcome {
    let filter = Filter {
        state: match a.state {
            StateArg::Open => Some(LetterState::Open),
            StateArg::Replayed => Some(LetterState::Replayed),
            StateArg::Retired => Some(LetterState::Retired),
            StateArg::All => None,
        },
        topic: a.topic.clone(),
        since: a.since,
        date: a.date,
        undated: a.undated,
    };
    let all = store.dead_letters()?;
    let counts = dead_letters::counts(&all);
    let letters: Vec<View> = all
        .iter()
        .filter(|l| filter.admits(l))
        .map(View::of)
        .collect();
    if a.json {
        let body = serde_json::json!({"counts": counts, "letters": letters});
        crate::outln!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(0);
    }
    if letters.is_empty() {
        crate::outln!("no dead letters match");
    } else {
        let mut table = Table::new();
        table.load_style(UTF8_FULL_CONDENSED).set_header(vec![
            "id",
            "state",
            "recorded",
            "topic",
            "date",
            "message id",
            "reason",
        ]);
        for l in &letters {
            table.add_row(vec![
                l.id.to_string(),
                l.state.to_string(),
                l.recorded_at.to_string(),
                if l.topic.is_empty() {
                    "-".into()
                } else {
                    l.topic.clone()
                },
                l.date.clone().unwrap_or_else(|| "(none)".into()),
                clip(l.message_id.as_deref().unwrap_or("-"), 60).into_owned(),
                clip(&l.reason, FIELD_CAP_BYTES).into_owned(),
            ]);
        }
        crate::outln!("{table}");
    }
    crate::outln!(
        "{} open ({} naming no date), {} replayed, {} retired; `baton dead-letters show ID` shows one whole",
        counts.open,
        counts.open_undated,
        counts.replayed,
        counts.retired
    );
    Ok(0)
}

fn print_one(v: &View, json: bool) -> Outcome {
    if json {
        crate::outln!("{}", serde_json::to_string_pretty(v)?);
        return Ok(0);
    }
    crate::outln!("dead letter {} ({})", v.id, v.state);
    crate::outln!(
        "  topic:       {}",
        if v.topic.is_empty() {
            "- (rejected by the orchestrator step)"
        } else {
            &v.topic
        }
    );
    crate::outln!("  message id:  {}", v.message_id.as_deref().unwrap_or("-"));
    crate::outln!(
        "  date:        {}",
        v.date.as_deref().unwrap_or("(none that parses)")
    );
    crate::outln!("  first seen:  {}", v.recorded_at);
    crate::outln!("  reason:      {}", v.reason);
    if let Some(at) = v.settled_at {
        crate::outln!("  settled at:  {at} ({})", v.note.as_deref().unwrap_or(""));
    }
    match &v.payload {
        Some(text) => crate::outln!(
            "  payload ({} bytes):\n{}",
            v.payload_bytes,
            text.escape_debug()
        ),
        None => crate::outln!(
            "  payload ({} bytes, not UTF-8; base64):\n{}",
            v.payload_bytes,
            v.payload_base64
        ),
    }
    if let Some(cmd) = &v.replay_with {
        crate::outln!(
            "  fix the cause, then replay with: {cmd}   (or retire: baton dead-letters retire {} --reason TEXT)",
            v.id
        );
    }
    Ok(0)
}
