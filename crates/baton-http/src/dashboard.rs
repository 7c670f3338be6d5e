//! The dashboard at `/`: one server-rendered page, no JavaScript, that refreshes itself.
//! A matrix of dates x processors (done, running, failed, late, partial, waiting), each
//! date's upstream landings (batches, first and latest), trigger state, duplicate rows and
//! dead letters, completion accuracy over time as an inline SVG chart, and the open alerts.
//!
//! Every processor cell carries `data-date`, `data-processor` and `data-state`, every
//! landing cell `data-date`, `data-job`, `data-batches`, `data-first` and `data-latest`, so a browser test (and
//! a person's scraper) can read the page without parsing prose.

use crate::Api;
use baton_core::model::Partition;
use baton_core::schedule::{self, LandingStatus};
use baton_ports::{RunRecord, RunStatus};
use baton_serve::status::dead_letter_date;
use jiff::Timestamp;

type Result<T> = std::result::Result<T, baton_serve::Error>;
use std::fmt::Write;

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A processor's state for a date, as the matrix shows it.
fn cell_state(
    api: &Api,
    runs: &[RunRecord],
    processor: &baton_core::config::Processor,
    date: Partition,
    owed: &[baton_ports::PendingRequest],
    landings: &[baton_ports::Landing],
    now: Timestamp,
) -> (&'static str, String) {
    let latest = runs
        .iter()
        .filter(|r| r.processor == processor.name)
        .max_by_key(|r| r.started_at);
    if let Some(r) = latest {
        let state = match r.status {
            RunStatus::Running => "running",
            RunStatus::Success | RunStatus::NoData => "done",
            RunStatus::Partial => "partial",
            RunStatus::Failed | RunStatus::Fenced | RunStatus::Abandoned => "failed",
        };
        let detail = match &r.error {
            Some(e) => format!("{} by {}: {e}", r.status, r.holder),
            None => format!("{} by {}, {} rows", r.status, r.holder, r.rows_written),
        };
        return (state, detail);
    }
    if let Some(o) = owed.iter().find(|o| o.processor == processor.name) {
        return ("waiting", format!("{}: {}", o.kind, o.reason));
    }
    let pipeline = &api.pipeline;
    for job in pipeline
        .upstream
        .iter()
        .filter(|j| processor.upstream.contains(&j.name))
    {
        let landed = landings
            .iter()
            .find(|l| l.job == job.name)
            .map(|l| l.landed_at);
        let v = schedule::judge(
            job,
            date,
            landed,
            &pipeline.timezone,
            &pipeline.timezone_name,
            now,
        );
        if matches!(v.status, LandingStatus::Missing | LandingStatus::Late) {
            return ("late", v.evidence);
        }
    }
    ("pending", "not run".into())
}

/// Renders the page for `dates` (oldest first; shown newest first).
pub fn render(api: &Api, dates: &[Partition], now: Timestamp) -> Result<String> {
    let pipeline = &api.pipeline;
    let facts = Facts {
        letters: api.store.dead_letters()?,
        owed: api.store.pending_requests()?,
        verdicts: baton_serve::status::verdicts(
            pipeline,
            api.store.as_ref(),
            api.warehouse.as_ref(),
            dates,
            now,
        )?,
    };
    let backlog = api.store.backlog()?;
    let alerts = baton_serve::alerting::open_incidents(api.store.as_ref())?;
    let mut accuracy = Vec::new();
    let mut rows = String::new();
    for &date in dates.iter().rev() {
        accuracy.push((date, matrix_row(api, &facts, date, now, &mut rows)?));
    }
    let oldest = backlog.oldest.map_or("-".to_owned(), |t| {
        format!("{}s", now.duration_since(t).as_secs())
    });
    Ok(page(&Sections {
        today: dates
            .last()
            .copied()
            .unwrap_or_else(|| Partition::new(now.to_zoned(pipeline.timezone.clone()).date())),
        name: escape(&pipeline.name),
        tz: escape(&pipeline.timezone_name),
        now,
        pending: backlog.pending,
        oldest,
        letters: facts
            .letters
            .iter()
            .filter(|l| l.state == baton_core::dead_letter::LetterState::Open)
            .count(),
        letters_html: letters_section(&facts.letters),
        open: alerts.len(),
        alerts_html: alerts_section(&alerts),
        chart: accuracy_chart(&accuracy),
        head: matrix_head(pipeline),
        rows,
    }))
}

/// What the matrix rows read, once for every date.
struct Facts {
    letters: Vec<baton_ports::DeadLetter>,
    owed: Vec<baton_ports::PendingRequest>,
    verdicts: Vec<(String, baton_core::audit::DateVerdict)>,
}

/// The page's parts, each already rendered (or escaped) for the page template.
struct Sections {
    today: Partition,
    name: String,
    tz: String,
    now: Timestamp,
    pending: u64,
    oldest: String,
    letters: usize,
    letters_html: String,
    open: usize,
    alerts_html: String,
    chart: String,
    head: String,
    rows: String,
}

/// The matrix's header row: a column per processor, per gate, then the counts.
fn matrix_head(pipeline: &baton_core::config::Pipeline) -> String {
    let mut head = String::from("<tr><th>date</th>");
    for job in &pipeline.upstream {
        let _ = write!(
            head,
            "<th class=\"landing\" title=\"upstream job: batches landed\">{}</th>",
            escape(&job.name)
        );
    }
    for p in &pipeline.processors {
        let _ = write!(
            head,
            "<th title=\"phase {}\">{}</th>",
            p.phase,
            escape(p.name.as_str())
        );
    }
    for gate in &pipeline.gates {
        let _ = write!(head, "<th>{}</th>", escape(gate.id.as_str()));
    }
    head.push_str("<th>duplicate rows</th><th>dead letters</th></tr>");
    head
}

/// Appends one date's matrix row (a cell per processor, the trigger state per gate,
/// duplicate rows and dead letters) to `rows`; returns the date's completion accuracy.
fn matrix_row(
    api: &Api,
    facts: &Facts,
    date: Partition,
    now: Timestamp,
    rows: &mut String,
) -> Result<f64> {
    let pipeline = &api.pipeline;
    let runs = api.store.runs(date)?;
    let owed_here: Vec<_> = facts
        .owed
        .iter()
        .filter(|o| o.partition == date)
        .cloned()
        .collect();
    let _ = write!(
        rows,
        "<tr data-date=\"{date}\"><th scope=\"row\"><a href=\"/dates/{date}\">{date}</a></th>"
    );
    let landings = api.store.landings(date)?;
    landing_cells(pipeline, date, &landings, rows);
    for p in &pipeline.processors {
        let (state, detail) = cell_state(api, &runs, p, date, &owed_here, &landings, now);
        let _ = write!(
            rows,
            "<td class=\"cell {state}\" data-date=\"{date}\" data-processor=\"{}\" data-state=\"{state}\" title=\"{}\"><a href=\"/dates/{date}\">{state}</a></td>",
            escape(p.name.as_str()),
            escape(&detail)
        );
    }
    let mut dups = 0;
    let (mut recorded, mut ran) = (0, 0);
    for gate in &pipeline.gates {
        let verdict = facts
            .verdicts
            .iter()
            .find(|(g, v)| g == gate.id.as_str() && v.date == date)
            .map(|(_, v)| v);
        let expected = verdict.map_or(0, |v| v.expected);
        dups += verdict.map_or(0, |v| v.duplicate_rows);
        let (stored, actual) = baton_serve::checks::accuracy(
            pipeline,
            api.store.as_ref(),
            api.warehouse.as_ref(),
            gate,
            &[date],
            now,
        )?;
        recorded += stored;
        ran += actual;
        let doc = api.store.document(&gate.id, date)?;
        let (state, text) = trigger_state(doc.as_ref(), expected);
        // A trigger that went out with a quality warning keeps its state, marked warned.
        let warned = if doc.as_ref().is_some_and(|d| !d.warnings.is_empty()) {
            " warned"
        } else {
            ""
        };
        let _ = write!(
            rows,
            "<td class=\"trigger {state}{warned}\" data-gate=\"{}\" data-trigger=\"{state}\">{}</td>",
            escape(gate.id.as_str()),
            escape(&text)
        );
    }
    let dead = facts
        .letters
        .iter()
        .filter(|l| dead_letter_date(l) == Some(date))
        .count();
    let _ = write!(
        rows,
        "<td class=\"num{}\" data-dups=\"{dups}\">{dups}</td><td class=\"num{}\" data-dead=\"{dead}\">{dead}</td></tr>",
        if dups > 0 { " bad" } else { "" },
        if dead > 0 { " bad" } else { "" }
    );
    Ok(percent(recorded, ran))
}

/// One cell per upstream job: how many batches landed for the date, when the first landed
/// and (with several) when the latest was recorded, in the pipeline's time zone; the full
/// times are in `data-first` and `data-latest` (empty where none landed).
fn landing_cells(
    pipeline: &baton_core::config::Pipeline,
    date: Partition,
    landings: &[baton_ports::Landing],
    rows: &mut String,
) {
    let local = |t: Timestamp| {
        t.to_zoned(pipeline.timezone.clone())
            .strftime("%m-%d %H:%M")
            .to_string()
    };
    for l in baton_serve::status::job_landings(pipeline, landings) {
        let time = |t: Option<Timestamp>| t.map_or_else(String::new, |t| t.to_string());
        let text = match (l.batches, l.landed_at, l.latest_at) {
            (1, Some(first), _) => format!("1 batch<br><small>{}</small>", local(first)),
            (n, Some(first), Some(latest)) => format!(
                "{n} batches<br><small>first {}<br>latest {}</small>",
                local(first),
                local(latest)
            ),
            _ => "-".to_owned(),
        };
        let _ = write!(
            rows,
            "<td class=\"landing\" data-date=\"{date}\" data-job=\"{}\" data-batches=\"{}\" data-first=\"{}\" data-latest=\"{}\">{text}</td>",
            escape(&l.job),
            l.batches,
            time(l.landed_at),
            time(l.latest_at),
        );
    }
}

/// A gate's trigger state for a date, and its text, from the completion document.
fn trigger_state(
    doc: Option<&baton_core::completion::Document>,
    expected: usize,
) -> (&'static str, String) {
    match doc {
        Some(d) if d.triggered => (
            "triggered",
            format!(
                "triggered g{} ({}/{}){}",
                d.trigger_generation,
                d.completed_count,
                expected,
                d.warnings
                    .iter()
                    .map(|w| format!(", warning: {} ({})", w.check, w.evidence))
                    .collect::<String>()
            ),
        ),
        Some(d) if d.blocked.is_some() => (
            "blocked",
            format!(
                "blocked: {}",
                d.blocked
                    .as_ref()
                    .map_or(String::new(), |b| format!("{} ({})", b.check, b.evidence))
            ),
        ),
        Some(d) => (
            "waiting",
            format!("waiting {}/{}", d.completed_count, expected),
        ),
        None => ("none", "no completions".into()),
    }
}

/// The open alerts, as a list (or a line saying there are none).
fn alerts_section(alerts: &[baton_core::alert::Incident]) -> String {
    if alerts.is_empty() {
        return "<p class=\"ok\" id=\"alerts\" data-open=\"0\">No open alerts.</p>".to_owned();
    }
    let mut s = format!(
        "<ul class=\"alerts\" id=\"alerts\" data-open=\"{}\">",
        alerts.len()
    );
    for a in alerts {
        let _ = write!(
            s,
            "<li><strong>{}</strong> open since {}: {}</li>",
            escape(&a.policy),
            a.opened_at,
            escape(&a.summary)
        );
    }
    s.push_str("</ul>");
    s
}

/// How many open letters the page lists (the rest are a link away).
const LETTERS_SHOWN: usize = 50;

/// The open dead letters, newest first: reason, topic, first seen, date, the payload's
/// start, and how to replay or retire each (or a line saying there are none).
fn letters_section(letters: &[baton_ports::DeadLetter]) -> String {
    use baton_core::dead_letter::{FIELD_CAP_BYTES, LetterState, clip};
    let open: Vec<_> = letters
        .iter()
        .filter(|l| l.state == LetterState::Open)
        .collect();
    if open.is_empty() {
        return "<p class=\"ok\" id=\"letters\" data-open=\"0\">No open dead letters.</p>"
            .to_owned();
    }
    let mut s = format!(
        "<table id=\"letters\" data-open=\"{}\"><thead><tr><th>id</th><th>first seen</th><th>topic</th><th>date</th><th>reason</th><th>payload</th><th>what to do</th></tr></thead><tbody>",
        open.len()
    );
    for l in open.iter().rev().take(LETTERS_SHOWN) {
        let view = baton_serve::dead_letters::View::of(l);
        let payload = match &view.payload {
            Some(text) => clip(text, FIELD_CAP_BYTES).into_owned(),
            None => format!("({} bytes, not UTF-8)", view.payload_bytes),
        };
        let _ = write!(
            s,
            "<tr><td>{id}</td><td>{at}</td><td>{topic}</td><td>{date}</td><td class=\"reason\">{reason}</td><td><code>{payload}</code></td><td class=\"how\">fix the cause, then <code>baton dead-letters replay {id}</code> (or <code>retire {id} --reason ...</code>); whole: <a href=\"/api/v1/dead-letters/{id}\">/api/v1/dead-letters/{id}</a></td></tr>",
            id = l.id,
            at = l.recorded_at,
            topic = escape(if l.letter.topic.is_empty() {
                "-"
            } else {
                &l.letter.topic
            }),
            date = escape(view.date.as_deref().unwrap_or("(none)")),
            reason = escape(&clip(&l.letter.reason, FIELD_CAP_BYTES)),
            payload = escape(&payload),
        );
    }
    s.push_str("</tbody></table>");
    if open.len() > LETTERS_SHOWN {
        let _ = write!(
            s,
            "<p class=\"meta\">{} more: <a href=\"/api/v1/dead-letters\">/api/v1/dead-letters</a></p>",
            open.len() - LETTERS_SHOWN
        );
    }
    s
}

/// The whole page around its sections: style, tiles, alerts, chart and matrix.
fn page(s: &Sections) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="30">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>baton: {name}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d232a; }}
h1 {{ font-size: 1.3rem; margin: 0 0 .2rem; }} h2 {{ font-size: 1.05rem; margin: 1.4rem 0 .4rem; }}
.meta {{ color: #5b6670; }}
table {{ border-collapse: collapse; }} th, td {{ border: 1px solid #d7dde2; padding: .25rem .5rem; text-align: center; }}
th {{ background: #f3f5f7; font-weight: 600; font-size: 12px; max-width: 9rem; overflow-wrap: anywhere; }} th[scope=row] {{ text-align: left; white-space: nowrap; font-size: 14px; }}
.cell.done {{ background: #d8f3dc; }} .cell.running {{ background: #dbeafe; }} .cell.failed {{ background: #fde2e1; color: #9b1c1c; font-weight: 600; }}
.cell.late {{ background: #fef3c7; }} .cell.partial {{ background: #fde68a; }} .cell.waiting {{ background: #ede9fe; }} .cell.pending {{ color: #8a949c; }}
.trigger.triggered {{ background: #d8f3dc; }} .trigger.blocked {{ background: #fde2e1; }} .trigger.waiting {{ background: #fef3c7; }} .trigger.warned {{ outline: 2px solid #f59f00; }}
.num.bad {{ background: #fde2e1; font-weight: 600; }} td.landing {{ color: #5b6670; font-size: 12px; white-space: nowrap; }}
.tiles {{ display: flex; gap: 1rem; }} .tile {{ border: 1px solid #d7dde2; border-radius: 6px; padding: .5rem .9rem; }}
td.reason, td.how {{ text-align: left; max-width: 28rem; overflow-wrap: anywhere; }} td code {{ font-size: 12px; overflow-wrap: anywhere; }}
td.cell a {{ color: inherit; text-decoration: none; display: block; }} th a {{ color: inherit; }}
.tile b {{ display: block; font-size: 1.3rem; }} .alerts li {{ color: #9b1c1c; }} .ok {{ color: #2d6a4f; }}
</style></head>
<body>
<h1>baton: {name}</h1>
<p class="meta">As of {now} ({tz}); this page refreshes every 30 s.</p>
<div class="tiles">
<div class="tile">outbox backlog<b id="backlog">{pending}</b>oldest {oldest}</div>
<div class="tile">dead letters<b id="dead-letters">{letters}</b></div>
<div class="tile">open alerts<b id="open-alerts">{open}</b></div>
</div>
<h2>Open alerts</h2>
{alerts_html}
<h2 id="dead-letter-list">Dead letters</h2>
{letters_html}
<h2>Completion accuracy</h2>
{chart}
<h2>Dates x processors</h2>
<table id="matrix"><thead>{head}</thead><tbody>{rows}</tbody></table>
<p class="meta">done = succeeded (or found no data), partial = ran without a late input and is owed a rerun, waiting = deferred for an input, late = an upstream input is past due, failed = failed or fenced; an upstream job's column counts the batches landed for the date, with the first landing and the latest batch ({tz}). Each cell and date leads to the <a href="/dates/{today}">date's page</a> (why, and its timeline); <a href="/lateness">upstream lateness</a>; <a href="/#dead-letter-list">dead letters</a>. JSON: <a href="/api/v1/dates">/api/v1/dates</a>, <a href="/api/v1/health">/api/v1/health</a>, <a href="/metrics">/metrics</a>.</p>
</body></html>
"#,
        name = s.name,
        tz = s.tz,
        now = s.now,
        pending = s.pending,
        oldest = s.oldest,
        letters = s.letters,
        letters_html = s.letters_html,
        open = s.open,
        alerts_html = s.alerts_html,
        chart = s.chart,
        head = s.head,
        rows = s.rows,
        today = s.today,
    )
}

/// Recorded completions as a percentage of those that ran (100 when none ran).
fn percent(recorded: usize, ran: usize) -> f64 {
    if ran == 0 {
        100.0
    } else {
        100.0 * recorded as f64 / ran as f64
    }
}

/// Accuracy per date (recorded over actual completions, every gate) as an inline SVG line.
fn accuracy_chart(points: &[(Partition, f64)]) -> String {
    let mut per_date = points.to_vec();
    per_date.sort_by_key(|(d, _)| *d);
    let (w, h, pad) = (640.0, 160.0, 30.0);
    let n = per_date.len().max(2) as f64 - 1.0;
    let xy = |i: usize, v: f64| {
        (
            pad + (w - 2.0 * pad) * i as f64 / n,
            pad + (h - 2.0 * pad) * (100.0 - v) / 100.0,
        )
    };
    let mut line = String::new();
    let mut dots = String::new();
    for (i, (d, v)) in per_date.iter().enumerate() {
        let (x, y) = xy(i, *v);
        let _ = write!(line, "{x:.1},{y:.1} ");
        let _ = write!(
            dots,
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3.5\" fill=\"{}\" data-date=\"{d}\" data-accuracy=\"{v:.1}\"><title>{d}: {v:.1}%</title></circle>",
            if *v < 100.0 { "#c0392b" } else { "#2d6a4f" }
        );
    }
    let (first, last) = (
        per_date
            .first()
            .map(|(d, _)| d.to_string())
            .unwrap_or_default(),
        per_date
            .last()
            .map(|(d, _)| d.to_string())
            .unwrap_or_default(),
    );
    format!(
        r##"<svg id="accuracy" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="completion accuracy per date">
<line x1="{pad}" y1="{pad}" x2="{x2}" y2="{pad}" stroke="#d7dde2"/><text x="2" y="{ty}" font-size="10">100%</text>
<line x1="{pad}" y1="{yb}" x2="{x2}" y2="{yb}" stroke="#d7dde2"/><text x="8" y="{yb}" font-size="10">0%</text>
<polyline points="{line}" fill="none" stroke="#2563eb" stroke-width="2"/>{dots}
<text x="{pad}" y="{tl}" font-size="10">{first}</text><text x="{x3}" y="{tl}" font-size="10">{last}</text></svg>"##,
        x2 = w - pad,
        x3 = w - pad - 60.0,
        yb = h - pad,
        ty = pad + 3.0,
        tl = h - 8.0,
    )
}
