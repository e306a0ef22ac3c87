//! `mailtrail bench webhooks` (issue 13): events per second delivered from the outbox
//! to a local receiver that answers 200 at once, against the receiver's raw rate
//! measured with the same HTTP client and the same concurrency (target ≥ 0.3x), on the
//! engine of `--db` (SQLite, or a scratch database on the PostgreSQL server named).
//!
//! The events (`address.suppressed`, one per address) are written first, in one
//! transaction; the measured time runs from the start of the real delivery loop
//! (`delivery::webhooks`) until every message is marked delivered in the store.

use crate::app::App;
use crate::bench::scratch::ScratchDb;
use crate::config::Config;
use crate::model::{EmailAddress, SuppressionReason};
use crate::store::{DbLocation, NewSuppression, Store, StoreOptions};
use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The figures of one run.
#[derive(Clone, Debug, Serialize)]
pub struct WebhookFigures {
    /// Events per second, outbox to receiver to `delivered`.
    pub events_per_sec: f64,
    /// The receiver's raw rate with the same client and concurrency (requests/s).
    pub raw_per_sec: f64,
    /// `events_per_sec / raw_per_sec` (target ≥ 0.3).
    pub ratio: f64,
    /// Events delivered in the measured run.
    pub events: usize,
    /// `sqlite` or `postgres`.
    pub engine: &'static str,
}

/// Runs the measurement.
pub async fn measure(base: &Config, quick: bool) -> anyhow::Result<WebhookFigures> {
    let events = if quick { 2_000 } else { 10_000 };
    let (port, received) = start_receiver()?;
    let url = format!("http://127.0.0.1:{port}/hook");
    let raw = raw_rate(&url, events).await?;
    let dir = crate::bench::server::Workdir::new("webhooks")?;
    let server = match &base.db {
        DbLocation::Sqlite(_) => None,
        DbLocation::Postgres(url) => Some(url.as_str()),
    };
    let db = ScratchDb::new(server, &dir.path, "webhooks").await?;
    let engine = match db.location() {
        DbLocation::Sqlite(_) => "sqlite",
        DbLocation::Postgres(_) => "postgres",
    };
    let store = Store::connect(db.location(), StoreOptions::default()).await?;
    let mut config = base.clone();
    config.db = db.location().clone();
    config.poll_interval = Duration::from_millis(20);
    let app = App::new(store.clone(), config)?;
    app.create_webhook(url, vec!["*".into()], None, "bench".into())
        .await?;
    let rows = (0..events)
        .map(|i| {
            let email = EmailAddress::parse(&format!("user{i}@hooks.example"))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(NewSuppression::plain(
                email,
                SuppressionReason::Import,
                None,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    store.import_suppressions(rows, "bench".into()).await?;
    let before = received.load(Ordering::Relaxed);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let task = crate::delivery::webhooks::spawn(app, stop_rx);
    loop {
        let delivered = store.webhook_messages_delivered().await?;
        if delivered as usize >= events {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("only {delivered} of {events} events delivered in 300 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let _ = stop_tx.send(true);
    let _ = task.await;
    let got = received.load(Ordering::Relaxed) - before;
    if (got as usize) < events {
        bail!("the receiver counted {got} requests for {events} events");
    }
    drop(store);
    db.close().await;
    let events_per_sec = events as f64 / elapsed.as_secs_f64();
    Ok(WebhookFigures {
        events_per_sec,
        raw_per_sec: raw,
        ratio: events_per_sec / raw.max(f64::MIN_POSITIVE),
        events,
        engine,
    })
}

/// The receiver's raw rate: `n` POSTs of an event-sized signed body, as many at once
/// as the delivery loop sends, with the delivery loop's client.
async fn raw_rate(url: &str, n: usize) -> anyhow::Result<f64> {
    let client = crate::delivery::webhooks::client()?;
    let secret = crate::delivery::webhooks::new_secret();
    let body = serde_json::json!({
        "type": "address.suppressed",
        "timestamp": "2026-01-01T00:00:00.000000Z",
        "data": {"email": "user0@hooks.example", "reason": "import", "smtp_code": null,
                 "enhanced_code": null, "response": null, "remote_host": null, "stage": null,
                 "suppressed_at": "2026-01-01T00:00:00.000000Z", "decision_id": null,
                 "note": null, "evidence": null},
    })
    .to_string();
    let slots = Arc::new(tokio::sync::Semaphore::new(64));
    let mut set = tokio::task::JoinSet::new();
    let started = Instant::now();
    for i in 0..n {
        let permit = slots.clone().acquire_owned().await?;
        let (client, url, body) = (client.clone(), url.to_owned(), body.clone());
        let sig = crate::delivery::webhooks::signature(&secret, &format!("msg_{i}"), 0, &body);
        set.spawn(async move {
            let r = client
                .post(url)
                .header("content-type", "application/json")
                .header("webhook-id", format!("msg_{i}"))
                .header("webhook-timestamp", "0")
                .header("webhook-signature", sig)
                .body(body)
                .send()
                .await;
            let ok = match r {
                Ok(mut r) => {
                    while let Ok(Some(_)) = r.chunk().await {}
                    r.status().is_success()
                }
                Err(_) => false,
            };
            drop(permit);
            ok
        });
        while let Some(done) = set.try_join_next() {
            if !done.unwrap_or(false) {
                bail!("the receiver refused a request");
            }
        }
    }
    while let Some(done) = set.join_next().await {
        if !done.unwrap_or(false) {
            bail!("the receiver refused a request");
        }
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// A local HTTP/1.1 receiver on its own thread (one core's worth of runtime) that
/// reads each request and answers 200 with an empty body at once; counts requests.
fn start_receiver() -> anyhow::Result<(u16, Arc<AtomicU64>)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("a runtime for the receiver")?;
    std::thread::spawn(move || {
        runtime.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let counted = counted.clone();
                tokio::spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            let counted = counted.clone();
                            async move {
                                let _ = request.into_body().collect().await;
                                counted.fetch_add(1, Ordering::Relaxed);
                                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                    Bytes::new(),
                                )))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
    });
    Ok((port, count))
}
