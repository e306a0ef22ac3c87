//! `bench webhooks` as a table row and a JSON section.

use super::{Report, Row, count};
use crate::bench::webhooks::WebhookFigures;
use serde_json::json;

impl Report {
    /// Events per second delivered against the receiver's raw rate (target ≥ 0.3x).
    pub fn webhooks(&mut self, f: &WebhookFigures) {
        let pass = f.ratio >= 0.3;
        self.rows.push(Row {
            figure: format!("webhook events delivered, {} (events/s)", f.engine),
            value: count(f.events_per_sec.round() as u64),
            baseline: format!("{} (receiver raw)", count(f.raw_per_sec.round() as u64)),
            ratio: format!("{:.2}x", f.ratio),
            target: "≥ 0.30x receiver".into(),
            pass: Some(pass),
        });
        self.section(
            "webhooks",
            json!({
                "events_per_sec": f.events_per_sec,
                "baseline_raw_per_sec": f.raw_per_sec,
                "ratio": f.ratio,
                "events": f.events,
                "engine": f.engine,
                "target": 0.3,
                "pass": pass,
            }),
        );
    }
}
