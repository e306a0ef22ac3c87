//! Logging in and out, and the throttle on failed logins.
//!
//! The login form has no session to hold a CSRF token, so it uses a double-submit
//! token: `GET /login` sets it in a `SameSite=Strict` cookie and in the form, and the
//! POST must carry both. Failed logins are counted and slowed by
//! [`crate::http::throttle::LoginGuard`] (SPEC §14): counted before the password is
//! checked, a growing delay instead of a lock-out, password checks bounded. The body
//! is read up to 8 KiB and a user name over 200 characters is refused before any of
//! that. An unknown user costs the same argon2 verification as a known one.

use super::error::PageError;
use super::form::{Posted, parse_body};
use super::session::{
    Flash, LOGIN_COOKIE, SESSION_COOKIE, User, cookie, is_tls, redirect_with, safe_path, set_cookie,
};
use super::{Ctx, Dash, render};
use crate::http::AppState;
use crate::http::extract::constant_time_eq;
use crate::http::throttle::{LoginGuard, client_ip};
use crate::model::Role;
use askama::Template;
use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Extension, RawQuery, State};
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::response::Response;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Login bodies up to this many bytes (SPEC §14); 413 beyond.
pub const LOGIN_BODY_LIMIT: usize = 8 * 1024;
/// User names up to this many characters; longer ones are refused before any throttle,
/// hash or log line.
pub const MAX_USER_NAME: usize = 200;

/// The dashboard's login state: the guard, and an argon2 hash to verify against when
/// the user does not exist.
pub struct Logins {
    /// Failure counts and the bound on password checks.
    pub guard: LoginGuard,
    dummy_hash: tokio::sync::OnceCell<String>,
}

impl Logins {
    /// Failure counts kept in `store`, shared by every process that uses it.
    pub fn new(store: crate::store::Store) -> Self {
        Logins {
            guard: LoginGuard::new(
                Arc::new(crate::http::throttle::StoreCounts::new(store)),
                LoginGuard::checks_per_process(),
            ),
            dummy_hash: tokio::sync::OnceCell::new(),
        }
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    ctx: Ctx,
    token: String,
    next: String,
    username: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "logout.html")]
struct LogoutPage {
    ctx: Ctx,
}

fn login_response(
    status: StatusCode,
    headers: &HeaderMap,
    next: String,
    username: String,
    error: Option<String>,
) -> Result<Response, PageError> {
    let secure = is_tls(headers);
    // Reuse the browser's token so two open login tabs both work.
    let token = cookie(headers, LOGIN_COOKIE)
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| crate::store::new_secret(""));
    let mut ctx = Ctx::anonymous("Log in");
    ctx.secure = secure;
    ctx.flash =
        cookie(headers, super::session::FLASH_COOKIE).and_then(|v| Flash::decode_cookie(&v));
    let page = LoginPage {
        ctx,
        token: token.clone(),
        next,
        username,
        error,
    };
    let mut response = render(&page, &page.ctx, status)?;
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, &token, Some(3600), secure),
    );
    Ok(response)
}

/// Whether a login POST came from our own form. A browser sends the double-submit token
/// (cookie and field must match) and an `Origin`; a foreign site's form fails both. A
/// script that sends neither cookie nor token (the benchmark, curl) is let through when no
/// header says the request is cross-site, since login CSRF needs a victim's browser.
fn login_form_is_ours(headers: &HeaderMap, field: &str) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
        && origin.split_once("://").map(|(_, rest)| rest) != Some(host)
    {
        return false;
    }
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !matches!(v, "same-origin" | "none"))
    {
        return false;
    }
    let token = cookie(headers, LOGIN_COOKIE).unwrap_or_default();
    if token.is_empty() && field.is_empty() {
        return true;
    }
    !token.is_empty() && constant_time_eq(token.as_bytes(), field.as_bytes())
}

/// `GET /login`.
pub async fn login_page(
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let q: HashMap<String, String> =
        serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).unwrap_or_default();
    let next = safe_path(q.get("next").map(String::as_str).unwrap_or(""), "");
    login_response(StatusCode::OK, &headers, next, String::new(), None)
}

/// `POST /login`.
pub async fn login(
    State(state): State<AppState>,
    Extension(dash): Extension<Arc<Dash>>,
    headers: HeaderMap,
    extensions: Extensions,
    body: Body,
) -> Result<Response, PageError> {
    let body = match crate::http::extract::read_body(body, LOGIN_BODY_LIMIT, "8 KiB").await {
        Ok(body) => body,
        Err(crate::http::error::ApiError::TooLarge(_)) => {
            let mut response = super::error::error_page(
                StatusCode::PAYLOAD_TOO_LARGE,
                "The login form is too large".into(),
                "A login form is at most 8 KiB; this one was larger, so it was refused.".into(),
                "/login",
                "Back to the login page",
            );
            response.headers_mut().insert(
                header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            return Ok(response);
        }
        Err(e) => return Err(e.into()),
    };
    let form = parse_body(
        crate::http::extract::media_type(&headers).as_deref(),
        "",
        &body,
    )?;
    let username = form.get("username").trim().to_owned();
    let password = form.get("password").to_owned();
    let next = safe_path(form.get("next"), "");
    if username.chars().count() > MAX_USER_NAME {
        // Refused before any throttle key, hash or log line (SPEC §14).
        return login_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &headers,
            next,
            String::new(),
            Some(format!(
                "A user name is at most {MAX_USER_NAME} characters."
            )),
        );
    }
    if !login_form_is_ours(&headers, form.get("csrf")) {
        return login_response(StatusCode::FORBIDDEN, &headers, next, username, Some(
            "The login form expired or was sent from another site, so it was refused. Please log in again.".into(),
        ));
    }
    if username.is_empty() || password.is_empty() {
        let which = if username.is_empty() {
            "Enter your user name."
        } else {
            "Enter your password."
        };
        return login_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &headers,
            next,
            username,
            Some(which.into()),
        );
    }
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let forwarded = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    let client = client_ip(peer, forwarded, &state.config.trusted_proxies);
    // Counted as a failure first; slowed if there were many; then checked.
    let attempt = dash.logins.guard.begin(&username, client).await;
    if !attempt.delay.is_zero() {
        tracing::info!(
            user = ?username,
            delay_ms = attempt.delay.as_millis() as u64,
            "login slowed after failures"
        );
        tokio::time::sleep(attempt.delay).await;
    }
    let Some(_slot) = dash.logins.guard.check_slot() else {
        attempt.not_checked().await;
        tracing::warn!("login refused: every password check slot is busy");
        let mut response = login_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &headers,
            next,
            username,
            Some("mailtrail is busy checking other logins. Try again in a few seconds.".into()),
        )?;
        response.headers_mut().insert(
            header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("2"),
        );
        return Ok(response);
    };
    let user = state.store.user(username.clone()).await?;
    let ok = match &user {
        Some(u) => {
            dash.logins
                .guard
                .verify(password, u.password_hash.clone())
                .await
        }
        None => {
            let dummy = dash
                .logins
                .dummy_hash
                .get_or_init(|| async {
                    crate::password::hash_blocking("not a password".into())
                        .await
                        .unwrap_or_default()
                })
                .await;
            dash.logins.guard.verify(password, dummy.clone()).await;
            false
        }
    };
    drop(_slot);
    let Some(user) = user.filter(|_| ok) else {
        // The failure was counted before the check; it stays.
        tracing::info!(user = ?username, "login failed");
        return login_response(
            StatusCode::UNAUTHORIZED,
            &headers,
            next,
            username,
            Some("Wrong user name or password.".into()),
        );
    };
    attempt.succeeded().await;
    // A new session on every login (no fixation); the browser's old one, if any, ends.
    if let Some(old) = cookie(&headers, SESSION_COOKIE).filter(|s| !s.is_empty() && s.len() <= 128)
    {
        state.store.end_session(&old).await?;
    }
    let (secret, _csrf) = state.store.create_session(user.name.clone()).await?;
    tracing::info!(user = ?user.name, role = %user.role, "logged in");
    let landing = if next.is_empty() || next.starts_with("/login") || next.starts_with("/logout") {
        if user.role == Role::Support {
            "/why".to_owned()
        } else {
            "/".to_owned()
        }
    } else {
        next
    };
    let secure = is_tls(&headers);
    let mut response = redirect_with(&landing, None, secure);
    let headers_out = response.headers_mut();
    headers_out.append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &secret, None, secure),
    );
    headers_out.append(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, "", Some(0), secure),
    );
    Ok(response)
}

/// `GET /logout`: a page with the logout button (logging out is a POST).
pub async fn logout_page(user: User) -> Result<Response, PageError> {
    let page = LogoutPage {
        ctx: Ctx::new(&user, "", "Log out"),
    };
    render(&page, &page.ctx, StatusCode::OK)
}

/// `POST /logout`: ends the session.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    posted: Posted,
) -> Result<Response, PageError> {
    if let Some(secret) = cookie(&headers, SESSION_COOKIE) {
        state.store.end_session(&secret).await?;
    }
    tracing::info!(user = ?posted.user.name, "logged out");
    let mut response = redirect_with(
        "/login",
        Some(Flash::ok("You are logged out.")),
        posted.user.secure,
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", Some(0), posted.user.secure),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_forms_from_elsewhere_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:8040".parse().expect("valid"));
        assert!(
            login_form_is_ours(&h, ""),
            "a script without cookie or token"
        );
        h.insert(
            header::COOKIE,
            "mailtrail_login=abc".parse().expect("valid"),
        );
        assert!(login_form_is_ours(&h, "abc"));
        assert!(!login_form_is_ours(&h, ""), "the cookie without the field");
        assert!(!login_form_is_ours(&h, "abd"));
        h.insert(
            header::ORIGIN,
            "http://127.0.0.1:8040".parse().expect("valid"),
        );
        assert!(login_form_is_ours(&h, "abc"));
        h.insert(
            header::ORIGIN,
            "https://evil.example".parse().expect("valid"),
        );
        assert!(!login_form_is_ours(&h, "abc"));
    }
}
