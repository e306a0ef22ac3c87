//! `/metrics` (SPEC §14): counters that only go up, labelled as the spec names them,
//! HTTP series by route template, and a text exposition Prometheus parses.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::process::{Command, Stdio};

use reqwest::Method;
use serde_json::json;

use super::delivery::{PROJECT, WAIT, add_all, setup, wait_status};
use crate::common::{App, SmtpPeer, wait_until};

/// One scrape: the samples by series (`name{labels}` exactly as exposed) and the text.
struct Scrape {
    samples: HashMap<String, f64>,
    text: String,
}

impl Scrape {
    #[track_caller]
    fn of(app: &App) -> Scrape {
        let resp = app.anonymous().get("/metrics");
        resp.expect_status(200);
        let samples = parse_exposition(&resp.text);
        Scrape {
            samples,
            text: resp.text.clone(),
        }
    }

    /// The value of one series, 0 when it is absent.
    fn value(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }

    /// Every counter series (name ends in `_total`) with its value.
    fn counters(&self) -> BTreeMap<String, f64> {
        self.samples
            .iter()
            .filter(|(k, _)| k.split('{').next().is_some_and(|n| n.ends_with("_total")))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

/// A strict reading of the text format (version 0.0.4): every sample line is
/// `name{label="value",...} number`, belongs to a family announced by `# TYPE`, and
/// no series appears twice. Panics, naming the line, on anything else.
#[track_caller]
fn parse_exposition(text: &str) -> HashMap<String, f64> {
    let sample = regex::Regex::new(
        r#"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (\S+)$"#,
    )
    .expect("a valid regex");
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "family announced twice: {line}"
            );
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let caps = sample
            .captures(line)
            .unwrap_or_else(|| panic!("not a sample line: {line:?}"));
        let name = &caps[1];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample without # TYPE: {line}");
        let value: f64 = caps[3]
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        let series = format!("{name}{}", caps.get(2).map_or("", |m| m.as_str()));
        assert!(
            samples.insert(series, value).is_none(),
            "series twice: {line}"
        );
    }
    samples
}

#[test]
fn decision_and_delivery_counters_only_rise_as_mail_is_sent() {
    let peer = SmtpPeer::start();
    let app = App::builder().smarthost(&peer).start();
    setup(&app);
    let before = Scrape::of(&app);
    let send_agent = r#"mailtrail_decisions_total{channel="agent",verdict="send"}"#;
    let skip_agent = r#"mailtrail_decisions_total{channel="agent",verdict="skip"}"#;
    assert_eq!(before.value(send_agent), 0.0, "{}", before.text);
    assert!(
        before.samples.contains_key(send_agent),
        "labels present before any event: {}",
        before.text
    );

    // Four addresses, one of them twice; the same request again with its key is a
    // replay and records nothing.
    let body = json!({"emails": [
        "ok-1@example.test", "ok-2@example.test", "ok-3@example.test",
        "bounce-1@example.test", "ok-1@example.test",
    ]});
    let path = format!("/api/v1/projects/{PROJECT}/customers");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let resp = app.send(
            app.request(Method::POST, &path)
                .header("Idempotency-Key", "metrics-1")
                .json(&body),
        );
        resp.expect_status(200);
        ids = resp.json()["results"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|r| r["decision_id"].as_str().map(str::to_owned))
            .collect();
    }
    let opted_out = app
        .post_json(
            &path,
            &json!({"emails": ["quiet@example.test"], "invite": false}),
        )
        .expect_status(200)
        .json();
    assert_eq!(opted_out["results"][0]["decision"], "skip");

    let queued = Scrape::of(&app);
    assert_eq!(queued.value(send_agent), 4.0, "{}", queued.text);
    assert_eq!(queued.value(skip_agent), 1.0, "{}", queued.text);

    for (id, status) in ids.iter().zip(["sent", "sent", "sent", "bounced"]) {
        wait_status(&app, id, status);
    }
    // The record commits before the counter moves; give the worker a moment.
    let sent = r#"mailtrail_deliveries_total{outcome="sent"}"#;
    let bounced = r#"mailtrail_deliveries_total{outcome="bounced"}"#;
    assert!(wait_until(WAIT, || {
        let s = Scrape::of(&app);
        s.value(sent) == 3.0 && s.value(bounced) == 1.0
    }));
    let after = Scrape::of(&app);
    // The old bug: decisions were counted by *current* status, so sending mail made
    // the counter drop. Every counter is now at least what it was.
    for (series, was) in queued.counters() {
        assert!(
            after.value(&series) >= was,
            "{series} dropped from {was} to {}:\n{}",
            after.value(&series),
            after.text
        );
    }
    assert_eq!(after.value(send_agent), 4.0, "{}", after.text);
    assert_eq!(
        after.value(r#"mailtrail_suppressions_total{reason="hard_bounce"}"#),
        1.0,
        "{}",
        after.text
    );
    assert_eq!(
        after.value(r#"mailtrail_deliveries_total{outcome="failed"}"#),
        0.0
    );
    assert_eq!(
        after.value(r#"mailtrail_queue_depth{status="queued"}"#),
        0.0,
        "{}",
        after.text
    );
    assert!(
        after
            .samples
            .contains_key(r#"mailtrail_webhook_deliveries_total{result="delivered"}"#),
        "{}",
        after.text
    );
}

#[test]
fn queue_gauges_show_waiting_mail() {
    // No worker: what is added stays queued.
    let app = App::builder().env("MAILTRAIL_WORKER", "false").start();
    setup(&app);
    add_all(&app, PROJECT, &["a@example.test", "b@example.test"]);
    let scrape = Scrape::of(&app);
    assert_eq!(
        scrape.value(r#"mailtrail_queue_depth{status="queued"}"#),
        2.0,
        "{}",
        scrape.text
    );
    assert!(
        scrape
            .samples
            .contains_key("mailtrail_oldest_queued_seconds"),
        "{}",
        scrape.text
    );
}

#[test]
fn http_series_name_route_templates_and_the_exposition_parses() {
    let app = App::start();
    app.get("/api/v1/why/someone.private%40example.test")
        .expect_status(200);
    app.get("/api/v1/decisions/no-such-decision-xyz")
        .expect_status(404);
    app.anonymous().get("/no/such/page-xyz").expect_status(404);
    let scrape = Scrape::of(&app);
    assert_eq!(
        scrape.value(
            r#"mailtrail_http_requests_total{method="GET",route="/api/v1/why/{email}",status="200"}"#
        ),
        1.0,
        "{}",
        scrape.text
    );
    assert_eq!(
        scrape.value(
            r#"mailtrail_http_requests_total{method="GET",route="/api/v1/decisions/{id}",status="404"}"#
        ),
        1.0,
        "{}",
        scrape.text
    );
    // An unknown page falls to the dashboard's catch-all: its template, not its path.
    assert_eq!(
        scrape
            .value(r#"mailtrail_http_requests_total{method="GET",route="/{*path}",status="404"}"#),
        1.0,
        "{}",
        scrape.text
    );
    assert!(
        scrape
            .value(r#"mailtrail_http_request_duration_seconds_count{route="/api/v1/why/{email}"}"#)
            >= 1.0,
        "{}",
        scrape.text
    );
    for raw in ["someone", "no-such-decision-xyz", "page-xyz"] {
        assert!(
            !scrape.text.contains(raw),
            "a raw path leaked into a label ({raw}):\n{}",
            scrape.text
        );
    }
    for process in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(scrape.value(process) > 0.0, "{process} in\n{}", scrape.text);
    }
    assert!(
        scrape.samples.contains_key("process_cpu_seconds_total"),
        "{}",
        scrape.text
    );
    // Prometheus's own checker, when the test command installed it (PEERS.md §7.3).
    if let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(scrape.text.as_bytes())
                .expect("write to promtool");
        }
        let out = child.wait_with_output().expect("promtool ran");
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!(
            "note: promtool not installed; the exposition was checked by the Rust parser only"
        );
    }
}

#[test]
fn metrics_can_be_turned_off() {
    let app = App::builder().arg("--no-metrics").start();
    app.anonymous().get("/metrics").expect_status(404);
}

/// The decision id the report fixtures carry in their VERP addresses and Message-IDs.
const FIXTURE_ID: &str = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

#[test]
fn suppressions_and_bounce_reports_are_counted_where_they_are_applied() {
    let app = App::start();
    setup(&app);
    app.post_json(
        "/api/v1/suppressions",
        &json!({"email": "manual@example.test", "note": "asked us to stop"}),
    )
    .expect_status(201);
    app.post_raw(
        "/api/v1/suppressions/import",
        "text/csv",
        "email,reason,note\nimp-1@example.test,,\nimp-2@example.test,,\nmanual@example.test,,\n",
    )
    .expect_status(200);
    // A report about our invitation to nobody@example.test suppresses it.
    let added = add_all(&app, PROJECT, &["nobody@example.test"]);
    let id = added[0]["decision_id"].as_str().expect("an id").to_owned();
    wait_status(&app, &id, "sent");
    let path = crate::common::repo_root().join("tests/fixtures/reports/postfix_user_unknown.eml");
    let raw = std::fs::read_to_string(&path).expect("the fixture");
    app.post_raw(
        "/api/v1/bounces",
        "message/rfc822",
        raw.replace(FIXTURE_ID, &id),
    )
    .expect_status(200);
    app.post_raw("/api/v1/bounces", "message/rfc822", "not a report at all")
        .expect_status(422);

    let scrape = Scrape::of(&app);
    for (series, expected) in [
        (r#"mailtrail_suppressions_total{reason="manual"}"#, 1.0),
        (r#"mailtrail_suppressions_total{reason="import"}"#, 2.0),
        (
            r#"mailtrail_suppressions_total{reason="bounce_report"}"#,
            1.0,
        ),
        (
            r#"mailtrail_bounce_reports_total{result="suppressed"}"#,
            1.0,
        ),
        (r#"mailtrail_bounce_reports_total{result="invalid"}"#, 1.0),
        (
            r#"mailtrail_decisions_total{channel="agent",verdict="send"}"#,
            1.0,
        ),
    ] {
        assert_eq!(scrape.value(series), expected, "{series}:\n{}", scrape.text);
    }
}
