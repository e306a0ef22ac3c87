//! The site settings (one row): reading them and `PATCH` (audited).

use super::audit::audit;
use super::db::{Db, params};
use super::time::{format_time, now_micros};
use super::{Store, StoreError};
use crate::model::{Site, SitePatch};

pub(crate) fn load_site(conn: &Db) -> Result<Site, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT outgoing_mail, from_mailbox, portal_base_url, outgoing_mail_changed_at
             FROM site WHERE id = 1",
        )?
        .query_row(params![], |r| {
            Ok(Site {
                outgoing_mail: r.get(0)?,
                from: r.get(1)?,
                portal_base_url: r.get(2)?,
                outgoing_mail_changed_at: r.get::<_, Option<i64>>(3)?.map(format_time),
            })
        })?)
}

impl Store {
    /// The site settings.
    pub async fn site(&self) -> Result<Site, StoreError> {
        self.read(load_site).await
    }

    /// Changes site settings; audited.
    pub async fn patch_site(&self, patch: SitePatch, who: String) -> Result<Site, StoreError> {
        patch.validate()?;
        self.write(move |conn| {
            let before = load_site(conn)?;
            let now = now_micros();
            if let Some(on) = patch.outgoing_mail
                && on != before.outgoing_mail
            {
                conn.execute(
                    "UPDATE site SET outgoing_mail = ?1, outgoing_mail_changed_at = ?2 WHERE id = 1",
                    params![on, now],
                )?;
            }
            if let Some(from) = &patch.from {
                conn.execute("UPDATE site SET from_mailbox = ?1 WHERE id = 1", params![from.trim()])?;
            }
            if let Some(url) = &patch.portal_base_url {
                conn.execute("UPDATE site SET portal_base_url = ?1 WHERE id = 1", params![url.trim_end_matches('/')])?;
            }
            let after = load_site(conn)?;
            audit(conn, &who, "site.update", Some("site"), None, Some(&serde_json::json!({
                "outgoing_mail": after.outgoing_mail, "from": after.from, "portal_base_url": after.portal_base_url,
            })))?;
            Ok(after)
        })
        .await
    }
}
