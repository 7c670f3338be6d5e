//! Health: facts about a range of dates and about the running system, turned into checks
//! that each PASS, WARN or FAIL with one line of evidence, and an exit code.
//!
//! Invariant: the verdict is a pure function of the facts; the adapters only gather them.

use crate::completion::Blocked;
use crate::schedule::{LandingStatus, LandingVerdict};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

/// A check's level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    /// Fine.
    Pass,
    /// Look when convenient.
    Warn,
    /// Act now.
    Fail,
    /// Could not be judged: a dependency it needs did not answer (the evidence names it).
    /// The other checks are judged without it; `health` exits 2 when nothing failed.
    Unchecked,
}

/// One check's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// `BATON-H00n`; see docs/runbook.md.
    pub code: &'static str,
    /// What it checks.
    pub name: &'static str,
    /// The verdict.
    pub level: Level,
    /// One line of evidence.
    pub evidence: String,
    /// More lines (per date, per job), shown with `--verbose` or on failure.
    pub details: Vec<String>,
}

/// Facts about one date.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DateFacts {
    /// The date, as text.
    pub date: String,
    /// Expected processors recorded complete.
    pub stored: usize,
    /// Expected processors complete in truth.
    pub actual: usize,
    /// Expected processors.
    pub expected: usize,
    /// What is stored, per gate, as reconcile prints it (`DateReport::stored_text`);
    /// empty: `stored/expected` is printed.
    pub stored_text: String,
    /// Whether the stored document disagrees with the truth in any way reconcile reports.
    pub mismatched: bool,
    /// Duplicate rows by table.
    pub duplicate_rows: Vec<(String, u64)>,
    /// Upstream landings, judged.
    pub landings: Vec<LandingVerdict>,
    /// A quality check blocking the trigger.
    pub blocked: Option<Blocked>,
    /// Output not following its inputs (reconcile's BATON-R008, R009, R010, with detail):
    /// stale output, a short date with nothing on its way, a next phase behind.
    pub inputs: Vec<String>,
    /// Quality checks that passed with a warning (below their warning threshold).
    pub warnings: Vec<Blocked>,
    /// Runs whose process died before finishing them (marked `abandoned`, or still
    /// `running` with no live lease covering them).
    pub abandoned: Vec<AbandonedRun>,
}

/// A run whose process died before finishing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbandonedRun {
    /// The processor.
    pub processor: String,
    /// The run.
    pub run_id: String,
    /// Who ran it.
    pub holder: String,
    /// When it started.
    pub started_at: Timestamp,
    /// Whether a later run of the same processor and date started since.
    pub rerun: bool,
}

/// Facts about the running system.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SystemFacts {
    /// Leases expired and never released: (processor, date, holder, expired at).
    pub stale_leases: Vec<(String, String, String, Timestamp)>,
    /// Dead letters in total, and in the last hour.
    pub dead_letters: (usize, usize),
    /// Completion messages received in the last hour (0 when the bus did not answer).
    pub messages_last_hour: usize,
    /// Why the bus could not be read, when it did not answer: the checks that need it say
    /// so instead of judging, and the others are judged without it.
    pub bus_unreachable: Option<String>,
    /// Runs finished in the last hour, and how many failed.
    pub runs_last_hour: (usize, usize),
    /// Outbox rows waiting, and the oldest one's creation time.
    pub outbox: (u64, Option<Timestamp>),
    /// `serve` instances that heartbeated in the last day.
    pub serves: Vec<ServeFact>,
}

/// What a `serve` instance last reported about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeFact {
    /// Its name (role/host/pid).
    pub instance: String,
    /// Its last heartbeat, by the store's clock.
    pub last_seen: Timestamp,
    /// Backend errors it retried through in the hour before that heartbeat.
    pub backend_errors_last_hour: usize,
    /// The last of them.
    pub last_error: Option<String>,
}

/// A `serve` that has not heartbeated for this long is reported (the rule is
/// [`crate::heartbeat::is_stale`]).
pub const SERVE_STALE_AFTER: SignedDuration = crate::heartbeat::STALE_AFTER;

/// Thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Outbox age that warns.
    pub outbox_warn: SignedDuration,
    /// Outbox age that fails.
    pub outbox_fail: SignedDuration,
    /// Error rate that fails (a share; any error warns).
    pub error_rate_fail: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            outbox_warn: SignedDuration::from_mins(5),
            outbox_fail: SignedDuration::from_hours(1),
            error_rate_fail: 0.5,
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Every check.
    pub checks: Vec<Check>,
    /// How many failed.
    pub failures: usize,
    /// How many warned.
    pub warnings: usize,
    /// How many could not be judged (a dependency did not answer).
    pub unchecked: usize,
}

impl Report {
    /// 1 when a check failed, else 2 when a check could not be judged, else 0 (2 when
    /// nothing could be checked at all is the caller's).
    pub fn exit_code(&self) -> u8 {
        if self.failures > 0 {
            1
        } else if self.unchecked > 0 {
            2
        } else {
            0
        }
    }
}

fn check(
    code: &'static str,
    name: &'static str,
    level: Level,
    evidence: String,
    details: Vec<String>,
) -> Check {
    Check {
        code,
        name,
        level,
        evidence,
        details,
    }
}

fn rate(errors: usize, total: usize) -> f64 {
    if total == 0 {
        0.0
    } else {
        errors as f64 / total as f64
    }
}

/// Everything a check reads: the facts, the time they are judged at, and the thresholds.
struct Facts<'a> {
    dates: &'a [DateFacts],
    system: &'a SystemFacts,
    now: Timestamp,
    limits: Limits,
}

/// A check: one `BATON-Hxxx` code, judged from the facts.
type CheckFn = fn(&Facts<'_>) -> Check;

/// The checks, in the order they are reported (the order of their codes).
const CHECKS: &[CheckFn] = &[
    completion_accuracy,
    duplicate_rows,
    upstream_lateness,
    missing_landings,
    stale_leases,
    dead_letters,
    orchestrator_error_rate,
    processor_error_rate,
    outbox_backlog,
    quality_checks,
    serve_instances,
    output_follows_inputs,
    abandoned_runs,
];

/// Judges the facts at `now`.
pub fn evaluate(
    dates: &[DateFacts],
    system: &SystemFacts,
    now: Timestamp,
    limits: Limits,
) -> Report {
    let facts = Facts {
        dates,
        system,
        now,
        limits,
    };
    let checks: Vec<Check> = CHECKS.iter().map(|run| run(&facts)).collect();
    let failures = checks.iter().filter(|c| c.level == Level::Fail).count();
    let warnings = checks.iter().filter(|c| c.level == Level::Warn).count();
    let unchecked = checks
        .iter()
        .filter(|c| c.level == Level::Unchecked)
        .count();
    Report {
        checks,
        failures,
        warnings,
        unchecked,
    }
}

/// `Pass` when nothing was found, `bad` otherwise.
fn pass_unless(found: bool, bad: Level) -> Level {
    if found { bad } else { Level::Pass }
}

/// `Pass` with no errors, `Fail` at or above the limit's rate, `Warn` below it.
fn error_level(errors: usize, rate: f64, limits: Limits) -> Level {
    if errors == 0 {
        Level::Pass
    } else if rate >= limits.error_rate_fail {
        Level::Fail
    } else {
        Level::Warn
    }
}

/// BATON-H001: dates whose stored completion disagrees with the truth. Dates with nothing
/// stored, nothing true and no mismatch are not judged (nothing ran for them).
fn completion_accuracy(f: &Facts<'_>) -> Check {
    let judged: Vec<&DateFacts> = f
        .dates
        .iter()
        .filter(|d| d.stored > 0 || d.actual > 0 || d.mismatched)
        .collect();
    let wrong: Vec<&&DateFacts> = judged.iter().filter(|d| d.mismatched).collect();
    let exact = judged.len() - wrong.len();
    let pct = if judged.is_empty() {
        100.0
    } else {
        100.0 * exact as f64 / judged.len() as f64
    };
    let evidence = if wrong.is_empty() {
        format!("{pct:.1}% ({exact}/{} dates exact)", judged.len())
    } else {
        format!(
            "{pct:.1}% ({exact}/{} dates exact); wrong: {}",
            judged.len(),
            wrong
                .iter()
                .map(|d| format!(
                    "{} stored {}; actual {}/{}",
                    d.date,
                    stored_text(d),
                    d.actual,
                    d.expected
                ))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    check(
        "BATON-H001",
        "completion accuracy",
        pass_unless(!wrong.is_empty(), Level::Fail),
        evidence,
        judged
            .iter()
            .map(|d| {
                format!(
                    "{}: stored {}; actual {}/{}",
                    d.date,
                    stored_text(d),
                    d.actual,
                    d.expected
                )
            })
            .collect(),
    )
}

/// What a date has stored: the store's own words when known, else the count.
fn stored_text(d: &DateFacts) -> String {
    if d.stored_text.is_empty() {
        format!("{}/{}", d.stored, d.expected)
    } else {
        d.stored_text.clone()
    }
}

/// BATON-H002: rows sharing a primary key.
fn duplicate_rows(f: &Facts<'_>) -> Check {
    let dups: Vec<String> = f
        .dates
        .iter()
        .flat_map(|d| {
            d.duplicate_rows
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(move |(t, n)| format!("{} {t}: {n} duplicate rows", d.date))
        })
        .collect();
    check(
        "BATON-H002",
        "duplicate rows",
        pass_unless(!dups.is_empty(), Level::Fail),
        if dups.is_empty() {
            "0 duplicate rows by primary key".to_owned()
        } else {
            dups.join("; ")
        },
        Vec::new(),
    )
}

/// Every judged landing of every date.
fn landings<'a>(f: &Facts<'a>) -> Vec<&'a LandingVerdict> {
    f.dates.iter().flat_map(|d| d.landings.iter()).collect()
}

/// The evidence of the landings in `status`.
fn landings_in(landings: &[&LandingVerdict], status: LandingStatus) -> Vec<String> {
    landings
        .iter()
        .filter(|l| l.status == status)
        .map(|l| format!("{} {}", l.partition, l.evidence))
        .collect()
}

/// BATON-H003: upstream jobs that landed after their tolerance.
fn upstream_lateness(f: &Facts<'_>) -> Check {
    let landings = landings(f);
    let late = landings_in(&landings, LandingStatus::Late);
    check(
        "BATON-H003",
        "upstream lateness",
        pass_unless(!late.is_empty(), Level::Warn),
        if late.is_empty() {
            format!(
                "{} landings on time",
                landings
                    .iter()
                    .filter(|l| l.status == LandingStatus::OnTime)
                    .count()
            )
        } else {
            late.join("; ")
        },
        landings
            .iter()
            .map(|l| format!("{} {}", l.partition, l.evidence))
            .collect(),
    )
}

/// BATON-H004: upstream jobs that were due and have not landed.
fn missing_landings(f: &Facts<'_>) -> Check {
    let landings = landings(f);
    let missing = landings_in(&landings, LandingStatus::Missing);
    check(
        "BATON-H004",
        "missing upstream landings",
        pass_unless(!missing.is_empty(), Level::Fail),
        if missing.is_empty() {
            format!(
                "none missing ({} not due yet)",
                landings
                    .iter()
                    .filter(|l| l.status == LandingStatus::NotDue)
                    .count()
            )
        } else {
            missing.join("; ")
        },
        Vec::new(),
    )
}

/// BATON-H005: leases that expired and were never released (a runner that died).
fn stale_leases(f: &Facts<'_>) -> Check {
    let stale = &f.system.stale_leases;
    check(
        "BATON-H005",
        "stale leases",
        pass_unless(!stale.is_empty(), Level::Warn),
        if stale.is_empty() {
            "no expired lease left unreleased".to_owned()
        } else {
            stale
                .iter()
                .map(|(p, d, h, at)| {
                    format!(
                        "{p} {d} held by {h}, expired {} ago",
                        crate::schedule::human(f.now.duration_since(*at))
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        },
        Vec::new(),
    )
}

/// BATON-H013: runs whose process died before finishing them (killed, out of memory, its
/// backend lost). WARN while such a run is the latest of its processor and date: nothing
/// has run since, so the date may be short; one that was rerun is history, listed only.
fn abandoned_runs(f: &Facts<'_>) -> Check {
    let all: Vec<(&str, &AbandonedRun)> = f
        .dates
        .iter()
        .flat_map(|d| d.abandoned.iter().map(move |a| (d.date.as_str(), a)))
        .collect();
    let open: Vec<&(&str, &AbandonedRun)> = all.iter().filter(|(_, a)| !a.rerun).collect();
    let details = all
        .iter()
        .map(|(d, a)| {
            let since = if a.rerun {
                "; rerun since"
            } else {
                "; nothing ran since"
            };
            format!(
                "{} {d} run {} by {}, started {} ago{since}",
                a.processor,
                a.run_id,
                a.holder,
                crate::schedule::human(f.now.duration_since(a.started_at))
            )
        })
        .collect();
    let evidence = match open.iter().max_by_key(|(_, a)| a.started_at) {
        Some((d, newest)) => format!(
            "{} abandoned run{} with nothing run since; newest: {} {d} by {}, started {} ago",
            open.len(),
            if open.len() == 1 { "" } else { "s" },
            newest.processor,
            newest.holder,
            crate::schedule::human(f.now.duration_since(newest.started_at))
        ),
        None if all.is_empty() => "no abandoned run".to_owned(),
        None => format!(
            "no abandoned run left without a rerun ({} rerun)",
            all.len()
        ),
    };
    check(
        "BATON-H013",
        "abandoned runs",
        pass_unless(!open.is_empty(), Level::Warn),
        evidence,
        details,
    )
}

/// BATON-H006: messages in the dead-letter queue.
fn dead_letters(f: &Facts<'_>) -> Check {
    let (dead, dead_recent) = f.system.dead_letters;
    check(
        "BATON-H006",
        "dead letters",
        pass_unless(dead != 0, Level::Warn),
        format!(
            "{dead} open in the dead-letter queue ({dead_recent} recorded in the last hour); see `baton dead-letters list`"
        ),
        Vec::new(),
    )
}

/// BATON-H007: the share of the last hour's messages that were dead-lettered.
fn orchestrator_error_rate(f: &Facts<'_>) -> Check {
    let (_, dead_recent) = f.system.dead_letters;
    if let Some(why) = &f.system.bus_unreachable {
        return check(
            "BATON-H007",
            "orchestrator error rate",
            Level::Unchecked,
            format!(
                "could not check: the bus did not answer ({why}); {dead_recent} messages dead-lettered in the last hour"
            ),
            Vec::new(),
        );
    }
    // A dead letter may be of a message received before the hour: never over 100%.
    let messages = f.system.messages_last_hour.max(dead_recent);
    let orchestrator_rate = rate(dead_recent, messages);
    check(
        "BATON-H007",
        "orchestrator error rate",
        error_level(dead_recent, orchestrator_rate, f.limits),
        format!(
            "{dead_recent} of {messages} messages dead-lettered in the last hour ({:.1}%)",
            100.0 * orchestrator_rate
        ),
        Vec::new(),
    )
}

/// BATON-H008: the share of the last hour's runs that failed.
fn processor_error_rate(f: &Facts<'_>) -> Check {
    let (runs, failed) = f.system.runs_last_hour;
    let processor_rate = rate(failed, runs);
    check(
        "BATON-H008",
        "processor error rate",
        error_level(failed, processor_rate, f.limits),
        format!(
            "{failed} of {runs} runs failed in the last hour ({:.1}%)",
            100.0 * processor_rate
        ),
        Vec::new(),
    )
}

/// BATON-H009: how long the oldest trigger has waited in the outbox (the relay is behind
/// or down).
fn outbox_backlog(f: &Facts<'_>) -> Check {
    let (pending, oldest) = f.system.outbox;
    let age = oldest
        .map(|o| f.now.duration_since(o))
        .unwrap_or(SignedDuration::ZERO);
    check(
        "BATON-H009",
        "outbox backlog",
        if age >= f.limits.outbox_fail {
            Level::Fail
        } else if age >= f.limits.outbox_warn {
            Level::Warn
        } else {
            Level::Pass
        },
        if pending == 0 {
            "empty".to_owned()
        } else {
            format!(
                "{pending} rows waiting, oldest {}",
                crate::schedule::human(age)
            )
        },
        Vec::new(),
    )
}

/// BATON-H010: dates whose trigger a quality check is blocking (FAIL), and dates judged
/// with a check below its warning threshold (WARN: the trigger went out).
fn quality_checks(f: &Facts<'_>) -> Check {
    let line = |date: &str, b: &Blocked| format!("{date}: `{}` {}", b.check, b.evidence);
    let blocked: Vec<String> = f
        .dates
        .iter()
        .filter_map(|d| d.blocked.as_ref().map(|b| line(&d.date, b)))
        .collect();
    let warned: Vec<String> = f
        .dates
        .iter()
        .flat_map(|d| d.warnings.iter().map(|w| line(&d.date, w)))
        .collect();
    let level = if !blocked.is_empty() {
        Level::Fail
    } else if !warned.is_empty() {
        Level::Warn
    } else {
        Level::Pass
    };
    let mut evidence = Vec::new();
    if !blocked.is_empty() {
        evidence.push(format!("trigger blocked: {}", blocked.join("; ")));
    }
    if !warned.is_empty() {
        evidence.push(format!("below a warning threshold: {}", warned.join("; ")));
    }
    let details = blocked
        .iter()
        .map(|b| format!("FAIL {b}"))
        .chain(warned.iter().map(|w| format!("WARN {w}")))
        .collect();
    check(
        "BATON-H010",
        "quality checks",
        level,
        if evidence.is_empty() {
            "no trigger blocked".to_owned()
        } else {
            evidence.join("; ")
        },
        details,
    )
}

/// BATON-H012: output follows its inputs (G9): no stale output, no date short while nothing
/// is on its way, no next phase behind the latest generation.
fn output_follows_inputs(f: &Facts<'_>) -> Check {
    let problems: Vec<String> = f
        .dates
        .iter()
        .flat_map(|d| d.inputs.iter().map(move |p| format!("{}: {p}", d.date)))
        .collect();
    check(
        "BATON-H012",
        "output follows its inputs",
        pass_unless(!problems.is_empty(), Level::Fail),
        if problems.is_empty() {
            "every output is current with its inputs".to_owned()
        } else {
            format!(
                "{} problem(s): {} (`baton reconcile --fix` requests the runs)",
                problems.len(),
                problems.join("; ")
            )
        },
        problems.clone(),
    )
}

/// BATON-H011: `serve` instances gone silent or retrying backend errors.
fn serve_instances(f: &Facts<'_>) -> Check {
    let serves = &f.system.serves;
    // A backend that failed under a running `serve` is retried there; this is where it shows.
    let mut trouble = Vec::new();
    for s in serves {
        let silent = f.now.duration_since(s.last_seen);
        if crate::heartbeat::is_stale(s.last_seen, f.now) {
            trouble.push(format!(
                "{} last heartbeat {} ago",
                s.instance,
                crate::schedule::human(silent)
            ));
        }
        if s.backend_errors_last_hour > 0 {
            trouble.push(format!(
                "{} retried {} backend errors in the last hour (last: {})",
                s.instance,
                s.backend_errors_last_hour,
                s.last_error.as_deref().unwrap_or("-")
            ));
        }
    }
    check(
        "BATON-H011",
        "serve instances",
        pass_unless(!trouble.is_empty(), Level::Warn),
        if !trouble.is_empty() {
            trouble.join("; ")
        } else if serves.is_empty() {
            "no serve has heartbeated in the last day".to_owned()
        } else {
            format!(
                "{} serve instances alive, no backend errors in the last hour",
                serves.len()
            )
        },
        Vec::new(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2024-03-10T12:00:00Z".parse().unwrap()
    }

    fn date(d: &str, stored: usize, actual: usize) -> DateFacts {
        DateFacts {
            date: d.into(),
            stored,
            actual,
            expected: 5,
            mismatched: stored != actual,
            ..Default::default()
        }
    }

    #[test]
    fn all_clear_passes_with_exit_0() {
        let r = evaluate(
            &[date("2024-03-01", 5, 5)],
            &SystemFacts::default(),
            now(),
            Limits::default(),
        );
        assert_eq!(r.failures, 0);
        assert_eq!(r.exit_code(), 0);
        assert_eq!(r.checks[0].evidence, "100.0% (1/1 dates exact)");
    }

    #[test]
    fn the_table_reports_each_code_once_in_order() {
        let r = evaluate(&[], &SystemFacts::default(), now(), Limits::default());
        let codes: Vec<&str> = r.checks.iter().map(|c| c.code).collect();
        let expected: Vec<String> = (1..=CHECKS.len())
            .map(|n| format!("BATON-H{n:03}"))
            .collect();
        assert_eq!(codes, expected);
    }

    #[test]
    fn an_abandoned_run_warns_until_it_is_rerun() {
        let run = |id: &str, hours_ago: i64, rerun: bool| AbandonedRun {
            processor: "player_game_summary".into(),
            run_id: id.into(),
            holder: "host-a".into(),
            started_at: now() - SignedDuration::from_hours(hours_ago),
            rerun,
        };
        let mut d = date("2024-03-01", 5, 5);
        d.abandoned = vec![run("r1", 5, true), run("r2", 3, false), run("r3", 2, false)];
        let r = evaluate(
            &[d.clone()],
            &SystemFacts::default(),
            now(),
            Limits::default(),
        );
        let c = r.checks.iter().find(|c| c.code == "BATON-H013").unwrap();
        assert_eq!(c.level, Level::Warn);
        assert_eq!(
            c.evidence,
            "2 abandoned runs with nothing run since; newest: player_game_summary 2024-03-01 by host-a, started 2h ago"
        );
        assert_eq!(c.details.len(), 3);
        d.abandoned = vec![run("r1", 5, true)];
        let r = evaluate(&[d], &SystemFacts::default(), now(), Limits::default());
        let c = r.checks.iter().find(|c| c.code == "BATON-H013").unwrap();
        assert_eq!(c.level, Level::Pass, "{}", c.evidence);
    }

    #[test]
    fn a_pass_on_abandoned_runs_says_whether_any_was_rerun_or_none_ever_died() {
        let mut d = date("2024-03-01", 5, 5);
        let r = evaluate(
            &[d.clone()],
            &SystemFacts::default(),
            now(),
            Limits::default(),
        );
        let (level, evidence, _) = by_code(&r, "BATON-H013");
        assert_eq!(
            (level, evidence.as_str()),
            (Level::Pass, "no abandoned run")
        );
        let rerun = |id: &str| AbandonedRun {
            processor: "player_game_summary".into(),
            run_id: id.into(),
            holder: "host-a".into(),
            started_at: now() - SignedDuration::from_hours(4),
            rerun: true,
        };
        d.abandoned = vec![rerun("r1"), rerun("r2")];
        let r = evaluate(&[d], &SystemFacts::default(), now(), Limits::default());
        let (level, evidence, details) = by_code(&r, "BATON-H013");
        assert_eq!(level, Level::Pass);
        assert_eq!(evidence, "no abandoned run left without a rerun (2 rerun)");
        assert_eq!(details.len(), 2);
    }

    #[test]
    fn an_undercounting_date_fails_naming_the_date() {
        let r = evaluate(
            &[date("2024-03-01", 5, 5), date("2024-03-02", 1, 5)],
            &SystemFacts::default(),
            now(),
            Limits::default(),
        );
        assert_eq!(r.checks[0].level, Level::Fail);
        assert_eq!(
            r.checks[0].evidence,
            "50.0% (1/2 dates exact); wrong: 2024-03-02 stored 1/5; actual 5/5"
        );
        assert_eq!(r.exit_code(), 1);
    }

    #[test]
    fn an_old_outbox_row_and_failing_runs_are_flagged() {
        let system = SystemFacts {
            outbox: (
                3,
                Some(now().checked_sub(SignedDuration::from_hours(2)).unwrap()),
            ),
            runs_last_hour: (4, 1),
            ..Default::default()
        };
        let r = evaluate(&[], &system, now(), Limits::default());
        let by = |code: &str| r.checks.iter().find(|c| c.code == code).unwrap().clone();
        assert_eq!(by("BATON-H009").level, Level::Fail);
        assert_eq!(by("BATON-H009").evidence, "3 rows waiting, oldest 2h");
        assert_eq!(by("BATON-H008").level, Level::Warn);
        assert_eq!(
            by("BATON-H008").evidence,
            "1 of 4 runs failed in the last hour (25.0%)"
        );
    }

    #[test]
    fn a_bus_that_does_not_answer_leaves_only_the_check_that_needs_it_unchecked() {
        let system = SystemFacts {
            runs_last_hour: (4, 1),
            bus_unreachable: Some("NATS connect: connection refused".into()),
            ..Default::default()
        };
        let r = evaluate(&[], &system, now(), Limits::default());
        let unchecked: Vec<_> = (r.checks.iter())
            .filter(|c| c.level == Level::Unchecked)
            .collect();
        assert_eq!(unchecked.len(), 1, "{r:?}");
        assert_eq!(unchecked[0].code, "BATON-H007");
        assert!(
            unchecked[0]
                .evidence
                .contains("the bus did not answer (NATS connect"),
            "{}",
            unchecked[0].evidence
        );
        // Judged without the bus: the run history still says one run of four failed.
        let h008 = r.checks.iter().find(|c| c.code == "BATON-H008").unwrap();
        assert_eq!(h008.level, Level::Warn);
        assert_eq!((r.unchecked, r.failures, r.exit_code()), (1, 0, 2));
        // A failure elsewhere still exits 1.
        let failing = SystemFacts {
            runs_last_hour: (2, 2),
            ..system
        };
        assert_eq!(
            evaluate(&[], &failing, now(), Limits::default()).exit_code(),
            1
        );
    }

    #[test]
    fn a_serve_retrying_its_backend_or_gone_silent_warns() {
        let fine = ServeFact {
            instance: "serve/a/1".into(),
            last_seen: now(),
            backend_errors_last_hour: 0,
            last_error: None,
        };
        let system = SystemFacts {
            serves: vec![fine.clone()],
            ..Default::default()
        };
        let h = |s: &SystemFacts| {
            evaluate(&[], s, now(), Limits::default())
                .checks
                .into_iter()
                .find(|c| c.code == "BATON-H011")
                .unwrap()
        };
        assert_eq!(h(&system).level, Level::Pass);
        assert_eq!(
            h(&system).evidence,
            "1 serve instances alive, no backend errors in the last hour"
        );
        let retrying = ServeFact {
            backend_errors_last_hour: 14,
            last_error: Some("cannot connect to PostgreSQL at postgres://db/baton: refused".into()),
            ..fine.clone()
        };
        let silent = ServeFact {
            instance: "serve/b/2".into(),
            last_seen: now().checked_sub(SignedDuration::from_mins(5)).unwrap(),
            ..fine
        };
        let c = h(&SystemFacts {
            serves: vec![retrying, silent],
            ..Default::default()
        });
        assert_eq!(c.level, Level::Warn);
        assert!(
            c.evidence.contains(
                "serve/a/1 retried 14 backend errors in the last hour (last: cannot connect"
            ),
            "{}",
            c.evidence
        );
        assert!(
            c.evidence.contains("serve/b/2 last heartbeat 5m ago"),
            "{}",
            c.evidence
        );
    }

    /// A landing verdict of a job for 2024-03-01, as `schedule::judge` words it.
    fn landing(job: &str, status: LandingStatus, evidence: &str) -> LandingVerdict {
        LandingVerdict {
            job: job.into(),
            partition: crate::model::Partition::new(jiff::civil::date(2024, 3, 1)),
            expected_at: now(),
            landed_at: None,
            status,
            evidence: evidence.into(),
        }
    }

    fn blocked(check: &str, evidence: &str) -> Blocked {
        Blocked {
            check: check.into(),
            evidence: evidence.into(),
            at: now(),
        }
    }

    fn by_code(r: &Report, code: &str) -> (Level, String, Vec<String>) {
        let c = r.checks.iter().find(|c| c.code == code).unwrap();
        (c.level, c.evidence.clone(), c.details.clone())
    }

    #[test]
    fn each_date_check_warns_or_fails_on_its_facts_and_passes_without_them() {
        let mut d = date("2024-03-01", 5, 5);
        d.stored_text = "count 4/5 (entries 5/5), triggered".into();
        d.mismatched = true;
        d.duplicate_rows = vec![("player_game_summary".into(), 3), ("other".into(), 0)];
        d.landings = vec![
            landing("a", LandingStatus::Late, "a: late by 2h"),
            landing("b", LandingStatus::Missing, "b: not landed"),
            landing("c", LandingStatus::OnTime, "c: on time"),
            landing("e", LandingStatus::NotDue, "e: not due"),
        ];
        d.blocked = Some(blocked("games", "2/3 games"));
        d.warnings = vec![blocked("minutes", "90% filled")];
        d.inputs = vec!["x is stale".into()];
        let r = evaluate(
            &[d.clone()],
            &SystemFacts::default(),
            now(),
            Limits::default(),
        );
        assert_eq!(
            by_code(&r, "BATON-H001"),
            (
                Level::Fail,
                "0.0% (0/1 dates exact); wrong: 2024-03-01 stored count 4/5 (entries 5/5), triggered; actual 5/5".into(),
                vec!["2024-03-01: stored count 4/5 (entries 5/5), triggered; actual 5/5".into()]
            )
        );
        assert_eq!(
            by_code(&r, "BATON-H002"),
            (
                Level::Fail,
                "2024-03-01 player_game_summary: 3 duplicate rows".into(),
                vec![]
            )
        );
        let (level, evidence, details) = by_code(&r, "BATON-H003");
        assert_eq!(
            (level, evidence.as_str()),
            (Level::Warn, "2024-03-01 a: late by 2h")
        );
        assert_eq!(
            details.len(),
            4,
            "every judged landing is listed: {details:?}"
        );
        assert_eq!(details[2], "2024-03-01 c: on time");
        assert_eq!(
            by_code(&r, "BATON-H004"),
            (Level::Fail, "2024-03-01 b: not landed".into(), vec![])
        );
        assert_eq!(
            by_code(&r, "BATON-H010"),
            (
                Level::Fail,
                "trigger blocked: 2024-03-01: `games` 2/3 games; below a warning threshold: 2024-03-01: `minutes` 90% filled".into(),
                vec![
                    "FAIL 2024-03-01: `games` 2/3 games".into(),
                    "WARN 2024-03-01: `minutes` 90% filled".into()
                ]
            )
        );
        assert_eq!(
            by_code(&r, "BATON-H012"),
            (
                Level::Fail,
                "1 problem(s): 2024-03-01: x is stale (`baton reconcile --fix` requests the runs)"
                    .into(),
                vec!["2024-03-01: x is stale".into()]
            )
        );
        assert_eq!(r.failures, 5);
        assert_eq!(r.warnings, 1);

        // A warning alone warns; landings on time or not due pass, and are counted.
        d.blocked = None;
        d.landings.drain(..2);
        d.duplicate_rows = vec![("other".into(), 0)];
        let r = evaluate(
            &[d.clone()],
            &SystemFacts::default(),
            now(),
            Limits::default(),
        );
        assert_eq!(
            by_code(&r, "BATON-H010"),
            (
                Level::Warn,
                "below a warning threshold: 2024-03-01: `minutes` 90% filled".into(),
                vec!["WARN 2024-03-01: `minutes` 90% filled".into()]
            )
        );
        assert_eq!(
            by_code(&r, "BATON-H002"),
            (
                Level::Pass,
                "0 duplicate rows by primary key".into(),
                vec![]
            )
        );
        assert_eq!(by_code(&r, "BATON-H003").0, Level::Pass);
        assert_eq!(by_code(&r, "BATON-H003").1, "1 landings on time");
        assert_eq!(
            by_code(&r, "BATON-H004"),
            (Level::Pass, "none missing (1 not due yet)".into(), vec![])
        );

        // Nothing found: every date check passes with its own words.
        let clear = date("2024-03-01", 5, 5);
        let r = evaluate(&[clear], &SystemFacts::default(), now(), Limits::default());
        assert_eq!(
            by_code(&r, "BATON-H010"),
            (Level::Pass, "no trigger blocked".into(), vec![])
        );
        assert_eq!(
            by_code(&r, "BATON-H012"),
            (
                Level::Pass,
                "every output is current with its inputs".into(),
                vec![]
            )
        );
        assert_eq!(
            by_code(&r, "BATON-H001").2,
            vec!["2024-03-01: stored 5/5; actual 5/5"]
        );
    }

    #[test]
    fn dates_nothing_ran_for_are_not_judged_for_accuracy() {
        let r = evaluate(
            &[
                date("2024-03-01", 0, 0),
                date("2024-03-02", 5, 5),
                date("2024-03-03", 0, 2),
            ],
            &SystemFacts::default(),
            now(),
            Limits::default(),
        );
        assert_eq!(
            by_code(&r, "BATON-H001").1,
            "50.0% (1/2 dates exact); wrong: 2024-03-03 stored 0/5; actual 2/5"
        );
        let mut mismatched = date("2024-03-04", 0, 0);
        mismatched.mismatched = true;
        let r = evaluate(
            &[mismatched],
            &SystemFacts::default(),
            now(),
            Limits::default(),
        );
        assert_eq!(by_code(&r, "BATON-H001").0, Level::Fail);
        let r = evaluate(&[], &SystemFacts::default(), now(), Limits::default());
        assert_eq!(by_code(&r, "BATON-H001").1, "100.0% (0/0 dates exact)");
    }

    #[test]
    fn system_checks_warn_and_fail_at_their_thresholds() {
        let ago = |mins: i64| now().checked_sub(SignedDuration::from_mins(mins)).unwrap();
        let system = SystemFacts {
            stale_leases: vec![(
                "player_game_summary".into(),
                "2024-03-01".into(),
                "host-a".into(),
                ago(90),
            )],
            dead_letters: (3, 2),
            messages_last_hour: 1,
            bus_unreachable: None,
            runs_last_hour: (4, 2),
            outbox: (1, Some(ago(5))),
            serves: Vec::new(),
        };
        let r = evaluate(&[], &system, now(), Limits::default());
        assert_eq!(
            by_code(&r, "BATON-H005"),
            (
                Level::Warn,
                "player_game_summary 2024-03-01 held by host-a, expired 1h30m ago".into(),
                vec![]
            )
        );
        assert_eq!(
            by_code(&r, "BATON-H006"),
            (
                Level::Warn,
                "3 open in the dead-letter queue (2 recorded in the last hour); see `baton dead-letters list`".into(),
                vec![]
            )
        );
        // Two dead letters of one message received: never over 100%.
        assert_eq!(
            by_code(&r, "BATON-H007"),
            (
                Level::Fail,
                "2 of 2 messages dead-lettered in the last hour (100.0%)".into(),
                vec![]
            )
        );
        // Half the runs failed: at the limit, a failure.
        assert_eq!(
            by_code(&r, "BATON-H008"),
            (
                Level::Fail,
                "2 of 4 runs failed in the last hour (50.0%)".into(),
                vec![]
            )
        );
        // Exactly the warning age.
        assert_eq!(
            by_code(&r, "BATON-H009"),
            (Level::Warn, "1 rows waiting, oldest 5m".into(), vec![])
        );
        assert_eq!(
            by_code(&r, "BATON-H011"),
            (
                Level::Pass,
                "no serve has heartbeated in the last day".into(),
                vec![]
            )
        );

        let quiet = SystemFacts {
            messages_last_hour: 10,
            runs_last_hour: (10, 0),
            outbox: (0, Some(ago(4))),
            ..Default::default()
        };
        let r = evaluate(&[], &quiet, now(), Limits::default());
        assert_eq!(by_code(&r, "BATON-H005").0, Level::Pass);
        assert_eq!(
            by_code(&r, "BATON-H005").1,
            "no expired lease left unreleased"
        );
        assert_eq!(by_code(&r, "BATON-H006").0, Level::Pass);
        assert_eq!(
            by_code(&r, "BATON-H007"),
            (
                Level::Pass,
                "0 of 10 messages dead-lettered in the last hour (0.0%)".into(),
                vec![]
            )
        );
        assert_eq!(by_code(&r, "BATON-H008").0, Level::Pass);
        assert_eq!(
            by_code(&r, "BATON-H009"),
            (Level::Pass, "empty".into(), vec![])
        );

        // One failure in ten runs warns; an outbox an hour old fails.
        let some = SystemFacts {
            runs_last_hour: (10, 1),
            dead_letters: (1, 1),
            messages_last_hour: 10,
            outbox: (2, Some(ago(60))),
            ..Default::default()
        };
        let r = evaluate(&[], &some, now(), Limits::default());
        assert_eq!(by_code(&r, "BATON-H007").0, Level::Warn);
        assert_eq!(by_code(&r, "BATON-H008").0, Level::Warn);
        assert_eq!(
            by_code(&r, "BATON-H008").1,
            "1 of 10 runs failed in the last hour (10.0%)"
        );
        assert_eq!(by_code(&r, "BATON-H009").0, Level::Fail);
    }
}
