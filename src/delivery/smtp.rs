//! One SMTP transaction at a time, stage by stage, so every refusal is known by where it
//! came (SPEC §4 blames the relay for a 5xx before RCPT and the recipient after), and a
//! refused `copy_to` RCPT never spoils the customer's.
//!
//! lettre's connection does the protocol (greeting, EHLO, STARTTLS, AUTH, dot-stuffing);
//! this module decides what to send next. Smarthost connections are pooled and reused.

use super::SmtpTls;
use super::classify::{Reply, Stage, TryEnd};
use super::render::Prepared;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, MailBodyParameter, MailParameter};
use std::sync::Mutex;
use std::time::Duration;

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
    /// Extra trusted CA (PEM), for private relays and tests.
    pub ca_pem: Option<Vec<u8>>,
    pub timeout: Duration,
}

impl Target {
    /// `host:port` for attempt records.
    pub fn label(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn tls_parameters(&self) -> Result<TlsParameters, TryEnd> {
        let mut builder = TlsParameters::builder(self.host.clone());
        if let Some(pem) = &self.ca_pem {
            let cert = Certificate::from_pem(pem)
                .map_err(|e| TryEnd::NoReply(Stage::Connect, format!("bad CA certificate: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        builder
            .build_rustls()
            .map_err(|e| TryEnd::NoReply(Stage::Connect, format!("TLS setup failed: {e}")))
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

fn hello() -> ClientId {
    ClientId::Domain(hostname_or_localhost())
}

fn hostname_or_localhost() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| h.contains('.') && h.is_ascii())
        .unwrap_or_else(|| "localhost".to_owned())
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

/// Connects, greets, secures and authenticates.
pub async fn connect(target: &Target) -> Result<AsyncSmtpConnection, TryEnd> {
    let hello = hello();
    let mut conn = match target.tls {
        SmtpTls::Implicit => {
            let tls = Some(target.tls_parameters()?);
            AsyncSmtpConnection::connect_tokio1(
                (target.connect_to.as_str(), target.port),
                Some(target.timeout),
                &hello,
                tls,
                None,
            )
            .await
            .map_err(|e| end_of(Stage::Connect, &e))?
        }
        SmtpTls::None | SmtpTls::StartTls => {
            // Our own socket, for TCP_NODELAY: lettre writes a message's body and its
            // final "." separately, and with Nagle's algorithm the second write waits
            // for the server's delayed ACK (40 ms) on every message.
            let tcp = tokio::time::timeout(
                target.timeout,
                tokio::net::TcpStream::connect((target.connect_to.as_str(), target.port)),
            )
            .await
            .map_err(|_| TryEnd::NoReply(Stage::Connect, "connection timed out".into()))?
            .map_err(|e| TryEnd::NoReply(Stage::Connect, format!("cannot connect: {e}")))?;
            let _ = tcp.set_nodelay(true);
            tokio::time::timeout(
                target.timeout,
                AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello),
            )
            .await
            .map_err(|_| TryEnd::NoReply(Stage::Connect, "no greeting in time".into()))?
            .map_err(|e| end_of(Stage::Connect, &e))?
        }
    };
    if target.tls == SmtpTls::StartTls {
        conn.starttls(target.tls_parameters()?, &hello)
            .await
            .map_err(|e| end_of(Stage::Connect, &e))?;
    }
    if let Some((user, pass)) = &target.credentials {
        conn.auth(
            &[Mechanism::Plain, Mechanism::Login],
            &Credentials::new(user.clone(), pass.clone()),
        )
        .await
        .map_err(|e| end_of(Stage::Connect, &e))?;
    }
    Ok(conn)
}

/// [`transact`] with a deadline: lettre's async connection has none after connecting, so
/// a server that stops answering would hold the try forever.
pub async fn transact_within(
    conn: &mut AsyncSmtpConnection,
    message: &Prepared,
    deadline: Duration,
) -> Transaction {
    match tokio::time::timeout(deadline, transact(conn, message)).await {
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

/// MAIL, RCPT (customer, then copy), DATA, message. A refused customer RCPT ends the
/// transaction with RSET: the message is not sent to the copy alone.
pub async fn transact(conn: &mut AsyncSmtpConnection, message: &Prepared) -> Transaction {
    let failed = |end: TryEnd, reusable: bool| Transaction {
        end,
        copy: None,
        reusable,
    };
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
    if let Err(e) = conn.command(Mail::new(Some(from), parameters)).await {
        return failed(end_of(Stage::MailFrom, &e), reset(conn, &e).await);
    }
    let rcpt = |a: &crate::model::EmailAddress| lettre::Address::new(a.local_part(), a.domain());
    let customer = match rcpt(&message.customer) {
        Ok(a) => a,
        Err(e) => {
            let reusable = conn.command(Rset).await.is_ok();
            return failed(
                TryEnd::NoReply(Stage::Rcpt, format!("bad recipient: {e}")),
                reusable,
            );
        }
    };
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
    match conn.message(&message.bytes).await {
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

/// After a refused command the session is still good: RSET and keep it. After a network
/// error it is not.
async fn reset(conn: &mut AsyncSmtpConnection, e: &lettre::transport::smtp::Error) -> bool {
    if e.status().is_none() && (e.is_timeout() || conn.has_broken()) {
        return false;
    }
    conn.command(Rset).await.is_ok() && !conn.has_broken()
}

/// Idle connections to one smarthost, reused across messages.
pub struct Pool {
    target: Target,
    idle: Mutex<Vec<AsyncSmtpConnection>>,
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

    /// Sends one message, on a pooled connection when there is one. A pooled connection
    /// the server closed meanwhile gets one retry on a fresh connection.
    pub async fn send(&self, message: &Prepared) -> Transaction {
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let deadline = self.target.timeout * 4;
        if let Some(mut conn) = pooled {
            let t = transact_within(&mut conn, message, deadline).await;
            let stale = matches!(&t.end, TryEnd::NoReply(Stage::MailFrom, _));
            if !stale {
                self.give_back(conn, t.reusable);
                return t;
            }
        }
        match connect(&self.target).await {
            Ok(mut conn) => {
                let t = transact_within(&mut conn, message, deadline).await;
                self.give_back(conn, t.reusable);
                t
            }
            Err(end) => Transaction {
                end,
                copy: None,
                reusable: false,
            },
        }
    }

    fn give_back(&self, conn: AsyncSmtpConnection, reusable: bool) {
        if reusable
            && let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.keep
        {
            idle.push(conn);
        }
    }
}
