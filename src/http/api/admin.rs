//! Project and site settings over HTTP (SPEC §2, §5, §9).

use super::ingest::path_project;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::extract::{Caller, JsonBody};
use crate::model::{Project, ProjectPatch, Role, Site, SitePatch};
use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;

/// `{items, next_cursor}` of projects (SPEC §9): every project, so `next_cursor` is
/// always null; the field keeps the shape of every list.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ProjectList {
    pub items: Vec<Project>,
    pub next_cursor: Option<String>,
}

/// Every project with its settings.
#[utoipa::path(get, path = "/api/v1/projects", tag = "projects",
    responses((status = 200, body = ProjectList)), security(("bearer" = [])))]
pub async fn list_projects(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<ProjectList>, ApiError> {
    caller.require(Role::Viewer)?;
    Ok(Json(ProjectList {
        items: state.store.projects().await?,
        next_cursor: None,
    }))
}

/// One project, flat: `{key, name, <settings>}`.
#[utoipa::path(get, path = "/api/v1/projects/{key}", tag = "projects",
    params(("key" = String, Path, description = "Project key", pattern = "^[A-Z][A-Z0-9_]{1,15}$")),
    responses((status = 200, body = Project), (status = 404, body = crate::http::error::ErrorBody)), security(("bearer" = [])))]
pub async fn get_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<Json<Project>, ApiError> {
    caller.require(Role::Viewer)?;
    Ok(Json(state.store.project(path_project(&key)?).await?))
}

/// Creates or replaces a project; missing fields take their defaults.
#[utoipa::path(put, path = "/api/v1/projects/{key}", tag = "projects",
    params(("key" = String, Path, description = "Project key", pattern = "^[A-Z][A-Z0-9_]{1,15}$")), request_body = ProjectPatch,
    responses((status = 200, body = Project), (status = 422, body = crate::http::error::ErrorBody)), security(("bearer" = [])))]
pub async fn put_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    JsonBody(patch): JsonBody<ProjectPatch>,
) -> Result<Json<Project>, ApiError> {
    caller.require(Role::Admin)?;
    let key = crate::model::ProjectKey::parse(&key).map_err(|m| ApiError::invalid("key", m))?;
    Ok(Json(
        state.put_project(key, patch, true, caller.name()).await?,
    ))
}

/// Changes some settings of a project.
#[utoipa::path(patch, path = "/api/v1/projects/{key}", tag = "projects",
    params(("key" = String, Path, description = "Project key", pattern = "^[A-Z][A-Z0-9_]{1,15}$")), request_body = ProjectPatch,
    responses((status = 200, body = Project), (status = 404, body = crate::http::error::ErrorBody), (status = 422, body = crate::http::error::ErrorBody)), security(("bearer" = [])))]
pub async fn patch_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    JsonBody(patch): JsonBody<ProjectPatch>,
) -> Result<Json<Project>, ApiError> {
    caller.require(Role::Admin)?;
    Ok(Json(
        state
            .put_project(path_project(&key)?, patch, false, caller.name())
            .await?,
    ))
}

/// The site settings.
#[utoipa::path(get, path = "/api/v1/site", tag = "site",
    responses((status = 200, body = Site)), security(("bearer" = [])))]
pub async fn get_site(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Site>, ApiError> {
    caller.require(Role::Viewer)?;
    Ok(Json(state.store.site().await?))
}

/// Changes site settings (the outgoing mail switch, From, portal URL).
#[utoipa::path(patch, path = "/api/v1/site", tag = "site",
    request_body = SitePatch,
    responses((status = 200, body = Site), (status = 422, body = crate::http::error::ErrorBody)), security(("bearer" = [])))]
pub async fn patch_site(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(patch): JsonBody<SitePatch>,
) -> Result<Json<Site>, ApiError> {
    caller.require(Role::Admin)?;
    let site = state.patch_site(patch, caller.name()).await?;
    Ok(Json(site))
}
