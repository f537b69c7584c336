//! SCRAM credentials (KIP-554), as `kafka-configs --entity-type users` manages them:
//! AlterUserScramCredentials (the client salts and hashes the password, so only the salted
//! password travels) and DescribeUserScramCredentials.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

pub use nagare_sasl::scram::ScramMechanism;

use crate::client::{Client, Target};
use crate::error::{check_code, Error, Result};

/// One change to a user's SCRAM credentials.
#[derive(Clone)]
pub enum ScramAlteration {
    /// Set (or replace) the credential of `user` for `mechanism`.
    Upsert {
        /// User name.
        user: String,
        /// Hash function.
        mechanism: ScramMechanism,
        /// PBKDF2 iterations (Kafka accepts 4096 to 16384).
        iterations: u32,
        /// The password; salted and hashed here, never sent.
        password: String,
    },
    /// Delete the credential of `user` for `mechanism`.
    Delete {
        /// User name.
        user: String,
        /// Hash function.
        mechanism: ScramMechanism,
    },
}

impl std::fmt::Debug for ScramAlteration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScramAlteration::Upsert {
                user,
                mechanism,
                iterations,
                ..
            } => write!(f, "Upsert({user}, {mechanism}, {iterations} iterations)"),
            ScramAlteration::Delete { user, mechanism } => write!(f, "Delete({user}, {mechanism})"),
        }
    }
}

/// A user's SCRAM credentials as DescribeUserScramCredentials lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserScramCredentials {
    /// User name.
    pub user: String,
    /// (mechanism name, iterations) per credential; a mechanism this client does not know
    /// shows as `UNKNOWN`.
    pub credentials: Vec<(String, i32)>,
}

impl Client {
    /// Applies `alterations` (at the controller). Fails with the first user's error, e.g.
    /// [`Error::Kafka`] with RESOURCE_NOT_FOUND for deleting a credential that does not exist
    /// or UNACCEPTABLE_CREDENTIAL for iterations out of range.
    pub async fn alter_user_scram_credentials(
        &mut self,
        alterations: &[ScramAlteration],
    ) -> Result<()> {
        let mut deletions = Vec::new();
        let mut upsertions = Vec::new();
        for a in alterations {
            match a {
                ScramAlteration::Delete { user, mechanism } => deletions.push(
                    ScramCredentialDeletion::default()
                        .with_name(StrBytes::from_string(user.clone()))
                        .with_mechanism(mechanism.type_id()),
                ),
                ScramAlteration::Upsert {
                    user,
                    mechanism,
                    iterations,
                    password,
                } => {
                    let salt = rand::random::<[u8; 32]>();
                    let salted = mechanism.salted_password(password.as_bytes(), &salt, *iterations);
                    upsertions.push(
                        ScramCredentialUpsertion::default()
                            .with_name(StrBytes::from_string(user.clone()))
                            .with_mechanism(mechanism.type_id())
                            .with_iterations(i32::try_from(*iterations).unwrap_or(i32::MAX))
                            .with_salt(Bytes::copy_from_slice(&salt))
                            .with_salted_password(Bytes::from(salted)),
                    );
                }
            }
        }
        let resp = self
            .send_admin(
                |_| {
                    AlterUserScramCredentialsRequest::default()
                        .with_deletions(deletions.clone())
                        .with_upsertions(upsertions.clone())
                },
                |resp| {
                    resp.results
                        .iter()
                        .any(|r| r.error_code == ResponseError::NotController.code())
                },
            )
            .await?;
        for r in &resp.results {
            check_code(r.error_code, r.error_message.as_deref(), || {
                format!("AlterUserScramCredentials for user {}", r.user.as_str())
            })?;
        }
        Ok(())
    }

    /// The SCRAM credentials of `users` (every user with one when empty). Fails with
    /// RESOURCE_NOT_FOUND for a named user without credentials.
    pub async fn describe_user_scram_credentials(
        &mut self,
        users: &[&str],
    ) -> Result<Vec<UserScramCredentials>> {
        let resp = self
            .send_to(Target::Any, None, Duration::ZERO, |_| {
                DescribeUserScramCredentialsRequest::default().with_users((!users.is_empty()).then(
                    || {
                        users
                            .iter()
                            .map(|u| {
                                UserName::default().with_name(StrBytes::from_string(u.to_string()))
                            })
                            .collect()
                    },
                ))
            })
            .await?;
        check_code(resp.error_code, resp.error_message.as_deref(), || {
            "DescribeUserScramCredentials".into()
        })?;
        let mut out = Vec::new();
        for r in &resp.results {
            if let Some(e) = Error::from_code(
                r.error_code,
                || format!("DescribeUserScramCredentials for user {}", r.user.as_str()),
                r.error_message.as_deref(),
            ) {
                return Err(e);
            }
            out.push(UserScramCredentials {
                user: r.user.to_string(),
                credentials: r
                    .credential_infos
                    .iter()
                    .map(|c| {
                        let name = ScramMechanism::from_type_id(c.mechanism)
                            .map(|m| m.name())
                            .unwrap_or("UNKNOWN");
                        (name.to_string(), c.iterations)
                    })
                    .collect(),
            });
        }
        Ok(out)
    }
}
