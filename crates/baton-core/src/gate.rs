//! Gates and their trigger policy: which processors a gate expects for a partition (by
//! mode: overnight for past dates, same-day for today and later, in the pipeline's time
//! zone), and whether the completed set satisfies one of the gate's rules.

use crate::model::{Partition, ProcessorName};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use std::collections::BTreeSet;

/// One rule that, when satisfied, triggers the next phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Every expected processor is complete.
    AllComplete,
    /// Every critical processor is complete, and at least `percent`% of the expected are.
    CriticalPlusMajority {
        /// The share of expected processors needed, in percent.
        percent: u32,
    },
}

impl Rule {
    /// Parses `all_complete` or `critical_plus_majority_<N>pct`.
    pub fn parse(text: &str) -> Option<Self> {
        if text == "all_complete" {
            return Some(Self::AllComplete);
        }
        let percent: u32 = text
            .strip_prefix("critical_plus_majority_")?
            .strip_suffix("pct")?
            .parse()
            .ok()?;
        (1..=100)
            .contains(&percent)
            .then_some(Self::CriticalPlusMajority { percent })
    }
    /// The rule's name, recorded as the trigger reason.
    pub fn name(self) -> String {
        match self {
            Self::AllComplete => "all_complete".to_owned(),
            Self::CriticalPlusMajority { percent } => {
                format!("critical_plus_majority_{percent}pct")
            }
        }
    }
}

/// Which processors a mode expects, which are critical, and the rules that trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct ModePolicy {
    /// The processors expected for a partition.
    pub expected: Vec<ProcessorName>,
    /// The critical subset.
    pub critical: Vec<ProcessorName>,
    /// The rules, any of which triggers.
    pub rules: Vec<Rule>,
}

/// Which mode applies to a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A date before today.
    Overnight,
    /// Today or later.
    SameDay,
}

/// Whether a gate's policy is satisfied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Trigger, for this reason (the rule's name).
    Satisfied {
        /// The rule that was satisfied.
        reason: String,
    },
    /// Wait for these processors.
    Waiting {
        /// Expected processors not yet complete.
        missing: Vec<ProcessorName>,
    },
}

/// The hand-over from one phase to the next.
#[derive(Debug, Clone)]
pub struct Gate {
    /// Its name.
    pub id: crate::model::GateId,
    /// The topic its processors' completions arrive on.
    pub completion_topic: String,
    /// The topic its trigger is published on.
    pub trigger_topic: String,
    /// The phase the trigger starts.
    pub next_phase: u32,
    /// The policy for dates before today.
    pub overnight: ModePolicy,
    /// The policy for today and later; the overnight policy when absent.
    pub same_day: Option<ModePolicy>,
    /// The pipeline's time zone, which decides what "today" is.
    pub timezone: TimeZone,
    /// Quality checks that must pass before the gate triggers.
    pub checks: Vec<crate::quality::QualityCheck>,
}

impl Gate {
    /// Today, in the gate's time zone.
    pub fn today(&self, now: Timestamp) -> Partition {
        Partition::new(now.to_zoned(self.timezone.clone()).date())
    }
    /// The mode and policy for a partition at `now`.
    pub fn policy_for(&self, partition: Partition, now: Timestamp) -> (Mode, &ModePolicy) {
        match &self.same_day {
            Some(same_day) if partition >= self.today(now) => (Mode::SameDay, same_day),
            _ => (Mode::Overnight, &self.overnight),
        }
    }
    /// Whether the gate ever expects this processor.
    pub fn watches(&self, processor: &ProcessorName) -> bool {
        self.overnight.expected.contains(processor)
            || self
                .same_day
                .as_ref()
                .is_some_and(|m| m.expected.contains(processor))
    }
    /// Whether `completed` satisfies the policy for `partition` at `now`.
    pub fn evaluate(
        &self,
        partition: Partition,
        now: Timestamp,
        completed: &BTreeSet<ProcessorName>,
    ) -> Verdict {
        let (_, policy) = self.policy_for(partition, now);
        evaluate(policy, completed)
    }
}

/// Whether `completed` satisfies `policy`; the first satisfied rule is the reason.
pub fn evaluate(policy: &ModePolicy, completed: &BTreeSet<ProcessorName>) -> Verdict {
    let done = policy
        .expected
        .iter()
        .filter(|p| completed.contains(*p))
        .count();
    let critical_done = policy.critical.iter().all(|p| completed.contains(p));
    for rule in &policy.rules {
        let satisfied = match rule {
            Rule::AllComplete => done == policy.expected.len(),
            Rule::CriticalPlusMajority { percent } => {
                critical_done
                    && done as u64 * 100 >= u64::from(*percent) * policy.expected.len() as u64
            }
        };
        if satisfied {
            return Verdict::Satisfied {
                reason: rule.name(),
            };
        }
    }
    Verdict::Waiting {
        missing: policy
            .expected
            .iter()
            .filter(|p| !completed.contains(*p))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Pipeline;

    fn set(names: &[&str]) -> BTreeSet<ProcessorName> {
        names.iter().map(|n| ProcessorName::from(*n)).collect()
    }

    #[test]
    fn rules_parse() {
        assert_eq!(Rule::parse("all_complete"), Some(Rule::AllComplete));
        assert_eq!(
            Rule::parse("critical_plus_majority_60pct"),
            Some(Rule::CriticalPlusMajority { percent: 60 })
        );
        assert_eq!(Rule::parse("critical_plus_majority_0pct"), None);
        assert_eq!(Rule::parse("most"), None);
    }

    #[test]
    fn overnight_needs_critical_plus_sixty_percent() {
        let p = Pipeline::reference().unwrap();
        let g = &p.gates[0];
        let day: Timestamp = "2024-03-05T12:00:00Z".parse().unwrap();
        let yesterday = Partition::parse("2024-03-04").unwrap();
        // Two non-critical and one critical: 60% but a critical one is missing.
        let v = g.evaluate(
            yesterday,
            day,
            &set(&[
                "player_game_summary",
                "team_offense_game_summary",
                "team_defense_game_summary",
            ]),
        );
        assert!(matches!(v, Verdict::Waiting { .. }), "{v:?}");
        let v = g.evaluate(
            yesterday,
            day,
            &set(&[
                "player_game_summary",
                "upcoming_player_game_context",
                "team_defense_game_summary",
            ]),
        );
        assert_eq!(
            v,
            Verdict::Satisfied {
                reason: "critical_plus_majority_60pct".into()
            }
        );
        let all = set(&[
            "player_game_summary",
            "upcoming_player_game_context",
            "team_defense_game_summary",
            "team_offense_game_summary",
            "upcoming_team_game_context",
        ]);
        assert_eq!(
            g.evaluate(yesterday, day, &all),
            Verdict::Satisfied {
                reason: "all_complete".into()
            }
        );
    }

    #[test]
    fn a_waiting_gate_names_exactly_the_processors_still_missing() {
        // What `status` shows an operator as what the date waits for.
        let p = Pipeline::reference().unwrap();
        let g = &p.gates[0];
        let day: Timestamp = "2024-03-05T12:00:00Z".parse().unwrap();
        let yesterday = Partition::parse("2024-03-04").unwrap();
        let v = g.evaluate(
            yesterday,
            day,
            &set(&["player_game_summary", "team_offense_game_summary"]),
        );
        let Verdict::Waiting { missing } = v else {
            panic!("{v:?}")
        };
        assert_eq!(
            missing.into_iter().collect::<BTreeSet<_>>(),
            set(&[
                "team_defense_game_summary",
                "upcoming_player_game_context",
                "upcoming_team_game_context",
            ])
        );
    }

    #[test]
    fn same_day_is_decided_in_the_pipeline_time_zone() {
        let p = Pipeline::reference().unwrap();
        let g = &p.gates[0];
        // 02:00 UTC on the 5th is still the 4th in New York: the 4th is "today" there.
        let now: Timestamp = "2024-03-05T02:00:00Z".parse().unwrap();
        let d4 = Partition::parse("2024-03-04").unwrap();
        assert_eq!(g.policy_for(d4, now).0, Mode::SameDay);
        assert_eq!(
            g.evaluate(d4, now, &set(&["upcoming_player_game_context"])),
            Verdict::Satisfied {
                reason: "all_complete".into()
            }
        );
        let later: Timestamp = "2024-03-05T06:00:00Z".parse().unwrap();
        assert_eq!(g.policy_for(d4, later).0, Mode::Overnight);
    }
}
