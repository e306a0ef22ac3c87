//! Listing and removing dashboard users and API tokens (`mailtrail user list|remove|
//! passwd`, `mailtrail token list|revoke`, SPEC §14). Secrets and hashes never leave
//! this module: a listing holds names, roles and ids only.

use super::audit::audit;
use super::db::{OptionalExtension, params};
use super::time::Micros;
use super::{Store, StoreError};
use crate::model::Role;

/// A user as listed (no password hash).
#[derive(Clone, Debug, serde::Serialize)]
pub struct UserListing {
    pub name: String,
    pub role: Role,
    pub created_at: Micros,
}

/// A token as listed (no secret, no hash).
#[derive(Clone, Debug, serde::Serialize)]
pub struct TokenListing {
    pub id: String,
    pub name: Option<String>,
    pub role: Role,
    pub created_at: Micros,
}

impl Store {
    /// Every user, by name.
    pub async fn list_users(&self) -> Result<Vec<UserListing>, StoreError> {
        self.read(|conn| {
            let mut statement =
                conn.prepare_cached("SELECT name, role, created_at FROM users ORDER BY name")?;
            let rows = statement.query_map(params![], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            let mut users = Vec::new();
            for row in rows {
                let (name, role, created_at) = row?;
                let role = role
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("user {name} has role {role}")))?;
                users.push(UserListing {
                    name,
                    role,
                    created_at,
                });
            }
            Ok(users)
        })
        .await
    }

    /// Removes a user and ends their sessions. The last admin cannot be removed (no one
    /// could then manage users from the dashboard).
    pub async fn remove_user(&self, name: String, who: String) -> Result<(), StoreError> {
        self.write(move |conn| {
            let role: Option<String> = conn
                .prepare_cached("SELECT role FROM users WHERE name = ?1")?
                .query_row(params![&name], |r| r.get(0))
                .optional()?;
            let Some(role) = role else {
                return Err(StoreError::NotFound("user"));
            };
            if role == Role::Admin.as_str() {
                let admins: i64 = conn
                    .prepare_cached("SELECT count(*) FROM users WHERE role = ?1")?
                    .query_row(params![Role::Admin.as_str()], |r| r.get(0))?;
                if admins <= 1 {
                    return Err(StoreError::Conflict(format!(
                        "{name} is the last admin; add another admin first"
                    )));
                }
            }
            conn.prepare_cached("DELETE FROM sessions WHERE user_name = ?1")?
                .execute(params![&name])?;
            conn.prepare_cached("DELETE FROM users WHERE name = ?1")?
                .execute(params![&name])?;
            audit(conn, &who, "user.remove", Some(&name), None, None)?;
            Ok(())
        })
        .await
    }

    /// Sets a user's password hash and ends their sessions.
    pub async fn set_password(
        &self,
        name: String,
        password_hash: String,
        who: String,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            let changed = conn
                .prepare_cached("UPDATE users SET password_hash = ?1 WHERE name = ?2")?
                .execute(params![password_hash, name])?;
            if changed == 0 {
                return Err(StoreError::NotFound("user"));
            }
            conn.prepare_cached("DELETE FROM sessions WHERE user_name = ?1")?
                .execute(params![&name])?;
            audit(conn, &who, "user.passwd", Some(&name), None, None)?;
            Ok(())
        })
        .await
    }

    /// Every token, oldest first.
    pub async fn list_tokens(&self) -> Result<Vec<TokenListing>, StoreError> {
        self.read(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT id, name, role, created_at FROM tokens ORDER BY created_at, id",
            )?;
            let rows = statement.query_map(params![], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?;
            let mut tokens = Vec::new();
            for row in rows {
                let (id, name, role, created_at) = row?;
                let role = role
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("token {id} has role {role}")))?;
                tokens.push(TokenListing {
                    id,
                    name,
                    role,
                    created_at,
                });
            }
            Ok(tokens)
        })
        .await
    }

    /// Revokes (deletes) a token: its secret stops working at once.
    pub async fn revoke_token(&self, id: String, who: String) -> Result<(), StoreError> {
        self.write(move |conn| {
            let removed = conn
                .prepare_cached("DELETE FROM tokens WHERE id = ?1")?
                .execute(params![&id])?;
            if removed == 0 {
                return Err(StoreError::NotFound("token"));
            }
            audit(conn, &who, "token.revoke", Some(&id), None, None)?;
            Ok(())
        })
        .await
    }
}
