//! Schedules (`[[schedules]]`): runs that no landing starts (the upcoming-game context each
//! morning), started by a cron expression in the pipeline's time zone, for one date (today
//! or yesterday, in the same time zone), and the pure rule for when one is due.
//!
//! The rule ([`due`]): a schedule fires at most once per evaluation, for the latest cron
//! time in `(floor, now]`, where `floor` is the later of the last fire time and
//! `now - `[`CATCH_UP`]. So a `serve` that starts (or comes back) fires a time it missed by
//! less than an hour, and never one from long before it started; several times missed
//! inside the window fire once, for the latest.
//!
//! DST (the cron is read on the wall clock of the pipeline's time zone; croner's rules):
//! - A fixed time (one minute of one hour, e.g. `30 2 * * *`) that does not exist on a
//!   spring-forward day fires once, at the first instant after the gap (03:00 in New York).
//!   Wildcard or stepped times (`*/15 * * * *`) in the gap are skipped: they do not exist.
//! - A fixed time that occurs twice on a fall-back day fires once, at the first of the two;
//!   a wildcard or stepped time fires in both halves (they are distinct instants).
//!
//! The date is the fire time's date in the pipeline's time zone (minus one day for
//! `yesterday`), not the date of the evaluation, so a fire found just after midnight still
//! requests the day it was meant for.

use crate::model::{Partition, ProcessorName};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// How long after a cron time a schedule may still fire when it was not fired in time
/// (the service was down, or had just started): a time missed by more is skipped.
pub const CATCH_UP: SignedDuration = SignedDuration::from_hours(1);

/// Which date a schedule's runs are for, in the pipeline's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleDate {
    /// The fire time's date.
    Today,
    /// The day before the fire time's date.
    Yesterday,
}

impl ScheduleDate {
    /// Reads `today` or `yesterday`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "today" => Some(Self::Today),
            "yesterday" => Some(Self::Yesterday),
            _ => None,
        }
    }

    /// Its spelling in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Today => "today",
            Self::Yesterday => "yesterday",
        }
    }

    /// The partition a fire at `fire` requests, in time zone `tz`.
    pub fn partition(self, fire: Timestamp, tz: &TimeZone) -> Partition {
        let today = Partition::new(fire.to_zoned(tz.clone()).date());
        match self {
            Self::Today => today,
            Self::Yesterday => today.offset(-1),
        }
    }
}

/// A standard five-field cron expression (minute, hour, day of month, month, day of week),
/// read on a time zone's wall clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronExpr {
    text: String,
    cron: Cron,
}

impl CronExpr {
    /// Parses a five-field expression (`*`, lists, ranges, steps and names such as `MON`);
    /// one with another number of fields, or with no time it could ever match (Feb 30), is
    /// refused with the reason.
    pub fn parse(text: &str) -> Result<Self, String> {
        let fields = text.split_whitespace().count();
        if fields != 5 {
            return Err(format!(
                "`{text}` has {fields} fields; a cron expression has 5 (minute hour day-of-month month day-of-week)"
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(text)
            .map_err(|e| format!("`{text}` is not a valid cron expression: {e}"))?;
        // A pattern that never matches would make every search run to croner's limit.
        let start = jiff::civil::date(2000, 1, 1).at(0, 0, 0, 0);
        let within = jiff::civil::date(2009, 1, 1).at(0, 0, 0, 0);
        match cron.find_next_occurrence(&start, true) {
            Ok(next) if next < within => Ok(Self {
                text: text.to_owned(),
                cron,
            }),
            _ => Err(format!("`{text}` never matches a date")),
        }
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The latest time at or before `now` that the expression names on `tz`'s wall clock
    /// (DST handled as the module says); `None` only at the ends of the supported years.
    pub fn latest_at_or_before(&self, now: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        self.cron
            .find_previous_occurrence(&now.to_zoned(tz.clone()), true)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The first time after `now` that the expression names on `tz`'s wall clock: when a
    /// schedule fires next (`explain`, the report's schedule).
    pub fn next_after(&self, now: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        self.cron
            .find_next_occurrence(&now.to_zoned(tz.clone()), false)
            .ok()
            .map(|z| z.timestamp())
    }
}

/// A validated schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Its name (unique).
    pub name: String,
    /// When it fires, in the pipeline's time zone.
    pub cron: CronExpr,
    /// The processors it requests runs of (known processors, no repeats).
    pub processors: Vec<ProcessorName>,
    /// Which date the runs are for.
    pub date: ScheduleDate,
}

impl Schedule {
    /// The operational record its last fire is kept under (claimed with compare-and-set, so
    /// two `serve` instances fire it once).
    pub fn record_key(&self) -> String {
        format!("schedule/{}", self.name)
    }
}

/// The body of a schedule's operational record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FireRecord {
    /// The cron time last fired.
    pub last_fired: Timestamp,
    /// When it was fired (the evaluation's `now`).
    pub fired_at: Timestamp,
    /// The date its runs were requested for.
    pub partition: Partition,
    /// Who fired it (a lease holder name, e.g. `serve-4242`).
    pub by: String,
}

/// Whether `schedule` is due at `now`: the latest cron time in `(floor, now]`, where
/// `floor` is the later of `last_fired` and `now - CATCH_UP`, or `None`.
pub fn due(
    schedule: &Schedule,
    last_fired: Option<Timestamp>,
    now: Timestamp,
    tz: &TimeZone,
) -> Option<Timestamp> {
    let catch_up = now.checked_sub(CATCH_UP).unwrap_or(now);
    let floor = last_fired.map_or(catch_up, |last| last.max(catch_up));
    let fire = schedule.cron.latest_at_or_before(now, tz)?;
    (fire > floor).then_some(fire)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ny() -> TimeZone {
        TimeZone::get("America/New_York").unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn schedule(cron: &str) -> Schedule {
        Schedule {
            name: "s".into(),
            cron: CronExpr::parse(cron).unwrap(),
            processors: vec![ProcessorName::from("upcoming_player_game_context")],
            date: ScheduleDate::Today,
        }
    }

    #[test]
    fn next_after_is_the_first_wall_clock_time_strictly_after_now() {
        let s = schedule("0 9 * * MON");
        // Tuesday 2024-03-05 10:00 in New York: next Monday 09:00 EDT (DST began on the 10th).
        let next = s
            .cron
            .next_after(at("2024-03-05T15:00:00Z"), &ny())
            .unwrap();
        assert_eq!(next, at("2024-03-11T13:00:00Z"));
        // Exactly at a fire time, the next is a week later.
        assert_eq!(
            s.cron.next_after(next, &ny()).unwrap(),
            at("2024-03-18T13:00:00Z")
        );
    }

    /// Evaluates `s` every minute from `from` to `to` (inclusive) like a service would,
    /// recording each fire as the last; returns the fire times.
    fn fires(s: &Schedule, from: &str, to: &str, tz: &TimeZone) -> Vec<Timestamp> {
        let (mut now, end) = (at(from), at(to));
        let mut last = None;
        let mut out = Vec::new();
        while now <= end {
            if let Some(f) = due(s, last, now, tz) {
                out.push(f);
                last = Some(f);
            }
            now = now.checked_add(SignedDuration::from_mins(1)).unwrap();
        }
        out
    }

    #[test]
    fn a_daily_schedule_fires_once_a_day_at_its_local_time() {
        let s = schedule("0 7 * * *");
        let tz = ny();
        // 07:00 EDT is 11:00 UTC in June.
        assert_eq!(due(&s, None, at("2024-06-03T10:59:59Z"), &tz), None);
        assert_eq!(
            due(&s, None, at("2024-06-03T11:00:00Z"), &tz),
            Some(at("2024-06-03T11:00:00Z"))
        );
        let fired = Some(at("2024-06-03T11:00:00Z"));
        assert_eq!(due(&s, fired, at("2024-06-03T11:00:30Z"), &tz), None);
        assert_eq!(due(&s, fired, at("2024-06-04T10:59:00Z"), &tz), None);
        assert_eq!(
            due(&s, fired, at("2024-06-04T11:00:00Z"), &tz),
            Some(at("2024-06-04T11:00:00Z"))
        );
        assert_eq!(
            fires(&s, "2024-06-03T00:00:00Z", "2024-06-06T00:00:00Z", &tz),
            vec![
                at("2024-06-03T11:00:00Z"),
                at("2024-06-04T11:00:00Z"),
                at("2024-06-05T11:00:00Z")
            ]
        );
    }

    #[test]
    fn the_same_cron_fires_at_each_zones_local_time() {
        let s = schedule("0 7 * * *");
        let now = at("2024-01-15T12:30:00Z");
        assert_eq!(
            due(&s, None, now, &ny()),
            Some(at("2024-01-15T12:00:00Z")),
            "07:00 EST"
        );
        let utc = TimeZone::UTC;
        assert_eq!(due(&s, None, now, &utc), None, "07:00 UTC is long past");
        let tokyo = TimeZone::get("Asia/Tokyo").unwrap();
        assert_eq!(
            due(&s, None, at("2024-01-14T22:10:00Z"), &tokyo),
            Some(at("2024-01-14T22:00:00Z")),
            "07:00 in Tokyo is 22:00 UTC the day before"
        );
    }

    #[test]
    fn a_first_evaluation_fires_only_a_time_within_the_catch_up_window() {
        let s = schedule("0 7 * * *");
        let tz = ny();
        // Started at 07:59 EDT: 07:00 is within the hour, so it fires.
        assert_eq!(
            due(&s, None, at("2024-06-03T11:59:00Z"), &tz),
            Some(at("2024-06-03T11:00:00Z"))
        );
        // Started at 08:00 or later: 07:00 is an hour or more ago; nothing fires.
        assert_eq!(due(&s, None, at("2024-06-03T12:00:00Z"), &tz), None);
        assert_eq!(due(&s, None, at("2024-06-03T20:00:00Z"), &tz), None);
        // A record from days ago does not bring back every missed day, nor today's time
        // when it is more than an hour old.
        let old = Some(at("2024-05-01T11:00:00Z"));
        assert_eq!(due(&s, old, at("2024-06-03T14:00:00Z"), &tz), None);
        assert_eq!(
            due(&s, old, at("2024-06-03T11:30:00Z"), &tz),
            Some(at("2024-06-03T11:00:00Z"))
        );
    }

    #[test]
    fn several_missed_times_fire_once_for_the_latest() {
        let s = schedule("*/10 * * * *");
        let tz = ny();
        let last = Some(at("2024-06-03T11:00:00Z"));
        assert_eq!(
            due(&s, last, at("2024-06-03T11:35:00Z"), &tz),
            Some(at("2024-06-03T11:30:00Z"))
        );
    }

    #[test]
    fn a_fixed_time_in_the_spring_forward_gap_fires_once_after_the_gap() {
        // 2024-03-10, New York: 02:00 EST jumps to 03:00 EDT (07:00 UTC); 02:30 never occurs.
        let s = schedule("30 2 * * *");
        let tz = ny();
        assert_eq!(
            fires(&s, "2024-03-09T00:00:00Z", "2024-03-12T00:00:00Z", &tz),
            vec![
                at("2024-03-09T07:30:00Z"), // 02:30 EST
                at("2024-03-10T07:00:00Z"), // 03:00 EDT, the first instant after the gap
                at("2024-03-11T06:30:00Z"), // 02:30 EDT
            ]
        );
        // Its date is the day of the gap.
        assert_eq!(
            ScheduleDate::Today.partition(at("2024-03-10T07:00:00Z"), &tz),
            Partition::parse("2024-03-10").unwrap()
        );
    }

    #[test]
    fn stepped_times_in_the_gap_are_skipped() {
        let s = schedule("*/30 * * * *");
        let tz = ny();
        // 00:30 (the first evaluation catches it up), 01:00, 01:30 EST, then 03:00 EDT:
        // no 02:00 or 02:30.
        assert_eq!(
            fires(&s, "2024-03-10T05:50:00Z", "2024-03-10T07:10:00Z", &tz),
            vec![
                at("2024-03-10T05:30:00Z"),
                at("2024-03-10T06:00:00Z"),
                at("2024-03-10T06:30:00Z"),
                at("2024-03-10T07:00:00Z"),
            ]
        );
    }

    #[test]
    fn a_fixed_time_in_the_fall_back_overlap_fires_once() {
        // 2024-11-03, New York: 01:00-02:00 happens twice (EDT, then EST).
        let s = schedule("30 1 * * *");
        let tz = ny();
        assert_eq!(
            fires(&s, "2024-11-03T04:00:00Z", "2024-11-03T08:00:00Z", &tz),
            vec![at("2024-11-03T05:30:00Z")], // 01:30 EDT; not 01:30 EST (06:30 UTC)
        );
    }

    #[test]
    fn yesterday_is_the_day_before_the_fire_times_local_date() {
        let tz = ny();
        // 00:30 EDT on June 4 is 04:30 UTC: June 4 in New York, whatever UTC says.
        let fire = at("2024-06-04T04:30:00Z");
        assert_eq!(
            ScheduleDate::Today.partition(fire, &tz),
            Partition::parse("2024-06-04").unwrap()
        );
        assert_eq!(
            ScheduleDate::Yesterday.partition(fire, &tz),
            Partition::parse("2024-06-03").unwrap()
        );
    }

    #[test]
    fn bad_expressions_are_refused_with_a_reason() {
        for (text, needle) in [
            ("0 7 * *", "has 4 fields"),
            ("0 0 7 * * *", "has 6 fields"),
            ("61 7 * * *", "not a valid cron expression"),
            ("0 25 * * *", "not a valid cron expression"),
            ("0 7 * * MOO", "not a valid cron expression"),
            ("0 0 30 2 *", "never matches"),
        ] {
            let e = CronExpr::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
        for text in ["0 7 * * *", "*/15 6-9 * * MON-FRI", "0 7,19 1,15 * *"] {
            assert_eq!(CronExpr::parse(text).unwrap().as_str(), text);
        }
    }

    #[test]
    fn the_fire_record_round_trips_as_json() {
        let r = FireRecord {
            last_fired: at("2024-06-03T11:00:00Z"),
            fired_at: at("2024-06-03T11:00:01Z"),
            partition: Partition::parse("2024-06-03").unwrap(),
            by: "serve-7".into(),
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<FireRecord>(&json).unwrap(), r);
    }
}
