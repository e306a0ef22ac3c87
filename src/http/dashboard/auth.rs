//! Logging in and out, and the throttle on failed logins.
//!
//! The login form has no session to hold a CSRF token, so it uses a double-submit
//! token: `GET /login` sets it in a `SameSite=Strict` cookie and in the form, and the
//! POST must carry both. Failed logins are counted per user name and per client
//! address over 15 minutes; past the limit the form answers 429 without checking the
//! password. An unknown user costs the same argon2 verification as a known one.

use super::error::PageError;
use super::form::{Posted, parse_body};
use super::session::{
    Flash, LOGIN_COOKIE, SESSION_COOKIE, User, cookie, is_tls, redirect_with, safe_path, set_cookie,
};
use super::{Ctx, Dash, render};
use crate::http::AppState;
use crate::http::extract::constant_time_eq;
use crate::model::Role;
use askama::Template;
use axum::body::Bytes;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Extension, RawQuery, State};
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::response::Response;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a failed login counts.
const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failed logins per user name within the window before logins are refused.
const PER_USER: usize = 5;
/// Failed logins per client address within the window before logins are refused.
const PER_ADDRESS: usize = 20;

/// Failed logins, by `user:NAME` and `addr:IP`, in memory (a restart forgets them).
#[derive(Default)]
pub struct Throttle {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
    /// An argon2 hash to verify against when the user does not exist.
    dummy_hash: tokio::sync::OnceCell<String>,
}

impl Throttle {
    fn count(&self, key: &str, now: Instant) -> usize {
        let Ok(mut map) = self.failures.lock() else {
            return 0;
        };
        match map.get_mut(key) {
            Some(times) => {
                while times
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > WINDOW)
                {
                    times.pop_front();
                }
                times.len()
            }
            None => 0,
        }
    }

    /// Whether logins for `user` from `address` are refused right now.
    pub fn blocked(&self, user: &str, address: Option<&str>) -> bool {
        let now = Instant::now();
        self.count(&user_key(user), now) >= PER_USER
            || address.is_some_and(|a| self.count(&format!("addr:{a}"), now) >= PER_ADDRESS)
    }

    /// Counts a failed login.
    pub fn fail(&self, user: &str, address: Option<&str>) {
        let now = Instant::now();
        let Ok(mut map) = self.failures.lock() else {
            return;
        };
        // Keep memory bounded under a flood of made-up user names.
        if map.len() > 50_000 {
            map.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) <= WINDOW)
            });
        }
        map.entry(user_key(user)).or_default().push_back(now);
        if let Some(a) = address {
            map.entry(format!("addr:{a}")).or_default().push_back(now);
        }
    }

    /// Forgets the user's failures after a successful login.
    pub fn reset(&self, user: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(&user_key(user));
        }
    }
}

fn user_key(user: &str) -> String {
    format!("user:{}", user.trim().to_lowercase())
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
    body: Bytes,
) -> Result<Response, PageError> {
    let form = parse_body(
        crate::http::extract::media_type(&headers).as_deref(),
        "",
        &body,
    )?;
    let username = form.get("username").trim().to_owned();
    let password = form.get("password").to_owned();
    let next = safe_path(form.get("next"), "");
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
    let address = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    if dash.throttle.blocked(&username, address.as_deref()) {
        tracing::warn!(user = %username, "login refused: too many failures");
        return login_response(StatusCode::TOO_MANY_REQUESTS, &headers, next, username, Some(
            "Too many failed logins for this user or from this address. Wait 15 minutes, then try again.".into(),
        ));
    }
    let user = if username.len() <= 200 {
        state.store.user(username.clone()).await?
    } else {
        None
    };
    let ok = match &user {
        Some(u) => crate::password::verify_blocking(password, u.password_hash.clone()).await,
        None => {
            let dummy = dash
                .throttle
                .dummy_hash
                .get_or_init(|| async {
                    crate::password::hash_blocking("not a password".into())
                        .await
                        .unwrap_or_default()
                })
                .await;
            crate::password::verify_blocking(password, dummy.clone()).await;
            false
        }
    };
    let Some(user) = user.filter(|_| ok) else {
        dash.throttle.fail(&username, address.as_deref());
        tracing::info!(user = %username, "login failed");
        return login_response(
            StatusCode::UNAUTHORIZED,
            &headers,
            next,
            username,
            Some("Wrong user name or password.".into()),
        );
    };
    dash.throttle.reset(&user.name);
    // A new session on every login (no fixation); the browser's old one, if any, ends.
    if let Some(old) = cookie(&headers, SESSION_COOKIE).filter(|s| !s.is_empty() && s.len() <= 128)
    {
        state.store.end_session(&old).await?;
    }
    let (secret, _csrf) = state.store.create_session(user.name.clone()).await?;
    tracing::info!(user = %user.name, role = %user.role, "logged in");
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
    tracing::info!(user = %posted.user.name, "logged out");
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

    #[test]
    fn throttle_counts_per_user_and_per_address() {
        let t = Throttle::default();
        for _ in 0..PER_USER {
            assert!(!t.blocked("Alice", Some("10.0.0.1")));
            t.fail("alice", Some("10.0.0.1"));
        }
        assert!(
            t.blocked("alice", Some("10.0.0.2")),
            "per user, whatever the address"
        );
        assert!(
            !t.blocked("bob", Some("10.0.0.1")),
            "the address is below its own limit"
        );
        t.reset("ALICE");
        assert!(!t.blocked("alice", None));
        for i in 0..PER_ADDRESS {
            t.fail(&format!("user{i}"), Some("10.0.0.9"));
        }
        assert!(t.blocked("someone-new", Some("10.0.0.9")));
    }
}
