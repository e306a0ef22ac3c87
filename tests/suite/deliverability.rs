//! Deliverability (issue 13, SPEC §12): DKIM signatures checked by an independent
//! verifier (dkimpy, `tests/peers/dkim_verify.py`) over messages captured by the real
//! aiosmtpd peer, for both algorithms, every email format, non-ASCII display names and
//! subjects, long lines and a `copy_to` message; the key settings' errors; direct
//! delivery with opportunistic STARTTLS (the TLS peer as the MX), the plain retry after a
//! failed handshake, the TLS version on the attempt and the decision page; `--ehlo-name`;
//! and pooled connections the server closed while idle.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use super::delivery::{PROJECT, WAIT, add, add_all, attempts, project, wait_status};
use crate::common::{App, DnsPeer, SmtpPeer, TlsSmtpPeer, repo_root};

/// A key written by `mailtrail dkim keygen` into the test's directory, and the TXT
/// record value it printed.
struct Key {
    path: std::path::PathBuf,
    record: String,
    _dir: tempfile::TempDir,
}

fn keygen(algorithm: &str, selector: &str) -> Key {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join(format!("{algorithm}.key"));
    let out = Command::new(App::binary())
        .args([
            "dkim",
            "keygen",
            "--selector",
            selector,
            "--algorithm",
            algorithm,
        ])
        .arg("--out")
        .arg(&path)
        .args(["--domain", "example.com"])
        .output()
        .expect("running keygen");
    assert!(out.status.success(), "{out:?}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&path)
            .expect("the key file")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the key file is private");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(&format!("{selector}._domainkey.example.com. IN TXT (")),
        "{stdout}"
    );
    // The zone-file strings, joined: what a resolver hands the verifier.
    let record: String = stdout.split('"').skip(1).step_by(2).collect();
    assert!(
        record.starts_with(&format!("v=DKIM1; k={algorithm}; p=")),
        "{record}"
    );
    Key {
        path,
        record,
        _dir: dir,
    }
}

fn peer_python() -> std::path::PathBuf {
    repo_root().join(".peers/venv/bin/python")
}

/// dkimpy's verdict on one message file.
fn verify(path: &Path, record: &str) -> Value {
    let out = Command::new(peer_python())
        .arg(repo_root().join("tests/peers/dkim_verify.py"))
        .arg(path)
        .arg(record)
        .output()
        .expect("running dkim_verify.py (run ./scripts/test.sh to install dkimpy)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "dkim_verify.py said nothing readable: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Asserts dkimpy accepts `message` signed for example.com with `selector`, `algorithm`
/// and the SPEC §12 headers.
#[track_caller]
fn assert_signed(
    message: &crate::common::ReceivedMessage,
    key: &Key,
    selector: &str,
    algorithm: &str,
) {
    let verdict = verify(&message.path, &key.record);
    assert_eq!(verdict["ok"], true, "{verdict:#}\n{}", message.raw);
    assert_eq!(verdict["signatures"], 1, "{verdict:#}");
    assert_eq!(verdict["d"], "example.com");
    assert_eq!(verdict["s"], selector);
    assert_eq!(verdict["a"], format!("{algorithm}-sha256"));
    assert_eq!(verdict["c"], "relaxed/relaxed");
    let signed: Vec<String> = verdict["h"]
        .as_array()
        .expect("h=")
        .iter()
        .filter_map(|h| h.as_str().map(str::to_lowercase))
        .collect();
    for header in [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
    ] {
        assert!(
            signed.iter().any(|h| h == header),
            "{header} in h=: {signed:?}"
        );
    }
    assert_eq!(
        verdict["dns_asked"][0],
        format!("{selector}._domainkey.example.com.")
    );
}

fn signing_app(peer: &SmtpPeer, key: &Key, selector: &str) -> App {
    App::builder()
        .smarthost(peer)
        .env("MAILTRAIL_DKIM_KEY", key.path.display().to_string())
        .env("MAILTRAIL_DKIM_SELECTOR", selector)
        .start()
}

/// Every format, a non-ASCII display name and subject, a long subject and long body
/// lines (a long project name is in the subject and the body), one key.
fn every_shape_verifies(algorithm: &str) {
    let selector = format!("sel-{algorithm}");
    let key = keygen(algorithm, &selector);
    let peer = SmtpPeer::start();
    let app = signing_app(&peer, &key, &selector);
    app.patch_json(
        "/api/v1/site",
        &json!({ "from": "Ünïcødé Hélp Désk 😀 <help@example.com>" }),
    )
    .expect_status(200);
    // 100 characters, the longest a project name may be: a subject over 78 columns.
    let long_name: String = format!("Støre Ünïcode {}", "very long project name ".repeat(5))
        .chars()
        .take(100)
        .collect();
    let mut expected = 0;
    for (key_name, format) in [("MULTI", "multipart"), ("TEXT", "text"), ("HTML", "html")] {
        project(
            &app,
            key_name,
            &long_name,
            json!({ "email_format": format }),
        );
        for email in [
            format!("Zoë Ærøskøbing-Müller <zoe-{format}@example.test>"),
            format!("plain-{format}@example.test"),
        ] {
            let results = add_all(&app, key_name, &[email.as_str()]);
            let id = results[0]["decision_id"]
                .as_str()
                .expect("an id")
                .to_owned();
            wait_status(&app, &id, "sent");
            expected += 1;
        }
    }
    let messages = peer.wait_for_messages(expected, WAIT);
    assert_eq!(messages.len(), expected);
    for message in &messages {
        assert_signed(message, &key, &selector, algorithm);
    }
    // The shapes really were there: an encoded subject, a long folded line.
    assert!(
        messages.iter().any(|m| m.raw.contains("=?utf-8?")),
        "non-ASCII headers are encoded"
    );
    assert!(
        messages.iter().any(|m| m.raw.contains("text/html"))
            && messages
                .iter()
                .any(|m| m.raw.contains("multipart/alternative")),
        "every format was sent"
    );

    // A copy_to registration: the extra RCPT and the Cc header are signed over too.
    project(
        &app,
        PROJECT,
        "Help Center",
        json!({ "notify_auto_created": true, "copy_to": {"address": "admin@example.test", "as": "cc"} }),
    );
    let resp = app.post_json(
        &format!("/api/v1/projects/{PROJECT}/automation/customers"),
        &json!({ "email": "reg@example.test" }),
    );
    resp.expect_status(200);
    let id = resp.json()["results"][0]["decision_id"]
        .as_str()
        .expect("an id")
        .to_owned();
    wait_status(&app, &id, "sent");
    let messages = peer.wait_for_messages(expected + 1, WAIT);
    let copy = messages
        .iter()
        .find(|m| m.rcpt_tos.len() == 2)
        .expect("the copy_to message");
    assert!(
        copy.header("Cc")
            .is_some_and(|c| c.contains("admin@example.test"))
    );
    assert_signed(copy, &key, &selector, algorithm);
}

#[test]
fn ed25519_signatures_verify_for_every_format_and_shape() {
    every_shape_verifies("ed25519");
}

#[test]
fn rsa_signatures_verify_for_every_format_and_shape() {
    every_shape_verifies("rsa");
}

#[test]
fn a_tampered_message_fails_verification() {
    // The verifier is real: it refuses what it should.
    let key = keygen("ed25519", "s1");
    let peer = SmtpPeer::start();
    let app = signing_app(&peer, &key, "s1");
    super::delivery::setup(&app);
    let id = add(&app, PROJECT, "alice@example.test");
    wait_status(&app, &id, "sent");
    let message = peer.wait_for_messages(1, WAIT).remove(0);
    let tampered = message.path.with_extension("tampered");
    std::fs::write(
        &tampered,
        message.raw.replacen("Welcome to", "Welcome back to", 1),
    )
    .expect("writing");
    assert_eq!(verify(&tampered, &key.record)["ok"], false);
    let other = keygen("ed25519", "s1");
    assert_eq!(verify(&message.path, &other.record)["ok"], false);
}

#[test]
fn a_broken_key_or_a_bad_selector_exits_2_naming_the_setting() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let broken = dir.path().join("broken.key");
    std::fs::write(
        &broken,
        "-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----\n",
    )
    .expect("writing");
    let key = keygen("ed25519", "good");
    let cases: [(&[(&str, String)], &str); 4] = [
        (
            &[
                ("MAILTRAIL_DKIM_KEY", broken.display().to_string()),
                ("MAILTRAIL_DKIM_SELECTOR", "s1".into()),
            ],
            "MAILTRAIL_DKIM_KEY",
        ),
        (
            &[
                (
                    "MAILTRAIL_DKIM_KEY",
                    dir.path().join("missing.key").display().to_string(),
                ),
                ("MAILTRAIL_DKIM_SELECTOR", "s1".into()),
            ],
            "MAILTRAIL_DKIM_KEY",
        ),
        (
            &[
                ("MAILTRAIL_DKIM_KEY", key.path.display().to_string()),
                ("MAILTRAIL_DKIM_SELECTOR", "not a selector!".into()),
            ],
            "MAILTRAIL_DKIM_SELECTOR",
        ),
        (
            &[("MAILTRAIL_DKIM_KEY", key.path.display().to_string())],
            "selector",
        ),
    ];
    for (env, named) in cases {
        let mut command = Command::new(App::binary());
        command
            .args(["migrate", "--db"])
            .arg(dir.path().join("x.db"));
        for (k, v) in env {
            command.env(k, v);
        }
        let out = command.output().expect("running mailtrail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {stderr}");
        assert!(stderr.contains(named), "{env:?} names {named}: {stderr}");
    }
    // keygen never overwrites a key.
    let out = Command::new(App::binary())
        .args(["dkim", "keygen", "--selector", "good", "--out"])
        .arg(&key.path)
        .output()
        .expect("running keygen");
    assert_eq!(out.status.code(), Some(2));
}

// --- direct delivery as MTAs do it -------------------------------------------------

/// The TLS peer's STARTTLS port as the MX of every test domain.
fn direct_to_tls_peer(dns: &DnsPeer, peer: &TlsSmtpPeer) -> App {
    let app = App::builder()
        .transport("direct")
        .env("MAILTRAIL_DNS", dns.addr())
        .env("MAILTRAIL_MX_PORT", peer.starttls_port().to_string())
        .env("MAILTRAIL_EHLO_NAME", "mta.example.com")
        .start();
    super::delivery::setup(&app);
    app
}

#[test]
fn direct_delivery_uses_starttls_when_offered_and_records_the_version() {
    let dns = DnsPeer::start();
    // The peer refuses MAIL before STARTTLS: a message that arrives came over TLS.
    let peer = TlsSmtpPeer::start();
    let app = direct_to_tls_peer(&dns, &peer);
    let id = add(&app, PROJECT, "alice@example.test");
    let decision = wait_status(&app, &id, "sent");
    let attempt = &attempts(&decision)[0];
    assert_eq!(attempt["tls"], "TLSv1.3", "{decision:#}");
    let message = peer.wait_for_messages(1, WAIT).remove(0);
    assert!(message.tls);
    assert_eq!(message.helo.as_deref(), Some("mta.example.com"));
    // The decision page shows it.
    let mut visitor =
        super::dashboard::Visitor::login(&app, "admin", crate::common::ADMIN_PASSWORD);
    let page = visitor.get(&format!("/decisions/{id}"));
    page.expect_status(200);
    assert!(page.text.contains("TLSv1.3"), "{}", page.text);
}

#[test]
fn a_failed_starttls_handshake_is_retried_once_in_plain_text() {
    let dns = DnsPeer::start();
    let peer = TlsSmtpPeer::start_with_mode("broken-tls");
    let app = direct_to_tls_peer(&dns, &peer);
    let id = add(&app, PROJECT, "alice@example.test");
    let decision = wait_status(&app, &id, "sent");
    let attempts = attempts(&decision);
    assert_eq!(attempts.len(), 1, "one try, not two: {decision:#}");
    assert_eq!(attempts[0]["tls"], Value::Null, "{decision:#}");
    let message = peer.wait_for_messages(1, WAIT).remove(0);
    assert!(!message.tls);
}

#[test]
fn a_plain_mx_gets_plain_smtp_and_tls_null() {
    let dns = DnsPeer::start();
    let mx = SmtpPeer::start();
    let app = App::builder().direct(&dns, &mx).start();
    super::delivery::setup(&app);
    let id = add(&app, PROJECT, "alice@example.test");
    let decision = wait_status(&app, &id, "sent");
    assert_eq!(attempts(&decision)[0]["tls"], Value::Null, "{decision:#}");
    assert!(!mx.wait_for_messages(1, WAIT)[0].tls);
}

#[test]
fn smarthost_tls_versions_are_recorded_too() {
    for starttls in [true, false] {
        let peer = TlsSmtpPeer::start();
        let app = App::builder().tls_smarthost(&peer, starttls).start();
        super::delivery::setup(&app);
        let id = add(&app, PROJECT, "alice@example.test");
        let decision = wait_status(&app, &id, "sent");
        assert_eq!(attempts(&decision)[0]["tls"], "TLSv1.3", "{decision:#}");
    }
}

/// A smarthost that closes connections idle for 1 s (`mode`: silently or with 421):
/// the next message goes on a new connection, and its decision has one attempt.
fn idle_pooled_connection_is_reopened(mode: &str) {
    let peer = SmtpPeer::start_with_mode(mode);
    let app = App::builder().smarthost(&peer).start();
    super::delivery::setup(&app);
    let first = add(&app, PROJECT, "first@example.test");
    wait_status(&app, &first, "sent");
    // Longer than the peer's idle limit: the pooled connection is gone.
    std::thread::sleep(Duration::from_millis(2_500));
    let second = add(&app, PROJECT, "second@example.test");
    let decision = wait_status(&app, &second, "sent");
    let attempts = attempts(&decision);
    assert_eq!(attempts.len(), 1, "{decision:#}");
    assert_eq!(attempts[0]["outcome"], "sent");
    assert_eq!(peer.wait_for_messages(2, WAIT).len(), 2);
}

#[test]
fn a_pooled_connection_closed_silently_while_idle_is_reopened_not_counted() {
    idle_pooled_connection_is_reopened("idle-close");
}

#[test]
fn a_pooled_connection_closed_with_421_while_idle_is_reopened_not_counted() {
    idle_pooled_connection_is_reopened("idle-close-421");
}
