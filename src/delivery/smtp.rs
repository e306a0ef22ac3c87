//! One SMTP transaction at a time, stage by stage, so every refusal is known by where it
//! came (SPEC §4 blames the relay for a 5xx before RCPT and the recipient after), and a
//! refused `copy_to` RCPT never spoils the customer's.
//!
//! lettre's connection does the protocol (greeting, EHLO, STARTTLS, AUTH); this module
//! decides what to send next. Smarthost connections are pooled and reused, and when the
//! server offers PIPELINING (RFC 2920) MAIL, RCPT and DATA go out in one write and
//! their replies are read in order: two round trips per message instead of four, with
//! each refusal still blamed on its own command.

use super::SmtpTls;
use super::classify::{Reply, Stage, TryEnd};
use super::render::Prepared;
use super::tls;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, MailBodyParameter, MailParameter};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;

/// How to reach one SMTP server.
#[derive(Clone)]
pub struct Target {
    /// Host name (for TLS and the attempt record).
    pub host: String,
    /// Where to connect (the host, or an address it resolved to).
    pub connect_to: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub credentials: Option<(String, String)>,
    /// The TLS client configuration: verified for a smarthost, opportunistic for an MX.
    pub tls_config: Option<Arc<rustls::ClientConfig>>,
    /// The name given in EHLO (`--ehlo-name`).
    pub ehlo: String,
    pub timeout: Duration,
}

impl Target {
    /// `host:port` for attempt records.
    pub fn label(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, TryEnd> {
        match &self.tls_config {
            Some(c) => Ok(c.clone()),
            None => tls::verified(None).map_err(|e| TryEnd::NoReply(Stage::Connect, e.to_string())),
        }
    }
}

/// The customer's result of one transaction, and the copy's.
#[derive(Clone, Debug)]
pub struct Transaction {
    /// How the customer's delivery ended.
    pub end: TryEnd,
    /// The `copy_to` RCPT's reply, when there was a copy.
    pub copy: Option<String>,
    /// The connection can carry another message.
    pub reusable: bool,
}

/// A lettre error as a try's end at `stage`: with an SMTP reply when there was one.
fn end_of(stage: Stage, e: &lettre::transport::smtp::Error) -> TryEnd {
    match e.status() {
        Some(code) => {
            let code: u16 = code.to_string().parse().unwrap_or(500);
            let text = e.to_string();
            // lettre writes "permanent error (550): 5.1.1 user unknown".
            let text = text
                .split_once("): ")
                .map(|(_, t)| t.to_owned())
                .unwrap_or(text);
            TryEnd::Refused(stage, Reply::new(code, text))
        }
        None => TryEnd::NoReply(stage, e.to_string()),
    }
}

fn reply_of(response: &lettre::transport::smtp::response::Response) -> Reply {
    let code: u16 = response.code().to_string().parse().unwrap_or(250);
    Reply::new(code, response.message().collect::<Vec<_>>().join(" "))
}

/// An open SMTP session, ready for a transaction.
pub struct Session {
    conn: AsyncSmtpConnection,
    /// The server offered PIPELINING in its (last) EHLO reply.
    pipelining: bool,
    /// The TLS version the session runs over, if any.
    pub tls: Option<String>,
}

impl Session {
    /// Ends the session politely.
    pub async fn quit(&mut self) {
        let _ = self.conn.quit().await;
    }
}

/// Opens a TCP connection with TCP_NODELAY: lettre writes a command and, with Nagle's
/// algorithm, a second small write waits for the server's delayed ACK (40 ms).
async fn tcp(target: &Target) -> Result<TcpStream, TryEnd> {
    let tcp = tokio::time::timeout(
        target.timeout,
        TcpStream::connect((target.connect_to.as_str(), target.port)),
    )
    .await
    .map_err(|_| TryEnd::NoReply(Stage::Connect, "connection timed out".into()))?
    .map_err(|e| TryEnd::NoReply(Stage::Connect, format!("cannot connect: {e}")))?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// Reads one SMTP reply (all its lines) from a raw socket, byte-exact: nothing after
/// the reply is consumed, so the socket can be handed on.
async fn raw_reply(tcp: &mut TcpStream, timeout: Duration) -> Result<(u16, Vec<String>), String> {
    use tokio::io::AsyncReadExt;
    let mut lines = Vec::new();
    let mut line = Vec::new();
    let read = async {
        loop {
            let mut byte = [0u8; 1];
            if tcp.read(&mut byte).await.map_err(|e| e.to_string())? == 0 {
                return Err("the server closed the connection".to_owned());
            }
            line.push(byte[0]);
            if line.ends_with(b"\r\n") || line.len() > 4096 {
                let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                line.clear();
                let last = text.as_bytes().get(3) != Some(&b'-');
                lines.push(text);
                if last {
                    break;
                }
            }
        }
        let code = lines
            .last()
            .and_then(|l| l.get(..3))
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("not an SMTP reply: {:?}", lines.last()))?;
        Ok((code, lines))
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| "no reply in time".to_owned())?
}

async fn raw_command(
    tcp: &mut TcpStream,
    command: &str,
    timeout: Duration,
) -> Result<(u16, Vec<String>), String> {
    use tokio::io::AsyncWriteExt;
    tcp.write_all(command.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    raw_reply(tcp, timeout).await
}

/// The text of a reply's lines without their codes.
fn reply_text(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| l.get(4..).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" ")
}

/// How STARTTLS went on a fresh connection.
enum Upgrade {
    /// Encrypted, with this version.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>, String),
    /// The server offers no STARTTLS: the plain socket, after its EHLO.
    NotOffered(TcpStream),
    /// The handshake (or the STARTTLS command) failed: the socket is spent.
    Failed(String),
}

/// Greeting, EHLO and, when offered, STARTTLS and the handshake, done on the raw socket.
async fn starttls(
    target: &Target,
    mut tcp: TcpStream,
    hello: &ClientId,
) -> Result<Upgrade, TryEnd> {
    let no_reply = |m: String| TryEnd::NoReply(Stage::Connect, m);
    // A 4xx or 5xx to the greeting or EHLO refuses the try at the connect stage.
    let accepted = |(code, lines): (u16, Vec<String>)| {
        if code >= 400 {
            Err(TryEnd::Refused(
                Stage::Connect,
                Reply::new(code, reply_text(&lines)),
            ))
        } else {
            Ok(lines)
        }
    };
    accepted(
        raw_reply(&mut tcp, target.timeout)
            .await
            .map_err(no_reply)?,
    )?;
    let lines = accepted(
        raw_command(&mut tcp, &format!("EHLO {hello}\r\n"), target.timeout)
            .await
            .map_err(no_reply)?,
    )?;
    let offered = lines.iter().skip(1).any(|l| {
        l.get(4..)
            .and_then(|t| t.split_whitespace().next())
            .is_some_and(|k| k.eq_ignore_ascii_case("STARTTLS"))
    });
    if !offered {
        return Ok(Upgrade::NotOffered(tcp));
    }
    match raw_command(&mut tcp, "STARTTLS\r\n", target.timeout).await {
        Ok((220, _)) => {}
        Ok((code, lines)) => {
            return Ok(Upgrade::Failed(format!(
                "STARTTLS refused: {code} {}",
                reply_text(&lines)
            )));
        }
        Err(m) => return Ok(Upgrade::Failed(format!("STARTTLS: {m}"))),
    }
    let handshake = tls::handshake(target.tls_config()?, &target.host, tcp);
    match tokio::time::timeout(target.timeout, handshake).await {
        Ok(Ok((stream, version))) => Ok(Upgrade::Tls(Box::new(stream), version)),
        Ok(Err(e)) => Ok(Upgrade::Failed(e.to_string())),
        Err(_) => Ok(Upgrade::Failed("TLS handshake timed out".into())),
    }
}

/// lettre's connection over `stream`, which starts with a greeting.
async fn over(
    target: &Target,
    stream: Box<dyn lettre::transport::smtp::client::AsyncTokioStream>,
    hello: &ClientId,
) -> Result<AsyncSmtpConnection, TryEnd> {
    tokio::time::timeout(
        target.timeout,
        AsyncSmtpConnection::connect_with_transport(stream, hello),
    )
    .await
    .map_err(|_| TryEnd::NoReply(Stage::Connect, "no greeting in time".into()))?
    .map_err(|e| end_of(Stage::Connect, &e))
}

/// After a STARTTLS done here, lettre reads this as the greeting and sends its own EHLO.
const REPLAYED_GREETING: &[u8] = b"220 ready\r\n";

/// Connects, greets, secures and authenticates. Direct delivery
/// (`SmtpTls::Opportunistic`) uses STARTTLS when the MX offers it and, when the
/// handshake fails, connects once more without it, as MTAs do (SPEC §12).
pub async fn connect(target: &Target) -> Result<Session, TryEnd> {
    let hello = ClientId::Domain(target.ehlo.clone());
    let (mut conn, tls) = match target.tls {
        SmtpTls::Implicit => {
            let tcp = tcp(target).await?;
            let peer = tcp.peer_addr();
            let (stream, version) = tokio::time::timeout(
                target.timeout,
                tls::handshake(target.tls_config()?, &target.host, tcp),
            )
            .await
            .map_err(|_| TryEnd::NoReply(Stage::Connect, "TLS handshake timed out".into()))?
            .map_err(|e| TryEnd::NoReply(Stage::Connect, e.to_string()))?;
            let stream = tls::Replayed::new(Vec::new(), stream, peer);
            (over(target, Box::new(stream), &hello).await?, Some(version))
        }
        SmtpTls::None => (
            over(target, Box::new(tcp(target).await?), &hello).await?,
            None,
        ),
        SmtpTls::StartTls | SmtpTls::Opportunistic => {
            let tcp = tcp(target).await?;
            let peer = tcp.peer_addr();
            let required = target.tls == SmtpTls::StartTls;
            match starttls(target, tcp, &hello).await? {
                Upgrade::Tls(stream, version) => {
                    let stream = tls::Replayed::new(REPLAYED_GREETING.to_vec(), *stream, peer);
                    (over(target, Box::new(stream), &hello).await?, Some(version))
                }
                Upgrade::NotOffered(_) if required => {
                    return Err(TryEnd::NoReply(
                        Stage::Connect,
                        "the server does not offer STARTTLS, which tls=starttls requires".into(),
                    ));
                }
                Upgrade::NotOffered(tcp) => {
                    let stream = tls::Replayed::new(REPLAYED_GREETING.to_vec(), tcp, peer);
                    (over(target, Box::new(stream), &hello).await?, None)
                }
                Upgrade::Failed(m) if required => {
                    return Err(TryEnd::NoReply(Stage::Connect, m));
                }
                Upgrade::Failed(m) => {
                    tracing::info!(host = %target.host, reason = %m, "STARTTLS failed; trying once more without TLS");
                    (
                        over(target, Box::new(self::tcp(target).await?), &hello).await?,
                        None,
                    )
                }
            }
        }
    };
    let pipelining = offers_pipelining(&mut conn, &hello).await?;
    if let Some((user, pass)) = &target.credentials {
        conn.auth(
            &[Mechanism::Plain, Mechanism::Login],
            &Credentials::new(user.clone(), pass.clone()),
        )
        .await
        .map_err(|e| end_of(Stage::Connect, &e))?;
    }
    Ok(Session {
        conn,
        pipelining,
        tls,
    })
}

/// Asks EHLO again for what lettre's server info leaves out: it keeps only the
/// extensions lettre itself uses, and PIPELINING is not one of them. Before AUTH,
/// since a new EHLO may reset an authenticated session.
async fn offers_pipelining(
    conn: &mut AsyncSmtpConnection,
    hello: &ClientId,
) -> Result<bool, TryEnd> {
    match conn.command(Ehlo::new(hello.clone())).await {
        Ok(reply) => Ok(reply.message().any(|line| {
            line.split_whitespace()
                .next()
                .is_some_and(|keyword| keyword.eq_ignore_ascii_case("PIPELINING"))
        })),
        // A refused repeat EHLO leaves the session as it was: go on without pipelining.
        Err(e) if e.status().is_some() => Ok(false),
        Err(e) => Err(end_of(Stage::Connect, &e)),
    }
}

/// [`transact`] with a deadline: lettre's async connection has none after connecting, so
/// a server that stops answering would hold the try forever.
pub async fn transact_within(
    session: &mut Session,
    message: &Prepared,
    deadline: Duration,
) -> Transaction {
    match tokio::time::timeout(deadline, transact(session, message)).await {
        Ok(t) => t,
        Err(_) => Transaction {
            end: TryEnd::NoReply(
                Stage::Data,
                format!("the server did not answer within {}s", deadline.as_secs()),
            ),
            copy: None,
            reusable: false,
        },
    }
}

fn failed(end: TryEnd, reusable: bool) -> Transaction {
    Transaction {
        end,
        copy: None,
        reusable,
    }
}

/// MAIL, RCPT (customer, then copy), DATA, message. A refused customer RCPT ends the
/// transaction with RSET: the message is not sent to the copy alone.
pub async fn transact(session: &mut Session, message: &Prepared) -> Transaction {
    let conn = &mut session.conn;
    let from = match message.envelope_from.parse() {
        Ok(a) => a,
        Err(e) => {
            return failed(
                TryEnd::NoReply(Stage::MailFrom, format!("bad envelope sender: {e}")),
                true,
            );
        }
    };
    let mut parameters = Vec::new();
    if !message.bytes.is_ascii() {
        parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    let mail = Mail::new(Some(from), parameters);
    let rcpt = |a: &crate::model::EmailAddress| lettre::Address::new(a.local_part(), a.domain());
    let customer = match rcpt(&message.customer) {
        Ok(a) => a,
        Err(e) => {
            return failed(
                TryEnd::NoReply(Stage::Rcpt, format!("bad recipient: {e}")),
                true,
            );
        }
    };
    // With a copy, the customer's RCPT must be judged before the copy's is sent.
    if session.pipelining && message.copy.is_none() {
        return transact_pipelined(conn, mail, Rcpt::new(customer, vec![]), message).await;
    }
    if let Err(e) = conn.command(mail).await {
        return failed(end_of(Stage::MailFrom, &e), reset(conn, &e).await);
    }
    if let Err(e) = conn.command(Rcpt::new(customer, vec![])).await {
        return failed(end_of(Stage::Rcpt, &e), reset(conn, &e).await);
    }
    let mut copy = None;
    if let Some(c) = &message.copy {
        copy = Some(match rcpt(c) {
            Ok(a) => match conn.command(Rcpt::new(a, vec![])).await {
                Ok(r) => reply_of(&r).line(),
                Err(e) => match end_of(Stage::Rcpt, &e) {
                    TryEnd::Refused(_, reply) => reply.line(),
                    other => {
                        // The connection broke during the copy's RCPT: the customer's try fails too.
                        return Transaction {
                            end: other,
                            copy: Some(e.to_string()),
                            reusable: false,
                        };
                    }
                },
            },
            Err(e) => format!("not sent: {e}"),
        });
    }
    if let Err(e) = conn.command(Data).await {
        return Transaction {
            end: end_of(Stage::Data, &e),
            copy,
            reusable: reset(conn, &e).await,
        };
    }
    send_content(conn, message, copy).await
}

/// MAIL, RCPT and DATA in one write (RFC 2920), then their three replies in order. The
/// first refusal ends the try at its stage; the server answers the commands after it
/// with 503s, which are read so the session stays in step and can be reused.
async fn transact_pipelined(
    conn: &mut AsyncSmtpConnection,
    mail: Mail,
    rcpt: Rcpt,
    message: &Prepared,
) -> Transaction {
    const STAGES: [Stage; 3] = [Stage::MailFrom, Stage::Rcpt, Stage::Data];
    let mut replies = vec![conn.command(format!("{mail}{rcpt}{Data}")).await];
    // After a network error nothing more can be read.
    while replies.len() < STAGES.len() && !replies.last().is_some_and(is_network_error) {
        replies.push(conn.read_response().await);
    }
    let refused = replies
        .iter()
        .zip(STAGES)
        .find_map(|(reply, stage)| reply.as_ref().err().map(|e| (stage, e)));
    let Some((stage, e)) = refused else {
        // 354: the server waits for the content.
        return send_content(conn, message, None).await;
    };
    let end = end_of(stage, e);
    // A network error ends the session; so does a 354 after a refusal (a server that
    // opened DATA with no recipient), since only the content or a hang-up can follow.
    let in_step = replies.len() == STAGES.len()
        && !replies.iter().any(is_network_error)
        && replies.last().is_some_and(|r| r.is_err());
    let reusable = in_step && conn.command(Rset).await.is_ok() && !conn.has_broken();
    failed(end, reusable)
}

fn is_network_error<T>(reply: &Result<T, lettre::transport::smtp::Error>) -> bool {
    reply.as_ref().is_err_and(|e| e.status().is_none())
}

/// The message after DATA's 354, and the server's verdict on it.
async fn send_content(
    conn: &mut AsyncSmtpConnection,
    message: &Prepared,
    copy: Option<String>,
) -> Transaction {
    // One write for the content and its final dot where lettre would make two: with
    // TCP_NODELAY each write is a packet, and a wake-up for the server.
    let sent = match std::str::from_utf8(&message.bytes) {
        Ok(text) => conn.command(DotStuffed(text)).await,
        Err(_) => conn.message(&message.bytes).await,
    };
    match sent {
        Ok(response) => Transaction {
            end: TryEnd::Accepted(reply_of(&response)),
            copy,
            reusable: !conn.has_broken(),
        },
        Err(e) => Transaction {
            end: end_of(Stage::Data, &e),
            copy,
            reusable: e.status().is_some() && !conn.has_broken(),
        },
    }
}

/// A message's content as sent after DATA (RFC 5321 §4.5.2): a dot that starts a line
/// is doubled, and CRLF "." CRLF ends it, exactly as lettre's own encoder does.
struct DotStuffed<'a>(&'a str);

impl std::fmt::Display for DotStuffed<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut lines = self.0.split("\r\n").peekable();
        while let Some(line) = lines.next() {
            if line.starts_with('.') {
                f.write_str(".")?;
            }
            f.write_str(line)?;
            if lines.peek().is_some() {
                f.write_str("\r\n")?;
            }
        }
        f.write_str("\r\n.\r\n")
    }
}

/// After a refused command the session is still good: RSET and keep it. After a network
/// error it is not.
async fn reset(conn: &mut AsyncSmtpConnection, e: &lettre::transport::smtp::Error) -> bool {
    if e.status().is_none() && (e.is_timeout() || conn.has_broken()) {
        return false;
    }
    conn.command(Rset).await.is_ok() && !conn.has_broken()
}

/// How a pooled connection that the server closed while idle answers the next MAIL:
/// `421` (RFC 5321 §3.8: the server is closing the channel) or nothing.
fn closed_while_idle(end: &TryEnd) -> bool {
    match end {
        TryEnd::NoReply(Stage::MailFrom, _) => true,
        TryEnd::Refused(Stage::MailFrom, reply) => reply.code == 421,
        _ => false,
    }
}

/// Idle connections to one smarthost, reused across messages.
pub struct Pool {
    target: Target,
    idle: Mutex<Vec<Session>>,
    keep: usize,
}

impl Pool {
    /// A pool keeping up to `keep` idle connections.
    pub fn new(target: Target, keep: usize) -> Pool {
        Pool {
            target,
            idle: Mutex::new(Vec::new()),
            keep,
        }
    }

    /// The server's label.
    pub fn label(&self) -> String {
        self.target.label()
    }

    /// Sends one message, on a pooled connection when there is one; returns the
    /// transaction and the TLS version it ran over. A pooled connection the server closed
    /// while it sat idle (`421`, or no reply at all to MAIL) is dropped and the message
    /// goes on another one, or a new one: that is not a try of this message (SPEC §12).
    pub async fn send(&self, message: &Prepared) -> (Transaction, Option<String>) {
        let deadline = self.target.timeout * 4;
        while let Some(mut conn) = self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            let t = transact_within(&mut conn, message, deadline).await;
            if closed_while_idle(&t.end) {
                tracing::debug!(server = %self.label(), "a pooled connection was closed while idle; reopening");
                continue;
            }
            let tls = conn.tls.clone();
            self.give_back(conn, t.reusable);
            return (t, tls);
        }
        match connect(&self.target).await {
            Ok(mut conn) => {
                let t = transact_within(&mut conn, message, deadline).await;
                let tls = conn.tls.clone();
                self.give_back(conn, t.reusable);
                (t, tls)
            }
            Err(end) => (
                Transaction {
                    end,
                    copy: None,
                    reusable: false,
                },
                None,
            ),
        }
    }

    fn give_back(&self, conn: Session, reusable: bool) {
        if reusable
            && let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.keep
        {
            idle.push(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DotStuffed;

    #[test]
    fn content_is_dot_stuffed_and_ended_with_a_lone_dot() {
        let cases = [
            ("Subject: x\r\n\r\nbody", "Subject: x\r\n\r\nbody\r\n.\r\n"),
            (
                ".first\r\nmid.dle\r\n..two\r\n.",
                "..first\r\nmid.dle\r\n...two\r\n..\r\n.\r\n",
            ),
            ("ends with CRLF\r\n", "ends with CRLF\r\n\r\n.\r\n"),
            ("bare\n.dot stays", "bare\n.dot stays\r\n.\r\n"),
            ("cr\r\r\n.x", "cr\r\r\n..x\r\n.\r\n"),
        ];
        for (content, wire) in cases {
            assert_eq!(DotStuffed(content).to_string(), wire, "{content:?}");
        }
    }
}
