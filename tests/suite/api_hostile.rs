//! Hostile input (issue 3, SPEC §5 "Bad input never yields a 500, never a partial
//! write"): every case runs through [`hostile`], which counts rows before, sends,
//! checks the status and the error shape, and counts again.

use std::time::Duration;

use reqwest::Method;
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::{Value, json};

use super::api_ingest::{add, counts, decisions, enc, project, why};
use crate::common::{ADMIN_TOKEN, App, Resp};

/// One hostile request and the statuses it may get.
struct Case {
    /// What the case is, for failure messages.
    label: &'static str,
    method: Method,
    path: String,
    /// `None` sends no Content-Type.
    content_type: Option<&'static str>,
    body: Vec<u8>,
    /// Extra headers.
    headers: Vec<(&'static str, String)>,
    /// The statuses that are right; never a 5xx.
    expected: &'static [u16],
}

/// A POST of `body` as `application/json` to `path`.
fn json_case(
    label: &'static str,
    path: &str,
    body: impl Into<Vec<u8>>,
    expected: &'static [u16],
) -> Case {
    Case {
        label,
        method: Method::POST,
        path: path.to_owned(),
        content_type: Some("application/json"),
        body: body.into(),
        headers: Vec::new(),
        expected,
    }
}

/// A GET of `path`.
fn get_case(label: &'static str, path: &str, expected: &'static [u16]) -> Case {
    Case {
        label,
        method: Method::GET,
        path: path.to_owned(),
        content_type: None,
        body: Vec::new(),
        headers: Vec::new(),
        expected,
    }
}

/// Sends `case`, asserting the status, the error JSON of SPEC §5 for an error, and
/// that the row counts are unchanged.
#[track_caller]
fn hostile(app: &App, case: Case) {
    let before = counts(app);
    let label = case.label;
    let resp = send_alone(app, case.method.clone(), &case.path, |mut request| {
        if let Some(content_type) = case.content_type {
            request = request.header("Content-Type", content_type);
        }
        for (name, value) in &case.headers {
            request = request.header(*name, value.as_str());
        }
        request.body(case.body)
    });
    let shown: String = resp.text.chars().take(500).collect();
    assert!(resp.status < 500, "{label}: a 5xx: {} {shown}", resp.status);
    assert!(
        case.expected.contains(&resp.status),
        "{label}: expected one of {:?}, got {}: {shown}",
        case.expected,
        resp.status
    );
    if resp.status >= 400 {
        let body: Value = serde_json::from_str(&resp.text)
            .unwrap_or_else(|e| panic!("{label}: error body is not JSON ({e}): {shown}"));
        let code = body["error"]["code"].as_str().unwrap_or_default();
        assert!(
            !code.is_empty() && code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "{label}: error.code: {shown}"
        );
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{label}: error.message: {shown}");
        assert!(
            message.len() < 2000,
            "{label}: the message does not echo the input"
        );
        if resp.status == 422 {
            assert!(
                body["error"]["field"].is_string(),
                "{label}: a 422 names its field: {shown}"
            );
        }
    }
    assert_eq!(counts(app), before, "{label}: the row counts changed");
}

/// Sends one request with the admin token on a connection of its own. A server that
/// answers 413 before reading a whole body closes that connection; on the shared pool
/// the next request of the test could pick it up and fail for no fault of the server.
fn send_alone(
    app: &App,
    method: Method,
    path: &str,
    build: impl FnOnce(RequestBuilder) -> RequestBuilder,
) -> Resp {
    let client = Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("building a reqwest client");
    let request = build(
        client
            .request(method, app.url(path))
            .bearer_auth(ADMIN_TOKEN),
    );
    let response = request
        .send()
        .unwrap_or_else(|e| panic!("{path}: no answer: {e}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response
        .text()
        .unwrap_or_else(|e| panic!("{path}: reading the HTTP {status} body: {e}"));
    Resp {
        status,
        headers,
        text,
    }
}

/// `{"emails": [...]}` with `n` distinct addresses.
fn many_addresses(n: usize) -> Vec<u8> {
    let emails: Vec<String> = (0..n).map(|i| format!("many{i}@example.com")).collect();
    serde_json::to_vec(&json!({ "emails": emails })).unwrap_or_default()
}

/// A JSON value nested `depth` arrays deep, inside `{"emails": ...}`.
fn nested(depth: usize) -> Vec<u8> {
    format!("{{\"emails\": {}{}}}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
}

/// A raw message of about `size` bytes.
fn raw_message(size: usize) -> Vec<u8> {
    let mut message = b"From: big@example.com\r\nSubject: big\r\n\r\n".to_vec();
    let line = b"0123456789012345678901234567890123456789012345678901234567890123456789\r\n";
    while message.len() < size {
        message.extend_from_slice(line);
    }
    message
}

#[test]
fn hostile_bodies_are_refused_without_a_write() {
    let app = App::start();
    project(&app, "HELP", json!({ "public_signup": true }));
    add(&app, "HELP", &["seed@example.com"]);
    let customers = "/api/v1/projects/HELP/customers";
    let signups = "/api/v1/projects/HELP/signups";
    let requests = "/api/v1/projects/HELP/email-requests";

    let big_address = format!("{}@example.com", "a".repeat(1536 * 1024));
    let cases = vec![
        json_case(
            "1.5 MiB JSON",
            customers,
            serde_json::to_vec(&json!({ "emails": [big_address] })).unwrap_or_default(),
            &[413],
        ),
        json_case(
            "JSON nested 10,000 deep",
            customers,
            nested(10_000),
            &[400, 422],
        ),
        json_case(
            "top-level array nested 10,000 deep",
            customers,
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
            &[400, 422],
        ),
        json_case(
            "malformed JSON",
            customers,
            "{\"emails\": [\"a@example.com\"",
            &[400],
        ),
        json_case("empty body", customers, "", &[400]),
        json_case(
            "numbers for strings",
            customers,
            r#"{"emails": [1, 2]}"#,
            &[422],
        ),
        json_case(
            "a string for the list",
            customers,
            r#"{"emails": "a@example.com"}"#,
            &[422],
        ),
        json_case(
            "an object in the list",
            customers,
            r#"{"emails": [{"a": "b"}]}"#,
            &[422],
        ),
        json_case(
            "invite as a string",
            customers,
            r#"{"emails": ["a@example.com"], "invite": "no"}"#,
            &[422],
        ),
        json_case(
            "unknown field",
            customers,
            r#"{"emails": ["a@example.com"], "bcc": "x@example.com"}"#,
            &[422],
        ),
        json_case("missing field", customers, "{}", &[422]),
        json_case("1,001 addresses", customers, many_addresses(1001), &[422]),
        json_case("empty list", customers, r#"{"emails": []}"#, &[422]),
        json_case("a JSON array", customers, r#"["a@example.com"]"#, &[422]),
        json_case("null", customers, "null", &[422]),
        json_case("a JSON string", customers, r#""a@example.com""#, &[422]),
        json_case(
            "NUL byte outside a string",
            customers,
            b"{\"emails\": [\"a@example.com\"]\x00}".to_vec(),
            &[400],
        ),
        json_case(
            "invalid UTF-8",
            customers,
            b"{\"emails\": [\"\xff\xfe@example.com\"]}".to_vec(),
            &[400],
        ),
        json_case(
            "lone surrogate escape",
            customers,
            r#"{"emails": ["\udc00@example.com"]}"#,
            &[400, 422],
        ),
        json_case(
            "CR/LF in a display_name",
            signups,
            r#"{"email": "ok@example.com", "display_name": "Bob\r\nBcc: x@example.com"}"#,
            &[422],
        ),
        json_case(
            "NUL in a display_name",
            signups,
            r#"{"email": "ok@example.com", "display_name": "Bob\u0000"}"#,
            &[422],
        ),
        json_case(
            "10,000-char display_name",
            signups,
            serde_json::to_vec(
                &json!({ "email": "ok@example.com", "display_name": "n".repeat(10_000) }),
            )
            .unwrap_or_default(),
            &[422],
        ),
        json_case("email as a number", signups, r#"{"email": 5}"#, &[422]),
        json_case(
            "CR/LF in a subject",
            requests,
            r#"{"from": "ok@example.com", "subject": "Hi\r\nBcc: x@example.com"}"#,
            &[422],
        ),
        json_case(
            "cc as a string",
            requests,
            r#"{"from": "ok@example.com", "cc": "x@example.com"}"#,
            &[422],
        ),
        json_case(
            "1,001 CCs",
            requests,
            serde_json::to_vec(
                &json!({ "from": "ok@example.com", "cc": vec!["c@example.com"; 1001] }),
            )
            .unwrap_or_default(),
            &[422],
        ),
        json_case(
            "api: unknown project",
            "/api/v1/customers",
            r#"{"email": "ok@example.com", "project": "NOPE"}"#,
            &[422],
        ),
        json_case(
            "api: project as a number",
            "/api/v1/customers",
            r#"{"email": "ok@example.com", "project": 7}"#,
            &[422],
        ),
        json_case(
            "api: bad project key",
            "/api/v1/customers",
            r#"{"email": "ok@example.com", "project": "lower"}"#,
            &[422],
        ),
        json_case(
            "unknown project in the path",
            "/api/v1/projects/NOPE/customers",
            r#"{"emails": ["ok@example.com"]}"#,
            &[404],
        ),
        json_case(
            "bad project key in the path",
            "/api/v1/projects/lower/customers",
            r#"{"emails": ["ok@example.com"]}"#,
            &[404],
        ),
        json_case(
            "NUL in the path key",
            "/api/v1/projects/HE%00LP/customers",
            r#"{"emails": ["ok@example.com"]}"#,
            &[404],
        ),
        json_case(
            "suppression: unknown field",
            "/api/v1/suppressions",
            r#"{"email": "x@example.com", "reason": "complaint"}"#,
            &[422],
        ),
        json_case(
            "suppression: NUL in the note",
            "/api/v1/suppressions",
            r#"{"email": "x@example.com", "note": "a\u0000b"}"#,
            &[422],
        ),
        json_case(
            "bulk-remove without a filter",
            "/api/v1/suppressions/bulk-remove",
            r#"{"note": "x"}"#,
            &[422],
        ),
        json_case(
            "bulk-remove without a note",
            "/api/v1/suppressions/bulk-remove",
            r#"{"reason": "manual"}"#,
            &[422],
        ),
    ];
    for case in cases {
        hostile(&app, case);
    }

    let typed = |label, content_type: Option<&'static str>, expected: &'static [u16]| Case {
        label,
        method: Method::POST,
        path: customers.to_owned(),
        content_type,
        body: br#"{"emails": ["typed@example.com"]}"#.to_vec(),
        headers: Vec::new(),
        expected,
    };
    hostile(&app, typed("text/plain", Some("text/plain"), &[415]));
    hostile(&app, typed("no Content-Type", None, &[415]));
    hostile(
        &app,
        typed(
            "form encoded",
            Some("application/x-www-form-urlencoded"),
            &[415],
        ),
    );
    hostile(
        &app,
        typed(
            "message/rfc822 to an agent add",
            Some("message/rfc822"),
            &[415],
        ),
    );

    let raw = |label, body: Vec<u8>, expected: &'static [u16]| Case {
        label,
        method: Method::POST,
        path: requests.to_owned(),
        content_type: Some("message/rfc822"),
        body,
        headers: Vec::new(),
        expected,
    };
    hostile(
        &app,
        raw("11 MiB raw message", raw_message(11 << 20), &[413]),
    );
    hostile(
        &app,
        raw(
            "raw message without From",
            b"Subject: hi\r\n\r\nbody\r\n".to_vec(),
            &[400, 422],
        ),
    );
    hostile(
        &app,
        raw("raw message of binary noise", vec![0xff; 4096], &[400, 422]),
    );
    hostile(
        &app,
        Case {
            content_type: Some("text/plain"),
            ..raw(
                "email request as text/plain",
                b"From: a@example.com\r\n\r\n".to_vec(),
                &[415],
            )
        },
    );

    let with_key = |label, key: String| Case {
        headers: vec![("Idempotency-Key", key)],
        ..json_case(
            label,
            customers,
            r#"{"emails": ["keyed@example.com"]}"#,
            &[422],
        )
    };
    hostile(&app, with_key("300-char Idempotency-Key", "k".repeat(300)));

    let put = |label, path: &str, body: String| Case {
        method: Method::PUT,
        ..json_case(label, path, body, &[422])
    };
    hostile(
        &app,
        put(
            "PUT project key bad-key",
            "/api/v1/projects/bad-key",
            r#"{"name": "x"}"#.into(),
        ),
    );
    hostile(
        &app,
        put(
            "PUT project key too long",
            &format!("/api/v1/projects/{}", "A".repeat(17)),
            r#"{"name": "x"}"#.into(),
        ),
    );
    hostile(
        &app,
        put(
            "PUT project name with CR/LF",
            "/api/v1/projects/NEWKEY",
            r#"{"name": "a\r\nb"}"#.into(),
        ),
    );
    hostile(
        &app,
        put(
            "PUT project 10,000-char name",
            "/api/v1/projects/NEWKEY",
            format!("{{\"name\": \"{}\"}}", "n".repeat(10_000)),
        ),
    );

    let wrong_method = Case {
        method: Method::DELETE,
        ..get_case("DELETE on an add", customers, &[404, 405])
    };
    hostile(&app, wrong_method);
    hostile(
        &app,
        get_case("unknown route", "/api/v1/nothing-here", &[404]),
    );
    assert_eq!(
        decisions(&app, "").len(),
        1,
        "only the seed decision exists"
    );
}

#[test]
fn hostile_queries_are_422_without_a_write() {
    let app = App::start();
    project(&app, "HELP", json!({}));
    add(&app, "HELP", &["seed@example.com"]);
    let cases = [
        ("limit=0", "/api/v1/decisions?limit=0", &[422][..]),
        ("limit=501", "/api/v1/decisions?limit=501", &[422]),
        ("limit=abc", "/api/v1/decisions?limit=abc", &[422]),
        ("limit=-1", "/api/v1/decisions?limit=-1", &[422]),
        ("limit=1e3", "/api/v1/decisions?limit=1e3", &[422]),
        (
            "since=yesterday",
            "/api/v1/decisions?since=yesterday",
            &[422],
        ),
        (
            "until=2026-13-45",
            "/api/v1/decisions?until=2026-13-45T00:00:00Z",
            &[422],
        ),
        ("unknown reason", "/api/v1/decisions?reason=bored", &[422]),
        ("unknown status", "/api/v1/decisions?status=lost", &[422]),
        (
            "unknown channel",
            "/api/v1/decisions?channel=pigeon",
            &[422],
        ),
        (
            "forged cursor",
            "/api/v1/decisions?cursor=%27%3B%20DROP%20TABLE%20decisions",
            &[422],
        ),
        (
            "suppressions limit=0",
            "/api/v1/suppressions?limit=0",
            &[422],
        ),
        (
            "suppressions forged cursor",
            "/api/v1/suppressions?cursor=zzz",
            &[422],
        ),
        ("audit limit=999", "/api/v1/audit?limit=999", &[422]),
        ("stats window=1y", "/api/v1/stats?window=1y", &[422]),
        (
            "why: unknown project",
            "/api/v1/why/a@example.com?project=NOPE",
            &[404],
        ),
        (
            "why: SQL in the address",
            "/api/v1/why/%27%20OR%201%3D1%20--",
            &[200],
        ),
        (
            "decisions: SQL in email",
            "/api/v1/decisions?email=%27%20OR%201%3D1%20--",
            &[200],
        ),
    ];
    for (label, path, expected) in cases {
        hostile(&app, get_case(label, path, expected));
    }
    let long = format!(
        "/api/v1/why/{}",
        enc(&format!("{}@example.com", "a".repeat(10_000)))
    );
    hostile(
        &app,
        get_case("why of a 10,000-char address", &long, &[200, 404, 414, 422]),
    );
    let injected = app
        .get("/api/v1/decisions?email=%27%20OR%201%3D1%20--")
        .json();
    assert_eq!(injected["items"], json!([]), "a quote matches nothing");
}

#[test]
fn crlf_in_an_address_is_a_per_address_invalid_result() {
    let app = App::start();
    project(&app, "HELP", json!({}));
    let before = counts(&app);
    let inputs = [
        "evil@example.com\r\nBcc: victim@example.com",
        "evil2@example.com\nRCPT TO:<victim@example.com>",
        "nul\u{0}@example.com",
    ];
    for input in inputs {
        let results = add(&app, "HELP", &[input]);
        assert_eq!(results.len(), 1);
        let result = &results[0];
        assert_eq!(result["email"], Value::Null, "{input:?}: {result:#}");
        assert_eq!(result["customer"], "not_created");
        assert!(result["customer_id"].is_null());
        assert_eq!(result["reasons"], json!(["invalid_address"]));
        assert_eq!(result["status"], "skipped");
    }
    let after = counts(&app);
    assert_eq!(
        after.0,
        before.0 + inputs.len(),
        "exactly one skip decision each"
    );
    assert_eq!((after.1, after.2), (before.1, before.2));
    for address in [
        "evil@example.com",
        "victim@example.com",
        "evil2@example.com",
    ] {
        let answer = why(&app, address);
        assert!(
            answer["customer"].is_null(),
            "no customer for {address}: {answer:#}"
        );
        assert_eq!(
            answer["decisions"],
            json!([]),
            "{address} never became a recipient"
        );
    }
    for decision in decisions(&app, "") {
        assert!(decision["recipient"].is_null(), "{decision:#}");
    }
}

#[test]
fn a_10000_char_address_is_invalid_and_stored_cut_to_320_bytes() {
    let app = App::start();
    project(&app, "HELP", json!({}));
    let huge = format!("{}@example.com", "é".repeat(10_000));
    let results = add(&app, "HELP", &[&huge, "fine@example.com"]);
    assert_eq!(results[0]["reasons"], json!(["invalid_address"]));
    assert_eq!(results[0]["customer"], "not_created");
    assert_eq!(results[1]["customer"], "created", "valid ones proceed");
    let message = results[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.len() < 2000,
        "the message does not echo 10,000 characters"
    );
    let stored = decisions(&app, "reason=invalid_address");
    assert_eq!(stored.len(), 1, "{stored:#?}");
    let input = stored[0]["input"].as_str().unwrap_or_default();
    assert!(
        !input.is_empty() && input.len() <= 320,
        "stored input is {} bytes",
        input.len()
    );
    assert!(
        huge.starts_with(input),
        "a prefix of the input, cut on a character boundary"
    );
}

#[test]

fn json_nested_10000_deep_is_400_malformed() {
    let app = App::start();
    project(&app, "HELP", json!({}));
    let case = json_case(
        "JSON nested 10,000 deep",
        "/api/v1/projects/HELP/customers",
        nested(10_000),
        &[400],
    );
    hostile(&app, case);
}

#[test]

fn json_with_trailing_garbage_is_400_without_a_write() {
    let app = App::start();
    project(&app, "HELP", json!({}));
    for body in [
        "{\"emails\": [\"a@example.com\"]} x",
        "{\"emails\": [\"b@example.com\"]}{\"emails\": [\"c@example.com\"]}",
    ] {
        let case = json_case(
            "trailing garbage",
            "/api/v1/projects/HELP/customers",
            body,
            &[400],
        );
        hostile(&app, case);
    }
}
