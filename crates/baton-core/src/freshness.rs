//! Output follows its inputs (G9): the verdicts that tell a date whose output is stale, short
//! although nothing is on its way, or whose next phase ran for an older generation.
//!
//! Pure: the facts come from run history, landings, owed runs and the next phase's record;
//! `reconcile` turns each verdict into a finding (BATON-R008, R009, R010) with its repair, and
//! `health` into a FAIL, so "no issues found" cannot coexist with any of them.

use crate::completion::Document;
use crate::gate::ModePolicy;
use crate::model::ProcessorName;
use jiff::{SignedDuration, Timestamp};
use std::collections::BTreeSet;

/// How long after a trigger the next phase may take before the date counts as behind.
pub const NEXT_PHASE_GRACE: SignedDuration = SignedDuration::from_mins(10);

/// What one processor's output depends on, for one date.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InputFacts {
    /// Upstream jobs it waits for that have not landed.
    pub missing_upstream: Vec<String>,
    /// The most recently recorded landing among its upstream jobs: (job, recorded at).
    pub latest_landing: Option<(String, Timestamp)>,
    /// The most recent successful run among the processors it depends on: (processor,
    /// finished at).
    pub newest_dependency: Option<(ProcessorName, Timestamp)>,
    /// Whether a run of it is owed (requested, deferred, partial, coalesced).
    pub owed: bool,
}

/// Why a processor's latest successful run (started at `started_at`) is stale, if it is: an
/// input landed, or a dependency finished a newer run, after it started.
pub fn stale_because(inputs: &InputFacts, started_at: Timestamp) -> Option<String> {
    if let Some((job, at)) = inputs
        .latest_landing
        .as_ref()
        .filter(|(_, at)| *at > started_at)
    {
        return Some(format!(
            "its latest run started at {started_at}, before {job} landed again at {at}"
        ));
    }
    inputs
        .newest_dependency
        .as_ref()
        .filter(|(_, at)| *at > started_at)
        .map(|(p, at)| {
            format!(
                "its latest run started at {started_at}, before {p}'s newer run finished at {at}"
            )
        })
}

/// The expected processors of a date that are not complete while nothing is on its way for
/// them (no owed run): the date is short and silent. Each comes with why, and whether a run
/// can help now (every input it waits for has landed); one still waiting for a landing is
/// started by that landing. Only dates that have begun are judged (by the caller).
pub fn short_and_silent<'a>(
    policy: &'a ModePolicy,
    complete: &BTreeSet<ProcessorName>,
    inputs: impl Fn(&ProcessorName) -> Option<&'a InputFacts>,
) -> Vec<(&'a ProcessorName, String, bool)> {
    policy
        .expected
        .iter()
        .filter(|p| !complete.contains(*p))
        .filter_map(|p| {
            let facts = inputs(p)?;
            if facts.owed {
                return None;
            }
            let landed = facts.missing_upstream.is_empty();
            let why = if landed {
                "every input it waits for has landed, and no run is owed".to_owned()
            } else {
                format!(
                    "it waits for {} (its landing will start it) and no run is owed",
                    facts.missing_upstream.join(", ")
                )
            };
            Some((p, why, landed))
        })
        .collect()
}

/// Whether the next phase has not run for the document's latest triggered generation
/// (`handled`: the latest generation it ran for) although the trigger is older than
/// [`NEXT_PHASE_GRACE`].
pub fn next_phase_behind(doc: &Document, handled: Option<u32>, now: Timestamp) -> Option<String> {
    if !doc.triggered || handled.is_some_and(|h| h >= doc.trigger_generation) {
        return None;
    }
    let at = doc.triggered_at?;
    if at.checked_add(NEXT_PHASE_GRACE).is_ok_and(|due| due > now) {
        return None;
    }
    Some(match handled {
        Some(h) => format!(
            "the next phase ran for generation {h}, but generation {} triggered at {at}",
            doc.trigger_generation
        ),
        None => format!(
            "generation {} triggered at {at}, and the next phase never ran",
            doc.trigger_generation
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn output_is_stale_when_an_input_or_a_dependency_is_newer() {
        let started = at("2024-03-02T12:00:00Z");
        let mut f = InputFacts::default();
        assert_eq!(stale_because(&f, started), None);
        f.latest_landing = Some(("nbac_gamebook_scraper".into(), at("2024-03-02T11:00:00Z")));
        assert_eq!(stale_because(&f, started), None, "landed before the run");
        f.latest_landing = Some(("nbac_gamebook_scraper".into(), at("2024-03-02T15:00:00Z")));
        assert!(
            stale_because(&f, started)
                .unwrap()
                .contains("nbac_gamebook_scraper")
        );
        f.latest_landing = None;
        f.newest_dependency = Some((
            "team_offense_game_summary".into(),
            at("2024-03-02T13:00:00Z"),
        ));
        assert!(
            stale_because(&f, started)
                .unwrap()
                .contains("team_offense_game_summary")
        );
    }

    #[test]
    fn a_next_phase_behind_its_generation_is_found_after_the_grace() {
        let mut doc = Document::new(
            "g".into(),
            crate::model::Partition::parse("2024-03-01").unwrap(),
        );
        doc.triggered = true;
        doc.trigger_generation = 2;
        doc.triggered_at = Some(at("2024-03-02T12:00:00Z"));
        let soon = at("2024-03-02T12:05:00Z");
        let later = at("2024-03-02T12:30:00Z");
        assert_eq!(
            next_phase_behind(&doc, Some(1), soon),
            None,
            "within the grace"
        );
        assert!(
            next_phase_behind(&doc, Some(1), later)
                .unwrap()
                .contains("generation 1")
        );
        assert!(
            next_phase_behind(&doc, None, later)
                .unwrap()
                .contains("never ran")
        );
        assert_eq!(next_phase_behind(&doc, Some(2), later), None);
        doc.triggered = false;
        assert_eq!(next_phase_behind(&doc, None, later), None);
    }

    #[test]
    fn an_input_at_the_instant_the_run_started_is_not_newer_and_the_grace_ends_on_time() {
        let started = at("2024-03-02T12:00:00Z");
        let f = InputFacts {
            latest_landing: Some(("nbac_gamebook_scraper".into(), started)),
            newest_dependency: Some(("team_offense_game_summary".into(), started)),
            ..Default::default()
        };
        assert_eq!(stale_because(&f, started), None, "the run read them");
        let f = InputFacts {
            newest_dependency: Some((
                "team_offense_game_summary".into(),
                at("2024-03-02T12:00:01Z"),
            )),
            ..f
        };
        assert_eq!(
            stale_because(&f, started).as_deref(),
            Some(
                "its latest run started at 2024-03-02T12:00:00Z, before team_offense_game_summary's newer run finished at 2024-03-02T12:00:01Z"
            )
        );
        let mut doc = Document::new(
            "g".into(),
            crate::model::Partition::parse("2024-03-01").unwrap(),
        );
        doc.triggered = true;
        doc.trigger_generation = 1;
        doc.triggered_at = Some(started);
        let due = started.checked_add(NEXT_PHASE_GRACE).unwrap();
        assert_eq!(
            next_phase_behind(&doc, None, due).as_deref(),
            Some("generation 1 triggered at 2024-03-02T12:00:00Z, and the next phase never ran"),
            "behind once the grace has passed, to the second"
        );
        let before = due.checked_sub(SignedDuration::from_secs(1)).unwrap();
        assert_eq!(next_phase_behind(&doc, None, before), None);
    }
}
