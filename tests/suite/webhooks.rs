//! Webhooks (issue 13, SPEC §13): subscriptions over the API, events written with the
//! change they report and posted to a real HTTP receiver (`tests/peers/webhook_receiver.py`)
//! that verifies every request with the `standardwebhooks` Python library; retries with
//! the same `webhook-id`, in order per address; a receiver that fails, hangs, closes or
//! answers 50 MB; SIGKILL during delivery; `bounce_rate.crossed`; bad input.
//! Both engines: the suite runs on PostgreSQL when `TEST_MAILTRAIL_PG` is set.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};

use super::delivery::{PROJECT, add_all, enc, setup, wait_status};
use crate::common::{App, WebhookReceiver};

const WAIT: Duration = Duration::from_secs(30);

/// Subscribes `url` to `events`; returns (id, secret).
fn subscribe(app: &App, url: &str, events: &[&str]) -> (String, String) {
    let created = app
        .post_json(
            "/api/v1/webhooks",
            &json!({"url": url, "events": events, "description": "test receiver"}),
        )
        .expect_status(201)
        .json();
    let secret = created["secret"].as_str().expect("a secret").to_owned();
    assert!(secret.starts_with("whsec_"), "{created:#}");
    (created["id"].as_str().expect("an id").to_owned(), secret)
}

/// A receiver answering 200 that knows the secret of a subscription of `app` to `events`.
fn receiver_for(app: &App, events: &[&str]) -> (WebhookReceiver, String) {
    let receiver = WebhookReceiver::start();
    let (id, secret) = subscribe(app, &receiver.url(), events);
    receiver.secret(&secret);
    (receiver, id)
}

fn suppress(app: &App, email: &str) {
    app.post_json(
        "/api/v1/suppressions",
        &json!({"email": email, "note": "test"}),
    )
    .expect_status(201);
}

fn unsuppress(app: &App, email: &str) {
    app.delete(&format!("/api/v1/suppressions/{}?note=test", enc(email)))
        .expect_status(200);
}

/// A minimal RFC 3464 report: `email` failed with 5.1.1.
fn dsn(email: &str) -> String {
    format!(
        "From: MAILER-DAEMON@mx.example.test\r\nTo: help@example.com\r\nSubject: Undelivered Mail\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n\
         --b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.test\r\n\r\n\
         Final-Recipient: rfc822; {email}\r\nAction: failed\r\nStatus: 5.1.1\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n\r\n--b1--\r\n"
    )
}

/// A minimal RFC 5965 abuse report about `email`.
fn arf(email: &str) -> String {
    format!(
        "From: fbl@isp.example.test\r\nTo: help@example.com\r\nSubject: complaint\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"b2\"\r\n\r\n\
         --b2\r\nContent-Type: text/plain\r\n\r\nA complaint.\r\n\
         --b2\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: test/1\r\n\
         Version: 1\r\nOriginal-Rcpt-To: {email}\r\n\r\n\
         --b2\r\nContent-Type: message/rfc822\r\n\r\nFrom: help@example.com\r\nTo: {email}\r\nSubject: Welcome\r\n\r\nhi\r\n--b2--\r\n"
    )
}

fn types(received: &[Value]) -> Vec<String> {
    received
        .iter()
        .map(|r| r["type"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// The address an event is about.
fn address_of(r: &Value) -> String {
    let data = &r["body"]["data"];
    data["recipient"]
        .as_str()
        .or(data["email"].as_str())
        .unwrap_or("")
        .to_owned()
}

#[test]
fn every_event_is_signed_and_verified_by_standardwebhooks() {
    let app = App::start();
    setup(&app);
    let (receiver, id) = receiver_for(&app, &["*"]);
    // message.sent (file transport) and decision.skipped (an agent who opted out).
    let sent = add_all(&app, PROJECT, &["ann@example.test"]);
    let sent_id = sent[0]["decision_id"].as_str().unwrap().to_owned();
    wait_status(&app, &sent_id, "sent");
    app.post_json(
        &format!("/api/v1/projects/{PROJECT}/customers"),
        &json!({"emails": ["bob@example.test"], "invite": false}),
    )
    .expect_status(200);
    // message.bounced + address.suppressed from a bounce report.
    app.post_raw("/api/v1/bounces", "message/rfc822", dsn("ann@example.test"))
        .expect_status(200);
    // address.unsuppressed, then a manual suppression.
    unsuppress(&app, "ann@example.test");
    suppress(&app, "carl@example.test");
    // complaint.received (and address.suppressed, reason complaint).
    app.post_raw(
        "/api/v1/bounces",
        "message/rfc822",
        arf("dora@example.test"),
    )
    .expect_status(200);
    let want = [
        "message.sent",
        "decision.skipped",
        "message.bounced",
        "address.suppressed",
        "address.unsuppressed",
        "complaint.received",
    ];
    let got = receiver.wait(WAIT, |r| {
        let t = types(r);
        want.iter().all(|w| t.iter().any(|x| x == w))
            && r.iter()
                .filter(|x| x["type"] == "address.suppressed")
                .count()
                >= 3
    });
    for r in &got {
        assert_eq!(r["verified"], true, "standardwebhooks refused: {r:#}");
        assert_eq!(r["answered"], 200, "{r:#}");
        assert!(r["id"].as_str().unwrap().starts_with("msg_"), "{r:#}");
        let body = &r["body"];
        assert!(
            body["timestamp"].is_string() && body["data"].is_object(),
            "{r:#}"
        );
    }
    let sent_event = got.iter().find(|r| r["type"] == "message.sent").unwrap();
    assert_eq!(sent_event["body"]["data"]["id"], sent_id.as_str());
    assert_eq!(sent_event["body"]["data"]["status"], "sent");
    let skipped = got
        .iter()
        .find(|r| r["type"] == "decision.skipped")
        .unwrap();
    assert_eq!(skipped["body"]["data"]["status_reason"], "agent_opted_out");
    // Per address, in the order the changes happened.
    let ann: Vec<String> = got
        .iter()
        .filter(|r| address_of(r) == "ann@example.test")
        .map(|r| r["type"].as_str().unwrap().to_owned())
        .collect();
    let pos = |t: &str| ann.iter().position(|x| x == t).unwrap();
    assert!(pos("message.sent") < pos("message.bounced"), "{ann:?}");
    assert!(
        pos("address.suppressed") < pos("address.unsuppressed"),
        "{ann:?}"
    );
    // Every try is in the delivery log (written when its round ends).
    let logged = crate::common::wait_until(WAIT, || {
        let log = app
            .get(&format!("/api/v1/webhooks/{id}/deliveries?limit=500"))
            .expect_status(200)
            .json();
        log["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["status"] == "delivered" && d["reply_code"] == 200)
            .count()
            >= got.len()
    });
    assert!(logged, "every delivery is logged");
}

#[test]
fn a_subscription_gets_only_its_events() {
    let app = App::start();
    setup(&app);
    let (receiver, _) = receiver_for(&app, &["address.unsuppressed"]);
    suppress(&app, "eve@example.test");
    unsuppress(&app, "eve@example.test");
    let got = receiver.wait(WAIT, |r| !r.is_empty());
    std::thread::sleep(Duration::from_millis(500));
    let all = receiver.received();
    assert_eq!(types(&all), vec!["address.unsuppressed"], "{got:#?}");
}

#[test]
fn bad_input_is_422_and_the_secret_is_shown_once() {
    let app = App::start();
    let long = format!("https://hooks.example.test/{}", "a".repeat(2048));
    for url in [
        "ftp://hooks.example.test/in",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]:8080/",
        "not a url",
        long.as_str(),
    ] {
        let r = app.post_json("/api/v1/webhooks", &json!({"url": url, "events": ["*"]}));
        r.expect_status(422);
        assert!(r.text.contains("url"), "{}", r.text);
    }
    for body in [
        json!({"url": "http://127.0.0.1:9/", "events": []}),
        json!({"url": "http://127.0.0.1:9/", "events": ["message.exploded"]}),
        json!({"url": "http://127.0.0.1:9/", "events": ["*"], "extra": 1}),
        json!({"url": "http://127.0.0.1:9/"}),
    ] {
        app.post_json("/api/v1/webhooks", &body).expect_status(422);
    }
    // Nothing was stored by the refused requests.
    let list = app.get("/api/v1/webhooks").expect_status(200).json();
    assert_eq!(list["items"], json!([]), "{list:#}");

    let (id, secret) = subscribe(&app, "http://127.0.0.1:9/hook", &["message.sent"]);
    let list = app.get("/api/v1/webhooks").expect_status(200).json();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(list["items"][0].get("secret").is_none(), "{list:#}");
    assert!(!list.to_string().contains(&secret));
    // Viewers and support may not see or change subscriptions.
    let viewer = app.cli(&["token", "create", "--role", "viewer"]);
    let token = String::from_utf8_lossy(&viewer.stdout).trim().to_owned();
    app.with_token(&token)
        .get("/api/v1/webhooks")
        .expect_status(403);
    // Never in the log.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !app.server_log().iter().any(|l| l.contains(&secret[6..])),
        "the secret was logged"
    );
    app.get("/api/v1/webhooks/wh_nope/deliveries")
        .expect_status(404);
    app.delete(&format!("/api/v1/webhooks/{id}"))
        .expect_status(200);
    app.delete(&format!("/api/v1/webhooks/{id}"))
        .expect_status(404);
    // The OpenAPI document lists the calls.
    let doc = app.get("/api/v1/openapi.json").expect_status(200).json();
    for path in [
        "/api/v1/webhooks",
        "/api/v1/webhooks/{id}",
        "/api/v1/webhooks/{id}/deliveries",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} not in the OpenAPI document"
        );
    }
}

/// A receiver that is down for a while (500s; "an hour" on the tests' 1 s retry
/// schedule) gets every event once it is back, each address's in order, and each
/// retried event with the same `webhook-id`.
#[test]
fn a_receiver_that_was_down_gets_every_event_in_order() {
    let app = App::start();
    let (receiver, id) = receiver_for(&app, &["address.suppressed", "address.unsuppressed"]);
    receiver.mode("fail");
    let addresses = ["fay@example.test", "gus@example.test"];
    for a in addresses {
        suppress(&app, a);
        unsuppress(&app, a);
        suppress(&app, a);
    }
    // Several tries, all of them of the first event of each address.
    let failing = receiver.wait(WAIT, |r| r.len() >= 6);
    let ids: BTreeSet<&str> = failing.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids.len(),
        2,
        "only each address's first event is tried: {failing:#?}"
    );
    for r in &failing {
        assert_eq!(r["type"], "address.suppressed");
        assert_eq!(r["verified"], true);
    }
    receiver.mode("ok");
    let got = receiver.wait(WAIT, |r| {
        r.iter().filter(|x| x["answered"] == 200).count() >= 6
    });
    let mut per_address: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut seen_ids = BTreeSet::new();
    for r in got.iter().filter(|r| r["answered"] == 200) {
        if seen_ids.insert(r["id"].as_str().unwrap().to_owned()) {
            per_address
                .entry(address_of(r))
                .or_default()
                .push(r["type"].as_str().unwrap().to_owned());
        }
    }
    for a in addresses {
        assert_eq!(
            per_address[a],
            vec![
                "address.suppressed",
                "address.unsuppressed",
                "address.suppressed"
            ],
            "{per_address:#?}"
        );
    }
    // The round's tries are logged once the round ends.
    let log = crate::common::wait_for(WAIT, || {
        let log = app
            .get(&format!("/api/v1/webhooks/{id}/deliveries?limit=500"))
            .expect_status(200)
            .json();
        let delivered = log["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["status"] == "delivered")
            .count();
        (delivered >= 6).then_some(log)
    })
    .expect("six deliveries logged");
    let statuses: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert!(
        statuses.contains(&"retrying") && statuses.contains(&"delivered"),
        "{log:#}"
    );
    assert!(
        log["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["reply_code"] == 500),
        "{log:#}"
    );
}

/// A receiver that closes the connection, answers 50 MB, or never answers: each costs
/// one try (a timeout for the hang), and delivery goes on.
#[test]
fn closing_huge_and_hung_receivers_cost_one_try_each() {
    let app = App::start();
    let (receiver, id) = receiver_for(&app, &["address.suppressed"]);
    receiver.mode("close");
    suppress(&app, "hal@example.test");
    receiver.wait(WAIT, |r| !r.is_empty());
    receiver.mode("big");
    // The retry is answered with 200 and a 50 MB body: delivered, the body not read.
    receiver.wait(WAIT, |r| r.iter().any(|x| x["answered"] == 200));
    receiver.mode("hang");
    suppress(&app, "ida@example.test");
    let started = std::time::Instant::now();
    receiver.wait(WAIT, |r| {
        r.iter().any(|x| address_of(x) == "ida@example.test")
    });
    receiver.mode("ok");
    receiver.wait(Duration::from_secs(40), |r| {
        r.iter()
            .any(|x| address_of(x) == "ida@example.test" && x["answered"] == 200)
    });
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "the hung try should take the 10 s timeout"
    );
    let log = app
        .get(&format!("/api/v1/webhooks/{id}/deliveries?limit=500"))
        .expect_status(200)
        .json();
    let items = log["items"].as_array().unwrap();
    assert!(
        items.iter().any(|d| d["status"] == "retrying"
            && d["reply_code"].is_null()
            && d["error"].as_str().unwrap_or("").contains("10 s")),
        "{log:#}"
    );
    assert!(
        items
            .iter()
            .all(|d| d["took_ms"].as_i64().unwrap() < 15_000),
        "{log:#}"
    );
    app.get("/healthz").expect_status(200);
}

/// SIGKILL while a webhook request is in flight: after the restart every event is
/// delivered, the one in flight again with the same `webhook-id`.
#[test]
fn sigkill_during_webhook_delivery_loses_no_event() {
    let mut app = App::builder().env("MAILTRAIL_LEASE", "2s").start();
    let (receiver, _) = receiver_for(&app, &["address.suppressed"]);
    receiver.mode("hang");
    let addresses: Vec<String> = (0..5).map(|n| format!("kim{n}@example.test")).collect();
    for a in &addresses {
        suppress(&app, a);
    }
    let in_flight = receiver.wait(WAIT, |r| !r.is_empty());
    app.kill_hard();
    receiver.mode("ok");
    app.restart();
    let got = receiver.wait(Duration::from_secs(60), |r| {
        let done: BTreeSet<String> = r
            .iter()
            .filter(|x| x["answered"] == 200)
            .map(address_of)
            .collect();
        addresses.iter().all(|a| done.contains(a))
    });
    let first = in_flight[0]["id"].as_str().unwrap();
    assert!(
        got.iter().any(|r| r["id"] == first && r["answered"] == 200),
        "the event in flight at the kill was delivered with the same id"
    );
    assert!(got.iter().all(|r| r["verified"] == true));
}

/// `bounce_rate.crossed`: once above 5 %, once above 10 %, not again while it stays
/// there, and once when it falls back under.
#[test]
fn bounce_rate_crossed_fires_once_per_crossing() {
    let app = App::start();
    setup(&app);
    let (receiver, _) = receiver_for(&app, &["bounce_rate.crossed"]);
    let send = |prefix: &str, n: usize| {
        let emails: Vec<String> = (0..n)
            .map(|i| format!("{prefix}{i}@example.test"))
            .collect();
        let inputs: Vec<&str> = emails.iter().map(String::as_str).collect();
        for r in add_all(&app, PROJECT, &inputs) {
            wait_status(&app, r["decision_id"].as_str().unwrap(), "sent");
        }
        emails
    };
    let first = send("a", 18);
    let bounce = |email: &str| {
        app.post_raw("/api/v1/bounces", "message/rfc822", dsn(email))
            .expect_status(200);
    };
    // bounced / (sent + bounced) over the decisions of the last hour, one bounce at a time.
    bounce(&first[0]); // 1/18 ≈ 5.6 %: above 5 %
    let got = receiver.wait(WAIT, |r| !r.is_empty());
    assert_eq!(got[0]["body"]["data"]["direction"], "up", "{got:#?}");
    assert_eq!(got[0]["body"]["data"]["threshold"], 0.05);
    bounce(&first[1]); // 2/18 ≈ 11 %: above 10 %
    let got = receiver.wait(WAIT, |r| r.len() >= 2);
    assert_eq!(got[1]["body"]["data"]["threshold"], 0.1, "{got:#?}");
    assert_eq!(got[1]["body"]["data"]["level"], "critical");
    bounce(&first[2]); // 3/18: still above 10 %: nothing
    bounce(&first[3]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(receiver.received().len(), 2, "{:#?}", receiver.received());
    // Many more sent: 4 / 100 = 4 %: back under both lines. (While they are sent the
    // rate may be seen between 5 % and 10 % first: then that is one "down" event too.)
    send("b", 80);
    let got = receiver.wait(WAIT, |r| {
        r.last().is_some_and(|x| x["body"]["data"]["level"] == "ok")
    });
    assert!(got.len() <= 4, "{got:#?}");
    for r in &got[2..] {
        assert_eq!(r["body"]["data"]["direction"], "down", "{got:#?}");
    }
    assert_eq!(got.last().unwrap()["body"]["data"]["threshold"], 0.05);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        receiver.received().len(),
        got.len(),
        "{:#?}",
        receiver.received()
    );
    assert!(receiver.received().iter().all(|r| r["verified"] == true));
}

/// PostgreSQL only: `serve` and two `mailtrail worker` processes on one database
/// deliver 300 events; while all live, none is sent twice (leases take turns), and
/// `mailtrail_webhook_deliveries_total` counts what this process delivered.
#[test]
fn several_processes_on_postgres_send_each_event_once() {
    let app = App::start();
    if !app.on_postgres() {
        return;
    }
    let (receiver, _) = receiver_for(&app, &["address.suppressed"]);
    let _a = app.spawn_worker("worker-a");
    let _b = app.spawn_worker("worker-b");
    let csv: String = (0..300)
        .map(|i| format!("multi{i}@example.test\n"))
        .collect();
    app.post_raw("/api/v1/suppressions/import", "text/csv", csv)
        .expect_status(200);
    let got = receiver.wait(Duration::from_secs(60), |r| {
        r.iter()
            .filter(|x| x["answered"] == 200)
            .map(|x| x["id"].as_str().unwrap_or(""))
            .collect::<BTreeSet<_>>()
            .len()
            >= 300
    });
    assert_eq!(got.len(), 300, "an event was sent twice");
    assert!(got.iter().all(|r| r["verified"] == true));
}

#[test]
fn delivered_webhooks_are_counted_in_metrics() {
    let app = App::start();
    let (receiver, _) = receiver_for(&app, &["*"]);
    suppress(&app, "met@example.test");
    receiver.wait(WAIT, |r| !r.is_empty());
    let counted =
        crate::common::wait_until(WAIT, || {
            app.anonymous().get("/metrics").text.lines().any(|l| {
                l.starts_with("mailtrail_webhook_deliveries_total{result=\"delivered\"} 1")
            })
        });
    assert!(counted, "the delivery is counted");
}
