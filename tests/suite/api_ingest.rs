//! The decision core over HTTP (issue 3, SPEC §3 and §5): every channel × every reason
//! code, address normalization, repeats in one request, existing customers, resend,
//! `Idempotency-Key`, concurrent adds, `why` (verdicts, fixes, preview) and the
//! decisions list (filters, cursor paging, CSV).
//!
//! The small helpers at the top (`project`, `add`, `why`, `counts`, …) are shared with
//! the other API modules of the suite, so every module counts rows the same way.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Barrier};

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::App;

/// Statuses a `send` decision may have when a test looks: the delivery worker runs.
pub(crate) const ON_ITS_WAY: &[&str] = &["queued", "sending", "sent"];

/// Every reason code of SPEC §3, in the order the spec lists them, plus the one for
/// inputs that are not addresses.
const REASON_ORDER: &[&str] = &[
    "outgoing_mail_disabled",
    "public_signup_disabled",
    "cc_sharing_disabled",
    "blocked_by_rule",
    "existing_customer",
    "agent_opted_out",
    "automation_created",
    "api_created",
    "invite_notification_disabled",
    "verification_emails_disabled",
    "suppressed",
];

/// The sender of the email requests whose CCs the table checks.
const CC_SENDER: &str = "cc-sender@example.com";

/// Creates or replaces project `key`: `settings` merged over a name.
pub(crate) fn project(app: &App, key: &str, settings: Value) -> Value {
    let mut body = json!({ "name": format!("Project {key}") });
    if let (Some(body), Value::Object(settings)) = (body.as_object_mut(), settings) {
        body.extend(settings);
    }
    app.put_json(&format!("/api/v1/projects/{key}"), &body)
        .expect_status(200)
        .json()
}

/// `POST path` with `body`; asserts 200 and returns the `results` array.
#[track_caller]
pub(crate) fn results(app: &App, path: &str, body: &Value) -> Vec<Value> {
    let resp = app.post_json(path, body);
    resp.expect_status(200);
    resp.json()["results"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no `results` array: {}", resp.text))
}

/// An agent add of `emails` to project `key`; the results.
#[track_caller]
pub(crate) fn add(app: &App, key: &str, emails: &[&str]) -> Vec<Value> {
    results(
        app,
        &format!("/api/v1/projects/{key}/customers"),
        &json!({ "emails": emails }),
    )
}

/// Percent-encodes one path segment or query value (everything but RFC 3986
/// unreserved characters and `@`), so raw inputs with spaces, `<>` or CR/LF survive.
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

/// `GET /api/v1/why/{input}`; asserts 200.
#[track_caller]
pub(crate) fn why(app: &App, input: &str) -> Value {
    app.get(&format!("/api/v1/why/{}", enc(input)))
        .expect_status(200)
        .json()
}

/// Every item of a paged list (`{items, next_cursor}`), following `next_cursor`.
#[track_caller]
pub(crate) fn all_items(app: &App, path: &str) -> Vec<Value> {
    let separator = if path.contains('?') { '&' } else { '?' };
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let url = match &cursor {
            Some(cursor) => format!("{path}{separator}cursor={}", enc(cursor)),
            None => path.to_owned(),
        };
        let page = app.get(&url).expect_status(200).json();
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) if !next.is_empty() => cursor = Some(next.to_owned()),
            _ => return items,
        }
    }
    panic!("{path}: more than 1000 pages");
}

/// Every decision matching `query` (e.g. `project=HELP`), newest first.
#[track_caller]
pub(crate) fn decisions(app: &App, query: &str) -> Vec<Value> {
    all_items(app, &format!("/api/v1/decisions?limit=500&{query}"))
}

/// Row counts `(decisions, suppressions, audit entries)`, by paging the lists.
#[track_caller]
pub(crate) fn counts(app: &App) -> (usize, usize, usize) {
    (
        decisions(app, "").len(),
        all_items(app, "/api/v1/suppressions?limit=500").len(),
        all_items(app, "/api/v1/audit?limit=500").len(),
    )
}

/// `POST /api/v1/suppressions`; asserts 201.
pub(crate) fn suppress(app: &App, email: &str) {
    app.post_json(
        "/api/v1/suppressions",
        &json!({ "email": email, "note": "test" }),
    )
    .expect_status(201);
}

/// `PATCH /api/v1/site {"outgoing_mail": on}`; asserts 200.
pub(crate) fn outgoing_mail(app: &App, on: bool) {
    app.patch_json("/api/v1/site", &json!({ "outgoing_mail": on }))
        .expect_status(200);
}

/// How a table row reaches mailtrail: the channels of SPEC §3, plus an agent add with
/// `"invite": false`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Via {
    Agent,
    AgentNoInvite,
    EmailRequest,
    EmailCc,
    Signup,
    Automation,
    Api,
    Resend,
}

impl Via {
    /// The channel recorded on the decision.
    fn channel(self) -> &'static str {
        match self {
            Via::Agent | Via::AgentNoInvite => "agent",
            Via::EmailRequest => "email_request",
            Via::EmailCc => "email_cc",
            Via::Signup => "signup",
            Via::Automation => "automation",
            Via::Api => "api",
            Via::Resend => "resend",
        }
    }

    /// The email kind of the channel (SPEC §3 table).
    fn email_kind(self) -> &'static str {
        match self {
            Via::Agent | Via::AgentNoInvite | Via::Resend => "invitation",
            Via::EmailRequest | Via::EmailCc | Via::Signup => "account_verification",
            Via::Automation | Via::Api => "registration",
        }
    }
}

/// Sends `input` to project `key` through `via`; returns that input's Result object.
#[track_caller]
fn call(app: &App, via: Via, key: &str, input: &str) -> Value {
    let base = format!("/api/v1/projects/{key}");
    let only = |results: Vec<Value>| {
        assert_eq!(results.len(), 1, "one input, one result: {results:#?}");
        results.into_iter().next().unwrap_or_default()
    };
    match via {
        Via::Agent => only(add(app, key, &[input])),
        Via::AgentNoInvite => only(results(
            app,
            &format!("{base}/customers"),
            &json!({ "emails": [input], "invite": false }),
        )),
        Via::EmailRequest => only(results(
            app,
            &format!("{base}/email-requests"),
            &json!({ "from": input, "subject": "Printer on fire" }),
        )),
        Via::EmailCc => {
            let results = results(
                app,
                &format!("{base}/email-requests"),
                &json!({ "from": CC_SENDER, "cc": [input], "subject": "Printer" }),
            );
            assert_eq!(results.len(), 2, "sender, then the CC: {results:#?}");
            assert_eq!(results[0]["email"], CC_SENDER, "the sender comes first");
            results[1].clone()
        }
        Via::Signup => only(results(
            app,
            &format!("{base}/signups"),
            &json!({ "email": input }),
        )),
        Via::Automation => only(results(
            app,
            &format!("{base}/automation/customers"),
            &json!({ "email": input }),
        )),
        Via::Api => only(results(
            app,
            "/api/v1/customers",
            &json!({ "email": input, "project": key }),
        )),
        Via::Resend => {
            let resp = app.send(app.request(
                Method::POST,
                &format!("{base}/customers/{}/resend", enc(input)),
            ));
            let result = resp.json();
            let expected = if result["decision"] == "send" {
                202
            } else {
                409
            };
            resp.expect_status(expected);
            result
        }
    }
}

/// One row of the decision table: how, where, what, and what must come back.
struct Row {
    via: Via,
    project: &'static str,
    input: &'static str,
    customer: &'static str,
    reasons: &'static [&'static str],
}

/// Shorthand for a [`Row`].
fn row(
    via: Via,
    project: &'static str,
    input: &'static str,
    customer: &'static str,
    reasons: &'static [&'static str],
) -> Row {
    Row {
        via,
        project,
        input,
        customer,
        reasons,
    }
}

/// Runs one row and checks its Result, the stored decision and the stored customer.
#[track_caller]
fn check(app: &App, row: &Row) {
    let label = format!("{:?} {} {:?}", row.via, row.project, row.input);
    let result = call(app, row.via, row.project, row.input);
    let invalid = row.reasons == ["invalid_address"];
    let email = (!invalid).then_some(row.input);
    let send = row.reasons.is_empty();

    // The Result object (SPEC §3).
    assert_eq!(result["email"], json!(email), "{label}: email: {result:#}");
    assert_eq!(result["input"], row.input, "{label}: input: {result:#}");
    assert_eq!(result["customer"], row.customer, "{label}: {result:#}");
    assert_eq!(
        result["email_kind"],
        row.via.email_kind(),
        "{label}: {result:#}"
    );
    assert_eq!(result["reasons"], json!(row.reasons), "{label}: {result:#}");
    assert_eq!(
        result["decision"],
        if send { "send" } else { "skip" },
        "{label}: {result:#}"
    );
    assert_eq!(
        result["status"],
        if send { "queued" } else { "skipped" },
        "{label}: {result:#}"
    );
    let message = result["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(email.unwrap_or(row.input)),
        "{label}: the message names the address: {message:?}"
    );
    let customer_id = &result["customer_id"];
    match row.customer {
        "not_created" if row.via != Via::Resend => {
            assert!(customer_id.is_null(), "{label}: {result:#}")
        }
        _ => assert!(customer_id.is_string(), "{label}: {result:#}"),
    }

    // The decision row, committed before the answer (SPEC §4 guarantees).
    let decision_id = result["decision_id"].as_str().unwrap_or_default();
    let decision = app
        .get(&format!("/api/v1/decisions/{decision_id}"))
        .expect_status(200)
        .json();
    assert_eq!(decision["project"], row.project, "{label}: {decision:#}");
    assert_eq!(
        decision["channel"],
        row.via.channel(),
        "{label}: {decision:#}"
    );
    assert_eq!(decision["email_kind"], row.via.email_kind(), "{label}");
    assert_eq!(decision["recipient"], json!(email), "{label}: {decision:#}");
    assert_eq!(decision["input"], row.input, "{label}: {decision:#}");
    assert_eq!(
        decision["reasons"],
        json!(row.reasons),
        "{label}: {decision:#}"
    );
    assert_eq!(
        &decision["customer_id"], customer_id,
        "{label}: {decision:#}"
    );
    let status = decision["status"].as_str().unwrap_or_default();
    if send {
        assert!(ON_ITS_WAY.contains(&status), "{label}: {decision:#}");
    } else {
        assert_eq!(status, "skipped", "{label}: {decision:#}");
    }

    // The customer and the membership, written in the same transaction.
    let Some(email) = email else { return };
    let answer = why(app, email);
    let customer = &answer["customer"];
    if row.customer == "not_created" {
        assert!(customer.is_null(), "{label}: no customer: {answer:#}");
        return;
    }
    assert_eq!(&customer["id"], customer_id, "{label}: {answer:#}");
    let member = customer["projects"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|m| m["key"] == row.project);
    assert!(member, "{label}: a member of {}: {answer:#}", row.project);
    if row.customer == "created" {
        assert_eq!(customer["created_via"], row.via.channel(), "{label}");
    }
}

/// The projects of the decision table, each with the settings its rows need.
fn table_projects(app: &App) {
    let good = json!(["@good\\.example$"]);
    let settings = [
        ("DEF", json!({})),
        ("PUB", json!({ "public_signup": true })),
        (
            "SHARE",
            json!({ "public_signup": true, "share_with_anyone": true }),
        ),
        ("NOTIFY", json!({ "notify_auto_created": true })),
        ("NOINV", json!({ "invite_notification": false })),
        (
            "NOVER",
            json!({ "verification_emails": false, "public_signup": true,
                    "share_with_anyone": true }),
        ),
        (
            "OFFBOTH",
            json!({ "invite_notification": false, "verification_emails": false }),
        ),
        (
            "ALLOW",
            json!({ "allow_patterns": good, "public_signup": true,
                    "share_with_anyone": true, "notify_auto_created": true }),
        ),
        ("ALLOWQ", json!({ "allow_patterns": good })),
        (
            "DENY",
            json!({ "deny_patterns": ["^spam"], "public_signup": true,
                    "share_with_anyone": true, "notify_auto_created": true }),
        ),
    ];
    for (key, settings) in settings {
        project(app, key, settings);
    }
}

#[test]
fn every_channel_records_every_reason_code_in_spec_order() {
    use Via::*;
    let app = App::start();
    table_projects(&app);
    for address in [
        "sup1@example.com",
        "sup2@example.com",
        "sup3@example.com",
        "sup4@example.com",
    ] {
        suppress(&app, address);
    }
    let created = "created";
    let existing = "existing";
    let none = "not_created";
    #[rustfmt::skip]
    let rows = [
        // agent: always creates the customer.
        row(Agent, "DEF", "a1@example.com", created, &[]),
        row(AgentNoInvite, "DEF", "a2@example.com", created, &["agent_opted_out"]),
        row(Agent, "NOINV", "a3@example.com", created, &["invite_notification_disabled"]),
        row(Agent, "NOVER", "a4@example.com", created, &["verification_emails_disabled"]),
        row(AgentNoInvite, "OFFBOTH", "a5@example.com", created,
            &["agent_opted_out", "invite_notification_disabled", "verification_emails_disabled"]),
        // Patterns apply to auto-created customers only, not to an agent's choice.
        row(Agent, "DENY", "spam-agent@example.com", created, &[]),
        row(Agent, "NOTIFY", "a1@example.com", existing, &["existing_customer"]),
        row(Agent, "DEF", "not an address", none, &["invalid_address"]),
        // email_request: the sender.
        row(EmailRequest, "DEF", "r1@example.com", none, &["public_signup_disabled"]),
        row(EmailRequest, "PUB", "r2@example.com", created, &[]),
        row(EmailRequest, "NOVER", "r3@example.com", created, &["verification_emails_disabled"]),
        row(EmailRequest, "ALLOW", "r4@bad.example", none, &["blocked_by_rule"]),
        row(EmailRequest, "ALLOW", "r5@good.example", created, &[]),
        row(EmailRequest, "DEF", "a1@example.com", existing, &["existing_customer"]),
        row(EmailRequest, "PUB", "nobody", none, &["invalid_address"]),
        // email_cc: each CC of a request.
        row(EmailCc, "DEF", "c1@example.com", none, &["public_signup_disabled", "cc_sharing_disabled"]),
        row(EmailCc, "PUB", "c2@example.com", none, &["cc_sharing_disabled"]),
        row(EmailCc, "SHARE", "c3@example.com", created, &[]),
        row(EmailCc, "NOVER", "c4@example.com", created, &["verification_emails_disabled"]),
        row(EmailCc, "DENY", "spam-cc@example.com", none, &["blocked_by_rule"]),
        row(EmailCc, "DEF", "a2@example.com", existing, &["existing_customer"]),
        row(EmailCc, "SHARE", "Dave at example", none, &["invalid_address"]),
        // signup
        row(Signup, "DEF", "s1@example.com", none, &["public_signup_disabled"]),
        row(Signup, "PUB", "s2@example.com", created, &[]),
        row(Signup, "NOVER", "s3@example.com", created, &["verification_emails_disabled"]),
        row(Signup, "DENY", "spam-signup@example.com", none, &["blocked_by_rule"]),
        row(Signup, "PUB", "a3@example.com", existing, &["existing_customer"]),
        row(Signup, "PUB", "sup2@example.com", created, &["suppressed"]),
        row(Signup, "PUB", "two@@example.com", none, &["invalid_address"]),
        // automation: registration emails; the invitation toggles do not apply.
        row(Automation, "DEF", "m1@example.com", created, &["automation_created"]),
        row(Automation, "NOTIFY", "m2@example.com", created, &[]),
        row(Automation, "ALLOW", "m3@bad.example", none, &["blocked_by_rule"]),
        row(Automation, "OFFBOTH", "m4@example.com", created, &["automation_created"]),
        row(Automation, "NOTIFY", "a1@example.com", existing, &["existing_customer"]),
        row(Automation, "DEF", "sup3@example.com", created, &["automation_created", "suppressed"]),
        row(Automation, "NOTIFY", "<>", none, &["invalid_address"]),
        // api
        row(Api, "DEF", "p1@example.com", created, &["api_created"]),
        row(Api, "NOTIFY", "p2@example.com", created, &[]),
        row(Api, "DENY", "spam-api@example.com", none, &["blocked_by_rule"]),
        row(Api, "ALLOWQ", "p3@bad.example", none, &["blocked_by_rule", "api_created"]),
        row(Api, "OFFBOTH", "p4@example.com", created, &["api_created"]),
        row(Api, "DEF", "a4@example.com", existing, &["existing_customer", "api_created"]),
        row(Api, "NOTIFY", "bob@", none, &["invalid_address"]),
        // suppressed, with everything else that applies before it.
        row(Agent, "DEF", "sup1@example.com", created, &["suppressed"]),
        row(AgentNoInvite, "OFFBOTH", "sup4@example.com", created,
            &["agent_opted_out", "invite_notification_disabled", "verification_emails_disabled",
              "suppressed"]),
        // resend: toggles, opt-out and auto-creation are ignored; suppression is not.
        row(Resend, "OFFBOTH", "a5@example.com", existing, &[]),
        row(Resend, "DEF", "a2@example.com", existing, &[]),
        row(Resend, "DEF", "m1@example.com", existing, &[]),
        row(Resend, "DEF", "sup1@example.com", existing, &["suppressed"]),
    ];
    for row in &rows {
        check(&app, row);
    }

    // Outgoing mail off: first of all reasons, for every channel, resend included.
    outgoing_mail(&app, false);
    const OFF: &str = "outgoing_mail_disabled";
    #[rustfmt::skip]
    let rows_off = [
        row(Agent, "DEF", "o1@example.com", created, &[OFF]),
        row(Agent, "DEF", "a1@example.com", existing, &[OFF, "existing_customer"]),
        row(Signup, "DEF", "o2@example.com", none, &[OFF, "public_signup_disabled"]),
        row(EmailCc, "DEF", "o3@example.com", none,
            &[OFF, "public_signup_disabled", "cc_sharing_disabled"]),
        row(EmailRequest, "PUB", "o4@example.com", created, &[OFF]),
        row(Api, "ALLOWQ", "o5@bad.example", none, &[OFF, "blocked_by_rule", "api_created"]),
        row(Automation, "NOTIFY", "o6@example.com", created, &[OFF]),
        row(AgentNoInvite, "OFFBOTH", "sup4@example.com", existing,
            &[OFF, "existing_customer", "agent_opted_out", "invite_notification_disabled",
              "verification_emails_disabled", "suppressed"]),
        row(Resend, "DEF", "a1@example.com", existing, &[OFF]),
        row(Resend, "DEF", "sup1@example.com", existing, &[OFF, "suppressed"]),
    ];
    for row in &rows_off {
        check(&app, row);
    }

    // The table covers every channel and every reason code, each list in SPEC order.
    let all: Vec<&Row> = rows.iter().chain(&rows_off).collect();
    let channels: BTreeSet<&str> = all.iter().map(|row| row.via.channel()).collect();
    assert_eq!(channels.len(), 7, "every channel: {channels:?}");
    let seen: BTreeSet<&str> = all
        .iter()
        .flat_map(|row| row.reasons.iter().copied())
        .collect();
    for code in REASON_ORDER.iter().chain(&["invalid_address"]) {
        assert!(seen.contains(code), "the table has no row for {code}");
    }
    for row in &all {
        let positions: Vec<usize> = row
            .reasons
            .iter()
            .filter_map(|r| REASON_ORDER.iter().position(|code| code == r))
            .collect();
        assert!(
            positions.is_sorted(),
            "table row out of SPEC order: {:?}",
            row.reasons
        );
    }
}

#[test]
fn addresses_are_normalized_and_display_names_stored() {
    let app = App::start();
    project(&app, "HELP", json!({ "public_signup": true }));
    let results = add(
        &app,
        "HELP",
        &["Alice <Alice@Example.COM>", "  bob@Bücher.example  "],
    );
    assert_eq!(results[0]["email"], "alice@example.com");
    assert_eq!(results[0]["input"], "Alice <Alice@Example.COM>");
    assert_eq!(results[1]["email"], "bob@xn--bcher-kva.example");
    for result in &results {
        assert_eq!(result["customer"], "created", "{result:#}");
    }

    // Look-ups use the normalized form, whatever form the caller types.
    let alice = why(&app, "ALICE@example.com");
    assert_eq!(alice["email"], "alice@example.com");
    assert_eq!(alice["customer"]["display_name"], "Alice");
    assert_eq!(alice["customer"]["id"], results[0]["customer_id"]);
    let bob = why(&app, "bob@Bücher.example");
    assert_eq!(bob["email"], "bob@xn--bcher-kva.example");
    assert_eq!(bob["customer"]["id"], results[1]["customer_id"]);
    let listed = decisions(&app, &format!("email={}", enc("Alice@EXAMPLE.com")));
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0]["recipient"], "alice@example.com");

    // Display names given as a field (signup, automation, api) are stored too.
    let signup = results_of(
        &app,
        "/api/v1/projects/HELP/signups",
        "Carol@Example.com",
        "Carol C.",
    );
    assert_eq!(signup["email"], "carol@example.com");
    assert_eq!(
        why(&app, "carol@example.com")["customer"]["display_name"],
        "Carol C."
    );
    let api = app
        .post_json(
            "/api/v1/customers",
            &json!({ "email": "Dan@Example.com", "project": "HELP", "display_name": "Dan D." }),
        )
        .expect_status(200)
        .json();
    assert_eq!(api["results"][0]["email"], "dan@example.com");
    assert_eq!(
        why(&app, "dan@example.com")["customer"]["display_name"],
        "Dan D."
    );
}

/// A one-address body (`{"email", "display_name"}`) posted to `path`; its one Result.
fn results_of(app: &App, path: &str, email: &str, display_name: &str) -> Value {
    let results = results(
        app,
        path,
        &json!({ "email": email, "display_name": display_name }),
    );
    assert_eq!(results.len(), 1, "{results:#?}");
    results[0].clone()
}

#[test]
fn raw_email_request_uses_from_and_folded_cc_with_display_names() {
    let app = App::start();
    project(
        &app,
        "HELP",
        json!({ "public_signup": true, "share_with_anyone": true }),
    );
    let message = concat!(
        "From: \"Carol Customer\" <Carol@Example.com>\r\n",
        "To: Help Desk <help@desk.example>\r\n",
        "Cc: Dave Dee <dave@example.com>,\r\n",
        " \"Eve, E.\" <EVE@example.com>,\r\n",
        "\tfrank@example.com\r\n",
        "Subject: Printer on fire\r\n",
        "Message-ID: <request-1@example.com>\r\n",
        "Date: Mon, 2 Mar 2026 10:00:00 +0000\r\n",
        "MIME-Version: 1.0\r\n",
        "Content-Type: text/plain; charset=utf-8\r\n",
        "\r\n",
        "It is still on fire.\r\n",
    );
    let resp = app.post_raw(
        "/api/v1/projects/HELP/email-requests",
        "message/rfc822",
        message,
    );
    let results = resp.expect_status(200).json()["results"].clone();
    let emails: Vec<&str> = results
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["email"].as_str())
        .collect();
    assert_eq!(
        emails,
        [
            "carol@example.com",
            "dave@example.com",
            "eve@example.com",
            "frank@example.com"
        ],
        "the sender first, then each CC in order: {results:#}"
    );
    for (i, result) in results.as_array().into_iter().flatten().enumerate() {
        assert_eq!(result["customer"], "created", "{result:#}");
        assert_eq!(result["email_kind"], "account_verification");
        assert_eq!(result["decision"], "send", "{result:#}");
        let decision = app
            .get(&format!(
                "/api/v1/decisions/{}",
                result["decision_id"].as_str().unwrap_or("")
            ))
            .json();
        let channel = if i == 0 { "email_request" } else { "email_cc" };
        assert_eq!(decision["channel"], channel, "{decision:#}");
    }
    let names = [
        ("carol@example.com", json!("Carol Customer")),
        ("dave@example.com", json!("Dave Dee")),
        ("eve@example.com", json!("Eve, E.")),
    ];
    for (email, name) in names {
        assert_eq!(
            why(&app, email)["customer"]["display_name"],
            name,
            "{email}"
        );
    }
}

#[test]
fn json_email_request_answers_sender_then_each_cc_in_order() {
    let app = App::start();
    project(&app, "HELP", json!({ "public_signup": true }));
    let results = results(
        &app,
        "/api/v1/projects/HELP/email-requests",
        &json!({ "from": "Sender <sender@example.com>",
                 "cc": ["z@example.com", "Y <y@example.com>"], "subject": "Hi" }),
    );
    let emails: Vec<&Value> = results.iter().map(|r| &r["email"]).collect();
    assert_eq!(
        emails,
        [
            &json!("sender@example.com"),
            &json!("z@example.com"),
            &json!("y@example.com")
        ]
    );
    assert_eq!(results[0]["customer"], "created");
    // public_signup alone does not let CCs in: sharing is off.
    assert_eq!(results[1]["reasons"], json!(["cc_sharing_disabled"]));
    assert_eq!(results[2]["customer"], "not_created");
}

#[test]
fn repeats_in_one_request_get_the_first_result_and_no_second_decision() {
    let app = App::start();
    project(&app, "HELP", json!({}));
    let results = add(
        &app,
        "HELP",
        &[
            "dup@example.com",
            "other@example.com",
            "Dup <DUP@Example.com>",
        ],
    );
    assert_eq!(results.len(), 3, "one result per input: {results:#?}");
    assert_eq!(results[2]["email"], "dup@example.com");
    assert_eq!(results[2]["decision_id"], results[0]["decision_id"]);
    assert_eq!(results[2]["customer_id"], results[0]["customer_id"]);
    assert_eq!(results[2]["decision"], results[0]["decision"]);
    assert_ne!(results[1]["decision_id"], results[0]["decision_id"]);
    assert_eq!(decisions(&app, "").len(), 2, "only two decisions exist");
    assert_eq!(
        why(&app, "dup@example.com")["decisions"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[test]
fn existing_customer_added_to_second_project_gets_membership_and_skip() {
    let app = App::start();
    project(&app, "FIRST", json!({}));
    project(&app, "SECOND", json!({}));
    let first = add(&app, "FIRST", &["alice@example.com"]).remove(0);
    assert_eq!(first["customer"], "created");
    assert_eq!(first["decision"], "send");
    let second = add(&app, "SECOND", &["Alice@Example.com"]).remove(0);
    assert_eq!(second["customer"], "existing", "{second:#}");
    assert_eq!(second["customer_id"], first["customer_id"]);
    assert_eq!(second["decision"], "skip");
    assert_eq!(second["reasons"], json!(["existing_customer"]));
    assert_eq!(second["status"], "skipped");
    let message = second["message"].as_str().unwrap_or_default();
    assert!(message.contains("alice@example.com"), "{message}");
    let answer = why(&app, "alice@example.com");
    let keys: Vec<&Value> = answer["customer"]["projects"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| &m["key"])
        .collect();
    assert!(
        keys.contains(&&json!("FIRST")) && keys.contains(&&json!("SECOND")),
        "{answer:#}"
    );
    assert_eq!(answer["decisions"].as_array().map(Vec::len), Some(2));
    assert_eq!(answer["decisions"][0]["project"], "SECOND", "newest first");
}

#[test]
fn agent_add_with_invite_false_creates_customer_without_invitation() {
    let app = App::start();
    project(&app, "HELP", json!({}));
    let result = results(
        &app,
        "/api/v1/projects/HELP/customers",
        &json!({ "emails": ["quiet@example.com"], "invite": false }),
    )
    .remove(0);
    assert_eq!(result["customer"], "created");
    assert_eq!(result["decision"], "skip");
    assert_eq!(result["reasons"], json!(["agent_opted_out"]));
    let answer = why(&app, "quiet@example.com");
    assert_eq!(answer["verdict"]["code"], "skipped");
    assert!(has_fix(&answer, "resend", "HELP"), "{answer:#}");
}

#[test]
fn resend_ignores_toggles_but_not_outgoing_mail_or_suppression() {
    let app = App::start();
    project(
        &app,
        "HELP",
        json!({ "invite_notification": false, "verification_emails": false }),
    );
    let added = add(&app, "HELP", &["member@example.com"]).remove(0);
    assert_eq!(
        added["reasons"],
        json!([
            "invite_notification_disabled",
            "verification_emails_disabled"
        ])
    );
    let path = "/api/v1/projects/HELP/customers/member@example.com/resend";
    let queued = app.post_json(path, &json!({}));
    let queued = queued.expect_status(202).json();
    assert_eq!(queued["decision"], "send");
    assert_eq!(queued["reasons"], json!([]));
    assert_eq!(queued["status"], "queued");
    assert_eq!(queued["email_kind"], "invitation");
    assert_eq!(queued["customer_id"], added["customer_id"]);
    let decision = app
        .get(&format!(
            "/api/v1/decisions/{}",
            queued["decision_id"].as_str().unwrap_or("")
        ))
        .expect_status(200)
        .json();
    assert_eq!(decision["channel"], "resend");

    suppress(&app, "member@example.com");
    let blocked = app.post_json(path, &json!({}));
    let blocked = blocked.expect_status(409).json();
    assert_eq!(blocked["reasons"], json!(["suppressed"]));
    assert_eq!(blocked["status"], "skipped");
    // The blocked attempt is recorded too (SPEC §9).
    app.get(&format!(
        "/api/v1/decisions/{}",
        blocked["decision_id"].as_str().unwrap_or("")
    ))
    .expect_status(200);

    outgoing_mail(&app, false);
    let blocked = app.post_json(path, &json!({})).json();
    assert_eq!(
        blocked["reasons"],
        json!(["outgoing_mail_disabled", "suppressed"])
    );
    assert_eq!(decisions(&app, "channel=resend").len(), 3);
}

#[test]
fn resend_to_a_non_member_is_404_and_records_nothing() {
    let app = App::start();
    project(&app, "HELP", json!({}));
    project(&app, "OTHER", json!({}));
    add(&app, "OTHER", &["elsewhere@example.com"]);
    let before = decisions(&app, "").len();
    for path in [
        "/api/v1/projects/HELP/customers/stranger@example.com/resend",
        "/api/v1/projects/HELP/customers/elsewhere@example.com/resend",
        "/api/v1/projects/NOPE/customers/elsewhere@example.com/resend",
    ] {
        let resp = app.post_json(path, &json!({}));
        resp.expect_status(404);
        assert_eq!(
            resp.json()["error"]["code"].as_str().map(str::is_empty),
            Some(false)
        );
    }
    assert_eq!(decisions(&app, "").len(), before);
}

#[test]
fn idempotency_key_repeat_returns_first_answer_and_writes_nothing() {
    let app = App::start();
    project(&app, "HELP", json!({}));
    let body = json!({ "emails": ["once@example.com", "twice@example.com"] });
    let post = |key: &str| {
        let request = app
            .request(Method::POST, "/api/v1/projects/HELP/customers")
            .header("Idempotency-Key", key)
            .json(&body);
        app.send(request)
    };
    let first = post("key-1");
    first.expect_status(200);
    let after_first = counts(&app);
    let repeat = post("key-1");
    repeat.expect_status(200);
    assert_eq!(repeat.json(), first.json(), "the first answer, again");
    assert_eq!(counts(&app), after_first, "a repeat writes nothing");
    assert_eq!(after_first.0, 2);

    // Another key is another request: the customers now exist.
    let other = post("key-2").json();
    assert_eq!(other["results"][0]["customer"], "existing");
    assert_eq!(decisions(&app, "").len(), 4);
}

#[test]
fn concurrent_adds_of_one_new_address_create_one_customer() {
    let app = App::start();
    project(&app, "HELP", json!({}));
    const THREADS: usize = 20;
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let api = app.api().clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let input = if i % 2 == 0 {
                    "race@example.com"
                } else {
                    "Race <RACE@example.com>"
                };
                let resp = api.post_json(
                    "/api/v1/projects/HELP/customers",
                    &json!({ "emails": [input] }),
                );
                resp.expect_status(200);
                resp.json()["results"][0].clone()
            })
        })
        .collect();
    let results: Vec<Value> = handles
        .into_iter()
        .map(|h| h.join().expect("a client thread panicked"))
        .collect();
    let ids: HashSet<&str> = results
        .iter()
        .filter_map(|r| r["customer_id"].as_str())
        .collect();
    assert_eq!(ids.len(), 1, "one customer id: {results:#?}");
    let created = results
        .iter()
        .filter(|r| r["customer"] == "created")
        .count();
    assert_eq!(created, 1, "exactly one add created it: {results:#?}");
    let answer = why(&app, "race@example.com");
    assert_eq!(answer["customer"]["id"].as_str(), ids.into_iter().next());
}

/// Whether `why` offers the fix `action` on `target`.
fn has_fix(answer: &Value, action: &str, target: &str) -> bool {
    answer["fixes"].as_array().into_iter().flatten().any(|fix| {
        fix["action"] == action
            && fix["target"] == target
            && fix["description"].as_str().is_some_and(|d| !d.is_empty())
    })
}

/// The preview entry of project `key` in a `why` answer.
fn preview<'a>(answer: &'a Value, key: &str) -> &'a Value {
    answer["preview"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["project"] == key)
        .unwrap_or_else(|| panic!("no preview for {key}: {answer:#}"))
}

#[test]
fn why_of_an_unknown_address_is_no_record() {
    let app = App::start();
    let answer = why(&app, "never@example.com");
    assert_eq!(answer["email"], "never@example.com");
    assert_eq!(answer["verdict"]["code"], "no_record");
    assert!(
        answer["verdict"]["summary"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert!(answer["customer"].is_null());
    assert!(answer["suppression"].is_null());
    assert_eq!(answer["decisions"], json!([]));
    assert_eq!(answer["site"]["outgoing_mail"], true);
}

#[test]
fn why_of_a_send_is_on_its_way_with_no_fix_needed() {
    let app = App::start();
    project(&app, "HELP", json!({}));
    add(&app, "HELP", &["fine@example.com"]);
    let answer = why(&app, "fine@example.com");
    let code = answer["verdict"]["code"].as_str().unwrap_or_default();
    assert!(["queued", "sent"].contains(&code), "{answer:#}");
    assert!(!has_fix(&answer, "unsuppress", "fine@example.com"));
    let decision = &answer["decisions"][0];
    for field in [
        "id",
        "created_at",
        "project",
        "recipient",
        "input",
        "customer_id",
        "channel",
        "email_kind",
        "decision",
        "reasons",
        "status",
        "status_reason",
        "attempts_count",
        "next_attempt_at",
        "last_reply",
        "sent_at",
        "message_id",
    ] {
        assert!(
            decision.get(field).is_some(),
            "decision lacks {field}: {decision:#}"
        );
    }
}

#[test]
fn why_of_a_suppressed_address_offers_unsuppress() {
    let app = App::start();
    project(&app, "HELP", json!({}));
    suppress(&app, "gone@example.com");
    add(&app, "HELP", &["gone@example.com"]);
    let answer = why(&app, "Gone@Example.com");
    assert_eq!(answer["verdict"]["code"], "suppressed", "{answer:#}");
    assert_eq!(answer["suppression"]["reason"], "manual");
    assert!(
        has_fix(&answer, "unsuppress", "gone@example.com"),
        "{answer:#}"
    );
    let resend = &preview(&answer, "HELP")["resend"];
    assert_eq!(resend["decision"], "skip");
    assert_eq!(resend["reasons"], json!(["suppressed"]));
}

#[test]
fn why_names_the_project_toggle_and_preview_follows_it() {
    let app = App::start();
    project(&app, "HELP", json!({ "invite_notification": false }));
    add(&app, "HELP", &["toggle@example.com"]);
    let answer = why(&app, "toggle@example.com");
    assert_eq!(answer["verdict"]["code"], "skipped");
    let summary = answer["verdict"]["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("toggle@example.com"), "{summary}");
    assert!(
        has_fix(
            &answer,
            "enable_project_setting",
            "HELP.invite_notification"
        ),
        "{answer:#}"
    );
    assert!(has_fix(&answer, "resend", "HELP"), "{answer:#}");
    let before = app
        .get("/api/v1/why/toggle@example.com?project=HELP")
        .expect_status(200)
        .json();
    let entry = preview(&before, "HELP");
    assert_eq!(entry["member"], true);
    assert_eq!(entry["project_name"], "Project HELP");
    assert_eq!(
        entry["resend"]["decision"], "send",
        "a resend ignores toggles"
    );
    assert_eq!(
        entry["agent_add"]["reasons"],
        json!(["existing_customer", "invite_notification_disabled"])
    );

    app.patch_json(
        "/api/v1/projects/HELP",
        &json!({ "invite_notification": true }),
    )
    .expect_status(200);
    let after = app
        .get("/api/v1/why/toggle@example.com?project=HELP")
        .expect_status(200)
        .json();
    assert_eq!(
        preview(&after, "HELP")["agent_add"]["reasons"],
        json!(["existing_customer"])
    );
    assert!(
        !has_fix(&after, "enable_project_setting", "HELP.invite_notification"),
        "the toggle is on again: {after:#}"
    );
    // A stranger is no member: no resend preview, an agent add would send.
    let stranger = app
        .get("/api/v1/why/stranger@example.com?project=HELP")
        .expect_status(200)
        .json();
    let entry = preview(&stranger, "HELP");
    assert_eq!(entry["member"], false);
    assert!(entry["resend"].is_null());
    assert_eq!(entry["agent_add"]["decision"], "send");
    assert_eq!(
        app.get("/api/v1/why/x@example.com?project=NOPE").status,
        404
    );
}

#[test]
fn why_offers_outgoing_mail_when_the_site_switch_is_off() {
    let app = App::start();
    project(&app, "HELP", json!({}));
    outgoing_mail(&app, false);
    add(&app, "HELP", &["paused@example.com"]);
    let answer = why(&app, "paused@example.com");
    assert_eq!(answer["site"]["outgoing_mail"], false);
    assert_eq!(answer["verdict"]["code"], "skipped");
    assert_eq!(
        answer["decisions"][0]["reasons"],
        json!(["outgoing_mail_disabled"])
    );
    assert!(
        has_fix(&answer, "enable_outgoing_mail", "site"),
        "{answer:#}"
    );
    let resend = &preview(&answer, "HELP")["resend"];
    assert_eq!(resend["reasons"], json!(["outgoing_mail_disabled"]));
}

#[test]
fn why_finds_an_invalid_input_and_offers_fix_address() {
    let app = App::start();
    project(&app, "HELP", json!({}));
    let input = "Alice at example dot com";
    let result = add(&app, "HELP", &[input]).remove(0);
    assert_eq!(result["email"], Value::Null);
    assert_eq!(result["customer"], "not_created");
    assert_eq!(result["reasons"], json!(["invalid_address"]));
    assert_eq!(result["status"], "skipped");
    let answer = why(&app, input);
    assert_eq!(answer["verdict"]["code"], "skipped", "{answer:#}");
    assert_eq!(answer["decisions"][0]["id"], result["decision_id"]);
    assert!(
        answer["fixes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|fix| fix["action"] == "fix_address"),
        "{answer:#}"
    );
}

#[test]
fn decisions_list_filters_by_every_field() {
    let app = App::start();
    project(&app, "ONE", json!({}));
    project(&app, "TWO", json!({}));
    add(&app, "ONE", &["d1@example.com"]);
    results(
        &app,
        "/api/v1/projects/ONE/customers",
        &json!({ "emails": ["d2@example.com"], "invite": false }),
    );
    results(
        &app,
        "/api/v1/projects/TWO/signups",
        &json!({ "email": "d3@example.com" }),
    );
    results(
        &app,
        "/api/v1/projects/TWO/automation/customers",
        &json!({ "email": "d4@example.com" }),
    );
    let recipients = |query: &str| -> Vec<String> {
        let mut found: Vec<String> = decisions(&app, query)
            .iter()
            .map(|d| d["recipient"].as_str().unwrap_or("").to_owned())
            .collect();
        found.sort();
        found
    };
    assert_eq!(
        recipients(""),
        [
            "d1@example.com",
            "d2@example.com",
            "d3@example.com",
            "d4@example.com"
        ]
    );
    assert_eq!(recipients("email=D1%40example.com"), ["d1@example.com"]);
    assert_eq!(
        recipients("project=TWO"),
        ["d3@example.com", "d4@example.com"]
    );
    assert_eq!(
        recipients("status=skipped"),
        ["d2@example.com", "d3@example.com", "d4@example.com"]
    );
    assert_eq!(recipients("reason=agent_opted_out"), ["d2@example.com"]);
    assert_eq!(recipients("channel=signup"), ["d3@example.com"]);
    assert_eq!(
        recipients("channel=automation&project=ONE"),
        Vec::<String>::new()
    );
    assert_eq!(recipients("since=2000-01-01T00:00:00Z").len(), 4);
    assert_eq!(recipients("until=2000-01-01T00:00:00Z").len(), 0);
    assert_eq!(recipients("since=2999-01-01T00:00:00Z").len(), 0);
    assert_eq!(
        recipients("since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z").len(),
        4
    );
}

#[test]
fn decisions_cursor_pages_do_not_overlap_and_cover_all() {
    let app = App::start();
    project(&app, "HELP", json!({}));
    for i in 0..5 {
        add(&app, "HELP", &[&format!("page{i}@example.com")]);
    }
    let mut seen = Vec::new();
    let mut url = "/api/v1/decisions?limit=2".to_owned();
    let mut sizes = Vec::new();
    loop {
        let page = app.get(&url).expect_status(200).json();
        let items = page["items"].as_array().cloned().unwrap_or_default();
        sizes.push(items.len());
        seen.extend(
            items
                .iter()
                .map(|d| d["id"].as_str().unwrap_or("").to_owned()),
        );
        let created: Vec<&str> = items
            .iter()
            .filter_map(|d| d["created_at"].as_str())
            .collect();
        assert!(
            created.windows(2).all(|w| w[0] >= w[1]),
            "newest first: {created:?}"
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => url = format!("/api/v1/decisions?limit=2&cursor={}", enc(cursor)),
            None => break,
        }
        assert!(sizes.len() < 10, "paging does not end: {sizes:?}");
    }
    assert_eq!(sizes, [2, 2, 1]);
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 5, "no overlap: {seen:?}");
    let all: HashSet<String> = decisions(&app, "")
        .iter()
        .map(|d| d["id"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(all, seen.into_iter().collect());
}

#[test]
fn decisions_as_csv_have_a_header_row_and_one_row_each() {
    let app = App::start();
    project(&app, "HELP", json!({}));
    project(&app, "OTHER", json!({}));
    add(
        &app,
        "HELP",
        &["csv1@example.com", "=cmd|' /C calc'!A0", "csv3@example.com"],
    );
    add(&app, "OTHER", &["csv4@example.com"]);
    let csv = |query: &str| {
        let request = app
            .request(Method::GET, &format!("/api/v1/decisions{query}"))
            .header("Accept", "text/csv");
        let resp = app.send(request);
        resp.expect_status(200);
        let content_type = resp.header("content-type").unwrap_or_default().to_owned();
        assert!(content_type.starts_with("text/csv"), "{content_type}");
        resp.text
    };
    let text = csv("");
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 5, "header + 4 rows:\n{text}");
    for column in ["id", "recipient", "reasons", "status"] {
        assert!(
            lines[0].split(',').any(|c| c == column),
            "header: {}",
            lines[0]
        );
    }
    assert!(text.contains("csv1@example.com"));
    assert!(
        !text.contains("\n=cmd") && !text.contains(",=cmd"),
        "formula cells are defused:\n{text}"
    );
    let only_other = csv("?project=OTHER");
    assert_eq!(
        only_other.lines().filter(|l| !l.is_empty()).count(),
        2,
        "{only_other}"
    );
}

#[test]
fn decision_by_id_has_attempts_and_unknown_id_is_404() {
    let app = App::start();
    project(&app, "HELP", json!({}));
    let result = add(&app, "HELP", &["byid@example.com"]).remove(0);
    let id = result["decision_id"].as_str().unwrap_or_default();
    let decision = app
        .get(&format!("/api/v1/decisions/{id}"))
        .expect_status(200)
        .json();
    assert_eq!(decision["id"], id);
    assert_eq!(decision["recipient"], "byid@example.com");
    assert!(decision["attempts"].is_array(), "{decision:#}");
    for unknown in [
        "00000000-0000-0000-0000-000000000000",
        "nope",
        &"x".repeat(500),
    ] {
        let resp = app.get(&format!("/api/v1/decisions/{unknown}"));
        resp.expect_status(404);
        assert_eq!(resp.json()["error"]["code"], "not_found");
    }
}

#[test]
fn resend_skipped_requeues_invitations_skipped_while_outgoing_mail_was_off() {
    let app = App::start();
    project(&app, "HELP", json!({}));
    outgoing_mail(&app, false);
    add(&app, "HELP", &["later1@example.com", "later2@example.com"]);
    suppress(&app, "later2@example.com");
    outgoing_mail(&app, true);
    let audit_before = all_items(&app, "/api/v1/audit?limit=500").len();
    let resp = app.post_json(
        "/api/v1/resend-skipped",
        &json!({ "reason": "outgoing_mail_disabled",
                 "since": "2000-01-01T00:00:00Z", "until": "2999-01-01T00:00:00Z" }),
    );
    let answer = resp.expect_status(200).json();
    assert_eq!(answer["queued"], 1, "{answer:#}");
    assert_eq!(answer["still_blocked"]["suppressed"], 1, "{answer:#}");
    let resends = decisions(&app, "channel=resend");
    assert_eq!(resends.len(), 2, "{resends:#?}");
    assert!(all_items(&app, "/api/v1/audit?limit=500").len() > audit_before);
}
