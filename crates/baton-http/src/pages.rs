//! The dashboard's other pages, server-rendered like `/`, no JavaScript: `/dates/{date}`
//! (why the date stands where it does, from `baton_serve::explain`, and its timeline) and
//! `/lateness` (each upstream job's expected and actual landings over a range, judged by
//! `baton_core::schedule::judge`). Times show in the pipeline's time zone, with UTC in
//! each time's `title=`; every row carries `data-*` attributes for tests and scrapers.

use crate::Api;
use crate::dashboard::escape;
use baton_core::explain::{GateExplanation, ProcessorState};
use baton_core::model::Partition;
use baton_core::schedule::LandingStatus;
use baton_serve::explain::Explanation;
use jiff::Timestamp;
use std::fmt::Write;

/// A time on the pipeline's wall clock, with UTC on hover.
fn time(api: &Api, at: Timestamp) -> String {
    let local = at
        .to_zoned(api.pipeline.timezone.clone())
        .strftime("%Y-%m-%d %H:%M:%S");
    format!("<time datetime=\"{at}\" title=\"{at} UTC\">{local}</time>")
}

fn shell(title: &str, tz: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>baton: {title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d232a; }}
h1 {{ font-size: 1.3rem; margin: 0 0 .2rem; }} h2 {{ font-size: 1.05rem; margin: 1.4rem 0 .4rem; }}
.meta {{ color: #5b6670; }} table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #d7dde2; padding: .25rem .5rem; text-align: left; vertical-align: top; }}
th {{ background: #f3f5f7; font-weight: 600; font-size: 12px; }}
.done, .on_time, .triggered, .met {{ background: #d8f3dc; }} .failed, .missing, .blocked, .fail {{ background: #fde2e1; }}
.waiting_on_landing, .owed, .late, .waiting, .warn, .settling {{ background: #fef3c7; }} .running, .ready {{ background: #dbeafe; }}
.summary {{ font-size: 1.05rem; }}
</style></head>
<body>
<p class="meta"><a href="/">dashboard</a> · <a href="/lateness">lateness</a> · <a href="/#dead-letter-list">dead letters</a></p>
{body}
<p class="meta">Times in {tz}; hover a time for UTC.</p>
</body></html>
"#
    )
}

/// The page of one date.
pub fn date_page(api: &Api, e: &Explanation) -> String {
    let tz = escape(&api.pipeline.timezone_name);
    let mut b = format!(
        "<h1>{}</h1><p class=\"meta\">Judged at {} · JSON: <a href=\"/api/v1/dates/{}/explain\">explain</a></p>",
        e.date,
        time(api, e.now),
        e.date
    );
    for g in &e.gates {
        gate_section(g, &mut b);
    }
    b.push_str("<h2>Landings</h2><table id=\"landings\"><tr><th>upstream job</th><th>first landed</th><th>latest batch</th><th>batches</th></tr>");
    for l in &e.landings {
        let t = |x: Option<Timestamp>| x.map_or("-".into(), |x| time(api, x));
        let _ = write!(
            b,
            "<tr data-job=\"{}\" data-batches=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&l.job),
            l.batches,
            escape(&l.job),
            t(l.landed_at),
            t(l.latest_at),
            l.batches
        );
    }
    b.push_str("</table><h2>Owed runs</h2>");
    if e.owed_runs.is_empty() {
        b.push_str("<p id=\"owed\">none</p>");
    } else {
        b.push_str("<table id=\"owed\"><tr><th>processor</th><th>kind</th><th>since</th><th>reason</th></tr>");
        for r in &e.owed_runs {
            let _ = write!(
                b,
                "<tr data-processor=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(r.processor.as_str()),
                escape(r.processor.as_str()),
                r.kind,
                time(api, r.since),
                escape(&r.reason)
            );
        }
        b.push_str("</table>");
    }
    b.push_str("<h2>Next scheduled runs</h2><ul id=\"next-runs\">");
    if e.next_runs.is_empty() {
        b.push_str("<li>none: the pipeline has no [[schedules]]</li>");
    }
    for n in &e.next_runs {
        let _ = write!(
            b,
            "<li data-schedule=\"{}\">{} (<code>{}</code>) at {}, for {}</li>",
            escape(&n.schedule),
            escape(&n.schedule),
            escape(&n.cron),
            time(api, n.at),
            n.for_date
        );
    }
    b.push_str("</ul><h2>Timeline</h2><table id=\"timeline\"><tr><th>when</th><th>event</th><th>subject</th><th>detail</th></tr>");
    for ev in &e.timeline.events {
        let kind = serde_json::to_value(ev.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let _ = write!(
            b,
            "<tr data-kind=\"{kind}\" data-at=\"{}\"><td>{}</td><td>{kind}</td><td>{}</td><td>{}</td></tr>",
            ev.at,
            time(api, ev.at),
            escape(&ev.subject),
            escape(&ev.detail)
        );
    }
    b.push_str("</table>");
    for n in &e.timeline.notes {
        let _ = write!(b, "<p class=\"meta note\">{}</p>", escape(n));
    }
    shell(&e.date.to_string(), &tz, &b)
}

fn gate_section(g: &GateExplanation, b: &mut String) {
    let verdict = serde_json::to_value(&g.standing)
        .ok()
        .and_then(|v| v["verdict"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let mode = match g.mode {
        baton_core::gate::Mode::Overnight => "overnight",
        baton_core::gate::Mode::SameDay => "same day",
    };
    let _ = write!(
        b,
        "<h2>Gate {}</h2><p class=\"summary {verdict}\" data-gate=\"{}\" data-verdict=\"{verdict}\">{}</p><p class=\"meta\">{mode} mode · generation {}</p>",
        escape(&g.gate),
        escape(&g.gate),
        escape(&g.summary),
        g.generation
    );
    b.push_str("<table class=\"processors\"><tr><th>expected processor</th><th>critical</th><th>state</th><th>detail</th></tr>");
    for p in &g.processors {
        let state = serde_json::to_value(&p.state)
            .ok()
            .and_then(|v| v["state"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let detail = match &p.state {
            ProcessorState::Done {
                status,
                run_id,
                record_count,
            } => format!("{status}, run {run_id}, {record_count} rows"),
            ProcessorState::Owed { reason } => reason.clone(),
            ProcessorState::WaitingOnLanding { jobs } => format!("on {}", jobs.join(", ")),
            ProcessorState::Failed { error } => error.clone().unwrap_or_default(),
            _ => String::new(),
        };
        let _ = write!(
            b,
            "<tr data-processor=\"{}\" data-state=\"{state}\"><td>{}</td><td>{}</td><td class=\"{state}\">{}</td><td>{}</td></tr>",
            escape(p.processor.as_str()),
            escape(p.processor.as_str()),
            if p.critical { "yes" } else { "" },
            p.state.word(),
            escape(&detail)
        );
    }
    b.push_str(
        "</table><table class=\"rules\"><tr><th>rule</th><th>met</th><th>measured</th></tr>",
    );
    for r in &g.rules {
        let met = if r.met { "met" } else { "not met" };
        let _ = write!(
            b,
            "<tr data-rule=\"{}\" data-met=\"{}\"><td>{}</td><td class=\"{}\">{met}</td><td>{}</td></tr>",
            escape(&r.rule),
            r.met,
            escape(&r.rule),
            if r.met { "met" } else { "" },
            escape(&r.measured)
        );
    }
    b.push_str("</table>");
    if g.checks.is_empty() {
        b.push_str("<p class=\"meta\">No check blocks or warns.</p>");
    } else {
        b.push_str("<table class=\"checks\"><tr><th>check</th><th>outcome</th><th>measured against threshold</th></tr>");
        for c in &g.checks {
            let o = format!("{:?}", c.outcome).to_lowercase();
            let _ = write!(
                b,
                "<tr data-check=\"{}\" data-outcome=\"{o}\"><td>{}</td><td class=\"{o}\">{o}</td><td>{}</td></tr>",
                escape(&c.check),
                escape(&c.check),
                escape(&c.evidence)
            );
        }
        b.push_str("</table>");
    }
}

/// The lateness page over `dates` (newest first).
pub fn lateness_page(
    api: &Api,
    dates: &[Partition],
    verdicts: &[baton_core::schedule::LandingVerdict],
) -> String {
    let tz = escape(&api.pipeline.timezone_name);
    let mut b = format!(
        "<h1>Upstream lateness</h1><p class=\"meta\">{} to {}: when each job was expected (its schedule) and when it first landed (the landings table).</p><table id=\"lateness\"><tr><th>date</th>",
        dates.first().map(ToString::to_string).unwrap_or_default(),
        dates.last().map(ToString::to_string).unwrap_or_default()
    );
    for job in &api.pipeline.upstream {
        let _ = write!(b, "<th>{}</th>", escape(&job.name));
    }
    b.push_str("</tr>");
    for &date in dates.iter().rev() {
        let _ = write!(
            b,
            "<tr><th scope=\"row\"><a href=\"/dates/{date}\">{date}</a></th>"
        );
        for v in verdicts.iter().filter(|v| v.partition == date) {
            let status = serde_json::to_value(v.status)
                .ok()
                .and_then(|s| s.as_str().map(str::to_owned))
                .unwrap_or_default();
            let landed = v.landed_at.map_or("not landed".into(), |t| time(api, t));
            let _ = write!(
                b,
                "<td class=\"{status}\" data-date=\"{date}\" data-job=\"{}\" data-status=\"{status}\" data-expected=\"{}\" data-landed=\"{}\">expected {}<br>{landed}</td>",
                escape(&v.job),
                v.expected_at,
                v.landed_at.map(|t| t.to_string()).unwrap_or_default(),
                time(api, v.expected_at)
            );
        }
        b.push_str("</tr>");
    }
    b.push_str("</table>");
    let late = verdicts
        .iter()
        .filter(|v| matches!(v.status, LandingStatus::Late | LandingStatus::Missing))
        .count();
    let _ = write!(
        b,
        "<p id=\"late-count\" data-late=\"{late}\">{late} late or missing landing(s) in the range.</p>"
    );
    shell("lateness", &tz, &b)
}
