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

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        let stored = super::hash("correct horse").expect("hashes");
        assert!(super::verify("correct horse", &stored));
        assert!(!super::verify("wrong", &stored));
        assert!(!super::verify("x", "not a hash"));
    }
}
