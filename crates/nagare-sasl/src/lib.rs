//! SASL for Nagare, sans-I/O: the PLAIN (RFC 4616), SCRAM-SHA-256 / SCRAM-SHA-512
//! (RFC 5802, RFC 7677) and OAUTHBEARER (RFC 7628, server side only) mechanisms as state
//! machines that take and return message bytes, server side for the broker and client
//! side for `nagare-client`, plus the JAAS config
//! parser Kafka's `sasl.jaas.config` values need. Nothing here reads a socket, a clock or
//! a random source: nonces and salts come from the caller, so every exchange is testable
//! deterministically.

pub mod jaas;
pub mod oauthbearer;
pub mod plain;
pub mod scram;

pub use scram::{ScramCredential, ScramMechanism};

/// The SASL mechanisms Nagare serves, by Kafka's name.
pub const SUPPORTED_MECHANISMS: &[&str] =
    &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"];

/// Why an authentication exchange failed. The message is what Kafka sends the client in
/// SaslAuthenticate's `error_message` (it never reveals whether the user exists).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The credentials were wrong or the user is unknown.
    #[error("{0}")]
    AuthenticationFailed(String),
    /// The client's message did not follow the mechanism's syntax.
    #[error("{0}")]
    Malformed(String),
}

/// Compares two secrets in time independent of where they differ (and of their lengths:
/// both are hashed first), so a client cannot learn a password or key byte by byte.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let ha = Sha256::digest(a);
    let hb = Sha256::digest(b);
    let same_hash: bool = ha.as_slice().ct_eq(hb.as_slice()).into();
    same_hash && a.len() == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(constant_time_eq(b"", b""));
    }
}
