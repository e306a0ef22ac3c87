//! Two engines, many processes (SPEC §10): `db copy` both ways, several `serve` and
//! `worker` processes on one PostgreSQL database, wake-up across processes, a database
//! that goes away and comes back, and start-up with a wrong database URL.
//!
//! The tests that need PostgreSQL run in the suite's PostgreSQL pass (`TEST_MAILTRAIL_PG`,
//! set by `./scripts/test.sh`) and return at once in the SQLite pass.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{App, OutputExt, SmtpPeer, pg, wait_until};

const WAIT: Duration = Duration::from_secs(60);

fn create_project(app: &App, key: &str) {
    app.api()
        .put_json(
            &format!("/api/v1/projects/{key}"),
            &json!({"name": format!("Project {key}")}),
        )
        .expect_status(200);
}

fn add_customers(app: &App, key: &str, emails: &[String]) -> Vec<Value> {
    let resp = app.api().post_json(
        &format!("/api/v1/projects/{key}/customers"),
        &json!({"emails": emails, "invite": true}),
    );
    resp.expect_status(200);
    resp.json()["results"].as_array().expect("results").clone()
}

/// Every decision of the store, through the paging API.
fn all_decisions(app: &App) -> Vec<Value> {
    let mut out = Vec::new();
    let mut path = "/api/v1/decisions?limit=200".to_owned();
    loop {
        let page = app.api().get(&path);
        page.expect_status(200);
        let body = page.json();
        out.extend(body["items"].as_array().expect("items").iter().cloned());
        match body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/decisions?limit=200&cursor={cursor}"),
            None => return out,
        }
    }
}

fn count_with_status(app: &App, status: &str) -> usize {
    all_decisions(app)
        .iter()
        .filter(|d| d["status"] == status)
        .count()
}

/// The `why` answer of every address the store has decided about, by address.
fn why_answers(app: &App) -> BTreeMap<String, Value> {
    let addresses: BTreeSet<String> = all_decisions(app)
        .iter()
        .filter_map(|d| d["recipient"].as_str().map(str::to_owned))
        .collect();
    addresses
        .into_iter()
        .map(|address| {
            let resp = app
                .api()
                .get(&format!("/api/v1/why/{}", urlencode(&address)));
            resp.expect_status(200);
            (address, resp.json())
        })
        .collect()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'@' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn db_copy_carries_a_demo_store_to_postgres_and_back_with_the_same_answers() {
    let Some(postgres_url) = pg::fresh_database() else {
        return;
    };
    // A demo store on SQLite, explicitly, whatever this pass's engine.
    let scratch = tempfile::tempdir().expect("a temp dir");
    let sqlite = scratch.path().join("demo-src.db").display().to_string();
    let mut demo = App::builder()
        .arg("--demo")
        .env("MAILTRAIL_DB", sqlite.clone())
        // The demo's greylisted message is retried an hour later, not in the suite's
        // usual second: else whichever server runs next (on PostgreSQL, or on the copy
        // back) delivers it, and its answer changes between the copies.
        .env("MAILTRAIL_RETRY_SCHEDULE", "1h,1h,1h")
        .start();
    let before = why_answers(&demo);
    assert!(
        before.len() >= 5,
        "the demo decided about several addresses"
    );
    demo.terminate();

    // SQLite → PostgreSQL: counts printed for every table, equal on both sides.
    let copied = demo.cli(&["db", "copy", &sqlite, &postgres_url]);
    assert_eq!(copied.code(), 0, "{}", copied.stderr_text());
    let table = copied.stdout_text();
    for name in [
        "decisions",
        "suppressions",
        "customers",
        "audit",
        "attempts",
    ] {
        assert!(table.contains(name), "counts of {name}: {table}");
    }
    // A second copy into the now non-empty destination is refused, and changes nothing.
    let again = demo.cli(&["db", "copy", &sqlite, &postgres_url]);
    assert_eq!(again.code(), 2, "{}", again.stderr_text());
    assert!(
        again.stderr_text().contains("not empty"),
        "{}",
        again.stderr_text()
    );

    let mut on_postgres = App::builder()
        .env("MAILTRAIL_DB", postgres_url.clone())
        .env("MAILTRAIL_RETRY_SCHEDULE", "1h,1h,1h")
        .start();
    let answers = why_answers(&on_postgres);
    assert_eq!(answers, before, "why answers the same on PostgreSQL");
    // The copy keeps working: a new decision gets a new sequence number.
    create_project(&on_postgres, "AFTERCOPY");
    add_customers(
        &on_postgres,
        "AFTERCOPY",
        &["fresh@example.test".to_owned()],
    );
    on_postgres.terminate();

    // PostgreSQL → a new SQLite file.
    let back = scratch.path().join("back.db").display().to_string();
    let copied = demo.cli(&["db", "copy", &postgres_url, &back]);
    assert_eq!(copied.code(), 0, "{}", copied.stderr_text());
    let back_app = App::builder()
        .env("MAILTRAIL_DB", back)
        .env("MAILTRAIL_RETRY_SCHEDULE", "1h,1h,1h")
        .start();
    let mut after = why_answers(&back_app);
    after.remove("fresh@example.test");
    assert_eq!(after, before, "why answers the same after the round trip");
}

/// Two `serve` and two `worker` processes share one PostgreSQL database: each message
/// goes out exactly once while they all live.
#[test]
fn two_servers_and_two_workers_send_every_message_exactly_once() {
    let Some(db) = pg::fresh_database() else {
        return;
    };
    let peer = SmtpPeer::start();
    let builder = |name: &str| {
        App::builder()
            .name(name)
            .smarthost(&peer)
            .env("MAILTRAIL_DB", db.clone())
    };
    let a = builder("serve-a").start();
    let b = builder("serve-b").start();
    let _worker_c = a.spawn_worker("worker-c");
    let _worker_d = b.spawn_worker("worker-d");
    create_project(&a, "MULTI");
    let emails: Vec<String> = (0..60).map(|i| format!("m{i}@example.test")).collect();
    // Half through each server, in small requests, interleaved.
    for (i, chunk) in emails.chunks(5).enumerate() {
        let app = if i % 2 == 0 { &a } else { &b };
        for result in add_customers(app, "MULTI", chunk) {
            assert_eq!(result["status"], "queued", "{result:#}");
        }
    }
    let messages = peer.wait_for_messages(emails.len(), WAIT);
    assert!(
        wait_until(WAIT, || count_with_status(&a, "sent") == emails.len()),
        "every decision is sent"
    );
    // Give a duplicate, if any, time to arrive, then count at the sink.
    std::thread::sleep(Duration::from_secs(2));
    let messages = if messages.len() == emails.len() {
        peer.messages()
    } else {
        messages
    };
    let ids: Vec<String> = messages
        .iter()
        .filter_map(|m| m.header("Message-ID"))
        .collect();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), emails.len(), "no message sent twice");
    assert_eq!(unique.len(), emails.len(), "one Message-ID per decision");
}

/// A worker killed with messages leased: after the lease, another process's worker
/// sends them, under the same Message-ID.
#[test]
fn a_killed_workers_leased_messages_are_sent_by_another_after_the_lease() {
    let Some(db) = pg::fresh_database() else {
        return;
    };
    let peer = SmtpPeer::start();
    // The front door delivers nothing itself; the lease is short.
    let front = App::builder()
        .name("front")
        .smarthost(&peer)
        .env("MAILTRAIL_DB", db.clone())
        .env("MAILTRAIL_WORKER", "false")
        .env("MAILTRAIL_LEASE", "4s")
        .start();
    create_project(&front, "LEASE");
    // `slow*` recipients hold the RCPT reply for 3 s: the worker is mid-batch.
    let emails: Vec<String> = (0..4).map(|i| format!("slow{i}@example.test")).collect();
    let results = add_customers(&front, "LEASE", &emails);
    let ids: BTreeSet<String> = results
        .iter()
        .map(|r| r["decision_id"].as_str().expect("an id").to_owned())
        .collect();
    let mut first = front.spawn_worker("worker-1");
    assert!(
        wait_until(WAIT, || count_with_status(&front, "sending") > 0),
        "the first worker leased messages"
    );
    first.kill();
    let sent_before = peer.messages().len();
    assert!(sent_before < emails.len(), "killed mid-batch");
    let _second = front.spawn_worker("worker-2");
    assert!(
        wait_until(WAIT, || count_with_status(&front, "sent") == emails.len()),
        "the second worker sent everything after the lease"
    );
    let received: BTreeSet<String> = peer
        .messages()
        .iter()
        .filter_map(|m| m.header("Message-ID"))
        .collect();
    let expected: BTreeSet<String> = ids.iter().map(|id| format!("<{id}@example.com>")).collect();
    assert_eq!(
        received, expected,
        "the same Message-IDs, whoever sent them"
    );
}

/// A decision queued through one process wakes an idle worker of another at once
/// (LISTEN/NOTIFY), long before that worker's next poll.
#[test]
fn a_decision_queued_by_one_process_wakes_the_worker_of_another() {
    let Some(db) = pg::fresh_database() else {
        return;
    };
    let peer = SmtpPeer::start();
    let front = App::builder()
        .name("front")
        .smarthost(&peer)
        .env("MAILTRAIL_DB", db.clone())
        .env("MAILTRAIL_WORKER", "false")
        .start();
    create_project(&front, "WAKE");
    let worker_app = App::builder()
        .name("idle")
        .smarthost(&peer)
        .env("MAILTRAIL_DB", db)
        .env("MAILTRAIL_POLL_INTERVAL", "60s")
        .build_stopped();
    let _worker = worker_app.spawn_worker("idle-worker");
    // Let the worker finish its first (empty) poll and go idle.
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    add_customers(&front, "WAKE", &["woken@example.test".to_owned()]);
    let messages = peer.wait_for_messages(1, Duration::from_secs(20));
    let took = started.elapsed();
    assert_eq!(messages.len(), 1, "the idle worker sent it");
    eprintln!("picked up across processes after {took:?}");
    // SPEC §10 says within 1 s; the bound leaves room for a loaded CI machine, and is
    // far below the 60 s poll interval, so only the notification can explain it.
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

/// PostgreSQL stops mid-run and starts again: the API answers 503
/// `database_unavailable` with `Retry-After`, the dashboard an error page, and work
/// accepted before the outage is delivered after it.
#[test]
fn the_database_going_away_is_a_503_and_nothing_accepted_is_lost() {
    if !pg::enabled() {
        return;
    }
    let server = pg::PrivateServer::start();
    let db = server.database("outage");
    let peer = SmtpPeer::start();
    let app = App::builder()
        .smarthost(&peer)
        .env("MAILTRAIL_DB", db)
        .start();
    create_project(&app, "OUT");
    add_customers(&app, "OUT", &["before@example.test".to_owned()]);
    peer.wait_for_messages(1, WAIT);

    server.halt();
    let resp = app.api().get("/api/v1/why/before@example.test");
    assert_eq!(resp.status, 503, "{}", resp.text);
    assert_eq!(resp.json()["error"]["code"], "database_unavailable");
    assert!(resp.header("retry-after").is_some(), "Retry-After is set");
    let write = app.api().post_json(
        "/api/v1/projects/OUT/customers",
        &json!({"emails": ["during@example.test"]}),
    );
    assert_eq!(write.status, 503, "{}", write.text);
    // The dashboard shows an error page, not JSON.
    let page = app.api().anonymous().get("/login");
    assert!(page.status == 200 || page.status == 503, "{}", page.status);

    server.resume();
    assert!(
        wait_until(WAIT, || app
            .api()
            .get("/api/v1/why/before@example.test")
            .status
            == 200),
        "the API answers again once the database is back"
    );
    add_customers(&app, "OUT", &["after@example.test".to_owned()]);
    let messages = peer.wait_for_messages(2, WAIT);
    let to: BTreeSet<String> = messages.iter().flat_map(|m| m.rcpt_tos.clone()).collect();
    assert!(to.contains("after@example.test"), "{to:?}");
    assert!(
        !to.contains("during@example.test"),
        "a refused write left nothing"
    );
}

#[test]
fn a_wrong_database_url_exits_2_naming_db() {
    let app = App::builder().build_stopped();
    for url in [
        // Nothing listens there.
        "postgres://mt@127.0.0.2:1/nothing".to_owned(),
        // Not a URL PostgreSQL understands.
        "postgres://mt@127.0.0.1:notaport/x".to_owned(),
    ]
    .into_iter()
    .chain(pg::server().map(|base| format!("{base}/no_such_database")))
    {
        let out = app.cli(&["--db", &url, "migrate"]);
        assert_eq!(out.code(), 2, "{url}: {}", out.stderr_text());
        assert!(out.stderr_text().contains("db"), "{}", out.stderr_text());
    }
}
