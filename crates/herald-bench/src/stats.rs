//! Latency histograms, error tallies and result printing shared by all scenarios.
//!
//! Latencies are recorded in microseconds into [`hdrhistogram`] histograms and reported in
//! milliseconds. Nothing here asserts on a number: scenarios print what they measured next to
//! the target the server is expected to hit, and a final machine-readable `RESULT {json}` line.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency a histogram can hold (longer samples are clamped): 10 minutes in µs.
const MAX_LATENCY_US: u64 = 600_000_000;

/// A latency histogram in microseconds (1 µs … 10 min, 3 significant digits).
#[derive(Clone)]
pub struct LatencyHist(Histogram<u64>);

impl Default for LatencyHist {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHist {
    pub fn new() -> Self {
        // The bounds are constants that hdrhistogram accepts; failure would be a programming error.
        let h = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
            .expect("valid histogram bounds (1 µs .. 10 min, 3 digits)");
        Self(h)
    }

    /// Records one sample; values outside the range are clamped into it.
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(us.clamp(1, MAX_LATENCY_US));
    }

    /// Adds all samples of `other` into `self`.
    pub fn merge(&mut self, other: &LatencyHist) {
        // Same bounds on both sides, so `add` cannot fail; fall back to clamping just in case.
        if self.0.add(&other.0).is_err() {
            for v in other.0.iter_recorded() {
                self.0
                    .saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Percentile summary in milliseconds.
    pub fn summary(&self) -> LatencySummary {
        let ms = |us: u64| us as f64 / 1000.0;
        if self.0.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: self.0.len(),
            mean_ms: round3(self.0.mean() / 1000.0),
            p50_ms: ms(self.0.value_at_quantile(0.50)),
            p90_ms: ms(self.0.value_at_quantile(0.90)),
            p99_ms: ms(self.0.value_at_quantile(0.99)),
            p999_ms: ms(self.0.value_at_quantile(0.999)),
            max_ms: ms(self.0.max()),
        }
    }
}

/// Percentiles of a [`LatencyHist`], in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl LatencySummary {
    /// One-line human form: `p50 0.412 ms  p90 … (n=…)`.
    pub fn line(&self) -> String {
        format!(
            "p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms  (n={})",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms, self.count
        )
    }
}

/// Counts of failed requests, keyed by HTTP status (`"404"`) or failure kind (`"io"`, `"timeout"`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ErrorTally(BTreeMap<String, u64>);

impl ErrorTally {
    pub fn status(&mut self, status: u16) {
        self.add(status.to_string(), 1);
    }

    pub fn kind(&mut self, kind: &str) {
        self.add(kind.to_owned(), 1);
    }

    pub fn add(&mut self, key: String, n: u64) {
        *self.0.entry(key).or_default() += n;
    }

    pub fn merge(&mut self, other: &ErrorTally) {
        for (k, n) in &other.0 {
            self.add(k.clone(), *n);
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// `none`, or `404: 3, io: 1`.
    pub fn line(&self) -> String {
        if self.0.is_empty() {
            return "none".to_owned();
        }
        self.0
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Whether a measured value meets its target.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// Measured value must be at least this.
    AtLeast(f64),
    /// Measured value must be at most this.
    AtMost(f64),
    /// Informational row, no target.
    None,
}

impl Target {
    fn describe(self, unit: &str) -> String {
        match self {
            Target::AtLeast(v) => format!(">= {} {unit}", fmt_num(v)),
            Target::AtMost(v) => format!("<= {} {unit}", fmt_num(v)),
            Target::None => String::new(),
        }
    }

    fn met(self, measured: f64) -> &'static str {
        match self {
            Target::AtLeast(v) if measured >= v => "yes",
            Target::AtMost(v) if measured <= v => "yes",
            Target::AtLeast(_) | Target::AtMost(_) => "NO",
            Target::None => "",
        }
    }
}

/// A summary table: metric, measured value, target, met.
#[derive(Default)]
pub struct Table {
    rows: Vec<(String, f64, String, Target)>,
}

impl Table {
    pub fn row(&mut self, metric: &str, measured: f64, unit: &str, target: Target) {
        self.rows
            .push((metric.to_owned(), measured, unit.to_owned(), target));
    }

    /// Appends the rows of `other`.
    pub fn extend(&mut self, other: Table) {
        self.rows.extend(other.rows);
    }

    pub fn render(&self) -> String {
        let measured: Vec<String> = self
            .rows
            .iter()
            .map(|(_, v, unit, _)| format!("{} {unit}", fmt_num(*v)))
            .collect();
        let targets: Vec<String> = self
            .rows
            .iter()
            .map(|(_, _, unit, t)| t.describe(unit))
            .collect();
        let w0 = self
            .rows
            .iter()
            .map(|r| r.0.len())
            .max()
            .unwrap_or(0)
            .max(6);
        let w1 = measured.iter().map(String::len).max().unwrap_or(0).max(8);
        let w2 = targets.iter().map(String::len).max().unwrap_or(0).max(6);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<w0$}  {:>w1$}  {:>w2$}  met",
            "metric", "measured", "target"
        );
        let _ = writeln!(out, "{}", "-".repeat(w0 + w1 + w2 + 9));
        for (i, (name, v, _, t)) in self.rows.iter().enumerate() {
            let _ = writeln!(
                out,
                "{:<w0$}  {:>w1$}  {:>w2$}  {}",
                name,
                measured[i],
                targets[i],
                t.met(*v)
            );
        }
        out
    }
}

/// Formats a number for humans: integers without decimals, small values with three.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// `count / seconds`, or 0 when no time passed.
pub fn per_sec(count: u64, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s > 0.0 { count as f64 / s } else { 0.0 }
}

/// Rounds to three decimals so the `RESULT` JSON stays readable.
pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_percentiles_in_ms() {
        let mut h = LatencyHist::new();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us * 10));
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        assert!((s.p50_ms - 5.0).abs() < 0.05, "{s:?}");
        assert!((s.max_ms - 10.0).abs() < 0.05, "{s:?}");
        let mut other = LatencyHist::new();
        other.record(Duration::from_secs(1));
        h.merge(&other);
        assert_eq!(h.len(), 1001);
        assert!(h.summary().max_ms >= 999.0);
    }

    #[test]
    fn error_tally_line() {
        let mut e = ErrorTally::default();
        assert_eq!(e.line(), "none");
        e.status(404);
        e.status(404);
        e.kind("io");
        assert_eq!(e.line(), "404: 2, io: 1");
        assert_eq!(e.total(), 3);
    }

    #[test]
    fn table_marks_targets() {
        let mut t = Table::default();
        t.row("rate", 30000.0, "/s", Target::AtLeast(25000.0));
        t.row("p99", 7.5, "ms", Target::AtMost(5.0));
        let s = t.render();
        assert!(s.contains("yes"), "{s}");
        assert!(s.contains("NO"), "{s}");
    }
}
