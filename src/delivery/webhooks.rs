//! Webhook delivery (SPEC §13): the loop that posts the event outbox to subscribers,
//! the Standard Webhooks signature, the checks of a subscription URL, and the pure
//! `bounce_rate.crossed` rule.
//!
//! Each round leases up to [`ROUND`] due messages in one write, groups them by
//! (subscription, address), posts the groups concurrently, each group's messages one
//! after the other, and writes every try of the round in one write. A message that
//! fails stops its group: the messages behind it are given back and wait until it is
//! delivered or given up, so an address's events arrive in order. Delivery is
//! at-least-once: a crash leaves the leased rows to be tried again when the lease ends,
//! with the same `webhook-id`.

use super::schedule::RetryPolicy;
use crate::app::App;
use crate::store::{LeasedWebhookMessage, TryResult, WebhookTry, now_micros};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// Most messages leased per round. Large, because a round's lease is one durable
/// commit (an fsync, the serial step on PostgreSQL) however many rows it takes.
pub const ROUND: usize = 2048;

/// Most requests in flight at once.
const CONCURRENCY: usize = 64;

/// A receiver's whole answer must come within this (SPEC §13).
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A request is only started while this much of its lease is left (the timeout and
/// a second).
const MARGIN: Duration = Duration::from_secs(11);

/// Most bytes of a reply body read (to reuse the connection); the rest is dropped
/// with the connection, so a 50 MB answer costs no memory.
const REPLY_CAP: usize = 64 * 1024;

/// Longest subscription URL (SPEC §13 bad input).
pub const URL_MAX: usize = 2048;

/// How often the 1-hour bounce rate is looked at while some subscription wants
/// `bounce_rate.crossed`.
const BOUNCE_RATE_EVERY: Duration = Duration::from_secs(5);

/// Why a subscription URL is refused (422 naming `url`).
pub fn check_url(url: &str) -> Result<(), String> {
    if url.len() > URL_MAX {
        return Err(format!("longer than {URL_MAX} bytes"));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".into());
    }
    let host = match parsed.host_str() {
        Some(h) if !h.is_empty() => h,
        _ => return Err("has no host".into()),
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let ip = match bare.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => Some(match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }),
        Ok(v4) => Some(v4),
        Err(_) => {
            let d = bare.trim_end_matches('.').to_ascii_lowercase();
            if d == "metadata.google.internal" || d == "metadata" {
                return Err("points at a cloud metadata service".into());
            }
            None
        }
    };
    if let Some(ip) = ip
        && is_link_local(ip)
    {
        return Err(
            "points at the link-local range (169.254.0.0/16, fe80::/10), where cloud metadata services live"
                .into(),
        );
    }
    Ok(())
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[0] == 169 && v4.octets()[1] == 254,
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// A new signing secret: `whsec_` + base64 of 32 random bytes.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("whsec_{}", BASE64.encode(bytes))
}

/// HMAC-SHA256 (RFC 2104) with sha2.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

/// The `webhook-signature` header value: `v1,` + base64 HMAC-SHA256 of
/// `{id}.{timestamp}.{body}` keyed with the secret's decoded bytes.
pub fn signature(secret: &str, id: &str, timestamp: i64, body: &str) -> String {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = BASE64
        .decode(encoded)
        .unwrap_or_else(|_| encoded.as_bytes().to_vec());
    let mac = hmac_sha256(&key, format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", BASE64.encode(mac))
}

/// The bounce-rate level: under 5 %, above 5 %, above 10 % (SPEC §6's warning and
/// critical lines).
pub const THRESHOLDS: [f64; 2] = [0.05, 0.10];

const LEVELS: [&str; 3] = ["ok", "warning", "critical"];

/// The level of a rate: how many thresholds it is above.
pub fn level_of(rate: f64) -> i64 {
    THRESHOLDS.iter().filter(|t| rate > **t).count() as i64
}

/// `bounce_rate.crossed` (pure): given the level last reported and the last hour's
/// counts, the new level and the event's data when the level changed — once per
/// upward crossing of 5 % and of 10 %, and once when it falls back under.
pub fn bounce_rate_crossing(
    previous: i64,
    sent: i64,
    bounced: i64,
) -> Option<(i64, serde_json::Value)> {
    let total = sent + bounced;
    let rate = if total > 0 {
        bounced as f64 / total as f64
    } else {
        0.0
    };
    let level = level_of(rate);
    let previous = previous.clamp(0, 2);
    if level == previous {
        return None;
    }
    let (direction, threshold) = if level > previous {
        ("up", THRESHOLDS[(level - 1) as usize])
    } else {
        ("down", THRESHOLDS[level as usize])
    };
    Some((
        level,
        serde_json::json!({
            "window": "1h",
            "rate": rate,
            "threshold": threshold,
            "direction": direction,
            "level": LEVELS[level as usize],
            "previous_level": LEVELS[previous as usize],
            "sent": sent,
            "bounced": bounced,
        }),
    ))
}

/// Starts the webhook delivery loop; it stops when `stop` turns true.
pub fn spawn(app: App, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(app, stop))
}

/// The HTTP client of webhook delivery (and of `bench webhooks`' raw rate): no
/// redirects (a receiver cannot bounce us to another host), the SPEC's 10 s timeout.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(CONCURRENCY)
        .tcp_nodelay(true)
        .user_agent(concat!("mailtrail-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

async fn run(app: App, mut stop: watch::Receiver<bool>) {
    let client = match client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook delivery not started: no HTTP client");
            return;
        }
    };
    let policy = Arc::new(RetryPolicy::from_config(&app.config));
    let poll = app
        .config
        .poll_interval
        .min(Duration::from_millis(500))
        .max(Duration::from_millis(20));
    let mut last_rate_check: Option<Instant> = None;
    let mut recording: Option<tokio::task::JoinHandle<()>> = None;
    let mut worked = false;
    loop {
        if *stop.borrow() {
            if let Some(previous) = recording.take() {
                let _ = previous.await;
            }
            return;
        }
        let rate_every = BOUNCE_RATE_EVERY.min(app.config.poll_interval * 10);
        if last_rate_check.is_none_or(|t| t.elapsed() >= rate_every) {
            last_rate_check = Some(Instant::now());
            if let Err(e) = app.check_bounce_rate().await {
                tracing::warn!(error = %e, "bounce-rate check failed");
            }
        }
        // After a round that found work, lease again at once; else look first (a
        // cheap read) so an idle loop writes nothing.
        let due = if worked {
            Ok(true)
        } else {
            app.store.webhook_messages_due().await
        };
        worked = match due {
            Ok(true) => match round(&app, &client, &policy).await {
                Ok((count, tries)) => {
                    // The round's tries are written while the next round is sent; one
                    // write in flight at a time.
                    if let Some(previous) = recording.take() {
                        let _ = previous.await;
                    }
                    if !tries.is_empty() {
                        let app = app.clone();
                        recording = Some(tokio::spawn(async move {
                            if let Err(e) = app.record_webhook_tries(tries).await {
                                // The rows stay leased: tried again when the lease ends.
                                tracing::warn!(error = %e, "webhook tries not recorded");
                            }
                        }));
                    }
                    count > 0
                }
                Err(e) => {
                    tracing::warn!(error = %e, "webhook round failed; retrying");
                    false
                }
            },
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(error = %e, "webhook outbox unreadable; retrying");
                false
            }
        };
        if !worked {
            if let Some(previous) = recording.take() {
                let _ = previous.await;
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

/// The lease of a webhook message: long enough for every message of its group to
/// time out once.
fn lease_for(app: &App) -> Duration {
    app.config.lease.max(Duration::from_secs(15))
}

/// One round: lease, post. Returns how many messages were leased, and their tries
/// for [`App::record_webhook_tries`].
pub async fn round(
    app: &App,
    client: &reqwest::Client,
    policy: &Arc<RetryPolicy>,
) -> Result<(usize, Vec<WebhookTry>), crate::store::StoreError> {
    let lease = lease_for(app);
    let per_group = (lease.as_secs() / (TIMEOUT.as_secs() + 1)).max(1) as usize;
    let leased = app
        .store
        .lease_webhook_messages(lease.as_micros() as i64, ROUND)
        .await?;
    let count = leased.len();
    if count == 0 {
        return Ok((0, Vec::new()));
    }
    let mut groups: Vec<Vec<LeasedWebhookMessage>> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    for m in leased {
        let key = (m.webhook_id.clone(), m.address.clone());
        let i = *index.entry(key).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[i].push(m);
    }
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let mut set = JoinSet::new();
    for group in groups {
        let client = client.clone();
        let slots = slots.clone();
        let policy = policy.clone();
        set.spawn(async move {
            let mut tries = Vec::with_capacity(group.len());
            let mut stopped = false;
            for (i, m) in group.into_iter().enumerate() {
                if stopped || i >= per_group {
                    tries.push(released(&m));
                    continue;
                }
                let try_ = match slots.acquire().await {
                    // A request that could outlive the lease is not started: the row
                    // could be leased by another process meanwhile and sent twice.
                    Ok(_permit) if now_micros() + MARGIN.as_micros() as i64 <= m.lease_until => {
                        post(&client, &m, &policy).await
                    }
                    _ => released(&m),
                };
                stopped = try_.result != TryResult::Delivered;
                tries.push(try_);
            }
            tries
        });
    }
    let mut tries = Vec::with_capacity(count);
    while let Some(done) = set.join_next().await {
        match done {
            Ok(t) => tries.extend(t),
            Err(e) => tracing::error!(error = %e, "a webhook group panicked"),
        }
    }
    Ok((count, tries))
}

fn released(m: &LeasedWebhookMessage) -> WebhookTry {
    WebhookTry {
        message: m.id,
        webhook_id: m.webhook_id.clone(),
        event: m.event.clone(),
        lease_until: m.lease_until,
        at: now_micros(),
        took_ms: 0,
        reply_code: None,
        error: None,
        result: TryResult::Released,
    }
}

/// One POST of one message, signed afresh (the timestamp is the try's).
async fn post(
    client: &reqwest::Client,
    m: &LeasedWebhookMessage,
    policy: &RetryPolicy,
) -> WebhookTry {
    let started = Instant::now();
    let at = now_micros();
    let id = m.message_id();
    let timestamp = at / 1_000_000;
    let span = tracing::info_span!("webhook", message = %id, webhook = %m.webhook_id);
    let _enter = span.enter();
    let answer = client
        .post(&m.url)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header(
            "webhook-signature",
            signature(&m.secret, &id, timestamp, &m.payload),
        )
        .body(m.payload.clone())
        .send()
        .await;
    let (reply_code, error) = match answer {
        Ok(mut response) => {
            let code = response.status().as_u16();
            // Read a little of the body so the connection can be reused; never more.
            let mut read = 0usize;
            loop {
                match response.chunk().await {
                    Ok(Some(chunk)) if read + chunk.len() <= REPLY_CAP => read += chunk.len(),
                    _ => break,
                }
            }
            let error =
                (!(200..300).contains(&code)).then(|| format!("the receiver answered {code}"));
            (Some(i64::from(code)), error)
        }
        Err(e) => {
            let e = e.without_url();
            let reason = if e.is_timeout() {
                format!("no answer within {} s", TIMEOUT.as_secs())
            } else if e.is_connect() {
                "could not connect".to_owned()
            } else {
                "the connection failed before an answer".to_owned()
            };
            (None, Some(reason))
        }
    };
    let now = now_micros();
    let result = if error.is_none() {
        TryResult::Delivered
    } else {
        match policy.next_try((m.attempts + 1) as u32, m.created_at, now) {
            Some(at) => TryResult::Retry(at),
            None => TryResult::Failed,
        }
    };
    if let Some(e) = &error {
        tracing::info!(error = %e, attempts = m.attempts + 1, "webhook not delivered");
    }
    WebhookTry {
        message: m.id,
        webhook_id: m.webhook_id.clone(),
        event: m.event.clone(),
        lease_until: m.lease_until,
        at,
        took_ms: started.elapsed().as_millis() as i64,
        reply_code,
        error,
        result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification (and its libraries' tests).
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            signature(secret, id, 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_secret_is_whsec_and_24_or_more_bytes() {
        let s = new_secret();
        let bytes = BASE64.decode(s.strip_prefix("whsec_").unwrap()).unwrap();
        assert!(bytes.len() >= 24);
        assert_ne!(s, new_secret());
    }

    #[test]
    fn urls_are_checked() {
        for ok in [
            "http://127.0.0.1:8080/hook",
            "https://hooks.example.com/in?x=1",
            "http://[::1]:9000/",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        let long = format!("https://example.com/{}", "a".repeat(URL_MAX));
        for bad in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "not a url",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fe80::1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://metadata.google.internal/",
            long.as_str(),
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bounce_rate_crossings_fire_once_per_level_change() {
        // (previous level, sent, bounced) → new level when an event fires.
        type Row = (i64, i64, i64, Option<(i64, &'static str, f64)>);
        let table: &[Row] = &[
            (0, 100, 0, None),
            (0, 96, 4, None),                    // 4 %: under both
            (0, 95, 5, None),                    // exactly 5 % is not above it
            (0, 94, 6, Some((1, "up", 0.05))),   // 6 %: above 5 %
            (1, 93, 7, None),                    // still above 5 %: no second event
            (1, 89, 11, Some((2, "up", 0.10))),  // above 10 %
            (2, 80, 20, None),                   // stays above 10 %
            (2, 92, 8, Some((1, "down", 0.10))), // back under 10 %
            (1, 97, 3, Some((0, "down", 0.05))), // back under 5 %
            (0, 50, 50, Some((2, "up", 0.10))),  // straight past both: one event
            (2, 0, 0, Some((0, "down", 0.05))),  // nothing in the last hour: under
            (0, 0, 0, None),
        ];
        for &(previous, sent, bounced, expected) in table {
            let got = bounce_rate_crossing(previous, sent, bounced).map(|(level, data)| {
                (
                    level,
                    data["direction"].as_str().unwrap().to_owned(),
                    data["threshold"].as_f64().unwrap(),
                )
            });
            let expected = expected.map(|(l, d, t)| (l, d.to_owned(), t));
            assert_eq!(
                got, expected,
                "previous {previous}, sent {sent}, bounced {bounced}"
            );
        }
    }
}
