//! Retention (SPEC §14): decisions and attempts older than `--retention` are purged by
//! `serve`, except each address's newest decision per project, so `why` still answers.

use super::api_ingest::{add, all_items, project, why};
use crate::common::App;
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn old_decisions_and_attempts_go_the_newest_per_address_and_project_stays() {
    let app = App::builder().env("MAILTRAIL_RETENTION", "3s").start();
    project(&app, "HELP", json!({}));
    project(&app, "IT", json!({}));
    let first = add(&app, "HELP", &["a@example.com"])[0]["decision_id"]
        .as_str()
        .expect("id")
        .to_owned();
    // The first one is sent (file transport), so it has an attempt to purge too.
    app.wait_for_decision_status(&first, "sent", Duration::from_secs(10));
    let attempts = app.get(&format!("/api/v1/decisions/{first}")).json()["attempts"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(attempts, 1);
    let newest_help = add(&app, "HELP", &["a@example.com"])[0]["decision_id"].clone();
    let only_it = add(&app, "IT", &["a@example.com"])[0]["decision_id"].clone();
    let other = add(&app, "HELP", &["b@example.com"])[0]["decision_id"].clone();
    let invalid_old = add(&app, "HELP", &["not an address"])[0]["decision_id"].clone();
    let invalid_new = add(&app, "HELP", &["not an address"])[0]["decision_id"].clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    let kept = loop {
        let ids: Vec<_> = all_items(&app, "/api/v1/decisions")
            .into_iter()
            .map(|d| d["id"].clone())
            .collect();
        if !ids.contains(&json!(first)) && !ids.contains(&invalid_old) {
            break ids;
        }
        assert!(
            Instant::now() < deadline,
            "the old decisions were never purged: {ids:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let mut expected = vec![newest_help, only_it, other, invalid_new];
    let mut kept = kept;
    expected.sort_by_key(|v| v.to_string());
    kept.sort_by_key(|v| v.to_string());
    assert_eq!(
        kept, expected,
        "each address's newest decision per project stays"
    );
    app.get(&format!("/api/v1/decisions/{first}"))
        .expect_status(404);
    let orphans = app.db_query_i64(&format!(
        "SELECT count(*) FROM attempts WHERE decision_id = '{first}'"
    ));
    assert_eq!(orphans, 0, "the purged decision's attempts went with it");
    let answer = why(&app, "a@example.com");
    assert!(
        answer["verdict"].is_object() || answer["verdict"].is_string(),
        "{answer}"
    );
}

#[test]
fn the_default_retention_keeps_recent_decisions() {
    let app = App::start();
    project(&app, "HELP", json!({}));
    add(&app, "HELP", &["a@example.com"]);
    add(&app, "HELP", &["a@example.com"]);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(all_items(&app, "/api/v1/decisions").len(), 2);
}
