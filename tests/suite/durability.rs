//! Durability (issue 3, SPEC §1 and §4: "a decision is never lost (it is committed
//! before the API answers)"): many concurrent adds, the server killed with SIGKILL in
//! the middle, restarted on the same file; every answered add is stored whole.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::api_ingest::{decisions, project, why};
use crate::common::{App, wait_until};

/// Client threads, and sequential adds per thread.
const THREADS: usize = 8;
const ADDS_PER_THREAD: usize = 40;
/// The server is killed once this many adds were answered.
const KILL_AFTER: usize = 150;

/// What one answered add promised.
#[derive(Debug, Clone)]
struct Answered {
    email: String,
    decision_id: String,
    customer_id: String,
    customer: String,
}

#[test]
fn every_answered_add_survives_sigkill_whole() {
    let mut app = App::start();
    project(&app, "HELP", json!({}));
    let answered: Arc<Mutex<Vec<Answered>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..THREADS)
        .map(|thread| {
            let api = app.api().clone();
            let answered = Arc::clone(&answered);
            let count = Arc::clone(&count);
            std::thread::spawn(move || {
                for i in 0..ADDS_PER_THREAD {
                    let email = format!("t{thread}-n{i}@example.com");
                    let request = api
                        .request(Method::POST, "/api/v1/projects/HELP/customers")
                        .json(&json!({ "emails": [email] }));
                    // Once the server is gone every request fails: the thread is done.
                    let Ok(response) = request.send() else { return };
                    if !response.status().is_success() {
                        continue;
                    }
                    // An answer cut off by the kill was never received: no promise made.
                    let Ok(body) = response.json::<Value>() else {
                        return;
                    };
                    let result = &body["results"][0];
                    let text = |field: &str| result[field].as_str().unwrap_or_default().to_owned();
                    let record = Answered {
                        email: text("email"),
                        decision_id: text("decision_id"),
                        customer_id: text("customer_id"),
                        customer: text("customer"),
                    };
                    assert_eq!(record.email, email, "{body}");
                    answered
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(record);
                    count.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();

    let reached = wait_until(Duration::from_secs(120), || {
        count.load(Ordering::SeqCst) >= KILL_AFTER
    });
    assert!(
        reached,
        "only {} adds answered in 2 minutes",
        count.load(Ordering::SeqCst)
    );
    app.kill_hard();
    for handle in handles {
        handle.join().expect("a client thread panicked");
    }
    let answered = answered.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(
        answered.len() < THREADS * ADDS_PER_THREAD,
        "the kill came after every add: not a mid-flight kill"
    );

    eprintln!(
        "killed after {} answered adds of {}",
        answered.len(),
        THREADS * ADDS_PER_THREAD
    );
    app.restart();
    for record in &answered {
        let label = &record.email;
        let decision = app
            .get(&format!("/api/v1/decisions/{}", record.decision_id))
            .expect_status(200)
            .json();
        assert_eq!(
            decision["recipient"],
            record.email.as_str(),
            "{label}: {decision:#}"
        );
        assert_eq!(
            decision["customer_id"],
            record.customer_id.as_str(),
            "{label}"
        );
        assert_eq!(record.customer, "created", "{label}: every address was new");
        let answer = why(&app, &record.email);
        let customer = &answer["customer"];
        assert_eq!(
            customer["id"],
            record.customer_id.as_str(),
            "{label}: {answer:#}"
        );
        let member = customer["projects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| m["key"] == "HELP");
        assert!(member, "{label}: the membership survived: {answer:#}");
    }

    // Nothing is half-written: every stored decision of a new customer has its customer,
    // including those whose answer the kill cut off.
    let stored = decisions(&app, "project=HELP");
    assert!(
        stored.len() >= answered.len(),
        "{} decisions stored, {} answered",
        stored.len(),
        answered.len()
    );
    for decision in &stored {
        let email = decision["recipient"].as_str().unwrap_or_default();
        let answer = why(&app, email);
        assert_eq!(
            answer["customer"]["id"], decision["customer_id"],
            "{email}: a decision without its customer: {answer:#}"
        );
    }

    eprintln!("{} decisions stored after the restart", stored.len());

    // The restarted server still takes writes.
    let after = app.post_json(
        "/api/v1/projects/HELP/customers",
        &json!({ "emails": ["after-restart@example.com"] }),
    );
    after.expect_status(200);
}
