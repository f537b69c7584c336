//! The console's login sessions. With security on, a login runs the broker's own SASL
//! exchange (SaslHandshake + SaslAuthenticate, PLAIN or SCRAM) in-process on a connection
//! context of a SASL listener, so the credentials are checked against the same user store
//! (`sasl.jaas.config` PLAIN users, SCRAM credentials in the metadata image) a Kafka client
//! meets; that authenticated connection context is then kept for the session and every
//! console request runs on it, as the logged-in principal. The browser holds only a random
//! token in an `HttpOnly`, `SameSite=Strict` cookie; sessions expire after
//! [`SESSION_TTL`] (or earlier with the SASL session, `connections.max.reauth.ms`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use parking_lot::Mutex;

use nagare_sasl::scram::{printable_nonce, ScramClient, ScramMechanism};

use super::client::InProcess;
use crate::context::{ConnectionContext, ListenerKind};
use crate::Broker;

/// The session cookie's name.
pub const COOKIE: &str = "nagare_console";
/// How long a session lasts after login.
pub const SESSION_TTL: Duration = Duration::from_secs(3600);
/// Sessions held at once (expired ones are dropped first; past this, logins are refused).
pub const MAX_SESSIONS: usize = 1024;

/// The mechanisms a console login can use (OAUTHBEARER needs a token, not a password).
pub const LOGIN_MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// One logged-in user.
#[derive(Clone)]
pub struct Session {
    /// The authenticated connection context requests run on.
    pub conn: Arc<ConnectionContext>,
    /// When the session ends.
    pub expires_at: Instant,
}

/// The session store.
#[derive(Default)]
pub struct Sessions {
    by_token: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// The live session of `token`, if any (an expired one is dropped).
    pub fn get(&self, token: &str, now: Instant) -> Option<Session> {
        let mut m = self.by_token.lock();
        match m.get(token) {
            Some(s) if s.expires_at > now => Some(s.clone()),
            Some(_) => {
                m.remove(token);
                None
            }
            None => None,
        }
    }

    /// Stores a session and returns its new random token (32 bytes of the thread's CSPRNG,
    /// hex), or `None` when [`MAX_SESSIONS`] live sessions exist.
    pub fn insert(&self, conn: Arc<ConnectionContext>, now: Instant) -> Option<String> {
        let mut m = self.by_token.lock();
        m.retain(|_, s| s.expires_at > now);
        if m.len() >= MAX_SESSIONS {
            return None;
        }
        let bytes: [u8; 32] = rand::random();
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        m.insert(
            token.clone(),
            Session {
                conn,
                expires_at: now + SESSION_TTL,
            },
        );
        Some(token)
    }

    /// Ends the session of `token`.
    pub fn remove(&self, token: &str) {
        self.by_token.lock().remove(token);
    }
}

/// The session token in a `Cookie` header, if any.
pub fn token_from_cookie(cookie: Option<&str>) -> Option<&str> {
    cookie?
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// The `Set-Cookie` value for a new session (`Max-Age=0` clears it).
pub fn set_cookie(token: &str, max_age: Duration) -> String {
    format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        max_age.as_secs()
    )
}

/// Whether the console requires a login: any SASL listener, or an authorizer (Kafka's
/// `authorizer.class.name`), makes the cluster one whose users are told apart.
pub fn security_on(broker: &Broker) -> bool {
    broker.config.authorizer.enabled || sasl_listeners(broker).next().is_some()
}

/// The client listeners speaking SASL, with their login-capable mechanisms.
pub fn sasl_listeners(broker: &Broker) -> impl Iterator<Item = (String, Vec<String>)> + '_ {
    broker.config.listeners.iter().filter_map(|l| {
        if broker.config.controller_listener_names.contains(&l.name)
            || !broker.config.security_protocol(&l.name).uses_sasl()
        {
            return None;
        }
        let mechs: Vec<String> = broker
            .sasl
            .listener(&l.name)?
            .mechanisms
            .iter()
            .filter(|m| LOGIN_MECHANISMS.contains(&m.as_str()))
            .cloned()
            .collect();
        Some((l.name.clone(), mechs))
    })
}

/// The mechanisms a login may use, over all SASL client listeners.
pub fn login_mechanisms(broker: &Broker) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (_, mechs) in sasl_listeners(broker) {
        for m in mechs {
            if !out.contains(&m) {
                out.push(m);
            }
        }
    }
    out
}

/// The connection context of an anonymous console request (security off): on the first
/// client listener, from the browser's address, as `User:ANONYMOUS` like a PLAINTEXT
/// client.
pub fn anonymous_connection(broker: &Broker, peer: SocketAddr) -> Arc<ConnectionContext> {
    let name = broker
        .config
        .broker_listener()
        .map(|l| l.name.clone())
        .unwrap_or_else(|| "PLAINTEXT".into());
    let protocol = broker.config.security_protocol(&name);
    Arc::new(ConnectionContext::new(
        name,
        ListenerKind::Broker,
        protocol,
        None,
        peer,
    ))
}

/// Why a login failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// No SASL client listener offers the mechanism.
    MechanismUnavailable(String),
    /// The broker refused the credentials (its message).
    Refused(String),
    /// The exchange broke (a bug or a timeout).
    Failed(String),
}

/// Logs `username` in with `mechanism` through the broker's SASL pipeline, on a new
/// connection context of a SASL listener offering it, from `peer`. On success the returned
/// context is authenticated (its principal set by the broker, e.g. `User:alice`).
pub async fn login(
    broker: &Arc<Broker>,
    peer: SocketAddr,
    mechanism: &str,
    username: &str,
    password: &str,
) -> Result<Arc<ConnectionContext>, LoginError> {
    let Some((listener, _)) =
        sasl_listeners(broker).find(|(_, m)| m.iter().any(|x| x == mechanism))
    else {
        return Err(LoginError::MechanismUnavailable(mechanism.to_string()));
    };
    let conn = Arc::new(ConnectionContext::new(
        listener.clone(),
        ListenerKind::Broker,
        broker.config.security_protocol(&listener),
        None,
        peer,
    ));
    let c = InProcess {
        broker: broker.clone(),
        conn: conn.clone(),
    };
    let failed = |e: super::client::CallError| LoginError::Failed(e.to_string());
    let hs = c
        .ask(
            &SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_string(mechanism.into())),
            1,
        )
        .await
        .map_err(failed)?;
    if hs.error_code != 0 {
        return Err(LoginError::MechanismUnavailable(mechanism.to_string()));
    }
    // The broker closes a connection whose authentication failed (after
    // connection.failed.authentication.delay.ms); the in-process call reports that as
    // Closed, which here means refused credentials.
    let step = |bytes: Vec<u8>| {
        let c = c.clone();
        async move {
            match c
                .ask(
                    &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes)),
                    2,
                )
                .await
            {
                Ok(r) if r.error_code == 0 => Ok(r.auth_bytes.to_vec()),
                Ok(r) => Err(LoginError::Refused(
                    r.error_message
                        .map(|m| m.to_string())
                        .unwrap_or_else(|| "authentication failed".into()),
                )),
                Err(super::client::CallError::Closed) => {
                    Err(LoginError::Refused("authentication failed".into()))
                }
                Err(e) => Err(LoginError::Failed(e.to_string())),
            }
        }
    };
    match ScramMechanism::from_name(mechanism) {
        None => {
            step(nagare_sasl::plain::client_message(username, password)).await?;
        }
        Some(m) => {
            let nonce_bytes: [u8; 24] = rand::random();
            let mut client =
                ScramClient::new(m, username, password, &printable_nonce(&nonce_bytes));
            let server_first = step(client.client_first()).await?;
            let client_final = client
                .client_final(&server_first)
                .map_err(|e| LoginError::Refused(e.to_string()))?;
            let server_final = step(client_final).await?;
            client
                .verify_server_final(&server_final)
                .map_err(|e| LoginError::Refused(format!("server signature: {e}")))?;
        }
    }
    if !conn.sasl.is_authenticated() {
        return Err(LoginError::Refused("authentication failed".into()));
    }
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_expiry() {
        assert_eq!(token_from_cookie(None), None);
        assert_eq!(
            token_from_cookie(Some("a=1; nagare_console=abc; b=2")),
            Some("abc")
        );
        assert_eq!(token_from_cookie(Some("nagare_console=")), None);
        assert_eq!(token_from_cookie(Some("other=abc")), None);
        let c = set_cookie("t0k", SESSION_TTL);
        assert_eq!(
            c,
            "nagare_console=t0k; Path=/; HttpOnly; SameSite=Strict; Max-Age=3600"
        );

        let sessions = Sessions::default();
        let conn = Arc::new(ConnectionContext::new(
            "SASL",
            ListenerKind::Broker,
            crate::context::SecurityProtocol::SaslPlaintext,
            None,
            "127.0.0.1:1".parse().expect("addr"),
        ));
        let t0 = Instant::now();
        let a = sessions.insert(conn.clone(), t0).expect("room");
        let b = sessions.insert(conn.clone(), t0).expect("room");
        assert_ne!(a, b, "random tokens");
        assert_eq!(a.len(), 64);
        assert!(sessions.get(&a, t0 + Duration::from_secs(10)).is_some());
        assert!(sessions.get("nope", t0).is_none());
        // Expired: dropped.
        assert!(sessions.get(&a, t0 + SESSION_TTL).is_none());
        assert!(sessions.get(&a, t0).is_none(), "removed once seen expired");
        sessions.remove(&b);
        assert!(sessions.get(&b, t0).is_none());
        // Full: expired sessions make room, live ones do not.
        for _ in 0..MAX_SESSIONS {
            sessions.insert(conn.clone(), t0).expect("room");
        }
        assert!(sessions.insert(conn.clone(), t0).is_none());
        assert!(sessions.insert(conn, t0 + SESSION_TTL).is_some());
    }
}
