//! Password hashing for dashboard users (argon2id with the crate's recommended
//! parameters). Hashing is slow on purpose; callers run it on a blocking thread.

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

/// The PHC string of `password`, with a fresh random salt.
pub fn hash(password: &str) -> Result<String, String> {
    let hash: PasswordHash = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| format!("cannot hash the password: {e}"))?;
    Ok(hash.to_string())
}

/// Whether `password` matches the stored PHC string.
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// [`verify`], with argon2's working memory taken from `memory` (grown to the hash's
/// size once and kept), so a thread that verifies often allocates it once.
pub fn verify_with_memory(password: &str, stored: &str, memory: &mut Vec<argon2::Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(parsed.algorithm.as_str()) else {
        return false;
    };
    let version = match parsed.version.map(argon2::Version::try_from) {
        None => argon2::Version::default(),
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
    };
    let Ok(params) = argon2::Params::try_from(&parsed) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, argon2::Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let Some(work) = memory.get_mut(..blocks) else {
        return false;
    };
    if Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt.as_ref(), &mut out, work)
        .is_err()
    {
        return false;
    }
    crate::http::extract::constant_time_eq(&out, expected.as_bytes())
}

/// Hashes on a blocking thread, inside the current span.
pub async fn hash_blocking(password: String) -> Result<String, String> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(|| hash(&password)))
        .await
        .map_err(|e| e.to_string())?
}

/// Verifies on a blocking thread, inside the current span.
pub async fn verify_blocking(password: String, stored: String) -> bool {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(|| verify(&password, &stored)))
        .await
        .unwrap_or(false)
}

/// A few threads that do nothing but verify passwords, so each login's ~19 MiB of argon2
/// memory is reused by the same threads instead of being left behind in the allocator
/// arena of whichever blocking thread ran it (100 parallel logins once kept 1.9 GiB
/// resident; issue 10). Dropping the pool lets its threads end.
pub struct VerifyPool {
    jobs: std::sync::Mutex<std::sync::mpsc::Sender<Job>>,
}

type Job = Box<dyn FnOnce(&mut Vec<argon2::Block>) + Send>;

impl VerifyPool {
    /// A pool of `threads` verifier threads.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = std::sync::Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("password-{i}"))
                .spawn(move || {
                    // This thread's argon2 memory, allocated on its first check and
                    // reused by every later one.
                    let mut memory = Vec::new();
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(&mut memory),
                            Err(_) => return,
                        }
                    }
                })?;
        }
        Ok(VerifyPool {
            jobs: std::sync::Mutex::new(tx),
        })
    }

    /// Verifies on one of the pool's threads, inside the current span.
    pub async fn verify(&self, password: String, stored: String) -> bool {
        let span = tracing::Span::current();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory: &mut Vec<argon2::Block>| {
            let ok = span.in_scope(|| verify_with_memory(&password, &stored, memory));
            let _ = tx.send(ok);
        });
        let sent = match self.jobs.lock() {
            Ok(jobs) => jobs.send(job).is_ok(),
            Err(_) => false,
        };
        sent && rx.await.unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        let stored = super::hash("correct horse").expect("hashes");
        assert!(super::verify("correct horse", &stored));
        assert!(!super::verify("wrong", &stored));
        assert!(!super::verify("x", "not a hash"));
    }

    #[tokio::test]
    async fn the_pool_verifies() {
        let pool = super::VerifyPool::new(2).expect("threads");
        let stored = super::hash("correct horse").expect("hashes");
        assert!(pool.verify("correct horse".into(), stored.clone()).await);
        assert!(!pool.verify("wrong".into(), stored.clone()).await);
        let mut memory = Vec::new();
        assert!(super::verify_with_memory(
            "correct horse",
            &stored,
            &mut memory
        ));
        assert!(!super::verify_with_memory(
            "correct hors",
            &stored,
            &mut memory
        ));
        assert!(!super::verify_with_memory("x", "not a hash", &mut memory));
    }
}
