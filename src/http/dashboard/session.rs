//! Who is looking at a page: the session cookie, the user and role behind it, and the
//! one-shot flash message left by the previous POST.
//!
//! Cookies are written by hand (no cookie crate): `HttpOnly; SameSite=Strict; Path=/`,
//! plus `Secure` when the request came over TLS (a proxy in front says so with
//! `X-Forwarded-Proto: https`; mailtrail itself serves plain HTTP).

use super::error::PageError;
use crate::http::AppState;
use crate::model::Role;
use crate::store::Micros;
use axum::extract::FromRequestParts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};

/// The session cookie: the session secret (only its hash is stored).
pub const SESSION_COOKIE: &str = "mailtrail_session";
/// A message for the next page after a POST (Post/Redirect/Get).
pub const FLASH_COOKIE: &str = "mailtrail_flash";
/// The login form's double-submit token (there is no session yet to hold one).
pub const LOGIN_COOKIE: &str = "mailtrail_login";
/// Sessions end after 12 hours without a request (SPEC §6).
pub const IDLE: Micros = 12 * 3600 * 1_000_000;

/// The value of cookie `name`, if the request carries it.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
}

/// The request reached us over TLS (through a proxy that says so).
pub fn is_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .next()
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
        })
}

/// A `Set-Cookie` value; `max_age` of 0 deletes the cookie, `None` makes a session cookie.
pub fn set_cookie(name: &str, value: &str, max_age: Option<i64>, secure: bool) -> HeaderValue {
    let mut text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        text.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        text.push_str("; Secure");
    }
    // Names and values are ours (hex secrets, percent-encoded text): always valid.
    HeaderValue::from_str(&text)
        .unwrap_or_else(|_| HeaderValue::from_static("mailtrail_invalid=; Max-Age=0"))
}

/// How a flash message looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlashKind {
    Ok,
    Warn,
    Error,
}

/// A one-shot message shown on the page after a redirect.
#[derive(Clone, Debug)]
pub struct Flash {
    pub kind: FlashKind,
    pub text: String,
}

impl Flash {
    /// A success message.
    pub fn ok(text: impl Into<String>) -> Flash {
        Flash {
            kind: FlashKind::Ok,
            text: text.into(),
        }
    }

    /// Done, but not what the user hoped (a blocked resend).
    pub fn warn(text: impl Into<String>) -> Flash {
        Flash {
            kind: FlashKind::Warn,
            text: text.into(),
        }
    }

    /// Not done.
    pub fn error(text: impl Into<String>) -> Flash {
        Flash {
            kind: FlashKind::Error,
            text: text.into(),
        }
    }

    /// The CSS class of its box.
    pub fn class(&self) -> &'static str {
        match self.kind {
            FlashKind::Ok => "flash-ok",
            FlashKind::Warn => "flash-warn",
            FlashKind::Error => "flash-error",
        }
    }

    fn encode(&self) -> String {
        let kind = match self.kind {
            FlashKind::Ok => "ok",
            FlashKind::Warn => "warn",
            FlashKind::Error => "error",
        };
        // A cookie holds about 4 KiB; a flash is a sentence or two.
        let text = crate::model::truncate(&self.text, 1200);
        serde_urlencoded::to_string([(kind, text)]).unwrap_or_default()
    }

    pub fn decode_cookie(value: &str) -> Option<Flash> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(value).ok()?;
        let (kind, text) = pairs.into_iter().next()?;
        let kind = match kind.as_str() {
            "ok" => FlashKind::Ok,
            "warn" => FlashKind::Warn,
            "error" => FlashKind::Error,
            _ => return None,
        };
        Some(Flash { kind, text })
    }
}

/// A 303 to `location` that leaves `flash` for the next page.
pub fn redirect_with(location: &str, flash: Option<Flash>, secure: bool) -> Response {
    let mut response = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location_value(location))],
    )
        .into_response();
    if let Some(flash) = flash {
        response.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(FLASH_COOKIE, &flash.encode(), Some(120), secure),
        );
    }
    response
}

fn location_value(location: &str) -> HeaderValue {
    HeaderValue::from_str(location).unwrap_or_else(|_| HeaderValue::from_static("/"))
}

/// A relative path on this site, safe to redirect to: starts with one `/`, no scheme,
/// no backslash tricks, no line breaks. Anything else becomes `fallback`.
pub fn safe_path(path: &str, fallback: &str) -> String {
    let ok = path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && path.len() <= 2000
        && !path.chars().any(|c| c.is_control() || c == '\\');
    if ok {
        path.to_owned()
    } else {
        fallback.to_owned()
    }
}

/// A logged-in dashboard user, for one request.
#[derive(Clone, Debug)]
pub struct User {
    /// The user name (`user:NAME` in the audit log).
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// The session's CSRF token, put in every form.
    pub csrf: String,
    /// The request came over TLS: cookies get `Secure`.
    pub secure: bool,
    /// The message the previous POST left, if any.
    pub flash: Option<Flash>,
    /// What every page must say while it holds: outgoing mail is off, emails go to
    /// files (SPEC §14, §15).
    pub banners: Vec<String>,
}

impl User {
    /// The user may act as `role`.
    pub fn can(&self, role: Role) -> bool {
        self.role.allows(role)
    }

    /// 403 page unless the user may act as `role`.
    pub fn require(&self, role: Role) -> Result<(), PageError> {
        if self.can(role) {
            Ok(())
        } else {
            Err(PageError::Forbidden(role))
        }
    }

    /// The name written to the audit log.
    pub fn audit_name(&self) -> String {
        format!("user:{}", self.name)
    }

    /// A 303 to `location` with `flash`.
    pub fn redirect(&self, location: &str, flash: Flash) -> Response {
        redirect_with(location, Some(flash), self.secure)
    }
}

impl FromRequestParts<AppState> for User {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        let secret =
            cookie(&parts.headers, SESSION_COOKIE).filter(|s| !s.is_empty() && s.len() <= 128);
        let session = match secret {
            Some(secret) => state.store.session(&secret, IDLE).await?,
            None => None,
        };
        let Some(session) = session else {
            return Err(
                if parts.method == Method::GET || parts.method == Method::HEAD {
                    let next = parts
                        .uri
                        .path_and_query()
                        .map(|p| p.as_str())
                        .unwrap_or("/");
                    PageError::LoginRequired {
                        next: safe_path(next, "/"),
                    }
                } else {
                    PageError::SessionEnded
                },
            );
        };
        let mut banners = Vec::new();
        if !state.store.site().await?.outgoing_mail {
            banners.push("Outgoing mail is off: mailtrail sends no email at all until an admin turns it on again on the Site page.".to_owned());
        }
        if state.file_transport_banner
            && let crate::delivery::TransportSpec::File(dir) = &state.config.transport
        {
            banners.push(format!(
                "Emails are written to files in {}, not sent: the transport is file.",
                dir.display()
            ));
        }
        Ok(User {
            banners,
            name: session.user,
            role: session.role,
            csrf: session.csrf,
            secure: is_tls(&parts.headers),
            flash: cookie(&parts.headers, FLASH_COOKIE).and_then(|v| Flash::decode_cookie(&v)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flash_survives_the_cookie() {
        let flash = Flash::warn("Resend blocked: a@b.example is suppressed; \"550 5.1.1\"");
        let back = Flash::decode_cookie(&flash.encode()).expect("decodes");
        assert_eq!(back.kind, FlashKind::Warn);
        assert_eq!(back.text, flash.text);
        assert!(!flash.encode().contains([' ', ';', '"', ',']));
    }

    #[test]
    fn only_local_paths_are_redirect_targets() {
        assert_eq!(safe_path("/why?email=a%40b", "/"), "/why?email=a%40b");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "why",
            "/a\r\nSet-Cookie: x",
        ] {
            assert_eq!(safe_path(bad, "/"), "/", "{bad}");
        }
    }

    #[test]
    fn cookies_are_read_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; mailtrail_session=abc; b=2"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn cookie_flags() {
        let plain = set_cookie(SESSION_COOKIE, "x", None, false);
        assert_eq!(
            plain.to_str().ok(),
            Some("mailtrail_session=x; Path=/; HttpOnly; SameSite=Strict")
        );
        let tls = set_cookie(SESSION_COOKIE, "x", Some(0), true);
        assert!(
            tls.to_str()
                .is_ok_and(|v| v.ends_with("; Max-Age=0; Secure"))
        );
    }
}
