//! Every parser of hostile input under random input (issue 10, "parsers under random
//! input"): addresses, raw email requests, bounce reports, CSV imports, dashboard form
//! bodies, query strings and JSON bodies, thousands of cases each. None may panic; the
//! HTTP-level ones must answer an error below 500. The last test sends random requests
//! through the whole router (in process, `tower::ServiceExt::oneshot`) over a real
//! SQLite store.

use crate::delivery::{bounces, report};
use crate::http::api::{ingest, read, suppressions};
use crate::http::dashboard::form::parse_body;
use crate::http::error::ApiError;
use crate::http::extract::parse_json;
use crate::model::{EmailAddress, ParsedMailbox};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};

/// Cases per property: "thousands of cases each in CI", at debug-build speed.
const CASES: u32 = 3_000;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// An error the API answers must be the client's fault, never a 500.
fn client_error(e: &ApiError) -> Result<(), TestCaseError> {
    let status = e.status();
    prop_assert!(
        status.is_client_error(),
        "{status} for {e:?} (code {})",
        e.code()
    );
    Ok(())
}

/// Arbitrary bytes, biased towards the short inputs where parsers branch most.
fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec(any::<u8>(), 0..max),
    ]
}

/// Text built from the characters parsers care about, so the random input reaches
/// deep into them more often than uniformly random bytes do.
fn tricky_text(max: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("@".to_owned()),
        Just("<".to_owned()),
        Just(">".to_owned()),
        Just("\"".to_owned()),
        Just(",".to_owned()),
        Just(";".to_owned()),
        Just(":".to_owned()),
        Just("\r\n".to_owned()),
        Just("\n".to_owned()),
        Just("\\".to_owned()),
        Just("=?utf-8?b?".to_owned()),
        Just("%".to_owned()),
        Just("&".to_owned()),
        Just("=".to_owned()),
        Just("+".to_owned()),
        Just("--".to_owned()),
        Just(" ".to_owned()),
        Just("\0".to_owned()),
        Just("ü".to_owned()),
        Just("alice@example.com".to_owned()),
        "[a-zA-Z0-9._-]{1,8}",
        any::<String>(),
    ];
    proptest::collection::vec(piece, 0..max).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn addresses_parse_or_refuse_without_panic(input in prop_oneof![any::<String>(), tricky_text(24)]) {
        let _ = EmailAddress::parse(&input);
        let _ = ParsedMailbox::parse(&input);
        let _ = EmailAddress::raw_input(&input);
    }

    #[test]
    fn raw_email_requests_are_read_or_refused_with_a_client_error(
        raw in prop_oneof![
            bytes(4_096),
            (tricky_text(8), tricky_text(12), tricky_text(8)).prop_map(|(from, cc, body)| {
                format!("From: {from}\r\nCc: {cc}\r\nSubject: x\r\n\r\n{body}").into_bytes()
            }),
        ]
    ) {
        if let Err(e) = ingest::parse_raw_request(&raw) {
            client_error(&e)?;
        }
    }

    #[test]
    fn bounce_reports_are_read_or_refused_without_panic(
        raw in prop_oneof![
            bytes(4_096),
            (tricky_text(6), tricky_text(10)).prop_map(|(recipient, status)| {
                format!(
                    "Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n\
                     --b\r\nContent-Type: message/delivery-status\r\n\r\n\
                     Reporting-MTA: dns; mx\r\n\r\nFinal-Recipient: rfc822; {recipient}\r\n\
                     Action: failed\r\nStatus: {status}\r\n\r\n--b--\r\n"
                )
                .into_bytes()
            }),
        ]
    ) {
        if let Ok(parsed) = report::parse(&raw) {
            let _ = bounces::actions(&parsed, &String::from_utf8_lossy(&raw), 0);
        }
    }

    #[test]
    fn csv_imports_are_read_or_refused_with_a_client_error(
        raw in prop_oneof![
            bytes(2_048),
            proptest::collection::vec(tricky_text(6), 0..12).prop_map(|lines| lines.join("\n").into_bytes()),
            proptest::collection::vec(
                ("[a-z]{1,6}@[a-z]{1,6}\\.test", prop_oneof![Just(""), Just("manual"), Just("hard_bounce"), Just("bogus")], tricky_text(3)),
                0..8,
            )
            .prop_map(|rows| {
                let mut out = String::from("email,reason,note\r\n");
                for (email, reason, note) in rows {
                    out.push_str(&format!("{email},{reason},{note}\r\n"));
                }
                out.into_bytes()
            }),
        ]
    ) {
        if let Err(e) = crate::app::parse_import(&raw) {
            client_error(&ApiError::from(e))?;
        }
    }

    #[test]
    fn dashboard_form_bodies_are_read_or_refused_with_a_client_error(
        media in prop_oneof![Just(None), Just(Some("application/x-www-form-urlencoded")), Just(Some("multipart/form-data"))],
        content_type in prop_oneof![
            Just("multipart/form-data; boundary=xyz".to_owned()),
            Just("multipart/form-data".to_owned()),
            tricky_text(6),
        ],
        body in prop_oneof![
            bytes(2_048),
            tricky_text(16).prop_map(String::into_bytes),
            (tricky_text(4), tricky_text(6)).prop_map(|(name, value)| {
                format!(
                    "--xyz\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"f.csv\"\r\n\r\n{value}\r\n--xyz--\r\n"
                )
                .into_bytes()
            }),
        ],
    ) {
        if let Err(e) = parse_body(media, &content_type, &body) {
            let status = e.into_response().status();
            prop_assert!(status.is_client_error(), "{status}");
        }
    }

    #[test]
    fn query_strings_are_read_or_refused_with_a_client_error(
        raw in prop_oneof![
            any::<String>(),
            tricky_text(12),
            proptest::collection::vec(
                (
                    prop_oneof![
                        Just("email"), Just("project"), Just("status"), Just("reason"), Just("channel"),
                        Just("since"), Just("until"), Just("limit"), Just("cursor"), Just("window"), Just("q"),
                        Just("note"),
                    ],
                    prop_oneof![tricky_text(4), "-?[0-9]{0,20}", "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z?"],
                ),
                0..6,
            )
            .prop_map(|pairs| {
                pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
            }),
        ]
    ) {
        match read::query_map(Some(raw)) {
            Err(e) => client_error(&e)?,
            Ok(q) => {
                for result in [
                    read::decision_filter(&q).map(|_| ()),
                    read::limit(&q, 50, 500).map(|_| ()),
                    read::window(&q).map(|_| ()),
                ] {
                    if let Err(e) = result {
                        client_error(&e)?;
                    }
                }
                if let Some(cursor) = q.get("cursor") {
                    let _ = crate::store::parse_cursor(cursor);
                }
                if let Some(since) = q.get("since") {
                    let _ = crate::store::parse_query_time(since);
                }
            }
        }
    }

    #[test]
    fn json_bodies_are_read_or_refused_with_a_client_error(
        raw in prop_oneof![
            bytes(1_024),
            tricky_text(12).prop_map(String::into_bytes),
            (tricky_text(4), tricky_text(4)).prop_map(|(a, b)| format!("{{\"emails\": [\"{a}\", {b}], \"invite\": {b}}}").into_bytes()),
        ]
    ) {
        let results = [
            parse_json::<ingest::AddCustomers>(&raw).map(|_| ()),
            parse_json::<ingest::EmailRequest>(&raw).map(|_| ()),
            parse_json::<ingest::OneCustomer>(&raw).map(|_| ()),
            parse_json::<ingest::ApiCustomer>(&raw).map(|_| ()),
            parse_json::<suppressions::AddSuppression>(&raw).map(|_| ()),
            parse_json::<crate::app::BulkRemove>(&raw).map(|_| ()),
            parse_json::<crate::model::ProjectPatch>(&raw).map(|_| ()),
            parse_json::<crate::model::SitePatch>(&raw).map(|_| ()),
        ];
        for result in results {
            if let Err(e) = result {
                client_error(&e)?;
            }
        }
    }
}

/// One random request through the whole router.
#[derive(Debug, Clone)]
struct RandomRequest {
    method: &'static str,
    path: String,
    query: String,
    content_type: &'static str,
    body: Vec<u8>,
    authorized: bool,
}

/// Percent-encodes every byte, so arbitrary bytes make a valid request target.
fn percent(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

fn random_request() -> impl Strategy<Value = RandomRequest> {
    let segment = prop_oneof![
        "[A-Za-z0-9_.@-]{1,12}",
        bytes(24).prop_map(|b| percent(&b)),
        tricky_text(4).prop_map(|s| percent(s.as_bytes())),
    ];
    // Each path with a method it serves, so most requests reach a handler.
    let route = prop_oneof![
        Just(("GET", "/api/v1/why/{}")),
        Just(("GET", "/api/v1/decisions/{}")),
        Just(("GET", "/api/v1/decisions")),
        Just(("GET", "/api/v1/suppressions")),
        Just(("POST", "/api/v1/suppressions")),
        Just(("DELETE", "/api/v1/suppressions/{}")),
        Just(("POST", "/api/v1/suppressions/import")),
        Just(("POST", "/api/v1/suppressions/bulk-remove")),
        Just(("GET", "/api/v1/suppressions/incidents")),
        Just(("GET", "/api/v1/projects/{}")),
        Just(("PUT", "/api/v1/projects/{}")),
        Just(("PATCH", "/api/v1/projects/{}")),
        Just(("POST", "/api/v1/projects/{}/customers")),
        Just(("POST", "/api/v1/projects/HELP/customers")),
        Just(("POST", "/api/v1/projects/{}/email-requests")),
        Just(("POST", "/api/v1/projects/HELP/email-requests")),
        Just(("POST", "/api/v1/projects/{}/signups")),
        Just(("POST", "/api/v1/projects/HELP/customers/{}/resend")),
        Just(("POST", "/api/v1/customers")),
        Just(("POST", "/api/v1/bounces")),
        Just(("POST", "/api/v1/resend-skipped")),
        Just(("GET", "/api/v1/stats")),
        Just(("GET", "/api/v1/audit")),
        Just(("PATCH", "/api/v1/site")),
        Just(("GET", "/api/v1/{}")),
        Just(("POST", "/login")),
        Just(("GET", "/why")),
        Just(("GET", "/{}")),
    ];
    let method = prop_oneof![
        9 => Just(None),
        1 => prop_oneof![Just("GET"), Just("POST"), Just("PUT"), Just("PATCH"), Just("DELETE")].prop_map(Some),
    ];
    let query = prop_oneof![
        Just(String::new()),
        tricky_text(6).prop_map(|s| percent(s.as_bytes())),
        "(limit|cursor|since|until|window|status|email|q|note)=[-0-9a-zA-Z:%.]{0,24}",
    ];
    let content_type = prop_oneof![
        Just("application/json"),
        Just("message/rfc822"),
        Just("text/csv"),
        Just("multipart/report"),
        Just("text/plain"),
        Just("application/x-www-form-urlencoded"),
        Just(""),
    ];
    let body = prop_oneof![
        bytes(512),
        tricky_text(10).prop_map(String::into_bytes),
        Just(b"{}".to_vec()),
        Just(br#"{"emails": ["a@example.com"]}"#.to_vec()),
    ];
    (
        route,
        method,
        segment,
        query,
        content_type,
        body,
        prop::bool::weighted(0.9),
    )
        .prop_map(
            |((served, template), method, segment, query, content_type, body, authorized)| {
                RandomRequest {
                    method: method.unwrap_or(served),
                    path: template.replace("{}", &segment),
                    query,
                    content_type,
                    body,
                    authorized,
                }
            },
        )
}

#[test]
fn the_router_answers_random_requests_below_500() {
    use tower::ServiceExt;

    const TOKEN: &str = "fuzz-admin-token-0123456789";
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("a temp dir");
    let raw = crate::cli::RawSettings {
        db: Some(dir.path().join("fuzz.db").display().to_string()),
        transport: Some(format!("file:{}", dir.path().join("outbox").display())),
        ..Default::default()
    };
    let (mut config, _) = crate::config::Config::resolve(&raw, false).expect("a config");
    config.admin_token = Some(crate::config::Secret::new(TOKEN));
    let store = crate::store::Store::open(&config.db, crate::store::StoreOptions::default())
        .expect("a store");
    let state = crate::http::AppState::new(crate::app::App::new(store, config).expect("an app"));
    let app = crate::http::router(state);
    runtime.block_on(async {
        let put = axum::http::Request::put("/api/v1/projects/HELP")
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(r#"{"name": "Help"}"#))
            .expect("a request");
        let response = app.clone().oneshot(put).await.expect("an answer");
        assert_eq!(response.status(), StatusCode::OK);
    });

    let mut runner = TestRunner::new(RunnerConfig {
        cases: 3_000,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let seen = std::sync::Mutex::new(std::collections::BTreeMap::<u16, u32>::new());
    let outcome =
        runner.run(&random_request(), |r| {
            let uri = if r.query.is_empty() {
                r.path.clone()
            } else {
                format!("{}?{}", r.path, r.query)
            };
            let mut builder = axum::http::Request::builder().method(r.method).uri(&uri);
            if r.authorized {
                builder = builder.header("authorization", format!("Bearer {TOKEN}"));
            }
            if !r.content_type.is_empty() {
                builder = builder.header("content-type", r.content_type);
            }
            let mut request = builder
                .body(axum::body::Body::from(r.body.clone()))
                .map_err(|e| TestCaseError::reject(format!("not a request: {e}")))?;
            request.extensions_mut().insert(axum::extract::ConnectInfo(
                std::net::SocketAddr::from(([127, 0, 0, 1], 40_000)),
            ));
            let (status, body) = runtime.block_on(async {
                let response = app.clone().oneshot(request).await.expect("an answer");
                let status = response.status();
                let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                    .await
                    .unwrap_or_default();
                (status, body)
            });
            if let Ok(mut seen) = seen.lock() {
                *seen.entry(status.as_u16()).or_default() += 1;
            }
            // An API refusal is the error JSON of SPEC §5. Known gap, left to finding 7's
            // owner: axum's own `Path` rejection of a segment that is not UTF-8 is still
            // plain text ("Invalid URL: ...").
            if r.path.starts_with("/api/v1")
                && status.is_client_error()
                && !body.starts_with(b"Invalid URL")
            {
                let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                prop_assert!(
                    json["error"]["code"].is_string() && json["error"]["message"].is_string(),
                    "{} {uri} answered {status} without the error JSON: {}",
                    r.method,
                    String::from_utf8_lossy(&body)
                );
            }
            prop_assert!(
                status.as_u16() < 500,
                "{} {uri} answered {status}: {}",
                r.method,
                String::from_utf8_lossy(&body)
            );
            Ok(())
        });
    if let Err(e) = outcome {
        panic!("{e}");
    }
    // The requests must reach the handlers, not only the router's and the token's
    // refusals: successes and several kinds of client error.
    let seen = seen.into_inner().unwrap_or_default();
    eprintln!("statuses: {seen:?}");
    assert!(seen.contains_key(&200), "{seen:?}");
    assert!(seen.len() >= 5, "{seen:?}");
}
