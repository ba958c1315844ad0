//! Schedule validation tests with fixed clocks: every rule and error, and the `run_at` formats;
//! due-time math is in [`due`].

use super::*;

const NOW: &str = "2026-05-01T10:00:00Z";

fn ts(s: &str) -> Timestamp {
    s.parse().expect("test timestamp")
}

/// `timing` at [`NOW`] for (run_at, run_after_sec, is_periodic, cron) in UTC.
fn req(at: Option<&str>, secs: Option<i64>, periodic: bool, cron: Option<&str>) -> Timing {
    try_req(at, secs, periodic, cron).expect("valid timing")
}

fn try_req(
    at: Option<&str>,
    secs: Option<i64>,
    periodic: bool,
    cron: Option<&str>,
) -> Result<Timing, ScheduleError> {
    let input = ScheduleIn {
        run_at: at,
        run_after_sec: secs,
        is_periodic: periodic,
        cron,
        timezone: "UTC",
    };
    timing(&input, ts(NOW))
}

/// The error's field and message.
fn fails(
    at: Option<&str>,
    secs: Option<i64>,
    periodic: bool,
    cron: Option<&str>,
) -> (&'static str, String) {
    let e = try_req(at, secs, periodic, cron).expect_err("invalid timing");
    (e.field, e.message)
}

fn once(at: &str) -> Timing {
    Timing::Once { at: ts(at) }
}

fn cron_in(expr: &str, tz: &str) -> Timing {
    let input = ScheduleIn {
        cron: Some(expr),
        timezone: tz,
        ..ScheduleIn::default()
    };
    timing(&input, ts(NOW)).expect("valid cron")
}

/// The first `n` due times of `t` from `now` on, each run happening exactly when due.
fn runs(t: &Timing, now: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut due = first_due(t, ts(now));
    while let Some(d) = due
        && out.len() < n
    {
        out.push(d.to_string());
        due = next_due(t, d, d);
    }
    out
}

#[test]
fn no_time_at_all_means_once_now() {
    assert_eq!(req(None, None, false, None), once(NOW));
}

#[test]
fn a_run_at_in_the_past_is_still_once_and_due_at_once() {
    let t = req(Some("2020-01-01 00:00:00"), None, false, None);
    assert_eq!(t, once("2020-01-01T00:00:00Z"));
    assert_eq!(first_due(&t, ts(NOW)), Some(ts("2020-01-01T00:00:00Z")));
    assert_eq!(next_due(&t, ts("2020-01-01T00:00:00Z"), ts(NOW)), None);
}

#[test]
fn run_after_sec_alone_is_once_after_the_delay() {
    assert_eq!(
        req(None, Some(90), false, None),
        once("2026-05-01T10:01:30Z")
    );
    assert_eq!(req(None, Some(0), false, None), once(NOW));
}

#[test]
fn a_negative_delay_is_an_error_on_run_after_sec() {
    let want = ("run_after_sec", "run_after_sec must be >= 0".to_string());
    assert_eq!(fails(None, Some(-1), false, None), want);
    assert_eq!(fails(None, Some(-1), true, None), want);
}

#[test]
fn a_delay_over_ten_years_is_an_error_on_run_after_sec() {
    assert!(try_req(None, Some(MAX_SECS), false, None).is_ok());
    let (field, message) = fails(None, Some(MAX_SECS + 1), false, None);
    assert_eq!(field, "run_after_sec");
    assert!(message.contains("10 years"), "{message}");
}

#[test]
fn a_one_shot_with_both_run_at_and_run_after_sec_is_an_error_on_run_after_sec() {
    let (field, message) = fails(Some(NOW), Some(5), false, None);
    assert_eq!(field, "run_after_sec");
    assert_eq!(
        message,
        "give either run_at or run_after_sec for a one-time job"
    );
}

#[test]
fn a_periodic_job_without_a_period_is_an_error_on_is_periodic() {
    let want = (
        "is_periodic",
        "a periodic job needs run_after_sec > 0 or cron".to_string(),
    );
    assert_eq!(fails(None, None, true, None), want);
    assert_eq!(fails(None, Some(0), true, None), want);
}

#[test]
fn a_periodic_job_starts_one_period_from_now_or_at_run_at() {
    let every = SignedDuration::from_secs(60);
    let first = ts("2026-05-01T10:01:00Z");
    assert_eq!(
        req(None, Some(60), true, None),
        Timing::Every { first, every }
    );
    let first = ts("2026-05-02T00:00:00Z");
    let at = Some("2026-05-02T00:00:00Z");
    assert_eq!(
        req(at, Some(60), true, None),
        Timing::Every { first, every }
    );
}

#[test]
fn cron_with_run_after_sec_is_an_error_on_cron() {
    let want = (
        "cron",
        "give either cron or run_after_sec as the period".to_string(),
    );
    assert_eq!(fails(None, Some(60), true, Some("* * * * *")), want);
    assert_eq!(fails(None, Some(60), false, Some("* * * * *")), want);
}

#[test]
fn cron_without_is_periodic_is_periodic() {
    let t = req(None, None, false, Some("*/5 * * * *"));
    assert!(matches!(&t, Timing::Cron { source, .. } if source == "*/5 * * * *"));
    assert_eq!(
        runs(&t, NOW, 2),
        ["2026-05-01T10:05:00Z", "2026-05-01T10:10:00Z"]
    );
}

#[test]
fn an_invalid_cron_is_an_error_on_cron_with_crons_message() {
    for bad in [
        "",
        "* * *",
        "61 * * * *",
        "* * * * * * 2030",
        "nonsense here * * *",
    ] {
        let (field, message) = fails(None, None, true, Some(bad));
        assert_eq!(field, "cron", "{bad}");
        assert!(
            message.contains("not a valid cron expression: "),
            "{bad}: {message}"
        );
    }
}

#[test]
fn a_cron_that_never_fires_is_an_error_on_cron() {
    let (field, message) = fails(None, None, true, Some("0 0 30 2 *"));
    assert_eq!(
        (field, message.as_str()),
        ("cron", "`0 0 30 2 *` never fires")
    );
}

#[test]
fn an_unknown_zone_is_an_error_on_timezone() {
    let input = ScheduleIn {
        timezone: "Mars/Olympus",
        ..ScheduleIn::default()
    };
    let e = timing(&input, ts(NOW)).expect_err("unknown zone");
    assert_eq!(e.field, "timezone");
    assert_eq!(zone(""), Ok(TimeZone::UTC));
    assert_eq!(zone("utc"), Ok(TimeZone::UTC));
}

#[test]
fn local_run_at_reads_the_wall_clock_of_the_zone() {
    let berlin = zone("Europe/Berlin").expect("zone");
    let at = parse_run_at("2026-07-01 10:00:00", &berlin);
    assert_eq!(at, Ok(ts("2026-07-01T08:00:00Z")));
    let input = ScheduleIn {
        run_at: Some("2026-01-15 10:00:00"),
        timezone: "Europe/Berlin",
        ..ScheduleIn::default()
    };
    assert_eq!(timing(&input, ts(NOW)), Ok(once("2026-01-15T09:00:00Z")));
}

#[test]
fn rfc3339_run_at_keeps_its_own_offset_whatever_the_zone() {
    let berlin = zone("Europe/Berlin").expect("zone");
    let want = Ok(ts("2026-07-01T08:00:00Z"));
    assert_eq!(parse_run_at("2026-07-01T08:00:00Z", &berlin), want);
    assert_eq!(
        parse_run_at("2026-07-01T10:00:00+02:00", &TimeZone::UTC),
        want
    );
    assert_eq!(parse_run_at("2026-07-01T04:00:00-04:00", &berlin), want);
}

#[test]
fn local_run_at_in_a_gap_moves_forward_and_a_repeated_one_is_the_earlier() {
    let berlin = zone("Europe/Berlin").expect("zone");
    let gap = parse_run_at("2026-03-29 02:30:00", &berlin);
    assert_eq!(gap, Ok(ts("2026-03-29T01:30:00Z")));
    let fold = parse_run_at("2026-10-25 02:30:00", &berlin);
    assert_eq!(fold, Ok(ts("2026-10-25T00:30:00Z")));
}

#[test]
fn a_bad_run_at_is_an_error_on_run_at_naming_the_formats() {
    let bads = [
        "tomorrow",
        "2026-07-01",
        "2026-07-01 10:00",
        "2026-13-01 10:00:00",
        "2026-07-01T10:00:00",
    ];
    for bad in bads {
        let (field, message) = fails(Some(bad), None, false, None);
        assert_eq!(field, "run_at", "{bad}");
        assert!(
            message.contains("\"YYYY-MM-DD hh:mm:ss\"") && message.contains("RFC 3339"),
            "{bad}"
        );
    }
}

#[path = "schedule_due_tests.rs"]
mod due;
