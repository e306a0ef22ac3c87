//! The Prometheus metrics of SPEC §14, kept by the `prometheus` crate.
//!
//! Counters live in this process and only go up: each is incremented once, where its
//! event happens (decisions after the ingest transaction committed, delivery tries
//! after their record committed, suppressions and bounce reports where they are
//! applied, HTTP requests in the router's middleware). A restart starts them at zero,
//! which `rate()` reads as a reset, as for any Prometheus client. The queue gauges are
//! read at scrape time from indexed counts ([`crate::store::QueueGauges`]), never by
//! reading a table in full; `process_*` comes from `/proc/self` on Linux.
//!
//! Every label value is one of a fixed list (wire names, route templates, status
//! codes), so no request can grow the number of series.

use crate::model::{Channel, Status, SuppressionReason, Verdict};
use crate::store::{Outcome, QueueGauges};
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::collections::HashSet;
use std::time::Duration;

/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Delivery outcomes counted by `mailtrail_deliveries_total` (SPEC §14).
pub const DELIVERY_OUTCOMES: &[&str] = &["sent", "deferred", "bounced", "failed"];

/// Results of `mailtrail_bounce_reports_total`: the per-address results of
/// `POST /api/v1/bounces`, and `invalid` for a report that was refused whole.
pub const BOUNCE_REPORT_RESULTS: &[&str] = &[
    "suppressed",
    "already_suppressed",
    "policy_rejected",
    "recorded",
    "unclassified",
    "invalid",
];

/// Results of `mailtrail_webhook_deliveries_total` (registered before webhooks exist,
/// so dashboards and alert rules can rely on the series).
pub const WEBHOOK_RESULTS: &[&str] = &["delivered", "failed"];

/// The statuses `mailtrail_queue_depth` reports.
pub const QUEUE_STATUSES: &[Status] = &[Status::Queued, Status::Deferred, Status::Sending];

/// This process's metrics and the registry they are exposed from.
pub struct Metrics {
    registry: Registry,
    decisions: IntCounterVec,
    deliveries: IntCounterVec,
    suppressions: IntCounterVec,
    bounce_reports: IntCounterVec,
    webhook_deliveries: IntCounterVec,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    delivery_duration: Histogram,
    queue_depth: IntGaugeVec,
    oldest_queued: Gauge,
}

/// A metric could not be defined or encoded (a programming error, never input).
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    /// Defines every metric of SPEC §14 in a registry of its own (tests build several),
    /// with every known label value at zero.
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let decisions = counter(
            "mailtrail_decisions_total",
            "Decisions recorded, by verdict (send or skip) and channel.",
            &["verdict", "channel"],
        )?;
        let deliveries = counter(
            "mailtrail_deliveries_total",
            "Delivery tries recorded, by outcome (sent, deferred, bounced, failed).",
            &["outcome"],
        )?;
        let suppressions = counter(
            "mailtrail_suppressions_total",
            "Addresses suppressed, by reason.",
            &["reason"],
        )?;
        let bounce_reports = counter(
            "mailtrail_bounce_reports_total",
            "Addresses named by bounce and complaint reports, by result; invalid counts refused reports.",
            &["result"],
        )?;
        let webhook_deliveries = counter(
            "mailtrail_webhook_deliveries_total",
            "Webhook deliveries, by result.",
            &["result"],
        )?;
        let http_requests = counter(
            "mailtrail_http_requests_total",
            "HTTP requests answered, by method, route template and status.",
            &["method", "route", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "mailtrail_http_request_duration_seconds",
                "HTTP request durations, by route template.",
            )
            .buckets(BUCKETS.to_vec()),
            &["route"],
        )?;
        registry.register(Box::new(http_duration.clone()))?;
        let delivery_duration = Histogram::with_opts(
            HistogramOpts::new(
                "mailtrail_delivery_attempt_duration_seconds",
                "SMTP delivery try durations.",
            )
            .buckets(BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(delivery_duration.clone()))?;
        let queue_depth = IntGaugeVec::new(
            Opts::new(
                "mailtrail_queue_depth",
                "Decisions waiting for delivery, by status.",
            ),
            &["status"],
        )?;
        registry.register(Box::new(queue_depth.clone()))?;
        let oldest_queued = Gauge::new(
            "mailtrail_oldest_queued_seconds",
            "How long the longest-waiting due message has waited for delivery.",
        )?;
        registry.register(Box::new(oldest_queued.clone()))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        // Known label values start at zero, so a series exists before its first event
        // and `rate()` over it needs no `or vector(0)`.
        for verdict in [Verdict::Send, Verdict::Skip] {
            for channel in Channel::ALL {
                decisions.with_label_values(&[verdict.as_str(), channel.as_str()]);
            }
        }
        for outcome in DELIVERY_OUTCOMES {
            deliveries.with_label_values(&[*outcome]);
        }
        for reason in SuppressionReason::ALL {
            suppressions.with_label_values(&[reason.as_str()]);
        }
        for result in BOUNCE_REPORT_RESULTS {
            bounce_reports.with_label_values(&[*result]);
        }
        for result in WEBHOOK_RESULTS {
            webhook_deliveries.with_label_values(&[*result]);
        }
        for status in QUEUE_STATUSES {
            queue_depth.with_label_values(&[status.as_str()]);
        }
        Ok(Metrics {
            registry,
            decisions,
            deliveries,
            suppressions,
            bounce_reports,
            webhook_deliveries,
            http_requests,
            http_duration,
            delivery_duration,
            queue_depth,
            oldest_queued,
        })
    }

    /// Counts the decisions this call recorded: an idempotent replay recorded none, and
    /// the repeats of an input share their first one's decision.
    pub fn decisions_recorded(&self, outcomes: &[Outcome]) {
        let mut seen = HashSet::new();
        for outcome in outcomes {
            let Some(channel) = outcome.recorded else {
                continue;
            };
            if seen.insert(outcome.decision_id.as_str()) {
                self.decisions
                    .with_label_values(&[outcome.decision.as_str(), channel.as_str()])
                    .inc();
            }
        }
    }

    /// Counts `n` decisions recorded outside the ingest path (e.g. resend-skipped).
    pub fn decisions_recorded_n(&self, verdict: Verdict, channel: Channel, n: u64) {
        self.decisions
            .with_label_values(&[verdict.as_str(), channel.as_str()])
            .inc_by(n);
    }

    /// Counts one recorded delivery try; `status` is the decision's status after it.
    pub fn delivery_recorded(&self, status: Status, took: Duration) {
        self.delivery_duration.observe(took.as_secs_f64());
        let outcome = match status {
            Status::Sent => "sent",
            Status::Deferred => "deferred",
            Status::Bounced => "bounced",
            // A try ends the decision `failed` for every other reason (policy, relay,
            // unroutable domain, retries exhausted).
            _ => "failed",
        };
        self.deliveries.with_label_values(&[outcome]).inc();
    }

    /// Counts `n` addresses newly suppressed for `reason`.
    pub fn suppressed(&self, reason: SuppressionReason, n: u64) {
        if n > 0 {
            self.suppressions
                .with_label_values(&[reason.as_str()])
                .inc_by(n);
        }
    }

    /// Counts one address of a bounce or complaint report, by its result; results
    /// outside [`BOUNCE_REPORT_RESULTS`] are counted as `recorded`.
    pub fn bounce_report(&self, result: &str) {
        let result = BOUNCE_REPORT_RESULTS
            .iter()
            .find(|r| **r == result)
            .copied()
            .unwrap_or("recorded");
        self.bounce_reports.with_label_values(&[result]).inc();
    }

    /// Counts one webhook delivery by result (`delivered` or `failed`).
    pub fn webhook_delivery(&self, delivered: bool) {
        let result = if delivered { "delivered" } else { "failed" };
        self.webhook_deliveries.with_label_values(&[result]).inc();
    }

    /// Counts one answered HTTP request. `route` must be a route template (or
    /// `unmatched`), never the raw path, so the series stay bounded.
    pub fn http_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        // Methods outside the standard list are folded, so a client cannot add series.
        let method = match method {
            "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => method,
            _ => "other",
        };
        self.http_requests
            .with_label_values(&[method, route, &status.to_string()])
            .inc();
        self.http_duration
            .with_label_values(&[route])
            .observe(took.as_secs_f64());
    }

    /// The exposition, with the queue gauges set from `queue` (read just before).
    pub fn render(&self, queue: &QueueGauges) -> Result<String, MetricsError> {
        for status in QUEUE_STATUSES {
            let n = queue
                .depth
                .iter()
                .find(|(s, _)| s == status)
                .map_or(0, |(_, n)| *n);
            self.queue_depth
                .with_label_values(&[status.as_str()])
                .set(n);
        }
        self.oldest_queued.set(queue.oldest_queued_seconds);
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        // The text encoder writes only UTF-8 (every name and label value is ours).
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn every_metric_of_the_spec_is_exposed_with_its_labels_at_zero() {
        let m = Metrics::new().expect("metrics");
        let text = m.render(&QueueGauges::default()).expect("render");
        for series in [
            r#"mailtrail_decisions_total{channel="email_request",verdict="skip"}"#,
            r#"mailtrail_deliveries_total{outcome="deferred"}"#,
            r#"mailtrail_suppressions_total{reason="hard_bounce"}"#,
            r#"mailtrail_bounce_reports_total{result="suppressed"}"#,
            r#"mailtrail_webhook_deliveries_total{result="delivered"}"#,
            r#"mailtrail_queue_depth{status="queued"}"#,
            "mailtrail_oldest_queued_seconds",
        ] {
            assert_eq!(sample(&text, series), Some(0.0), "{series} in\n{text}");
        }
        // The HTTP families appear with their first request (their labels are open).
        for family in [
            "# TYPE mailtrail_decisions_total counter",
            "# TYPE mailtrail_delivery_attempt_duration_seconds histogram",
            "# TYPE mailtrail_queue_depth gauge",
        ] {
            assert!(text.contains(family), "{family} in\n{text}");
        }
        #[cfg(target_os = "linux")]
        for process in ["process_resident_memory_bytes", "process_open_fds"] {
            assert!(
                sample(&text, process).is_some_and(|v| v > 0.0),
                "{process} in\n{text}"
            );
        }
    }

    #[test]
    fn http_requests_are_labelled_by_template_and_odd_methods_are_folded() {
        let m = Metrics::new().expect("metrics");
        m.http_request("GET", "/api/v1/why/{email}", 200, Duration::from_millis(3));
        m.http_request("BREW", "unmatched", 405, Duration::from_millis(1));
        let text = m.render(&QueueGauges::default()).expect("render");
        assert_eq!(
            sample(
                &text,
                r#"mailtrail_http_requests_total{method="GET",route="/api/v1/why/{email}",status="200"}"#
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"mailtrail_http_requests_total{method="other",route="unmatched",status="405"}"#
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"mailtrail_http_request_duration_seconds_count{route="/api/v1/why/{email}"}"#
            ),
            Some(1.0),
            "{text}"
        );
    }

    #[test]
    fn queue_gauges_follow_the_snapshot() {
        let m = Metrics::new().expect("metrics");
        let text = m
            .render(&QueueGauges {
                depth: vec![(Status::Queued, 7), (Status::Sending, 2)],
                oldest_queued_seconds: 12.5,
            })
            .expect("render");
        assert_eq!(
            sample(&text, r#"mailtrail_queue_depth{status="queued"}"#),
            Some(7.0)
        );
        assert_eq!(
            sample(&text, r#"mailtrail_queue_depth{status="deferred"}"#),
            Some(0.0)
        );
        assert_eq!(sample(&text, "mailtrail_oldest_queued_seconds"), Some(12.5));
    }

    #[test]
    fn deliveries_count_by_outcome() {
        let m = Metrics::new().expect("metrics");
        m.delivery_recorded(Status::Sent, Duration::from_millis(5));
        m.delivery_recorded(Status::Sent, Duration::from_millis(5));
        m.delivery_recorded(Status::Failed, Duration::from_millis(5));
        let text = m.render(&QueueGauges::default()).expect("render");
        assert_eq!(
            sample(&text, r#"mailtrail_deliveries_total{outcome="sent"}"#),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, r#"mailtrail_deliveries_total{outcome="failed"}"#),
            Some(1.0)
        );
    }
}
