//! The webhook receiver peer (`tests/peers/webhook_receiver.py`): a real HTTP server on
//! 127.0.0.1 that verifies every request with the `standardwebhooks` Python library and
//! answers 200, 500, hangs, closes the connection, or sends 50 MB, as told.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use super::process::Supervised;
use super::{free_tcp_port, repo_root, wait_for};

const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running receiver, killed on `Drop`.
pub struct WebhookReceiver {
    _process: Supervised,
    port: u16,
    http: reqwest::blocking::Client,
}

impl WebhookReceiver {
    /// Starts a receiver answering 200.
    pub fn start() -> WebhookReceiver {
        let python = repo_root().join(".peers/venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run ./scripts/test.sh --install-only first",
            python.display()
        );
        let script = repo_root().join("tests/peers/webhook_receiver.py");
        let mut errors = Vec::new();
        for _ in 0..5 {
            let port = free_tcp_port();
            let mut command = Command::new(&python);
            command
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .arg(&script)
                .args(["--port", &port.to_string(), "--watch-stdin"]);
            let mut process = Supervised::spawn("webhook-receiver", command)
                .unwrap_or_else(|e| panic!("webhook receiver: cannot start: {e}"));
            match process.wait_for_stdout_line(READY_TIMEOUT, |l| {
                l.starts_with("webhook receiver listening on ")
            }) {
                Ok(_) => {
                    let http = reqwest::blocking::Client::builder()
                        .no_proxy()
                        .timeout(Duration::from_secs(10))
                        .build()
                        .expect("a client");
                    return WebhookReceiver {
                        _process: process,
                        port,
                        http,
                    };
                }
                Err(e) => errors.push(e),
            }
        }
        panic!("webhook receiver did not start: {}", errors.join("\n"));
    }

    /// The URL to subscribe.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn control(&self, body: Value) {
        let r = self
            .http
            .post(format!("http://127.0.0.1:{}/_control", self.port))
            .json(&body)
            .send()
            .expect("webhook receiver control");
        assert!(r.status().is_success());
    }

    /// How to answer: `ok`, `fail`, `hang`, `close`, `big`.
    pub fn mode(&self, mode: &str) {
        self.control(json!({"mode": mode}));
    }

    /// The secret requests are verified with.
    pub fn secret(&self, secret: &str) {
        self.control(json!({"secret": secret}));
    }

    /// Every request so far, oldest first.
    pub fn received(&self) -> Vec<Value> {
        self.http
            .get(format!("http://127.0.0.1:{}/_received", self.port))
            .send()
            .expect("webhook receiver /_received")
            .json::<Vec<Value>>()
            .expect("a JSON list")
    }

    /// The requests answered 200 (delivered), oldest first.
    pub fn delivered(&self) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|r| r["answered"] == 200)
            .collect()
    }

    /// Waits until `pred` holds for the received requests; returns them. Panics after
    /// `timeout` with what did arrive.
    pub fn wait(&self, timeout: Duration, mut pred: impl FnMut(&[Value]) -> bool) -> Vec<Value> {
        let mut last = Vec::new();
        wait_for(timeout, || {
            last = self.received();
            pred(&last).then_some(())
        })
        .unwrap_or_else(|| {
            let summary: Vec<String> = last
                .iter()
                .map(|r| format!("{} {} {} {}", r["id"], r["type"], r["answered"], r["error"]))
                .collect();
            panic!("webhook receiver: condition not met in {timeout:?}; got {summary:#?}")
        });
        last
    }
}
