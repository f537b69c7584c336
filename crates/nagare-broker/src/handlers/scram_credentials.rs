//! DescribeUserScramCredentials (key 50) and AlterUserScramCredentials (key 51), KIP-554:
//! SCRAM credentials live in the metadata log. Describe answers from this node's image
//! (DESCRIBE on the cluster); Alter is forwarded to the active controller, which validates
//! it and writes the records (ALTER on the cluster; see
//! [`nagare_controller::scram_control`]).

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, ApiKey,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};

use nagare_controller::scram_control::{self, ScramDeletion, ScramUpsertion};
use nagare_protocol::error::ResponseError;

use super::{respond, sb, HandlerResult, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::network::Reply;
use crate::Broker;

/// Supported DescribeUserScramCredentials versions.
pub const DESCRIBE_VERSIONS: (i16, i16) = (0, 0);
/// Supported AlterUserScramCredentials versions.
pub const ALTER_VERSIONS: (i16, i16) = (0, 0);

/// Handles DescribeUserScramCredentials: every user with a credential when no users are
/// named; RESOURCE_NOT_FOUND for a named user without one; DUPLICATE_RESOURCE for a user
/// named twice.
pub fn handle_describe(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: DescribeUserScramCredentialsRequest = req.decode()?;
    let mut resp = DescribeUserScramCredentialsResponse::default();
    if !broker.authorize(&req.ctx, AclOperation::Describe, &Resource::cluster()) {
        resp = resp
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(sb("Cluster authorization failed.")));
    } else {
        let image = broker.image();
        let infos = |creds: &std::collections::BTreeMap<i8, _>| -> Vec<CredentialInfo> {
            creds
                .iter()
                .map(
                    |(m, c): (&i8, &nagare_metadata::scram::StoredScramCredential)| {
                        CredentialInfo::default()
                            .with_mechanism(*m)
                            .with_iterations(c.iterations)
                    },
                )
                .collect()
        };
        let results = match r.users.filter(|u| !u.is_empty()) {
            None => image
                .scram
                .users()
                .map(|(name, creds)| {
                    DescribeUserScramCredentialsResult::default()
                        .with_user(sb(name.clone()))
                        .with_credential_infos(infos(creds))
                })
                .collect(),
            Some(users) => {
                let mut count: HashMap<String, usize> = HashMap::new();
                for u in &users {
                    *count.entry(u.name.to_string()).or_default() += 1;
                }
                let mut done = std::collections::HashSet::new();
                users
                    .iter()
                    .filter(|u| done.insert(u.name.to_string()))
                    .map(|u| {
                        let name = u.name.to_string();
                        let base =
                            DescribeUserScramCredentialsResult::default().with_user(u.name.clone());
                        if count.get(&name).copied().unwrap_or(0) > 1 {
                            return base
                                .with_error_code(ResponseError::DuplicateResource.code())
                                .with_error_message(Some(sb(format!(
                                    "Cannot describe SCRAM credentials for the same user twice in a single request: {name}"
                                ))));
                        }
                        match image.scram.user(&name) {
                            Some(creds) => base.with_credential_infos(infos(creds)),
                            None => base
                                .with_error_code(ResponseError::ResourceNotFound.code())
                                .with_error_message(Some(sb(format!(
                                    "Attempt to describe a user credential that does not exist: {name}"
                                )))),
                        }
                    })
                    .collect()
            }
        };
        resp = resp.with_results(results);
    }
    Ok(Reply::Now(respond(
        ApiKey::DescribeUserScramCredentials,
        req.version(),
        req.correlation_id(),
        &resp,
    )))
}

/// Handles AlterUserScramCredentials on the active controller: one result per user.
pub async fn handle_alter(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: AlterUserScramCredentialsRequest = req.decode()?;
    let deletions: Vec<ScramDeletion> = r
        .deletions
        .iter()
        .map(|d| ScramDeletion {
            name: d.name.to_string(),
            mechanism: d.mechanism,
        })
        .collect();
    let upsertions: Vec<ScramUpsertion> = r
        .upsertions
        .iter()
        .map(|u| ScramUpsertion {
            name: u.name.to_string(),
            mechanism: u.mechanism,
            iterations: u.iterations,
            salt: u.salt.to_vec(),
            salted_password: u.salted_password.to_vec(),
        })
        .collect();
    // One result per user, in the order users first appear (deletions, then upsertions).
    let mut names: Vec<String> = Vec::new();
    for n in deletions
        .iter()
        .map(|d| &d.name)
        .chain(upsertions.iter().map(|u| &u.name))
    {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    let all_failed = |names: Vec<String>, code: i16, message: String| {
        names
            .into_iter()
            .map(|n| (n, Some((code, message.clone()))))
            .collect::<Vec<(String, Option<(i16, String)>)>>()
    };
    let results = if !broker.authorize(&req.ctx, AclOperation::Alter, &Resource::cluster()) {
        all_failed(
            names,
            ResponseError::ClusterAuthorizationFailed.code(),
            "Cluster authorization failed.".into(),
        )
    } else {
        let outcome = broker
            .controller_commit(false, move |img| {
                Ok(scram_control::alter(&img.scram, &deletions, &upsertions))
            })
            .await;
        match outcome {
            Ok(results) => results
                .into_iter()
                .map(|(n, e)| {
                    if let Some((err, msg)) = &e {
                        tracing::info!(user = %n, error = ?err, "AlterUserScramCredentials refused: {msg}");
                    }
                    (n, e.map(|(err, msg)| (err.code(), msg)))
                })
                .collect(),
            Err(e) => all_failed(names, e.code(), e.message()),
        }
    };
    let resp = AlterUserScramCredentialsResponse::default().with_results(
        results
            .into_iter()
            .map(|(user, e)| {
                let base = AlterUserScramCredentialsResult::default().with_user(sb(user));
                match e {
                    None => base,
                    Some((code, msg)) => {
                        base.with_error_code(code).with_error_message(Some(sb(msg)))
                    }
                }
            })
            .collect(),
    );
    Ok(Reply::Now(respond(
        ApiKey::AlterUserScramCredentials,
        req.version(),
        req.correlation_id(),
        &resp,
    )))
}
