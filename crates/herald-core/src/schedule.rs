//! Schedule math for bot jobs (SPEC §4): the `run_at` / `run_after_sec` / `is_periodic` / `cron` /
//! `timezone` fields are validated into a [`Timing`], and [`first_due`] / [`next_due`] say when a job
//! is due. Everything here is pure: no I/O of our own (zone names resolve through jiff's time zone
//! database), no clock reads: every function takes `now`.
//!
//! Choices where SPEC §4 is silent:
//!
//! - Neither `run_at` nor `run_after_sec` → one run at `now`. A `run_at` in the past is still a
//!   one-shot: it is due at once.
//! - A one-shot job with both `run_at` and `run_after_sec` is an error on `run_after_sec`. With
//!   `is_periodic`, `run_at` is the first due time and `run_after_sec` the period; without `run_at`
//!   the first run is one period after `now`.
//! - `cron` implies a periodic job even without `is_periodic`. `cron` together with `run_after_sec`
//!   is an error on `cron`: the period is one or the other. `cron` with `run_at`: the first
//!   occurrence at or after `run_at` (and strictly after `now`).
//! - Any given `run_after_sec` counts, `0` included, for the "both given" rules above.
//! - `run_after_sec` is at most [`MAX_SECS`] (10 years of 365 days).
//! - `run_at` is `YYYY-MM-DD hh:mm:ss` in the job's zone or RFC 3339 with `Z` or an offset. A local
//!   time in a daylight-saving gap is moved forward by the gap's length (02:30 on a spring-forward
//!   day in Berlin is 03:30 CEST); one that happens twice is the earlier instant.
//! - Cron expressions have 5 fields (minute first) or 6 (second first); croner's `L`, `W`, `#` and
//!   `@daily`-style nicknames work; a year field is rejected, as is an expression that never fires.
//!   Evaluation is on the wall clock of the zone (croner): a fixed time that falls into a
//!   spring-forward gap runs once, at the first instant after the gap (02:30 in Berlin on
//!   2026-03-29 runs at 03:00 CEST); a fixed time that happens twice runs once, at the first of the
//!   two instants. Interval expressions (`*/15 * * * *`) keep matching wall clock times, so they
//!   may run twice in the repeated hour.
//! - Missed periods are not caught up one by one: after a run, the next due time is the first
//!   occurrence strictly after the run (`now`), so a job that was due while the server was down
//!   runs once for the missed period and then resumes its cadence. [`Timing::Every`] keeps its
//!   cadence anchored on the due times (`due + k·every`), not on when runs happened.

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// The largest `run_after_sec` accepted: 10 years of 365 days.
pub const MAX_SECS: i64 = 10 * 365 * 86_400;

/// A job's timing, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timing {
    /// Run once at `at`.
    Once { at: Timestamp },
    /// Run every `every` starting at `first`.
    Every {
        first: Timestamp,
        every: SignedDuration,
    },
    /// Run at each occurrence of a cron expression in a time zone.
    Cron {
        /// The parsed expression (boxed: it is large).
        expr: Box<Cron>,
        /// The expression as the client gave it.
        source: String,
        /// The zone whose wall clock the expression reads.
        tz: TimeZone,
        /// From `run_at`: the first run is at or after this instant.
        not_before: Option<Timestamp>,
    },
}

/// A validation error naming the API field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ScheduleError {
    /// `run_at`, `run_after_sec`, `is_periodic`, `cron` or `timezone`.
    pub field: &'static str,
    /// What is wrong, for a person.
    pub message: String,
}

impl ScheduleError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// The timing fields of a schedule request (SPEC §4).
#[derive(Debug, Clone, Copy, Default)]
pub struct ScheduleIn<'a> {
    pub run_at: Option<&'a str>,
    pub run_after_sec: Option<i64>,
    pub is_periodic: bool,
    pub cron: Option<&'a str>,
    /// An IANA zone name; empty means UTC.
    pub timezone: &'a str,
}

/// Validates SPEC §4 fields into a [`Timing`] (rules in the module doc).
pub fn timing(input: &ScheduleIn<'_>, now: Timestamp) -> Result<Timing, ScheduleError> {
    let tz = zone(input.timezone)?;
    let secs = input.run_after_sec.map(checked_secs).transpose()?;
    let run_at = input.run_at.map(|s| parse_run_at(s, &tz)).transpose()?;

    if let Some(source) = input.cron {
        if secs.is_some() {
            return Err(ScheduleError::new(
                "cron",
                "give either cron or run_after_sec as the period",
            ));
        }
        let expr = parse_cron(source)?;
        let t = Timing::Cron {
            expr: Box::new(expr),
            source: source.to_owned(),
            tz,
            not_before: run_at,
        };
        if first_due(&t, now).is_none() {
            return Err(ScheduleError::new(
                "cron",
                format!("`{source}` never fires"),
            ));
        }
        return Ok(t);
    }

    if input.is_periodic {
        let every = match secs {
            Some(every) if every.is_positive() => every,
            _ => {
                return Err(ScheduleError::new(
                    "is_periodic",
                    "a periodic job needs run_after_sec > 0 or cron",
                ));
            }
        };
        let first = match run_at {
            Some(at) => at,
            None => after(now, every, "run_after_sec")?,
        };
        return Ok(Timing::Every { first, every });
    }

    match (run_at, secs) {
        (Some(_), Some(_)) => Err(ScheduleError::new(
            "run_after_sec",
            "give either run_at or run_after_sec for a one-time job",
        )),
        (Some(at), None) => Ok(Timing::Once { at }),
        (None, Some(delay)) => Ok(Timing::Once {
            at: after(now, delay, "run_after_sec")?,
        }),
        (None, None) => Ok(Timing::Once { at: now }),
    }
}

/// The first due time: `at` for [`Timing::Once`] (even in the past: it runs at once), `first` for
/// [`Timing::Every`], and for [`Timing::Cron`] the first occurrence strictly after `now` (and at or
/// after `not_before`). `None` only if a cron expression has no such occurrence.
pub fn first_due(t: &Timing, now: Timestamp) -> Option<Timestamp> {
    match t {
        Timing::Once { at } => Some(*at),
        Timing::Every { first, .. } => Some(*first),
        Timing::Cron {
            expr,
            tz,
            not_before,
            ..
        } => {
            // "At or after not_before" is "strictly after one nanosecond before it".
            let floor =
                not_before.and_then(|nb| nb.checked_sub(SignedDuration::from_nanos(1)).ok());
            let start = floor.map_or(now, |f| f.max(now));
            cron_after(expr, tz, start)
        }
    }
}

/// After a run that was due at `due` and happened at `now`: the next due time, or `None` for a
/// one-shot job (or a cron expression that never fires again). The next due time is the first
/// occurrence strictly after both `due` and `now`: missed periods collapse into the run just made.
pub fn next_due(t: &Timing, due: Timestamp, now: Timestamp) -> Option<Timestamp> {
    let after = due.max(now);
    match t {
        Timing::Once { .. } => None,
        Timing::Every { every, .. } => {
            let period = every.as_nanos();
            if period <= 0 {
                return None;
            }
            let behind = after.duration_since(due).as_nanos();
            let steps = behind / period + 1;
            let offset = steps.checked_mul(period)?;
            let offset = SignedDuration::try_from_nanos_i128(offset)?;
            due.checked_add(offset).ok()
        }
        Timing::Cron { expr, tz, .. } => cron_after(expr, tz, after),
    }
}

/// Parses `run_at`: `YYYY-MM-DD hh:mm:ss` on the wall clock of `tz`, or RFC 3339 with `Z` or an
/// offset (`2026-07-01T10:00:00+02:00`).
pub fn parse_run_at(s: &str, tz: &TimeZone) -> Result<Timestamp, ScheduleError> {
    let s = s.trim();
    if let Ok(local) = jiff::fmt::strtime::parse("%Y-%m-%d %H:%M:%S", s)
        && let Ok(dt) = local.to_datetime()
    {
        return dt.to_zoned(tz.clone()).map(|z| z.timestamp()).map_err(|e| {
            ScheduleError::new(
                "run_at",
                format!("`{s}` is out of range in this time zone: {e}"),
            )
        });
    }
    s.parse::<Timestamp>().map_err(|_| {
        ScheduleError::new(
            "run_at",
            format!(
                "`{s}` is not a date: use \"YYYY-MM-DD hh:mm:ss\" (in the bot's timezone) \
                 or RFC 3339 with an offset, like \"2026-07-01T10:00:00Z\""
            ),
        )
    })
}

/// Resolves an IANA zone name (empty or `UTC` → UTC).
pub fn zone(name: &str) -> Result<TimeZone, ScheduleError> {
    let name = name.trim();
    if name.is_empty() || name.eq_ignore_ascii_case("UTC") {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(name).map_err(|_| {
        ScheduleError::new(
            "timezone",
            format!("`{name}` is not a known IANA time zone (like \"Europe/Berlin\" or \"UTC\")"),
        )
    })
}

/// Checks a `run_after_sec` value's range and makes it a duration.
fn checked_secs(secs: i64) -> Result<SignedDuration, ScheduleError> {
    if secs < 0 {
        return Err(ScheduleError::new(
            "run_after_sec",
            "run_after_sec must be >= 0",
        ));
    }
    if secs > MAX_SECS {
        return Err(ScheduleError::new(
            "run_after_sec",
            format!("run_after_sec must be at most {MAX_SECS} (10 years)"),
        ));
    }
    Ok(SignedDuration::from_secs(secs))
}

/// `now + d`, or an error on `field` past the end of representable time.
fn after(
    now: Timestamp,
    d: SignedDuration,
    field: &'static str,
) -> Result<Timestamp, ScheduleError> {
    now.checked_add(d)
        .map_err(|_| ScheduleError::new(field, "the due time is past the supported range"))
}

/// Parses a 5- or 6-field cron expression.
fn parse_cron(source: &str) -> Result<Cron, ScheduleError> {
    let parser = CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build();
    parser.parse(source).map_err(|e| {
        ScheduleError::new(
            "cron",
            format!("`{source}` is not a valid cron expression: {e}"),
        )
    })
}

/// The first occurrence of `expr` on the wall clock of `tz` strictly after `t`.
fn cron_after(expr: &Cron, tz: &TimeZone, t: Timestamp) -> Option<Timestamp> {
    let start = t.to_zoned(tz.clone());
    expr.find_next_occurrence(&start, false)
        .ok()
        .map(|z| z.timestamp())
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
