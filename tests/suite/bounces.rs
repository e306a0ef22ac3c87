//! Bounce and complaint reports posted to `POST /api/v1/bounces` (issue 4, SPEC §4):
//! the real-shaped fixtures of `tests/fixtures/reports/` (Postfix, Exim, Sendmail,
//! Office 365, Gmail, Amazon SES, ARF), each posted after our own message to the
//! addresses it names was sent, with the fixture's decision id replaced by the real one.
//! A report suppresses exactly the recipients that failed for a recipient-caused status;
//! sender-side failures fail the decision without suppressing; delays are only recorded;
//! the decision is found by VERP, then Message-ID, then the newest sent decision; bad
//! bodies get a 4xx, never a 5xx. Then incidents and bulk-remove over hard bounces.
//!
//! The reports' decisions are sent through the default `file:` transport (no peer is
//! needed for a decision to be `sent`); the incident test uses the SMTP peer.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{Value, json};

use super::delivery::{
    PROJECT, add, add_all, all_suppressions, decision, enc, setup, suppression, wait_status,
};
use crate::common::{App, Resp, SmtpPeer, repo_root};

/// The decision id the fixtures carry in their VERP addresses and Message-IDs.
const FIXTURE_ID: &str = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

/// The raw bytes of a fixture (byte-exact: some hold 8-bit bytes that are not UTF-8).
fn fixture(name: &str) -> Vec<u8> {
    let path = repo_root().join("tests/fixtures/reports").join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

/// `haystack` with every `from` replaced by `to`, byte-wise.
fn replace(haystack: &[u8], from: &str, to: &str) -> Vec<u8> {
    let from = from.as_bytes();
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(from) {
            out.extend_from_slice(to.as_bytes());
            i += from.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

/// `haystack` without the lines that contain `needle`.
fn drop_lines(haystack: &[u8], needle: &str) -> Vec<u8> {
    haystack
        .split_inclusive(|&b| b == b'\n')
        .filter(|line| !line.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .flatten()
        .copied()
        .collect()
}

/// Posts a raw report as `message/rfc822`.
fn post_report(app: &App, raw: impl Into<Vec<u8>>) -> Resp {
    app.post_raw("/api/v1/bounces", "message/rfc822", raw)
}

/// An app with the project, where each of `inputs` was agent-added and its invitation
/// sent; returns the normalized address and decision id of each, in order.
fn sent_to(inputs: &[&str]) -> (App, Vec<(String, String)>) {
    let app = App::start();
    setup(&app);
    let results = add_all(&app, PROJECT, inputs);
    let sent: Vec<(String, String)> = results
        .iter()
        .map(|result| {
            assert_eq!(result["status"], "queued", "{result:#}");
            let email = result["email"].as_str().expect("an email").to_owned();
            let id = result["decision_id"].as_str().expect("an id").to_owned();
            wait_status(&app, &id, "sent");
            (email, id)
        })
        .collect();
    (app, sent)
}

/// What a report must do to one address it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Suppressed as `bounce_report` (`mailbox_full` for 5.2.2); the decision becomes
    /// `bounced`.
    Bounced,
    /// Suppressed as `complaint`; the decision stays `sent`.
    Complained,
    /// Sender-side: the decision becomes `failed`/`policy_rejected`, not suppressed.
    PolicyRejected,
    /// Delayed or transient: recorded; nothing changes.
    Recorded,
}

impl Fate {
    /// The `result` the API answers for the address.
    fn result(self) -> &'static str {
        match self {
            Fate::Bounced | Fate::Complained => "suppressed",
            Fate::PolicyRejected => "policy_rejected",
            Fate::Recorded => "recorded",
        }
    }
}

/// Sends our invitation to every address of `expected` (inputs as the fixture writes
/// them), posts fixture `name` with the VERP and Message-ID naming the first address's
/// decision, and checks the answer (`kind`, one entry per address with its result and
/// decision), each address's suppression and decision, and that nothing else was
/// suppressed.
#[track_caller]
fn check(name: &str, kind: &str, expected: &[(&str, Fate)]) {
    check_edited(name, |raw| raw, kind, expected);
}

/// [`check`] with fixture `name` changed by `edit` before it is posted.
#[track_caller]
fn check_edited(
    name: &str,
    edit: impl FnOnce(Vec<u8>) -> Vec<u8>,
    kind: &str,
    expected: &[(&str, Fate)],
) {
    let inputs: Vec<&str> = expected.iter().map(|(input, _)| *input).collect();
    let (app, sent) = sent_to(&inputs);
    let named_id = &sent[0].1;
    let raw = edit(replace(&fixture(name), FIXTURE_ID, named_id));
    let resp = post_report(&app, raw.clone());
    resp.expect_status(200);
    let answer = resp.json();
    assert_eq!(answer["type"], kind, "{answer:#}");
    let recipients: BTreeMap<String, Value> = answer["recipients"]
        .as_array()
        .unwrap_or_else(|| panic!("no recipients: {answer:#}"))
        .iter()
        .map(|r| {
            (
                r["email"].as_str().unwrap_or_default().to_owned(),
                r.clone(),
            )
        })
        .collect();
    assert_eq!(recipients.len(), expected.len(), "{answer:#}");

    let evidence_marker = String::from_utf8_lossy(&raw[..raw.len().min(60)])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    for ((email, id), (_, fate)) in sent.iter().zip(expected) {
        let entry = recipients
            .get(email)
            .unwrap_or_else(|| panic!("{name}: no entry for {email}: {answer:#}"));
        assert_eq!(entry["result"], fate.result(), "{name}: {entry:#}");
        assert_eq!(entry["decision_id"], id.as_str(), "{name}: {entry:#}");
        let decision = decision(&app, id);
        let found = suppression(&app, email);
        match fate {
            Fate::Bounced | Fate::Complained => {
                let found = found.unwrap_or_else(|| panic!("{name}: {email} must be suppressed"));
                // A full mailbox (5.2.2) suppresses for a while only (SPEC §11).
                let bounce_reason = if entry["status"] == "5.2.2" {
                    "mailbox_full"
                } else {
                    "bounce_report"
                };
                let reason = if *fate == Fate::Bounced {
                    bounce_reason
                } else {
                    "complaint"
                };
                assert_eq!(found["reason"], reason, "{name}: {found:#}");
                assert_eq!(found["stage"], "report", "{name}: {found:#}");
                assert_eq!(found["decision_id"], id.as_str(), "{name}: {found:#}");
                let evidence = found["evidence"].as_str().unwrap_or_default();
                assert!(
                    evidence.contains(named_id.as_str()) && evidence.contains(&evidence_marker),
                    "{name}: the evidence is the raw report: {found:#}"
                );
                if *fate == Fate::Bounced {
                    assert_eq!(decision["status"], "bounced", "{name}: {decision:#}");
                    assert_eq!(decision["status_reason"], bounce_reason, "{decision:#}");
                    assert_eq!(
                        found["expires_at"].is_string(),
                        bounce_reason == "mailbox_full",
                        "{found:#}"
                    );
                    assert_eq!(found["enhanced_code"], entry["status"], "{found:#}");
                } else {
                    assert_eq!(decision["status"], "sent", "{name}: {decision:#}");
                }
            }
            Fate::PolicyRejected => {
                assert!(found.is_none(), "{name}: {email} must not be suppressed");
                assert_eq!(decision["status"], "failed", "{name}: {decision:#}");
                assert_eq!(decision["status_reason"], "policy_rejected", "{decision:#}");
            }
            Fate::Recorded => {
                assert!(found.is_none(), "{name}: {email} must not be suppressed");
                assert_eq!(decision["status"], "sent", "{name}: {decision:#}");
            }
        }
    }
    let suppressed = expected
        .iter()
        .filter(|(_, fate)| matches!(fate, Fate::Bounced | Fate::Complained))
        .count();
    assert_eq!(
        all_suppressions(&app).len(),
        suppressed,
        "{name}: nothing else is suppressed"
    );
}

#[test]
fn postfix_user_unknown_suppresses_the_recipient() {
    check(
        "postfix_user_unknown.eml",
        "dsn",
        &[("nobody@example.test", Fate::Bounced)],
    );
}

#[test]
fn postfix_report_with_two_recipients_spares_the_delayed_one() {
    check(
        "postfix_two_recipients_one_failed.eml",
        "dsn",
        &[
            ("carol@example.test", Fate::Bounced),
            ("dave@slow.example.test", Fate::Recorded),
        ],
    );
}

#[test]
fn exim_unspecific_failure_suppresses_the_recipient() {
    check(
        "exim_failed.eml",
        "dsn",
        &[("erin@example.test", Fate::Bounced)],
    );
}

#[test]
fn sendmail_report_splits_recipient_and_sender_side_failures() {
    check(
        "sendmail_dsn.eml",
        "dsn",
        &[
            ("frank@example.test", Fate::Bounced),
            ("Grace@Example.TEST", Fate::Bounced),
            ("heidi@example.test", Fate::PolicyRejected),
        ],
    );
}

#[test]
fn office365_ndr_suppresses_the_recipient() {
    check(
        "exchange_o365_ndr.eml",
        "dsn",
        &[("ivan@example.test", Fate::Bounced)],
    );
}

#[test]
fn gmail_bounce_suppresses_the_recipient() {
    check(
        "gmail_bounce.eml",
        "dsn",
        &[("judy.nosuchuser@example.test", Fate::Bounced)],
    );
}

#[test]
fn amazon_ses_bounce_suppresses_the_recipient() {
    check(
        "ses_bounce.eml",
        "dsn",
        &[("kim@example.test", Fate::Bounced)],
    );
}

#[test]
fn sender_side_rejection_report_fails_the_decision_without_suppression() {
    check(
        "policy_rejected_571.eml",
        "dsn",
        &[("liam@example.test", Fate::PolicyRejected)],
    );
}

#[test]
fn delay_report_is_recorded_and_changes_nothing() {
    check(
        "delayed_only.eml",
        "dsn",
        &[("mia@slow.example.test", Fate::Recorded)],
    );
}

#[test]
fn unspecific_five_zero_zero_suppresses_the_recipient() {
    check(
        "unspecific_500.eml",
        "dsn",
        &[("nora@example.test", Fate::Bounced)],
    );
}

#[test]
fn eight_bit_and_folded_report_suppresses_the_recipient() {
    check(
        "eightbit_and_folded.eml",
        "dsn",
        &[("olga@example.test", Fate::Bounced)],
    );
}

#[test]
fn forwarded_bounce_with_base64_status_suppresses_the_recipient() {
    check(
        "forwarded_base64_ds.eml",
        "dsn",
        &[("tom@example.test", Fate::Bounced)],
    );
}

#[test]
fn internationalized_report_suppresses_the_punycode_address() {
    // Our addresses are RFC 5321 mailboxes (ASCII local part, SPEC §1), so the fixture's
    // recipient gets an ASCII local part; its domain stays internationalized (UTF-8).
    check_edited(
        "global_dsn.eml",
        |raw| replace(&replace(&raw, "Jürgen@", "Juergen@"), "jürgen@", "juergen@"),
        "dsn",
        &[("Juergen@bücher.example.test", Fate::Bounced)],
    );
}

#[test]
fn report_for_a_utf8_local_part_is_recorded_and_ignored() {
    let (app, sent) = sent_to(&["juergen@xn--bcher-kva.example.test"]);
    let raw = replace(&fixture("global_dsn.eml"), FIXTURE_ID, &sent[0].1);
    let answer = post_report(&app, raw).expect_status(200).json();
    assert_eq!(answer["recipients"], json!([]), "{answer:#}");
    assert!(all_suppressions(&app).is_empty());
    assert_eq!(decision(&app, &sent[0].1)["status"], "sent");
}

#[test]
fn arf_abuse_report_suppresses_as_complaint() {
    check(
        "arf_abuse.eml",
        "complaint",
        &[("nina@example.test", Fate::Complained)],
    );
}

#[test]
fn arf_report_without_original_rcpt_to_uses_the_original_to() {
    check(
        "arf_no_rcpt_to.eml",
        "complaint",
        &[("oscar@example.test", Fate::Complained)],
    );
}

/// Sends two invitations to nobody@example.test (an agent add, then a resend) and
/// returns the app with the older and the newer decision id.
fn two_sent_decisions() -> (App, String, String) {
    let app = App::start();
    setup(&app);
    let older = add(&app, PROJECT, "nobody@example.test");
    wait_status(&app, &older, "sent");
    let resp = app.send(app.request(
        Method::POST,
        &format!("/api/v1/projects/{PROJECT}/customers/nobody@example.test/resend"),
    ));
    resp.expect_status(202);
    let newer = resp.json()["decision_id"]
        .as_str()
        .expect("a decision id")
        .to_owned();
    wait_status(&app, &newer, "sent");
    (app, older, newer)
}

/// Posts `raw`, expects nobody@example.test suppressed through decision `bounced`, and
/// decision `untouched` still sent.
#[track_caller]
fn assert_report_found(app: &App, raw: Vec<u8>, bounced: &str, untouched: &str) {
    let answer = post_report(app, raw).expect_status(200).json();
    assert_eq!(
        answer["recipients"][0]["decision_id"], bounced,
        "{answer:#}"
    );
    assert_eq!(
        answer["recipients"][0]["result"], "suppressed",
        "{answer:#}"
    );
    assert_eq!(decision(app, bounced)["status"], "bounced");
    assert_eq!(decision(app, untouched)["status"], "sent");
    let found = suppression(app, "nobody@example.test").expect("suppressed");
    assert_eq!(found["decision_id"], bounced, "{found:#}");
}

#[test]
fn report_without_message_id_is_matched_by_its_verp_address() {
    let (app, older, newer) = two_sent_decisions();
    let raw = replace(&fixture("postfix_user_unknown.eml"), FIXTURE_ID, &older);
    let raw = drop_lines(&raw, &format!("Message-ID: <{older}@"));
    assert!(
        !String::from_utf8_lossy(&raw).contains(&format!("<{older}@")),
        "no Message-ID of ours is left"
    );
    assert_report_found(&app, raw, &older, &newer);
}

#[test]
fn report_without_verp_is_matched_by_its_message_id() {
    let (app, older, newer) = two_sent_decisions();
    let raw = replace(
        &fixture("postfix_user_unknown.eml"),
        &format!("bounces+{FIXTURE_ID}@example.test"),
        "help@example.test",
    );
    let raw = replace(&raw, FIXTURE_ID, &older);
    assert!(!String::from_utf8_lossy(&raw).contains("bounces+"));
    assert_report_found(&app, raw, &older, &newer);
}

#[test]
fn report_naming_no_decision_is_matched_to_the_newest_sent_one() {
    let (app, older, newer) = two_sent_decisions();
    let raw = replace(
        &fixture("postfix_user_unknown.eml"),
        &format!("bounces+{FIXTURE_ID}@example.test"),
        "help@example.test",
    );
    let raw = drop_lines(&raw, &format!("Message-ID: <{FIXTURE_ID}@"));
    assert!(!String::from_utf8_lossy(&raw).contains(FIXTURE_ID));
    assert_report_found(&app, raw, &newer, &older);
}

/// Posts `raw` and expects a 422 with the error JSON, nobody suppressed, and each of
/// the decisions still sent.
#[track_caller]
fn assert_refused(app: &App, sent: &[(String, String)], raw: Vec<u8>) {
    let resp = post_report(app, raw);
    resp.expect_status(422);
    let error = &resp.json()["error"];
    let code = error["code"].as_str().unwrap_or_default();
    assert!(
        !code.is_empty() && code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
        "{}",
        resp.text
    );
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        resp.text
    );
    assert!(all_suppressions(app).is_empty());
    for (_, id) in sent {
        assert_eq!(decision(app, id)["status"], "sent");
    }
}

/// SPEC §11: a message that is not a report but came back to a VERP address is kept
/// against its decision as `unclassified`, and changes nothing.
fn assert_kept_unclassified(app: &App, sent: &[(String, String)], raw: Vec<u8>) {
    let resp = post_report(app, raw);
    resp.expect_status(200);
    let answer = resp.json();
    assert_eq!(answer["result"], "unclassified", "{answer:#}");
    assert_eq!(answer["decision_id"], sent[0].1.as_str(), "{answer:#}");
    assert!(answer["kept_id"].is_i64(), "{answer:#}");
    assert!(all_suppressions(app).is_empty());
    for (_, id) in sent {
        assert_eq!(decision(app, id)["status"], "sent");
    }
}

#[test]
fn ordinary_reply_to_the_verp_address_is_kept_unclassified() {
    let (app, sent) = sent_to(&["paula@example.test"]);
    let raw = replace(&fixture("not_a_report.eml"), FIXTURE_ID, &sent[0].1);
    assert_kept_unclassified(&app, &sent, raw);
}

#[test]
fn ordinary_mail_without_verp_is_not_a_report() {
    let (app, sent) = sent_to(&["paula@example.test"]);
    let raw = drop_lines(&fixture("not_a_report.eml"), "bounces+");
    assert_refused(&app, &sent, raw.clone());
    assert_eq!(
        post_report(&app, raw).json()["error"]["code"],
        "not_a_report"
    );
}

#[test]
fn report_with_garbage_delivery_status_is_kept_unclassified() {
    let (app, sent) = sent_to(&[
        "quinn@example.test",
        "rita@example.test",
        "sam@example.test",
    ]);
    let raw = replace(&fixture("malformed_ds.eml"), FIXTURE_ID, &sent[0].1);
    assert_kept_unclassified(&app, &sent, raw.clone());
    // Without its VERP address it is refused, naming what is wrong with it.
    assert_refused(&app, &sent, drop_lines(&raw, "bounces+"));
}

/// A deterministic stream of bytes that looks random (xorshift), so a failure repeats.
fn noise(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

#[test]
fn hostile_bodies_never_get_a_server_error() {
    let (mut app, sent) = sent_to(&["nobody@example.test"]);
    let id = &sent[0].1;
    let nested_multipart = {
        let depth = 2000;
        let mut raw = String::from("MIME-Version: 1.0\r\n");
        for level in 0..depth {
            raw.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"b{level}\"\r\n\r\n--b{level}\r\n"
            ));
        }
        raw.push_str("Content-Type: message/delivery-status\r\n\r\nFinal-Recipient: rfc822; nobody@example.test\r\nAction: failed\r\nStatus: 5.1.1\r\n");
        raw.into_bytes()
    };
    let nested_messages = {
        let mut raw = String::from("MIME-Version: 1.0\r\n");
        for _ in 0..20_000 {
            raw.push_str("Content-Type: message/rfc822\r\n\r\n");
        }
        raw.push_str("Subject: bottom\r\n\r\nhello\r\n");
        raw.into_bytes()
    };
    let nested_base64 = {
        // A message/rfc822 part whose body is base64 of another such part, 30 deep.
        let mut inner = b"Subject: bottom\r\n\r\nhello\r\n".to_vec();
        for _ in 0..30 {
            let encoded = base64(&inner);
            inner = format!(
                "MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n"
            )
            .into_bytes();
        }
        inner
    };
    let huge_status = {
        let mut raw = replace(&fixture("postfix_user_unknown.eml"), FIXTURE_ID, id);
        let at = raw
            .windows(17)
            .position(|w| w == b"Diagnostic-Code: ")
            .expect("a Diagnostic-Code");
        let filler = "x".repeat(2 * 1024 * 1024);
        raw.splice(at + 17..at + 17, filler.into_bytes());
        raw
    };
    let cases: Vec<(&str, &str, Vec<u8>, &[u16])> =
        vec![
        ("empty", "message/rfc822", Vec::new(), &[422]),
        ("blank lines", "message/rfc822", b"\r\n\r\n\r\n".to_vec(), &[422]),
        ("random bytes", "message/rfc822", noise(64 * 1024), &[422]),
        ("NUL bytes", "message/rfc822", vec![0; 4096], &[422]),
        (
            "text/plain",
            "text/plain",
            fixture("postfix_user_unknown.eml"),
            &[415],
        ),
        ("no content type", "", fixture("postfix_user_unknown.eml"), &[415]),
        ("nested multipart", "message/rfc822", nested_multipart, &[200, 422]),
        ("nested messages", "message/rfc822", nested_messages, &[422]),
        ("nested base64", "message/rfc822", nested_base64, &[422]),
        (
            "bare multipart/report",
            "multipart/report; report-type=delivery-status; boundary=\"zz\"",
            b"--zz\r\nContent-Type: message/delivery-status\r\n\r\n\xff\xfe garbage\r\n--zz--\r\n"
                .to_vec(),
            &[422],
        ),
        (
            "2 MiB diagnostic",
            "message/rfc822",
            huge_status,
            &[200, 422],
        ),
    ];
    let mut failures = Vec::new();
    // Its own client, so this check does not depend on
    // `connection_is_usable_after_a_too_large_report`.
    let oversize = fresh_client()
        .post(app.url("/api/v1/bounces"))
        .bearer_auth(crate::common::ADMIN_TOKEN)
        .header("content-type", "message/rfc822")
        .body(vec![b'a'; 11 * 1024 * 1024])
        .send()
        .expect("an answer to the 11 MiB body");
    if oversize.status().as_u16() != 413 {
        failures.push(format!("11 MiB: HTTP {}", oversize.status()));
    }
    for (label, content_type, body, allowed) in cases {
        let resp = if content_type.is_empty() {
            app.send(app.request(Method::POST, "/api/v1/bounces").body(body))
        } else {
            app.post_raw("/api/v1/bounces", content_type, body)
        };
        eprintln!(
            "{label}: HTTP {} {}",
            resp.status,
            resp.text.chars().take(200).collect::<String>()
        );
        if !allowed.contains(&resp.status) {
            failures.push(format!(
                "{label}: HTTP {} (allowed {allowed:?}): {}",
                resp.status, resp.text
            ));
        } else if resp.status != 200 && resp.json()["error"]["code"].as_str().is_none() {
            failures.push(format!("{label}: no error JSON: {}", resp.text));
        }
        if !app.is_running() {
            failures.push(format!("{label}: the server died"));
            break;
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    app.get("/healthz").expect_status(200);
    // Only the 2 MiB diagnostic names a real failed recipient; nothing else suppresses.
    let suppressed: Vec<String> = all_suppressions(&app)
        .iter()
        .map(|s| s["email"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        suppressed.is_empty() || suppressed == ["nobody@example.test"],
        "{suppressed:?}"
    );
}

/// The bytes of the app's database and its write-ahead log.
fn database_bytes(app: &App) -> u64 {
    let db = app.db_path();
    let wal = db.with_extension("db-wal");
    [db, wal]
        .iter()
        .filter_map(|path| std::fs::metadata(path).ok())
        .map(|meta| meta.len())
        .sum()
}

/// A `multipart/report` naming `recipients` failed addresses `gone{n}@example.test`,
/// after a human-readable part of `text_lines` lines (as long as some MTAs write).
fn many_recipient_report(recipients: usize, text_lines: usize) -> String {
    let mut raw = String::from(
        "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; \
         boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\n",
    );
    raw.push_str(&"The message could not be delivered.\r\n".repeat(text_lines));
    raw.push_str(
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.test\r\n\r\n",
    );
    for n in 0..recipients {
        raw.push_str(&format!(
            "Final-Recipient: rfc822; gone{n}@example.test\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        ));
    }
    raw.push_str("--B--\r\n");
    raw
}

#[test]
fn report_naming_many_recipients_suppresses_them_all_quickly() {
    let app = App::start();
    let before = database_bytes(&app);
    let raw = many_recipient_report(500, 6000);
    let started = std::time::Instant::now();
    let answer = post_report(&app, raw.clone()).expect_status(200).json();
    let took = started.elapsed();
    let grown = database_bytes(&app).saturating_sub(before);
    eprintln!(
        "a {}-byte report for 500 recipients: {took:?}, database +{grown} bytes",
        raw.len()
    );
    let results = answer["recipients"].as_array().cloned().unwrap_or_default();
    assert_eq!(results.len(), 500);
    assert!(
        results.iter().all(|r| r["result"] == "suppressed"),
        "{answer:#}"
    );
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    let found = suppression(&app, "gone499@example.test").expect("suppressed");
    let evidence = found["evidence"].as_str().unwrap_or_default();
    assert!(
        !evidence.is_empty() && raw.starts_with(evidence),
        "the evidence is the raw report (or its beginning)"
    );
}

#[test]
fn report_naming_too_many_recipients_is_refused_whole() {
    // Before the cap, a 4 MB report naming 50,000 recipients kept a copy of the report
    // per recipient and grew the server past 22 GB; 5,000 is enough to show the refusal.
    let app = App::start();
    let before = database_bytes(&app);
    let started = std::time::Instant::now();
    let resp = post_report(&app, many_recipient_report(5000, 10));
    let took = started.elapsed();
    resp.expect_status(422);
    assert!(resp.json()["error"]["code"].is_string(), "{}", resp.text);
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    assert!(all_suppressions(&app).is_empty(), "all or nothing");
    let grown = database_bytes(&app).saturating_sub(before);
    assert!(grown < 1024 * 1024, "the database grew by {grown} bytes");
}

/// A client with its own connection pool.
fn fresh_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("building a reqwest client")
}

#[test]
fn connection_is_usable_after_a_too_large_report() {
    let app = App::start();
    let client = fresh_client();
    let too_large = client
        .post(app.url("/api/v1/bounces"))
        .bearer_auth(crate::common::ADMIN_TOKEN)
        .header("content-type", "message/rfc822")
        .body(vec![b'a'; 11 * 1024 * 1024])
        .send()
        .expect("an answer to the 11 MiB body");
    assert_eq!(too_large.status().as_u16(), 413);
    let closes = too_large
        .headers()
        .get("connection")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let _ = too_large.text();
    let next = client
        .get(app.url("/healthz"))
        .send()
        .map(|resp| resp.status().as_u16());
    assert!(
        matches!(next, Ok(200)),
        "the next request on the same client: {next:?} (413 said Connection: close: {closes})"
    );
}

/// Standard base64 with padding, for building nested test bodies.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (n, chunk) in bytes.chunks(3).enumerate() {
        if n > 0 && n % 19 == 0 {
            out.push_str("\r\n");
        }
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An app relaying through a policy peer where bounce-1..4@ got 550 5.1.1 (hard
/// bounces, SMTP) and full-1@ got 552 5.2.2 (a full mailbox), and a posted report
/// suppressed nobody@.
fn hard_bounce_day() -> (SmtpPeer, App) {
    let peer = SmtpPeer::start();
    let app = App::builder().smarthost(&peer).start();
    setup(&app);
    let emails = [
        "bounce-1@example.test",
        "bounce-2@example.test",
        "bounce-3@example.test",
        "bounce-4@example.test",
        "full-1@example.test",
        "nobody@example.test",
    ];
    let results = add_all(&app, PROJECT, &emails);
    let statuses = [
        "bounced", "bounced", "bounced", "bounced", "bounced", "sent",
    ];
    for (result, status) in results.iter().zip(statuses) {
        wait_status(&app, result["decision_id"].as_str().expect("an id"), status);
    }
    // 5.2.2 during our own delivery: a full mailbox, suppressed until `expires_at`.
    let full = decision(&app, results[4]["decision_id"].as_str().expect("an id"));
    assert_eq!(full["status_reason"], "mailbox_full", "{full:#}");
    let full = suppression(&app, "full-1@example.test").expect("full-1@ is suppressed");
    assert_eq!(full["reason"], "mailbox_full", "{full:#}");
    assert!(full["expires_at"].is_string(), "{full:#}");
    let nobody = results[5]["decision_id"].as_str().expect("an id");
    let raw = replace(&fixture("postfix_user_unknown.eml"), FIXTURE_ID, nobody);
    post_report(&app, raw).expect_status(200);
    assert_eq!(all_suppressions(&app).len(), 6);
    (peer, app)
}

/// The addresses still suppressed, sorted.
fn suppressed_emails(app: &App) -> Vec<String> {
    let mut emails: Vec<String> = all_suppressions(app)
        .iter()
        .map(|s| s["email"].as_str().unwrap_or_default().to_owned())
        .collect();
    emails.sort();
    emails
}

/// The audit entries for `what`.
fn audit_entries(app: &App, what: &str) -> Vec<Value> {
    let audit = app.get("/api/v1/audit?limit=500").expect_status(200).json();
    audit["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["what"] == what)
        .cloned()
        .collect()
}

/// `GET /api/v1/suppressions/incidents?window=7d`, checked to hold the relay's bad
/// day (bounce-1..4@, 550 5.1.1 from the peer) as its largest incident, alone.
#[track_caller]
fn relay_incident(app: &App, peer: &SmtpPeer) -> Value {
    let incidents = app
        .get("/api/v1/suppressions/incidents?window=7d")
        .expect_status(200)
        .json();
    let items = incidents["items"].as_array().cloned().unwrap_or_default();
    // full-1@'s 5.2.2 is a `mailbox_full` suppression, which incidents never group
    // (SPEC §15).
    assert_eq!(
        items.len(),
        2,
        "5.1.1 from the relay, the report: {incidents:#}"
    );
    let counts: Vec<i64> = items
        .iter()
        .map(|i| i["count"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(counts, [4, 1], "largest first: {incidents:#}");
    let incident = items[0].clone();
    let cause = incident["cause"].as_str().unwrap_or_default();
    assert!(
        cause.contains(&peer.addr()) && cause.contains("5.1.1"),
        "{incident:#}"
    );
    let mut sample: Vec<&str> = incident["sample"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    sample.sort();
    assert_eq!(
        sample,
        [
            "bounce-1@example.test",
            "bounce-2@example.test",
            "bounce-3@example.test",
            "bounce-4@example.test"
        ],
        "{incident:#}"
    );
    assert!(incident["first_at"].is_string() && incident["last_at"].is_string());
    incident
}

#[test]
fn incidents_group_the_hard_bounces_of_one_relay_and_status() {
    let (peer, app) = hard_bounce_day();
    relay_incident(&app, &peer);
}

#[test]
fn bulk_remove_with_an_incidents_ids_removes_exactly_the_incident() {
    let (peer, app) = hard_bounce_day();
    let incident = relay_incident(&app, &peer);
    let mut ids: Vec<&str> = incident["ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "bounce-1@example.test",
            "bounce-2@example.test",
            "bounce-3@example.test",
            "bounce-4@example.test"
        ],
        "the incident lists its suppressions: {incident:#}"
    );
    // A manual opt-out and a complaint on the same domain, in the same hour.
    app.post_json(
        "/api/v1/suppressions",
        &json!({"email": "stop@example.test", "note": "customer asked us to stop"}),
    )
    .expect_status(201);
    app.post_raw(
        "/api/v1/suppressions/import",
        "text/csv",
        "spam@example.test,complaint,marked as spam\n",
    )
    .expect_status(200);
    let again = relay_incident(&app, &peer);
    assert_eq!(again["count"], 4, "opt-outs join no incident: {again:#}");

    // A dry run counts and changes nothing.
    let body = json!({"ids": incident["ids"], "note": "relay refused everyone for an hour"});
    let mut dry = body.clone();
    dry["dry_run"] = json!(true);
    let would = app
        .post_json("/api/v1/suppressions/bulk-remove", &dry)
        .expect_status(200)
        .json();
    assert_eq!(would["would_remove"], 4, "{would:#}");
    assert_eq!(
        would["sample"].as_array().map(Vec::len),
        Some(4),
        "{would:#}"
    );
    assert!(would.get("removed").is_none(), "{would:#}");
    assert_eq!(all_suppressions(&app).len(), 8, "a dry run removes nothing");

    let removed = app
        .post_json("/api/v1/suppressions/bulk-remove", &body)
        .expect_status(200)
        .json();
    assert_eq!(removed["removed"], incident["count"], "{removed:#}");
    assert_eq!(
        suppressed_emails(&app),
        [
            "full-1@example.test",
            "nobody@example.test",
            "spam@example.test",
            "stop@example.test"
        ]
    );
    let audited = audit_entries(&app, "suppression.bulk_remove");
    assert_eq!(
        audited.len(),
        1,
        "one audit entry for the call: {audited:#?}"
    );
    assert_eq!(audited[0]["note"], "relay refused everyone for an hour");
    // Removed meanwhile: the answer counts what was still there.
    let again = app
        .post_json("/api/v1/suppressions/bulk-remove", &body)
        .expect_status(200)
        .json();
    assert_eq!(again["removed"], 0, "{again:#}");
    // ids and filters together, or ids that are no addresses, are refused.
    for bad in [
        json!({"ids": ["bounce-1@example.test"], "domain": "example.test", "note": "x"}),
        json!({"ids": [], "note": "x"}),
        json!({"ids": ["not an address"], "note": "x"}),
    ] {
        app.post_json("/api/v1/suppressions/bulk-remove", &bad)
            .expect_status(422);
    }
}

#[test]
fn bulk_remove_by_filter_spares_complaints_and_opt_outs_unless_named() {
    let (_peer, app) = hard_bounce_day();
    app.post_json(
        "/api/v1/suppressions",
        &json!({"email": "stop@example.test", "note": "customer asked us to stop"}),
    )
    .expect_status(201);
    app.post_raw(
        "/api/v1/suppressions/import",
        "text/csv",
        "spam@example.test,complaint,marked as spam\n",
    )
    .expect_status(200);
    let dry = app
        .post_json(
            "/api/v1/suppressions/bulk-remove",
            &json!({"domain": "example.test", "note": "all of them", "dry_run": true}),
        )
        .expect_status(200)
        .json();
    assert_eq!(dry["would_remove"], 6, "{dry:#}");
    let sample = dry["sample"].to_string();
    assert!(
        !sample.contains("spam@") && !sample.contains("stop@"),
        "{dry:#}"
    );
    assert_eq!(all_suppressions(&app).len(), 8, "a dry run removes nothing");
    let removed = app
        .post_json(
            "/api/v1/suppressions/bulk-remove",
            &json!({"domain": "example.test", "note": "all of them"}),
        )
        .expect_status(200)
        .json();
    assert_eq!(removed["removed"], 6, "{removed:#}");
    assert_eq!(
        suppressed_emails(&app),
        ["spam@example.test", "stop@example.test"]
    );
    // Named, they go.
    let removed = app
        .post_json(
            "/api/v1/suppressions/bulk-remove",
            &json!({"reason": "complaint", "note": "re-consented in writing"}),
        )
        .expect_status(200)
        .json();
    assert_eq!(removed["removed"], 1, "{removed:#}");
    assert_eq!(suppressed_emails(&app), ["stop@example.test"]);
}

#[test]
fn bulk_remove_by_status_removes_every_match_in_one_call() {
    let (_peer, app) = hard_bounce_day();
    // A filter is required, and so is a note.
    app.post_json(
        "/api/v1/suppressions/bulk-remove",
        &json!({"note": "everything"}),
    )
    .expect_status(422);
    app.post_json(
        "/api/v1/suppressions/bulk-remove",
        &json!({"reason": "hard_bounce"}),
    )
    .expect_status(422);
    assert_eq!(
        all_suppressions(&app).len(),
        6,
        "a refused call removes nothing"
    );

    let removed = app
        .post_json(
            "/api/v1/suppressions/bulk-remove",
            &json!({
                "reason": "hard_bounce",
                "smtp_code": 550,
                "enhanced_code": "5.1.1",
                "domain": "example.test",
                "note": "relay refused everyone for an hour",
            }),
        )
        .expect_status(200)
        .json();
    assert_eq!(removed["removed"], 4, "{removed:#}");
    assert_eq!(
        suppressed_emails(&app),
        ["full-1@example.test", "nobody@example.test"]
    );
    let audited = audit_entries(&app, "suppression.bulk_remove");
    assert_eq!(audited.len(), 1, "{audited:#?}");
    assert_eq!(audited[0]["note"], "relay refused everyone for an hour");
    // The removed addresses can be mailed again.
    let why = app
        .get(&format!("/api/v1/why/{}", enc("bounce-1@example.test")))
        .expect_status(200)
        .json();
    assert!(why["suppression"].is_null(), "{why:#}");
}
