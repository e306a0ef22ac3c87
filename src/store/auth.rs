//! API tokens, dashboard users and their sessions.
//!
//! Tokens are 32 random bytes shown once; only their SHA-256 is stored (a high-entropy
//! secret needs no slow hash). Passwords are argon2 hashes, computed by the caller on a
//! blocking thread. Session ids are stored hashed too, so a copy of the database
//! opens no session.

use super::audit::audit;
use super::db::{OptionalExtension, params};
use super::time::{Micros, now_micros};
use super::{Store, StoreError};
use crate::model::{Role, new_id};
use sha2::{Digest, Sha256};

/// Who is calling: a token or a user, with a role.
#[derive(Clone, Debug)]
pub struct Principal {
    /// For the audit log: `token:NAME`, `user:NAME`, `admin-token`, `cli`.
    pub name: String,
    /// What they may do.
    pub role: Role,
}

/// A stored API token (without its secret).
#[derive(Clone, Debug)]
pub struct TokenRecord {
    pub id: String,
    pub name: Option<String>,
    pub role: Role,
}

/// A dashboard user.
#[derive(Clone, Debug)]
pub struct UserRecord {
    pub name: String,
    pub role: Role,
    pub password_hash: String,
}

/// A live dashboard session.
#[derive(Clone, Debug)]
pub struct SessionRecord {
    pub user: String,
    pub role: Role,
    pub csrf: String,
    pub last_seen_at: Micros,
}

/// A session ends this long after it was opened, however busy (SPEC §14, issue 10).
pub const SESSION_LIFETIME: Micros = 7 * 24 * 3600 * 1_000_000;

/// Hex SHA-256 of a secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new random secret, URL-safe.
pub fn new_secret(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{prefix}{}", hex::encode(bytes))
}

impl Store {
    /// Creates a token and returns its secret (shown once).
    pub async fn create_token(
        &self,
        role: Role,
        name: Option<String>,
        who: String,
    ) -> Result<String, StoreError> {
        let secret = new_secret("mt_");
        let hash = hash_secret(&secret);
        self.write(move |conn| {
            let id = new_id();
            conn.execute(
                "INSERT INTO tokens (id, name, role, token_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, name, role.as_str(), hash, now_micros()],
            )?;
            audit(conn, &who, "token.create", name.as_deref().or(Some(&id)), None, Some(&serde_json::json!({"role": role})))?;
            Ok(())
        })
        .await?;
        Ok(secret)
    }

    /// The token whose secret is `secret`, if any.
    pub async fn token_by_secret(&self, secret: &str) -> Result<Option<TokenRecord>, StoreError> {
        let hash = hash_secret(secret);
        self.read(move |conn| {
            let row = conn
                .prepare_cached("SELECT id, name, role FROM tokens WHERE token_hash = ?1")?
                .query_row(params![hash], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .optional()?;
            Ok(row.and_then(|(id, name, role)| {
                Some(TokenRecord {
                    id,
                    name,
                    role: role.parse().ok()?,
                })
            }))
        })
        .await
    }

    /// Adds or replaces a user (`mailtrail user add`).
    pub async fn put_user(
        &self,
        name: String,
        role: Role,
        password_hash: String,
        who: String,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO users (name, role, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET role = ?2, password_hash = ?3",
                params![name, role.as_str(), password_hash, now_micros()],
            )?;
            // A changed password or role ends the user's sessions.
            conn.execute("DELETE FROM sessions WHERE user_name = ?1", params![&name])?;
            audit(
                conn,
                &who,
                "user.put",
                Some(&name),
                None,
                Some(&serde_json::json!({"role": role})),
            )?;
            Ok(())
        })
        .await
    }

    /// The number of users (to create the first admin on first start).
    pub async fn user_count(&self) -> Result<i64, StoreError> {
        self.read(|conn| Ok(conn.query_row("SELECT count(*) FROM users", params![], |r| r.get(0))?))
            .await
    }

    /// A user by name.
    pub async fn user(&self, name: String) -> Result<Option<UserRecord>, StoreError> {
        self.read(move |conn| {
            let row = conn
                .prepare_cached("SELECT name, role, password_hash FROM users WHERE name = ?1")?
                .query_row(params![name], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .optional()?;
            Ok(row.and_then(|(name, role, password_hash)| {
                Some(UserRecord {
                    name,
                    role: role.parse().ok()?,
                    password_hash,
                })
            }))
        })
        .await
    }

    /// Opens a session; returns (session secret, csrf token).
    pub async fn create_session(&self, user: String) -> Result<(String, String), StoreError> {
        let secret = new_secret("");
        let csrf = new_secret("");
        let (hash, csrf2) = (hash_secret(&secret), csrf.clone());
        self.write(move |conn| {
            let now = now_micros();
            conn.execute(
                "INSERT INTO sessions (id_hash, user_name, csrf, created_at, last_seen_at) VALUES (?1, ?2, ?3, ?4, ?4)",
                params![hash, user, csrf2, now],
            )?;
            Ok(())
        })
        .await?;
        Ok((secret, csrf))
    }

    /// The session for `secret` if it was seen within `idle` and opened within
    /// [`SESSION_LIFETIME`]; touches it.
    pub async fn session(
        &self,
        secret: &str,
        idle: Micros,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let hash = hash_secret(secret);
        let found = self
            .read({
                let hash = hash.clone();
                move |conn| {
                    let row = conn
                        .prepare_cached(
                            "SELECT s.user_name, u.role, s.csrf, s.last_seen_at FROM sessions s
                             JOIN users u ON u.name = s.user_name
                             WHERE s.id_hash = ?1 AND s.created_at > ?2",
                        )?
                        .query_row(params![hash, now_micros() - SESSION_LIFETIME], |r| {
                            Ok((
                                r.get::<_, String>(0)?,
                                r.get::<_, String>(1)?,
                                r.get::<_, String>(2)?,
                                r.get::<_, i64>(3)?,
                            ))
                        })
                        .optional()?;
                    Ok(row.and_then(|(user, role, csrf, last_seen_at)| {
                        Some(SessionRecord {
                            user,
                            role: role.parse().ok()?,
                            csrf,
                            last_seen_at,
                        })
                    }))
                }
            })
            .await?;
        let now = now_micros();
        match found {
            Some(s) if now - s.last_seen_at <= idle => {
                // Touch at most once a minute: a page view should not always cost a write.
                if now - s.last_seen_at > 60_000_000 {
                    self.write(move |conn| {
                        conn.execute(
                            "UPDATE sessions SET last_seen_at = ?1 WHERE id_hash = ?2",
                            params![now, hash],
                        )?;
                        Ok(())
                    })
                    .await?;
                }
                Ok(Some(s))
            }
            Some(_) => {
                self.end_session_hash(hash).await?;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Ends the session for `secret`.
    pub async fn end_session(&self, secret: &str) -> Result<(), StoreError> {
        self.end_session_hash(hash_secret(secret)).await
    }

    async fn end_session_hash(&self, hash: String) -> Result<(), StoreError> {
        self.write(move |conn| {
            conn.execute("DELETE FROM sessions WHERE id_hash = ?1", params![&hash])?;
            Ok(())
        })
        .await
    }
}
