//! Crashes while delivering (issue 4, SPEC §4 guarantees): the server is killed with
//! SIGKILL (or stopped with SIGTERM) while tries are in flight, then restarted on the same
//! database. Every queued decision must end `sent`, none may be lost, and a message the
//! SMTP peer received twice must carry the same Message-ID both times (at-least-once
//! delivery that a recipient can de-duplicate).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use super::delivery::{
    PROJECT, TcpProxy, add_all, decision, message_id, messages_for, setup, verp, wait_status,
};
use crate::common::{App, SmtpPeer, free_tcp_port, wait_until};

/// How long the restarted server may take to deliver everything (slow recipients take
/// 3 s each at RCPT, and an orphaned lease must expire first).
const RECOVERY: Duration = Duration::from_secs(40);

/// `normal` plain recipients followed by `slow` ones (3 s at RCPT, so they are in
/// flight when the test strikes).
fn recipients(normal: usize, slow: usize) -> Vec<String> {
    (0..normal)
        .map(|n| format!("user{n}@example.test"))
        .chain((0..slow).map(|n| format!("slow{n}@example.test")))
        .collect()
}

/// Queues invitations to `emails` in one request; returns `(email, decision id)` pairs.
fn queue(app: &App, emails: &[String]) -> Vec<(String, String)> {
    let inputs: Vec<&str> = emails.iter().map(String::as_str).collect();
    add_all(app, PROJECT, &inputs)
        .iter()
        .map(|result| {
            assert_eq!(result["status"], "queued", "{result:#}");
            let id = result["decision_id"].as_str().expect("an id").to_owned();
            (result["email"].as_str().expect("an email").to_owned(), id)
        })
        .collect()
}

/// The ids of every decision the server knows.
fn decision_ids(app: &App) -> BTreeSet<String> {
    let page = app
        .get("/api/v1/decisions?limit=500")
        .expect_status(200)
        .json();
    assert!(
        page["next_cursor"].is_null(),
        "fewer than 500 decisions expected"
    );
    page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["id"].as_str().map(str::to_owned))
        .collect()
}

/// Waits until some message arrived at `peer` (or a second passed): tries are in flight.
fn wait_until_sending(peer: &SmtpPeer) {
    wait_until(Duration::from_secs(1), || !peer.messages().is_empty());
}

/// After a restart: every decision of `queued` is still there (no more, no fewer),
/// each ends `sent`, and the peer holds at least one message per decision, where every
/// copy of a message carries its decision's Message-ID, recipient and VERP sender.
#[track_caller]
fn assert_all_sent_once_or_recognisably_twice(
    app: &App,
    peer: &SmtpPeer,
    queued: &[(String, String)],
) {
    let expected: BTreeSet<String> = queued.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(decision_ids(app), expected, "no decision lost or invented");
    for (_, id) in queued {
        let sent = app.wait_for_decision_status(id, "sent", RECOVERY);
        assert!(sent["sent_at"].is_string(), "{sent:#}");
    }
    let messages = peer.wait_for_messages(queued.len(), Duration::from_secs(5));
    let by_message_id: BTreeMap<String, String> = queued
        .iter()
        .map(|(email, id)| (message_id(id), email.clone()))
        .collect();
    let mut copies: BTreeMap<String, usize> = BTreeMap::new();
    for message in &messages {
        let header = message
            .header("Message-ID")
            .unwrap_or_else(|| panic!("a message without Message-ID: {}", message.raw));
        let email = by_message_id
            .get(&header)
            .unwrap_or_else(|| panic!("{header} names none of our decisions"));
        let id = header
            .trim_matches(['<', '>'])
            .split('@')
            .next()
            .unwrap_or_default();
        assert_eq!(message.rcpt_tos, [email.as_str()], "{header}");
        assert_eq!(message.mail_from, verp(id), "{header}");
        *copies.entry(header).or_default() += 1;
    }
    assert_eq!(
        copies.len(),
        queued.len(),
        "every decision's message arrived"
    );
    let duplicates: Vec<(&String, &usize)> = copies.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "{} messages for {} decisions; duplicates (same Message-ID): {duplicates:?}",
        messages.len(),
        queued.len()
    );
    for (_, id) in queued {
        let attempts = decision(app, id)["attempts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            attempts.iter().any(|a: &Value| a["outcome"] == "sent"),
            "{id}: {attempts:#?}"
        );
    }
}

#[test]
fn sigkill_while_sending_loses_nothing_and_duplicates_share_the_message_id() {
    let peer = SmtpPeer::start();
    let mut app = App::builder()
        .smarthost(&peer)
        .env("MAILTRAIL_LEASE", "2s")
        .env("MAILTRAIL_CONCURRENCY", "32")
        .start();
    setup(&app);
    let queued = queue(&app, &recipients(10, 20));
    wait_until_sending(&peer);
    let before = decision_ids(&app);
    assert_eq!(before.len(), 30);
    app.kill_hard();
    app.restart();
    assert_all_sent_once_or_recognisably_twice(&app, &peer, &queued);
}

#[test]
fn sigkill_while_sending_with_a_lease_longer_than_a_try_loses_nothing() {
    // The same crash with a lease that outlasts the slowest try (3 s): the orphaned
    // leases expire after restart and are tried again.
    let peer = SmtpPeer::start();
    let mut app = App::builder()
        .smarthost(&peer)
        .env("MAILTRAIL_LEASE", "4s")
        .env("MAILTRAIL_CONCURRENCY", "32")
        .start();
    setup(&app);
    let queued = queue(&app, &recipients(10, 20));
    wait_until_sending(&peer);
    let in_flight = queued
        .iter()
        .filter(|(_, id)| decision(&app, id)["status"] == "sending")
        .count();
    eprintln!("{in_flight} decision(s) leased at the kill");
    assert_eq!(decision_ids(&app).len(), 30);
    app.kill_hard();
    app.restart();
    assert_all_sent_once_or_recognisably_twice(&app, &peer, &queued);
}

#[test]
fn sigkill_after_the_peer_accepted_but_before_the_app_recorded_gives_recognisable_duplicates() {
    // The peer stores each message, but its "250 queued" reply is held back by the
    // proxy, so the app dies not knowing: after the restart (and the lease) it sends
    // every message again, and each copy must carry the same Message-ID.
    let peer = SmtpPeer::start();
    let proxy = TcpProxy::start(peer.port());
    proxy.hold_accepted_replies(true);
    let mut app = App::builder()
        .transport(proxy.url())
        .env("MAILTRAIL_LEASE", "2s")
        .start();
    setup(&app);
    let queued = queue(&app, &recipients(4, 0));
    peer.wait_for_messages(queued.len(), RECOVERY);
    for (_, id) in &queued {
        assert_eq!(decision(&app, id)["status"], "sending", "the reply is held");
    }
    app.kill_hard();
    proxy.hold_accepted_replies(false);
    app.restart();
    assert_all_sent_once_or_recognisably_twice(&app, &peer, &queued);
    let messages = peer.messages();
    assert_eq!(messages.len(), 2 * queued.len(), "each message twice");
    for (_, id) in &queued {
        let copies = messages_for(&messages, id);
        assert_eq!(copies.len(), 2, "{id}");
        // Rendered again (its Date and MIME boundary differ), but the same email.
        assert_eq!(copies[0].header("Subject"), copies[1].header("Subject"));
        assert_eq!(copies[0].header("To"), copies[1].header("To"));
    }
}

#[test]
fn sigterm_while_sending_exits_cleanly_and_the_rest_is_sent_after_restart() {
    let peer = SmtpPeer::start();
    // The default lease (5 minutes): a clean stop must leave no lease behind, or the
    // restarted server would wait that long.
    let mut app = App::builder().smarthost(&peer).start();
    setup(&app);
    let queued = queue(&app, &recipients(5, 10));
    wait_until_sending(&peer);
    // `terminate` panics unless the process exits within 10 s of SIGTERM.
    let status = app.terminate();
    assert!(status.success(), "exit status {status}");
    app.restart();
    assert_all_sent_once_or_recognisably_twice(&app, &peer, &queued);
}

#[test]
fn sigkill_with_the_relay_down_then_restart_with_it_up_sends_everything() {
    // Nothing listens on this port until the proxy takes it over: connections are
    // refused and every try is deferred.
    let port = free_tcp_port();
    let mut app = App::builder()
        .transport(format!("smtp://127.0.0.1:{port}"))
        .start();
    setup(&app);
    let queued = queue(&app, &recipients(5, 0));
    for (_, id) in &queued {
        wait_status(&app, id, "deferred");
    }
    app.kill_hard();

    let peer = SmtpPeer::start();
    let _proxy = TcpProxy::start_on(port, peer.port());
    app.restart();
    assert_all_sent_once_or_recognisably_twice(&app, &peer, &queued);
    for (_, id) in &queued {
        let attempts = decision(&app, id)["attempts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            attempts.iter().any(|a| a["outcome"] == "deferred"),
            "{id}: {attempts:#?}"
        );
    }
}
