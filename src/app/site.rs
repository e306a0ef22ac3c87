//! The site's settings (SPEC §2): the outgoing mail switch, From, portal URL.

use super::{App, AppResult};
use crate::model::{Site, SitePatch};

impl App {
    /// Changes the site settings; turning outgoing mail on wakes the worker, since
    /// what was queued while it was off is due again.
    pub async fn patch_site(&self, patch: SitePatch, by: String) -> AppResult<Site> {
        let site = self.store.patch_site(patch, by).await?;
        if site.outgoing_mail {
            self.wake_worker();
        }
        Ok(site)
    }
}
