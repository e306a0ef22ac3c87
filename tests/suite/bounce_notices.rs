//! Bounces that are not RFC 3464 reports, over `POST /api/v1/bounces` (issue 12, SPEC
//! §11): the notice fixtures of `tests/fixtures/bounces/` (qmail, Exim, Sendmail,
//! Exchange, Outlook.com, Gmail, Yahoo, Postfix-like plain text, auto-replies), each
//! posted after our own message to the address it names was sent, with the fixture's
//! decision id replaced by the real one. Then: nothing dropped (a message not
//! understood is kept, on the decision page and counted on the overview), a full
//! mailbox suppresses until `expires_at` and is lifted by `system`, a multipart report
//! posted as its parts, and `not_a_report` only without a report or a VERP address.
//! Runs on PostgreSQL too when `TEST_MAILTRAIL_PG` is set.

use serde_json::Value;

use super::delivery::{PROJECT, add_all, decision, setup, suppression, wait_status};
use crate::common::{ADMIN_PASSWORD, App, Resp, repo_root};

/// The decision id the fixtures carry in their VERP addresses and Message-IDs.
const FIXTURE_ID: &str = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

fn fixture(dir: &str, name: &str) -> Vec<u8> {
    let path = repo_root().join("tests/fixtures").join(dir).join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

/// A notice fixture with its decision id replaced by `id`.
fn notice(name: &str, id: &str) -> Vec<u8> {
    String::from_utf8(fixture("bounces", name))
        .expect("UTF-8 fixture")
        .replace(FIXTURE_ID, id)
        .into_bytes()
}

fn post(app: &App, raw: impl Into<Vec<u8>>) -> Resp {
    app.post_raw("/api/v1/bounces", "message/rfc822", raw)
}

/// An app with the project, where each of `emails` was agent-added and its invitation
/// sent; returns each decision id, in order.
fn sent_to(app: &App, emails: &[&str]) -> Vec<String> {
    add_all(app, PROJECT, emails)
        .iter()
        .map(|result| {
            assert_eq!(result["status"], "queued", "{result:#}");
            let id = result["decision_id"].as_str().expect("an id").to_owned();
            wait_status(app, &id, "sent");
            id
        })
        .collect()
}

/// What a fixture must do: its recipient, the answer's `result`, the decision's status
/// and status_reason afterwards, and the suppression reason (None: not suppressed).
struct Expect {
    file: &'static str,
    email: &'static str,
    kind: &'static str,
    result: &'static str,
    status: &'static str,
    status_reason: Option<&'static str>,
    suppressed: Option<&'static str>,
}

const EXPECT: &[Expect] = &[
    Expect {
        file: "qmail_remote_user_unknown.eml",
        email: "alma@example.test",
        kind: "notice",
        result: "suppressed",
        status: "bounced",
        status_reason: Some("bounce_report"),
        suppressed: Some("bounce_report"),
    },
    Expect {
        file: "qmail_local_no_mailbox.eml",
        email: "bert@example.test",
        kind: "notice",
        result: "suppressed",
        status: "bounced",
        status_reason: Some("bounce_report"),
        suppressed: Some("bounce_report"),
    },
    Expect {
        file: "exim_user_unknown.eml",
        email: "cleo@example.test",
        kind: "notice",
        result: "suppressed",
        status: "bounced",
        status_reason: Some("bounce_report"),
        suppressed: Some("bounce_report"),
    },
    Expect {
        file: "exim_mailbox_full.eml",
        email: "dora@example.test",
        kind: "notice",
        result: "suppressed",
        status: "bounced",
        status_reason: Some("mailbox_full"),
        suppressed: Some("mailbox_full"),
    },
    Expect {
        file: "sendmail_transcript.eml",
        email: "emil@example.test",
        kind: "notice",
        result: "suppressed",
        status: "bounced",
        status_reason: Some("bounce_report"),
        suppressed: Some("bounce_report"),
    },
    Expect {
        file: "exchange_ndr.eml",
        email: "fay@example.test",
        kind: "notice",
        result: "suppressed",
        status: "bounced",
        status_reason: Some("bounce_report"),
        suppressed: Some("bounce_report"),
    },
    Expect {
        file: "outlook_com_policy.eml",
        email: "gus@example.test",
        kind: "notice",
        result: "policy_rejected",
        status: "failed",
        status_reason: Some("policy_rejected"),
        suppressed: None,
    },
    Expect {
        file: "gmail_no_such_user.eml",
        email: "hana@example.test",
        kind: "notice",
        result: "suppressed",
        status: "bounced",
        status_reason: Some("bounce_report"),
        suppressed: Some("bounce_report"),
    },
    Expect {
        file: "yahoo_no_account.eml",
        email: "ines@example.test",
        kind: "notice",
        result: "suppressed",
        status: "bounced",
        status_reason: Some("bounce_report"),
        suppressed: Some("bounce_report"),
    },
    Expect {
        file: "yahoo_deferred.eml",
        email: "jack@example.test",
        kind: "notice",
        result: "recorded",
        status: "sent",
        status_reason: None,
        suppressed: None,
    },
    Expect {
        file: "postfix_plain.eml",
        email: "kate@example.test",
        kind: "notice",
        result: "suppressed",
        status: "bounced",
        status_reason: Some("bounce_report"),
        suppressed: Some("bounce_report"),
    },
    Expect {
        file: "postfix_policy_plain.eml",
        email: "liv@example.test",
        kind: "notice",
        result: "policy_rejected",
        status: "failed",
        status_reason: Some("policy_rejected"),
        suppressed: None,
    },
    Expect {
        file: "unclassified_bounce.eml",
        email: "mona@example.test",
        kind: "notice",
        result: "unclassified",
        status: "sent",
        status_reason: None,
        suppressed: None,
    },
    Expect {
        file: "out_of_office.eml",
        email: "nina@example.test",
        kind: "auto_reply",
        result: "recorded",
        status: "sent",
        status_reason: None,
        suppressed: None,
    },
    Expect {
        file: "vacation.eml",
        email: "otto@example.test",
        kind: "auto_reply",
        result: "recorded",
        status: "sent",
        status_reason: None,
        suppressed: None,
    },
];

#[test]
fn every_notice_fixture_is_attributed_and_classified() {
    let app = App::start();
    setup(&app);
    let emails: Vec<&str> = EXPECT.iter().map(|e| e.email).collect();
    let ids = sent_to(&app, &emails);
    let mut failures = Vec::new();
    for (e, id) in EXPECT.iter().zip(&ids) {
        let resp = post(&app, notice(e.file, id));
        if resp.status != 200 {
            failures.push(format!("{}: HTTP {}: {}", e.file, resp.status, resp.text));
            continue;
        }
        let answer = resp.json();
        let d = decision(&app, id);
        let s = suppression(&app, e.email);
        let got = (
            answer["type"].as_str().unwrap_or_default().to_owned(),
            answer["result"].as_str().unwrap_or_default().to_owned(),
            answer["decision_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            d["status"].as_str().unwrap_or_default().to_owned(),
            d["status_reason"].as_str().map(str::to_owned),
            s.as_ref()
                .and_then(|s| s["reason"].as_str())
                .map(str::to_owned),
        );
        let want = (
            e.kind.to_owned(),
            e.result.to_owned(),
            id.clone(),
            e.status.to_owned(),
            e.status_reason.map(str::to_owned),
            e.suppressed.map(str::to_owned),
        );
        if got != want {
            failures.push(format!(
                "{}: got {got:?}, want {want:?}\n  {answer}",
                e.file
            ));
            continue;
        }
        assert!(answer["kept_id"].is_i64(), "{}: {answer}", e.file);
        if let Some(s) = s {
            // SPEC §11: the quoted reply as response, stage report, the message as evidence.
            assert_eq!(s["stage"], "report", "{s:#}");
            assert_eq!(s["decision_id"], id.as_str(), "{s:#}");
            assert!(
                s["response"].as_str().is_some_and(|r| r.len() >= 3),
                "{s:#}"
            );
            assert!(
                s["evidence"]
                    .as_str()
                    .is_some_and(|ev| ev.contains(id.as_str())),
                "{}: evidence must hold the message",
                e.file
            );
            let expires = &s["expires_at"];
            if e.suppressed == Some("mailbox_full") {
                assert!(expires.is_string(), "{s:#}");
            } else {
                assert!(expires.is_null(), "{s:#}");
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_notice_about_another_address_spares_the_customer() {
    // A copy_to (or a forward) that bounced comes back to the customer's VERP address;
    // the notice names another address, so the customer stays unsuppressed.
    let app = App::start();
    setup(&app);
    let ids = sent_to(&app, &["pia@example.test"]);
    let raw = notice("qmail_remote_user_unknown.eml", &ids[0]);
    let answer = post(&app, raw).expect_status(200).json();
    assert_eq!(answer["result"], "recorded", "{answer:#}");
    assert!(suppression(&app, "pia@example.test").is_none());
    assert!(suppression(&app, "alma@example.test").is_none());
    assert_eq!(decision(&app, &ids[0])["status"], "sent");
}

#[test]
fn a_message_with_neither_report_nor_verp_is_not_a_report() {
    let app = App::start();
    setup(&app);
    let raw = "From: someone@example.test\r\nTo: desk@example.test\r\nSubject: hello\r\n\r\nJust saying hello.\r\n";
    let resp = post(&app, raw);
    resp.expect_status(422);
    let error = resp.json()["error"].clone();
    assert_eq!(error["code"], "not_a_report", "{error:#}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("VERP")),
        "{error:#}"
    );
    assert_eq!(kept_rows(&app), 0);
}

#[test]
fn a_message_not_understood_is_kept_on_its_decision_and_counted() {
    let app = App::start();
    setup(&app);
    let ids = sent_to(&app, &["paula@example.test"]);
    // A person's reply to the VERP address: not a bounce, not an auto-reply.
    let raw = String::from_utf8(fixture("reports", "not_a_report.eml"))
        .expect("UTF-8")
        .replace(FIXTURE_ID, &ids[0]);
    let answer = post(&app, raw).expect_status(200).json();
    assert_eq!(answer["type"], "notice", "{answer:#}");
    assert_eq!(answer["result"], "unclassified", "{answer:#}");
    assert_eq!(answer["decision_id"], ids[0].as_str());
    assert!(suppression(&app, "paula@example.test").is_none());
    assert_eq!(decision(&app, &ids[0])["status"], "sent");
    // A VERP address naming no decision we know: kept, unattributed.
    let stranger = notice(
        "unclassified_bounce.eml",
        "0193ffff-0000-7000-8000-000000000000",
    );
    let answer = post(&app, stranger).expect_status(200).json();
    assert_eq!(answer["result"], "unclassified", "{answer:#}");
    assert!(answer["decision_id"].is_null(), "{answer:#}");
    assert_eq!(kept_rows(&app), 2);

    let visitor = Browser::login(&app);
    let page = visitor.get(&format!("/decisions/{}", ids[0]));
    assert!(page.contains("Messages that came back"), "{page}");
    assert!(page.contains("unclassified"), "{page}");
    assert!(page.contains("Re: Welcome to Acme Support"), "{page}");
    let overview = visitor.get("/");
    assert!(overview.contains("Bounces not understood"), "{overview}");
    assert!(overview.contains("1 with no decision"), "{overview}");
    let figure = overview
        .split("Bounces not understood</span><span class=\"value\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next());
    assert_eq!(figure, Some("2"), "{overview}");
}

#[test]
fn a_full_mailbox_is_suppressed_until_it_expires() {
    let app = App::builder()
        .env("MAILTRAIL_MAILBOX_FULL_FOR", "3s")
        .start();
    setup(&app);
    let ids = sent_to(&app, &["dora@example.test"]);
    let answer = post(&app, notice("exim_mailbox_full.eml", &ids[0]))
        .expect_status(200)
        .json();
    assert_eq!(answer["result"], "suppressed", "{answer:#}");
    let s = suppression(&app, "dora@example.test").expect("suppressed");
    assert_eq!(s["reason"], "mailbox_full");
    assert_eq!(s["enhanced_code"], "5.2.2");
    assert!(s["expires_at"].is_string(), "{s:#}");
    let d = decision(&app, &ids[0]);
    assert_eq!(d["status"], "bounced");
    assert_eq!(d["status_reason"], "mailbox_full");
    let why = app
        .get("/api/v1/why/dora%40example.test")
        .expect_status(200)
        .json();
    assert_eq!(why["suppression"]["expires_at"], s["expires_at"], "{why:#}");
    let summary = why["verdict"]["summary"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(summary.contains("until"), "{why:#}");

    // The worker lifts it once its time is up, with an audit entry by `system`.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while suppression(&app, "dora@example.test").is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the suppression was not lifted"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let audit = app.get("/api/v1/audit?limit=500").expect_status(200).json();
    let expired: Vec<&Value> = audit["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["what"] == "suppression.expire")
        .collect();
    assert_eq!(expired.len(), 1, "{audit:#}");
    assert_eq!(expired[0]["who"], "system");
    assert_eq!(expired[0]["target"], "dora@example.test");
    // Free again: a resend goes out.
    let again = add_all(&app, PROJECT, &["dora@example.test"]);
    assert_ne!(
        again[0]["reasons"],
        serde_json::json!(["suppressed"]),
        "{again:#?}"
    );
}

#[test]
fn a_multipart_report_posted_as_its_parts_is_accepted() {
    let app = App::start();
    setup(&app);
    let ids = sent_to(&app, &["nobody@example.test"]);
    let raw = String::from_utf8(fixture("reports", "postfix_user_unknown.eml"))
        .expect("UTF-8")
        .replace(FIXTURE_ID, &ids[0]);
    // The multipart/report type (with its boundary) goes into the HTTP header; the body
    // is the parts alone.
    let (head, body) = raw.split_once("\n\n").expect("a header block");
    let unfolded = head.replace("\n\t", " ").replace("\n ", " ");
    let content_type = unfolded
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: "))
        .expect("a Content-Type")
        .to_owned();
    assert!(
        content_type.starts_with("multipart/report"),
        "{content_type}"
    );
    let resp = app.post_raw("/api/v1/bounces", &content_type, body.to_owned());
    resp.expect_status(200);
    let answer = resp.json();
    assert_eq!(answer["type"], "dsn", "{answer:#}");
    assert_eq!(answer["result"], "suppressed", "{answer:#}");
    assert_eq!(decision(&app, &ids[0])["status"], "bounced");
}

#[test]
fn nul_bytes_and_odd_bytes_in_a_notice_are_kept() {
    let app = App::start();
    setup(&app);
    let ids = sent_to(&app, &["rosa@example.test"]);
    let mut raw = format!(
        "From: MAILER-DAEMON@odd.example.test\r\nTo: bounces+{}@example.test\r\nSubject: failure notice\r\n\r\n<rosa@example.test>:\r\nRemote host said: 550 5.1.1 no such user\x00\r\n",
        ids[0]
    )
    .into_bytes();
    raw.extend_from_slice(&[0xff, 0xfe, 0x00, b'\r', b'\n']);
    let answer = post(&app, raw.clone()).expect_status(200).json();
    assert_eq!(answer["result"], "suppressed", "{answer:#}");
    let kept = app.db_query_i64("SELECT bytes FROM bounce_messages");
    assert_eq!(kept, raw.len() as i64);
    // A report with a NUL byte in its diagnostic is read too (on PostgreSQL as well).
    let ids = sent_to(&app, &["nobody@example.test"]);
    let report = String::from_utf8(fixture("reports", "postfix_user_unknown.eml"))
        .expect("UTF-8")
        .replace(FIXTURE_ID, &ids[0])
        .replacen("Diagnostic-Code: ", "Diagnostic-Code: \0", 1);
    let answer = post(&app, report).expect_status(200).json();
    assert_eq!(answer["result"], "suppressed", "{answer:#}");
}

fn kept_rows(app: &App) -> i64 {
    app.db_query_i64("SELECT count(*) FROM bounce_messages")
}

/// A logged-in admin with a cookie, enough to read pages.
struct Browser<'a> {
    app: &'a App,
    cookie: String,
}

impl<'a> Browser<'a> {
    fn login(app: &'a App) -> Browser<'a> {
        let client = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client");
        let form = client
            .get(app.url("/login"))
            .send()
            .expect("the login form");
        let cookie = cookies(&form);
        let text = form.text().expect("a page");
        let csrf = text
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a CSRF token")
            .to_owned();
        let resp = client
            .post(app.url("/login"))
            .header("cookie", &cookie)
            .form(&[
                ("csrf", csrf.as_str()),
                ("username", "admin"),
                ("password", ADMIN_PASSWORD),
                ("next", ""),
            ])
            .send()
            .expect("the login");
        assert_eq!(resp.status().as_u16(), 303, "login failed");
        let session = cookies(&resp);
        Browser {
            app,
            cookie: if session.is_empty() { cookie } else { session },
        }
    }

    fn get(&self, path: &str) -> String {
        let resp = reqwest::blocking::Client::new()
            .get(self.app.url(path))
            .header("cookie", &self.cookie)
            .send()
            .expect("a page");
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        resp.text().expect("a page")
    }
}

fn cookies(resp: &reqwest::blocking::Response) -> String {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn a_hard_bounce_after_a_full_mailbox_suppresses_for_good() {
    let app = App::start();
    setup(&app);
    let ids = sent_to(&app, &["dora@example.test"]);
    post(&app, notice("exim_mailbox_full.eml", &ids[0])).expect_status(200);
    let full = suppression(&app, "dora@example.test").expect("suppressed");
    assert_eq!(full["reason"], "mailbox_full");
    // The next message to the address bounces for good.
    let ids = sent_to(&app, &["dora2@example.test"]);
    let raw = String::from_utf8(notice("exim_user_unknown.eml", &ids[0]))
        .expect("UTF-8")
        .replace("cleo@example.test", "dora2@example.test");
    post(&app, raw).expect_status(200);
    let permanent = suppression(&app, "dora2@example.test").expect("suppressed");
    assert!(permanent["expires_at"].is_null(), "{permanent:#}");
    // Same address: a 5.1.1 replaces the full mailbox's suppression by a lasting one.
    let raw = String::from_utf8(notice("exim_user_unknown.eml", &ids[0]))
        .expect("UTF-8")
        .replace("cleo@example.test", "dora@example.test");
    let raw = raw.replace(&ids[0], full["decision_id"].as_str().expect("an id"));
    let answer = post(&app, raw).expect_status(200).json();
    assert_eq!(answer["result"], "suppressed", "{answer:#}");
    let now = suppression(&app, "dora@example.test").expect("suppressed");
    assert_eq!(now["reason"], "bounce_report", "{now:#}");
    assert!(now["expires_at"].is_null(), "{now:#}");
}
