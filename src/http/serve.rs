//! The accept loop (SPEC §14 "Connections"): HTTP/1.1 through hyper with a timer, so a
//! client that sends nothing, half its headers or part of a promised body cannot hold a
//! connection forever, and a cap on open connections that still lets `/healthz` answer.
//!
//! - Request headers must arrive within [`HEADER_TIMEOUT`]. hyper's header timer also
//!   runs while a keep-alive connection waits for its next request, so an idle
//!   keep-alive connection is closed after that long, inside the 60 s of SPEC §14.
//! - A request body must arrive whole within [`BODY_TIMEOUT`] of its headers
//!   ([`Deadline`] wraps it; the extractors turn the error into 408).
//! - At most `max_connections` are served at once. Past the cap a few more connections
//!   (at most [`OVERFLOW`]) are accepted on a short leash: they answer `/healthz` and
//!   `/readyz`, everything else gets 503 with `Retry-After`, and they close after one
//!   request. Beyond that a new connection is closed at once, so the listen backlog never
//!   fills with sockets nobody reads.

use super::error::ApiError;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, header};
use axum::response::IntoResponse;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};

/// Request headers must arrive within this long (SPEC §14).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A request body must arrive within this long after its headers (SPEC §14).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections accepted past the cap, to answer health checks.
const OVERFLOW: usize = 128;
/// Headers of a connection past the cap must arrive this fast (a health check sends
/// them at once; a connection that sends nothing leaves room for the next one soon).
const OVERFLOW_HEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// How long shutdown waits for open requests to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` with at most `max_connections` open connections, until
/// `shutdown` resolves; then stops accepting, lets open requests finish (up to
/// [`DRAIN_TIMEOUT`]) and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    max_connections: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max_connections = max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max_connections));
    let overflow = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: wait for a socket to close instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => {
                let app = app.clone();
                let stop = stop_rx.clone();
                tokio::spawn(async move {
                    serve_connection(stream, peer, app, false, stop).await;
                    drop(slot);
                });
            }
            Err(_) if overflow.load(Ordering::Relaxed) < OVERFLOW => {
                overflow.fetch_add(1, Ordering::Relaxed);
                let overflow = Arc::clone(&overflow);
                let app = app.clone();
                let stop = stop_rx.clone();
                tokio::spawn(async move {
                    serve_connection(stream, peer, app, true, stop).await;
                    overflow.fetch_sub(1, Ordering::Relaxed);
                });
            }
            Err(_) => drop(stream),
        }
    }
    let _ = stop_tx.send(true);
    drop(listener);
    // Every connection holds a slot until it ends: all slots back means all are done.
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN_TIMEOUT, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("stopped waiting for open connections");
    }
    Ok(())
}

/// Serves one connection; `limited` for connections past the cap.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    limited: bool,
    mut stop: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(handle(app, peer, limited, request).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(if limited {
            OVERFLOW_HEADER_TIMEOUT
        } else {
            HEADER_TIMEOUT
        })
        .keep_alive(!limited);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, %peer, "connection ended");
            }
            return;
        }
        _ = stop.changed() => {}
    }
    // Shutting down: finish the request in flight, then close.
    connection.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, connection.as_mut()).await;
}

/// Routes one request; past the cap only the health checks get through.
async fn handle(
    app: Router,
    peer: SocketAddr,
    limited: bool,
    request: Request<Incoming>,
) -> Response<Body> {
    if limited && !matches!(request.uri().path(), "/healthz" | "/readyz") {
        let mut response = ApiError::Unavailable.into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return response;
    }
    let mut request = request.map(|body| Body::new(Deadline::new(body, BODY_TIMEOUT)));
    request.extensions_mut().insert(ConnectInfo(peer));
    match tower::ServiceExt::oneshot(app, request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// A request body that fails once its deadline passes.
pub struct Deadline {
    body: Incoming,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Deadline {
    fn new(body: Incoming, within: Duration) -> Self {
        Deadline {
            body,
            sleep: Box::pin(tokio::time::sleep(within)),
        }
    }
}

/// The body did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} seconds", BODY_TIMEOUT.as_secs())]
pub struct BodyTimeout;

impl hyper::body::Body for Deadline {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
