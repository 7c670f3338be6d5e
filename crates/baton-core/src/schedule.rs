//! Upstream schedules: when a job is expected to land a partition (a time of day in the
//! pipeline's time zone, on the partition's date plus an offset), and whether a landing
//! was on time, late, or is missing. DST is handled by jiff's bundled tz database.

use crate::config::UpstreamJob;
use crate::model::Partition;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

/// How a job's landing for a partition stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LandingStatus {
    /// Not landed, and not yet past expected + tolerance.
    NotDue,
    /// Landed within the tolerance.
    OnTime,
    /// Landed after expected + tolerance.
    Late,
    /// Not landed, and past expected + tolerance.
    Missing,
}

/// A job's landing for a partition, judged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LandingVerdict {
    /// The job.
    pub job: String,
    /// The partition.
    pub partition: Partition,
    /// When it was expected.
    pub expected_at: Timestamp,
    /// When it landed.
    pub landed_at: Option<Timestamp>,
    /// The verdict.
    pub status: LandingStatus,
    /// One line for a person.
    pub evidence: String,
}

/// When `job` is expected to land `partition`.
pub fn expected_at(job: &UpstreamJob, partition: Partition, tz: &TimeZone) -> Timestamp {
    let day = partition.offset(job.day_offset).date();
    day.to_datetime(job.expected)
        .to_zoned(tz.clone())
        .map(|z| z.timestamp())
        // A time that does not exist in the zone (a DST gap) cannot fail with jiff's
        // compatible disambiguation; midnight UTC is only the type's fallback.
        .unwrap_or_else(|_| Timestamp::from_second(0).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// `8h45m`, `12m`, `2d3h`.
pub fn human(d: SignedDuration) -> String {
    let mins = d.as_secs().unsigned_abs() / 60;
    let (days, hours, mins) = (mins / 1440, (mins % 1440) / 60, mins % 60);
    let mut out = String::new();
    if days > 0 {
        out.push_str(&format!("{days}d"));
    }
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if mins > 0 || out.is_empty() {
        out.push_str(&format!("{mins}m"));
    }
    out
}

/// Judges a landing at `now`.
pub fn judge(
    job: &UpstreamJob,
    partition: Partition,
    landed_at: Option<Timestamp>,
    tz: &TimeZone,
    tz_name: &str,
    now: Timestamp,
) -> LandingVerdict {
    let expected = expected_at(job, partition, tz);
    let deadline = expected.checked_add(job.tolerance).unwrap_or(expected);
    let clock = |t: Timestamp| {
        let z = t.to_zoned(tz.clone());
        let expected_day = expected.to_zoned(tz.clone()).date();
        if z.date() == expected_day {
            format!("{:02}:{:02}", z.hour(), z.minute())
        } else {
            format!("{} {:02}:{:02}", z.date(), z.hour(), z.minute())
        }
    };
    let expected_text = format!(
        "expected {:02}:{:02} {tz_name}",
        job.expected.hour(),
        job.expected.minute()
    );
    let (status, evidence) = match landed_at {
        Some(at) if at > deadline => (
            LandingStatus::Late,
            format!(
                "{}: {expected_text}, landed {}, {} late",
                job.name,
                clock(at),
                human(at.duration_since(expected))
            ),
        ),
        Some(at) => (
            LandingStatus::OnTime,
            format!("{}: {expected_text}, landed {}", job.name, clock(at)),
        ),
        None if now > deadline => (
            LandingStatus::Missing,
            format!(
                "{}: {expected_text}, not landed, {} past expected",
                job.name,
                human(now.duration_since(expected))
            ),
        ),
        None => (
            LandingStatus::NotDue,
            format!("{}: {expected_text}, not due yet", job.name),
        ),
    };
    LandingVerdict {
        job: job.name.clone(),
        partition,
        expected_at: expected,
        landed_at,
        status,
        evidence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Pipeline;

    fn gamebook() -> (UpstreamJob, TimeZone) {
        let p = Pipeline::reference().unwrap();
        (
            p.upstream_job("nbac_gamebook_scraper").unwrap().clone(),
            p.timezone.clone(),
        )
    }

    #[test]
    fn the_incident_scraper_is_8h45m_late() {
        let (job, tz) = gamebook();
        let date = Partition::parse("2024-03-04").unwrap();
        // The box scores of the 4th are due at 06:00 ET on the 5th; they landed at 14:45 ET.
        let landed: Timestamp = "2024-03-05T19:45:00Z".parse().unwrap();
        let v = judge(&job, date, Some(landed), &tz, "America/New_York", landed);
        assert_eq!(v.status, LandingStatus::Late);
        assert_eq!(
            v.evidence,
            "nbac_gamebook_scraper: expected 06:00 America/New_York, landed 14:45, 8h45m late"
        );
    }

    #[test]
    fn expected_times_follow_daylight_saving() {
        let (job, tz) = gamebook();
        // 06:00 ET is 11:00 UTC in winter and 10:00 UTC in summer.
        assert_eq!(
            expected_at(&job, Partition::parse("2024-01-09").unwrap(), &tz).to_string(),
            "2024-01-10T11:00:00Z"
        );
        assert_eq!(
            expected_at(&job, Partition::parse("2024-07-09").unwrap(), &tz).to_string(),
            "2024-07-10T10:00:00Z"
        );
    }

    #[test]
    fn missing_only_after_the_tolerance() {
        let (job, tz) = gamebook();
        let date = Partition::parse("2024-01-09").unwrap();
        let within: Timestamp = "2024-01-10T12:59:00Z".parse().unwrap();
        assert_eq!(
            judge(&job, date, None, &tz, "ET", within).status,
            LandingStatus::NotDue
        );
        let after: Timestamp = "2024-01-10T13:01:00Z".parse().unwrap();
        let v = judge(&job, date, None, &tz, "ET", after);
        assert_eq!(v.status, LandingStatus::Missing);
        assert!(
            v.evidence.ends_with("not landed, 2h1m past expected"),
            "{}",
            v.evidence
        );
        assert_eq!(
            judge(&job, date, Some(within), &tz, "ET", after).status,
            LandingStatus::OnTime
        );
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(SignedDuration::from_mins(525)), "8h45m");
        assert_eq!(human(SignedDuration::from_mins(0)), "0m");
        assert_eq!(human(SignedDuration::from_hours(49)), "2d1h");
    }

    #[test]
    fn at_the_deadline_itself_a_landing_is_on_time_and_an_absence_not_yet_missing() {
        let (job, tz) = gamebook();
        let date = Partition::parse("2024-01-09").unwrap();
        // Expected 06:00 ET (11:00 UTC) on the 10th, with two hours of tolerance.
        let deadline: Timestamp = "2024-01-10T13:00:00Z".parse().unwrap();
        let v = judge(&job, date, Some(deadline), &tz, "ET", deadline);
        assert_eq!(v.status, LandingStatus::OnTime);
        assert_eq!(
            v.evidence,
            "nbac_gamebook_scraper: expected 06:00 ET, landed 08:00"
        );
        let v = judge(&job, date, None, &tz, "ET", deadline);
        assert_eq!(v.status, LandingStatus::NotDue);
        assert_eq!(
            v.evidence,
            "nbac_gamebook_scraper: expected 06:00 ET, not due yet"
        );
        let later = deadline.checked_add(SignedDuration::from_secs(1)).unwrap();
        let v = judge(&job, date, Some(later), &tz, "ET", later);
        assert_eq!(v.status, LandingStatus::Late);
        assert_eq!(
            judge(&job, date, None, &tz, "ET", later).status,
            LandingStatus::Missing
        );
    }
}
