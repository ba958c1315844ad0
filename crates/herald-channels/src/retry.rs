//! The retry schedule for outbound deliveries: how long to wait after a
//! failed attempt, and when to give up. Everything here is pure — the caller
//! supplies the random number and the clock — so the schedule is fully
//! deterministic under test and the delivery loop owns all side effects.

use std::time::Duration;

use jiff::Timestamp;

/// Exponential back-off with a cap, jitter and respect for `Retry-After`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts, the first one included; after this many we give up.
    pub max_attempts: u32,
    /// Delay after the first failure; doubled for each further failure.
    pub base: Duration,
    /// No delay is ever longer than this, not even one a server asks for.
    pub max_delay: Duration,
    /// Relative spread (0.0–1.0) applied around the exponential delay so
    /// that many deliveries failing together do not retry in lockstep.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base: Duration::from_secs(2),
            max_delay: Duration::from_secs(3600),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// The delay before the next attempt, or `None` to give up.
    ///
    /// `attempt` is the 1-based number of the attempt that just failed,
    /// `retry_after` what the server asked for (if anything) and `rand01` a
    /// uniform random number in `[0, 1]` (0.5 means "no jitter").
    pub fn next_delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        rand01: f64,
    ) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        // An attempt number of 0 is a caller bug; treat it as the first
        // failure rather than underflowing the exponent.
        let exponent = attempt.saturating_sub(1);
        let exponential = 2u32
            .checked_pow(exponent)
            .and_then(|factor| self.base.checked_mul(factor))
            .map_or(self.max_delay, |d| d.min(self.max_delay));

        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let rand01 = if rand01.is_finite() {
            rand01.clamp(0.0, 1.0)
        } else {
            0.5
        };
        // Maps rand01 ∈ [0, 1] onto a factor in [1 - jitter, 1 + jitter].
        let factor = 1.0 + jitter * (2.0 * rand01 - 1.0);
        let jittered = Duration::try_from_secs_f64(exponential.as_secs_f64() * factor)
            .unwrap_or(self.max_delay)
            // The cap is a promise to operators, so it holds after jitter too.
            .min(self.max_delay);

        // The server knows its own load better than we do, so its hint is a
        // floor — but a hostile or confused server must not park a delivery
        // for days, hence the clamp.
        let floor = retry_after.map_or(Duration::ZERO, |d| d.min(self.max_delay));
        Some(jittered.max(floor))
    }
}

/// Parses an HTTP `Retry-After` value: either delta-seconds (`"120"`) or an
/// HTTP-date (`"Wed, 21 Oct 2015 07:28:00 GMT"`). A date in the past means
/// "now" and yields a zero duration; anything unparsable yields `None`.
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly large numbers saturate; the policy clamps them anyway.
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    // IMF-fixdate is a subset of RFC 2822's date-time; the obsolete RFC 850
    // and asctime forms are not worth the code for a retry hint.
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    Some(Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn no_jitter() -> RetryPolicy {
        RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn grows_exponentially_from_base() {
        let p = no_jitter();
        let delays: Vec<_> = (1..=5).map(|a| p.next_delay(a, None, 0.5)).collect();
        assert_eq!(
            delays,
            [secs(2), secs(4), secs(8), secs(16), secs(32)].map(Some)
        );
    }

    #[test]
    fn caps_at_max_delay() {
        let p = RetryPolicy {
            max_attempts: 100,
            ..no_jitter()
        };
        assert_eq!(p.next_delay(12, None, 0.5), Some(secs(3600)));
        // Far beyond u32 exponent range: must not overflow or panic.
        assert_eq!(p.next_delay(99, None, 1.0), Some(secs(3600)));
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let p = RetryPolicy::default(); // 20 % jitter
        let at = |r| p.next_delay(3, None, r).map_or(-1.0, |d| d.as_secs_f64());
        // Nanosecond rounding in Duration makes exact float equality fragile.
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        assert!(close(at(0.0), 6.4), "{}", at(0.0));
        assert!(close(at(0.5), 8.0), "{}", at(0.5));
        assert!(close(at(1.0), 9.6), "{}", at(1.0));
        for i in 0..=100 {
            let d = at(f64::from(i) / 100.0);
            assert!((6.4 - 1e-6..=9.6 + 1e-6).contains(&d), "{d} out of bounds");
        }
        // Out-of-range randomness is clamped rather than trusted.
        assert!(close(at(7.0), 9.6));
        assert!(close(at(f64::NAN), 8.0));
    }

    #[test]
    fn jitter_never_exceeds_the_cap() {
        let p = RetryPolicy {
            max_attempts: 100,
            ..RetryPolicy::default()
        };
        assert_eq!(p.next_delay(20, None, 1.0), Some(secs(3600)));
        assert!(p.next_delay(20, None, 0.0) < Some(secs(3600)));
    }

    #[test]
    fn retry_after_is_a_lower_bound() {
        let p = no_jitter();
        assert_eq!(p.next_delay(1, Some(secs(7)), 0.5), Some(secs(7)));
        // A shorter hint does not shorten our own back-off.
        assert_eq!(p.next_delay(4, Some(secs(3)), 0.5), Some(secs(16)));
    }

    #[test]
    fn retry_after_is_clamped_to_max_delay() {
        let p = no_jitter();
        assert_eq!(p.next_delay(1, Some(secs(86_400)), 0.5), Some(secs(3600)));
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let p = RetryPolicy {
            max_attempts: 3,
            ..no_jitter()
        };
        assert_eq!(p.next_delay(2, None, 0.5), Some(secs(4)));
        assert_eq!(p.next_delay(3, None, 0.5), None);
        assert_eq!(p.next_delay(4, Some(secs(1)), 0.5), None);
        let once = RetryPolicy {
            max_attempts: 1,
            ..no_jitter()
        };
        assert_eq!(once.next_delay(1, None, 0.5), None);
    }

    #[test]
    fn parses_delta_seconds() {
        let now = Timestamp::UNIX_EPOCH;
        assert_eq!(parse_retry_after("7", now), Some(secs(7)));
        assert_eq!(parse_retry_after(" 120 ", now), Some(secs(120)));
        assert_eq!(parse_retry_after("0", now), Some(secs(0)));
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("1.5", now), None);
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn parses_http_dates() -> Result<(), jiff::Error> {
        let now: Timestamp = "2015-10-21T07:27:00Z".parse()?;
        let hint = "Wed, 21 Oct 2015 07:28:00 GMT";
        assert_eq!(parse_retry_after(hint, now), Some(secs(60)));
        // A date already past means "retry now", not "never".
        let later: Timestamp = "2015-10-21T08:00:00Z".parse()?;
        assert_eq!(parse_retry_after(hint, later), Some(secs(0)));
        Ok(())
    }
}
