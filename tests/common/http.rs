//! The HTTP side of the `App` fixture: a blocking client bound to one app's base URL
//! and token, and `Resp`, a whole answer read eagerly for assertions.

use reqwest::Method;
use reqwest::blocking::{Client, RequestBuilder};
use reqwest::header::HeaderMap;
use serde_json::Value;

/// An HTTP client for one app, with or without a bearer token. Cheap to clone.
#[derive(Clone)]
pub struct Api {
    /// Shared connection pool (a blocking client runs its own small runtime).
    http: Client,
    /// e.g. `http://127.0.0.1:40123`, without a trailing slash.
    base_url: String,
    /// Sent as `Authorization: Bearer {token}` when set.
    token: Option<String>,
}

impl Api {
    /// A client for a server not started yet, sending `token`.
    pub(super) fn new(http: Client, token: &str) -> Api {
        Api {
            http,
            base_url: String::new(),
            token: Some(token.to_owned()),
        }
    }

    /// Points the client at a (re)started server.
    pub(super) fn set_base_url(&mut self, base_url: &str) {
        self.base_url = base_url.to_owned();
    }

    /// The base URL, empty before the server first started.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The underlying reqwest client (no token added).
    pub fn http(&self) -> &Client {
        &self.http
    }

    /// The absolute URL of `path`; a full `http://` URL is returned unchanged.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            return path.to_owned();
        }
        assert!(
            !self.base_url.is_empty(),
            "the app's server was never started"
        );
        format!("{}{path}", self.base_url)
    }

    /// The same client with another token.
    pub fn with_token(&self, token: &str) -> Api {
        Api {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    /// The same client without a token.
    pub fn anonymous(&self) -> Api {
        Api {
            token: None,
            ..self.clone()
        }
    }

    /// A request to `path` carrying the token; add headers, then [`Api::send`].
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, self.url(path));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends a request and reads the whole answer; panics only if no answer came.
    pub fn send(&self, request: RequestBuilder) -> Resp {
        let response = request
            .send()
            .unwrap_or_else(|error| panic!("HTTP request failed: {error}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response
            .text()
            .unwrap_or_else(|error| panic!("reading an HTTP {status} body failed: {error}"));
        Resp {
            status,
            headers,
            text,
        }
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Resp {
        self.send(self.request(Method::GET, path))
    }

    /// `POST path` with a JSON body.
    pub fn post_json(&self, path: &str, body: &Value) -> Resp {
        self.send(self.request(Method::POST, path).json(body))
    }

    /// `PUT path` with a JSON body.
    pub fn put_json(&self, path: &str, body: &Value) -> Resp {
        self.send(self.request(Method::PUT, path).json(body))
    }

    /// `PATCH path` with a JSON body.
    pub fn patch_json(&self, path: &str, body: &Value) -> Resp {
        self.send(self.request(Method::PATCH, path).json(body))
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Resp {
        self.send(self.request(Method::DELETE, path))
    }

    /// `POST path` with a raw body and its `Content-Type`.
    pub fn post_raw(&self, path: &str, content_type: &str, body: impl Into<Vec<u8>>) -> Resp {
        let request = self
            .request(Method::POST, path)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body.into());
        self.send(request)
    }
}

/// A whole HTTP answer, read eagerly so assertions can look at it more than once.
#[derive(Debug, Clone)]
pub struct Resp {
    /// The status code, e.g. 200.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body as text.
    pub text: String,
}

impl Resp {
    /// The body as JSON; panics with the status and body if it is not JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|error| {
            panic!(
                "body is not JSON ({error}); HTTP {}: {}",
                self.status, self.text
            )
        })
    }

    /// A header's value, if present and valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Asserts the status, showing the body when it differs; returns `self` to chain.
    #[track_caller]
    pub fn expect_status(&self, status: u16) -> &Resp {
        assert_eq!(
            self.status, status,
            "expected HTTP {status}, got {}: {}",
            self.status, self.text
        );
        self
    }
}
