//! The OpenAPI document (SPEC §5, issue 10 finding 10): enum schemas name the wire
//! values the API sends, every bearer-token call documents 401 and 403, and the
//! creation calls document `Idempotency-Key`. (scripts/test.sh runs schemathesis
//! against the same document.)

use serde_json::Value;

use crate::common::App;

fn document() -> Value {
    App::start()
        .anonymous()
        .get("/api/v1/openapi.json")
        .expect_status(200)
        .json()
}

#[test]
fn enum_schemas_use_wire_names() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    for (name, wire) in [
        ("Channel", "email_request"),
        ("EmailKind", "account_verification"),
        ("ReasonCode", "outgoing_mail_disabled"),
        ("Status", "deferred"),
        ("Verdict", "send"),
    ] {
        let values: Vec<&str> = schemas[name]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} has an enum: {:#}", schemas[name]))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(values.contains(&wire), "{name}: {values:?}");
        assert!(
            values.iter().all(|v| v
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())),
            "{name} lists Rust names: {values:?}"
        );
    }
}

#[test]
fn internal_fields_stay_out_of_the_answers_schemas() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    for name in ["Outcome", "ResendSkippedOutcome"] {
        let properties = schemas[name]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{name}: {:#}", schemas[name]));
        assert!(
            !properties.contains_key("recorded"),
            "{name}: {properties:?}"
        );
    }
}

#[test]
fn every_token_call_documents_401_and_403_and_creation_calls_the_idempotency_key() {
    let doc = document();
    let paths = doc["paths"].as_object().expect("paths");
    let mut secured = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("a path item") {
            if op["security"].as_array().is_none_or(Vec::is_empty) {
                continue;
            }
            secured += 1;
            for status in ["401", "403"] {
                let response = &op["responses"][status];
                assert!(
                    response["content"]["application/json"]["schema"]["$ref"]
                        .as_str()
                        .is_some_and(|r| r.ends_with("/ErrorBody")),
                    "{method} {path} documents {status} with the error JSON: {op:#}"
                );
            }
        }
    }
    assert!(secured > 20, "{secured} secured operations");
    let header = |path: &str| {
        paths[path]["post"]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header")
    };
    for path in [
        "/api/v1/projects/{key}/customers",
        "/api/v1/projects/{key}/email-requests",
        "/api/v1/customers",
        "/api/v1/projects/{key}/customers/{email}/resend",
        "/api/v1/resend-skipped",
    ] {
        assert!(header(path), "POST {path} documents Idempotency-Key");
    }
    assert!(!header("/api/v1/bounces"));
}
