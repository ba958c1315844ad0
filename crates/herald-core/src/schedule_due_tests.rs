//! Due-time tests with fixed clocks: cron occurrences, catch-up of missed periods, and cron across
//! daylight-saving changes.

use super::*;

#[test]
fn a_rare_but_real_cron_like_leap_day_is_accepted() {
    let t = req(None, None, true, Some("0 0 29 2 *"));
    assert_eq!(first_due(&t, ts(NOW)), Some(ts("2028-02-29T00:00:00Z")));
}

#[test]
fn six_field_cron_has_seconds_first() {
    let t = req(None, None, true, Some("*/20 * * * * *"));
    let want = [
        "2026-05-01T10:00:20Z",
        "2026-05-01T10:00:40Z",
        "2026-05-01T10:01:00Z",
    ];
    assert_eq!(runs(&t, NOW, 3), want);
}

#[test]
fn cron_next_occurrence_is_strictly_after_now() {
    let t = req(None, None, true, Some("0 10 * * *"));
    assert_eq!(first_due(&t, ts(NOW)), Some(ts("2026-05-02T10:00:00Z")));
    let (due, late) = (ts("2026-05-02T10:00:00Z"), ts("2026-05-02T10:00:00.5Z"));
    assert_eq!(next_due(&t, due, late), Some(ts("2026-05-03T10:00:00Z")));
}

#[test]
fn cron_with_run_at_starts_at_or_after_run_at() {
    let t = req(Some("2026-06-01 12:00:00"), None, true, Some("0 * * * *"));
    assert_eq!(first_due(&t, ts(NOW)), Some(ts("2026-06-01T12:00:00Z")));
    let t = req(
        Some("2026-06-01T12:00:00.5Z"),
        None,
        true,
        Some("0 * * * *"),
    );
    assert_eq!(first_due(&t, ts(NOW)), Some(ts("2026-06-01T13:00:00Z")));
    let past = req(Some("2020-01-01 00:00:00"), None, true, Some("0 * * * *"));
    assert_eq!(first_due(&past, ts(NOW)), Some(ts("2026-05-01T11:00:00Z")));
}

#[test]
fn every_skips_missed_periods_to_the_first_after_now() {
    let due = ts("2026-05-01T10:00:00Z");
    let t = Timing::Every {
        first: due,
        every: SignedDuration::from_secs(60),
    };
    let next = |now: &str| next_due(&t, due, ts(now)).map(|d| d.to_string());
    assert_eq!(
        next("2026-05-01T10:05:30Z").as_deref(),
        Some("2026-05-01T10:06:00Z")
    );
    assert_eq!(
        next("2026-05-01T10:00:00.2Z").as_deref(),
        Some("2026-05-01T10:01:00Z")
    );
    assert_eq!(
        next("2026-05-01T10:01:00Z").as_deref(),
        Some("2026-05-01T10:02:00Z")
    );
}

#[test]
fn cron_skips_missed_occurrences_to_the_first_after_now() {
    let t = req(None, None, true, Some("0 * * * *"));
    let (due, now) = (ts("2026-05-01T10:00:00Z"), ts("2026-05-01T13:20:00Z"));
    assert_eq!(next_due(&t, due, now), Some(ts("2026-05-01T14:00:00Z")));
}

#[test]
fn cron_in_a_spring_forward_gap_fires_once_right_after_the_gap() {
    // Berlin 2026-03-29: 02:00 CET jumps to 03:00 CEST, so 02:30 does not exist that day. 02:30 CET
    // is 01:30Z; on the gap day the run is at 03:00 CEST = 01:00Z; then 02:30 CEST = 00:30Z.
    let t = cron_in("30 2 * * *", "Europe/Berlin");
    let want = [
        "2026-03-28T01:30:00Z",
        "2026-03-29T01:00:00Z",
        "2026-03-30T00:30:00Z",
    ];
    assert_eq!(runs(&t, "2026-03-27T12:00:00Z", 3), want);
}

#[test]
fn cron_in_a_fall_back_overlap_fires_once_at_the_first_instant() {
    // Berlin 2026-10-25: 03:00 CEST goes back to 02:00 CET, so 02:30 happens twice.
    let t = cron_in("30 2 * * *", "Europe/Berlin");
    let want = [
        "2026-10-25T00:30:00Z",
        "2026-10-26T01:30:00Z",
        "2026-10-27T01:30:00Z",
    ];
    assert_eq!(runs(&t, "2026-10-24T12:00:00Z", 3), want);
    // A run that starts late, inside the second 02:30 hour, is not followed by that second 02:30;
    let (due, late) = (ts("2026-10-25T00:30:00Z"), ts("2026-10-25T01:29:00Z"));
    assert_eq!(next_due(&t, due, late), Some(ts("2026-10-26T01:30:00Z")));
    // nor is a first schedule made between the two 02:30s.
    assert_eq!(
        first_due(&t, ts("2026-10-25T00:45:00Z")),
        Some(ts("2026-10-26T01:30:00Z"))
    );
}

#[test]
fn an_interval_cron_runs_on_both_halves_of_a_repeated_hour() {
    // 02:00 CEST, 02:30 CEST, then the clock goes back: 02:00 CET, 02:30 CET.
    let t = cron_in("0,30 * * * *", "Europe/Berlin");
    let got = runs(&t, "2026-10-24T23:59:00Z", 4);
    let want = [
        "2026-10-25T00:00:00Z",
        "2026-10-25T00:30:00Z",
        "2026-10-25T01:00:00Z",
        "2026-10-25T01:30:00Z",
    ];
    assert_eq!(got, want);
}

#[test]
fn weekday_cron_stays_at_nine_local_across_the_new_york_change() {
    // 2026-03-08: EST (UTC-5) becomes EDT (UTC-4); 09:00 local moves from 14:00Z to 13:00Z.
    let t = cron_in("0 9 * * MON-FRI", "America/New_York");
    let want = [
        "2026-03-06T14:00:00Z",
        "2026-03-09T13:00:00Z",
        "2026-03-10T13:00:00Z",
    ];
    assert_eq!(runs(&t, "2026-03-05T15:00:00Z", 3), want);
}
