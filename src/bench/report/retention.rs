//! The retention figure: ingest while a purge runs, against ingest with nothing to purge.

use super::{Report, Row, context, count, round};
use crate::bench::ingest::{LoadRun, median};
use crate::bench::retention::RetentionResult;
use serde_json::json;

impl Report {
    /// Ingest with a purge running, against the same server with nothing to purge.
    pub fn retention(&mut self, r: &RetentionResult) {
        let rate = |runs: &[LoadRun]| median(runs.iter().map(|r| r.adds_per_sec));
        let (with, without) = (rate(&r.with_purge), rate(&r.without));
        let ratio = with / without.max(f64::MIN_POSITIVE);
        let target = "≥ 0.8x ingest without a purge; rows purged meanwhile";
        let pass = ratio >= 0.8 && r.purged.iter().all(|&p| p > 0);
        self.rows.push(Row {
            figure: format!(
                "ingest while purging (adds/s, median of {})",
                r.with_purge.len()
            ),
            value: count(with.round() as u64),
            baseline: format!("{} (nothing to purge)", count(without.round() as u64)),
            ratio: format!("{ratio:.2}x"),
            target: target.into(),
            pass: Some(pass),
        });
        let each = |runs: &[LoadRun]| {
            runs.iter()
                .map(|r| count(r.adds_per_sec.round() as u64))
                .collect::<Vec<_>>()
                .join(", ")
        };
        self.rows.push(context(
            "ingest while purging, each run",
            each(&r.with_purge),
            each(&r.without),
        ));
        let purged: u64 = r.purged.iter().sum();
        let seconds: f64 = r.purge_seconds.iter().sum();
        let per_sec = purged as f64 / seconds.max(f64::MIN_POSITIVE);
        self.rows.push(context(
            "decisions purged meanwhile, each run",
            format!(
                "{} of {} ({}/s)",
                r.purged
                    .iter()
                    .map(|&p| count(p))
                    .collect::<Vec<_>>()
                    .join(", "),
                count(r.seeded),
                count(per_sec.round() as u64)
            ),
            String::new(),
        ));
        let runs = |runs: &[LoadRun]| {
            runs.iter()
                .map(|r| json!({"adds_per_sec": round(r.adds_per_sec, 1), "adds": r.adds, "errors": r.errors}))
                .collect::<Vec<_>>()
        };
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
                "purge_seconds": r.purge_seconds.iter().map(|s| round(*s, 3)).collect::<Vec<_>>(),
                "runs": runs(&r.with_purge),
                "baseline_runs": runs(&r.without),
            }),
        );
    }
}
