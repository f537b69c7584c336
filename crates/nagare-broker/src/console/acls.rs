//! The console's ACL page API: list ACL bindings (DescribeAcls), create one (CreateAcls) and
//! delete one (DeleteAcls with the exact binding as its filter), as `kafka-acls.sh --list`,
//! `--add` and `--remove` do, sent as the session's principal: Kafka authorizes DescribeAcls
//! with DESCRIBE and the other two with ALTER on the cluster, so a user without them gets
//! CLUSTER_AUTHORIZATION_FAILED, and a cluster without an authorizer answers
//! SECURITY_DISABLED (shown as such, never as an empty list).

use std::collections::BTreeMap;

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use kafka_protocol::protocol::StrBytes;
use serde_json::{json, Value};

use super::api::{check, field, sb, ApiError, ApiResult};
use super::client::InProcess;

/// The DescribeAcls, CreateAcls and DeleteAcls version the console sends (the newest the
/// broker serves).
const ACLS_VERSION: i16 = 3;

/// Kafka's `ResourceType` names and wire codes (`ANY` in filters only).
pub const RESOURCE_TYPES: &[(&str, i8)] = &[
    ("ANY", 1),
    ("TOPIC", 2),
    ("GROUP", 3),
    ("CLUSTER", 4),
    ("TRANSACTIONAL_ID", 5),
    ("DELEGATION_TOKEN", 6),
    ("USER", 7),
];

/// Kafka's `PatternType` names and codes (`ANY` and `MATCH` in filters only).
pub const PATTERN_TYPES: &[(&str, i8)] =
    &[("ANY", 1), ("MATCH", 2), ("LITERAL", 3), ("PREFIXED", 4)];

/// Kafka's `AclOperation` names and codes (`ANY` in filters only).
pub const OPERATIONS: &[(&str, i8)] = &[
    ("ANY", 1),
    ("ALL", 2),
    ("READ", 3),
    ("WRITE", 4),
    ("CREATE", 5),
    ("DELETE", 6),
    ("ALTER", 7),
    ("DESCRIBE", 8),
    ("CLUSTER_ACTION", 9),
    ("DESCRIBE_CONFIGS", 10),
    ("ALTER_CONFIGS", 11),
    ("IDEMPOTENT_WRITE", 12),
    ("CREATE_TOKENS", 13),
    ("DESCRIBE_TOKENS", 14),
];

/// Kafka's `AclPermissionType` names and codes (`ANY` in filters only).
pub const PERMISSIONS: &[(&str, i8)] = &[("ANY", 1), ("DENY", 2), ("ALLOW", 3)];

/// The code of `name` (case-insensitive) in `table`.
pub fn code_of(table: &[(&str, i8)], name: &str) -> Option<i8> {
    table
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name.trim()))
        .map(|(_, c)| *c)
}

/// The name of `code` in `table` (`UNKNOWN` for a code the table lacks).
pub fn name_of(table: &'static [(&'static str, i8)], code: i8) -> &'static str {
    match table.iter().find(|(_, c)| *c == code) {
        Some((n, _)) => n,
        None => "UNKNOWN",
    }
}

/// One ACL binding or binding filter, by codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Resource type code.
    pub resource_type: i8,
    /// Resource name (`None`: any, filters only).
    pub name: Option<String>,
    /// Pattern type code.
    pub pattern: i8,
    /// Principal, `Type:name` (`None`: any, filters only).
    pub principal: Option<String>,
    /// Host (`None`: any, filters only).
    pub host: Option<String>,
    /// Operation code.
    pub operation: i8,
    /// Permission type code.
    pub permission: i8,
}

fn lookup(table: &[(&str, i8)], v: Option<&str>, key: &str, default: i8) -> Result<i8, ApiError> {
    match v.filter(|s| !s.trim().is_empty()) {
        None => Ok(default),
        Some(s) => code_of(table, s).ok_or_else(|| {
            let names: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
            ApiError::new(400, format!("{key}: one of {}", names.join(", ")))
        }),
    }
}

fn non_empty(v: Option<&str>) -> Option<String> {
    v.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The filter of `GET /api/acls`' query (`resource_type`, `name`, `pattern`, `principal`,
/// `host`, `operation`, `permission`; each missing one matches anything, as
/// `kafka-acls.sh --list` without that option). A name without a pattern type matches
/// exactly that name under any pattern type (Kafka's filter default, `ANY`).
pub fn parse_filter(q: &BTreeMap<String, String>) -> Result<Binding, ApiError> {
    let g = |k: &str| q.get(k).map(String::as_str);
    Ok(Binding {
        resource_type: lookup(RESOURCE_TYPES, g("resource_type"), "resource_type", 1)?,
        name: non_empty(g("name")),
        pattern: lookup(PATTERN_TYPES, g("pattern"), "pattern", 1)?,
        principal: non_empty(g("principal")),
        host: non_empty(g("host")),
        operation: lookup(OPERATIONS, g("operation"), "operation", 1)?,
        permission: lookup(PERMISSIONS, g("permission"), "permission", 1)?,
    })
}

/// An exact binding from a JSON body (`resource_type`, `name`, `pattern` LITERAL or
/// PREFIXED, `principal`, `host` (default `*`), `operation`, `permission` ALLOW or DENY), as
/// CreateAcls takes it and DeleteAcls matches it. The broker validates the rest (a CLUSTER
/// resource named `kafka-cluster`, a `Type:name` principal) and answers INVALID_REQUEST.
pub fn parse_binding(body: &Value) -> Result<Binding, ApiError> {
    let s = |k: &str| field(body, k).and_then(|v| v.as_str());
    let required = |k: &str| -> Result<&str, ApiError> {
        s(k).filter(|v| !v.trim().is_empty())
            .ok_or_else(|| ApiError::new(400, format!("{k}: a non-empty string")))
    };
    let b = Binding {
        resource_type: lookup(
            RESOURCE_TYPES,
            Some(required("resource_type")?),
            "resource_type",
            1,
        )?,
        name: Some(required("name")?.trim().to_string()),
        pattern: lookup(PATTERN_TYPES, s("pattern"), "pattern", 3)?,
        principal: Some(required("principal")?.trim().to_string()),
        host: Some(non_empty(s("host")).unwrap_or_else(|| "*".into())),
        operation: lookup(OPERATIONS, Some(required("operation")?), "operation", 1)?,
        permission: lookup(PERMISSIONS, s("permission"), "permission", 3)?,
    };
    // A binding names one resource, pattern, operation and permission: the filter-only
    // wildcards are refused here, before the broker would refuse them.
    if b.resource_type == 1 {
        return Err(ApiError::new(
            400,
            "resource_type: a concrete type, not ANY",
        ));
    }
    if !matches!(b.pattern, 3 | 4) {
        return Err(ApiError::new(400, "pattern: LITERAL or PREFIXED"));
    }
    if b.operation == 1 {
        return Err(ApiError::new(
            400,
            "operation: a concrete operation, not ANY",
        ));
    }
    if b.permission == 1 {
        return Err(ApiError::new(400, "permission: ALLOW or DENY"));
    }
    Ok(b)
}

fn opt(s: &Option<String>) -> Option<StrBytes> {
    s.as_deref().map(sb)
}

/// A binding as the page shows it.
pub fn binding_json(b: &Binding) -> Value {
    json!({
        "resource_type": name_of(RESOURCE_TYPES, b.resource_type),
        "name": b.name,
        "pattern": name_of(PATTERN_TYPES, b.pattern),
        "principal": b.principal,
        "host": b.host,
        "operation": name_of(OPERATIONS, b.operation),
        "permission": name_of(PERMISSIONS, b.permission),
    })
}

/// `GET /api/acls?…`: DescribeAcls with the query's filter; the bindings sorted by
/// resource, then principal, operation and permission.
pub async fn list(c: &InProcess, f: &Binding) -> ApiResult {
    let req = DescribeAclsRequest::default()
        .with_resource_type_filter(f.resource_type)
        .with_resource_name_filter(opt(&f.name))
        .with_pattern_type_filter(f.pattern)
        .with_principal_filter(opt(&f.principal))
        .with_host_filter(opt(&f.host))
        .with_operation(f.operation)
        .with_permission_type(f.permission);
    let resp = c.ask(&req, ACLS_VERSION).await?;
    check(resp.error_code, "DescribeAcls", resp.error_message.as_ref())?;
    let mut bindings: Vec<Binding> = resp
        .resources
        .iter()
        .flat_map(|r| {
            r.acls.iter().map(move |a| Binding {
                resource_type: r.resource_type,
                name: Some(r.resource_name.to_string()),
                pattern: r.pattern_type,
                principal: Some(a.principal.to_string()),
                host: Some(a.host.to_string()),
                operation: a.operation,
                permission: a.permission_type,
            })
        })
        .collect();
    bindings.sort_by(|a, b| {
        (
            a.resource_type,
            &a.name,
            a.pattern,
            &a.principal,
            a.operation,
            a.permission,
        )
            .cmp(&(
                b.resource_type,
                &b.name,
                b.pattern,
                &b.principal,
                b.operation,
                b.permission,
            ))
    });
    Ok(json!({"acls": bindings.iter().map(binding_json).collect::<Vec<_>>()}))
}

/// `POST /api/acls` `{binding}`: CreateAcls of one binding.
pub async fn create(c: &InProcess, body: &Value) -> ApiResult {
    let b = parse_binding(body)?;
    let req = CreateAclsRequest::default().with_creations(vec![AclCreation::default()
        .with_resource_type(b.resource_type)
        .with_resource_name(sb(b.name.as_deref().unwrap_or_default()))
        .with_resource_pattern_type(b.pattern)
        .with_principal(sb(b.principal.as_deref().unwrap_or_default()))
        .with_host(sb(b.host.as_deref().unwrap_or("*")))
        .with_operation(b.operation)
        .with_permission_type(b.permission)]);
    let resp = c.ask(&req, ACLS_VERSION).await?;
    let r = resp
        .results
        .first()
        .ok_or_else(|| ApiError::new(502, "CreateAcls answered no result"))?;
    check(r.error_code, "creating the ACL", r.error_message.as_ref())?;
    Ok(json!({"created": binding_json(&b)}))
}

/// `DELETE /api/acls` `{binding}`: DeleteAcls with the exact binding as the filter (its
/// pattern type LITERAL or PREFIXED matches only bindings of that type, so nothing else is
/// removed); answers the bindings deleted (none when it did not exist).
pub async fn delete(c: &InProcess, body: &Value) -> ApiResult {
    let b = parse_binding(body)?;
    let req = DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default()
        .with_resource_type_filter(b.resource_type)
        .with_resource_name_filter(opt(&b.name))
        .with_pattern_type_filter(b.pattern)
        .with_principal_filter(opt(&b.principal))
        .with_host_filter(opt(&b.host))
        .with_operation(b.operation)
        .with_permission_type(b.permission)]);
    let resp = c.ask(&req, ACLS_VERSION).await?;
    let r = resp
        .filter_results
        .first()
        .ok_or_else(|| ApiError::new(502, "DeleteAcls answered no result"))?;
    check(r.error_code, "deleting the ACL", r.error_message.as_ref())?;
    let mut deleted = Vec::new();
    for m in &r.matching_acls {
        check(m.error_code, "deleting the ACL", m.error_message.as_ref())?;
        deleted.push(binding_json(&Binding {
            resource_type: m.resource_type,
            name: Some(m.resource_name.to_string()),
            pattern: m.pattern_type,
            principal: Some(m.principal.to_string()),
            host: Some(m.host.to_string()),
            operation: m.operation,
            permission: m.permission_type,
        }));
    }
    Ok(json!({"deleted": deleted}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_round_trip() {
        for table in [RESOURCE_TYPES, PATTERN_TYPES, OPERATIONS, PERMISSIONS] {
            for (n, c) in table {
                assert_eq!(code_of(table, n), Some(*c));
                assert_eq!(code_of(table, &n.to_lowercase()), Some(*c));
                assert_eq!(name_of(table, *c), *n);
            }
        }
        assert_eq!(name_of(OPERATIONS, 99), "UNKNOWN");
        assert_eq!(code_of(OPERATIONS, "FLY"), None);
    }

    #[test]
    fn a_filter_defaults_to_any_and_a_binding_to_literal_allow_any_host() {
        let f = parse_filter(&BTreeMap::new()).expect("empty filter");
        assert_eq!(
            (f.resource_type, f.pattern, f.operation, f.permission),
            (1, 1, 1, 1)
        );
        assert_eq!((f.name, f.principal, f.host), (None, None, None));
        let q: BTreeMap<String, String> = [("resource_type", "topic"), ("pattern", "MATCH")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let f = parse_filter(&q).expect("filter");
        assert_eq!((f.resource_type, f.pattern), (2, 2));
        let bad: BTreeMap<String, String> = [("operation".to_string(), "FLY".to_string())]
            .into_iter()
            .collect();
        assert_eq!(parse_filter(&bad).map_err(|e| e.status), Err(400));

        let b = parse_binding(&json!({"resource_type": "TOPIC", "name": "t",
            "principal": "User:alice", "operation": "READ"}))
        .expect("binding");
        assert_eq!(
            (b.pattern, b.permission, b.host.as_deref()),
            (3, 3, Some("*"))
        );
        for wrong in [
            json!({"resource_type": "ANY", "name": "t", "principal": "User:a", "operation": "READ"}),
            json!({"resource_type": "TOPIC", "name": "t", "principal": "User:a", "operation": "ANY"}),
            json!({"resource_type": "TOPIC", "name": "t", "pattern": "MATCH", "principal": "User:a", "operation": "READ"}),
            json!({"resource_type": "TOPIC", "name": "t", "principal": "User:a", "operation": "READ", "permission": "ANY"}),
            json!({"resource_type": "TOPIC", "principal": "User:a", "operation": "READ"}),
            json!({"resource_type": "TOPIC", "name": "t", "operation": "READ"}),
        ] {
            assert_eq!(
                parse_binding(&wrong).map_err(|e| e.status),
                Err(400),
                "{wrong}"
            );
        }
    }
}
