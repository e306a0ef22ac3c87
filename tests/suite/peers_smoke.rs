//! Checks of the test peers themselves, without mailtrail: the SMTP policy peer answers
//! what `tests/peers/smtp_peer.py` promises, its modes work, and dnsmasq serves the
//! test zone. When a delivery test fails, these say whether the peer or the app is wrong.
//!
//! The SMTP dialogue below is a few lines of std `TcpStream`: a client to probe the
//! peer, not a fake server.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::common::{DnsPeer, SmtpPeer, SmtpSink, TlsSmtpPeer};

/// How long a test waits for the peer to store a message.
const STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// A minimal SMTP client: sends a line, reads one (possibly multi-line) reply.
struct SmtpClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl SmtpClient {
    /// Connects and returns the client with the greeting reply.
    fn connect(port: u16) -> (SmtpClient, (u16, String)) {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the peer");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("setting a read timeout");
        let writer = stream.try_clone().expect("cloning the stream");
        let mut client = SmtpClient {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = client.reply().expect("reading the greeting");
        (client, greeting)
    }

    /// Reads one reply: `(code, text)`, text lines joined by `\n` without the codes.
    fn reply(&mut self) -> std::io::Result<(u16, String)> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(ErrorKind::UnexpectedEof.into());
            }
            let line = line.trim_end();
            let code = line
                .get(..3)
                .and_then(|code| code.parse().ok())
                .ok_or_else(|| {
                    std::io::Error::new(ErrorKind::InvalidData, format!("bad reply: {line:?}"))
                })?;
            lines.push(line.get(4..).unwrap_or_default().to_owned());
            // "250-..." continues, "250 ..." ends the reply (RFC 5321 §4.2.1).
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok((code, lines.join("\n")));
            }
        }
    }

    /// Sends `line` and reads the reply.
    fn command(&mut self, line: &str) -> std::io::Result<(u16, String)> {
        self.writer.write_all(format!("{line}\r\n").as_bytes())?;
        self.reply()
    }

    /// `command`, asserting the reply code.
    #[track_caller]
    fn expect(&mut self, line: &str, code: u16) -> String {
        let (got, text) = self
            .command(line)
            .unwrap_or_else(|error| panic!("{line}: no reply: {error}"));
        assert_eq!(got, code, "{line} -> {got} {text}");
        text
    }

    /// EHLO and MAIL FROM, both expected to succeed.
    fn start_transaction(port: u16, mail_from: &str) -> SmtpClient {
        let (mut client, (code, _)) = SmtpClient::connect(port);
        assert_eq!(code, 220);
        client.expect("EHLO client.test", 250);
        client.expect(&format!("MAIL FROM:<{mail_from}>"), 250);
        client
    }
}

#[test]
fn smtp_peer_stores_accepted_message_with_envelope() {
    let peer = SmtpPeer::start();
    let mut client = SmtpClient::start_transaction(peer.port(), "bounces+d1@example.com");
    client.expect("RCPT TO:<alice@example.test>", 250);
    client.expect("DATA", 354);
    let queued = client.expect(
        "From: help@example.com\r\nTo: alice@example.test\r\nSubject: Welcome\r\n\
         Message-ID: <d1@example.com>\r\n\r\nHello Alice.\r\n.",
        250,
    );
    assert!(queued.starts_with("2.0.0 queued as "), "{queued}");
    client.expect("QUIT", 221);

    let messages = peer.wait_for_messages(1, STORE_TIMEOUT);
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(message.mail_from, "bounces+d1@example.com");
    assert_eq!(message.rcpt_tos, ["alice@example.test"]);
    assert_eq!(message.helo.as_deref(), Some("client.test"));
    assert!(!message.tls);
    assert_eq!(message.header("subject").as_deref(), Some("Welcome"));
    assert_eq!(
        message.header("Message-ID").as_deref(),
        Some("<d1@example.com>")
    );
    assert!(
        message.body().starts_with("Hello Alice."),
        "{:?}",
        message.body()
    );
    assert!(message.path.exists());
    assert!(message.path.with_extension("json").exists());
}

#[test]
fn smtp_peer_answers_recipients_by_local_part() {
    let peer = SmtpPeer::start();
    let mut client = SmtpClient::start_transaction(peer.port(), "bounces+d2@example.com");
    for (recipient, code, text) in [
        ("bounce-1@example.test", 550, "5.1.1 user unknown"),
        ("Bounce-2@example.test", 550, "5.1.1 user unknown"),
        ("full-1@example.test", 552, "5.2.2 mailbox full"),
        ("noenh-1@example.test", 550, "no such user here"),
        ("defer-1@example.test", 451, "4.3.0 try later"),
        (
            "policy@example.test",
            550,
            "5.7.1 message refused by policy",
        ),
        ("bob@example.test", 250, "2.1.5 OK"),
    ] {
        let (got, reply) = client
            .command(&format!("RCPT TO:<{recipient}>"))
            .expect("a reply to RCPT");
        assert_eq!((got, reply.as_str()), (code, text), "RCPT {recipient}");
    }
    client.expect("DATA", 354);
    client.expect("Subject: mixed\r\n\r\nbody\r\n.", 250);
    // Only the accepted recipient is in the stored envelope (the copy_to case).
    let messages = peer.wait_for_messages(1, STORE_TIMEOUT);
    assert_eq!(messages[0].rcpt_tos, ["bob@example.test"]);
}

#[test]
fn smtp_peer_rejects_at_data_for_data_recipients() {
    let peer = SmtpPeer::start();
    for (recipient, code, text) in [
        ("datareject-1@example.test", 554, "5.6.0 content rejected"),
        ("databounce-1@example.test", 550, "5.1.1 mailbox gone"),
    ] {
        let mut client = SmtpClient::start_transaction(peer.port(), "bounces+d3@example.com");
        client.expect(&format!("RCPT TO:<{recipient}>"), 250);
        client.expect("DATA", 354);
        let (got, reply) = client
            .command("Subject: x\r\n\r\nbody\r\n.")
            .expect("a DATA reply");
        assert_eq!((got, reply.as_str()), (code, text), "DATA for {recipient}");
    }
    assert!(peer.messages().is_empty());
}

#[test]
fn smtp_peer_drop_recipient_resets_the_connection_without_reply() {
    let peer = SmtpPeer::start();
    let mut client = SmtpClient::start_transaction(peer.port(), "bounces+d4@example.com");
    match client.command("RCPT TO:<drop-1@example.test>") {
        Err(error) => {
            eprintln!("client saw: {error:?}");
            assert!(
                matches!(
                    error.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof
                ),
                "unexpected error: {error:?}"
            )
        }
        Ok(reply) => panic!("expected no reply, got {reply:?}"),
    }
}

#[test]
fn smtp_peer_reject_mail_mode_refuses_mail_from() {
    let peer = SmtpPeer::start_with_mode("reject-mail");
    let (mut client, (code, _)) = SmtpClient::connect(peer.port());
    assert_eq!(code, 220);
    client.expect("EHLO client.test", 250);
    let text = client.expect("MAIL FROM:<bounces+d5@example.com>", 550);
    assert_eq!(text, "5.7.1 relay access denied");
}

#[test]
fn smtp_peer_defer_mail_mode_answers_421_and_closes() {
    let peer = SmtpPeer::start_with_mode("defer-mail");
    let (mut client, _) = SmtpClient::connect(peer.port());
    client.expect("EHLO client.test", 250);
    let text = client.expect("MAIL FROM:<bounces+d6@example.com>", 421);
    assert_eq!(text, "4.7.0 try again later");
    // 421 closes the channel: the next read sees the end of the stream.
    assert!(client.reply().is_err());
}

#[test]
fn smtp_peer_reject_greeting_mode_greets_with_554() {
    let peer = SmtpPeer::start_with_mode("reject-greeting");
    let (mut client, (code, text)) = SmtpClient::connect(peer.port());
    assert_eq!((code, text.as_str()), (554, "5.3.2 no service"));
    // RFC 5321 §3.1: after a 554 greeting only QUIT is served.
    client.expect("EHLO client.test", 503);
    client.expect("QUIT", 221);
}

#[test]
fn tls_smtp_peer_requires_starttls_and_delivers_with_auth() {
    let peer = TlsSmtpPeer::start();
    let (mut client, _) = SmtpClient::connect(peer.starttls_port());
    let capabilities = client.expect("EHLO client.test", 250);
    assert!(
        capabilities.lines().any(|line| line == "STARTTLS"),
        "{capabilities}"
    );
    client.expect("MAIL FROM:<bounces+d7@example.com>", 530);

    // A real TLS client for both listeners: swaks (installed by ./scripts/test.sh).
    for (port, tls_flag) in [
        (peer.starttls_port(), "--tls"),
        (peer.implicit_port(), "--tlsc"),
    ] {
        let output = Command::new("swaks")
            .args(["--server", &format!("127.0.0.1:{port}"), tls_flag])
            .args(["--auth", "PLAIN", "--auth-user", peer.user()])
            .args(["--auth-password", peer.password()])
            .args([
                "--from",
                "bounces+d7@example.com",
                "--to",
                "carol@example.test",
            ])
            .output()
            .expect("running swaks");
        assert!(
            output.status.success(),
            "swaks {tls_flag} failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
    let messages = peer.wait_for_messages(2, STORE_TIMEOUT);
    for message in &messages {
        assert!(message.tls, "{message:?}");
        assert_eq!(message.auth_user.as_deref(), Some("user"));
        assert_eq!(message.rcpt_tos, ["carol@example.test"]);
    }
}

#[test]
fn smtp_sink_accepts_a_session() {
    let sink = SmtpSink::start();
    let mut client = SmtpClient::start_transaction(sink.port(), "bounces+d8@example.com");
    client.expect("RCPT TO:<anyone@example.test>", 250);
    client.expect("DATA", 354);
    client.expect("Subject: x\r\n\r\nbody\r\n.", 250);
    client.expect("QUIT", 221);
}

#[test]
fn dns_peer_serves_the_test_zone() {
    let dns = DnsPeer::start();
    assert_eq!(dns.dig("example.test", "MX").trim(), "10 mx.example.test.");
    assert_eq!(dns.dig("mx.example.test", "A").trim(), "127.0.0.1");
    assert_eq!(dns.dig("nullmx.test", "MX").trim(), "0 .");
    assert_eq!(dns.dig("mxdown-host.test", "A").trim(), "127.0.0.3");
    // A-only domain: NODATA for MX (implicit MX), not NXDOMAIN.
    assert_eq!(dns.status("aonly.test", "MX"), "NOERROR");
    assert_eq!(dns.dig("aonly.test", "MX").trim(), "");
    assert_eq!(dns.status("nope.test", "MX"), "NXDOMAIN");
}
