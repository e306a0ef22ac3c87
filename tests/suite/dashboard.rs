//! The dashboard over HTTP: logins, sessions, cookies, CSRF, roles on every form, every
//! page for every role, error pages, and forms that keep what was typed.
//!
//! A small cookie jar stands in for the browser; the browser itself is driven by
//! `tests/browser/run.mjs`.

use crate::common::{ADMIN_PASSWORD, App, OutputExt, Resp};
use reqwest::Method;
use serde_json::json;
use std::collections::BTreeMap;

/// A logged-in (or not) visitor: its cookies and the CSRF token of its session.
pub(crate) struct Visitor<'a> {
    app: &'a App,
    cookies: BTreeMap<String, String>,
    csrf: String,
}

impl<'a> Visitor<'a> {
    fn anonymous(app: &'a App) -> Visitor<'a> {
        Visitor {
            app,
            cookies: BTreeMap::new(),
            csrf: String::new(),
        }
    }

    /// Logs in through the form as a browser would (GET the form, POST it back).
    pub(crate) fn login(app: &'a App, user: &str, password: &str) -> Visitor<'a> {
        let mut v = Visitor::anonymous(app);
        let r = v.try_login(user, password);
        assert_eq!(r.status, 303, "login as {user} failed: {}", r.text);
        let landing = r.header("location").expect("a redirect").to_owned();
        let page = v.get(&landing);
        page.expect_status(200);
        v.csrf = csrf_of(&page.text).expect("the landing page has a form with a CSRF token");
        v
    }

    fn try_login(&mut self, user: &str, password: &str) -> Resp {
        let form = self.get("/login");
        form.expect_status(200);
        let token = csrf_of(&form.text).expect("the login form has a token");
        self.post_form(
            "/login",
            &[
                ("csrf", &token),
                ("username", user),
                ("password", password),
                ("next", ""),
            ],
        )
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn remember(&mut self, r: &Resp) {
        for value in r.headers.get_all("set-cookie") {
            let value = value.to_str().expect("ASCII cookie");
            let (pair, attributes) = value.split_once(';').unwrap_or((value, ""));
            let (name, content) = pair.split_once('=').expect("name=value");
            if attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), content.to_owned());
            }
        }
    }

    fn send(&mut self, request: reqwest::blocking::RequestBuilder) -> Resp {
        let request = if self.cookies.is_empty() {
            request
        } else {
            request.header("cookie", self.cookie_header())
        };
        let r = self.app.anonymous().send(request);
        self.remember(&r);
        r
    }

    pub(crate) fn get(&mut self, path: &str) -> Resp {
        let request = self.app.anonymous().request(Method::GET, path);
        self.send(request)
    }

    /// POSTs a form exactly as given (no token added).
    fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let body = serde_urlencoded::to_string(fields).expect("encodes");
        let request = self
            .app
            .anonymous()
            .request(Method::POST, path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(request)
    }

    /// POSTs a form with the session's CSRF token and, when it answers 303, follows
    /// the redirect as a browser would (the flash cookie included).
    fn post_follow(&mut self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let r = self.post(path, fields);
        if r.status != 303 {
            return r;
        }
        let location = r.header("location").expect("a redirect").to_owned();
        self.get(&location)
    }

    /// POSTs a form with the session's CSRF token.
    fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let csrf = self.csrf.clone();
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_form(path, &all)
    }
}

fn csrf_of(html: &str) -> Option<String> {
    let start = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_owned())
}

fn is_html_page(r: &Resp) -> bool {
    r.header("content-type")
        .is_some_and(|c| c.starts_with("text/html"))
        && r.text.starts_with("<!doctype html>")
}

/// An app with one project, customers in each state, a suppression, and a support and
/// a viewer user (password `password123`).
fn seeded_app() -> App {
    let app = App::start();
    app.put_json("/api/v1/projects/IT", &json!({"name": "IT Help"}))
        .expect_status(200);
    app.post_json(
        "/api/v1/projects/IT/customers",
        &json!({"emails": ["alice@example.com", "Bob <bob@example.com>"]}),
    )
    .expect_status(200);
    app.post_json(
        "/api/v1/suppressions",
        &json!({"email": "grace@example.com", "note": "asked us to stop"}),
    )
    .expect_status(201);
    app.post_json(
        "/api/v1/projects/IT/customers",
        &json!({"emails": ["grace@example.com"]}),
    )
    .expect_status(200);
    for (name, role) in [("sam", "support"), ("vera", "viewer")] {
        let out = app.cli_with_stdin(&["user", "add", name, "--role", role], "password123\n");
        assert_eq!(out.code(), 0, "user add {name}: {}", out.stderr_text());
    }
    app
}

fn some_decision_id(app: &App) -> String {
    let page = app.get("/api/v1/decisions?limit=1").json();
    page["items"][0]["id"]
        .as_str()
        .expect("a decision")
        .to_owned()
}

const PAGES: &[&str] = &[
    "/",
    "/?window=7d",
    "/?window=30d",
    "/why",
    "/why?email=grace%40example.com",
    "/why?email=alice%40example.com&project=IT",
    "/why?email=nobody%40example.com",
    "/why?email=not+an+address",
    "/outbox",
    "/outbox?status=skipped&reason=suppressed&project=IT",
    "/suppressions",
    "/suppressions?q=grace",
    "/projects",
    "/projects/IT",
    "/site",
    "/audit",
    "/logout",
];

#[test]
fn pages_redirect_to_the_login_before_a_login() {
    let app = seeded_app();
    let mut v = Visitor::anonymous(&app);
    let id = some_decision_id(&app);
    for path in PAGES
        .iter()
        .copied()
        .chain([format!("/decisions/{id}").as_str(), "/outbox.csv"])
    {
        let r = v.get(path);
        assert_eq!(r.status, 303, "{path}: {}", r.text);
        let location = r.header("location").unwrap_or("");
        assert!(location.starts_with("/login"), "{path} -> {location}");
    }
    let r = v.get("/why?email=grace%40example.com");
    assert_eq!(
        r.header("location"),
        Some("/login?next=%2Fwhy%3Femail%3Dgrace%2540example.com")
    );
    let login = v.get("/login");
    login.expect_status(200);
    assert!(is_html_page(&login));
}

#[test]
fn every_page_answers_200_for_every_role() {
    let app = seeded_app();
    let id = some_decision_id(&app);
    for (user, password) in [
        ("admin", ADMIN_PASSWORD),
        ("sam", "password123"),
        ("vera", "password123"),
    ] {
        let mut v = Visitor::login(&app, user, password);
        for path in PAGES
            .iter()
            .copied()
            .chain([format!("/decisions/{id}").as_str()])
        {
            let r = v.get(path);
            assert_eq!(r.status, 200, "{user} {path}: {}", r.text);
            assert!(is_html_page(&r), "{user} {path} is not an HTML page");
            assert!(
                r.text.contains("Log out"),
                "{user} {path} has no logout button"
            );
        }
        for (path, kind) in [
            ("/outbox.csv", "text/csv"),
            ("/suppressions.csv", "text/csv"),
            ("/assets/app.css", "text/css"),
            ("/assets/favicon.svg", "image/svg+xml"),
        ] {
            let r = v.get(path);
            assert_eq!(r.status, 200, "{user} {path}");
            assert!(
                r.header("content-type")
                    .is_some_and(|c| c.starts_with(kind)),
                "{path}: {:?}",
                r.header("content-type")
            );
        }
        let csv = v.get("/suppressions.csv");
        assert!(csv.text.starts_with("email,reason,note"), "{}", csv.text);
        assert!(csv.text.contains("grace@example.com"));
    }
}

#[test]
fn support_lands_on_why_and_others_on_the_overview() {
    let app = seeded_app();
    for (user, password, landing) in [
        ("admin", ADMIN_PASSWORD, "/"),
        ("sam", "password123", "/why"),
        ("vera", "password123", "/"),
    ] {
        let mut v = Visitor::anonymous(&app);
        let r = v.try_login(user, password);
        assert_eq!(r.header("location"), Some(landing), "{user}");
    }
    let mut v = Visitor::anonymous(&app);
    let form = v.get("/login?next=%2Faudit");
    let token = csrf_of(&form.text).expect("token");
    let r = v.post_form(
        "/login",
        &[
            ("csrf", &token),
            ("username", "vera"),
            ("password", "password123"),
            ("next", "/audit"),
        ],
    );
    assert_eq!(r.header("location"), Some("/audit"));
    let mut v = Visitor::anonymous(&app);
    let form = v.get("/login");
    let token = csrf_of(&form.text).expect("token");
    let r = v.post_form(
        "/login",
        &[
            ("csrf", &token),
            ("username", "vera"),
            ("password", "password123"),
            ("next", "//evil.example/"),
        ],
    );
    assert_eq!(
        r.header("location"),
        Some("/"),
        "only local paths are followed"
    );
}

#[test]
fn cookies_are_httponly_strict_and_secure_over_tls() {
    let app = seeded_app();
    let mut v = Visitor::anonymous(&app);
    let r = v.try_login("admin", ADMIN_PASSWORD);
    let session = r
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|c| c.to_str().ok())
        .find(|c| c.starts_with("mailtrail_session="))
        .expect("a session cookie")
        .to_owned();
    assert!(session.contains("; HttpOnly"), "{session}");
    assert!(session.contains("; SameSite=Strict"), "{session}");
    assert!(session.contains("; Path=/"), "{session}");
    assert!(!session.contains("Secure"), "plain HTTP: {session}");

    // Behind a TLS proxy the cookie is also Secure.
    let http = app.anonymous();
    let form = http.send(
        http.request(Method::GET, "/login")
            .header("x-forwarded-proto", "https"),
    );
    let login_cookie = form.header("set-cookie").expect("login cookie").to_owned();
    assert!(
        login_cookie.contains("; Secure")
            && login_cookie.contains("HttpOnly")
            && login_cookie.contains("SameSite=Strict"),
        "{login_cookie}"
    );
    let token = csrf_of(&form.text).expect("token");
    let body = serde_urlencoded::to_string([
        ("csrf", token.as_str()),
        ("username", "admin"),
        ("password", ADMIN_PASSWORD),
    ])
    .expect("encodes");
    let r = http.send(
        http.request(Method::POST, "/login")
            .header("x-forwarded-proto", "https")
            .header("cookie", login_cookie.split(';').next().expect("pair"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body),
    );
    assert_eq!(r.status, 303, "{}", r.text);
    let secure = r
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|c| c.to_str().ok())
        .find(|c| c.starts_with("mailtrail_session="))
        .expect("session");
    assert!(secure.ends_with("; Secure"), "{secure}");
}

#[test]
fn forms_without_a_valid_csrf_token_are_refused_with_a_page() {
    let app = seeded_app();
    let mut v = Visitor::login(&app, "admin", ADMIN_PASSWORD);
    let before = app
        .get("/api/v1/decisions?email=alice%40example.com")
        .json()["items"]
        .as_array()
        .map(Vec::len);
    for token in ["", "not-the-token"] {
        let r = v.post_form(
            "/why/resend",
            &[
                ("csrf", token),
                ("email", "alice@example.com"),
                ("project", "IT"),
            ],
        );
        assert_eq!(r.status, 403, "{}", r.text);
        assert!(is_html_page(&r));
        assert!(r.text.contains("security token"), "{}", r.text);
    }
    let r = v.post_form(
        "/suppressions/remove",
        &[("email", "grace@example.com"), ("note", "forged")],
    );
    assert_eq!(r.status, 403);
    let r = v.post_form("/logout", &[]);
    assert_eq!(r.status, 403, "logout is a form with a token too");
    let after = app
        .get("/api/v1/decisions?email=alice%40example.com")
        .json()["items"]
        .as_array()
        .map(Vec::len);
    assert_eq!(before, after, "a refused form changes nothing");
    assert_eq!(
        app.get("/api/v1/why/grace%40example.com").json()["suppression"]["reason"],
        "manual"
    );

    // The login form itself: a token that does not match its cookie is refused.
    let mut stranger = Visitor::anonymous(&app);
    stranger.get("/login");
    let r = stranger.post_form(
        "/login",
        &[
            ("csrf", "forged"),
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
        ],
    );
    assert_eq!(r.status, 403);
    assert!(!r.headers.get_all("set-cookie").iter().any(|c| {
        c.to_str()
            .is_ok_and(|c| c.starts_with("mailtrail_session="))
    }));
    // A POST with no session at all.
    let r = Visitor::anonymous(&app).post_form(
        "/why/resend",
        &[
            ("csrf", "x"),
            ("email", "alice@example.com"),
            ("project", "IT"),
        ],
    );
    assert_eq!(r.status, 403);
    assert!(is_html_page(&r));
}

/// A form: its path, fields that would succeed, and the role it needs.
type FormCase = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    &'static str,
);

/// Every form of the dashboard.
fn forms() -> Vec<FormCase> {
    vec![
        (
            "/why/resend",
            vec![("email", "alice@example.com"), ("project", "IT")],
            "support",
        ),
        (
            "/projects/IT/customers",
            vec![("emails", "new@example.com"), ("invite", "on")],
            "admin",
        ),
        (
            "/suppressions/add",
            vec![("email", "x@example.com"), ("note", "n")],
            "admin",
        ),
        (
            "/suppressions/remove",
            vec![("email", "grace@example.com"), ("note", "n")],
            "admin",
        ),
        (
            "/suppressions/bulk-remove",
            vec![("reason", "manual"), ("note", "n")],
            "admin",
        ),
        (
            "/suppressions/import",
            vec![("csv", "y@example.com")],
            "admin",
        ),
        ("/projects", vec![("key", "NEW"), ("name", "New")], "admin"),
        (
            "/projects/IT",
            vec![
                ("name", "IT"),
                ("email_format", "multipart"),
                ("template_set", "default"),
            ],
            "admin",
        ),
        (
            "/projects/IT/toggle",
            vec![("setting", "invite_notification"), ("value", "off")],
            "admin",
        ),
        (
            "/site",
            vec![
                ("from", "Desk <desk@example.com>"),
                ("portal_base_url", "https://desk.example"),
            ],
            "admin",
        ),
        ("/site/outgoing-mail", vec![("value", "off")], "admin"),
        (
            "/site/resend-skipped",
            vec![("since", "2026-01-01T00:00:00Z")],
            "admin",
        ),
    ]
}

#[test]
fn every_form_refuses_a_role_that_may_not_use_it() {
    let app = seeded_app();
    let audit_before = app.get("/api/v1/audit?limit=500").json()["items"]
        .as_array()
        .map(Vec::len);
    let decisions_before = app.get("/api/v1/decisions?limit=500").json()["items"]
        .as_array()
        .map(Vec::len);
    for (user, allowed) in [("vera", &[][..]), ("sam", &["support"][..])] {
        let mut v = Visitor::login(&app, user, "password123");
        for (path, fields, needs) in forms() {
            if allowed.contains(&needs) {
                continue;
            }
            let r = v.post(path, &fields);
            assert_eq!(r.status, 403, "{user} POST {path}: {}", r.text);
            assert!(is_html_page(&r), "{user} POST {path}");
            assert!(
                r.text.contains(&format!("needs the {needs} role")),
                "{user} {path}: {}",
                r.text
            );
        }
    }
    assert_eq!(
        app.get("/api/v1/audit?limit=500").json()["items"]
            .as_array()
            .map(Vec::len),
        audit_before,
        "nothing was changed"
    );
    assert_eq!(
        app.get("/api/v1/decisions?limit=500").json()["items"]
            .as_array()
            .map(Vec::len),
        decisions_before
    );

    // Support may use its forms.
    let mut sam = Visitor::login(&app, "sam", "password123");
    let r = sam.post(
        "/why/resend",
        &[("email", "alice@example.com"), ("project", "IT")],
    );
    assert_eq!(r.status, 303, "{}", r.text);
    // Adding customers is an admin's (SPEC §6: support looks up and resends).
    let mut admin = Visitor::login(&app, "admin", ADMIN_PASSWORD);
    let r = admin.post_follow(
        "/projects/IT/customers",
        &[("emails", "new@example.com"), ("invite", "on")],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.text
            .contains("new@<wbr>example.<wbr>com is now a customer of IT Help"),
        "{}",
        r.text
    );
}

#[test]
fn a_viewer_sees_no_buttons_it_cannot_use() {
    let app = seeded_app();
    let mut vera = Visitor::login(&app, "vera", "password123");
    for path in [
        "/why?email=grace%40example.com",
        "/suppressions",
        "/projects/IT",
        "/site",
        "/projects",
        "/",
    ] {
        let page = vera.get(path);
        page.expect_status(200);
        for form in [
            // Every action form names its action in a hidden `do` field.
            "name=\"do\"",
            "action=\"/why/resend\"",
            "action=\"/suppressions/remove\"",
            "action=\"/suppressions/add\"",
            "action=\"/suppressions/bulk-remove\"",
            "action=\"/suppressions/import\"",
            "/toggle\"",
            "action=\"/site/outgoing-mail\"",
            "action=\"/site/resend-skipped\"",
            "/customers\"",
            "action=\"/projects\"",
        ] {
            assert!(
                !page.text.contains(form),
                "{path} offers {form} to a viewer"
            );
        }
        assert!(!page.text.contains("type=\"submit\">Save"), "{path}");
    }
    let mut sam = Visitor::login(&app, "sam", "password123");
    let page = sam.get("/why?email=grace%40example.com");
    assert!(
        page.text.contains("name=\"do\" value=\"resend\""),
        "support may resend"
    );
    assert!(
        !page.text.contains("name=\"do\" value=\"unsuppress\""),
        "support may not unsuppress"
    );
    assert!(page.text.contains("Needs the admin role"));
}

#[test]
fn logout_ends_the_session() {
    let app = seeded_app();
    let mut v = Visitor::login(&app, "admin", ADMIN_PASSWORD);
    let old = v.cookies.clone();
    let r = v.post("/logout", &[]);
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/login"));
    assert!(
        !v.cookies.contains_key("mailtrail_session"),
        "the cookie is deleted"
    );
    let after = v.get("/login");
    assert!(after.text.contains("You are logged out."), "{}", after.text);
    // The old session secret opens nothing any more.
    let mut replay = Visitor {
        app: &app,
        cookies: old,
        csrf: v.csrf.clone(),
    };
    let r = replay.get("/");
    assert_eq!(r.status, 303);
    let r = replay.post(
        "/why/resend",
        &[("email", "alice@example.com"), ("project", "IT")],
    );
    assert_eq!(r.status, 403);
}

#[test]
fn failed_logins_slow_down_but_never_lock_the_right_password_out() {
    let app = seeded_app();
    let mut v = Visitor::anonymous(&app);
    for _ in 0..5 {
        let r = v.try_login("sam", "wrong password");
        assert_eq!(r.status, 401, "{}", r.text);
        assert!(r.text.contains("Wrong user name or password."));
        assert!(r.text.contains("value=\"sam\""), "the user name is kept");
    }
    // Slowed (SPEC §14: a growing delay), never refused.
    let started = std::time::Instant::now();
    let r = v.try_login("sam", "password123");
    assert_eq!(r.status, 303, "the right password gets in: {}", r.text);
    assert!(started.elapsed() >= std::time::Duration::from_secs(4));
    // Another user is not slowed by sam's failures.
    let started = std::time::Instant::now();
    let r = Visitor::anonymous(&app).try_login("vera", "password123");
    assert_eq!(r.status, 303);
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

#[test]
fn a_bad_form_keeps_what_was_typed_and_names_the_field() {
    let app = seeded_app();
    let mut v = Visitor::login(&app, "admin", ADMIN_PASSWORD);

    let r = v.post(
        "/suppressions/add",
        &[
            ("email", "not an address"),
            ("note", "my careful note"),
            ("back", "/suppressions"),
        ],
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(is_html_page(&r));
    assert!(
        r.text.contains("value=\"not an address\""),
        "the address is kept"
    );
    assert!(
        r.text.contains("value=\"my careful note\""),
        "the note is kept"
    );
    assert!(
        r.text.contains(
            "id=\"add-email\" name=\"email\" value=\"not an address\" aria-invalid=\"true\""
        ),
        "the field is marked"
    );
    assert!(r.text.contains("Not a valid address"), "{}", r.text);

    let r = v.post(
        "/suppressions/remove",
        &[
            ("email", "grace@example.com"),
            ("note", "  "),
            ("back", "/why?email=grace%40example.com"),
            ("form", "unsuppress"),
        ],
    );
    assert_eq!(r.status, 422);
    assert!(r.text.contains("A note is required"), "{}", r.text);
    assert!(
        r.text.contains("id=\"unsuppress-note\""),
        "shown again on the why page"
    );
    assert_eq!(
        app.get("/api/v1/why/grace%40example.com").json()["suppression"]["reason"],
        "manual",
        "still suppressed"
    );

    let r = v.post(
        "/projects/IT",
        &[
            ("name", "IT Help"),
            ("allow_patterns", "@example\\.com$\n(unclosed"),
            ("email_format", "multipart"),
            ("template_set", "default"),
        ],
    );
    assert_eq!(r.status, 422);
    assert!(
        r.text
            .contains("Allow patterns, line 2: invalid regular expression"),
        "{}",
        r.text
    );
    assert!(
        r.text.contains("(unclosed</textarea>"),
        "the patterns are kept"
    );

    let r = v.post(
        "/site",
        &[
            ("from", "Help Desk <help@"),
            ("portal_base_url", "https://desk.example"),
        ],
    );
    assert_eq!(r.status, 422);
    assert!(
        r.text.contains("value=\"Help Desk &#60;help@\""),
        "{}",
        r.text
    );
    assert!(r.text.contains("id=\"from\" name=\"from\" value=\"Help Desk &#60;help@\" style=\"width:100%\" aria-invalid=\"true\""));

    let r = v.get("/outbox?status=lost&email=alice%40example.com");
    assert_eq!(r.status, 422);
    assert!(
        r.text.contains("is not a status mailtrail knows"),
        "{}",
        r.text
    );
    assert!(r.text.contains("value=\"alice@example.com\""));

    let r = v.post("/projects", &[("key", "lower"), ("name", "Lower")]);
    assert_eq!(r.status, 422);
    assert!(r.text.contains("value=\"lower\"") && r.text.contains("upper-case letter"));

    let r = v.post("/projects/IT/customers", &[("emails", " \n ")]);
    assert_eq!(r.status, 422);
    assert!(r.text.contains("Paste at least one address."));
}

#[test]
fn errors_are_pages_not_json() {
    let app = seeded_app();
    let mut v = Visitor::login(&app, "admin", ADMIN_PASSWORD);
    for (method, path, status) in [
        (Method::GET, "/decisions/no-such-decision", 404),
        (Method::GET, "/projects/NOPE", 404),
        (Method::GET, "/projects/lower-case", 404),
        (Method::GET, "/no/such/page", 404),
        (Method::GET, "/assets/nothing.js", 404),
        (Method::GET, "/why/resend", 405),
        (Method::PUT, "/why", 405),
        (Method::DELETE, "/site", 405),
        (Method::GET, "/outbox?cursor=garbage", 400),
    ] {
        let request = app
            .anonymous()
            .request(method.clone(), path)
            .header("cookie", v.cookie_header());
        let r = app.anonymous().send(request);
        assert_eq!(r.status, status, "{method} {path}: {}", r.text);
        assert!(
            is_html_page(&r),
            "{method} {path} answered {:?}",
            r.header("content-type")
        );
        assert!(
            r.text.contains(r#"<nav aria-label="Main">"#),
            "{method} {path}: an error page keeps the navigation"
        );
    }
    // A forbidden form and an expired one keep it too; the expired one links back to
    // the form's page, not home.
    let mut vera = Visitor::login(&app, "vera", "password123");
    let r = vera.post("/site/outgoing-mail", &[("value", "off")]);
    assert_eq!(r.status, 403);
    assert!(r.text.contains(r#"<nav aria-label="Main">"#), "{}", r.text);
    let request = app
        .anonymous()
        .request(Method::POST, "/suppressions/add")
        .header("cookie", v.cookie_header())
        .header(
            "referer",
            format!("{}/suppressions?q=grace", app.base_url()),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=x%40example.com&csrf=stale");
    let r = app.anonymous().send(request);
    assert_eq!(r.status, 403);
    assert!(r.text.contains("This form has expired"), "{}", r.text);
    assert!(r.text.contains(r#"<nav aria-label="Main">"#), "{}", r.text);
    assert!(
        r.text.contains(r#"href="/suppressions?q=grace""#),
        "{}",
        r.text
    );
    // The API keeps its JSON errors.
    let r = app.get("/api/v1/no-such-call");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "not_found");
    let r = v.post(
        "/projects/IT/toggle",
        &[("setting", "no_such_setting"), ("value", "on")],
    );
    assert_eq!(r.status, 400);
    assert!(is_html_page(&r));
    // Pages carry the security headers.
    let r = v.get("/");
    assert!(
        r.header("content-security-policy")
            .is_some_and(|c| c.contains("frame-ancestors 'self'"))
    );
    assert_eq!(r.header("x-frame-options"), Some("SAMEORIGIN"));
}

#[test]
fn support_fixes_a_suppressed_address_end_to_end() {
    let app = seeded_app();
    let mut admin = Visitor::login(&app, "admin", ADMIN_PASSWORD);
    let page = admin.get("/why?email=grace%40example.com");
    assert!(
        page.text
            .contains("After this, a resend would: send the email."),
        "the preview says the fix works: {}",
        page.text
    );
    // grace asked us to stop (a manual suppression): only renewed consent undoes it.
    assert!(page.text.contains("renewed consent"), "{}", page.text);
    assert!(page.text.contains(r#"name="consent""#), "{}", page.text);
    assert!(
        !page
            .text
            .contains("Customer confirmed the address by phone")
    );
    assert!(!page.text.contains("Check the address with the customer"));
    let why = app.get("/api/v1/why/grace%40example.com").json();
    let fix = why["fixes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["action"] == "unsuppress")
        .cloned()
        .unwrap_or_default();
    assert_eq!(fix["requires_consent"], true, "{why:#}");
    assert!(
        fix["description"]
            .as_str()
            .unwrap_or_default()
            .contains("asked us to stop"),
        "{why:#}"
    );
    let summary = why["verdict"]["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("renewed consent") && summary.contains("unsuppress"),
        "the verdict names the fix that works: {summary}"
    );
    // Without the box ticked and without a note: both errors at once, nothing removed.
    let r = admin.post(
        "/suppressions/remove",
        &[
            ("email", "grace@example.com"),
            ("note", ""),
            ("back", "/why?email=grace%40example.com"),
        ],
    );
    assert_eq!(r.status, 422);
    assert!(r.text.contains("tick the box to confirm"), "{}", r.text);
    assert!(r.text.contains("A note is required"), "{}", r.text);
    assert!(
        app.get("/api/v1/why/grace%40example.com").json()["suppression"].is_object(),
        "still suppressed"
    );
    let r = admin.post(
        "/suppressions/remove",
        &[
            ("email", "grace@example.com"),
            ("consent", "yes"),
            ("note", "customer confirmed by phone"),
            ("back", "/why?email=grace%40example.com"),
        ],
    );
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/why?email=grace%40example.com"));
    let page = admin.get("/why?email=grace%40example.com");
    assert!(
        page.text
            .contains("grace@example.com is no longer suppressed."),
        "the flash says so"
    );
    assert!(page.text.contains("Not suppressed."));
    let again = admin.get("/why?email=grace%40example.com");
    assert!(
        !again.text.contains("is no longer suppressed."),
        "a flash is shown once"
    );
    let audit = app.get("/api/v1/audit").json();
    let entry = &audit["items"][0];
    assert_eq!(entry["what"], "suppression.remove");
    assert_eq!(entry["who"], "user:admin");
    assert_eq!(entry["note"], "customer confirmed by phone");

    let mut sam = Visitor::login(&app, "sam", "password123");
    let r = sam.post(
        "/why/resend",
        &[("email", "grace@example.com"), ("project", "IT")],
    );
    assert_eq!(r.status, 303);
    let page = sam.get(r.header("location").expect("back"));
    assert!(page.text.contains("flash-ok"), "{}", page.text);
    let newest = &app
        .get("/api/v1/decisions?email=grace%40example.com&limit=1")
        .json()["items"][0];
    assert_eq!(newest["channel"], "resend");
    assert_eq!(newest["decision"], "send");
}

#[test]
fn a_project_toggle_changes_the_next_decision() {
    let app = seeded_app();
    let mut admin = Visitor::login(&app, "admin", ADMIN_PASSWORD);
    let r = admin.post(
        "/projects/IT/toggle",
        &[("setting", "invite_notification"), ("value", "off")],
    );
    assert_eq!(r.status, 303);
    // Nobody of the list would get an email: first a confirmation, nothing added.
    let r = admin.post_follow(
        "/projects/IT/customers",
        &[("emails", "dora@example.com"), ("invite", "on")],
    );
    assert_eq!(r.status, 200);
    assert!(
        r.text
            .contains("Add 1 customer to IT Help without any email?"),
        "{}",
        r.text
    );
    assert!(
        r.text.contains("0 of the 1 will get an email"),
        "{}",
        r.text
    );
    let none = app.get("/api/v1/why/dora%40example.com").json();
    assert_eq!(none["verdict"]["code"], "no_record", "{none:#}");
    let r = admin.post_follow(
        "/projects/IT/customers",
        &[
            ("emails", "dora@example.com"),
            ("invite", "on"),
            ("confirm", "yes"),
        ],
    );
    assert!(
        r.text.contains("invite_notification_disabled"),
        "{}",
        r.text
    );
    let r = admin.post(
        "/projects/IT/toggle",
        &[("setting", "invite_notification"), ("value", "on")],
    );
    assert_eq!(r.status, 303);
    let r = admin.post_follow(
        "/projects/IT/customers",
        &[("emails", "eve@example.com"), ("invite", "on")],
    );
    assert!(
        r.text.contains(
            "eve@<wbr>example.<wbr>com is now a customer of IT Help; an invitation will be sent."
        ),
        "{}",
        r.text
    );
    let r = admin.post_follow(
        "/projects/IT/customers",
        &[
            (
                "emails",
                "frank@example.com, \"Smith, Ann\" <ann@example.com>",
            ),
            ("confirm", "yes"),
        ],
    );
    assert!(
        r.text.contains("agent_opted_out"),
        "unticked: no invitation"
    );
    assert!(
        r.text.contains("ann@<wbr>example.<wbr>com")
            && r.text.contains("Results: 0 will get an email, 2 will not"),
        "a quoted comma does not split: {}",
        r.text
    );
}

#[test]
fn outgoing_mail_off_then_on_offers_to_resend_what_it_skipped() {
    let app = seeded_app();
    let mut admin = Visitor::login(&app, "admin", ADMIN_PASSWORD);
    // Off asks first, showing what waits; nothing changes until confirmed.
    let r = admin.post("/site/outgoing-mail", &[("value", "off")]);
    assert_eq!(r.status, 200);
    assert!(
        r.text
            .contains("Turn outgoing mail off for the whole site?"),
        "{}",
        r.text
    );
    assert!(r.text.contains("queued emails will wait"), "{}", r.text);
    assert_eq!(app.get("/api/v1/site").json()["outgoing_mail"], true);
    let r = admin.post(
        "/site/outgoing-mail",
        &[("value", "off"), ("confirm", "yes")],
    );
    assert_eq!(r.status, 303);
    admin.post_follow(
        "/projects/IT/customers",
        &[
            ("emails", "hal@example.com\nivy@example.com"),
            ("invite", "on"),
            ("confirm", "yes"),
        ],
    );
    let page = admin.get("/site");
    assert!(page.text.contains("has been off since"), "{}", page.text);
    assert!(page.text.contains("Turn outgoing mail back on first"));
    admin.post("/site/outgoing-mail", &[("value", "on")]);
    let page = admin.get("/site");
    assert!(
        page.text
            .contains("<strong>2</strong> customers got no email"),
        "{}",
        page.text
    );
    let since = page
        .text
        .split("name=\"since\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the period")
        .to_owned();
    let until = page
        .text
        .split("name=\"until\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the period")
        .to_owned();
    let r = admin.post(
        "/site/resend-skipped",
        &[("since", &since), ("until", &until)],
    );
    assert_eq!(r.status, 303);
    let page = admin.get("/site");
    assert!(
        page.text.contains("Queued 2 emails again."),
        "{}",
        page.text
    );
    assert!(page.text.contains("was resent on"));
    let newest = &app
        .get("/api/v1/decisions?email=hal%40example.com&limit=1")
        .json()["items"][0];
    assert_eq!(newest["channel"], "resend");
}

/// A `multipart/form-data` body as a browser sends a file upload.
fn multipart(fields: &[(&str, &str)], file: (&str, &str)) -> (String, Vec<u8>) {
    let boundary = "----mailtrail-test-boundary";
    let mut body = String::new();
    for (name, value) in fields {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"list.csv\"\r\nContent-Type: text/csv\r\n\r\n{}\r\n--{boundary}--\r\n",
        file.0, file.1
    ));
    (
        format!("multipart/form-data; boundary={boundary}"),
        body.into_bytes(),
    )
}

#[test]
fn suppressions_are_imported_added_and_bulk_removed_from_the_page() {
    let app = seeded_app();
    let mut admin = Visitor::login(&app, "admin", ADMIN_PASSWORD);
    let csrf = admin.csrf.clone();
    let upload = |v: &mut Visitor, csv: &str| {
        let (content_type, body) =
            multipart(&[("csrf", &csrf), ("back", "/suppressions")], ("file", csv));
        let request = app
            .anonymous()
            .request(Method::POST, "/suppressions/import")
            .header("content-type", content_type)
            .body(body);
        v.send(request)
    };

    let r = upload(
        &mut admin,
        "email,reason,note\nok@example.com,,fine\nnot-an-address,,\n",
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(
        r.text.contains("line 3:"),
        "the error names the line: {}",
        r.text
    );
    assert!(r.text.contains("Nothing was imported."));
    assert!(
        app.get("/api/v1/why/ok%40example.com").json()["suppression"].is_null(),
        "all rows or none"
    );

    let r = upload(
        &mut admin,
        "email,reason,note\nz1@example.com,,from the old system\nz2@example.com,import,\ngrace@example.com,,\n",
    );
    assert_eq!(r.status, 303, "{}", r.text);
    let page = admin.get("/suppressions");
    assert!(
        page.text
            .contains("Imported: 2 added, 1 already suppressed."),
        "{}",
        page.text
    );
    assert!(page.text.contains("z1@example.com") && page.text.contains("from the old system"));

    let r = admin.post(
        "/suppressions/add",
        &[
            ("email", "Zed <ZED@Example.com>"),
            ("note", "asked by phone"),
            ("back", "/suppressions"),
        ],
    );
    assert_eq!(r.status, 303);
    let r = admin.post(
        "/suppressions/add",
        &[("email", "zed@example.com"), ("back", "/suppressions")],
    );
    assert_eq!(r.status, 422);
    assert!(r.text.contains("zed@example.com is already suppressed."));

    let r = admin.post(
        "/suppressions/bulk-remove",
        &[("form", "bulk"), ("back", "/suppressions"), ("note", "")],
    );
    assert_eq!(r.status, 422);
    assert!(r.text.contains("A note is required"));
    let r = admin.post(
        "/suppressions/bulk-remove",
        &[
            ("form", "bulk"),
            ("back", "/suppressions"),
            ("note", "wrong import"),
        ],
    );
    assert_eq!(r.status, 422, "at least one filter");
    assert!(r.text.contains("Pick at least one filter"), "{}", r.text);
    // Every error at once: a bad code, a bad day and no note.
    let r = admin.post(
        "/suppressions/bulk-remove",
        &[
            ("form", "bulk"),
            ("back", "/suppressions"),
            ("smtp_code", "55"),
            ("since", "yesterday"),
            ("note", ""),
        ],
    );
    assert_eq!(r.status, 422);
    for message in [
        "A note is required",
        "An SMTP code is three digits",
        "Write a day like 2026-11-22",
    ] {
        assert!(r.text.contains(message), "{message}: {}", r.text);
    }
    // Listed in a summary at the top, which takes focus.
    let summary = r
        .text
        .split(r#"id="error-summary""#)
        .nth(1)
        .expect("an error summary");
    assert!(summary.contains("autofocus"), "{summary}");
    assert!(summary.contains("3 things to fix"), "{summary}");
    assert!(
        r.text.find("error-summary") < r.text.find("<h1"),
        "the summary comes before the page's heading"
    );
    let fields = [
        ("form", "bulk"),
        ("back", "/suppressions"),
        ("reason", "import"),
        ("note", "wrong import"),
    ];
    // First a confirmation with the count; nothing is removed yet.
    let r = admin.post("/suppressions/bulk-remove", &fields);
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains("Unsuppress 2 addresses?"), "{}", r.text);
    assert!(r.text.contains("Yes, unsuppress 2 addresses"), "{}", r.text);
    assert!(
        r.text.contains(r#"name="confirm" value="yes""#),
        "{}",
        r.text
    );
    assert!(
        admin.get("/suppressions").text.contains("z1@example.com"),
        "nothing removed before confirming"
    );
    let mut confirmed = fields.to_vec();
    confirmed.push(("confirm", "yes"));
    let r = admin.post("/suppressions/bulk-remove", &confirmed);
    assert_eq!(r.status, 303);
    let page = admin.get("/suppressions");
    assert!(
        page.text.contains("Unsuppressed 2 addresses in one step"),
        "{}",
        page.text
    );
    assert!(!page.text.contains("z1@example.com"));
    assert!(
        page.text.contains("zed@example.com"),
        "the manual one stays"
    );
    let audit = app.get("/api/v1/audit").json();
    assert_eq!(audit["items"][0]["what"], "suppression.bulk_remove");
    assert_eq!(audit["items"][0]["note"], "wrong import");

    let csv = admin.get("/outbox.csv?status=skipped");
    assert!(
        csv.text.starts_with("id,created_at,project"),
        "{}",
        csv.text
    );
    assert!(csv.text.contains("grace@example.com"));
}

#[test]
fn cli_user_list_passwd_and_remove() {
    let app = App::start();
    let added = app.cli_with_stdin(
        &["user", "add", "sam", "--role", "support"],
        "first password\n",
    );
    assert_eq!(added.code(), 0, "{}", added.stderr_text());
    let listing = app.cli(&["user", "list"]);
    assert_eq!(listing.code(), 0);
    assert_eq!(listing.stdout_text(), "admin\tadmin\nsam\tsupport\n");
    let mut before = Visitor::login(&app, "sam", "first password");
    before.get("/").expect_status(200);
    let changed = app.cli_with_stdin(&["user", "passwd", "sam"], "second password\n");
    assert_eq!(changed.code(), 0, "{}", changed.stderr_text());
    assert!(!changed.stdout_text().contains("second password"));
    assert_ne!(before.get("/").status, 200, "the old session ended");
    let old = Visitor::anonymous(&app).try_login("sam", "first password");
    assert_ne!(old.status, 303, "the old password no longer works");
    Visitor::login(&app, "sam", "second password");
    let short = app.cli_with_stdin(&["user", "passwd", "sam"], "short\n");
    assert_eq!(short.code(), 2);
    let nobody = app.cli_with_stdin(&["user", "passwd", "nobody"], "long enough pw\n");
    assert_eq!(nobody.code(), 2, "{}", nobody.stderr_text());
    let removed = app.cli(&["user", "remove", "sam"]);
    assert_eq!(removed.code(), 0, "{}", removed.stderr_text());
    let gone = Visitor::anonymous(&app).try_login("sam", "second password");
    assert_ne!(gone.status, 303, "a removed user cannot log in");
    let last_admin = app.cli(&["user", "remove", "admin"]);
    assert_eq!(last_admin.code(), 2, "{}", last_admin.stderr_text());
    assert!(
        last_admin.stderr_text().contains("last admin"),
        "{}",
        last_admin.stderr_text()
    );
    Visitor::login(&app, "admin", ADMIN_PASSWORD);
}

#[test]
fn every_page_says_when_outgoing_mail_is_off_and_when_emails_go_to_files() {
    let app = seeded_app();
    let mut admin = Visitor::login(&app, "admin", ADMIN_PASSWORD);
    let mut vera = Visitor::login(&app, "vera", "password123");
    let id = some_decision_id(&app);
    let decision = format!("/decisions/{id}");
    let pages: Vec<&str> = PAGES
        .iter()
        .copied()
        .filter(|p| *p != "/logout")
        .chain([decision.as_str()])
        .collect();
    // The test app writes emails to files and runs without --demo.
    for path in &pages {
        let page = admin.get(path);
        assert!(
            page.text.contains("not sent: the transport is file"),
            "{path}: {}",
            page.text
        );
        assert!(!page.text.contains("Outgoing mail is off"), "{path}");
    }
    app.patch_json("/api/v1/site", &json!({"outgoing_mail": false}))
        .expect_status(200);
    for visitor in [&mut admin, &mut vera] {
        for path in &pages {
            let page = visitor.get(path);
            assert!(
                page.text.contains("Outgoing mail is off"),
                "{path}: {}",
                page.text
            );
        }
    }
    app.patch_json("/api/v1/site", &json!({"outgoing_mail": true}))
        .expect_status(200);
    assert!(!admin.get("/outbox").text.contains("Outgoing mail is off"));
}

#[test]
fn the_demo_has_no_file_transport_banner() {
    let app = App::builder().arg("--demo").start();
    let mut admin = Visitor::login(&app, "admin", ADMIN_PASSWORD);
    let page = admin.get("/outbox");
    page.expect_status(200);
    assert!(
        !page.text.contains("the transport is file"),
        "{}",
        page.text
    );
}

#[test]
fn a_viewer_sees_project_settings_read_only() {
    let app = seeded_app();
    let mut vera = Visitor::login(&app, "vera", "password123");
    let page = vera.get("/projects/IT");
    page.expect_status(200);
    assert!(page.text.contains("id=\"settings-read\""), "{}", page.text);
    assert!(page.text.contains("IT Help"));
    for control in [
        "name=\"name\"",
        "name=\"allow_patterns\"",
        "name=\"email_format\"",
        "<fieldset",
    ] {
        assert!(!page.text.contains(control), "a viewer gets {control}");
    }
    let mut admin = Visitor::login(&app, "admin", ADMIN_PASSWORD);
    let page = admin.get("/projects/IT");
    assert!(page.text.contains("name=\"allow_patterns\""));
    assert!(!page.text.contains("id=\"settings-read\""));
}

#[test]
fn searches_find_underscores_and_the_outbox_matches_a_domain_or_a_prefix() {
    let app = seeded_app();
    for email in [
        "john_doe@example.com",
        "johnxdoe@example.com",
        "100%@example.com",
    ] {
        app.post_json(
            "/api/v1/suppressions",
            &json!({"email": email, "note": "test"}),
        )
        .expect_status(201);
    }
    let found = app.get("/api/v1/suppressions?q=john_doe").json();
    let emails: Vec<&str> = found["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["email"].as_str())
        .collect();
    assert_eq!(emails, ["john_doe@example.com"], "{found:#}");
    let mut admin = Visitor::login(&app, "admin", ADMIN_PASSWORD);
    let page = admin.get("/suppressions?q=john_doe");
    assert!(
        page.text
            .contains(r#"<p class="small muted" id="total">1 address.</p>"#),
        "{}",
        page.text
    );
    let page = admin.get("/suppressions");
    assert!(
        page.text.contains(r#"id="total">4 addresses.</p>"#),
        "{}",
        page.text
    );
    let found = app.get("/api/v1/suppressions?q=100%25").json();
    assert_eq!(
        found["items"].as_array().map(Vec::len),
        Some(1),
        "{found:#}"
    );

    app.post_json(
        "/api/v1/projects/IT/customers",
        &json!({"emails": ["zoe@other.org", "zack@other.org", "alfred@example.com"]}),
    )
    .expect_status(200);
    // Addresses are shown with a break opportunity after `@` and each `.`.
    let rows = |text: &str, who: &str| {
        let shown = who.replace('@', "@<wbr>").replace('.', ".<wbr>");
        text.matches(&format!(">{shown}<")).count()
    };
    let page = admin.get("/outbox?email=%40other.org");
    page.expect_status(200);
    assert!(rows(&page.text, "zoe@other.org") > 0, "{}", page.text);
    assert!(rows(&page.text, "zack@other.org") > 0, "{}", page.text);
    assert_eq!(rows(&page.text, "alice@example.com"), 0, "{}", page.text);
    let page = admin.get("/outbox?email=al");
    assert!(rows(&page.text, "alice@example.com") > 0, "{}", page.text);
    assert!(rows(&page.text, "alfred@example.com") > 0, "{}", page.text);
    assert_eq!(rows(&page.text, "zoe@other.org"), 0, "{}", page.text);
    let page = admin.get("/outbox?email=zoe%40other.org");
    assert!(rows(&page.text, "zoe@other.org") > 0, "{}", page.text);
    assert_eq!(rows(&page.text, "zack@other.org"), 0, "{}", page.text);
}

#[test]
fn the_verdict_names_the_fix_that_works_and_only_that_one_is_primary() {
    let app = seeded_app();
    app.patch_json(
        "/api/v1/projects/IT",
        &json!({"invite_notification": false}),
    )
    .expect_status(200);
    app.post_json(
        "/api/v1/projects/IT/customers",
        &json!({"emails": ["henry@example.com"]}),
    )
    .expect_status(200);
    let why = app.get("/api/v1/why/henry%40example.com").json();
    let summary = why["verdict"]["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("Resend it now"), "{why:#}");
    assert!(!summary.contains("turn it on"), "{why:#}");
    let fixes = why["fixes"].as_array().cloned().unwrap_or_default();
    let resend = fixes
        .iter()
        .find(|f| f["action"] == "resend")
        .expect("resend");
    assert_eq!(resend["preview"]["decision"], "send", "{why:#}");
    assert_eq!(resend["requires_consent"], false);
    let mut admin = Visitor::login(&app, "admin", ADMIN_PASSWORD);
    let page = admin.get("/why?email=henry%40example.com");
    assert!(
        page.text
            .contains(r#"<button type="submit">Resend invitation (IT)</button>"#),
        "the working fix is the primary button: {}",
        page.text
    );
    assert!(
        page.text
            .contains(r#"<button type="submit" class="secondary">Turn it on in IT</button>"#),
        "a fix that is not needed is not primary: {}",
        page.text
    );

    // Outgoing mail off and an opt-out: neither fix is enough alone.
    app.patch_json("/api/v1/site", &json!({"outgoing_mail": false}))
        .expect_status(200);
    let why = app.get("/api/v1/why/grace%40example.com").json();
    let summary = why["verdict"]["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("No single fix is enough"), "{why:#}");
    assert!(summary.contains("turn outgoing mail back on"), "{why:#}");
    let page = admin.get("/why?email=grace%40example.com");
    assert!(
        !page.text.contains(r#"<button type="submit">Unsuppress"#),
        "{}",
        page.text
    );
    assert!(
        !page
            .text
            .contains(r#"<button type="submit">Turn outgoing mail on"#),
        "{}",
        page.text
    );
    assert!(page.text.contains("not enough alone"), "{}", page.text);
}

#[test]
fn a_project_toggle_from_the_why_page_asks_first() {
    let app = seeded_app();
    let mut admin = Visitor::login(&app, "admin", ADMIN_PASSWORD);
    let fields = [
        ("setting", "invite_notification"),
        ("value", "off"),
        ("back", "/why?email=alice%40example.com"),
    ];
    let r = admin.post("/projects/IT/toggle", &fields);
    assert_eq!(r.status, 200);
    assert!(r.text.contains("for all of IT Help (IT)?"), "{}", r.text);
    assert!(r.text.contains("not only this customer"), "{}", r.text);
    assert_eq!(
        app.get("/api/v1/projects/IT").json()["invite_notification"],
        true,
        "nothing changed yet"
    );
    let mut confirmed = fields.to_vec();
    confirmed.push(("confirm", "yes"));
    let r = admin.post("/projects/IT/toggle", &confirmed);
    assert_eq!(r.status, 303);
    assert_eq!(
        app.get("/api/v1/projects/IT").json()["invite_notification"],
        false
    );
}

#[test]
fn decision_links_name_recipient_and_kind_and_tables_take_keyboard_focus() {
    let app = seeded_app();
    let mut admin = Visitor::login(&app, "admin", ADMIN_PASSWORD);
    let page = admin.get("/outbox");
    page.expect_status(200);
    assert!(
        page.text
            .contains(r#"<span class="sr-only">: invitation to alice@example.com</span>"#),
        "{}",
        page.text
    );
    for path in ["/outbox", "/suppressions", "/audit"] {
        let page = admin.get(path);
        assert!(
            page.text
                .contains(r#"<div class="table-wrap" tabindex="0" role="region""#),
            "{path}: {}",
            page.text
        );
    }
    let page = admin.get("/why?email=alice%40example.com");
    assert!(page.text.contains("Details and email preview<span class=\"sr-only\"> of the invitation to alice@example.com"), "{}", page.text);
    // A bad filter says so instead of "No decisions match."
    let page = admin.get("/outbox?since=yesterday");
    assert!(page.text.contains("Fix the filter above"), "{}", page.text);
    assert!(!page.text.contains("No decisions match."));
    assert!(!page.text.contains("RFC 3339"));
}

#[test]
fn the_settings_form_lists_every_error_at_once_and_refuses_an_ignored_copy() {
    let app = seeded_app();
    let mut admin = Visitor::login(&app, "admin", ADMIN_PASSWORD);
    let settings = |name: &str, allow: &str, copy: &str, copy_as: &str| {
        vec![
            ("name".to_owned(), name.to_owned()),
            ("allow_patterns".to_owned(), allow.to_owned()),
            ("deny_patterns".to_owned(), String::new()),
            ("email_format".to_owned(), "multipart".to_owned()),
            ("template_set".to_owned(), "default".to_owned()),
            ("copy_to_address".to_owned(), copy.to_owned()),
            ("copy_to_as".to_owned(), copy_as.to_owned()),
        ]
    };
    let post = |admin: &mut Visitor, fields: Vec<(String, String)>| {
        let fields: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        admin.post("/projects/IT", &fields)
    };
    let r = post(&mut admin, settings("", "([a-z]", "not-an-address", "cc"));
    assert_eq!(r.status, 422);
    assert!(r.text.contains("3 things to fix"), "{}", r.text);
    assert!(r.text.contains("project name is 1 to 100"), "{}", r.text);
    assert!(
        r.text
            .contains("Allow patterns, line 1: invalid regular expression"),
        "{}",
        r.text
    );
    assert!(r.text.contains("Not a valid address"), "{}", r.text);
    // A copy address with "none" would be dropped: refused, nothing saved.
    let r = post(&mut admin, settings("IT Help", "", "boss@example.com", ""));
    assert_eq!(r.status, 422);
    assert!(
        r.text.contains("with &#34;none&#34; it would not be used"),
        "{}",
        r.text
    );
    assert!(app.get("/api/v1/projects/IT").json()["copy_to"].is_null());
    // Valid: saved, and the browser is sent on (post/redirect/get).
    let r = post(
        &mut admin,
        settings("IT Help", "", "boss@example.com", "bcc"),
    );
    assert_eq!(r.status, 303, "{}", r.text);
    assert_eq!(
        app.get("/api/v1/projects/IT").json()["copy_to"]["address"],
        "boss@example.com"
    );
}

#[test]
fn addresses_break_only_after_at_or_dot_and_tables_become_cards() {
    let app = seeded_app();
    let mut admin = Visitor::login(&app, "admin", ADMIN_PASSWORD);
    let page = admin.get("/outbox");
    assert!(
        page.text.contains(">alice@<wbr>example.<wbr>com<"),
        "{}",
        page.text
    );
    assert!(page.text.contains(r#"<table class="cards">"#));
    assert!(
        page.text
            .contains(r#"<td class="first" data-label="Status">"#)
    );
    let css = admin.get("/assets/app.css").text;
    assert!(css.contains(".addr { overflow-wrap: normal; word-break: normal; }"));
    assert!(css.contains("table.cards td.first { order: -1; }"));
}

#[test]
fn the_outbox_shows_its_total_and_pages_both_ways() {
    let app = seeded_app();
    let emails: Vec<String> = (0..60).map(|i| format!("page{i}@example.com")).collect();
    app.post_json(
        "/api/v1/projects/IT/customers",
        &json!({ "emails": emails }),
    )
    .expect_status(200);
    let total = app.get("/api/v1/decisions?limit=500").json()["items"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    let mut admin = Visitor::login(&app, "admin", ADMIN_PASSWORD);
    let href = |text: &str, rel: &str| -> Option<String> {
        let marker = format!(r#"rel="{rel}""#);
        let before = text.split(&marker).next()?;
        if before.len() == text.len() {
            return None;
        }
        let href = before.rsplit("href=\"").next()?.split('"').next()?;
        Some(href.replace("&amp;", "&"))
    };
    let first_link = |text: &str| -> String {
        text.split("href=\"/decisions/")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_default()
            .to_owned()
    };
    let page1 = admin.get("/outbox");
    assert!(
        page1.text.contains(&format!("{total} decisions match.")),
        "{}",
        page1.text
    );
    assert!(
        href(&page1.text, "prev").is_none(),
        "no newer page on the first"
    );
    let older = href(&page1.text, "next").expect("an older page");
    let page2 = admin.get(&older);
    page2.expect_status(200);
    assert!(page2.text.contains(&format!("{total} decisions match.")));
    let newer = href(&page2.text, "prev").expect("a newer page from the second");
    let back = admin.get(&newer);
    back.expect_status(200);
    assert_eq!(
        first_link(&back.text),
        first_link(&page1.text),
        "back on the first page's rows"
    );
    assert!(
        href(&back.text, "prev").is_none(),
        "nothing newer than the newest"
    );
    assert!(href(&back.text, "next").is_some(), "and older again");
    let page = admin.get("/outbox?email=page1");
    assert!(
        page.text.contains("11 decisions match."),
        "page1 and page10..19: {}",
        page.text
    );
}

#[test]
fn a_demo_incident_holds_only_bounces_and_its_button_removes_exactly_them() {
    let app = App::builder().arg("--demo").start();
    let all = |app: &App| -> Vec<serde_json::Value> {
        app.get("/api/v1/suppressions?limit=500").json()["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let before = all(&app);
    let incidents = app.get("/api/v1/suppressions/incidents?window=30d").json();
    let items = incidents["items"].as_array().cloned().unwrap_or_default();
    assert!(!items.is_empty(), "the demo has bounces: {incidents:#}");
    for incident in &items {
        let ids = incident["ids"].as_array().cloned().unwrap_or_default();
        assert_eq!(ids.len() as i64, incident["count"].as_i64().unwrap_or(-1));
        for id in &ids {
            let reason = before
                .iter()
                .find(|s| s["email"] == *id)
                .map(|s| s["reason"].clone())
                .unwrap_or_default();
            assert!(
                reason == "hard_bounce" || reason == "bounce_report",
                "{id} ({reason}) in {incident:#}"
            );
        }
    }
    // The dashboard's undo form of the largest incident, as the page renders it.
    let mut admin = Visitor::login(&app, "admin", ADMIN_PASSWORD);
    let page = admin.get("/suppressions");
    let incident = &items[0];
    let ids: Vec<String> = incident["ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i.as_str().map(str::to_owned))
        .collect();
    let field = ids.join("\n");
    if incident["count"].as_i64().unwrap_or(0) > 1 {
        assert!(page.text.contains(r#"name="ids""#), "{}", page.text);
    }
    let fields = [
        ("form", "incident-0"),
        ("back", "/suppressions"),
        ("ids", field.as_str()),
        ("note", "the relay's bad hour"),
    ];
    let r = admin.post("/suppressions/bulk-remove", &fields);
    assert_eq!(r.status, 200, "a confirmation first: {}", r.text);
    let count = ids.len();
    let noun = if count == 1 { "address" } else { "addresses" };
    assert!(
        r.text.contains(&format!("Unsuppress {count} {noun}?")),
        "{}",
        r.text
    );
    assert_eq!(all(&app).len(), before.len(), "nothing removed yet");
    let mut confirmed = fields.to_vec();
    confirmed.push(("confirm", "yes"));
    let r = admin.post("/suppressions/bulk-remove", &confirmed);
    assert_eq!(r.status, 303);
    let after = all(&app);
    assert_eq!(
        after.len(),
        before.len() - count,
        "exactly the incident's members"
    );
    for s in &after {
        assert!(
            !ids.iter().any(|id| s["email"] == id.as_str()),
            "{s:#} should be gone"
        );
    }
    for reason in ["complaint", "manual"] {
        assert_eq!(
            before.iter().filter(|s| s["reason"] == reason).count(),
            after.iter().filter(|s| s["reason"] == reason).count(),
            "no {reason} suppression was touched"
        );
    }
}

#[test]
fn the_suppression_list_pages_both_ways_through_equal_times() {
    let app = seeded_app();
    // One import: 60 suppressions with the same time, ordered by address.
    let csv: String = (0..60).map(|i| format!("s{i:02}@example.com\n")).collect();
    app.post_raw("/api/v1/suppressions/import", "text/csv", csv)
        .expect_status(200);
    let mut admin = Visitor::login(&app, "admin", ADMIN_PASSWORD);
    let href = |text: &str, rel: &str| -> Option<String> {
        let marker = format!(r#"rel="{rel}""#);
        let (before, _) = text.split_once(&marker)?;
        let href = before.rsplit("href=\"").next()?.split('"').next()?;
        Some(href.replace("&amp;", "&").replace("&#124;", "|"))
    };
    let listed = |text: &str| -> Vec<String> {
        text.split(r#"<td class="addr" data-label="Address"><a href="/why?email="#)
            .skip(1)
            .filter_map(|s| s.split('"').next().map(str::to_owned))
            .collect()
    };
    let page1 = admin.get("/suppressions");
    assert!(
        page1.text.contains(r#"id="total">61 addresses.</p>"#),
        "{}",
        page1.text
    );
    assert!(href(&page1.text, "prev").is_none());
    let rows1 = listed(&page1.text);
    assert_eq!(rows1.len(), 50);
    let page2 = admin.get(&href(&page1.text, "next").expect("older"));
    let rows2 = listed(&page2.text);
    assert_eq!(rows2.len(), 11, "{}", page2.text);
    assert!(rows2.iter().all(|r| !rows1.contains(r)), "no row twice");
    let back = admin.get(&href(&page2.text, "prev").expect("newer"));
    back.expect_status(200);
    assert_eq!(
        listed(&back.text),
        rows1,
        "the newer page is the first page again"
    );
    assert!(href(&back.text, "prev").is_none());
}

#[test]
fn the_audit_log_shows_its_total_and_pages_both_ways() {
    let app = seeded_app();
    for i in 0..55 {
        app.post_json(
            "/api/v1/suppressions",
            &json!({"email": format!("a{i}@example.com"), "note": "test"}),
        )
        .expect_status(201);
    }
    let total = app.get("/api/v1/audit?limit=500").json()["items"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    let mut admin = Visitor::login(&app, "admin", ADMIN_PASSWORD);
    let href = |text: &str, rel: &str| -> Option<String> {
        let (before, _) = text.split_once(&format!(r#"rel="{rel}""#))?;
        before
            .rsplit("href=\"")
            .next()?
            .split('"')
            .next()
            .map(str::to_owned)
    };
    let page1 = admin.get("/audit");
    assert!(
        page1
            .text
            .contains(&format!(r#"id="total">{total} entries.</p>"#)),
        "{}",
        page1.text
    );
    assert!(href(&page1.text, "prev").is_none());
    let page2 = admin.get(&href(&page1.text, "next").expect("older"));
    let back = admin.get(&href(&page2.text, "prev").expect("newer"));
    back.expect_status(200);
    let first_row = |t: &str| {
        t.split("<tbody>")
            .nth(1)
            .map(|s| s[..400.min(s.len())].to_owned())
    };
    assert_eq!(first_row(&back.text), first_row(&page1.text));
    assert!(href(&back.text, "prev").is_none());
}

/// The `action` of every `method="post"` form of `html` (`None` for a form without
/// one, which posts to the page's own URL).
fn post_actions(html: &str) -> Vec<Option<String>> {
    html.split("<form ")
        .skip(1)
        .filter_map(|rest| {
            let tag = &rest[..rest.find('>')?];
            if !tag.contains("method=\"post\"") {
                return None;
            }
            Some(tag.split_once("action=\"").map(|(_, a)| {
                a[..a.find('"').unwrap_or(a.len())]
                    .replace("&amp;", "&")
                    .replace("&#x3f;", "?")
            }))
        })
        .collect()
}

/// The value of the hidden field `name` in `html`.
fn hidden_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_owned())
}

#[test]
fn every_form_posts_to_its_own_page_and_shows_its_errors_there() {
    let app = seeded_app();
    let mut admin = Visitor::login(&app, "admin", ADMIN_PASSWORD);
    // SPEC §15: the address bar stays on the page; only logging out leaves it.
    for path in [
        "/",
        "/why?email=grace%40example.com",
        "/why?email=alice%40example.com",
        "/suppressions",
        "/suppressions?q=grace",
        "/projects",
        "/projects/IT",
        "/site",
    ] {
        let page = admin.get(path);
        page.expect_status(200);
        let own = path.split('?').next().unwrap_or(path);
        let actions = post_actions(&page.text);
        assert!(!actions.is_empty(), "{path} has forms");
        for action in actions {
            let action = action.unwrap_or_else(|| path.to_owned());
            let action_path = action.split('?').next().unwrap_or(&action);
            assert!(
                action_path == own || action_path == "/logout",
                "{path} has a form posting to {action}"
            );
        }
    }
    // A suppression with a bad address: the list page again, at its own URL, with the
    // error summary that takes focus.
    let r = admin.post(
        "/suppressions?q=grace",
        &[("do", "add"), ("email", "not an address"), ("note", "x")],
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.text.contains("id=\"error-summary\""), "{}", r.text);
    assert!(r.text.contains("autofocus"), "the summary takes focus");
    assert!(
        r.text.contains("value=\"not an address\""),
        "kept what was typed"
    );
    assert!(
        r.text.contains("Matches for \"grace\""),
        "the same page: {}",
        r.text
    );
    // Unsuppressing from the why page without a note or consent: the why page again.
    let r = admin.post(
        "/why?email=grace%40example.com",
        &[
            ("do", "unsuppress"),
            ("email", "grace@example.com"),
            ("form", "unsuppress"),
        ],
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.text.contains("A note is required"), "{}", r.text);
    assert!(
        r.text.contains("grace@example.com is suppressed"),
        "{}",
        r.text
    );
    // A toggle and the outgoing mail switch from their pages; the confirmation step
    // posts back to where it came from (its form has no action of its own).
    let r = admin.post(
        "/projects/IT",
        &[
            ("do", "toggle"),
            ("setting", "verification_emails"),
            ("value", "off"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.text);
    assert_eq!(r.header("location"), Some("/projects/IT"));
    let r = admin.post("/site", &[("do", "outgoing-mail"), ("value", "off")]);
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.text
            .contains("Turn outgoing mail off for the whole site?")
    );
    assert_eq!(
        post_actions(&r.text).iter().filter(|a| a.is_none()).count(),
        1
    );
    assert!(
        r.text.contains("name=\"do\" value=\"outgoing-mail\""),
        "{}",
        r.text
    );
    let r = admin.post(
        "/site",
        &[
            ("do", "outgoing-mail"),
            ("value", "off"),
            ("confirm", "yes"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.text);
    assert_eq!(app.get("/api/v1/site").json()["outgoing_mail"], false);
    let r = admin.post("/site", &[("do", "outgoing-mail"), ("value", "on")]);
    assert_eq!(r.status, 303, "{}", r.text);
    // The site form: both fields wrong, both errors at once, at /site.
    let r = admin.post(
        "/site",
        &[
            ("do", "settings"),
            ("from", "no mailbox"),
            ("portal_base_url", "ftp://x"),
        ],
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(r.text.contains("2 things to fix"), "{}", r.text);
    // An action the page does not have is a 400 page, not a guess.
    let r = admin.post("/site", &[("do", "explode")]);
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(is_html_page(&r));
}

#[test]
fn adding_customers_redirects_to_its_result_and_a_second_submit_adds_nobody_twice() {
    let app = seeded_app();
    let mut admin = Visitor::login(&app, "admin", ADMIN_PASSWORD);
    let page = admin.get("/projects/IT");
    let key = hidden_value(&page.text, "idem").expect("the form has a key");
    let fields = [
        ("do", "customers"),
        ("idem", key.as_str()),
        ("emails", "zed@example.com\nyan@example.com"),
        ("invite", "on"),
    ];
    // Post/redirect/get: 303 to the project's page with the result's key.
    let r = admin.post("/projects/IT", &fields);
    assert_eq!(r.status, 303, "{}", r.text);
    let location = r.header("location").expect("a redirect").to_owned();
    assert_eq!(location, format!("/projects/IT?added={key}"));
    let shown = admin.get(&location);
    shown.expect_status(200);
    assert!(
        shown
            .text
            .contains("Added 2 addresses to IT Help: 2 will get an email, 0 will not."),
        "{}",
        shown.text
    );
    assert!(shown.text.contains("id=\"flash\""), "the flash takes focus");
    assert!(
        shown
            .text
            .contains("Results: 2 will get an email, 0 will not")
    );
    assert!(shown.text.contains("zed@"), "{}", shown.text);
    // A reload shows the same result (the flash was shown once).
    let again = admin.get(&location);
    assert!(
        again
            .text
            .contains("Results: 2 will get an email, 0 will not")
    );
    assert!(!again.text.contains("id=\"flash\""));
    // The same form again (a double submit, or "resubmit" after back): same answer,
    // nobody added twice.
    let r = admin.post("/projects/IT", &fields);
    assert_eq!(r.status, 303, "{}", r.text);
    assert_eq!(r.header("location"), Some(location.as_str()));
    let decisions = app.get("/api/v1/decisions?email=zed%40example.com").json();
    assert_eq!(
        decisions["items"].as_array().map(Vec::len),
        Some(1),
        "{decisions:#}"
    );
    // The same key with another list is refused, and adds nothing.
    let r = admin.post(
        "/projects/IT",
        &[
            ("do", "customers"),
            ("idem", key.as_str()),
            ("emails", "xia@example.com"),
            ("invite", "on"),
        ],
    );
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(
        r.text.contains("already used for another list"),
        "{}",
        r.text
    );
    let none = app.get("/api/v1/why/xia%40example.com").json();
    assert_eq!(none["verdict"]["code"], "no_record");
    // Another user does not see the admin's result under its key.
    let mut vera = Visitor::login(&app, "vera", "password123");
    let page = vera.get(&location);
    page.expect_status(200);
    assert!(!page.text.contains("Results:"), "{}", page.text);
    // Each page load offers a new key.
    let next = admin.get("/projects/IT");
    assert_ne!(hidden_value(&next.text, "idem"), Some(key));
}

#[test]
fn after_every_successful_post_the_flash_takes_focus() {
    let app = seeded_app();
    let mut admin = Visitor::login(&app, "admin", ADMIN_PASSWORD);
    for (path, fields) in [
        (
            "/why?email=alice%40example.com",
            vec![
                ("do", "resend"),
                ("email", "alice@example.com"),
                ("project", "IT"),
            ],
        ),
        (
            "/suppressions",
            vec![
                ("do", "add"),
                ("email", "kim@example.com"),
                ("note", "asked"),
            ],
        ),
        (
            "/suppressions",
            vec![
                ("do", "unsuppress"),
                ("email", "kim@example.com"),
                ("note", "by phone"),
                ("consent", "yes"),
            ],
        ),
        (
            "/projects/IT",
            vec![
                ("do", "toggle"),
                ("setting", "public_signup"),
                ("value", "on"),
            ],
        ),
        (
            "/projects/IT",
            vec![
                ("do", "settings"),
                ("name", "IT Help"),
                ("email_format", "multipart"),
                ("template_set", "default"),
            ],
        ),
        ("/projects", vec![("key", "NEWP"), ("name", "New project")]),
        (
            "/site",
            vec![
                ("do", "settings"),
                ("from", "Help <help@acme.example>"),
                ("portal_base_url", "https://help.acme.example"),
            ],
        ),
    ] {
        let r = admin.post_follow(path, &fields);
        r.expect_status(200);
        let flash = r
            .text
            .find("id=\"flash\"")
            .unwrap_or_else(|| panic!("{path} {fields:?}: no flash: {}", r.text));
        let tag_end = r.text[flash..]
            .find('>')
            .map(|i| flash + i)
            .unwrap_or(flash);
        assert!(
            r.text[flash..tag_end].contains("autofocus"),
            "{path} {fields:?}: the flash does not take focus"
        );
    }
}

/// `/webhooks` (issue 13): admins add a subscription and see its secret once, in the
/// answer to the form; the list never shows it again; a bad URL is shown again with
/// its error (422) and stores nothing; delete removes it; other roles get 403.
#[test]
fn the_webhooks_page_shows_a_new_secret_once_and_deletes() {
    let app = App::start();
    let mut admin = Visitor::login(&app, "admin", ADMIN_PASSWORD);
    let page = admin.get("/webhooks");
    page.expect_status(200);
    assert!(page.text.contains("No subscriptions yet"), "{}", page.text);
    let bad = admin.post(
        "/webhooks/add",
        &[
            ("url", "http://169.254.169.254/latest/"),
            ("event_all", "on"),
        ],
    );
    bad.expect_status(422);
    assert!(bad.text.contains("link-local"), "{}", bad.text);
    assert!(
        bad.text.contains("169.254.169.254/latest/"),
        "the URL typed is kept"
    );
    let created = admin.post(
        "/webhooks/add",
        &[
            ("url", "https://hooks.example.test/in"),
            ("description", "ops chat"),
            ("event_message_bounced", "on"),
            ("event_address_suppressed", "on"),
        ],
    );
    created.expect_status(201);
    assert_eq!(created.header("cache-control"), Some("no-store"));
    let start = created.text.find("whsec_").expect("the secret is shown");
    let secret: String = created.text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "_+/=".contains(*c))
        .collect();
    assert!(secret.len() > 30, "{secret}");
    let list = app.get("/api/v1/webhooks").expect_status(200).json();
    assert_eq!(
        list["items"][0]["events"],
        json!(["message.bounced", "address.suppressed"])
    );
    let id = list["items"][0]["id"].as_str().unwrap().to_owned();
    let again = admin.get("/webhooks");
    assert!(again.text.contains("hooks.example.test/in"));
    assert!(
        !again.text.contains(&secret),
        "the secret is shown once only"
    );
    let log = admin.get(&format!("/webhooks?log={id}"));
    log.expect_status(200);
    assert!(log.text.contains("Nothing tried yet"), "{}", log.text);
    let user = app.cli_with_stdin(
        &["user", "add", "sam", "--role", "support"],
        "support-password\n",
    );
    assert!(user.status.success());
    let mut support = Visitor::login(&app, "sam", "support-password");
    support.get("/webhooks").expect_status(403);
    support
        .post("/webhooks/delete", &[("id", &id)])
        .expect_status(403);
    let deleted = admin.post("/webhooks/delete", &[("id", &id)]);
    deleted.expect_status(303);
    let list = app.get("/api/v1/webhooks").expect_status(200).json();
    assert_eq!(list["items"], json!([]));
}

#[test]
fn a_double_click_on_add_customers_adds_once_even_when_both_posts_race() {
    let app = seeded_app();
    let mut first = Visitor::login(&app, "admin", ADMIN_PASSWORD);
    let second = Visitor::login(&app, "admin", ADMIN_PASSWORD);
    let key = hidden_value(&first.get("/projects/IT").text, "idem").expect("a form key");
    for round in 0..5 {
        let key = format!("{}{round}", &key[..60]);
        let email = format!("race{round}@example.com");
        let emails = format!("{email}\nrace{round}b@example.com");
        let fields = [
            ("do", "customers"),
            ("idem", key.as_str()),
            ("emails", emails.as_str()),
            ("invite", "on"),
        ];
        // Both posts built first, then sent at once from two threads.
        let url = app.url("/projects/IT");
        let post = |v: &Visitor| {
            let mut all = vec![("csrf", v.csrf.as_str())];
            all.extend_from_slice(&fields);
            (
                v.cookie_header(),
                serde_urlencoded::to_string(&all).expect("encodes"),
            )
        };
        let requests = [post(&first), post(&second)];
        let statuses: Vec<u16> = std::thread::scope(|s| {
            let handles: Vec<_> = requests
                .iter()
                .map(|(cookie, body)| {
                    let url = url.clone();
                    s.spawn(move || {
                        reqwest::blocking::Client::builder()
                            .redirect(reqwest::redirect::Policy::none())
                            .build()
                            .expect("a client")
                            .post(url)
                            .header("cookie", cookie)
                            .header("content-type", "application/x-www-form-urlencoded")
                            .body(body.clone())
                            .send()
                            .expect("answers")
                            .status()
                            .as_u16()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("joins"))
                .collect()
        });
        assert_eq!(statuses, vec![303, 303]);
        let decisions = app.get(&format!("/api/v1/decisions?email={email}")).json();
        assert_eq!(
            decisions["items"].as_array().map(Vec::len),
            Some(1),
            "round {round}: {decisions:#}"
        );
    }
}
