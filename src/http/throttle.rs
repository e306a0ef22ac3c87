//! The guard in front of password checks (SPEC §14 "Login").
//!
//! - A try is counted as a failure *before* its password is checked, under its user name
//!   and under its client address, so parallel tries cannot all slip past the count; a
//!   try that turns out right takes its count back.
//! - Repeated failures slow the next try (a growing delay, capped at [`MAX_DELAY`]); they
//!   never refuse it, so the right password always gets in, only later.
//! - Password checks (argon2: about 19 MiB and tens of milliseconds each) run at most
//!   two per core at once; a try beyond that is refused with 503 and `Retry-After`
//!   rather than queued, so a flood cannot grow memory.
//!
//! The counts sit behind [`FailureCounts`]: `serve` keeps them in the database
//! ([`StoreCounts`]; SPEC §10: several `serve` processes behind one load balancer share
//! them, and a restart keeps them); [`MemoryCounts`] is the in-process version.

use futures_core::future::BoxFuture;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A failure older than this no longer counts.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// The longest a try is slowed down.
pub const MAX_DELAY: Duration = Duration::from_secs(30);
/// Failures of one user name before its tries are slowed.
const FREE_PER_USER: u32 = 3;
/// Failures from one client address before its tries are slowed (several people may
/// share an address).
const FREE_PER_CLIENT: u32 = 10;
/// Keys kept in memory at most; past it, keys whose count cannot slow anything go first.
const MAX_KEYS: usize = 100_000;

/// Where failure counts live. Async, so an implementation may be a database (SPEC
/// §10); each reads its own clock.
pub trait FailureCounts: Send + Sync {
    /// Counts one failure under `key` now; returns the failures counted under it before
    /// this one, within [`WINDOW`].
    fn add<'a>(&'a self, key: &'a str) -> BoxFuture<'a, u32>;
    /// Takes one failure back from `key` (the try was not a failure after all).
    fn take_back<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()>;
    /// Forgets `key` (a successful login clears its user name).
    fn clear<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()>;
}

/// One key's failures: how many, and when the last one was.
struct Count {
    failures: u32,
    last: Instant,
}

/// Failure counts in this process's memory.
#[derive(Default)]
pub struct MemoryCounts {
    counts: Mutex<HashMap<String, Count>>,
}

impl MemoryCounts {
    fn add_now(&self, key: &str, now: Instant) -> u32 {
        let Ok(mut map) = self.counts.lock() else {
            return 0;
        };
        if map.len() >= MAX_KEYS && !map.contains_key(key) {
            map.retain(|_, c| now.duration_since(c.last) <= WINDOW);
            if map.len() >= MAX_KEYS {
                map.retain(|_, c| c.failures >= FREE_PER_USER);
            }
            if map.len() >= MAX_KEYS {
                // Still full of slowed keys: this key goes uncounted (its client's count
                // still slows it).
                return 0;
            }
        }
        let count = map.entry(key.to_owned()).or_insert(Count {
            failures: 0,
            last: now,
        });
        if now.duration_since(count.last) > WINDOW {
            count.failures = 0;
        }
        let before = count.failures;
        count.failures = count.failures.saturating_add(1);
        count.last = now;
        before
    }
}

impl FailureCounts for MemoryCounts {
    fn add<'a>(&'a self, key: &'a str) -> BoxFuture<'a, u32> {
        let before = self.add_now(key, Instant::now());
        Box::pin(std::future::ready(before))
    }

    fn take_back<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()> {
        if let Ok(mut map) = self.counts.lock()
            && let Some(count) = map.get_mut(key)
        {
            count.failures = count.failures.saturating_sub(1);
        }
        Box::pin(std::future::ready(()))
    }

    fn clear<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()> {
        if let Ok(mut map) = self.counts.lock() {
            map.remove(key);
        }
        Box::pin(std::future::ready(()))
    }
}

/// Failure counts in the database. A count that cannot be read or written is logged
/// and taken as zero: a database outage must not lock everybody out.
pub struct StoreCounts {
    store: crate::store::Store,
}

impl StoreCounts {
    /// Counts kept in `store`.
    pub fn new(store: crate::store::Store) -> Self {
        StoreCounts { store }
    }
}

/// [`WINDOW`] in the store's microseconds.
const WINDOW_MICROS: i64 = WINDOW.as_micros() as i64;

impl FailureCounts for StoreCounts {
    fn add<'a>(&'a self, key: &'a str) -> BoxFuture<'a, u32> {
        Box::pin(async move {
            match self
                .store
                .add_login_failure(key.to_owned(), WINDOW_MICROS)
                .await
            {
                Ok(before) => u32::try_from(before).unwrap_or(u32::MAX),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot count a failed login");
                    0
                }
            }
        })
    }

    fn take_back<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(e) = self.store.take_back_login_failure(key.to_owned()).await {
                tracing::warn!(error = %e, "cannot take back a failed login");
            }
        })
    }

    fn clear<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(e) = self.store.clear_login_failures(key.to_owned()).await {
                tracing::warn!(error = %e, "cannot clear failed logins");
            }
        })
    }
}

/// The delay before a try with `before` earlier failures, of which `free` cost nothing:
/// 1 s, 2 s, 4 s, … up to [`MAX_DELAY`].
pub fn delay(before: u32, free: u32) -> Duration {
    match before.checked_sub(free) {
        None => Duration::ZERO,
        Some(over) => Duration::from_secs(1u64 << over.min(5)).min(MAX_DELAY),
    }
}

/// A try that was counted; say how it ended with [`Attempt::succeeded`] or
/// [`Attempt::not_checked`], or drop it to leave it counted as a failure.
pub struct Attempt {
    counts: Arc<dyn FailureCounts>,
    user_key: String,
    client_key: Option<String>,
    /// How long to wait before checking the password.
    pub delay: Duration,
}

impl Attempt {
    /// The password was right: the user name's failures are forgotten and the client's
    /// count takes this try back.
    pub async fn succeeded(self) {
        self.counts.clear(&self.user_key).await;
        if let Some(client) = &self.client_key {
            self.counts.take_back(client).await;
        }
    }

    /// The password was not checked (the server was busy): the try is taken back.
    pub async fn not_checked(self) {
        self.counts.take_back(&self.user_key).await;
        if let Some(client) = &self.client_key {
            self.counts.take_back(client).await;
        }
    }
}

/// The login guard: failure counts, the bound on password checks in flight, and the
/// threads that run them.
pub struct LoginGuard {
    counts: Arc<dyn FailureCounts>,
    checks: Arc<Semaphore>,
    /// As many verifier threads as check slots; `None` if they could not be started
    /// (checks then run on tokio's blocking threads).
    verifiers: Option<crate::password::VerifyPool>,
}

impl LoginGuard {
    /// Two password checks per core (SPEC §14).
    pub fn checks_per_process() -> usize {
        2 * std::thread::available_parallelism().map_or(1, usize::from)
    }
}

impl LoginGuard {
    /// A guard over `counts` allowing `checks` password checks at once.
    pub fn new(counts: Arc<dyn FailureCounts>, checks: usize) -> Self {
        LoginGuard {
            counts,
            checks: Arc::new(Semaphore::new(checks.max(1))),
            verifiers: crate::password::VerifyPool::new(checks.max(1)).ok(),
        }
    }

    /// Checks `password` against the stored hash (call while holding a
    /// [`LoginGuard::check_slot`]).
    pub async fn verify(&self, password: String, stored: String) -> bool {
        match &self.verifiers {
            Some(pool) => pool.verify(password, stored).await,
            None => crate::password::verify_blocking(password, stored).await,
        }
    }

    /// Counts a try for `user` from `client` as a failure, before its password is
    /// checked, and says how long to slow it down.
    pub async fn begin(&self, user: &str, client: Option<IpAddr>) -> Attempt {
        let user_key = format!("user:{}", user.trim().to_lowercase());
        let client_key = client.map(|ip| format!("client:{ip}"));
        let by_user = delay(self.counts.add(&user_key).await, FREE_PER_USER);
        let by_client = match client_key.as_deref() {
            Some(key) => delay(self.counts.add(key).await, FREE_PER_CLIENT),
            None => Duration::ZERO,
        };
        Attempt {
            counts: Arc::clone(&self.counts),
            user_key,
            client_key,
            delay: by_user.max(by_client),
        }
    }

    /// A slot for one password check, or `None` when every slot is busy (answer 503).
    pub fn check_slot(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.checks).try_acquire_owned().ok()
    }
}

/// The client's address: the peer's, or, when the peer is a trusted proxy, the last
/// address of `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(
    peer: Option<IpAddr>,
    forwarded_for: Option<&str>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let Some(list) = forwarded_for else {
        return Some(peer);
    };
    let mut client = peer;
    for hop in list.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            // A hop we cannot read: trust nothing further left of it.
            Err(_) => break,
        }
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_are_capped() {
        let got: Vec<u64> = (0..12).map(|n| delay(n, 3).as_secs()).collect();
        assert_eq!(got, [0, 0, 0, 1, 2, 4, 8, 16, 30, 30, 30, 30]);
        assert_eq!(delay(u32::MAX, 3), MAX_DELAY);
    }

    #[tokio::test]
    async fn failures_are_counted_before_the_check_and_taken_back_on_success() {
        let guard = LoginGuard::new(Arc::new(MemoryCounts::default()), 4);
        let client: IpAddr = "10.0.0.1".parse().expect("ip");
        for _ in 0..FREE_PER_USER {
            assert_eq!(
                guard.begin("Alice", Some(client)).await.delay,
                Duration::ZERO
            );
        }
        // Counted at begin(): the next try is slowed, from any address.
        let other: IpAddr = "10.0.0.2".parse().expect("ip");
        let slowed = guard.begin("alice ", Some(other)).await;
        assert_eq!(slowed.delay, Duration::from_secs(1));
        slowed.succeeded().await;
        assert_eq!(
            guard.begin("ALICE", Some(other)).await.delay,
            Duration::ZERO
        );
        let busy = guard.begin("bob", None).await;
        busy.not_checked().await;
        assert_eq!(guard.begin("bob", None).await.delay, Duration::ZERO);
    }

    #[tokio::test]
    async fn one_client_trying_many_names_is_slowed() {
        let guard = LoginGuard::new(Arc::new(MemoryCounts::default()), 4);
        let client: IpAddr = "10.0.0.9".parse().expect("ip");
        for i in 0..FREE_PER_CLIENT {
            assert_eq!(
                guard.begin(&format!("u{i}"), Some(client)).await.delay,
                Duration::ZERO
            );
        }
        assert_eq!(
            guard.begin("someone-new", Some(client)).await.delay,
            Duration::from_secs(1)
        );
    }

    #[tokio::test]
    async fn password_checks_are_bounded() {
        let guard = LoginGuard::new(Arc::new(MemoryCounts::default()), 2);
        let a = guard.check_slot();
        let b = guard.check_slot();
        assert!(a.is_some() && b.is_some());
        assert!(guard.check_slot().is_none());
        drop(a);
        assert!(guard.check_slot().is_some());
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let proxy: IpAddr = "10.1.2.3".parse().expect("ip");
        let stranger: IpAddr = "203.0.113.7".parse().expect("ip");
        assert_eq!(
            client_ip(Some(stranger), Some("1.2.3.4"), &trusted),
            Some(stranger),
            "an untrusted peer cannot name another client"
        );
        assert_eq!(
            client_ip(
                Some(proxy),
                Some("6.6.6.6, 198.51.100.1, 10.9.9.9"),
                &trusted
            ),
            Some("198.51.100.1".parse().expect("ip")),
            "the last hop that is not a trusted proxy"
        );
        assert_eq!(client_ip(Some(proxy), None, &trusted), Some(proxy));
        assert_eq!(
            client_ip(Some(proxy), Some("junk, 10.2.2.2"), &trusted),
            Some("10.2.2.2".parse().expect("ip"))
        );
        assert_eq!(client_ip(None, Some("1.2.3.4"), &trusted), None);
    }
}
