//! Projects: reading them and `PUT`/`PATCH` (audited).

use super::audit::audit;
use super::db::{Db, DbError, OptionalExtension, Row, params};
use super::time::now_micros;
use super::{Store, StoreError};
use crate::model::{Project, ProjectKey, ProjectPatch, ProjectSettings, validate_name};

pub(crate) fn load_project(conn: &Db, key: &str) -> Result<Project, StoreError> {
    conn.prepare_cached("SELECT key, name, settings FROM projects WHERE key = ?1")?
        .query_row(params![key], project_from_row)
        .optional()?
        .ok_or(StoreError::NotFound("project"))?
}

fn project_from_row(row: &Row<'_>) -> Result<Result<Project, StoreError>, DbError> {
    let key: String = row.get(0)?;
    let name: String = row.get(1)?;
    let settings: String = row.get(2)?;
    Ok((|| {
        Ok(Project {
            key: ProjectKey::parse(&key).map_err(StoreError::Corrupt)?,
            name,
            settings: serde_json::from_str(&settings)?,
        })
    })())
}

impl Store {
    /// All projects, by key.
    pub async fn projects(&self) -> Result<Vec<Project>, StoreError> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT key, name, settings FROM projects ORDER BY key")?;
            let rows = stmt.query_map(params![], project_from_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    /// One project.
    pub async fn project(&self, key: ProjectKey) -> Result<Project, StoreError> {
        self.read(move |conn| load_project(conn, key.as_str()))
            .await
    }

    /// Creates or updates a project. `replace` (PUT) resets missing fields to defaults;
    /// otherwise (PATCH) they keep their value. PATCH of an unknown project is 404.
    pub async fn put_project(
        &self,
        key: ProjectKey,
        patch: ProjectPatch,
        replace: bool,
        who: String,
    ) -> Result<Project, StoreError> {
        self.write(move |conn| {
            let existing = load_project(conn, key.as_str())
                .map(Some)
                .or_else(|e| match e {
                    StoreError::NotFound(_) => Ok(None),
                    e => Err(e),
                })?;
            if existing.is_none() && !replace {
                return Err(StoreError::NotFound("project"));
            }
            let (mut name, base) = match (&existing, replace) {
                (Some(p), false) => (p.name.clone(), p.settings.clone()),
                (Some(p), true) => (p.name.clone(), ProjectSettings::default()),
                (None, _) => (key.to_string(), ProjectSettings::default()),
            };
            if replace && patch.name.is_none() && existing.is_none() {
                name = validate_name(key.as_str())?;
            }
            let settings = patch.clone().apply(&mut name, base)?;
            let now = now_micros();
            conn.prepare_cached(
                "INSERT INTO projects (key, name, settings, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT (key) DO UPDATE SET name = ?2, settings = ?3, updated_at = ?4",
            )?
            .execute(params![
                key.as_str(),
                name,
                serde_json::to_string(&settings)?,
                now
            ])?;
            let project = Project {
                key: key.clone(),
                name,
                settings,
            };
            let what = if existing.is_some() {
                "project.update"
            } else {
                "project.create"
            };
            audit(
                conn,
                &who,
                what,
                Some(key.as_str()),
                None,
                Some(&serde_json::to_value(&project)?),
            )?;
            Ok(project)
        })
        .await
    }
}
