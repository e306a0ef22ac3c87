//! Projects and their settings (SPEC §2): creating one, replacing or changing its
//! settings; audited by the store.

use super::{App, AppResult};
use crate::model::{Project, ProjectKey, ProjectPatch};

impl App {
    /// Creates or updates project `key`: `replace` (a PUT) resets what `patch` leaves
    /// out to the defaults, else (a PATCH) it keeps its value; PATCH of an unknown
    /// project is `NotFound`.
    pub async fn put_project(
        &self,
        key: ProjectKey,
        patch: ProjectPatch,
        replace: bool,
        by: String,
    ) -> AppResult<Project> {
        self.store.put_project(key, patch, replace, by).await
    }
}
