//! The retention figure: ingest while a purge runs, against ingest with nothing to purge.

use super::{Report, Row, context, count, round};
use crate::bench::retention::RetentionResult;
use serde_json::json;

impl Report {
    /// Ingest with a purge running, against the same server with nothing to purge.
    pub fn retention(&mut self, r: &RetentionResult) {
        let (with, without) = (r.with_purge.adds_per_sec, r.without.adds_per_sec);
        let ratio = with / without.max(f64::MIN_POSITIVE);
        let target = "≥ 0.8x ingest without a purge; rows purged meanwhile";
        let pass = ratio >= 0.8 && r.purged > 0;
        self.rows.push(Row {
            figure: "ingest while purging (adds/s)".into(),
            value: count(with.round() as u64),
            baseline: format!("{} (nothing to purge)", count(without.round() as u64)),
            ratio: format!("{ratio:.2}x"),
            target: target.into(),
            pass: Some(pass),
        });
        let rate = r.purged as f64 / r.purge_seconds.max(f64::MIN_POSITIVE);
        self.rows.push(context(
            "decisions purged meanwhile",
            format!(
                "{} of {} ({}/s)",
                count(r.purged),
                count(r.seeded),
                count(rate.round() as u64)
            ),
            String::new(),
        ));
        self.section(
            "retention",
            json!({
                "adds_per_sec": round(with, 1),
                "baseline_adds_per_sec": round(without, 1),
                "ratio": round(ratio, 3),
                "target": target,
                "pass": pass,
                "baseline": "the same load and seeded history with --retention 400d (nothing to purge)",
                "seeded_decisions": r.seeded,
                "purged_decisions": r.purged,
                "purge_seconds": round(r.purge_seconds, 3),
                "errors": r.with_purge.errors,
                "baseline_errors": r.without.errors,
            }),
        );
    }
}
