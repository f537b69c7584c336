//! CreateAcls (key 30), DescribeAcls (29) and DeleteAcls (31), as Kafka's `AclApis` and
//! `AclControlManager`: creations and deletions are decided by the active controller
//! (forwarded there from a broker-only node) and written as AccessControlEntry /
//! RemoveAccessControlEntry records; DescribeAcls answers from this node's image. Without an
//! authorizer the three answer SECURITY_DISABLED, as Kafka does.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use kafka_protocol::messages::{
    create_acls_response, delete_acls_response, describe_acls_response, ApiKey, CreateAclsRequest,
    CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest,
    DescribeAclsResponse,
};
use nagare_metadata::acls::{codes, AclFilter, StandardAcl};
use nagare_metadata::{MetadataRecord, Uuid};
use nagare_protocol::error::ResponseError;

use super::{respond, sb, HandlerResult, Request};
use crate::authorizer::{AclOperation, Resource, ResourceType, CLUSTER_NAME};
use crate::network::Reply;
use crate::Broker;

/// Versions of the three APIs (Kafka 4.x removed version 0, KIP-896).
pub const VERSIONS: (i16, i16) = (1, 3);

type Invalid = (i16, String);

fn invalid(message: impl Into<String>) -> Invalid {
    (ResponseError::InvalidRequest.code(), message.into())
}

/// Whether `code` is a concrete resource type (not ANY or UNKNOWN).
fn concrete_resource_type(code: i8) -> bool {
    (codes::RESOURCE_TOPIC..=codes::RESOURCE_USER).contains(&code)
}

/// Checks a principal is `Type:name` (Kafka's `SecurityUtils.parseKafkaPrincipal`).
fn valid_principal(p: &str) -> bool {
    matches!(p.split_once(':'), Some((t, n)) if !t.is_empty() && !n.is_empty())
}

/// Validates one ACL to create (Kafka's `AclApis.validateAclBinding` and
/// `AclControlManager.validateNewAcl`).
pub fn validate_new_acl(acl: &StandardAcl) -> Result<(), Invalid> {
    if !concrete_resource_type(acl.resource_type) {
        return Err(invalid(format!(
            "Invalid resourceType {}",
            acl.resource_type
        )));
    }
    if acl.pattern_type != codes::PATTERN_LITERAL && acl.pattern_type != codes::PATTERN_PREFIXED {
        return Err(invalid(format!("Invalid patternType {}", acl.pattern_type)));
    }
    if !(codes::OPERATION_ALL..=AclOperation::DescribeTokens.code()).contains(&acl.operation) {
        return Err(invalid(format!("Invalid operation {}", acl.operation)));
    }
    if acl.permission_type != codes::PERMISSION_ALLOW
        && acl.permission_type != codes::PERMISSION_DENY
    {
        return Err(invalid(format!(
            "Invalid permissionType {}",
            acl.permission_type
        )));
    }
    if acl.resource_name.is_empty() {
        return Err(invalid("Invalid empty resource name specified"));
    }
    if acl.resource_type == ResourceType::Cluster.code() && acl.resource_name != CLUSTER_NAME {
        return Err(invalid(format!(
            "The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
        )));
    }
    if !valid_principal(&acl.principal) {
        return Err(invalid(format!("Invalid principal {}", acl.principal)));
    }
    if acl.host.is_empty() {
        return Err(invalid("Invalid empty host"));
    }
    Ok(())
}

/// Validates a filter (Kafka refuses UNKNOWN codes in filters).
pub fn validate_filter(f: &AclFilter) -> Result<(), Invalid> {
    if f.resource_type != codes::RESOURCE_ANY && !concrete_resource_type(f.resource_type) {
        return Err(invalid(format!("Invalid resourceType {}", f.resource_type)));
    }
    if !(codes::PATTERN_ANY..=codes::PATTERN_PREFIXED).contains(&f.pattern_type) {
        return Err(invalid(format!("Invalid patternType {}", f.pattern_type)));
    }
    if !(codes::OPERATION_ANY..=AclOperation::DescribeTokens.code()).contains(&f.operation) {
        return Err(invalid(format!("Invalid operation {}", f.operation)));
    }
    if !(codes::PERMISSION_ANY..=codes::PERMISSION_ALLOW).contains(&f.permission_type) {
        return Err(invalid(format!(
            "Invalid permissionType {}",
            f.permission_type
        )));
    }
    Ok(())
}

/// The answer when the request may not go ahead: SECURITY_DISABLED without an authorizer,
/// CLUSTER_AUTHORIZATION_FAILED without `op` on the cluster.
fn refusal(broker: &Broker, req: &Request, op: AclOperation) -> Option<ResponseError> {
    if !broker.config.authorizer.enabled {
        return Some(ResponseError::SecurityDisabled);
    }
    if !broker.authorize(&req.ctx, op, &Resource::cluster()) {
        return Some(ResponseError::ClusterAuthorizationFailed);
    }
    None
}

/// Handles CreateAcls: ALTER on the cluster; the controller writes one record per new ACL
/// (an ACL that already exists is not created twice, and is not an error).
pub async fn handle_create(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: CreateAclsRequest = req.decode()?;
    let result = |code: i16, msg: Option<String>| {
        create_acls_response::AclCreationResult::default()
            .with_error_code(code)
            .with_error_message(msg.map(sb))
    };
    let results = if let Some(e) = refusal(broker, &req, AclOperation::Alter) {
        r.creations.iter().map(|_| result(e.code(), None)).collect()
    } else {
        let acls: Vec<Result<StandardAcl, Invalid>> = r
            .creations
            .iter()
            .map(|c| {
                let acl = StandardAcl {
                    resource_type: c.resource_type,
                    resource_name: c.resource_name.to_string(),
                    pattern_type: c.resource_pattern_type,
                    principal: c.principal.to_string(),
                    host: c.host.to_string(),
                    operation: c.operation,
                    permission_type: c.permission_type,
                };
                validate_new_acl(&acl).map(|()| acl)
            })
            .collect();
        let valid: Vec<StandardAcl> = acls.iter().filter_map(|a| a.clone().ok()).collect();
        let outcome = broker
            .controller_commit(false, move |img| {
                let mut records = Vec::new();
                let mut seen = HashSet::new();
                for acl in valid {
                    if img.acls.find(&acl).is_none() && seen.insert(acl.clone()) {
                        records.push(acl.to_record(Uuid::new_v4()));
                    }
                }
                Ok((records, ()))
            })
            .await;
        let commit_error = outcome.err().map(|e| (e.code(), e.message()));
        acls.into_iter()
            .map(|a| match (a, &commit_error) {
                (Err((code, msg)), _) => result(code, Some(msg)),
                (Ok(_), Some((code, msg))) => result(*code, Some(msg.clone())),
                (Ok(_), None) => result(0, None),
            })
            .collect()
    };
    let resp = CreateAclsResponse::default().with_results(results);
    Ok(Reply::Now(respond(
        ApiKey::CreateAcls,
        req.version(),
        req.correlation_id(),
        &resp,
    )))
}

/// Handles DescribeAcls: DESCRIBE on the cluster; answers from this node's image, grouped by
/// resource pattern.
pub fn handle_describe(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: DescribeAclsRequest = req.decode()?;
    let mut resp = DescribeAclsResponse::default();
    let filter = AclFilter {
        resource_type: r.resource_type_filter,
        resource_name: r.resource_name_filter.map(|s| s.to_string()),
        pattern_type: r.pattern_type_filter,
        principal: r.principal_filter.map(|s| s.to_string()),
        host: r.host_filter.map(|s| s.to_string()),
        operation: r.operation,
        permission_type: r.permission_type,
    };
    if let Some(e) = refusal(broker, &req, AclOperation::Describe) {
        resp = resp.with_error_code(e.code());
    } else if let Err((code, msg)) = validate_filter(&filter) {
        resp = resp.with_error_code(code).with_error_message(Some(sb(msg)));
    } else {
        let mut by_resource: BTreeMap<
            (i8, String, i8),
            Vec<describe_acls_response::AclDescription>,
        > = BTreeMap::new();
        for (_, acl) in broker.image().acls.filter(&filter) {
            by_resource
                .entry((acl.resource_type, acl.resource_name, acl.pattern_type))
                .or_default()
                .push(
                    describe_acls_response::AclDescription::default()
                        .with_principal(sb(acl.principal))
                        .with_host(sb(acl.host))
                        .with_operation(acl.operation)
                        .with_permission_type(acl.permission_type),
                );
        }
        resp = resp.with_resources(
            by_resource
                .into_iter()
                .map(|((rt, name, pattern), acls)| {
                    describe_acls_response::DescribeAclsResource::default()
                        .with_resource_type(rt)
                        .with_resource_name(sb(name))
                        .with_pattern_type(pattern)
                        .with_acls(acls)
                })
                .collect(),
        );
    }
    Ok(Reply::Now(respond(
        ApiKey::DescribeAcls,
        req.version(),
        req.correlation_id(),
        &resp,
    )))
}

/// Handles DeleteAcls: ALTER on the cluster; the controller removes every ACL a filter
/// matches (each once, reported under the first filter matching it) and returns them.
pub async fn handle_delete(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: DeleteAclsRequest = req.decode()?;
    let filter_result = |code: i16, msg: Option<String>| {
        delete_acls_response::DeleteAclsFilterResult::default()
            .with_error_code(code)
            .with_error_message(msg.map(sb))
    };
    let results = if let Some(e) = refusal(broker, &req, AclOperation::Alter) {
        r.filters
            .iter()
            .map(|_| filter_result(e.code(), None))
            .collect()
    } else {
        let filters: Vec<Result<AclFilter, Invalid>> = r
            .filters
            .iter()
            .map(|f| {
                let filter = AclFilter {
                    resource_type: f.resource_type_filter,
                    resource_name: f.resource_name_filter.as_ref().map(|s| s.to_string()),
                    pattern_type: f.pattern_type_filter,
                    principal: f.principal_filter.as_ref().map(|s| s.to_string()),
                    host: f.host_filter.as_ref().map(|s| s.to_string()),
                    operation: f.operation,
                    permission_type: f.permission_type,
                };
                validate_filter(&filter).map(|()| filter)
            })
            .collect();
        let valid: Vec<Option<AclFilter>> = filters.iter().map(|f| f.clone().ok()).collect();
        let outcome = broker
            .controller_commit(false, move |img| {
                let mut removed = HashSet::new();
                let mut records = Vec::new();
                let matched: Vec<Vec<StandardAcl>> = valid
                    .iter()
                    .map(|f| {
                        let Some(f) = f else { return Vec::new() };
                        img.acls
                            .filter(f)
                            .into_iter()
                            .filter(|(id, _)| removed.insert(*id))
                            .map(|(id, acl)| {
                                records.push(MetadataRecord::RemoveAccessControlEntry { id });
                                acl
                            })
                            .collect()
                    })
                    .collect();
                Ok((records, matched))
            })
            .await;
        match outcome {
            Err(e) => filters
                .iter()
                .map(|f| match f {
                    Err((code, msg)) => filter_result(*code, Some(msg.clone())),
                    Ok(_) => filter_result(e.code(), Some(e.message())),
                })
                .collect(),
            Ok(matched) => filters
                .iter()
                .zip(matched)
                .map(|(f, acls)| match f {
                    Err((code, msg)) => filter_result(*code, Some(msg.clone())),
                    Ok(_) => filter_result(0, None).with_matching_acls(
                        acls.into_iter()
                            .map(|a| {
                                delete_acls_response::DeleteAclsMatchingAcl::default()
                                    .with_resource_type(a.resource_type)
                                    .with_resource_name(sb(a.resource_name))
                                    .with_pattern_type(a.pattern_type)
                                    .with_principal(sb(a.principal))
                                    .with_host(sb(a.host))
                                    .with_operation(a.operation)
                                    .with_permission_type(a.permission_type)
                            })
                            .collect(),
                    ),
                })
                .collect(),
        }
    };
    let resp = DeleteAclsResponse::default().with_filter_results(results);
    Ok(Reply::Now(respond(
        ApiKey::DeleteAcls,
        req.version(),
        req.correlation_id(),
        &resp,
    )))
}
