//! Delivery through a smarthost (issue 4, SPEC §4): every row of the outcome table
//! against the real aiosmtpd policy peer (`tests/peers/smtp_peer.py`), checked through
//! the API as a support agent would see it: the decision's status and `status_reason`,
//! its attempt record, and whether the address ended on the suppression list. Also the
//! message itself (Message-ID, VERP, headers, formats), TLS, `copy_to`, the delivery-time
//! guards with `resend-skipped`, connection reuse, resend, stats and metrics.
//!
//! The helpers at the top are shared with `delivery_direct`, `bounces` and `crash`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{App, ReceivedMessage, SmtpPeer, SmtpSink, TlsSmtpPeer, free_tcp_port};

/// The project every test here creates.
pub(crate) const PROJECT: &str = "HELP";
/// Its name, which the invitation's subject carries ("Welcome to {project name}").
pub(crate) const PROJECT_NAME: &str = "Help Center";
/// How long a test waits for a decision or a message (a debug build on a busy machine;
/// the happy path takes well under a second).
pub(crate) const WAIT: Duration = Duration::from_secs(20);
/// The site's default From (SPEC §1, `Help Desk <help@example.com>`): its domain names
/// the VERP envelope sender and the Message-ID.
pub(crate) const FROM_DOMAIN: &str = "example.com";

/// Creates (or replaces) project `key` named `name` with `settings` over the defaults.
#[track_caller]
pub(crate) fn project(app: &App, key: &str, name: &str, settings: Value) -> Value {
    let mut body = json!({ "name": name });
    if let (Some(body), Value::Object(settings)) = (body.as_object_mut(), settings) {
        body.extend(settings);
    }
    app.put_json(&format!("/api/v1/projects/{key}"), &body)
        .expect_status(200)
        .json()
}

/// Creates the project [`PROJECT`] with default settings.
#[track_caller]
pub(crate) fn setup(app: &App) {
    project(app, PROJECT, PROJECT_NAME, json!({}));
}

/// Agent-adds `emails` to project `key` in one request; the results, in order.
#[track_caller]
pub(crate) fn add_all(app: &App, key: &str, emails: &[&str]) -> Vec<Value> {
    let resp = app.post_json(
        &format!("/api/v1/projects/{key}/customers"),
        &json!({ "emails": emails }),
    );
    resp.expect_status(200);
    let results = resp.json()["results"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(results.len(), emails.len(), "{}", resp.text);
    results
}

/// Agent-adds one new customer to project `key`, asserts the invitation is queued, and
/// returns its decision id.
#[track_caller]
pub(crate) fn add(app: &App, key: &str, email: &str) -> String {
    let result = add_all(app, key, &[email]).remove(0);
    assert_eq!(result["decision"], "send", "{result:#}");
    assert_eq!(result["status"], "queued", "{result:#}");
    result["decision_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no decision_id: {result:#}"))
        .to_owned()
}

/// `GET /api/v1/decisions/{id}` (with its attempts).
#[track_caller]
pub(crate) fn decision(app: &App, id: &str) -> Value {
    app.get(&format!("/api/v1/decisions/{id}"))
        .expect_status(200)
        .json()
}

/// Waits until decision `id` has `status` and returns it.
#[track_caller]
pub(crate) fn wait_status(app: &App, id: &str, status: &str) -> Value {
    app.wait_for_decision_status(id, status, WAIT)
}

/// The decision's attempts.
pub(crate) fn attempts(decision: &Value) -> Vec<Value> {
    decision["attempts"].as_array().cloned().unwrap_or_default()
}

/// Percent-encodes a path segment or query value (everything but RFC 3986 unreserved
/// characters and `@`), so `+`, non-ASCII and `<>` survive.
pub(crate) fn enc(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~@".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The suppression of exactly `email`, if it is suppressed (`GET /api/v1/suppressions?q=`).
#[track_caller]
pub(crate) fn suppression(app: &App, email: &str) -> Option<Value> {
    let page = app
        .get(&format!("/api/v1/suppressions?q={}&limit=500", enc(email)))
        .expect_status(200)
        .json();
    page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|item| item["email"] == email)
        .cloned()
}

/// Every suppression on the list (all pages).
#[track_caller]
pub(crate) fn all_suppressions(app: &App) -> Vec<Value> {
    let mut items = Vec::new();
    let mut path = "/api/v1/suppressions?limit=500".to_owned();
    for _ in 0..100 {
        let page = app.get(&path).expect_status(200).json();
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(cursor) if !cursor.is_empty() => {
                path = format!("/api/v1/suppressions?limit=500&cursor={}", enc(cursor));
            }
            _ => return items,
        }
    }
    panic!("more than 100 pages of suppressions");
}

/// Asserts `email` is not on the suppression list.
#[track_caller]
pub(crate) fn assert_not_suppressed(app: &App, email: &str) {
    if let Some(found) = suppression(app, email) {
        panic!("{email} must not be suppressed, found {found:#}");
    }
}

/// The Message-ID our messages carry for decision `id` (SPEC §4).
pub(crate) fn message_id(id: &str) -> String {
    format!("<{id}@{FROM_DOMAIN}>")
}

/// The VERP envelope sender for decision `id` (SPEC §4).
pub(crate) fn verp(id: &str) -> String {
    format!("bounces+{id}@{FROM_DOMAIN}")
}

/// The received messages carrying decision `id`'s Message-ID.
pub(crate) fn messages_for(messages: &[ReceivedMessage], id: &str) -> Vec<ReceivedMessage> {
    let wanted = message_id(id);
    messages
        .iter()
        .filter(|message| message.header("Message-ID").as_deref() == Some(wanted.as_str()))
        .cloned()
        .collect()
}

/// The body with quoted-printable soft line breaks and `=XX` escapes decoded (lettre
/// encodes long lines that way), so tests can look for whole sentences.
pub(crate) fn decoded_body(message: &ReceivedMessage) -> String {
    let body = message.body().replace("=\r\n", "").replace("=\n", "");
    let bytes = body.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| b.is_ascii_digit() || (b'A'..=b'F').contains(&b);
        if bytes[i] == b'=' && i + 2 < bytes.len() && hex(bytes[i + 1]) && hex(bytes[i + 2]) {
            let pair = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
            out.push(u8::from_str_radix(pair, 16).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A TCP relay on 127.0.0.1 in front of a peer that counts the connections it accepts,
/// so a test can see whether the app reuses SMTP connections, and can hold back the
/// peer's "message accepted" replies, so a test can kill the app after the peer stored a
/// message but before the app learnt it. Other bytes pass through untouched. Its threads
/// end when both sides close; the accept loop ends on drop.
pub(crate) struct TcpProxy {
    /// The port the app connects to.
    port: u16,
    /// Connections accepted so far.
    connections: Arc<AtomicUsize>,
    /// While set, a reply holding the peer's `queued as` (the 250 after DATA) waits.
    hold_accepted: Arc<AtomicBool>,
    /// Set on drop; the accept loop checks it after each accept.
    stop: Arc<AtomicBool>,
}

impl TcpProxy {
    /// A proxy on a free port relaying to 127.0.0.1:`upstream`.
    pub(crate) fn start(upstream: u16) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        TcpProxy::serve(listener, upstream)
    }

    /// A proxy on 127.0.0.1:`port` (chosen earlier, e.g. a port that refused connections
    /// until now) relaying to 127.0.0.1:`upstream`.
    pub(crate) fn start_on(port: u16, upstream: u16) -> TcpProxy {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|error| panic!("binding 127.0.0.1:{port} for the proxy: {error}"));
        TcpProxy::serve(listener, upstream)
    }

    fn serve(listener: TcpListener, upstream: u16) -> TcpProxy {
        let port = listener.local_addr().expect("a bound listener").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let hold_accepted = Arc::new(AtomicBool::new(false));
        let (count, stopped) = (Arc::clone(&connections), Arc::clone(&stop));
        let hold = Arc::clone(&hold_accepted);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                relay(client, server, Arc::clone(&hold));
            }
        });
        TcpProxy {
            port,
            connections,
            hold_accepted,
            stop,
        }
    }

    /// Holds back (`true`) or lets through (`false`) the peer's replies that accept a
    /// message after DATA.
    pub(crate) fn hold_accepted_replies(&self, hold: bool) {
        self.hold_accepted.store(hold, Ordering::SeqCst);
    }

    /// The smarthost URL of the proxy.
    pub(crate) fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// How many connections it accepted.
    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies bytes both ways between two streams until either side closes; a reply from
/// the server accepting a message waits while `hold` is set.
fn relay(client: TcpStream, server: TcpStream, hold: Arc<AtomicBool>) {
    let pairs = [
        (client.try_clone(), server.try_clone(), None),
        (server.try_clone(), client.try_clone(), Some(hold)),
    ];
    for (from, to, hold) in pairs {
        let (Ok(mut from), Ok(mut to)) = (from, to) else {
            continue;
        };
        std::thread::spawn(move || {
            let mut buffer = [0u8; 16 * 1024];
            loop {
                match from.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        // smtp_peer.py answers an accepted DATA with "250 2.0.0 queued as …".
                        let accepted = buffer[..n].windows(10).any(|w| w == b"queued as ");
                        while accepted && hold.as_ref().is_some_and(|h| h.load(Ordering::SeqCst)) {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        if to.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        });
    }
}

/// What one row of the SPEC §4 outcome table must leave behind.
struct Expect<'a> {
    /// The decision's status after the try.
    status: &'a str,
    /// Its `status_reason`.
    reason: Option<&'a str>,
    /// The first attempt's SMTP stage.
    stage: &'a str,
    /// The first attempt's reply code (none when no reply came).
    code: Option<i64>,
    /// The first attempt's enhanced status.
    enhanced: Option<&'a str>,
    /// The first attempt's outcome.
    outcome: &'a str,
    /// Whether the address must be on the suppression list (as `hard_bounce`).
    suppressed: bool,
}

/// Adds `recipient` to a fresh project of `app`, waits until its decision reaches
/// `expect.status`, and checks the decision, its first attempt (answered by `server`) and
/// the suppression list. Returns the decision.
#[track_caller]
fn check(app: &App, server: &str, recipient: &str, expect: &Expect<'_>) -> Value {
    setup(app);
    let id = add(app, PROJECT, recipient);
    let decision = wait_status(app, &id, expect.status);
    assert_eq!(
        decision["status_reason"].as_str(),
        expect.reason,
        "{decision:#}"
    );
    let attempts = attempts(&decision);
    let attempt = attempts
        .first()
        .unwrap_or_else(|| panic!("no attempt recorded: {decision:#}"));
    assert_eq!(attempt["server"], server, "{attempt:#}");
    assert_eq!(attempt["stage"], expect.stage, "{attempt:#}");
    assert_eq!(attempt["smtp_code"].as_i64(), expect.code, "{attempt:#}");
    assert_eq!(
        attempt["enhanced_code"].as_str(),
        expect.enhanced,
        "{attempt:#}"
    );
    assert_eq!(attempt["outcome"], expect.outcome, "{attempt:#}");
    assert!(attempt["at"].is_string(), "{attempt:#}");
    assert!(
        attempt["reply"]
            .as_str()
            .is_some_and(|reply| !reply.is_empty()),
        "the attempt keeps the reply or the error: {attempt:#}"
    );
    if let Some(code) = expect.code {
        let last_reply = decision["last_reply"].as_str().unwrap_or_default();
        assert!(
            last_reply.starts_with(&code.to_string()),
            "last_reply starts with the code: {decision:#}"
        );
    }
    if expect.status == "deferred" {
        assert!(decision["next_attempt_at"].is_string(), "{decision:#}");
    }
    match (expect.suppressed, suppression(app, recipient)) {
        (false, None) => {}
        (false, Some(found)) => panic!("{recipient} must not be suppressed: {found:#}"),
        (true, None) => panic!("{recipient} must be suppressed"),
        (true, Some(found)) => {
            // A full mailbox suppresses with its own reason, until `expires_at` (SPEC §11).
            let reason = expect
                .reason
                .filter(|r| *r == "mailbox_full")
                .unwrap_or("hard_bounce");
            assert_eq!(found["reason"], reason, "{found:#}");
            assert_eq!(
                found["expires_at"].is_string(),
                reason == "mailbox_full",
                "{found:#}"
            );
            assert_eq!(found["smtp_code"].as_i64(), expect.code, "{found:#}");
            assert_eq!(
                found["enhanced_code"].as_str(),
                expect.enhanced,
                "{found:#}"
            );
            assert_eq!(found["response"], attempt["reply"], "{found:#}");
            assert_eq!(found["remote_host"], server, "{found:#}");
            assert_eq!(found["stage"], expect.stage, "{found:#}");
            assert_eq!(found["decision_id"], id.as_str(), "{found:#}");
        }
    }
    decision
}

/// An app relaying through `peer`.
fn app_for(peer: &SmtpPeer) -> App {
    App::builder().smarthost(peer).start()
}

#[test]
fn accepted_message_is_sent_with_reply_stored_and_arrives_as_rendered() {
    let peer = SmtpPeer::start();
    let app = app_for(&peer);
    let decision = check(
        &app,
        &peer.addr(),
        "alice@example.test",
        &Expect {
            status: "sent",
            reason: None,
            stage: "data",
            code: Some(250),
            enhanced: Some("2.0.0"),
            outcome: "sent",
            suppressed: false,
        },
    );
    let id = decision["id"].as_str().expect("an id").to_owned();
    assert!(decision["sent_at"].is_string(), "{decision:#}");
    assert_eq!(decision["attempts_count"], 1, "{decision:#}");
    assert_eq!(decision["message_id"], message_id(&id), "{decision:#}");

    let messages = peer.wait_for_messages(1, WAIT);
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    // The stored reply is the peer's own: "250 2.0.0 queued as <its file name>".
    let stem = message
        .path
        .file_stem()
        .and_then(|stem| stem.to_str())
        .expect("a file name");
    assert_eq!(
        decision["last_reply"],
        format!("250 2.0.0 queued as {stem}"),
        "{decision:#}"
    );
    assert_eq!(message.mail_from, verp(&id));
    assert_eq!(message.rcpt_tos, ["alice@example.test"]);
    assert_eq!(message.header("Message-ID"), Some(message_id(&id)));
    let from = message.header("From").unwrap_or_default();
    assert!(
        from.contains("Help Desk") && from.contains("<help@example.com>"),
        "{from}"
    );
    assert!(
        message
            .header("To")
            .is_some_and(|to| to.contains("alice@example.test")),
        "{:?}",
        message.header("To")
    );
    assert_eq!(
        message.header("Subject"),
        Some(format!("Welcome to {PROJECT_NAME}"))
    );
}

#[test]
fn email_format_and_template_set_shape_the_message() {
    let peer = SmtpPeer::start();
    let app = app_for(&peer);
    project(&app, "MULTI", PROJECT_NAME, json!({}));
    project(&app, "TEXT", PROJECT_NAME, json!({"email_format": "text"}));
    project(&app, "HTML", PROJECT_NAME, json!({"email_format": "html"}));
    project(
        &app,
        "PLAIN",
        PROJECT_NAME,
        json!({"email_format": "text", "template_set": "plain"}),
    );
    let ids: Vec<(&str, String)> = ["MULTI", "TEXT", "HTML", "PLAIN"]
        .into_iter()
        .map(|key| {
            let email = format!("{}@example.test", key.to_lowercase());
            (key, add(&app, key, &email))
        })
        .collect();
    for (_, id) in &ids {
        wait_status(&app, id, "sent");
    }
    let messages = peer.wait_for_messages(4, WAIT);
    let received = |key: &str| {
        let id = &ids.iter().find(|(k, _)| *k == key).expect("a key").1;
        let mut found = messages_for(&messages, id);
        assert_eq!(found.len(), 1, "one message for {key}");
        found.remove(0)
    };

    let multi = received("MULTI");
    let content_type = multi.header("Content-Type").unwrap_or_default();
    assert!(
        content_type.starts_with("multipart/alternative"),
        "{content_type}"
    );
    let body = decoded_body(&multi);
    assert!(body.contains("Content-Type: text/plain"), "{body}");
    assert!(body.contains("Content-Type: text/html"), "{body}");
    assert!(
        body.contains("You have been invited to Help Center"),
        "{body}"
    );

    let text = received("TEXT");
    let content_type = text.header("Content-Type").unwrap_or_default();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text_body = decoded_body(&text);
    assert!(!text_body.contains("<html"), "{text_body}");
    assert!(
        text_body.contains("You have been invited to Help Center"),
        "{text_body}"
    );

    let html = received("HTML");
    let content_type = html.header("Content-Type").unwrap_or_default();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(decoded_body(&html).contains("<html"), "{}", html.raw);

    let plain = received("PLAIN");
    let content_type = plain.header("Content-Type").unwrap_or_default();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let plain_body = decoded_body(&plain);
    assert!(
        plain_body.contains("You were invited to Help Center"),
        "{plain_body}"
    );
    assert!(
        !plain_body.contains("You have been invited"),
        "{plain_body}"
    );
    // Same kind, same project name, same format: only the template set differs.
    assert_ne!(
        text_body.replace("text@example.test", "X"),
        plain_body.replace("plain@example.test", "X")
    );
}

#[test]
fn user_unknown_bounces_and_suppresses_with_the_smtp_reply() {
    let peer = SmtpPeer::start();
    let app = app_for(&peer);
    let decision = check(
        &app,
        &peer.addr(),
        "bounce-1@example.test",
        &Expect {
            status: "bounced",
            reason: Some("hard_bounce"),
            stage: "rcpt",
            code: Some(550),
            enhanced: Some("5.1.1"),
            outcome: "bounced",
            suppressed: true,
        },
    );
    assert_eq!(decision["last_reply"], "550 5.1.1 user unknown");
    assert!(peer.messages().is_empty(), "nothing was delivered");

    // The next agent add of that address (here and in another project) is skipped.
    let again = add_all(&app, PROJECT, &["bounce-1@example.test"]).remove(0);
    assert_eq!(again["decision"], "skip", "{again:#}");
    assert_eq!(again["status"], "skipped", "{again:#}");
    assert!(
        again["reasons"]
            .as_array()
            .is_some_and(|reasons| reasons.contains(&json!("suppressed"))),
        "{again:#}"
    );
    project(&app, "OTHER", "Other desk", json!({}));
    let other = add_all(&app, "OTHER", &["bounce-1@example.test"]).remove(0);
    assert_eq!(other["decision"], "skip", "{other:#}");
    assert!(
        other["reasons"]
            .as_array()
            .is_some_and(|reasons| reasons.contains(&json!("suppressed"))),
        "{other:#}"
    );

    // `why` shows the SMTP reply that put the address on the list.
    let why = app
        .get("/api/v1/why/bounce-1@example.test")
        .expect_status(200)
        .json();
    let suppression = &why["suppression"];
    assert_eq!(suppression["reason"], "hard_bounce", "{why:#}");
    assert_eq!(suppression["smtp_code"], 550, "{why:#}");
    assert_eq!(suppression["enhanced_code"], "5.1.1", "{why:#}");
    assert!(
        suppression["response"]
            .as_str()
            .is_some_and(|r| r.contains("user unknown")),
        "{why:#}"
    );
    assert_eq!(suppression["decision_id"], decision["id"], "{why:#}");
}

#[test]
fn mailbox_full_bounces_and_suppresses() {
    let peer = SmtpPeer::start();
    let app = app_for(&peer);
    check(
        &app,
        &peer.addr(),
        "full-1@example.test",
        &Expect {
            status: "bounced",
            reason: Some("mailbox_full"),
            stage: "rcpt",
            code: Some(552),
            enhanced: Some("5.2.2"),
            outcome: "bounced",
            suppressed: true,
        },
    );
}

#[test]
fn permanent_failure_without_enhanced_status_bounces_and_suppresses() {
    let peer = SmtpPeer::start();
    let app = app_for(&peer);
    let decision = check(
        &app,
        &peer.addr(),
        "noenh-1@example.test",
        &Expect {
            status: "bounced",
            reason: Some("hard_bounce"),
            stage: "rcpt",
            code: Some(550),
            enhanced: None,
            outcome: "bounced",
            suppressed: true,
        },
    );
    assert_eq!(decision["last_reply"], "550 no such user here");
}

#[test]
fn policy_refusal_at_rcpt_fails_as_policy_rejected_without_suppression() {
    let peer = SmtpPeer::start();
    let app = app_for(&peer);
    let decision = check(
        &app,
        &peer.addr(),
        "policy-1@example.test",
        &Expect {
            status: "failed",
            reason: Some("policy_rejected"),
            stage: "rcpt",
            code: Some(550),
            enhanced: Some("5.7.1"),
            outcome: "policy_rejected",
            suppressed: false,
        },
    );
    assert_eq!(
        decision["last_reply"],
        "550 5.7.1 message refused by policy"
    );
    // The address is fine: a resend is not blocked by a suppression.
    let why = app
        .get("/api/v1/why/policy-1@example.test")
        .expect_status(200)
        .json();
    assert!(why["suppression"].is_null(), "{why:#}");
}

#[test]
fn content_refusal_at_data_fails_as_policy_rejected_without_suppression() {
    let peer = SmtpPeer::start();
    let app = app_for(&peer);
    check(
        &app,
        &peer.addr(),
        "datareject-1@example.test",
        &Expect {
            status: "failed",
            reason: Some("policy_rejected"),
            stage: "data",
            code: Some(554),
            enhanced: Some("5.6.0"),
            outcome: "policy_rejected",
            suppressed: false,
        },
    );
    assert!(peer.messages().is_empty());
}

#[test]
fn user_unknown_at_data_bounces_with_stage_data() {
    let peer = SmtpPeer::start();
    let app = app_for(&peer);
    check(
        &app,
        &peer.addr(),
        "databounce-1@example.test",
        &Expect {
            status: "bounced",
            reason: Some("hard_bounce"),
            stage: "data",
            code: Some(550),
            enhanced: Some("5.1.1"),
            outcome: "bounced",
            suppressed: true,
        },
    );
}

#[test]
fn relay_refusing_mail_from_fails_as_relay_rejected_without_suppression() {
    let peer = SmtpPeer::start_with_mode("reject-mail");
    let app = app_for(&peer);
    check(
        &app,
        &peer.addr(),
        "alice@example.test",
        &Expect {
            status: "failed",
            reason: Some("relay_rejected"),
            stage: "mail",
            code: Some(550),
            enhanced: Some("5.7.1"),
            outcome: "relay_rejected",
            suppressed: false,
        },
    );
}

#[test]
fn relay_refusing_at_greeting_fails_as_relay_rejected_without_suppression() {
    let peer = SmtpPeer::start_with_mode("reject-greeting");
    let app = app_for(&peer);
    check(
        &app,
        &peer.addr(),
        "alice@example.test",
        &Expect {
            status: "failed",
            reason: Some("relay_rejected"),
            stage: "connect",
            code: Some(554),
            enhanced: Some("5.3.2"),
            outcome: "relay_rejected",
            suppressed: false,
        },
    );
}

#[test]
fn temporary_failure_defers_then_fails_as_retries_exhausted() {
    let peer = SmtpPeer::start();
    let app = App::builder()
        .smarthost(&peer)
        .env("MAILTRAIL_GIVE_UP_AFTER", "2s")
        .start();
    let deferred = check(
        &app,
        &peer.addr(),
        "defer-1@example.test",
        &Expect {
            status: "deferred",
            reason: None,
            stage: "rcpt",
            code: Some(451),
            enhanced: Some("4.3.0"),
            outcome: "deferred",
            suppressed: false,
        },
    );
    let id = deferred["id"].as_str().expect("an id");
    let failed = wait_status(&app, id, "failed");
    assert_eq!(failed["status_reason"], "retries_exhausted", "{failed:#}");
    assert!(failed["next_attempt_at"].is_null(), "{failed:#}");
    let attempts = attempts(&failed);
    assert!(attempts.len() >= 2, "{failed:#}");
    for attempt in &attempts {
        assert_eq!(attempt["outcome"], "deferred", "{attempt:#}");
        assert_eq!(attempt["smtp_code"], 451, "{attempt:#}");
        assert_eq!(attempt["stage"], "rcpt", "{attempt:#}");
    }
    assert_eq!(failed["attempts_count"], attempts.len(), "{failed:#}");
    assert_not_suppressed(&app, "defer-1@example.test");
}

#[test]
fn connection_reset_at_rcpt_defers() {
    let peer = SmtpPeer::start();
    let app = app_for(&peer);
    check(
        &app,
        &peer.addr(),
        "drop-1@example.test",
        &Expect {
            status: "deferred",
            reason: None,
            stage: "rcpt",
            code: None,
            enhanced: None,
            outcome: "deferred",
            suppressed: false,
        },
    );
}

#[test]
fn service_closing_421_at_mail_from_defers() {
    let peer = SmtpPeer::start_with_mode("defer-mail");
    let app = app_for(&peer);
    check(
        &app,
        &peer.addr(),
        "alice@example.test",
        &Expect {
            status: "deferred",
            reason: None,
            stage: "mail",
            code: Some(421),
            enhanced: Some("4.7.0"),
            outcome: "deferred",
            suppressed: false,
        },
    );
}

#[test]
fn connection_refused_defers() {
    // Nothing listens on this port: the kernel refuses the connection.
    let port = free_tcp_port();
    let app = App::builder()
        .transport(format!("smtp://127.0.0.1:{port}"))
        .start();
    check(
        &app,
        &format!("127.0.0.1:{port}"),
        "alice@example.test",
        &Expect {
            status: "deferred",
            reason: None,
            stage: "connect",
            code: None,
            enhanced: None,
            outcome: "deferred",
            suppressed: false,
        },
    );
}

/// Sends one invitation through the TLS peer and checks it went over TLS with AUTH.
fn check_tls_delivery(starttls: bool) {
    let peer = TlsSmtpPeer::start();
    let app = App::builder().tls_smarthost(&peer, starttls).start();
    let port = if starttls {
        peer.starttls_port()
    } else {
        peer.implicit_port()
    };
    let decision = check(
        &app,
        &format!("127.0.0.1:{port}"),
        "alice@example.test",
        &Expect {
            status: "sent",
            reason: None,
            stage: "data",
            code: Some(250),
            enhanced: Some("2.0.0"),
            outcome: "sent",
            suppressed: false,
        },
    );
    let messages = peer.wait_for_messages(1, WAIT);
    let message = &messages[0];
    assert!(message.tls, "{message:?}");
    assert_eq!(message.auth_user.as_deref(), Some(peer.user()));
    assert_eq!(
        message.header("Message-ID"),
        decision["message_id"].as_str().map(str::to_owned)
    );
}

#[test]
fn starttls_with_auth_sends() {
    check_tls_delivery(true);
}

#[test]
fn implicit_tls_with_auth_sends() {
    check_tls_delivery(false);
}

#[test]
fn untrusted_tls_certificate_defers() {
    let peer = TlsSmtpPeer::start();
    // No MAILTRAIL_SMTP_CA: the peer's self-signed certificate is not trusted.
    let app = App::builder().transport(peer.starttls_url()).start();
    check(
        &app,
        &format!("127.0.0.1:{}", peer.starttls_port()),
        "alice@example.test",
        &Expect {
            status: "deferred",
            reason: None,
            stage: "connect",
            code: None,
            enhanced: None,
            outcome: "deferred",
            suppressed: false,
        },
    );
    assert!(peer.messages().is_empty());
}

/// Creates a project that sends registration emails with `copy_to`, registers
/// `customer` through automation and returns the decision once it is `sent`.
fn register_with_copy(app: &App, copy: &str, copy_as: &str, customer: &str) -> Value {
    project(
        app,
        PROJECT,
        PROJECT_NAME,
        json!({
            "notify_auto_created": true,
            "copy_to": {"address": copy, "as": copy_as},
        }),
    );
    let resp = app.post_json(
        &format!("/api/v1/projects/{PROJECT}/automation/customers"),
        &json!({ "email": customer }),
    );
    resp.expect_status(200);
    let result = resp.json()["results"][0].clone();
    assert_eq!(result["email_kind"], "registration", "{result:#}");
    assert_eq!(result["status"], "queued", "{result:#}");
    let id = result["decision_id"].as_str().expect("a decision id");
    wait_status(app, id, "sent")
}

#[test]
fn copy_to_cc_refused_by_the_server_leaves_the_customer_sent_and_nobody_suppressed() {
    let peer = SmtpPeer::start();
    let app = app_for(&peer);
    let decision = register_with_copy(&app, "bounce-copy@example.test", "cc", "reg@example.test");
    let attempts = attempts(&decision);
    assert_eq!(attempts.len(), 1, "{decision:#}");
    assert_eq!(attempts[0]["outcome"], "sent", "{decision:#}");
    let copy_outcome = attempts[0]["copy_outcome"].as_str().unwrap_or_default();
    assert!(
        copy_outcome.starts_with("550") && copy_outcome.contains("5.1.1"),
        "the copy's refusal is on the attempt: {decision:#}"
    );
    assert_not_suppressed(&app, "bounce-copy@example.test");
    assert_not_suppressed(&app, "reg@example.test");

    let messages = peer.wait_for_messages(1, WAIT);
    let message = &messages[0];
    assert_eq!(message.rcpt_tos, ["reg@example.test"]);
    assert!(
        message
            .header("Cc")
            .is_some_and(|cc| cc.contains("bounce-copy@example.test")),
        "{}",
        message.raw
    );
    assert_eq!(
        message.header("Subject").as_deref(),
        Some("Your account for Help Center was created")
    );
}

#[test]
fn copy_to_bcc_is_an_extra_recipient_but_no_header() {
    let peer = SmtpPeer::start();
    let app = app_for(&peer);
    let decision = register_with_copy(&app, "admin-copy@example.test", "bcc", "reg@example.test");
    let copy_outcome = attempts(&decision)[0]["copy_outcome"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(copy_outcome.starts_with("250"), "{decision:#}");
    let messages = peer.wait_for_messages(1, WAIT);
    let message = &messages[0];
    assert_eq!(
        message.rcpt_tos,
        ["reg@example.test", "admin-copy@example.test"]
    );
    let head = message
        .raw
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(!head.contains("admin-copy@example.test"), "{head}");
    assert!(message.header("Bcc").is_none(), "{head}");
}

/// An app that delivers one message at a time, with a `slow*` recipient (3 s at RCPT)
/// holding the only slot; returns it with the peer once the slow decision is leased.
fn app_with_busy_slot() -> (SmtpPeer, App, String) {
    let peer = SmtpPeer::start();
    let app = App::builder()
        .smarthost(&peer)
        .env("MAILTRAIL_CONCURRENCY", "1")
        .start();
    setup(&app);
    let slow = add(&app, PROJECT, "slow-1@example.test");
    wait_status(&app, &slow, "sending");
    (peer, app, slow)
}

#[test]
fn outgoing_mail_switched_off_while_queued_skips_at_delivery_and_resend_skipped_sends() {
    let (peer, app, slow) = app_with_busy_slot();
    let later = add(&app, PROJECT, "later@example.test");
    app.patch_json("/api/v1/site", &json!({"outgoing_mail": false}))
        .expect_status(200);
    let skipped = wait_status(&app, &later, "skipped");
    assert_eq!(
        skipped["status_reason"], "outgoing_mail_disabled",
        "{skipped:#}"
    );
    assert_eq!(skipped["decision"], "send", "decided to send, then guarded");
    assert!(attempts(&skipped).is_empty(), "{skipped:#}");
    // The try in flight when the switch flipped was past the guard.
    wait_status(&app, &slow, "sent");

    // An add while mail is off is skipped at once, for the same reason.
    let off = add_all(&app, PROJECT, &["off@example.test"]).remove(0);
    assert_eq!(off["reasons"], json!(["outgoing_mail_disabled"]), "{off:#}");

    let window = json!({
        "reason": "outgoing_mail_disabled",
        "since": "2000-01-01T00:00:00Z",
        "until": "2100-01-01T00:00:00Z",
    });
    let blocked = app
        .post_json("/api/v1/resend-skipped", &window)
        .expect_status(200)
        .json();
    assert_eq!(blocked["queued"], 0, "{blocked:#}");
    assert_eq!(
        blocked["still_blocked"],
        json!({"outgoing_mail_disabled": 2}),
        "{blocked:#}"
    );

    app.patch_json("/api/v1/site", &json!({"outgoing_mail": true}))
        .expect_status(200);
    let resent = app
        .post_json("/api/v1/resend-skipped", &window)
        .expect_status(200)
        .json();
    assert_eq!(resent["queued"], 2, "{resent:#}");
    assert_eq!(resent["still_blocked"], json!({}), "{resent:#}");

    let messages = peer.wait_for_messages(3, WAIT);
    for email in ["later@example.test", "off@example.test"] {
        let list = app
            .get(&format!("/api/v1/decisions?email={}", enc(email)))
            .expect_status(200)
            .json();
        let newest = &list["items"][0];
        assert_eq!(newest["channel"], "resend", "{list:#}");
        let id = newest["id"].as_str().expect("an id");
        wait_status(&app, id, "sent");
        assert_eq!(messages_for(&peer.messages(), id).len(), 1, "{email}");
    }
    assert_eq!(messages.len(), 3, "slow-1, later, off");
    let audit = app.get("/api/v1/audit").expect_status(200).json();
    let entries = audit["items"].as_array().cloned().unwrap_or_default();
    assert!(
        entries
            .iter()
            .any(|entry| entry["what"] == "resend_skipped"),
        "{audit:#}"
    );
}

#[test]
fn address_suppressed_while_queued_is_skipped_at_delivery() {
    let (peer, app, slow) = app_with_busy_slot();
    let later = add(&app, PROJECT, "later@example.test");
    app.post_json(
        "/api/v1/suppressions",
        &json!({"email": "later@example.test", "note": "asked us to stop"}),
    )
    .expect_status(201);
    let skipped = wait_status(&app, &later, "skipped");
    assert_eq!(skipped["status_reason"], "suppressed", "{skipped:#}");
    assert!(attempts(&skipped).is_empty(), "{skipped:#}");
    wait_status(&app, &slow, "sent");
    let messages = peer.messages();
    assert!(messages_for(&messages, &later).is_empty());
}

#[test]
fn try_slower_than_the_lease_is_recorded_when_it_finishes() {
    let peer = SmtpPeer::start();
    let app = App::builder()
        .smarthost(&peer)
        .env("MAILTRAIL_LEASE", "2s")
        .start();
    setup(&app);
    // slow* waits 3 s at RCPT: longer than the 2 s lease.
    let id = add(&app, PROJECT, "slow-1@example.test");
    let sent = app.wait_for_decision_status(&id, "sent", Duration::from_secs(15));
    assert!(sent["sent_at"].is_string(), "{sent:#}");
}

#[test]
fn smarthost_connections_are_reused() {
    let peer = SmtpPeer::start();
    let proxy = TcpProxy::start(peer.port());
    let app = App::builder().transport(proxy.url()).start();
    setup(&app);
    let emails: Vec<String> = (0..20).map(|n| format!("user{n}@example.test")).collect();
    let emails: Vec<&str> = emails.iter().map(String::as_str).collect();
    let results = add_all(&app, PROJECT, &emails);
    for result in &results {
        wait_status(&app, result["decision_id"].as_str().expect("an id"), "sent");
    }
    let messages = peer.wait_for_messages(20, WAIT);
    assert_eq!(messages.len(), 20);
    let connections = proxy.connections();
    eprintln!("20 messages over {connections} connection(s)");
    assert!(
        (1..20).contains(&connections),
        "20 messages took {connections} connections"
    );
}

/// Refusals in the middle of a pipelined transaction (RFC 2920: MAIL, RCPT and DATA in
/// one write) leave the session in step: after RSET it carries the next message.
#[test]
fn pipelined_refusals_keep_the_connection_for_the_next_message() {
    let peer = SmtpPeer::start();
    let proxy = TcpProxy::start(peer.port());
    let app = App::builder().transport(proxy.url()).start();
    setup(&app);
    // One at a time, so each message finds the connection the previous one left.
    for (n, recipient, status) in [
        (0, "bounce-p@example.test", "bounced"),
        (1, "policy-p@example.test", "failed"),
        (2, "defer-p@example.test", "deferred"),
        (3, "datareject-p@example.test", "failed"),
        (4, "alice@example.test", "sent"),
    ] {
        let id = add(&app, PROJECT, recipient);
        let decision = wait_status(&app, &id, status);
        let attempt = &attempts(&decision)[0];
        // The code, not the text: a queue id in a 250 reply may contain the digits 503.
        assert!(
            attempt["reply"].is_string() && attempt["smtp_code"] != 503,
            "message {n}: the refusal is the refused command's own reply, not a 503 that followed: {attempt:#}"
        );
    }
    assert_eq!(peer.wait_for_messages(1, WAIT).len(), 1);
    assert_eq!(
        proxy.connections(),
        1,
        "every message used the first connection"
    );
}

/// Without PIPELINING in the EHLO reply the transaction goes command by command, and the
/// outcome table reads the same as with it.
#[test]
fn without_pipelining_the_outcome_table_reads_the_same() {
    let peer = SmtpPeer::start_with_mode("accept-no-pipelining");
    let app = app_for(&peer);
    let rows = [
        (
            "alice@example.test",
            Expect {
                status: "sent",
                reason: None,
                stage: "data",
                code: Some(250),
                enhanced: Some("2.0.0"),
                outcome: "sent",
                suppressed: false,
            },
        ),
        (
            "bounce-np@example.test",
            Expect {
                status: "bounced",
                reason: Some("hard_bounce"),
                stage: "rcpt",
                code: Some(550),
                enhanced: Some("5.1.1"),
                outcome: "bounced",
                suppressed: true,
            },
        ),
        (
            "datareject-np@example.test",
            Expect {
                status: "failed",
                reason: Some("policy_rejected"),
                stage: "data",
                code: Some(554),
                enhanced: Some("5.6.0"),
                outcome: "policy_rejected",
                suppressed: false,
            },
        ),
        (
            "drop-np@example.test",
            Expect {
                status: "deferred",
                reason: None,
                stage: "rcpt",
                code: None,
                enhanced: None,
                outcome: "deferred",
                suppressed: false,
            },
        ),
    ];
    for (recipient, expect) in &rows {
        check(&app, &peer.addr(), recipient, expect);
    }
    assert_eq!(peer.wait_for_messages(1, WAIT).len(), 1);
}

/// Postfix's smtp-sink offers PIPELINING too; a server that answers RCPT with 421 and
/// hangs up mid-pipeline defers the message, blamed on RCPT.
#[test]
fn smtp_sink_closing_at_rcpt_defers_the_pipelined_message() {
    let sink = SmtpSink::start_with_args(&["-Q", "rcpt"]);
    let app = App::builder().transport(sink.url()).start();
    check(
        &app,
        &sink.addr(),
        "alice@example.test",
        &Expect {
            status: "deferred",
            reason: None,
            stage: "rcpt",
            code: Some(421),
            enhanced: Some("4.0.0"),
            outcome: "deferred",
            suppressed: false,
        },
    );
}

/// A batch through smtp-sink, the benchmark's server: every message sent, on reused,
/// pipelined connections.
#[test]
fn smtp_sink_takes_a_batch_of_pipelined_messages() {
    let sink = SmtpSink::start();
    let app = App::builder().transport(sink.url()).start();
    setup(&app);
    let emails: Vec<String> = (0..50).map(|n| format!("user{n}@example.test")).collect();
    let emails: Vec<&str> = emails.iter().map(String::as_str).collect();
    for result in add_all(&app, PROJECT, &emails) {
        let decision = wait_status(&app, result["decision_id"].as_str().expect("an id"), "sent");
        let attempt = &attempts(&decision)[0];
        assert_eq!(attempt["server"], sink.addr(), "{attempt:#}");
        assert_eq!(attempt["smtp_code"], 250, "{attempt:#}");
    }
}

#[test]
fn resend_of_a_sent_invitation_delivers_a_second_message_with_its_own_message_id() {
    let peer = SmtpPeer::start();
    let app = app_for(&peer);
    setup(&app);
    let first = add(&app, PROJECT, "alice@example.test");
    wait_status(&app, &first, "sent");
    let resp = app.send(app.request(
        Method::POST,
        &format!("/api/v1/projects/{PROJECT}/customers/alice@example.test/resend"),
    ));
    resp.expect_status(202);
    let result = resp.json();
    let second = result["decision_id"].as_str().expect("a decision id");
    assert_ne!(second, first);
    let resent = wait_status(&app, second, "sent");
    assert_eq!(resent["channel"], "resend", "{resent:#}");
    let messages = peer.wait_for_messages(2, WAIT);
    let ids: Vec<Option<String>> = messages.iter().map(|m| m.header("Message-ID")).collect();
    assert_eq!(
        ids,
        [Some(message_id(&first)), Some(message_id(second))],
        "oldest first"
    );
    assert_eq!(messages[1].mail_from, verp(second));
}

#[test]
fn stats_and_metrics_count_delivery_outcomes() {
    let peer = SmtpPeer::start();
    let app = app_for(&peer);
    setup(&app);
    let results = add_all(
        &app,
        PROJECT,
        &[
            "ok-1@example.test",
            "ok-2@example.test",
            "ok-3@example.test",
            "bounce-1@example.test",
            "policy-1@example.test",
        ],
    );
    let finals = ["sent", "sent", "sent", "bounced", "failed"];
    for (result, status) in results.iter().zip(finals) {
        wait_status(&app, result["decision_id"].as_str().expect("an id"), status);
    }
    let opted_out = app
        .post_json(
            &format!("/api/v1/projects/{PROJECT}/customers"),
            &json!({"emails": ["quiet@example.test"], "invite": false}),
        )
        .expect_status(200)
        .json();
    assert_eq!(opted_out["results"][0]["status"], "skipped");

    let stats = app
        .get("/api/v1/stats?window=24h")
        .expect_status(200)
        .json();
    assert_eq!(stats["sent"], 3, "{stats:#}");
    assert_eq!(stats["bounced"], 1, "{stats:#}");
    assert_eq!(stats["failed"], 1, "{stats:#}");
    assert_eq!(stats["deferred"], 0, "{stats:#}");
    assert_eq!(stats["skipped"]["agent_opted_out"], 1, "{stats:#}");
    let rate = stats["bounce_rate"].as_f64().expect("a number");
    assert!(
        (rate - 0.25).abs() < 1e-9,
        "bounced / (sent + bounced): {stats:#}"
    );
    assert_eq!(stats["suppressions_total"], 1, "{stats:#}");
    assert_eq!(stats["suppressions_added"], 1, "{stats:#}");
    assert_eq!(stats["sender_side_failures"], 1, "{stats:#}");

    let metrics = app.anonymous().get("/metrics");
    metrics.expect_status(200);
    let value = |line_start: &str| {
        metrics
            .text
            .lines()
            .find(|line| line.starts_with(line_start))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse::<f64>().ok())
    };
    assert_eq!(
        value("mailtrail_deliveries_total{outcome=\"sent\"}"),
        Some(3.0),
        "{}",
        metrics.text
    );
    assert_eq!(
        value("mailtrail_deliveries_total{outcome=\"bounced\"}"),
        Some(1.0),
        "{}",
        metrics.text
    );
}
