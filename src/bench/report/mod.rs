//! The figures, as a table for people and as one JSON object for comparing runs.
//!
//! Every figure carries its value, its baseline from the same run, their ratio, the
//! target and whether it was met. The JSON keys are stable: `<figure>`,
//! `baseline_<figure>`, `ratio`, `target`, `pass`, so runs can be diffed with `jq`.
//! [`figures`] turns each part's result into rows and a section; this module lays
//! them out.

mod figures;
mod retention;
mod webhooks;

use crate::bench::lookup::Latency;
use serde_json::{Map, Value, json};

/// Collects rows and JSON sections as the parts finish.
pub struct Report {
    rows: Vec<Row>,
    /// Parts not measured, and why: printed under the table.
    notes: Vec<String>,
    json: Map<String, Value>,
}

/// One line of the table.
struct Row {
    figure: String,
    value: String,
    baseline: String,
    ratio: String,
    target: String,
    /// `Some(pass)` when the figure has a target; `None` for context rows.
    pass: Option<bool>,
}

impl Report {
    /// An empty report of a run of `what`.
    pub fn new(what: &str, quick: bool) -> Report {
        let mut json = Map::new();
        json.insert("what".into(), json!(what));
        json.insert("quick".into(), json!(quick));
        json.insert("machine".into(), machine());
        Report {
            rows: Vec::new(),
            notes: Vec::new(),
            json,
        }
    }

    fn section(&mut self, key: &str, value: Value) {
        self.json.insert(key.into(), value);
    }

    /// The JSON object.
    pub fn json(&self) -> String {
        let mut json = self.json.clone();
        if let Some(Value::Object(machine)) = json.get_mut("machine") {
            machine.insert("load_average_at_end".into(), json!(load_average()));
        }
        Value::Object(json).to_string()
    }

    /// The table, with a header naming the machine.
    pub fn table(&self) -> String {
        let machine = &self.json["machine"];
        let mut out = format!(
            "mailtrail bench — {} build, {} cores ({}), {}, load average {} at start, {} at end{}\n\n",
            machine["build"].as_str().unwrap_or("?"),
            machine["cores"],
            machine["cpu"].as_str().unwrap_or("?"),
            machine["os"].as_str().unwrap_or("?"),
            machine["load_average_at_start"],
            load_average().map_or("?".into(), |l| l.to_string()),
            if self.json["quick"] == json!(true) {
                "; --quick: smaller sizes, shorter windows"
            } else {
                ""
            },
        );
        let header = Row {
            figure: "figure".into(),
            value: "value".into(),
            baseline: "baseline (same run)".into(),
            ratio: "ratio".into(),
            target: "target".into(),
            pass: None,
        };
        let cells = |row: &Row| -> [String; 6] {
            let result = match row.pass {
                Some(true) => "pass",
                Some(false) => "MISSED",
                None if std::ptr::eq(row, &header) => "result",
                None => "",
            };
            [
                row.figure.clone(),
                row.value.clone(),
                row.baseline.clone(),
                row.ratio.clone(),
                row.target.clone(),
                result.into(),
            ]
        };
        let all: Vec<[String; 6]> = std::iter::once(&header)
            .chain(&self.rows)
            .map(cells)
            .collect();
        let mut widths = [0usize; 6];
        for row in &all {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for row in &all {
            let line: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, w)| format!("{cell}{}", " ".repeat(w - cell.chars().count())))
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        if !self.notes.is_empty() {
            out.push('\n');
        }
        for note in &self.notes {
            out.push_str(note);
            out.push('\n');
        }
        let missed = self.rows.iter().filter(|r| r.pass == Some(false)).count();
        out.push_str(&match missed {
            0 => "\nevery measured target met\n".to_owned(),
            n => format!("\n{n} target(s) MISSED\n"),
        });
        out
    }
}

fn context(figure: &str, value: String, baseline: String) -> Row {
    Row {
        figure: figure.into(),
        value,
        baseline,
        ratio: String::new(),
        target: String::new(),
        pass: None,
    }
}

fn latency_json(
    large: Latency,
    small: Latency,
    ratio: f64,
    target: &str,
    pass: bool,
) -> Map<String, Value> {
    let value = json!({
        "p50_ms": round(large.p50_ms, 3), "p99_ms": round(large.p99_ms, 3),
        "baseline_p50_ms": round(small.p50_ms, 3), "baseline_p99_ms": round(small.p99_ms, 3),
        "ratio": round(ratio, 3), "target": target, "pass": pass,
        "requests": large.requests, "baseline_requests": small.requests,
        "max_ms": round(large.max_ms, 3), "baseline_max_ms": round(small.max_ms, 3),
        "first_ms": round(large.first_ms, 3), "baseline_first_ms": round(small.first_ms, 3),
    });
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The machine the figures belong to.
fn machine() -> Value {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_owned();
    let meminfo = read("/proc/meminfo");
    let memory_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu": cpu,
        "memory_mib": memory_kib / 1024,
        "os": format!("{} {}", std::env::consts::OS, read("/proc/sys/kernel/osrelease").trim()),
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "load_average_at_start": load_average(),
        "version": env!("CARGO_PKG_VERSION"),
    })
}

/// The one-minute load average: above the core count, neighbours took CPU time from
/// the run and its latencies are worth a second look.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn round(x: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (x * scale).round() / scale
}

/// `1000000` as `1,000,000`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
