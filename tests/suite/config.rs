//! Settings end to end (SPEC §14): secrets read from files, and the smarthost password
//! given apart from the transport URL, against the real TLS + AUTH peer.

use super::api_ingest::{add, project};
use crate::common::{ADMIN_TOKEN, App, TlsSmtpPeer};
use serde_json::json;
use std::time::Duration;

#[test]
fn the_admin_token_is_read_from_its_file() {
    let app = App::builder()
        .env_remove("MAILTRAIL_ADMIN_TOKEN")
        .file("admin-token", format!("{ADMIN_TOKEN}\n"))
        .env("MAILTRAIL_ADMIN_TOKEN_FILE", "admin-token")
        .start();
    // The file's trailing newline is not part of the token.
    app.get("/api/v1/decisions").expect_status(200);
    app.anonymous().get("/api/v1/decisions").expect_status(401);
}

#[test]
fn the_smarthost_password_comes_from_its_file_not_the_url() {
    let peer = TlsSmtpPeer::start();
    let app = App::builder()
        .transport(format!(
            "smtp://{}@127.0.0.1:{}?tls=starttls",
            peer.user(),
            peer.starttls_port()
        ))
        .env("MAILTRAIL_SMTP_CA", peer.cert_path().display().to_string())
        .file("smtp-password", format!("{}\n", peer.password()))
        .env("MAILTRAIL_SMTP_PASSWORD_FILE", "smtp-password")
        .start();
    project(&app, "HELP", json!({}));
    let id = add(&app, "HELP", &["alice@example.test"])[0]["decision_id"]
        .as_str()
        .expect("a decision id")
        .to_owned();
    app.wait_for_decision_status(&id, "sent", Duration::from_secs(20));
    let messages = peer.wait_for_messages(1, Duration::from_secs(10));
    assert_eq!(messages[0].auth_user.as_deref(), Some(peer.user()));
}
