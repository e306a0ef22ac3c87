//! A minimal HTTP/1.1 keep-alive client, just enough to drive the server under test.
//!
//! Requests are built once as bytes and written whole; answers are read by
//! `Content-Length` (or chunked encoding). It does no pooling, redirects, TLS or
//! compression: each load task owns one connection and sends one request at a time,
//! which is exactly what "N concurrent clients" means in SPEC §8, and costs the
//! benchmark little CPU on a machine it shares with the server.

use anyhow::{Context, anyhow, bail};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One keep-alive connection to the server under test.
pub struct Connection {
    /// Where to (re)connect.
    addr: SocketAddr,
    /// The open stream, `None` after the server closed it.
    stream: Option<TcpStream>,
    /// Bytes read but not yet consumed.
    buffer: Vec<u8>,
}

/// The parts of an answer the benchmark looks at.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// Every `Set-Cookie` value, for the dashboard login.
    pub set_cookies: Vec<String>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Connection {
    /// Connects to `addr`.
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Connection> {
        let mut connection = Connection {
            addr,
            stream: None,
            buffer: Vec::with_capacity(16 * 1024),
        };
        connection.reconnect().await?;
        Ok(connection)
    }

    async fn reconnect(&mut self) -> anyhow::Result<&mut TcpStream> {
        let stream = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("cannot connect to {}", self.addr))?;
        // Requests are small and answered one at a time; Nagle would only add delay.
        stream.set_nodelay(true)?;
        self.buffer.clear();
        Ok(self.stream.insert(stream))
    }

    /// Sends `request` (built by [`request`]) and reads the answer. A connection the
    /// server closed while idle is reopened once and the request sent again.
    pub async fn send(&mut self, request: &[u8]) -> anyhow::Result<Answer> {
        let fresh = self.stream.is_none();
        if fresh {
            self.reconnect().await?;
        }
        match self.try_send(request).await {
            Err(_) if !fresh => {
                self.reconnect().await?;
                self.try_send(request).await
            }
            result => result,
        }
    }

    async fn try_send(&mut self, request: &[u8]) -> anyhow::Result<Answer> {
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| anyhow!("the connection is closed"))?;
        stream.write_all(request).await?;
        self.read_answer().await
    }

    async fn read_answer(&mut self) -> anyhow::Result<Answer> {
        let head_end = loop {
            if let Some(at) = find(&self.buffer, b"\r\n\r\n") {
                break at;
            }
            self.fill().await?;
        };
        let head =
            std::str::from_utf8(&self.buffer[..head_end]).context("answer head is not UTF-8")?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| anyhow!("bad status line `{status_line}`"))?;
        let (mut length, mut chunked, mut close, mut set_cookies) =
            (None, false, false, Vec::new());
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => {
                    length = Some(value.parse::<usize>().context("bad Content-Length")?)
                }
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                "set-cookie" => set_cookies.push(value.to_owned()),
                _ => {}
            }
        }
        self.buffer.drain(..head_end + 4);
        let body = if chunked {
            self.read_chunked().await?
        } else {
            let length = length.unwrap_or(0);
            while self.buffer.len() < length {
                self.fill().await?;
            }
            self.buffer.drain(..length).collect()
        };
        if close {
            self.stream = None;
        }
        Ok(Answer {
            status,
            set_cookies,
            body,
        })
    }

    async fn read_chunked(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(at) = find(&self.buffer, b"\r\n") {
                    break at;
                }
                self.fill().await?;
            };
            let size_text = std::str::from_utf8(&self.buffer[..line_end])?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .with_context(|| format!("bad chunk size `{size_text}`"))?;
            self.buffer.drain(..line_end + 2);
            // The chunk and its CRLF; the last chunk (size 0) is followed by an empty
            // trailer line, since the server sends no trailers.
            while self.buffer.len() < size + 2 {
                self.fill().await?;
            }
            body.extend(self.buffer.drain(..size));
            self.buffer.drain(..2);
            if size == 0 {
                return Ok(body);
            }
        }
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| anyhow!("the connection is closed"))?;
        let mut chunk = [0u8; 16 * 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            self.stream = None;
            bail!("the server closed the connection");
        }
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// Builds a request with `Host`, the given headers and, when `body` is not empty, a
/// `Content-Length`.
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: bench\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
