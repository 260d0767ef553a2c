//! Who may use the API and from which web pages: bearer tokens (RFC 6750,
//! as WHIP uses them, RFC 9725 section 4.5) and CORS (with preflight
//! `OPTIONS`, RFC 9725 section 4.1). A middleware in front of the routes,
//! so that no handler can forget it.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::config::IceServer;

/// `rtcgw_http_denied_total{reason}`: requests turned away here.
pub type Denied = Family<Vec<(&'static str, &'static str)>, Counter>;

/// The access rules, from `[http]`.
pub struct Access {
    tokens: Vec<Vec<u8>>,
    origins: Vec<String>,
    /// `Link` header values for the ICE servers.
    links: Vec<HeaderValue>,
    denied: Denied,
}

/// Paths anyone may read: the web phone (a static page; it asks for a token
/// when the API wants one) and the liveness probe.
fn is_public(path: &str) -> bool {
    matches!(path, "/" | "/index.html" | "/healthz")
}

impl Access {
    pub fn new(
        tokens: &[String],
        origins: &[String],
        ice_servers: &[IceServer],
        denied: Denied,
    ) -> Self {
        Self {
            tokens: tokens.iter().map(|t| t.as_bytes().to_vec()).collect(),
            origins: origins.to_vec(),
            links: ice_servers
                .iter()
                .flat_map(|s| s.urls.iter().map(move |u| (s, u)))
                .filter_map(|(s, url)| HeaderValue::from_str(&ice_link(s, url)).ok())
                .collect(),
            denied,
        }
    }

    /// The `Link` headers a WHIP client gets with its answer.
    pub fn links(&self) -> &[HeaderValue] {
        &self.links
    }

    /// The `Access-Control-Allow-Origin` value for this origin, if allowed.
    fn allow_origin(&self, origin: &str) -> Option<HeaderValue> {
        if self.origins.iter().any(|o| o == "*") {
            return Some(HeaderValue::from_static("*"));
        }
        self.origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
            .then(|| HeaderValue::from_str(origin).ok())
            .flatten()
    }

    /// Whether the request carries one of the tokens (compared in time
    /// that does not depend on where they differ).
    fn authorized(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        if self.tokens.is_empty() {
            return Ok(());
        }
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err("no_token");
        };
        // The scheme is case-insensitive (RFC 9110 section 11.1).
        let v = value.as_bytes();
        let given = v
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case(b"bearer "))
            .map(|_| &v[7..])
            .ok_or("not_bearer")?;
        let given = given.trim_ascii();
        let mut ok = false;
        for t in &self.tokens {
            ok |= constant_time_eq(t, given);
        }
        if ok { Ok(()) } else { Err("bad_token") }
    }

    fn deny(&self, reason: &'static str) {
        self.denied.get_or_create(&vec![("reason", reason)]).inc();
    }
}

/// One ICE server URL as a `Link` header value (RFC 9725 section 4.6).
/// Sent with the 201 and to an authorized OPTIONS only.
fn ice_link(s: &IceServer, url: &str) -> String {
    let mut v = format!("<{url}>; rel=\"ice-server\"");
    if let (Some(u), Some(c)) = (&s.username, &s.credential) {
        let q = |x: &str| x.replace('\\', "\\\\").replace('"', "\\\"");
        v += &format!(
            "; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
            q(u),
            q(c)
        );
    }
    v
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The methods each path takes, for `Allow` and preflight answers.
fn methods(path: &str) -> &'static str {
    if path == "/v1/calls" {
        "GET, POST, OPTIONS"
    } else if path.starts_with("/v1/calls/") && !path.ends_with("/stats") {
        "GET, DELETE, PATCH, OPTIONS"
    } else {
        "GET, OPTIONS"
    }
}

/// CORS and authentication, in front of every route.
pub async fn guard(State(access): State<Arc<Access>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let allowed = origin.as_deref().and_then(|o| access.allow_origin(o));
    if req.method() == Method::OPTIONS {
        // Preflights carry no credentials: answered here, before the token
        // check.
        let preflight = req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        let authorized = access.authorized(req.headers()).is_ok();
        if preflight && origin.is_some() && allowed.is_none() {
            tracing::info!(origin = origin.as_deref().unwrap_or(""), %path, "CORS preflight from an origin not in http.cors_origins");
            access.deny("cors_origin");
            return (
                StatusCode::FORBIDDEN,
                "origin not allowed (http.cors_origins)\n",
            )
                .into_response();
        }
        let mut resp = StatusCode::NO_CONTENT.into_response();
        let h = resp.headers_mut();
        h.insert(header::ALLOW, HeaderValue::from_static(methods(&path)));
        if path == "/v1/calls" {
            h.insert("accept-post", HeaderValue::from_static("application/sdp"));
            // TURN credentials only to whom may place calls: a preflight
            // carries no token, so it gets none.
            if !preflight && authorized {
                for l in access.links() {
                    h.append(header::LINK, l.clone());
                }
            }
        }
        if let Some(v) = allowed {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(methods(&path)),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("Authorization, Content-Type, If-Match"),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
            h.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
        return resp;
    }
    let mut resp = match is_public(&path) {
        true => next.run(req).await,
        false => match access.authorized(req.headers()) {
            Ok(()) => next.run(req).await,
            Err(reason) => {
                tracing::info!(%reason, method = %req.method(), %path, "API request without a valid bearer token: 401");
                access.deny(reason);
                let challenge = match reason {
                    "bad_token" => "Bearer realm=\"rtcgw\", error=\"invalid_token\"",
                    _ => "Bearer realm=\"rtcgw\"",
                };
                let mut r = super::api_error(
                    StatusCode::UNAUTHORIZED,
                    "a valid Authorization: Bearer token is needed (http.tokens)",
                );
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
                r
            }
        },
    };
    if let Some(v) = allowed {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Location, Link, Retry-After, WWW-Authenticate"),
        );
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(tokens: &[&str]) -> Access {
        let tokens: Vec<String> = tokens.iter().map(|t| t.to_string()).collect();
        Access::new(
            &tokens,
            &["https://app.example.com".into()],
            &[IceServer {
                urls: vec!["turn:turn.example.net?transport=udp".into()],
                username: Some("user".into()),
                credential: Some("my\"Password".into()),
            }],
            Denied::default(),
        )
    }

    fn bearer(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn bearer_tokens() {
        let a = access(&["0123456789abcdef", "fedcba9876543210"]);
        assert_eq!(a.authorized(&HeaderMap::new()), Err("no_token"));
        assert_eq!(a.authorized(&bearer("Basic eDp5")), Err("not_bearer"));
        assert_eq!(
            a.authorized(&bearer("Bearer 0123456789abcdeX")),
            Err("bad_token")
        );
        assert_eq!(
            a.authorized(&bearer("Bearer 0123456789abcde")),
            Err("bad_token")
        );
        assert_eq!(a.authorized(&bearer("Bearer fedcba9876543210")), Ok(()));
        assert_eq!(a.authorized(&bearer("BEARER fedcba9876543210")), Ok(()));
        assert_eq!(access(&[]).authorized(&HeaderMap::new()), Ok(()));
    }

    #[test]
    fn origins_and_links() {
        let a = access(&[]);
        assert!(a.allow_origin("https://app.example.com").is_some());
        assert!(a.allow_origin("https://evil.example.com").is_none());
        assert_eq!(
            a.links()[0].to_str().unwrap(),
            "<turn:turn.example.net?transport=udp>; rel=\"ice-server\"; username=\"user\"; \
             credential=\"my\\\"Password\"; credential-type=\"password\""
        );
    }
}
