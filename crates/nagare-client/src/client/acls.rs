//! ACLs: CreateAcls, DescribeAcls and DeleteAcls (Kafka's `Admin.createAcls`,
//! `describeAcls`, `deleteAcls`), with Kafka's enum codes and names.

use std::time::Duration;

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use kafka_protocol::protocol::StrBytes;

use super::{Client, Target};
use crate::error::{check_code, Result};

/// Kafka's resource types (`ResourceType`): (code, name).
pub const RESOURCE_TYPES: &[(i8, &str)] = &[
    (1, "Any"),
    (2, "Topic"),
    (3, "Group"),
    (4, "Cluster"),
    (5, "TransactionalId"),
    (6, "DelegationToken"),
    (7, "User"),
];

/// Kafka's pattern types (`PatternType`): (code, name).
pub const PATTERN_TYPES: &[(i8, &str)] =
    &[(1, "Any"), (2, "Match"), (3, "Literal"), (4, "Prefixed")];

/// Kafka's ACL operations (`AclOperation`): (code, name).
pub const OPERATIONS: &[(i8, &str)] = &[
    (1, "Any"),
    (2, "All"),
    (3, "Read"),
    (4, "Write"),
    (5, "Create"),
    (6, "Delete"),
    (7, "Alter"),
    (8, "Describe"),
    (9, "ClusterAction"),
    (10, "DescribeConfigs"),
    (11, "AlterConfigs"),
    (12, "IdempotentWrite"),
    (13, "CreateTokens"),
    (14, "DescribeTokens"),
];

/// Kafka's permission types (`AclPermissionType`): (code, name).
pub const PERMISSION_TYPES: &[(i8, &str)] = &[(1, "Any"), (2, "Deny"), (3, "Allow")];

/// The name of `code` in `table` (`Unknown(code)` when it has none).
pub fn acl_name(table: &[(i8, &str)], code: i8) -> String {
    table
        .iter()
        .find(|(c, _)| *c == code)
        .map_or_else(|| format!("Unknown({code})"), |(_, n)| n.to_string())
}

/// The code of `name` in `table`, ignoring case, `_` and `-` (`idempotent_write`,
/// `IdempotentWrite` and `IDEMPOTENT-WRITE` are one operation).
pub fn acl_code(table: &[(i8, &str)], name: &str) -> Option<i8> {
    let norm = |s: &str| {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .collect::<String>()
            .to_ascii_lowercase()
    };
    let want = norm(name);
    table.iter().find(|(_, n)| norm(n) == want).map(|(c, _)| *c)
}

/// One ACL (Kafka's `AclBinding`): a resource pattern and an access control entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AclBinding {
    /// Resource type code.
    pub resource_type: i8,
    /// Resource name (or prefix).
    pub resource_name: String,
    /// Pattern type code (LITERAL 3, PREFIXED 4).
    pub pattern_type: i8,
    /// `User:name`.
    pub principal: String,
    /// Host or `*`.
    pub host: String,
    /// Operation code.
    pub operation: i8,
    /// Permission code (DENY 2, ALLOW 3).
    pub permission_type: i8,
}

impl std::fmt::Display for AclBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "(resourceType={}, name={}, patternType={}) (principal={}, host={}, operation={}, permissionType={})",
            acl_name(RESOURCE_TYPES, self.resource_type),
            self.resource_name,
            acl_name(PATTERN_TYPES, self.pattern_type),
            self.principal,
            self.host,
            acl_name(OPERATIONS, self.operation),
            acl_name(PERMISSION_TYPES, self.permission_type),
        )
    }
}

/// A filter over ACLs (Kafka's `AclBindingFilter`): ANY codes (1) and `None` match all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclBindingFilter {
    /// Resource type code or ANY.
    pub resource_type: i8,
    /// Resource name, or any.
    pub resource_name: Option<String>,
    /// Pattern type code, ANY or MATCH.
    pub pattern_type: i8,
    /// Principal, or any.
    pub principal: Option<String>,
    /// Host, or any.
    pub host: Option<String>,
    /// Operation code or ANY.
    pub operation: i8,
    /// Permission code or ANY.
    pub permission_type: i8,
}

impl AclBindingFilter {
    /// Matches every ACL.
    pub fn any() -> Self {
        AclBindingFilter {
            resource_type: 1,
            resource_name: None,
            pattern_type: 1,
            principal: None,
            host: None,
            operation: 1,
            permission_type: 1,
        }
    }

    /// Matches exactly `acl`.
    pub fn exact(acl: &AclBinding) -> Self {
        AclBindingFilter {
            resource_type: acl.resource_type,
            resource_name: Some(acl.resource_name.clone()),
            pattern_type: acl.pattern_type,
            principal: Some(acl.principal.clone()),
            host: Some(acl.host.clone()),
            operation: acl.operation,
            permission_type: acl.permission_type,
        }
    }
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

impl Client {
    /// Creates ACLs (an ACL that exists already is not an error); fails with the first
    /// refused one.
    pub async fn create_acls(&mut self, acls: &[AclBinding]) -> Result<()> {
        let resp = self
            .send_to(Target::Any, None, Duration::ZERO, |_| {
                CreateAclsRequest::default().with_creations(
                    acls.iter()
                        .map(|a| {
                            AclCreation::default()
                                .with_resource_type(a.resource_type)
                                .with_resource_name(sb(&a.resource_name))
                                .with_resource_pattern_type(a.pattern_type)
                                .with_principal(sb(&a.principal))
                                .with_host(sb(&a.host))
                                .with_operation(a.operation)
                                .with_permission_type(a.permission_type)
                        })
                        .collect(),
                )
            })
            .await?;
        for (acl, r) in acls.iter().zip(resp.results) {
            check_code(r.error_code, r.error_message.as_deref(), || {
                format!("cannot create ACL {acl}")
            })?;
        }
        Ok(())
    }

    /// The ACLs matching `filter`.
    pub async fn describe_acls(&mut self, filter: &AclBindingFilter) -> Result<Vec<AclBinding>> {
        let resp = self
            .send_to(Target::Any, None, Duration::ZERO, |_| {
                DescribeAclsRequest::default()
                    .with_resource_type_filter(filter.resource_type)
                    .with_resource_name_filter(filter.resource_name.as_deref().map(sb))
                    .with_pattern_type_filter(filter.pattern_type)
                    .with_principal_filter(filter.principal.as_deref().map(sb))
                    .with_host_filter(filter.host.as_deref().map(sb))
                    .with_operation(filter.operation)
                    .with_permission_type(filter.permission_type)
            })
            .await?;
        check_code(resp.error_code, resp.error_message.as_deref(), || {
            "cannot describe ACLs".to_string()
        })?;
        let mut out = Vec::new();
        for r in resp.resources {
            for a in r.acls {
                out.push(AclBinding {
                    resource_type: r.resource_type,
                    resource_name: r.resource_name.to_string(),
                    pattern_type: r.pattern_type,
                    principal: a.principal.to_string(),
                    host: a.host.to_string(),
                    operation: a.operation,
                    permission_type: a.permission_type,
                });
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes every ACL matching one of `filters`; returns the deleted ACLs.
    pub async fn delete_acls(&mut self, filters: &[AclBindingFilter]) -> Result<Vec<AclBinding>> {
        let resp = self
            .send_to(Target::Any, None, Duration::ZERO, |_| {
                DeleteAclsRequest::default().with_filters(
                    filters
                        .iter()
                        .map(|f| {
                            DeleteAclsFilter::default()
                                .with_resource_type_filter(f.resource_type)
                                .with_resource_name_filter(f.resource_name.as_deref().map(sb))
                                .with_pattern_type_filter(f.pattern_type)
                                .with_principal_filter(f.principal.as_deref().map(sb))
                                .with_host_filter(f.host.as_deref().map(sb))
                                .with_operation(f.operation)
                                .with_permission_type(f.permission_type)
                        })
                        .collect(),
                )
            })
            .await?;
        let mut out = Vec::new();
        for r in resp.filter_results {
            check_code(r.error_code, r.error_message.as_deref(), || {
                "cannot delete ACLs".to_string()
            })?;
            out.extend(r.matching_acls.into_iter().map(|a| AclBinding {
                resource_type: a.resource_type,
                resource_name: a.resource_name.to_string(),
                pattern_type: a.pattern_type,
                principal: a.principal.to_string(),
                host: a.host.to_string(),
                operation: a.operation,
                permission_type: a.permission_type,
            }));
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes() {
        assert_eq!(acl_code(OPERATIONS, "idempotent_write"), Some(12));
        assert_eq!(acl_code(OPERATIONS, "IdempotentWrite"), Some(12));
        assert_eq!(acl_code(OPERATIONS, "READ"), Some(3));
        assert_eq!(acl_code(PATTERN_TYPES, "prefixed"), Some(4));
        assert_eq!(acl_code(OPERATIONS, "fly"), None);
        assert_eq!(acl_name(OPERATIONS, 10), "DescribeConfigs");
        assert_eq!(acl_name(OPERATIONS, 99), "Unknown(99)");
        let b = AclBinding {
            resource_type: 2,
            resource_name: "t".into(),
            pattern_type: 3,
            principal: "User:a".into(),
            host: "*".into(),
            operation: 3,
            permission_type: 3,
        };
        assert_eq!(
            b.to_string(),
            "(resourceType=Topic, name=t, patternType=Literal) (principal=User:a, host=*, operation=Read, permissionType=Allow)"
        );
        assert_eq!(
            AclBindingFilter::exact(&b).resource_name.as_deref(),
            Some("t")
        );
    }
}
