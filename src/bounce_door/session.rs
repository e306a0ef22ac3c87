//! One SMTP session of the bounce door: line framing and limits here, command parsing
//! by `smtp-proto`, each accepted message handed to [`crate::app::App::receive_bounce`].

use super::Shared;
use crate::app::IncomingBounce;
use crate::delivery::render::decision_id_from_verp;
use crate::store::StoreError;
use smtp_proto::request::receiver::{DataReceiver, DummyDataReceiver};
use smtp_proto::{Error as ParseError, Request};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// How a conversation ended.
enum Ended {
    /// Closed (QUIT, a limit, EOF, an I/O error): nothing more to do.
    Closed,
    /// The client asked for TLS and got `220`: hand the stream to the TLS acceptor.
    StartTls,
}

/// What the next command line was.
enum Input {
    /// A complete line, its terminator included.
    Line(Vec<u8>),
    /// A line longer than the limit began (its rest is being skipped).
    TooLong,
    /// The client closed, failed, or the connection broke.
    Gone,
    /// The client said nothing for the idle time.
    Idle,
}

/// Why reading stopped.
enum Stop {
    Gone,
    Idle,
}

/// The socket with its input and output buffers.
struct Io<S> {
    stream: S,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Inside an overlong line: skip until its end.
    skipping: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Io<S> {
    fn new(stream: S) -> Io<S> {
        Io {
            stream,
            input: Vec::with_capacity(4096),
            output: Vec::with_capacity(512),
            skipping: false,
        }
    }

    /// Queues one reply line; `text` is cleaned of line breaks and shortened.
    fn reply(&mut self, code: u16, text: &str) {
        let clean: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(400)
            .collect();
        self.output
            .extend_from_slice(format!("{code} {clean}\r\n").as_bytes());
    }

    /// Sends the queued replies (PIPELINING: replies are written only when the door is
    /// about to wait for the client, so a pipelined batch gets its replies in one go).
    async fn flush(&mut self, shared: &Shared) -> Result<(), Stop> {
        if self.output.is_empty() {
            return Ok(());
        }
        let written = tokio::time::timeout(shared.limits.idle, async {
            self.stream.write_all(&self.output).await?;
            self.stream.flush().await
        })
        .await;
        self.output.clear();
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Stop::Gone),
            Err(_) => Err(Stop::Idle),
        }
    }

    /// Flushes, then reads what the client sends next into `input`.
    async fn read_more(&mut self, shared: &Shared) -> Result<(), Stop> {
        self.flush(shared).await?;
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout(shared.limits.idle, self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => Err(Stop::Gone),
            Ok(Ok(n)) => {
                self.input.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(_) => Err(Stop::Idle),
        }
    }

    /// The next command line.
    async fn next_line(&mut self, shared: &Shared) -> Input {
        let max = shared.limits.max_line;
        loop {
            if let Some(pos) = self.input.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.input.drain(..=pos).collect();
                if self.skipping {
                    self.skipping = false;
                    continue;
                }
                if line.len() > max {
                    return Input::TooLong;
                }
                return Input::Line(line);
            }
            if self.input.len() > max {
                self.input.clear();
                if !self.skipping {
                    self.skipping = true;
                    return Input::TooLong;
                }
            }
            match self.read_more(shared).await {
                Ok(()) => {}
                Err(Stop::Gone) => return Input::Gone,
                Err(Stop::Idle) => return Input::Idle,
            }
        }
    }

    /// The message text after `354`, dot-unstuffed, up to its `CRLF.CRLF`. `Ok(None)`
    /// when it was longer than `max` (read to its end and dropped).
    async fn message(&mut self, shared: &Shared) -> Result<Option<Vec<u8>>, Stop> {
        let max = shared.limits.max_message;
        let mut receiver = DataReceiver::new();
        let mut message = Vec::new();
        let mut discard: Option<DummyDataReceiver> = None;
        loop {
            if !self.input.is_empty() {
                let mut bytes = self.input.iter();
                let done = match discard.as_mut() {
                    Some(d) => d.ingest(&mut bytes),
                    None => receiver.ingest(&mut bytes, &mut message),
                };
                let used = self.input.len() - bytes.as_slice().len();
                self.input.drain(..used);
                if discard.is_none() && message.len() > max {
                    discard = Some(DummyDataReceiver::new_data(&receiver));
                    message = Vec::new();
                }
                if done {
                    return Ok(discard.is_none().then_some(message));
                }
            }
            self.read_more(shared).await?;
        }
    }
}

/// The state of one mail transaction.
#[derive(Default)]
struct Transaction {
    mail: bool,
    /// `RCPT` commands accepted (a repeated address counts again).
    accepted: usize,
    /// The distinct accepted addresses.
    recipients: Vec<String>,
}

/// Serves one connection to its end.
pub(super) async fn run(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let life = shared.limits.session;
    let ended = tokio::time::timeout(life, serve(stream, &shared)).await;
    if ended.is_err() {
        tracing::debug!(%peer, "bounce door: session time limit reached");
    }
}

async fn serve(stream: TcpStream, shared: &Shared) {
    let mut io = Io::new(stream);
    io.reply(
        220,
        &format!("{} ESMTP mailtrail bounce door", shared.hostname),
    );
    let mut counts = Counts::default();
    if let Ended::StartTls = converse(&mut io, shared, false, &mut counts).await {
        let Some(acceptor) = shared.tls.clone() else {
            return;
        };
        // Whatever the client pipelined after STARTTLS is dropped (RFC 3207 §4.2).
        let plain = io.stream;
        let Ok(Ok(tls)) = tokio::time::timeout(shared.limits.idle, acceptor.accept(plain)).await
        else {
            return;
        };
        let mut io = Io::new(tls);
        converse(&mut io, shared, true, &mut counts).await;
        linger(io.stream).await;
    } else {
        linger(io.stream).await;
    }
}

/// Closes our side, then reads and drops what the client still sends (for a moment, up
/// to a few MB): closing with unread input would reset the connection and could destroy
/// the last reply (`421 …`) before the client read it.
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let _ = stream.shutdown().await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        let mut sink = [0u8; 16 * 1024];
        let mut left: usize = 8 << 20;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// Commands and refusals so far in this session (kept across STARTTLS).
#[derive(Default)]
struct Counts {
    commands: usize,
    errors: usize,
}

/// The command loop, on a plain or TLS stream.
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut Io<S>,
    shared: &Shared,
    tls_active: bool,
    counts: &mut Counts,
) -> Ended {
    let host = shared.hostname.as_str();
    let mut greeted = false;
    let mut tx = Transaction::default();
    loop {
        if counts.errors >= shared.limits.max_errors {
            io.reply(421, &format!("4.7.0 {host} Too many errors, closing"));
            let _ = io.flush(shared).await;
            return Ended::Closed;
        }
        let line = match io.next_line(shared).await {
            Input::Line(line) => line,
            Input::TooLong => {
                counts.errors += 1;
                io.reply(500, "5.5.2 Line too long");
                continue;
            }
            Input::Gone => return Ended::Closed,
            Input::Idle => {
                io.reply(421, &format!("4.4.2 {host} Idle too long, closing"));
                let _ = io.flush(shared).await;
                return Ended::Closed;
            }
        };
        counts.commands += 1;
        if counts.commands > shared.limits.max_commands {
            io.reply(421, &format!("4.7.0 {host} Too many commands, closing"));
            let _ = io.flush(shared).await;
            return Ended::Closed;
        }
        if !line.ends_with(b"\r\n") {
            counts.errors += 1;
            io.reply(500, "5.5.2 Lines must end with CRLF, not a bare LF");
            continue;
        }
        if line.contains(&0) {
            counts.errors += 1;
            io.reply(500, "5.5.2 NUL bytes are not allowed in commands");
            continue;
        }
        let request = match Request::parse(&mut line.iter()) {
            Ok(r) => r.into_owned(),
            Err(e) => {
                counts.errors += 1;
                let (code, text) = parse_error(e);
                io.reply(code, &text);
                continue;
            }
        };
        match request {
            Request::Ehlo { .. } => {
                greeted = true;
                tx = Transaction::default();
                let mut lines = vec![
                    host.to_owned(),
                    "PIPELINING".into(),
                    "8BITMIME".into(),
                    format!("SIZE {}", shared.limits.max_message),
                    "ENHANCEDSTATUSCODES".into(),
                ];
                if shared.tls.is_some() && !tls_active {
                    lines.push("STARTTLS".into());
                }
                let last = lines.len() - 1;
                for (i, l) in lines.iter().enumerate() {
                    let sep = if i == last { ' ' } else { '-' };
                    io.output
                        .extend_from_slice(format!("250{sep}{l}\r\n").as_bytes());
                }
            }
            Request::Helo { .. } => {
                greeted = true;
                tx = Transaction::default();
                io.reply(250, host);
            }
            Request::Lhlo { .. } => {
                counts.errors += 1;
                io.reply(500, "5.5.1 This is SMTP, not LMTP");
            }
            Request::Mail { from } => {
                if !greeted {
                    counts.errors += 1;
                    io.reply(503, "5.5.1 Say EHLO first");
                } else if tx.mail {
                    counts.errors += 1;
                    io.reply(503, "5.5.1 Nested MAIL command");
                } else if from.size > shared.limits.max_message {
                    io.reply(552, "5.3.4 Message too big for this door");
                } else {
                    tx.mail = true;
                    io.reply(250, "2.1.0 Ok");
                }
            }
            Request::Rcpt { to } => {
                if !tx.mail {
                    counts.errors += 1;
                    io.reply(503, "5.5.1 MAIL first");
                } else if tx.accepted >= shared.limits.max_recipients {
                    io.reply(452, "4.5.3 Too many recipients");
                } else {
                    let (code, text) = recipient(shared, &to.address).await;
                    if code == 250 {
                        tx.accepted += 1;
                        if !tx.recipients.contains(&to.address) {
                            tx.recipients.push(to.address);
                        }
                    } else if code >= 500 {
                        counts.errors += 1;
                    }
                    io.reply(code, &text);
                }
            }
            Request::Data => {
                if !tx.mail {
                    counts.errors += 1;
                    io.reply(503, "5.5.1 MAIL first");
                    continue;
                }
                if tx.recipients.is_empty() {
                    counts.errors += 1;
                    io.reply(554, "5.5.1 No valid recipients");
                    continue;
                }
                io.reply(354, "End data with <CR><LF>.<CR><LF>");
                let message = match io.message(shared).await {
                    Ok(m) => m,
                    Err(Stop::Gone) => return Ended::Closed,
                    Err(Stop::Idle) => {
                        io.reply(421, &format!("4.4.2 {host} Idle too long, closing"));
                        let _ = io.flush(shared).await;
                        return Ended::Closed;
                    }
                };
                let recipients = std::mem::take(&mut tx.recipients);
                tx = Transaction::default();
                let Some(message) = message else {
                    io.reply(552, "5.3.4 Message too big for this door");
                    continue;
                };
                let (code, text) = deliver(shared, message, recipients).await;
                if code == 250 {
                    // A session that delivers is making progress: the command limit
                    // bounds the commands between two messages, so an MTA may send many
                    // bounces over one connection.
                    counts.commands = 0;
                }
                io.reply(code, &text);
            }
            Request::Bdat { .. } => {
                // CHUNKING is not offered; the chunk that follows is read as commands
                // and refused, which the error limit bounds.
                counts.errors += 1;
                io.reply(502, "5.5.1 BDAT is not offered here");
            }
            Request::Rset => {
                tx = Transaction::default();
                io.reply(250, "2.0.0 Ok");
            }
            Request::Noop { .. } => io.reply(250, "2.0.0 Ok"),
            Request::Vrfy { .. } => io.reply(252, "2.5.0 Cannot VRFY; send the message"),
            Request::Quit => {
                io.reply(221, "2.0.0 Bye");
                let _ = io.flush(shared).await;
                return Ended::Closed;
            }
            Request::StartTls => {
                if tls_active {
                    counts.errors += 1;
                    io.reply(503, "5.5.1 TLS is already active");
                } else if shared.tls.is_none() {
                    counts.errors += 1;
                    io.reply(502, "5.5.1 STARTTLS is not offered here");
                } else {
                    io.reply(220, "2.0.0 Ready to start TLS");
                    if io.flush(shared).await.is_err() {
                        return Ended::Closed;
                    }
                    return Ended::StartTls;
                }
            }
            Request::Auth { .. }
            | Request::Expn { .. }
            | Request::Help { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => {
                counts.errors += 1;
                io.reply(502, "5.5.1 Command not implemented");
            }
        }
    }
}

/// The reply to a line `smtp-proto` could not parse.
fn parse_error(e: ParseError) -> (u16, String) {
    match e {
        ParseError::UnknownCommand => (500, "5.5.1 Unknown command".into()),
        ParseError::InvalidSenderAddress => (501, "5.1.7 Bad sender address syntax".into()),
        ParseError::InvalidRecipientAddress => (501, "5.1.3 Bad recipient address syntax".into()),
        ParseError::SyntaxError { syntax } => (501, format!("5.5.4 Syntax: {syntax}")),
        ParseError::InvalidParameter { param } => (501, format!("5.5.4 Invalid parameter {param}")),
        ParseError::UnsupportedParameter { param } => {
            (555, format!("5.5.4 Unsupported parameter {param}"))
        }
        ParseError::ResponseTooLong => (500, "5.5.2 Line too long".into()),
        ParseError::NeedsMoreData { .. } | ParseError::InvalidResponse { .. } => {
            (500, "5.5.2 Syntax error".into())
        }
    }
}

/// Whether `address` is one the door takes mail for: the feedback address, or the VERP
/// address of a known decision.
async fn recipient(shared: &Shared, address: &str) -> (u16, String) {
    if shared
        .feedback
        .as_deref()
        .is_some_and(|f| f.eq_ignore_ascii_case(address))
    {
        return (250, "2.1.5 Ok: feedback address".into());
    }
    let Some(id) = decision_id_from_verp(address).filter(|id| {
        id.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    }) else {
        return (
            550,
            "5.1.1 No such recipient here: only bounces+{decision id}@… addresses".into(),
        );
    };
    match shared.app.store.decision_exists(id.to_owned()).await {
        Ok(true) => (250, "2.1.5 Ok".into()),
        Ok(false) => (550, "5.1.1 No such recipient here: unknown decision".into()),
        Err(e) => {
            tracing::warn!(error = %e, "bounce door: cannot look up a decision");
            (
                451,
                "4.3.0 Cannot check the recipient now, try again later".into(),
            )
        }
    }
}

/// Hands the message to the bounce pipeline once per recipient; `250` only when every
/// call returned (each commits before it returns).
async fn deliver(shared: &Shared, message: Vec<u8>, recipients: Vec<String>) -> (u16, String) {
    let mut kinds = Vec::new();
    let last = recipients.len().saturating_sub(1);
    let mut message = Some(message);
    for (i, rcpt) in recipients.into_iter().enumerate() {
        let raw = if i == last {
            message.take().unwrap_or_default()
        } else {
            message.clone().unwrap_or_default()
        };
        let incoming = IncomingBounce {
            raw,
            smtp_recipient: Some(rcpt),
        };
        match shared.app.receive_bounce(incoming, "smtp").await {
            Ok(answer) => kinds.push(answer.kind),
            Err(e) => return refusal(e),
        }
    }
    kinds.dedup();
    (250, format!("2.0.0 Ok: recorded ({})", kinds.join(", ")))
}

/// The reply for a message the pipeline did not take.
fn refusal(e: StoreError) -> (u16, String) {
    match e {
        StoreError::Invalid { message, .. } | StoreError::Refused { message, .. } => {
            (550, format!("5.6.0 {message}"))
        }
        StoreError::NotFound(what) => (550, format!("5.6.0 {what} not found")),
        StoreError::Conflict(message) => (550, format!("5.6.0 {message}")),
        e @ (StoreError::Database(_)
        | StoreError::Unavailable(_)
        | StoreError::WriterGone
        | StoreError::Corrupt(_)) => {
            tracing::warn!(error = %e, "bounce door: a message could not be recorded");
            (
                451,
                "4.3.0 Cannot record the message now, try again later".into(),
            )
        }
    }
}
