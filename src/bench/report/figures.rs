//! Each part's result as table rows and a JSON section, with its target and verdict.

use super::{Report, Row, context, count, latency_json, mib, round};
use crate::bench::Plan;
use crate::bench::ingest::{CLIENTS, IngestResult, LoadRun};
use crate::bench::lookup::{Latency, LookupResult, SizeResult};
use crate::bench::pages::PagesOutcome;
use serde_json::{Map, Value, json};

impl Report {
    /// Ingest throughput against one transaction per request.
    pub fn ingest(&mut self, r: &IngestResult, plan: &Plan) {
        let (grouped, baseline) = (r.grouped_adds_per_sec(), r.baseline_adds_per_sec());
        let ratio = grouped / baseline.max(f64::MIN_POSITIVE);
        let pass = ratio >= 5.0 && grouped >= 8_000.0;
        let target = "≥ 5x baseline and ≥ 8,000 adds/s";
        self.rows.push(Row {
            figure: format!(
                "ingest, {CLIENTS} clients (adds/s, median of {})",
                r.grouped.len()
            ),
            value: count(grouped.round() as u64),
            baseline: format!("{} (1 tx/request)", count(baseline.round() as u64)),
            ratio: format!("{ratio:.2}x"),
            target: target.into(),
            pass: Some(pass),
        });
        let runs = |runs: &[LoadRun]| {
            runs.iter()
                .map(|r| json!({
                    "adds_per_sec": round(r.adds_per_sec, 1), "adds": r.adds, "seconds": round(r.seconds, 3), "errors": r.errors,
                }))
                .collect::<Vec<_>>()
        };
        let each = |runs: &[LoadRun]| {
            runs.iter()
                .map(|r| count(r.adds_per_sec.round() as u64))
                .collect::<Vec<_>>()
                .join(", ")
        };
        self.rows.push(context(
            "ingest, each run (adds/s)",
            each(&r.grouped),
            each(&r.baseline),
        ));
        let (errors, baseline_errors): (u64, u64) = (
            r.grouped.iter().map(|r| r.errors).sum(),
            r.baseline.iter().map(|r| r.errors).sum(),
        );
        self.section(
            "ingest",
            json!({
                "adds_per_sec": round(grouped, 1),
                "baseline_adds_per_sec": round(baseline, 1),
                "ratio": round(ratio, 3),
                "target": target,
                "pass": pass,
                "baseline": "one transaction per request (MAILTRAIL_GROUP_COMMIT=false)",
                "clients": CLIENTS,
                "runs": runs(&r.grouped),
                "baseline_runs": runs(&r.baseline),
                "warmup_seconds": plan.warmup.as_secs_f64(),
                "window_seconds": plan.ingest_window.as_secs_f64(),
                "errors": errors,
                "baseline_errors": baseline_errors,
            }),
        );
        if errors + baseline_errors > 0 {
            self.rows.push(context(
                "ingest errors (non-200 or dropped)",
                errors.to_string(),
                baseline_errors.to_string(),
            ));
        }
    }

    /// Server RSS idle and under the (group commit) ingest load: the highest of the runs.
    pub fn memory(&mut self, r: &IngestResult) {
        let most = |runs: &[LoadRun], pick: fn(&LoadRun) -> u64| {
            mib(runs.iter().map(pick).max().unwrap_or(0))
        };
        let idle = most(&r.grouped, |r| r.idle_kib);
        let baseline_idle = most(&r.baseline, |r| r.idle_kib);
        let loaded = most(&r.grouped, |r| r.peak_kib);
        let idle_ratio = idle / baseline_idle.max(f64::MIN_POSITIVE);
        let loaded_ratio = loaded / idle.max(f64::MIN_POSITIVE);
        let (idle_pass, loaded_pass) = (idle <= 30.0, loaded <= 150.0);
        self.rows.push(Row {
            figure: "memory idle (MiB RSS)".into(),
            value: format!("{idle:.1}"),
            baseline: format!("{baseline_idle:.1} (1-tx server idle)"),
            ratio: format!("{idle_ratio:.2}x"),
            target: "≤ 30 MiB".into(),
            pass: Some(idle_pass),
        });
        self.rows.push(Row {
            figure: "memory under ingest (MiB RSS, peak)".into(),
            value: format!("{loaded:.1}"),
            baseline: format!("{idle:.1} (idle)"),
            ratio: format!("{loaded_ratio:.2}x"),
            target: "≤ 150 MiB".into(),
            pass: Some(loaded_pass),
        });
        self.section("memory", json!({
            "idle": {
                "mib": round(idle, 2), "baseline_mib": round(baseline_idle, 2), "ratio": round(idle_ratio, 3),
                "target": "≤ 30 MiB", "pass": idle_pass,
                "baseline": "idle RSS of the one-transaction-per-request server",
            },
            "loaded": {
                "mib": round(loaded, 2), "baseline_mib": round(idle, 2), "ratio": round(loaded_ratio, 3),
                "target": "≤ 150 MiB", "pass": loaded_pass,
                "baseline": "idle RSS of the same server",
                "peak_of": "samples every 100 ms under the group-commit ingest load",
            },
            "baseline_server_loaded_mib": round(most(&r.baseline, |r| r.peak_kib), 2),
        }));
    }

    /// How long the large history took to seed, against the small one.
    pub fn seed(&mut self, r: &LookupResult) {
        let (large, small) = (
            r.large.seed.elapsed.as_secs_f64(),
            r.small.seed.elapsed.as_secs_f64(),
        );
        let ratio = large / small.max(f64::MIN_POSITIVE);
        // On PostgreSQL the time is SQLite's seeder plus `db copy`: a set-up cost of
        // the benchmark, with no target of its own.
        let (figure, target, pass) = if r.postgres {
            (
                format!(
                    "seed {} decisions, then db copy to postgres (s)",
                    count(r.large.size.decisions)
                ),
                "none (set-up)",
                None,
            )
        } else {
            (
                format!("seed {} decisions (s)", count(r.large.size.decisions)),
                "< 60 s",
                Some(large < 60.0),
            )
        };
        self.rows.push(Row {
            figure,
            value: format!("{large:.1}"),
            baseline: format!("{small:.2} ({})", count(r.small.size.decisions)),
            ratio: format!("{ratio:.0}x"),
            target: target.into(),
            pass,
        });
        let sizes = |s: &SizeResult| {
            json!({
                "decisions": s.seed.decisions, "suppressions": s.seed.suppressions, "customers": s.seed.customers,
                "memberships": s.seed.memberships, "attempts": s.seed.attempts,
            })
        };
        self.section("seed", json!({
            "seconds": round(large, 3), "baseline_seconds": round(small, 3), "ratio": round(ratio, 1),
            "target": target, "pass": pass, "rows": sizes(&r.large), "baseline_rows": sizes(&r.small),
            "copied_to_postgres": r.postgres,
        }));
    }

    /// Why look-up latency, large history against small.
    pub fn why(&mut self, r: &LookupResult) {
        let (Some(large), Some(small)) = (r.large.why, r.small.why) else {
            return;
        };
        let ratio = large.p99_ms / small.p99_ms.max(f64::MIN_POSITIVE);
        let pass = ratio <= 2.0 && large.p99_ms < 5.0;
        let target = format!(
            "p99 ≤ 2x p99 at {} and < 5 ms",
            count(r.small.size.decisions)
        );
        self.latency_rows("why API", r, large, small, &target, pass);
        let mut section = latency_json(large, small, ratio, &target, pass);
        section.insert("decisions".into(), json!(r.large.size.decisions));
        section.insert("suppressions".into(), json!(r.large.size.suppressions));
        section.insert("baseline_decisions".into(), json!(r.small.size.decisions));
        section.insert(
            "baseline_suppressions".into(),
            json!(r.small.size.suppressions),
        );
        self.section("why", Value::Object(section));
    }

    /// Page latency, large history against small.
    pub fn pages(&mut self, r: &LookupResult) {
        let (Some(large), Some(small)) = (&r.large.pages, &r.small.pages) else {
            return;
        };
        match (large, small) {
            (
                PagesOutcome::Measured { overview, why },
                PagesOutcome::Measured {
                    overview: overview_small,
                    why: why_small,
                },
            ) => {
                let mut section = Map::new();
                for (name, large, small) in [
                    ("overview", overview, overview_small),
                    ("why", why, why_small),
                ] {
                    let ratio = large.p99_ms / small.p99_ms.max(f64::MIN_POSITIVE);
                    let pass = large.p99_ms < 100.0;
                    let target = "p99 < 100 ms";
                    self.latency_rows(&format!("{name} page"), r, *large, *small, target, pass);
                    section.insert(
                        name.into(),
                        Value::Object(latency_json(*large, *small, ratio, target, pass)),
                    );
                }
                section.insert("decisions".into(), json!(r.large.size.decisions));
                section.insert("baseline_decisions".into(), json!(r.small.size.decisions));
                self.section("pages", Value::Object(section));
            }
            (PagesOutcome::NotMeasured(note), _) | (_, PagesOutcome::NotMeasured(note)) => {
                self.not_measured(
                    "pages",
                    "pages (overview, why)",
                    &format!("not measured: {note}"),
                );
            }
        }
    }

    /// Delivery throughput (issue 4), as `delivery::bench` measured it.
    pub fn delivery(&mut self, figures: &crate::delivery::bench::DeliveryFigures) {
        let (naive_pass, sink_pass) = (
            figures.ratio_to_naive >= 10.0,
            figures.ratio_to_sink >= 0.30,
        );
        self.rows.push(Row {
            figure: format!("delivery, {} at once (msgs/s)", figures.concurrency),
            value: count(figures.msgs_per_sec.round() as u64),
            baseline: format!(
                "{} (naive worker)",
                count(figures.naive_msgs_per_sec.round() as u64)
            ),
            ratio: format!("{:.2}x", figures.ratio_to_naive),
            target: "≥ 10x naive".into(),
            pass: Some(naive_pass),
        });
        self.rows.push(Row {
            figure: "delivery against the sink (msgs/s)".into(),
            value: count(figures.msgs_per_sec.round() as u64),
            baseline: format!(
                "{} (smtp-source)",
                count(figures.sink_raw_msgs_per_sec.round() as u64)
            ),
            ratio: format!("{:.2}x", figures.ratio_to_sink),
            target: "≥ 0.30x sink".into(),
            pass: Some(sink_pass),
        });
        if let Some(p) = &figures.processes {
            self.rows.push(Row {
                figure: format!("delivery, {} worker processes (msgs/s)", p.workers),
                value: count(p.msgs_per_sec.round() as u64),
                baseline: format!("{} received, {} sent twice", p.received, p.sent_twice),
                ratio: format!("{:.2}x", p.msgs_per_sec / figures.msgs_per_sec),
                target: "none sent twice".into(),
                pass: Some(p.sent_twice == 0 && p.received == p.messages),
            });
        }
        let mut section = serde_json::to_value(figures).unwrap_or_else(|_| json!({}));
        if let Value::Object(map) = &mut section {
            map.insert("pass".into(), json!(naive_pass && sink_pass));
            map.insert(
                "target".into(),
                json!("≥ 10x the naive worker and ≥ 0.30x the sink's raw rate"),
            );
        }
        self.section("delivery", section);
        let dkim = &figures.dkim;
        let mut dkim_pass = true;
        for (name, rate, ratio) in [
            ("Ed25519", dkim.ed25519_msgs_per_sec, dkim.ed25519_ratio),
            ("RSA-2048", dkim.rsa_msgs_per_sec, dkim.rsa_ratio),
        ] {
            let pass = ratio >= 0.7;
            dkim_pass &= pass;
            self.rows.push(Row {
                figure: format!("delivery, DKIM {name} signing on (msgs/s)"),
                value: count(rate.round() as u64),
                baseline: format!(
                    "{} (signing off)",
                    count(figures.msgs_per_sec.round() as u64)
                ),
                ratio: format!("{ratio:.2}x"),
                target: "≥ 0.70x unsigned".into(),
                pass: Some(pass),
            });
        }
        self.notes.push(format!(
            "DKIM: one signature costs {:.0} µs (Ed25519) and {:.0} µs (RSA-2048) on one core",
            dkim.ed25519_sign_micros, dkim.rsa_sign_micros
        ));
        let mut section = serde_json::to_value(dkim).unwrap_or_else(|_| json!({}));
        if let Value::Object(map) = &mut section {
            map.insert("unsigned_msgs_per_sec".into(), json!(figures.msgs_per_sec));
            map.insert("pass".into(), json!(dkim_pass));
            map.insert(
                "target".into(),
                json!("signed delivery ≥ 0.70x unsigned, for each algorithm"),
            );
        }
        self.section("delivery_dkim", section);
    }

    /// Bounce intake: the SMTP door against `POST /api/v1/bounces` (issue 12).
    pub fn bounces(&mut self, f: &crate::bench::bounces::BounceFigures) {
        let pass = f.smtp_per_sec >= 1000.0 || f.engine == "postgres";
        self.rows.push(Row {
            figure: format!(
                "bounce reports via SMTP, {} sessions, {} (reports/s)",
                crate::bench::bounces::SESSIONS,
                f.engine
            ),
            value: count(f.smtp_per_sec.round() as u64),
            baseline: format!(
                "{} (POST /api/v1/bounces)",
                count(f.http_per_sec.round() as u64)
            ),
            ratio: format!("{:.2}x", f.ratio),
            target: if f.engine == "postgres" {
                "stated".into()
            } else {
                "≥ 1,000/s".into()
            },
            pass: Some(pass && f.errors == 0),
        });
        let mut section = serde_json::to_value(f).unwrap_or_else(|_| json!({}));
        if let Value::Object(map) = &mut section {
            map.insert("pass".into(), json!(pass && f.errors == 0));
            map.insert(
                "target".into(),
                json!("≥ 1,000 reports/s through the SMTP door on SQLite; stated on PostgreSQL"),
            );
        }
        self.section("bounces", section);
    }

    /// A part this run could not measure, and why.
    pub fn not_measured(&mut self, key: &str, figure: &str, note: &str) {
        self.notes.push(format!("{figure}: {note}"));
        self.section(key, json!({ "measured": false, "note": note }));
    }

    fn latency_rows(
        &mut self,
        name: &str,
        r: &LookupResult,
        large: Latency,
        small: Latency,
        target: &str,
        pass: bool,
    ) {
        let ratio = large.p99_ms / small.p99_ms.max(f64::MIN_POSITIVE);
        let (n_large, n_small) = (count(r.large.size.decisions), count(r.small.size.decisions));
        self.rows.push(context(
            &format!("{name} p50 @ {n_large} (ms)"),
            format!("{:.2}", large.p50_ms),
            format!("{:.2} (@ {n_small})", small.p50_ms),
        ));
        self.rows.push(Row {
            figure: format!("{name} p99 @ {n_large} (ms, n={})", large.requests),
            value: format!("{:.2}", large.p99_ms),
            baseline: format!("{:.2} (@ {n_small})", small.p99_ms),
            ratio: format!("{ratio:.2}x"),
            target: target.into(),
            pass: Some(pass),
        });
    }
}
