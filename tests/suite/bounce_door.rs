//! The SMTP bounce door (issue 12, SPEC §11): `--bounce-listen` runs an SMTP server for
//! the bounce domain. Here a plain TCP client speaks SMTP to it (the server under test is
//! ours; the client is a few lines so the tests can send what no polite client would):
//! a report to a decision's VERP address bounces the decision and suppresses the address
//! before the `250`; unknown recipients get `550 5.1.1`; the limits answer with their
//! codes; hostile input (bare LF, NUL, 1 MB lines, 10,000 RCPTs, pipelined garbage, a
//! client that stops mid-DATA, 200 parallel sessions) gets the right reply or a clean
//! close and changes nothing. STARTTLS is checked with Python's `smtplib` as the client.
//! The round trip through a real Postfix is in `bounce_postfix`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use super::delivery::{
    FROM_DOMAIN, PROJECT, add_all, all_suppressions, decision, setup, suppression, wait_status,
};
use crate::common::{
    App, PostfixPeer, SmtpPeer, free_tcp_port, generate_test_cert, repo_root, wait_until,
};

/// The decision id the report fixtures carry.
const FIXTURE_ID: &str = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
/// The feedback (complaint) address the test apps accept.
const FEEDBACK: &str = "fbl@bounces.example.com";

/// A blocking SMTP client that sends exactly what it is told.
pub(crate) struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

/// One reply: its code and its lines' texts.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) code: u16,
    pub(crate) lines: Vec<String>,
}

impl Reply {
    fn text(&self) -> String {
        self.lines.join("\n")
    }
}

impl Client {
    /// Connects and reads the greeting (which must be 220).
    pub(crate) fn connect(port: u16) -> Client {
        let mut client = Client::connect_raw(port);
        let greeting = client.reply().expect("a greeting");
        assert_eq!(greeting.code, 220, "{greeting:?}");
        client
    }

    /// Connects without reading anything.
    pub(crate) fn connect_raw(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the door");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("a read timeout");
        let writer = stream.try_clone().expect("cloning the socket");
        Client {
            reader: BufReader::new(stream),
            writer,
        }
    }

    /// Sends bytes as they are.
    pub(crate) fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// Reads one (possibly multi-line) reply; `None` when the server closed.
    pub(crate) fn reply(&mut self) -> Option<Reply> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let line = line.trim_end_matches(['\r', '\n']);
            let code: u16 = line.get(..3).and_then(|c| c.parse().ok())?;
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or_default().to_owned());
            if !more {
                return Some(Reply { code, lines });
            }
        }
    }

    /// Sends `line` + CRLF and reads the reply.
    pub(crate) fn command(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n").as_bytes())
            .unwrap_or_else(|e| panic!("sending {line}: {e}"));
        self.reply()
            .unwrap_or_else(|| panic!("no reply to {line}: the server closed"))
    }

    /// Sends `line` and asserts the reply's code.
    #[track_caller]
    pub(crate) fn expect(&mut self, line: &str, code: u16) -> Reply {
        let reply = self.command(line);
        assert_eq!(reply.code, code, "{line}: {reply:?}");
        reply
    }

    /// DATA, the dot-stuffed message, and the final reply.
    pub(crate) fn data(&mut self, message: &[u8]) -> Reply {
        self.expect("DATA", 354);
        self.send(&dot_stuff(message)).expect("sending the message");
        self.send(b".\r\n").expect("sending the final dot");
        self.reply().expect("a reply to the message")
    }

    /// Whether the server closed the connection (reads until EOF, at most 30 s).
    pub(crate) fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).is_ok()
    }
}

/// `message` with CRLF line ends, lines starting with `.` doubled, ending in CRLF.
pub(crate) fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(message);
    let mut out = Vec::with_capacity(message.len() + 64);
    for line in text.lines() {
        if line.starts_with('.') {
            out.push(b'.');
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The Postfix report fixture, naming decision `id`.
pub(crate) fn report_for(id: &str) -> Vec<u8> {
    let path = repo_root().join("tests/fixtures/reports/postfix_user_unknown.eml");
    let raw = std::fs::read_to_string(&path).expect("the Postfix fixture");
    raw.replace(FIXTURE_ID, id).into_bytes()
}

/// An app with the bounce door on a free port, and that port.
fn app_with_door(
    extra: impl Fn(crate::common::AppBuilder) -> crate::common::AppBuilder,
) -> (App, u16) {
    for _ in 0..5 {
        let port = free_tcp_port();
        let builder = App::builder()
            .env("MAILTRAIL_BOUNCE_LISTEN", format!("127.0.0.1:{port}"))
            .env("MAILTRAIL_FEEDBACK_ADDRESS", FEEDBACK);
        let app = extra(builder).start();
        if wait_until(Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        }) {
            return (app, port);
        }
    }
    panic!("the bounce door did not listen in five tries");
}

/// An app with its door, and one sent decision to `nobody@example.test`: (app, port, id).
fn door_and_sent_decision() -> (App, u16, String) {
    let (app, port) = app_with_door(|b| b);
    setup(&app);
    let result = add_all(&app, PROJECT, &["nobody@example.test"]).remove(0);
    let id = result["decision_id"].as_str().expect("an id").to_owned();
    wait_status(&app, &id, "sent");
    (app, port, id)
}

#[test]
fn report_over_smtp_bounces_the_decision_before_the_250() {
    let (app, port, id) = door_and_sent_decision();
    let mut client = Client::connect(port);
    let ehlo = client.expect("EHLO mta.example.test", 250);
    let offered = ehlo.text();
    for extension in ["PIPELINING", "8BITMIME", "SIZE 10485760"] {
        assert!(
            offered.contains(extension),
            "EHLO offers {extension}: {offered}"
        );
    }
    assert!(
        !offered.contains("STARTTLS"),
        "no STARTTLS without a certificate: {offered}"
    );
    client.expect("MAIL FROM:<>", 250);
    client.expect(&format!("RCPT TO:<bounces+{id}@example.com>"), 250);
    let reply = client.data(&report_for(&id));
    assert_eq!(reply.code, 250, "{reply:?}");
    // Committed before the 250: no waiting needed.
    let decision = decision(&app, &id);
    assert_eq!(decision["status"], "bounced", "{decision:#}");
    let found = suppression(&app, "nobody@example.test").expect("suppressed");
    assert_eq!(found["reason"], "bounce_report", "{found:#}");
    assert_eq!(found["decision_id"], id.as_str(), "{found:#}");
    client.expect("QUIT", 221);
    assert!(client.closed());
}

#[test]
fn only_verp_addresses_of_known_decisions_and_the_feedback_address_are_taken() {
    let (_app, port, id) = door_and_sent_decision();
    let mut client = Client::connect(port);
    client.expect("EHLO mta.example.test", 250);
    client.expect("MAIL FROM:<>", 250);
    for refused in [
        "RCPT TO:<postmaster@example.com>",
        "RCPT TO:<bounces+00000000-0000-7000-8000-000000000000@example.com>",
        "RCPT TO:<bounces+@example.com>",
        "RCPT TO:<bounces+x'or'1=1@example.com>",
    ] {
        let reply = client.expect(refused, 550);
        assert!(reply.text().starts_with("5.1.1"), "{refused}: {reply:?}");
    }
    client.expect(&format!("RCPT TO:<{}>", FEEDBACK.to_uppercase()), 250);
    client.expect(&format!("RCPT TO:<bounces+{id}@bounces.example.net>"), 250);
    client.expect("RSET", 250);
    // Commands out of order.
    client.expect("RCPT TO:<fbl@bounces.example.com>", 503);
    client.expect("DATA", 503);
    client.expect("QUIT", 221);
}

#[test]
fn a_pipelined_transaction_gets_its_replies_in_order() {
    let (app, port, id) = door_and_sent_decision();
    let mut client = Client::connect(port);
    client.expect("EHLO mta.example.test", 250);
    let mut batch = format!(
        "MAIL FROM:<> SIZE=5000 BODY=8BITMIME\r\nRCPT TO:<nobody@example.com>\r\nRCPT TO:<bounces+{id}@example.com>\r\nDATA\r\n"
    )
    .into_bytes();
    batch.extend(dot_stuff(&report_for(&id)));
    batch.extend_from_slice(b".\r\nQUIT\r\n");
    client.send(&batch).expect("sending the batch");
    let codes: Vec<u16> = std::iter::from_fn(|| client.reply().map(|r| r.code)).collect();
    assert_eq!(codes, [250, 550, 250, 354, 250, 221]);
    assert_eq!(decision(&app, &id)["status"], "bounced");
}

#[test]
fn an_mta_may_send_many_bounces_over_one_session() {
    let (app, port, id) = door_and_sent_decision();
    let mut client = Client::connect(port);
    client.expect("EHLO busy.example", 250);
    let report = dot_stuff(&report_for(&id));
    // 300 messages of 3 commands each: more commands than the per-message limit of
    // 1,000, fine because each message is accepted.
    for _ in 0..300 {
        let mut batch =
            format!("MAIL FROM:<>\r\nRCPT TO:<bounces+{id}@example.com>\r\nDATA\r\n").into_bytes();
        client.send(&batch).expect("send");
        for code in [250, 250, 354] {
            assert_eq!(client.reply().map(|r| r.code), Some(code));
        }
        batch.clear();
        batch.extend_from_slice(&report);
        batch.extend_from_slice(b".\r\n");
        client.send(&batch).expect("send");
        assert_eq!(client.reply().map(|r| r.code), Some(250));
    }
    client.expect("QUIT", 221);
    assert_eq!(decision(&app, &id)["status"], "bounced");
}

#[test]
fn limits_answer_with_their_codes() {
    let (app, port, id) = door_and_sent_decision();
    let mut client = Client::connect(port);
    client.expect("EHLO mta.example.test", 250);
    // A declared size over the limit.
    let reply = client.expect("MAIL FROM:<> SIZE=20000000", 552);
    assert!(reply.text().starts_with("5.3.4"), "{reply:?}");
    // More than 100 recipients.
    client.expect("MAIL FROM:<>", 250);
    for _ in 0..100 {
        client.expect(&format!("RCPT TO:<bounces+{id}@example.com>"), 250);
    }
    let reply = client.expect(&format!("RCPT TO:<bounces+{id}@example.com>"), 452);
    assert!(reply.text().starts_with("4.5.3"), "{reply:?}");
    client.expect("RSET", 250);
    // A message over 10 MiB is read to its end, refused, and changes nothing.
    client.expect("MAIL FROM:<>", 250);
    client.expect(&format!("RCPT TO:<bounces+{id}@example.com>"), 250);
    let mut big = report_for(&id);
    let filler = format!("{}\r\n", "x".repeat(998));
    while big.len() <= 10_485_760 + 1000 {
        big.extend_from_slice(filler.as_bytes());
    }
    let reply = client.data(&big);
    assert_eq!(reply.code, 552, "{reply:?}");
    assert_eq!(decision(&app, &id)["status"], "sent");
    assert!(all_suppressions(&app).is_empty());
    // The session goes on.
    client.expect("NOOP", 250);
    client.expect("QUIT", 221);
}

#[test]
fn hostile_input_gets_a_reply_or_a_clean_close_and_changes_nothing() {
    let (app, port, id) = door_and_sent_decision();
    let verp = format!("bounces+{id}@example.com");

    // Bare LF: refused, the session goes on.
    let mut client = Client::connect(port);
    client.send(b"EHLO bare.example\n").expect("send");
    assert_eq!(client.reply().map(|r| r.code), Some(500));
    client.expect("EHLO ok.example", 250);

    // NUL bytes in a command.
    client
        .send(b"MAIL FROM:<a\0b@example.com>\r\n")
        .expect("send");
    assert_eq!(client.reply().map(|r| r.code), Some(500));

    // A 1 MB line: one 500, the rest skipped, the session usable.
    let mut long = vec![b'A'; 1 << 20];
    long.extend_from_slice(b"\r\n");
    client.send(&long).expect("send");
    assert_eq!(client.reply().map(|r| r.code), Some(500));
    client.expect("NOOP", 250);
    client.expect("QUIT", 221);

    // 10,000 RCPTs pipelined: 100 accepted, the rest 452, then the command limit closes.
    let mut client = Client::connect(port);
    client.expect("EHLO many.example", 250);
    client.expect("MAIL FROM:<>", 250);
    let mut batch = Vec::new();
    for _ in 0..10_000 {
        batch.extend_from_slice(format!("RCPT TO:<{verp}>\r\n").as_bytes());
    }
    // The server may close before it read everything: a write error is fine.
    let _ = client.send(&batch);
    let mut codes = std::collections::BTreeMap::new();
    while let Some(reply) = client.reply() {
        *codes.entry(reply.code).or_insert(0usize) += 1;
    }
    assert_eq!(codes.get(&250), Some(&100), "{codes:?}");
    assert!(codes.get(&452).is_some_and(|n| *n > 0), "{codes:?}");
    assert_eq!(
        codes.get(&421),
        Some(&1),
        "the command limit closes: {codes:?}"
    );

    // Pipelined garbage: refused line by line, then the error limit closes.
    let mut client = Client::connect(port);
    let mut garbage = Vec::new();
    for i in 0..200 {
        garbage.extend_from_slice(format!("\u{1}GARBAGE {i} \u{ff}\r\n").as_bytes());
        garbage.extend_from_slice(b"MAIL FROM:<<<>>>\r\n");
    }
    let _ = client.send(&garbage);
    let mut last = None;
    while let Some(reply) = client.reply() {
        assert!(reply.code >= 400, "{reply:?}");
        last = Some(reply.code);
    }
    assert_eq!(last, Some(421), "the error limit closes the session");

    // A client that stops in the middle of DATA: nothing is written.
    let mut client = Client::connect(port);
    client.expect("EHLO cut.example", 250);
    client.expect("MAIL FROM:<>", 250);
    client.expect(&format!("RCPT TO:<{verp}>"), 250);
    client.expect("DATA", 354);
    let report = dot_stuff(&report_for(&id));
    client.send(&report[..report.len() / 2]).expect("send");
    drop(client);

    // 200 sessions at once: each is served or told 421, none hangs.
    let threads: Vec<_> = (0..200)
        .map(|_| {
            std::thread::spawn(move || {
                let mut client = Client::connect_raw(port);
                let greeting = client.reply().map(|r| r.code);
                match greeting {
                    Some(220) => {
                        client.expect("EHLO crowd.example", 250);
                        client.expect("NOOP", 250);
                        client.expect("QUIT", 221);
                        220
                    }
                    Some(421) => 421,
                    other => panic!("greeting {other:?}"),
                }
            })
        })
        .collect();
    let answers: Vec<u16> = threads
        .into_iter()
        .map(|t| t.join().expect("a session thread"))
        .collect();
    assert!(answers.contains(&220), "{answers:?}");

    // Nothing of it changed the decision or the list.
    assert_eq!(decision(&app, &id)["status"], "sent");
    assert!(all_suppressions(&app).is_empty());

    // And the door still works.
    let mut client = Client::connect(port);
    client.expect("EHLO after.example", 250);
    client.expect("MAIL FROM:<>", 250);
    client.expect(&format!("RCPT TO:<{verp}>"), 250);
    let reply = client.data(&report_for(&id));
    assert_eq!(reply.code, 250, "{reply:?}");
    assert_eq!(decision(&app, &id)["status"], "bounced");
}

#[test]
fn a_worker_process_runs_the_door_too_on_the_same_port() {
    let (mut app, port, id) = door_and_sent_decision();
    // Same settings, same port (SO_REUSEPORT): the worker binds it beside `serve`.
    let _worker = app.spawn_worker("worker");
    std::thread::sleep(Duration::from_millis(500));
    app.terminate();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
                return false;
            };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut line = String::new();
            BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("220")
        }),
        "the worker's door answers once serve is gone"
    );
    let mut client = Client::connect(port);
    client.expect("EHLO mta.example.test", 250);
    client.expect("MAIL FROM:<>", 250);
    client.expect(&format!("RCPT TO:<bounces+{id}@example.com>"), 250);
    let reply = client.data(&report_for(&id));
    assert_eq!(reply.code, 250, "{reply:?}");
    client.expect("QUIT", 221);
    app.restart();
    assert_eq!(decision(&app, &id)["status"], "bounced");
}

#[test]
fn starttls_with_the_given_certificate() {
    let certs = tempfile::tempdir().expect("a temp dir");
    let (cert, key) = generate_test_cert(certs.path());
    let (app, port) = app_with_door(|b| {
        b.env("MAILTRAIL_BOUNCE_TLS_CERT", cert.display().to_string())
            .env("MAILTRAIL_BOUNCE_TLS_KEY", key.display().to_string())
    });
    setup(&app);
    let result = add_all(&app, PROJECT, &["nobody@example.test"]).remove(0);
    let id = result["decision_id"].as_str().expect("an id").to_owned();
    wait_status(&app, &id, "sent");
    let report = certs.path().join("report.eml");
    std::fs::write(&report, report_for(&id)).expect("writing the report");
    // Python's smtplib as an independent client: STARTTLS verified against our cert.
    let script = r#"
import smtplib, ssl, sys
port, ca, rcpt, path = sys.argv[1:5]
s = smtplib.SMTP("127.0.0.1", int(port), local_hostname="tls.example")
s.ehlo()
assert s.has_extn("starttls"), s.esmtp_features
s.starttls(context=ssl.create_default_context(cafile=ca))
s.ehlo()
assert not s.has_extn("starttls"), "STARTTLS is not offered twice"
refused = s.sendmail("", [rcpt], open(path, "rb").read())
assert not refused, refused
print("cipher", s.sock.version())
s.quit()
"#;
    let output = Command::new(repo_root().join(".peers/venv/bin/python"))
        .args(["-c", script, &port.to_string()])
        .arg(&cert)
        .arg(format!("bounces+{id}@example.com"))
        .arg(&report)
        .output()
        .expect("running python");
    assert!(
        output.status.success(),
        "smtplib over STARTTLS: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("TLS"));
    assert_eq!(decision(&app, &id)["status"], "bounced");
}

#[test]
fn a_bad_tls_setting_exits_2_naming_it() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let not_pem = dir.path().join("cert.pem");
    std::fs::write(&not_pem, "not a certificate\n").expect("write");
    let listen = format!("127.0.0.1:{}", free_tcp_port());
    // Only the certificate: the key is missing.
    let app = App::builder()
        .env("MAILTRAIL_BOUNCE_LISTEN", listen.clone())
        .env("MAILTRAIL_BOUNCE_TLS_CERT", not_pem.display().to_string())
        .build_stopped();
    let output = app.cli(&["serve"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bounce_tls_key"), "{stderr}");
    // Both given, but the certificate is not PEM.
    let app = App::builder()
        .env("MAILTRAIL_BOUNCE_LISTEN", listen)
        .env("MAILTRAIL_BOUNCE_TLS_CERT", not_pem.display().to_string())
        .env("MAILTRAIL_BOUNCE_TLS_KEY", not_pem.display().to_string())
        .build_stopped();
    let output = app.cli(&["serve"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bounce_tls_cert"), "{stderr}");
}

/// The real thing: mailtrail relays through Debian's Postfix to an aiosmtpd peer that
/// refuses the recipient with `550 5.1.1`; Postfix writes its own bounce to the VERP
/// address and, through its transport map, delivers it to mailtrail's bounce door. The
/// decision ends `bounced` and the address is suppressed with Postfix's words as evidence.
#[test]
fn a_real_postfix_bounce_comes_home_through_the_door() {
    let started = std::time::Instant::now();
    let refuser = SmtpPeer::start();
    let door_port = free_tcp_port();
    let postfix = PostfixPeer::start(refuser.port(), &[(FROM_DOMAIN, door_port)]);
    let app = App::builder()
        .env("MAILTRAIL_BOUNCE_LISTEN", format!("127.0.0.1:{door_port}"))
        .transport(postfix.url())
        .start();
    assert!(wait_until(Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", door_port)).is_ok()
    }));
    setup(&app);
    let email = "bounce-gone@example.test";
    let result = add_all(&app, PROJECT, &[email]).remove(0);
    let id = result["decision_id"].as_str().expect("an id").to_owned();
    // Postfix takes the message (sent), tries the refuser, bounces it home.
    let bounced = app.wait_for_decision_status(&id, "bounced", Duration::from_secs(60));
    assert_eq!(bounced["status_reason"], "bounce_report", "{bounced:#}");
    let found = suppression(&app, email).expect("the address is suppressed");
    assert_eq!(found["reason"], "bounce_report", "{found:#}");
    assert_eq!(found["decision_id"], id.as_str(), "{found:#}");
    assert_eq!(found["enhanced_code"], "5.1.1", "{found:#}");
    let evidence = found["evidence"].as_str().unwrap_or_default();
    for words in [
        "This is the mail system at host mta.test",
        "550 5.1.1",
        "user unknown",
    ] {
        assert!(
            evidence.contains(words),
            "Postfix's words `{words}` in: {evidence}"
        );
    }
    eprintln!("postfix round trip: {:?}", started.elapsed());
}
