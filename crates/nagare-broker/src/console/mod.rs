//! The web console, served on the `http.listeners` next to `/metrics`: a small
//! hand-written page (HTML, CSS and JavaScript embedded in the binary, nothing fetched from
//! elsewhere) and the JSON API under `/api/` it polls.
//!
//! Every API call becomes Kafka requests run through the broker's own request pipeline
//! ([`crate::handlers::dispatch`], see [`client`]) on a connection context whose principal is
//! the console's user, so ACLs, validation and quotas apply exactly as to a Kafka client:
//! - security off (no SASL listener, no authorizer): each call runs as `User:ANONYMOUS`
//!   from the browser's address, like a PLAINTEXT client;
//! - security on: the page asks for a user name and password, which are checked by running
//!   the broker's SASL exchange (PLAIN or SCRAM) in-process on a SASL listener; the
//!   authenticated connection context is kept for the session ([`session`]).
//!
//! Requests that change something (`POST`, `PUT`, `DELETE`) must carry the header
//! `X-Nagare-Console: 1` and a JSON body: a page of another origin cannot send that header
//! without a CORS preflight, which is never granted, so the session cookie cannot be used
//! across sites (CSRF).

pub mod acls;
#[cfg(test)]
mod admin_tests;
pub mod api;
pub mod client;
pub mod format;
pub mod session;
#[cfg(test)]
mod tests;
pub mod transactions;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::metrics::http::{HttpRequest, HttpResponse, Method};
use crate::Broker;
use api::ApiError;
use client::InProcess;
use session::Sessions;

/// The page.
const INDEX_HTML: &str = include_str!("assets/index.html");
/// The page's script.
const APP_JS: &str = include_str!("assets/app.js");
/// The page's style sheet.
const STYLE_CSS: &str = include_str!("assets/style.css");

/// The header mutating API calls must carry (see the module docs).
pub const CSRF_HEADER: &str = "x-nagare-console";

/// Whether `path` is the console's (the page, its assets or its API).
pub fn serves(path: &str) -> bool {
    path == "/" || path.starts_with("/console/") || path == "/api" || path.starts_with("/api/")
}

/// The console's state: its login sessions.
#[derive(Default)]
pub struct Console {
    sessions: Sessions,
}

fn asset(content_type: &'static str, body: &str) -> HttpResponse {
    HttpResponse {
        status: 200,
        content_type,
        headers: vec![
            ("Cache-Control", "no-cache".into()),
            ("X-Content-Type-Options", "nosniff".into()),
            // Everything the page needs is on this origin; no inline script (style attributes
            // only, for widths and chart legend colours).
            (
                "Content-Security-Policy",
                "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'".into(),
            ),
        ],
        body: body.to_string(),
    }
}

fn error(e: ApiError) -> HttpResponse {
    HttpResponse::json(e.status, &e.to_json())
}

/// Percent-decodes a query component (`+` is a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(x) => {
                        out.push(x);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query string's parameters (the last value of a repeated one wins).
pub fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (unescape(k), unescape(v)),
            None => (unescape(kv), String::new()),
        })
        .collect()
}

impl Console {
    /// A console with no sessions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers a request for the page, an asset or the API; `broker` is `None` until the
    /// node has caught up with the metadata log (the API answers 503 until then).
    pub async fn handle(&self, req: &HttpRequest, broker: Option<&Arc<Broker>>) -> HttpResponse {
        let path = req.head.path.as_str();
        if !path.starts_with("/api") {
            if !matches!(req.head.method, Method::Get | Method::Head) {
                return HttpResponse::text(405, "method not allowed\n");
            }
            return match path {
                "/" => asset("text/html; charset=utf-8", INDEX_HTML),
                "/console/app.js" => asset("text/javascript; charset=utf-8", APP_JS),
                "/console/style.css" => asset("text/css; charset=utf-8", STYLE_CSS),
                _ => HttpResponse::text(404, "not found\n"),
            };
        }
        let Some(broker) = broker else {
            return error(ApiError::new(
                503,
                "the node is catching up with the metadata log",
            ));
        };
        if !broker.config.is_broker() {
            return error(ApiError::new(
                503,
                "this node is a controller only; the console runs on brokers",
            ));
        }
        let mutating = matches!(req.head.method, Method::Post | Method::Put | Method::Delete);
        if mutating && req.head.header(CSRF_HEADER) != Some("1") {
            return error(ApiError::new(
                403,
                format!("missing header {CSRF_HEADER}: 1"),
            ));
        }
        let body: Value = if req.body.is_empty() {
            Value::Null
        } else {
            let json_type = req
                .head
                .header("content-type")
                .is_some_and(|t| t.trim_start().starts_with("application/json"));
            if !json_type {
                return error(ApiError::new(415, "send the body as application/json"));
            }
            match serde_json::from_slice(&req.body) {
                Ok(v) => v,
                Err(e) => return error(ApiError::new(400, format!("body is not JSON: {e}"))),
            }
        };
        let now = Instant::now();
        let token = session::token_from_cookie(req.head.header("cookie"));
        let security = session::security_on(broker);
        match (req.head.method, path) {
            (Method::Get, "/api/session") => {
                let principal = if security {
                    token
                        .and_then(|t| self.sessions.get(t, now))
                        .map(|s| s.conn.principal().to_string())
                } else {
                    Some("User:ANONYMOUS".to_string())
                };
                return HttpResponse::json(
                    200,
                    &json!({
                        "security": security,
                        "principal": principal,
                        "mechanisms": session::login_mechanisms(broker),
                    }),
                );
            }
            (Method::Post, "/api/login") => return self.login(broker, req, &body, now).await,
            (Method::Post, "/api/logout") => {
                if let Some(t) = token {
                    self.sessions.remove(t);
                }
                let mut r = HttpResponse::json(200, &json!({"logged_out": true}));
                r.headers
                    .push(("Set-Cookie", session::set_cookie("", Duration::ZERO)));
                return r;
            }
            _ => {}
        }
        let conn = if security {
            match token.and_then(|t| self.sessions.get(t, now)) {
                Some(s) => s.conn,
                None => return error(ApiError::new(401, "log in first")),
            }
        } else {
            session::anonymous_connection(broker, req.peer)
        };
        let c = InProcess {
            broker: broker.clone(),
            conn,
        };
        let segments: Vec<String> = path
            .trim_start_matches("/api/")
            .split('/')
            .map(unescape)
            .collect();
        let segs: Vec<&str> = segments.iter().map(|s| s.as_str()).collect();
        let query = parse_query(&req.head.query);
        let result = route(&c, req.head.method, &segs, &query, &body).await;
        match result {
            Ok(v) => {
                let status = if req.head.method == Method::Post {
                    201
                } else {
                    200
                };
                HttpResponse::json(status, &v)
            }
            Err(e) => {
                if e.status >= 500 {
                    tracing::info!(path, status = e.status, error = %e.message, "console API call failed");
                }
                error(e)
            }
        }
    }

    async fn login(
        &self,
        broker: &Arc<Broker>,
        req: &HttpRequest,
        body: &Value,
        now: Instant,
    ) -> HttpResponse {
        let s = |k: &str| body.get(k).and_then(|v| v.as_str());
        let (Some(user), Some(password)) = (s("username"), s("password")) else {
            return error(ApiError::new(400, "username and password: strings"));
        };
        let mechs = session::login_mechanisms(broker);
        let Some(mechanism) = s("mechanism")
            .map(str::to_string)
            .or_else(|| mechs.first().cloned())
        else {
            return error(ApiError::new(
                400,
                "no SASL listener offers PLAIN or SCRAM: the console cannot check passwords",
            ));
        };
        match session::login(broker, req.peer, &mechanism, user, password).await {
            Ok(conn) => {
                let principal = conn.principal().to_string();
                let Some(token) = self.sessions.insert(conn, now) else {
                    return error(ApiError::new(503, "too many console sessions"));
                };
                tracing::info!(%principal, peer = %req.peer, "console login");
                let mut r = HttpResponse::json(200, &json!({"principal": principal}));
                r.headers.push((
                    "Set-Cookie",
                    session::set_cookie(&token, session::SESSION_TTL),
                ));
                r
            }
            Err(session::LoginError::MechanismUnavailable(m)) => error(ApiError::new(
                400,
                format!(
                    "no SASL listener offers {m} (offered: {})",
                    mechs.join(", ")
                ),
            )),
            Err(session::LoginError::Refused(why)) => {
                tracing::info!(user, peer = %req.peer, "console login refused");
                error(ApiError::new(401, format!("login failed: {why}")))
            }
            Err(session::LoginError::Failed(why)) => {
                error(ApiError::new(500, format!("login failed: {why}")))
            }
        }
    }
}

/// Routes an API call by method and path segments (after `/api/`).
async fn route(
    c: &InProcess,
    method: Method,
    segs: &[&str],
    query: &BTreeMap<String, String>,
    body: &Value,
) -> api::ApiResult {
    use Method::{Delete, Get, Post, Put};
    match (method, segs) {
        (Get, ["overview"]) => api::overview(c).await,
        (Get, ["throughput"]) => api::throughput(c).await,
        (Get, ["topics"]) => api::topics(c).await,
        (Post, ["topics"]) => api::create_topic(c, body).await,
        (Get, ["topics", t]) => api::topic(c, t).await,
        (Delete, ["topics", t]) => api::delete_topic(c, t).await,
        (Put, ["topics", t, "configs"]) => api::alter_configs(c, t, body).await,
        (Get, ["topics", t, "messages"]) => {
            let b = api::parse_browse(query)?;
            api::browse(c, t, &b).await
        }
        (Post, ["topics", t, "messages"]) => api::produce(c, t, body).await,
        (Get, ["groups"]) => api::groups(c).await,
        (Get, ["groups", g]) => api::group(c, g).await,
        (Post, ["groups", g, "reset"]) => api::reset(c, g, body).await,
        (Get, ["acls"]) => acls::list(c, &acls::parse_filter(query)?).await,
        (Post, ["acls"]) => acls::create(c, body).await,
        (Delete, ["acls"]) => acls::delete(c, body).await,
        (Get, ["transactions"]) => transactions::list(c, &transactions::parse_list(query)?).await,
        (Get, ["transactions", id]) => transactions::describe(c, id).await,
        (Post, ["transactions", id, "abort"]) => transactions::force_terminate(c, id).await,
        (Get, ["hanging"]) => transactions::find_hanging(c, query).await,
        (Post, ["hanging", "abort"]) => transactions::abort_partition(c, body).await,
        _ => Err(ApiError::new(404, "no such API call")),
    }
}
