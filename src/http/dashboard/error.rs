//! The dashboard's presenter of errors: every failure is an HTML page with a sentence
//! and a way back, never JSON and never a bare 500 (the API's `ApiError` keeps JSON).
//!
//! Internal causes are logged here, once, and not shown.

use super::Ctx;
use crate::http::error::ApiError;
use crate::model::Role;
use crate::store::StoreError;
use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// Why a page could not be shown or a form could not be done.
#[derive(Debug)]
pub enum PageError {
    /// No live session on a GET: 303 to the login page, coming back to `next`.
    LoginRequired { next: String },
    /// No live session on a POST (it expired, or the form is forged): 403.
    SessionEnded,
    /// The user's role may not do this: 403.
    Forbidden(Role),
    /// The form's CSRF token is missing or wrong: 403; `back` is the page the form
    /// came from (from `Referer`, on this site only), to reload it.
    BadCsrf { back: String },
    /// Too many failed logins: 429.
    Throttled,
    /// The named thing does not exist: 404.
    NotFound(String),
    /// The request cannot be understood (a bad link, a broken upload): 400.
    BadRequest(String),
    /// The path exists, the method does not: 405.
    MethodNotAllowed,
    /// The database is unavailable or shutting down: 503.
    Unavailable,
    /// Our fault; the cause is logged, not shown: 500.
    Internal(String),
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    ctx: Ctx,
    status: u16,
    heading: String,
    message: String,
    link: String,
    link_text: &'static str,
}

impl PageError {
    fn status(&self) -> StatusCode {
        match self {
            PageError::LoginRequired { .. } => StatusCode::SEE_OTHER,
            PageError::SessionEnded | PageError::Forbidden(_) | PageError::BadCsrf { .. } => {
                StatusCode::FORBIDDEN
            }
            PageError::Throttled => StatusCode::TOO_MANY_REQUESTS,
            PageError::NotFound(_) => StatusCode::NOT_FOUND,
            PageError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PageError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            PageError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            PageError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn words(&self) -> (String, String, String, &'static str) {
        let home = ("/", "Go to the dashboard");
        let (heading, message, (link, link_text)) = match self {
            PageError::LoginRequired { .. } => ("Please log in".into(), "Log in to see this page.".into(), ("/login", "Log in")),
            PageError::SessionEnded => (
                "Your session has ended".into(),
                "You are not logged in any more (sessions end after 12 hours without use), so nothing was changed. Log in and try again.".into(),
                ("/login", "Log in"),
            ),
            PageError::Forbidden(role) => (
                "Not allowed for your role".into(),
                format!("This needs the {role} role, so nothing was changed. Ask an admin if you need to do this."),
                home,
            ),
            PageError::BadCsrf { back } => {
                return (
                    "This form has expired".into(),
                    "The form was sent without its security token (or with an old one), so nothing was changed. Open the page again and send the form once more.".into(),
                    back.clone(),
                    "Open the form's page again",
                );
            }
            PageError::Throttled => (
                "Too many failed logins".into(),
                "There were too many failed logins for this user or from this address. Wait 15 minutes, then try again.".into(),
                ("/login", "Back to the login page"),
            ),
            PageError::NotFound(what) => ("Not found".into(), format!("There is no {what} here. Check the link, or search for it."), home),
            PageError::BadRequest(why) => ("That did not work".into(), why.clone(), home),
            PageError::MethodNotAllowed => ("Not a page".into(), "This address takes a form, not a visit. Use the buttons on the pages.".into(), home),
            PageError::Unavailable => ("mailtrail is busy".into(), "The database is not available right now (mailtrail may be shutting down). Try again in a moment.".into(), home),
            PageError::Internal(_) => ("Something went wrong".into(), "mailtrail could not do this because of an internal error; it has been logged. Try again, and tell an admin if it keeps happening.".into(), home),
        };
        (heading, message, link.to_owned(), link_text)
    }

    /// The page keeps the navigation: the visitor is (most likely) logged in.
    fn keeps_navigation(&self) -> bool {
        !matches!(
            self,
            PageError::LoginRequired { .. } | PageError::SessionEnded | PageError::Throttled
        )
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if let PageError::LoginRequired { next } = &self {
            let location = if next == "/" {
                "/login".to_owned()
            } else {
                format!(
                    "/login?{}",
                    serde_urlencoded::to_string([("next", next.as_str())]).unwrap_or_default()
                )
            };
            let mut response = StatusCode::SEE_OTHER.into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, v);
            }
            return response;
        }
        if let PageError::Internal(cause) = &self {
            tracing::error!(%cause, "internal error on a dashboard page");
        }
        let status = self.status();
        let nav = self.keeps_navigation();
        let (heading, message, link, link_text) = self.words();
        page_with(status, heading, message, link, link_text, nav)
    }
}

/// An error page with any status (the login page uses it for 429 as well).
pub fn error_page(
    status: StatusCode,
    heading: String,
    message: String,
    link: &'static str,
    link_text: &'static str,
) -> Response {
    page_with(status, heading, message, link.to_owned(), link_text, false)
}

fn page_with(
    status: StatusCode,
    heading: String,
    message: String,
    link: String,
    link_text: &'static str,
    nav: bool,
) -> Response {
    let mut ctx = Ctx::anonymous(&heading);
    ctx.nav_only = nav;
    let page = ErrorPage {
        ctx,
        status: status.as_u16(),
        heading,
        message,
        link,
        link_text,
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        // The error template is static; if even it fails, a plain sentence will do.
        Err(_) => (
            status,
            Html("<!doctype html><title>Error</title><p>Something went wrong.</p>".to_owned()),
        )
            .into_response(),
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::NotFound(what) => PageError::NotFound(what),
            ApiError::Forbidden(_) | ApiError::Unauthorized => PageError::Forbidden(Role::Admin),
            ApiError::Unavailable | ApiError::DatabaseUnavailable(_) => PageError::Unavailable,
            ApiError::Internal(cause) => PageError::Internal(cause),
            ApiError::MethodNotAllowed => PageError::MethodNotAllowed,
            ApiError::TooLarge(limit) => {
                PageError::BadRequest(format!("The upload is larger than {limit}."))
            }
            ApiError::Invalid { field, message } => {
                PageError::BadRequest(format!("{field}: {message}"))
            }
            ApiError::IdempotencyKeyReused | ApiError::Refused { .. } => {
                PageError::BadRequest(e.to_string())
            }
            ApiError::Malformed(m)
            | ApiError::Conflict(m)
            | ApiError::UnsupportedMediaType(m)
            | ApiError::RequestTimeout(m) => PageError::BadRequest(m),
        }
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        PageError::from(ApiError::from(e))
    }
}

impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> Self {
        PageError::Internal(format!("template: {e}"))
    }
}
