//! The dashboard: server-rendered pages (askama templates in `templates/`) for support
//! agents and admins, with the stylesheet and icon from `dashboard/` compiled in.
//!
//! Every page works without JavaScript. Every GET needs a session (else 303 to
//! `/login`); every POST goes through [`form::Posted`], which checks the session and
//! the CSRF token before the handler runs, and each handler checks the role it needs
//! (SPEC §6, §9). Handlers call the same store functions as the JSON API and hold no
//! business rules; errors become pages through [`error::PageError`].

mod audit;
mod auth;
pub mod error;
pub mod form;
mod outbox;
mod overview;
mod posts;
mod projects;
pub mod session;
mod site;
mod suppressions;
pub mod svg;
mod webhooks;
mod why;

use crate::http::AppState;
use crate::model::Role;
use askama::Template;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{MethodRouter, any, get, post};
use axum::{Extension, Router, middleware};
use error::PageError;
use session::{FLASH_COOKIE, Flash, User, set_cookie};
use std::collections::HashMap;
use std::sync::Arc;

/// Shared, in-memory state of the dashboard (one per router).
pub struct Dash {
    /// Failed logins per user and per client address, and the bound on password checks.
    pub logins: auth::Logins,
    /// The overview's figures, kept briefly when they are slow to compute.
    pub overview: overview::Cache,
}

/// The dashboard's routes, to be merged into the application router; failed logins
/// are counted in `state`'s store.
pub fn routes(state: &AppState) -> Router<AppState> {
    let dash = Dash {
        logins: auth::Logins::new(state.store.clone()),
        overview: overview::Cache::default(),
    };
    Router::new()
        .route(
            "/login",
            get(auth::login_page)
                .post(auth::login)
                .fallback(method_page),
        )
        .route(
            "/logout",
            get(auth::logout_page)
                .post(auth::logout)
                .fallback(method_page),
        )
        .route(
            "/",
            get(overview::page)
                .post(posts::overview_page)
                .fallback(method_page),
        )
        .route(
            "/why",
            get(why::page).post(posts::why_page).fallback(method_page),
        )
        .route("/why/resend", post_only(why::resend))
        .route("/outbox", page(outbox::page))
        .route("/outbox.csv", page(outbox::csv))
        .route("/decisions/{id}", page(outbox::decision))
        .route(
            "/suppressions",
            get(suppressions::page)
                .post(posts::suppressions_page)
                .fallback(method_page),
        )
        .route("/suppressions.csv", page(suppressions::csv))
        .route("/suppressions/add", post_only(suppressions::add))
        .route("/suppressions/remove", post_only(suppressions::remove))
        .route(
            "/suppressions/bulk-remove",
            post_only(suppressions::bulk_remove),
        )
        .route("/suppressions/import", post_only(suppressions::import))
        .route(
            "/projects",
            get(projects::list)
                .post(projects::create)
                .fallback(method_page),
        )
        .route(
            "/projects/{key}",
            get(projects::page)
                .post(posts::project_page)
                .fallback(method_page),
        )
        .route("/projects/{key}/toggle", post_only(projects::toggle))
        .route(
            "/projects/{key}/customers",
            post_only(projects::add_customers),
        )
        .route(
            "/site",
            get(site::page).post(posts::site_page).fallback(method_page),
        )
        .route("/site/outgoing-mail", post_only(site::outgoing_mail))
        .route("/site/resend-skipped", post_only(site::resend_skipped))
        .route("/audit", page(audit::page))
        .route("/webhooks", page(webhooks::page))
        .route("/webhooks/add", post_only(webhooks::add))
        .route("/webhooks/delete", post_only(webhooks::delete))
        .route("/assets/{file}", page(asset))
        // Anything else: an HTML 404 for people, the API's JSON 404 under /api/.
        .route("/{*path}", any(not_found))
        .layer(middleware::map_response(page_headers))
        .layer(Extension(Arc::new(dash)))
}

/// A page: GET (and HEAD); any other method is a 405 page.
fn page<H, T>(handler: H) -> MethodRouter<AppState>
where
    H: axum::handler::Handler<T, AppState>,
    T: 'static,
{
    get(handler).fallback(method_page)
}

/// A form target: POST; any other method is a 405 page.
fn post_only<H, T>(handler: H) -> MethodRouter<AppState>
where
    H: axum::handler::Handler<T, AppState>,
    T: 'static,
{
    post(handler).fallback(method_page)
}

async fn method_page() -> PageError {
    PageError::MethodNotAllowed
}

async fn not_found(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/api/") {
        return crate::http::error::ApiError::NotFound("route".into()).into_response();
    }
    PageError::NotFound("page".into()).into_response()
}

/// Security headers for every dashboard answer: no framing, no sniffing, nothing loaded
/// from elsewhere (SPEC §6), and pages are never cached (they show live data).
async fn page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let is_html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if is_html {
        // Email previews render in a sandboxed srcdoc frame and may carry inline styles;
        // the frame inherits this policy, so `frame-ancestors` must allow our own origin.
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; script-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'self'; base-uri 'none'",
            ),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    headers.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// The stylesheet and icon, compiled into the binary.
async fn asset(Path(file): Path<String>) -> Response {
    let (body, content_type): (&'static [u8], &'static str) = match file.as_str() {
        "app.css" => (
            include_bytes!("../../../dashboard/app.css"),
            "text/css; charset=utf-8",
        ),
        "favicon.svg" => (
            include_bytes!("../../../dashboard/favicon.svg"),
            "image/svg+xml",
        ),
        _ => return PageError::NotFound("file".into()).into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        body,
    )
        .into_response()
}

/// What a submitted form looked like, to show it again with its error.
#[derive(Clone, Debug, Default)]
pub struct FormState {
    /// Which form on the page (e.g. `add`, or `unsuppress:alice@example.com`).
    pub form: String,
    /// `(field, message)` of what is wrong.
    pub errors: Vec<(String, String)>,
    /// What was typed, by field name.
    pub values: HashMap<String, String>,
}

impl FormState {
    /// The form `form` with `values`, failing on `field` for `message`.
    pub fn failed(
        form: impl Into<String>,
        values: &form::Fields,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> FormState {
        let mut values = values.text.clone();
        values.remove("csrf");
        FormState {
            form: form.into(),
            errors: vec![(field.into(), message.into())],
            values,
        }
    }
}

/// What every page's layout needs: title, the user, the CSRF token, the flash message,
/// and a failed form to show again.
#[derive(Clone, Debug, Default)]
pub struct Ctx {
    pub title: String,
    /// Which navigation entry is current.
    pub nav: &'static str,
    /// The logged-in user's name and role; `None` on the login and error pages.
    pub user: Option<(String, Role)>,
    pub csrf: String,
    pub flash: Option<Flash>,
    pub form: FormState,
    /// Cookies get `Secure` (the request came over TLS).
    pub secure: bool,
    /// Banners every page shows while they hold (outgoing mail off, file transport).
    pub banners: Vec<String>,
    /// An error page: show the navigation though no user is known.
    pub nav_only: bool,
}

impl Ctx {
    /// The context of a page `user` looks at.
    pub fn new(user: &User, nav: &'static str, title: impl Into<String>) -> Ctx {
        Ctx {
            title: title.into(),
            nav,
            user: Some((user.name.clone(), user.role)),
            csrf: user.csrf.clone(),
            flash: user.flash.clone(),
            form: FormState::default(),
            secure: user.secure,
            banners: user.banners.clone(),
            nav_only: false,
        }
    }

    /// A page shown to nobody in particular (login, errors).
    pub fn anonymous(title: &str) -> Ctx {
        Ctx {
            title: title.to_owned(),
            ..Ctx::default()
        }
    }

    /// With a failed form to show again.
    pub fn with_form(mut self, form: FormState) -> Ctx {
        self.form = form;
        self
    }

    /// The user may resend and add customers.
    pub fn can_support(&self) -> bool {
        self.user
            .as_ref()
            .is_some_and(|(_, r)| r.allows(Role::Support))
    }

    /// The user may change settings and the suppression list.
    pub fn can_admin(&self) -> bool {
        self.user
            .as_ref()
            .is_some_and(|(_, r)| r.allows(Role::Admin))
    }

    /// The user's name.
    pub fn user_name(&self) -> &str {
        self.user.as_ref().map(|(n, _)| n.as_str()).unwrap_or("")
    }

    /// The user's role.
    pub fn role(&self) -> &'static str {
        self.user.as_ref().map(|(_, r)| r.as_str()).unwrap_or("")
    }

    /// `aria-current` for a navigation entry.
    pub fn current(&self, nav: &str) -> &'static str {
        if self.nav == nav { "page" } else { "false" }
    }

    /// What the user typed into `name` of form `form`, or "".
    pub fn val(&self, form: &str, name: &str) -> &str {
        self.val_or(form, name, "")
    }

    /// What the user typed, or `default` when the form was not just submitted.
    pub fn val_or<'a>(&'a self, form: &str, name: &str, default: &'a str) -> &'a str {
        if self.form.form == form {
            self.form.values.get(name).map(String::as_str).unwrap_or("")
        } else {
            default
        }
    }

    /// A checkbox's state: as submitted, or `default`.
    pub fn checked(&self, form: &str, name: &str, default: bool) -> bool {
        if self.form.form == form {
            self.form
                .values
                .get(name)
                .is_some_and(|v| !v.is_empty() && v != "off")
        } else {
            default
        }
    }

    /// The error of field `name` of form `form`, if it failed.
    pub fn err(&self, form: &str, name: &str) -> Option<&str> {
        if self.form.form != form {
            return None;
        }
        self.form
            .errors
            .iter()
            .find(|(f, _)| f == name)
            .map(|(_, m)| m.as_str())
    }

    /// `" selected"` when `value` is what the select `name` of `form` holds (as
    /// submitted), for an `<option>`.
    pub fn selected(&self, form: &str, name: &str, value: &str) -> &'static str {
        self.selected_or(form, name, "", value)
    }

    /// Like [`Ctx::selected`], with the stored `current` value when the form was not
    /// just submitted.
    pub fn selected_or(&self, form: &str, name: &str, current: &str, value: &str) -> &'static str {
        if self.val_or(form, name, current) == value {
            " selected"
        } else {
            ""
        }
    }

    /// `"true"` when the field failed, for `aria-invalid`.
    pub fn invalid(&self, form: &str, name: &str) -> &'static str {
        if self.err(form, name).is_some() {
            "true"
        } else {
            "false"
        }
    }

    /// An address as HTML that may break only after `@` or `.` (SPEC §15), escaped;
    /// for `|safe`. A part with a hyphen is kept on one line (`<span class="nw">`), since
    /// browsers would break after the hyphen.
    pub fn addr(&self, address: &str) -> String {
        let mut out = String::with_capacity(address.len() + 16);
        let mut part = String::new();
        let flush = |out: &mut String, part: &mut String, hyphen: bool| {
            if hyphen {
                out.push_str("<span class=\"nw\">");
                out.push_str(part);
                out.push_str("</span>");
            } else {
                out.push_str(part);
            }
            part.clear();
        };
        let mut hyphen = false;
        for c in address.chars() {
            match c {
                '&' => part.push_str("&amp;"),
                '<' => part.push_str("&lt;"),
                '>' => part.push_str("&gt;"),
                '"' => part.push_str("&#34;"),
                '\'' => part.push_str("&#39;"),
                c => part.push(c),
            }
            hyphen |= c == '-';
            if c == '@' || c == '.' {
                flush(&mut out, &mut part, hyphen);
                hyphen = false;
                out.push_str("<wbr>");
            }
        }
        flush(&mut out, &mut part, hyphen);
        out
    }

    /// `text` as HTML (escaped) in which `address` breaks as [`Ctx::addr`] says; for
    /// `|safe`.
    pub fn text_with_addr(&self, text: &str, address: &str) -> String {
        let escape = |t: &str| {
            t.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&#34;")
                .replace('\'', "&#39;")
        };
        if address.is_empty() {
            return escape(text);
        }
        text.split(address)
            .map(escape)
            .collect::<Vec<_>>()
            .join(&self.addr(address))
    }

    /// The form `form` failed (any field).
    pub fn failed(&self, form: &str) -> bool {
        self.form.form == form && !self.form.errors.is_empty()
    }
}

/// A second step before an action with a wide effect (SPEC §15): what it will do, and
/// the same form again with `confirm=yes`. Works without JavaScript.
#[derive(Template)]
#[template(path = "confirm.html")]
pub struct ConfirmPage {
    pub ctx: Ctx,
    pub heading: String,
    /// What the action will do, one sentence a line.
    pub impact: Vec<String>,
    /// The submitted fields, posted again.
    pub fields: Vec<(String, String)>,
    pub button: String,
    pub danger: bool,
    /// Where "Cancel" goes.
    pub cancel: String,
}

impl ConfirmPage {
    /// A confirmation of `form`, posted again (with `confirm=yes`) to the address it
    /// was posted to: the page's form carries no action, so it goes to the page's own URL.
    pub fn of(ctx: Ctx, form: &form::Fields, cancel: &str) -> ConfirmPage {
        let mut fields: Vec<(String, String)> = form
            .text
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "csrf" | "confirm"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        fields.sort();
        ConfirmPage {
            ctx,
            heading: String::new(),
            impact: Vec::new(),
            fields,
            button: String::new(),
            danger: false,
            cancel: cancel.to_owned(),
        }
    }

    /// The page, 200.
    pub fn respond(self) -> Result<Response, PageError> {
        render(&self, &self.ctx, StatusCode::OK)
    }
}

/// The form was confirmed on its second step.
pub fn confirmed(form: &form::Fields) -> bool {
    form.get("confirm") == "yes"
}

/// Renders a page with `status`; clears the flash it showed.
pub fn render<T: Template>(
    template: &T,
    ctx: &Ctx,
    status: StatusCode,
) -> Result<Response, PageError> {
    let html = template.render()?;
    let mut response = (status, Html(html)).into_response();
    if ctx.flash.is_some() {
        response.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(FLASH_COOKIE, "", Some(0), ctx.secure),
        );
    }
    Ok(response)
}

/// Shows the page a form came from (`back`) again, with the form's error and what the
/// user typed, as 422.
pub async fn reshow(
    state: &AppState,
    dash: &Arc<Dash>,
    user: &User,
    back: &str,
    form: FormState,
) -> Result<Response, PageError> {
    let status = StatusCode::UNPROCESSABLE_ENTITY;
    let (path, raw) = back.split_once('?').unwrap_or((back, ""));
    let q: HashMap<String, String> = serde_urlencoded::from_str(raw).unwrap_or_default();
    match path {
        "/why" => {
            why::show(
                state,
                Ctx::new(user, "why", "Why no invite?").with_form(form),
                &q,
                status,
            )
            .await
        }
        "/suppressions" => {
            suppressions::show(
                state,
                Ctx::new(user, "suppressions", "Suppressions").with_form(form),
                &q,
                status,
            )
            .await
        }
        "/" => {
            overview::show(
                state,
                dash,
                Ctx::new(user, "overview", "Overview").with_form(form),
                &q,
                status,
            )
            .await
        }
        "/site" => {
            site::show(
                state,
                Ctx::new(user, "site", "Site").with_form(form),
                status,
            )
            .await
        }
        other => match other.strip_prefix("/projects/") {
            Some(key) if !key.contains('/') => {
                let ctx = Ctx::new(user, "projects", format!("Project {key}")).with_form(form);
                projects::show(state, ctx, key, &[], status).await
            }
            _ => Err(PageError::BadRequest(
                form.errors
                    .into_iter()
                    .next()
                    .map(|(_, m)| m)
                    .unwrap_or_default(),
            )),
        },
    }
}

/// `2026-11-22 05:30 UTC` from RFC 3339 (`2026-11-22T05:30:00.000Z`).
pub fn short_time(rfc3339: &str) -> String {
    if rfc3339.len() >= 16 && rfc3339.as_bytes().get(10) == Some(&b'T') {
        format!("{} {} UTC", &rfc3339[..10], &rfc3339[11..16])
    } else {
        rfc3339.to_owned()
    }
}

/// `1,234,567`.
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// `4.2 %` of a 0..1 rate.
pub fn percent(rate: f64) -> String {
    if rate == 0.0 {
        "0 %".into()
    } else if rate < 0.001 {
        "< 0.1 %".into()
    } else {
        format!("{:.1} %", rate * 100.0)
    }
}

/// A query string from pairs, empty values left out: `?a=1&b=2`, or "".
pub fn query(pairs: &[(&str, &str)]) -> String {
    let kept: Vec<(&str, &str)> = pairs
        .iter()
        .copied()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", serde_urlencoded::to_string(kept).unwrap_or_default())
    }
}

/// `/why?email=...`.
pub fn why_link(email: &str) -> String {
    format!("/why{}", query(&[("email", email)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_times_read_well() {
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(percent(0.0512), "5.1 %");
        assert_eq!(
            short_time("2026-11-22T05:30:00.000Z"),
            "2026-11-22 05:30 UTC"
        );
        assert_eq!(query(&[("email", "a@b"), ("project", "")]), "?email=a%40b");
        let ctx = Ctx::default();
        assert_eq!(ctx.addr("al@ex.com"), "al@<wbr>ex.<wbr>com");
        assert_eq!(
            ctx.addr("nina.long-name@sub-1.example.org"),
            "nina.<wbr><span class=\"nw\">long-name@</span><wbr><span class=\"nw\">sub-1.</span><wbr>example.<wbr>org"
        );
        assert_eq!(
            ctx.text_with_addr("<b> a@x.io is added", "a@x.io"),
            "&lt;b&gt; a@<wbr>x.<wbr>io is added"
        );
    }
}
