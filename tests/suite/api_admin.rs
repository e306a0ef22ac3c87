//! The admin side of the API (SPEC §2, §5, §9): project and site settings with their
//! validation, the suppression list (add, remove with a note, CSV import and export),
//! the audit log, the endpoints without a token, and role checks.

use reqwest::Method;
use serde_json::{Value, json};

use super::api_ingest::{add, all_items, counts, enc, project};
use crate::common::{Api, App, Resp};

/// Asserts the error JSON of SPEC §5 with `status`; for a 422, that the field or the
/// message names `field`. Returns the `error` object.
#[track_caller]
fn error(resp: &Resp, status: u16, field: Option<&str>) -> Value {
    resp.expect_status(status);
    let body = resp.json();
    let error = body["error"].clone();
    let code = error["code"].as_str().unwrap_or_default();
    assert!(
        !code.is_empty() && code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
        "snake_case code: {body:#}"
    );
    let message = error["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "a message: {body:#}");
    if let Some(field) = field {
        let named = error["field"].as_str().unwrap_or_default();
        assert!(
            named.contains(field) || message.contains(field),
            "the error names {field}: {body:#}"
        );
    }
    error
}

/// Creates a token with `role` through the CLI and returns a client that sends it.
pub(crate) fn token(app: &App, role: &str) -> Api {
    let output = app.cli(&["token", "create", "--role", role]);
    assert!(output.status.success(), "token create --role {role} failed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let token = stdout.trim();
    assert!(!token.is_empty() && !token.contains('\n'), "{stdout:?}");
    app.with_token(token)
}

#[test]
fn project_put_fills_defaults_and_get_answers_the_flat_object() {
    let app = App::start();
    let created = app
        .put_json("/api/v1/projects/HELP", &json!({ "name": "IT Help" }))
        .expect_status(200)
        .json();
    let expected = json!({
        "key": "HELP", "name": "IT Help", "invite_notification": true,
        "verification_emails": true, "public_signup": false, "share_with_anyone": false,
        "notify_auto_created": false, "allow_patterns": [], "deny_patterns": [],
        "email_format": "multipart", "template_set": "default", "copy_to": null,
    });
    assert_eq!(created, expected);
    assert_eq!(
        app.get("/api/v1/projects/HELP").expect_status(200).json(),
        expected
    );
    let list = app.get("/api/v1/projects").expect_status(200).json();
    let keys: Vec<&Value> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| &p["key"])
        .collect();
    assert_eq!(keys, [&json!("HELP")]);
    error(&app.get("/api/v1/projects/NOPE"), 404, None);
    error(&app.get("/api/v1/projects/lower"), 404, None);
}

#[test]
fn project_patch_changes_only_given_fields_and_put_resets_the_rest() {
    let app = App::start();
    project(&app, "HELP", json!({ "deny_patterns": ["^spam"] }));
    let patched = app
        .patch_json(
            "/api/v1/projects/HELP",
            &json!({ "public_signup": true, "email_format": "text",
                     "copy_to": { "address": "Boss@Example.com", "as": "bcc" } }),
        )
        .expect_status(200)
        .json();
    assert_eq!(patched["public_signup"], true);
    assert_eq!(patched["email_format"], "text");
    assert_eq!(patched["deny_patterns"], json!(["^spam"]), "untouched");
    assert_eq!(patched["name"], "Project HELP", "untouched");
    assert_eq!(
        patched["copy_to"],
        json!({ "address": "boss@example.com", "as": "bcc" })
    );
    let cleared = app
        .patch_json("/api/v1/projects/HELP", &json!({ "copy_to": null }))
        .expect_status(200)
        .json();
    assert!(cleared["copy_to"].is_null());
    let replaced = app
        .put_json("/api/v1/projects/HELP", &json!({ "name": "Renamed" }))
        .expect_status(200)
        .json();
    assert_eq!(replaced["name"], "Renamed");
    assert_eq!(
        replaced["public_signup"], false,
        "PUT resets missing fields"
    );
    assert_eq!(replaced["deny_patterns"], json!([]));
    error(
        &app.patch_json("/api/v1/projects/NOPE", &json!({ "public_signup": true })),
        404,
        None,
    );
}

#[test]
fn invalid_project_settings_are_422_naming_the_field_and_change_nothing() {
    let app = App::start();
    let stored = project(&app, "HELP", json!({}));
    let audit_before = all_items(&app, "/api/v1/audit?limit=500").len();
    let cases = [
        (
            json!({ "allow_patterns": ["^ok$", "(unclosed"] }),
            "allow_patterns[1]",
        ),
        (json!({ "deny_patterns": ["[z-a]"] }), "deny_patterns[0]"),
        (json!({ "template_set": "fancy" }), "template_set"),
        (json!({ "colour": "blue" }), "colour"),
        (json!({ "public_signup": "yes" }), "public_signup"),
        (json!({ "invite_notification": 1 }), "invite_notification"),
        (json!({ "allow_patterns": "^ok$" }), "allow_patterns"),
        (json!({ "email_format": "pdf" }), "email_format"),
        (
            json!({ "copy_to": { "address": "boss@example.com", "as": "to-and-cc" } }),
            "copy_to",
        ),
        (
            json!({ "copy_to": { "address": "not an address", "as": "cc" } }),
            "copy_to",
        ),
        (json!({ "name": 42 }), "name"),
    ];
    for (body, field) in cases {
        let patch = app.patch_json("/api/v1/projects/HELP", &body);
        error(&patch, 422, Some(field));
        let mut put_body = body.clone();
        if let Some(object) = put_body.as_object_mut() {
            object.entry("name").or_insert(json!("Help"));
        }
        error(
            &app.put_json("/api/v1/projects/HELP", &put_body),
            422,
            Some(field),
        );
        let mut new_body = put_body;
        if let Some(object) = new_body.as_object_mut() {
            object.insert("name".into(), json!("New"));
        }
        if field != "name" {
            error(
                &app.put_json("/api/v1/projects/NEWONE", &new_body),
                422,
                Some(field),
            );
        }
    }
    assert_eq!(app.get("/api/v1/projects/HELP").json(), stored, "unchanged");
    assert_eq!(
        app.get("/api/v1/projects/NEWONE").status,
        404,
        "not created"
    );
    assert_eq!(
        all_items(&app, "/api/v1/audit?limit=500").len(),
        audit_before
    );
    error(
        &app.put_json("/api/v1/projects/bad-key", &json!({ "name": "x" })),
        422,
        Some("key"),
    );
}

#[test]
fn site_settings_patch_and_get_and_reject_header_injection() {
    let app = App::start();
    let site = app.get("/api/v1/site").expect_status(200).json();
    assert_eq!(site["outgoing_mail"], true);
    let patched = app
        .patch_json(
            "/api/v1/site",
            &json!({ "outgoing_mail": false, "from": "Help Desk <help@example.com>",
                     "portal_base_url": "https://help.example.com/portal" }),
        )
        .expect_status(200)
        .json();
    assert_eq!(patched["outgoing_mail"], false);
    assert!(
        patched["from"]
            .as_str()
            .is_some_and(|f| f.contains("help@example.com"))
    );
    assert_eq!(app.get("/api/v1/site").json(), patched);
    for body in [
        json!({ "from": "Help <help@example.com>\r\nBcc: victim@example.com" }),
        json!({ "from": "Help\n <help@example.com>" }),
        json!({ "from": "not a mailbox" }),
        json!({ "outgoing_mail": "off" }),
        json!({ "colour": "blue" }),
    ] {
        let resp = app.patch_json("/api/v1/site", &body);
        assert_eq!(resp.status, 422, "{body}: {}", resp.text);
        error(&resp, 422, None);
    }
    let crlf = app.patch_json(
        "/api/v1/site",
        &json!({ "from": "a <a@example.com>\r\nX: y" }),
    );
    error(&crlf, 422, Some("from"));
    assert_eq!(app.get("/api/v1/site").json(), patched, "unchanged");
}

#[test]
fn suppressions_add_list_filter_and_remove_with_a_note() {
    let app = App::start();
    let added = app
        .post_json(
            "/api/v1/suppressions",
            &json!({ "email": "Gone <Gone@Example.com>", "note": "asked us to stop" }),
        )
        .expect_status(201)
        .json();
    assert_eq!(added["email"], "gone@example.com");
    assert_eq!(added["reason"], "manual");
    assert_eq!(added["note"], "asked us to stop");
    assert!(added["stage"].is_null());
    for field in [
        "smtp_code",
        "enhanced_code",
        "response",
        "remote_host",
        "suppressed_at",
        "decision_id",
        "evidence",
    ] {
        assert!(
            added.get(field).is_some(),
            "suppression lacks {field}: {added:#}"
        );
    }
    let duplicate = app.post_json(
        "/api/v1/suppressions",
        &json!({ "email": "gone@example.com", "note": "again" }),
    );
    error(&duplicate, 409, None);
    error(
        &app.post_json(
            "/api/v1/suppressions",
            &json!({ "email": "nope", "note": "x" }),
        ),
        422,
        Some("email"),
    );
    app.post_json(
        "/api/v1/suppressions",
        &json!({ "email": "other@example.org", "note": "x" }),
    )
    .expect_status(201);

    let all = all_items(&app, "/api/v1/suppressions");
    assert_eq!(all.len(), 2, "{all:#?}");
    let found = all_items(&app, "/api/v1/suppressions?q=gone");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["email"], "gone@example.com");
    assert_eq!(
        all_items(&app, "/api/v1/suppressions?q=example.org").len(),
        1
    );

    error(
        &app.delete("/api/v1/suppressions/gone@example.com"),
        422,
        Some("note"),
    );
    error(
        &app.delete("/api/v1/suppressions/gone@example.com?note="),
        422,
        Some("note"),
    );
    assert_eq!(
        all_items(&app, "/api/v1/suppressions").len(),
        2,
        "still suppressed"
    );
    let removed = app
        .delete(&format!(
            "/api/v1/suppressions/Gone@Example.com?note={}",
            enc("verified by phone")
        ))
        .expect_status(200)
        .json();
    assert_eq!(removed["email"], "gone@example.com");
    assert_eq!(removed["reason"], "manual");
    error(
        &app.delete("/api/v1/suppressions/gone@example.com?note=again"),
        404,
        None,
    );
    error(
        &app.delete("/api/v1/suppressions/never@example.com?note=x"),
        404,
        None,
    );
    let left: Vec<Value> = all_items(&app, "/api/v1/suppressions");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["email"], "other@example.org");
}

#[test]
fn suppression_csv_import_is_all_or_nothing_and_reports_counts() {
    let app = App::start();
    app.post_json(
        "/api/v1/suppressions",
        &json!({ "email": "old@example.com", "note": "x" }),
    )
    .expect_status(201);
    let import =
        |csv: &str| app.post_raw("/api/v1/suppressions/import", "text/csv", csv.to_owned());

    let bad = import("email,reason,note\nfine@example.com,,ok\nnot-an-address,,x\n");
    let error = error(&bad, 422, Some("line 3"));
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    let bad_reason = import("fine@example.com,complaint\nfine2@example.com,because\n");
    error_line(&bad_reason, "line 2");
    assert_eq!(
        all_items(&app, "/api/v1/suppressions").len(),
        1,
        "nothing imported"
    );

    let good = import(
        "email,reason,note\nNew1@Example.com,,from the old system\nnew2@example.com,complaint,\nold@example.com\n",
    );
    let counts = good.expect_status(200).json();
    assert_eq!(counts, json!({ "added": 2, "already_suppressed": 1 }));
    let all = all_items(&app, "/api/v1/suppressions");
    assert_eq!(all.len(), 3);
    let new1 = all
        .iter()
        .find(|s| s["email"] == "new1@example.com")
        .cloned()
        .unwrap_or_default();
    assert_eq!(new1["reason"], "import", "an empty reason means import");
    assert_eq!(new1["note"], "from the old system");
    let new2 = all
        .iter()
        .find(|s| s["email"] == "new2@example.com")
        .cloned()
        .unwrap_or_default();
    assert_eq!(new2["reason"], "complaint");

    let wrong_type = app.post_raw("/api/v1/suppressions/import", "text/plain", "a@example.com");
    assert_eq!(wrong_type.status, 415, "{}", wrong_type.text);

    // Export: the same list as CSV with a header row.
    let request = app
        .request(Method::GET, "/api/v1/suppressions")
        .header("Accept", "text/csv");
    let resp = app.send(request);
    resp.expect_status(200);
    assert!(
        resp.header("content-type")
            .unwrap_or_default()
            .starts_with("text/csv")
    );
    let lines: Vec<&str> = resp.text.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 4, "header + 3 rows:\n{}", resp.text);
    assert!(lines[0].starts_with("email"), "{}", lines[0]);
    assert!(resp.text.contains("new2@example.com"));
}

/// Asserts a 422 whose field or message names `line`.
#[track_caller]
fn error_line(resp: &Resp, line: &str) {
    error(resp, 422, Some(line));
}

#[test]
fn every_admin_action_is_in_the_audit_log() {
    let app = App::start();
    project(&app, "HELP", json!({}));
    app.patch_json("/api/v1/projects/HELP", &json!({ "public_signup": true }))
        .expect_status(200);
    app.patch_json("/api/v1/site", &json!({ "outgoing_mail": false }))
        .expect_status(200);
    app.post_json(
        "/api/v1/suppressions",
        &json!({ "email": "a@example.com", "note": "n1" }),
    )
    .expect_status(201);
    app.delete(&format!(
        "/api/v1/suppressions/a@example.com?note={}",
        enc("customer called")
    ))
    .expect_status(200);
    app.post_raw("/api/v1/suppressions/import", "text/csv", "b@example.com\n")
        .expect_status(200);
    let entries = all_items(&app, "/api/v1/audit?limit=500");
    assert!(entries.len() >= 6, "one entry per action: {entries:#?}");
    for entry in &entries {
        for field in ["id", "who", "what", "target", "note", "when"] {
            assert!(
                entry.get(field).is_some(),
                "audit entry lacks {field}: {entry:#}"
            );
        }
        assert!(
            entry["who"].as_str().is_some_and(|w| !w.is_empty()),
            "{entry:#}"
        );
        assert!(
            entry["what"].as_str().is_some_and(|w| !w.is_empty()),
            "{entry:#}"
        );
        assert!(
            entry["when"].as_str().is_some_and(|w| w.contains('T')),
            "RFC 3339: {entry:#}"
        );
    }
    let unsuppress = entries
        .iter()
        .find(|e| e["target"] == "a@example.com" && e["note"] == "customer called");
    assert!(
        unsuppress.is_some(),
        "the unsuppress with its note: {entries:#?}"
    );
    assert!(
        entries.iter().filter(|e| e["target"] == "HELP").count() >= 2,
        "{entries:#?}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["what"].as_str().is_some_and(|w| w.contains("import"))),
        "{entries:#?}"
    );
    let whens: Vec<&str> = entries.iter().filter_map(|e| e["when"].as_str()).collect();
    assert!(
        whens.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {whens:?}"
    );
}

#[test]
fn healthz_metrics_and_openapi_need_no_token() {
    let app = App::start();
    project(&app, "HELP", json!({}));
    add(&app, "HELP", &["m@example.com"]);
    let anonymous = app.anonymous();
    anonymous.get("/healthz").expect_status(200);
    let metrics = anonymous.get("/metrics");
    metrics.expect_status(200);
    assert!(
        metrics
            .header("content-type")
            .unwrap_or_default()
            .starts_with("text/plain")
    );
    assert!(
        metrics.text.contains("mailtrail_decisions_total"),
        "{}",
        metrics.text
    );
    let doc = anonymous
        .get("/api/v1/openapi.json")
        .expect_status(200)
        .json();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    assert!(doc["paths"].is_object());
}

#[test]
fn openapi_lists_every_api_path_of_the_spec() {
    let app = App::start();
    let doc = app
        .anonymous()
        .get("/api/v1/openapi.json")
        .expect_status(200)
        .json();
    let paths = &doc["paths"];
    let missing: Vec<&str> = [
        "/api/v1/why/{email}",
        "/api/v1/decisions",
        "/api/v1/decisions/{id}",
        "/api/v1/suppressions",
        "/api/v1/suppressions/{email}",
        "/api/v1/projects/{key}/customers/{email}/resend",
        "/api/v1/projects/{key}",
        "/api/v1/projects",
        "/api/v1/site",
        "/api/v1/stats",
        "/api/v1/audit",
        "/api/v1/resend-skipped",
        "/api/v1/suppressions/import",
        "/api/v1/suppressions/incidents",
        "/api/v1/suppressions/bulk-remove",
        "/api/v1/projects/{key}/customers",
        "/api/v1/projects/{key}/email-requests",
        "/api/v1/projects/{key}/signups",
        "/api/v1/projects/{key}/automation/customers",
        "/api/v1/customers",
    ]
    .into_iter()
    .filter(|path| paths.get(path).is_none())
    .collect();
    assert!(missing.is_empty(), "openapi.json lacks {missing:?}");
}

#[test]
fn requests_without_a_valid_token_are_401() {
    let app = App::start();
    project(&app, "HELP", json!({}));
    let before = counts(&app);
    let admin_prefix = &crate::common::ADMIN_TOKEN[..10];
    let long = "x".repeat(10_000);
    let clients = [
        app.anonymous(),
        app.with_token("not-a-token"),
        app.with_token(admin_prefix),
        app.with_token(&crate::common::ADMIN_TOKEN.to_uppercase()),
        app.with_token(&long),
    ];
    for client in &clients {
        error(&client.get("/api/v1/why/a@example.com"), 401, None);
        error(&client.get("/api/v1/decisions"), 401, None);
        let resp = client.post_json(
            "/api/v1/projects/HELP/customers",
            &json!({ "emails": ["intruder@example.com"] }),
        );
        error(&resp, 401, None);
        error(
            &client.put_json("/api/v1/projects/EVIL", &json!({ "name": "x" })),
            401,
            None,
        );
    }
    // A basic-auth header or a token in the query string is not a bearer token.
    let basic = app
        .anonymous()
        .request(Method::GET, "/api/v1/decisions")
        .basic_auth("admin", Some(crate::common::ADMIN_PASSWORD));
    error(&app.send(basic), 401, None);
    let query = app.anonymous().get(&format!(
        "/api/v1/decisions?token={}",
        crate::common::ADMIN_TOKEN
    ));
    error(&query, 401, None);
    assert_eq!(counts(&app), before);
}

#[test]
fn roles_limit_what_a_token_may_do_and_forged_roles_never_write() {
    let app = App::start();
    project(&app, "HELP", json!({}));
    add(&app, "HELP", &["member@example.com"]);
    let viewer = token(&app, "viewer");
    let support = token(&app, "support");
    let before = counts(&app);

    // viewer: GETs only.
    for path in [
        "/api/v1/decisions",
        "/api/v1/why/member@example.com",
        "/api/v1/suppressions",
        "/api/v1/projects",
        "/api/v1/projects/HELP",
        "/api/v1/site",
        "/api/v1/audit",
        "/api/v1/stats",
    ] {
        viewer.get(path).expect_status(200);
    }
    let writes: Vec<(Method, &str, Value)> = vec![
        (
            Method::POST,
            "/api/v1/projects/HELP/customers",
            json!({ "emails": ["v@example.com"] }),
        ),
        (
            Method::POST,
            "/api/v1/projects/HELP/signups",
            json!({ "email": "v@example.com" }),
        ),
        (
            Method::POST,
            "/api/v1/customers",
            json!({ "email": "v@example.com", "project": "HELP" }),
        ),
        (
            Method::POST,
            "/api/v1/projects/HELP/customers/member@example.com/resend",
            json!({}),
        ),
        (
            Method::PUT,
            "/api/v1/projects/HELP",
            json!({ "name": "Taken" }),
        ),
        (
            Method::PATCH,
            "/api/v1/site",
            json!({ "outgoing_mail": false }),
        ),
        (
            Method::POST,
            "/api/v1/suppressions",
            json!({ "email": "v@example.com", "note": "x" }),
        ),
    ];
    for (method, path, body) in &writes {
        let resp = viewer.send(viewer.request(method.clone(), path).json(body));
        error(&resp, 403, None);
    }

    // support: look up and resend (SPEC §6); no creation, settings or suppressions.
    let admin_only: Vec<(Method, &str, Value)> = vec![
        (
            Method::POST,
            "/api/v1/projects/HELP/customers",
            json!({ "emails": ["s1@example.com"] }),
        ),
        (
            Method::POST,
            "/api/v1/customers",
            json!({ "email": "s2@example.com", "project": "HELP" }),
        ),
        (
            Method::PUT,
            "/api/v1/projects/HELP",
            json!({ "name": "Taken" }),
        ),
        (
            Method::PUT,
            "/api/v1/projects/NEW",
            json!({ "name": "New" }),
        ),
        (
            Method::PATCH,
            "/api/v1/projects/HELP",
            json!({ "public_signup": true }),
        ),
        (
            Method::PATCH,
            "/api/v1/site",
            json!({ "outgoing_mail": false }),
        ),
        (
            Method::POST,
            "/api/v1/suppressions",
            json!({ "email": "s@example.com", "note": "x" }),
        ),
        (
            Method::POST,
            "/api/v1/suppressions/bulk-remove",
            json!({ "reason": "manual", "note": "x" }),
        ),
    ];
    for (method, path, body) in &admin_only {
        let resp = support.send(support.request(method.clone(), path).json(body));
        error(&resp, 403, None);
    }
    let import = support.post_raw("/api/v1/suppressions/import", "text/csv", "s@example.com\n");
    error(&import, 403, None);
    error(
        &support.delete("/api/v1/suppressions/s@example.com?note=x"),
        403,
        None,
    );

    // A role claimed anywhere but in the token is ignored.
    let forged = viewer
        .request(Method::POST, "/api/v1/projects/HELP/customers")
        .header("X-Role", "admin")
        .header("X-Mailtrail-Role", "admin")
        .json(&json!({ "emails": ["forged@example.com"] }));
    error(&viewer.send(forged), 403, None);
    // A role field in the body is an unknown field: refused either way, never obeyed.
    let forged = viewer.post_json(
        "/api/v1/projects/HELP/customers",
        &json!({ "emails": ["forged@example.com"], "role": "admin" }),
    );
    assert!([403, 422].contains(&forged.status), "{}", forged.text);
    let forged = viewer
        .request(Method::PATCH, "/api/v1/site?role=admin")
        .header("X-Role", "admin")
        .json(&json!({ "outgoing_mail": false }));
    error(&viewer.send(forged), 403, None);
    assert_eq!(counts(&app), before, "nothing was written");
    assert_eq!(app.get("/api/v1/site").json()["outgoing_mail"], true);
    assert_eq!(
        app.get("/api/v1/projects/HELP").json()["name"],
        "Project HELP"
    );

    // What support may do works.
    support
        .post_json(
            "/api/v1/projects/HELP/customers/member@example.com/resend",
            &json!({}),
        )
        .expect_status(202);
    support
        .get("/api/v1/why/member@example.com")
        .expect_status(200);
}
