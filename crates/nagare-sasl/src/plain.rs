//! SASL/PLAIN (RFC 4616): one client message `[authzid] NUL authcid NUL passwd`, checked
//! against a password lookup, as Kafka's `PlainSaslServer` does with the JAAS `user_<name>`
//! options.

use crate::{constant_time_eq, SaslError};

/// Kafka's message for a wrong user or password (`PlainServerCallbackHandler`).
pub const INVALID_CREDENTIALS: &str = "Authentication failed: Invalid username or password";

/// Checks one PLAIN client message; `password_of` returns the configured password of a
/// user. Returns the authenticated user name.
///
/// As Kafka: the authorization id, when given, must equal the user name (Kafka does not
/// support impersonation); empty user names and passwords are refused.
pub fn authenticate<'a>(
    message: &[u8],
    password_of: impl FnOnce(&str) -> Option<&'a str>,
) -> Result<String, SaslError> {
    let text = std::str::from_utf8(message)
        .map_err(|_| SaslError::Malformed("Invalid SASL/PLAIN response: not UTF-8".into()))?;
    let parts: Vec<&str> = text.split('\u{0}').collect();
    let [authzid, username, password] = parts.as_slice() else {
        return Err(SaslError::Malformed(
            "Invalid SASL/PLAIN response: expected 3 tokens".into(),
        ));
    };
    if username.is_empty() {
        return Err(SaslError::AuthenticationFailed(
            "Authentication failed: username not specified".into(),
        ));
    }
    if password.is_empty() {
        return Err(SaslError::AuthenticationFailed(
            "Authentication failed: password not specified".into(),
        ));
    }
    if !authzid.is_empty() && authzid != username {
        return Err(SaslError::AuthenticationFailed(
            "Authentication failed: Client requested an authorization id that is different from username".into(),
        ));
    }
    match password_of(username) {
        Some(expected) if constant_time_eq(expected.as_bytes(), password.as_bytes()) => {
            Ok((*username).to_string())
        }
        _ => Err(SaslError::AuthenticationFailed(INVALID_CREDENTIALS.into())),
    }
}

/// The client's PLAIN message for `username` / `password` (no authorization id, as Kafka's
/// client sends it).
pub fn client_message(username: &str, password: &str) -> Vec<u8> {
    format!("\u{0}{username}\u{0}{password}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(name: &str) -> Option<&'static str> {
        match name {
            "alice" => Some("alice-secret"),
            _ => None,
        }
    }

    #[test]
    fn accepts_right_password() {
        assert_eq!(
            authenticate(&client_message("alice", "alice-secret"), users),
            Ok("alice".into())
        );
        assert_eq!(
            authenticate(b"alice\0alice\0alice-secret", users),
            Ok("alice".into())
        );
    }

    #[test]
    fn refuses_wrong_password_unknown_user_and_impersonation() {
        let fail = Err(SaslError::AuthenticationFailed(INVALID_CREDENTIALS.into()));
        assert_eq!(authenticate(&client_message("alice", "nope"), users), fail);
        assert_eq!(
            authenticate(&client_message("bob", "alice-secret"), users),
            fail
        );
        assert!(matches!(
            authenticate(b"admin\0alice\0alice-secret", users),
            Err(SaslError::AuthenticationFailed(m)) if m.contains("authorization id")
        ));
        assert!(matches!(
            authenticate(b"\0\0x", users),
            Err(SaslError::AuthenticationFailed(m)) if m.contains("username not specified")
        ));
        assert!(matches!(
            authenticate(b"\0alice\0", users),
            Err(SaslError::AuthenticationFailed(m)) if m.contains("password not specified")
        ));
    }

    #[test]
    fn refuses_malformed() {
        assert!(matches!(
            authenticate(b"alice", users),
            Err(SaslError::Malformed(_))
        ));
        assert!(matches!(
            authenticate(b"a\0b\0c\0d", users),
            Err(SaslError::Malformed(_))
        ));
        assert!(matches!(
            authenticate(&[0xff, 0, 0], users),
            Err(SaslError::Malformed(_))
        ));
    }
}
