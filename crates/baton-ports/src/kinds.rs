//! The closed sets of values the ports store as text: a run's status, an outbox row's kind,
//! an owed run's kind. Enums, so a comparison with a misspelt literal cannot compile; each
//! has one spelling on the wire and in the database (`as_str`), read back by `parse`.

use baton_core::model::CompletionStatus;
use serde::{Deserialize, Serialize};

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// Its one spelling, on the wire and in the database.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            /// Reads the spelling `as_str` gives.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum! {
    /// Where a run is: running, or how it ended.
    RunStatus {
        /// Started, not (yet) finished: still running, or its process died.
        Running => "running",
        /// Wrote its data; completes the processor.
        Success => "success",
        /// Wrote data from incomplete inputs (by policy); completes the processor.
        Partial => "partial",
        /// Had nothing to compute for the date.
        NoData => "no_data",
        /// Failed.
        Failed => "failed",
        /// Refused at the write: its lease was no longer live and current.
        Fenced => "fenced",
        /// Stopped without finishing (its process was killed, ran out of memory, or lost
        /// its backend): marked so once its lease stopped covering it. It wrote nothing
        /// and published nothing.
        Abandoned => "abandoned",
    }
}

impl RunStatus {
    /// Whether a run that ended so completes its processor for the date.
    pub fn completes(self) -> bool {
        matches!(self, Self::Success | Self::Partial | Self::NoData)
    }
}

impl RunStatus {
    /// The completion status a run that ended so published (none while running or when
    /// fenced: a fenced run publishes nothing).
    pub fn completion(self) -> Option<CompletionStatus> {
        match self {
            Self::Success => Some(CompletionStatus::Success),
            Self::Partial => Some(CompletionStatus::Partial),
            Self::NoData => Some(CompletionStatus::NoData),
            Self::Failed => Some(CompletionStatus::Failed),
            Self::Running | Self::Fenced | Self::Abandoned => None,
        }
    }
}

impl From<CompletionStatus> for RunStatus {
    fn from(status: CompletionStatus) -> Self {
        match status {
            CompletionStatus::Success => Self::Success,
            CompletionStatus::Partial => Self::Partial,
            CompletionStatus::NoData => Self::NoData,
            CompletionStatus::Failed => Self::Failed,
        }
    }
}

text_enum! {
    /// What an outbox row carries.
    OutboxKind {
        /// A processor's completion, for the orchestrator.
        Completion => "completion",
        /// A gate's trigger, for the next phase.
        Trigger => "trigger",
    }
}

text_enum! {
    /// Why a run is owed for a (processor, date).
    RequestKind {
        /// Deferred until its inputs land.
        Deferred => "deferred",
        /// Ran partial; to redo when its inputs land.
        Partial => "partial",
        /// Requested while another holder ran it; the holder died before running it again.
        Coalesced => "coalesced",
        /// Requested by baton: a landing of one of its inputs, a newer run of a processor it
        /// depends on, a schedule, or a reconcile repair.
        Requested => "requested",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_reads_back() {
        for s in RunStatus::ALL {
            assert_eq!(RunStatus::parse(s.as_str()), Some(*s));
            assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{s}\""));
        }
        for k in OutboxKind::ALL {
            assert_eq!(OutboxKind::parse(k.as_str()), Some(*k));
        }
        for k in RequestKind::ALL {
            assert_eq!(RequestKind::parse(k.as_str()), Some(*k));
        }
        assert_eq!(RunStatus::parse("Success"), None);
    }

    #[test]
    fn only_completing_statuses_complete() {
        let completing: Vec<_> = RunStatus::ALL.iter().filter(|s| s.completes()).collect();
        assert_eq!(
            completing,
            [&RunStatus::Success, &RunStatus::Partial, &RunStatus::NoData]
        );
    }
}
