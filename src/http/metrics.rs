//! Prometheus text exposition: database-derived counts plus in-process histograms.
//!
//! Counts come from the database at scrape time, so every worker process sharing it
//! reports the same figures; latency histograms are per process.

use crate::store::MetricsSnapshot;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the histogram buckets.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A fixed-bucket latency histogram, lock-free.
#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; 15],
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.counts[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// This process's histograms.
#[derive(Default)]
pub struct Metrics {
    /// HTTP request durations.
    pub http_request: Histogram,
    /// SMTP delivery attempt durations.
    pub delivery_attempt: Histogram,
}

/// The whole exposition.
pub fn render(s: &MetricsSnapshot, m: &Metrics) -> String {
    let mut out = String::new();
    let family = |out: &mut String, name: &str, help: &str, label: &str, rows: &[(String, i64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (value, n) in rows {
            let _ = writeln!(
                out,
                "{name}{{{label}=\"{}\"}} {n}",
                value.replace(['"', '\\', '\n'], "_")
            );
        }
    };
    family(
        &mut out,
        "mailtrail_decisions_total",
        "Decisions recorded, by current status.",
        "status",
        &s.decisions_by_status,
    );
    family(
        &mut out,
        "mailtrail_skipped_total",
        "Skipped decisions, by primary reason.",
        "reason",
        &s.skipped_by_reason,
    );
    family(
        &mut out,
        "mailtrail_attempts_total",
        "SMTP delivery attempts, by outcome.",
        "outcome",
        &s.attempts_by_outcome,
    );
    let _ = writeln!(
        out,
        "# HELP mailtrail_queue_depth Decisions queued, deferred or sending.\n# TYPE mailtrail_queue_depth gauge\nmailtrail_queue_depth {}",
        s.queue_depth
    );
    let _ = writeln!(
        out,
        "# HELP mailtrail_oldest_queued_age_seconds Age of the oldest due decision.\n# TYPE mailtrail_oldest_queued_age_seconds gauge\nmailtrail_oldest_queued_age_seconds {}",
        s.oldest_queued_age_seconds
    );
    let _ = writeln!(
        out,
        "# HELP mailtrail_suppressions Addresses on the suppression list.\n# TYPE mailtrail_suppressions gauge\nmailtrail_suppressions {}",
        s.suppressions
    );
    m.http_request.render(
        &mut out,
        "mailtrail_http_request_duration_seconds",
        "HTTP request durations.",
    );
    m.delivery_attempt.render(
        &mut out,
        "mailtrail_delivery_attempt_duration_seconds",
        "SMTP delivery attempt durations.",
    );
    out
}
