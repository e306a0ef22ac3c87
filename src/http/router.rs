//! The whole route table on one screen. The OpenAPI document is built from the same
//! `routes!` calls, so it cannot drift from what is served.

use super::AppState;
use super::api::{admin, delivery, ingest, meta, read, suppressions, webhooks};
use super::error::ApiError;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::{router::OpenApiRouter, routes};

#[derive(OpenApi)]
#[openapi(
    info(title = "mailtrail", description = "Every customer-account email decision, recorded, delivered and explained."),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The API routes and their OpenAPI document.
fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = api_routes();
    // The document describes itself too (served below, outside the bearer-token routes).
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
    let operation = OperationBuilder::new()
        .tag("meta")
        .summary(Some(
            "This OpenAPI 3.1 description of every /api/v1 call (no token needed)",
        ))
        .response(
            "200",
            utoipa::openapi::ResponseBuilder::new()
                .description("The OpenAPI document")
                .build(),
        )
        .build();
    doc.paths.paths.insert(
        "/api/v1/openapi.json".to_owned(),
        PathItem::new(HttpMethod::Get, operation),
    );
    super::openapi::complete(&mut doc);
    (router, doc)
}

fn api_routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(ingest::add_customers))
        .routes(routes!(ingest::email_request))
        .routes(routes!(ingest::signup))
        .routes(routes!(ingest::automation))
        .routes(routes!(ingest::api_customer))
        .routes(routes!(ingest::resend))
        .routes(routes!(read::why))
        .routes(routes!(read::decisions))
        .routes(routes!(read::decision))
        .routes(routes!(read::stats))
        .routes(routes!(read::audit))
        .routes(routes!(suppressions::list, suppressions::add))
        .routes(routes!(suppressions::remove))
        .routes(routes!(suppressions::import))
        .routes(routes!(suppressions::incidents))
        .routes(routes!(suppressions::bulk_remove))
        .routes(routes!(delivery::bounces))
        .routes(routes!(delivery::resend_skipped))
        .routes(routes!(admin::list_projects))
        .routes(routes!(
            admin::get_project,
            admin::put_project,
            admin::patch_project
        ))
        .routes(routes!(admin::get_site, admin::patch_site))
        .routes(routes!(webhooks::list, webhooks::create))
        .routes(routes!(webhooks::delete))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(meta::healthz))
        .split_for_parts()
}

/// The application: API, dashboard, health, metrics.
pub fn router(state: AppState) -> Router {
    let (api, doc) = api();
    let doc = std::sync::Arc::new(doc);
    Router::new()
        .merge(api)
        .route(
            "/api/v1/openapi.json",
            get(move || async move { axum::Json(doc.as_ref().clone()) }),
        )
        .route("/metrics", get(meta::metrics))
        .route("/readyz", get(super::ops::readyz))
        .merge(super::dashboard::routes(&state))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Raw messages may be 10 MiB; each extractor applies its own, smaller limit.
        .layer(DefaultBodyLimit::max(super::extract::RAW_LIMIT))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        // Outermost: request id, access line, the API's headers and error JSON (SPEC §14).
        .layer(middleware::from_fn(super::ops::access))
        .with_state(state)
}

/// One span per request, and the request counter and latency histogram by route
/// template (`unmatched` for the fallbacks), never by raw path.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().clone();
    let span = tracing::info_span!("request", %method, %path);
    let response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
    let elapsed = started.elapsed();
    state
        .metrics
        .http_request(method.as_str(), &path, response.status().as_u16(), elapsed);
    span.in_scope(|| {
        tracing::debug!(
            status = response.status().as_u16(),
            ms = elapsed.as_millis() as u64,
            "answered"
        )
    });
    response
}

async fn not_found() -> ApiError {
    ApiError::NotFound("route".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
