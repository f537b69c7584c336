//! The one authorization hook (Kafka's `org.apache.kafka.server.authorizer.Authorizer`):
//! handlers ask [`crate::Broker::authorize`] whether the request's principal may perform an
//! operation on a resource, with Kafka's resource types and operations, before they act. The
//! default authorizer allows everything, as Kafka does when `authorizer.class.name` is unset;
//! [`crate::standard_authorizer`] is Kafka's StandardAuthorizer (ACLs from the metadata log)
//! behind the same trait.

use std::net::IpAddr;

use crate::context::{KafkaPrincipal, RequestContext};

/// Kafka's resource types (`org.apache.kafka.common.resource.ResourceType`), with their
/// wire codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceType {
    /// A topic (2).
    Topic,
    /// A consumer group (3).
    Group,
    /// The cluster (4); its one resource is named `kafka-cluster`.
    Cluster,
    /// A transactional id (5).
    TransactionalId,
    /// A delegation token (6).
    DelegationToken,
    /// A user (7).
    User,
}

impl ResourceType {
    /// The operations ACLs can grant on this resource type (Kafka's
    /// `AclEntry.supportedOperations`): what "authorized operations" fields report on.
    pub fn supported_operations(self) -> &'static [AclOperation] {
        use AclOperation::*;
        match self {
            ResourceType::Topic => &[
                Read,
                Write,
                Create,
                Describe,
                Delete,
                Alter,
                DescribeConfigs,
                AlterConfigs,
            ],
            // KIP-848 group configs made the configs operations apply to groups.
            ResourceType::Group => &[Read, Describe, Delete, DescribeConfigs, AlterConfigs],
            ResourceType::Cluster => &[
                Create,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
                Alter,
                Describe,
            ],
            ResourceType::TransactionalId => &[Describe, Write],
            ResourceType::DelegationToken => &[Describe],
            ResourceType::User => &[CreateTokens, DescribeTokens],
        }
    }

    /// Kafka's wire code.
    pub fn code(self) -> i8 {
        match self {
            ResourceType::Topic => 2,
            ResourceType::Group => 3,
            ResourceType::Cluster => 4,
            ResourceType::TransactionalId => 5,
            ResourceType::DelegationToken => 6,
            ResourceType::User => 7,
        }
    }
}

/// The name of the cluster resource, as in Kafka.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// Kafka's ACL operations (`org.apache.kafka.common.acl.AclOperation`), with their wire codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AclOperation {
    /// ALL (2).
    All,
    /// READ (3).
    Read,
    /// WRITE (4).
    Write,
    /// CREATE (5).
    Create,
    /// DELETE (6).
    Delete,
    /// ALTER (7).
    Alter,
    /// DESCRIBE (8).
    Describe,
    /// CLUSTER_ACTION (9).
    ClusterAction,
    /// DESCRIBE_CONFIGS (10).
    DescribeConfigs,
    /// ALTER_CONFIGS (11).
    AlterConfigs,
    /// IDEMPOTENT_WRITE (12).
    IdempotentWrite,
    /// CREATE_TOKENS (13).
    CreateTokens,
    /// DESCRIBE_TOKENS (14).
    DescribeTokens,
}

impl AclOperation {
    /// Kafka's wire code.
    pub fn code(self) -> i8 {
        match self {
            AclOperation::All => 2,
            AclOperation::Read => 3,
            AclOperation::Write => 4,
            AclOperation::Create => 5,
            AclOperation::Delete => 6,
            AclOperation::Alter => 7,
            AclOperation::Describe => 8,
            AclOperation::ClusterAction => 9,
            AclOperation::DescribeConfigs => 10,
            AclOperation::AlterConfigs => 11,
            AclOperation::IdempotentWrite => 12,
            AclOperation::CreateTokens => 13,
            AclOperation::DescribeTokens => 14,
        }
    }
}

/// One resource a request touches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Resource<'a> {
    /// Its type.
    pub resource_type: ResourceType,
    /// Its name (`kafka-cluster` for the cluster).
    pub name: &'a str,
}

impl<'a> Resource<'a> {
    /// A topic.
    pub fn topic(name: &'a str) -> Self {
        Resource {
            resource_type: ResourceType::Topic,
            name,
        }
    }
    /// A group.
    pub fn group(name: &'a str) -> Self {
        Resource {
            resource_type: ResourceType::Group,
            name,
        }
    }
    /// A transactional id.
    pub fn transactional_id(name: &'a str) -> Self {
        Resource {
            resource_type: ResourceType::TransactionalId,
            name,
        }
    }
    /// The cluster.
    pub fn cluster() -> Resource<'static> {
        Resource {
            resource_type: ResourceType::Cluster,
            name: CLUSTER_NAME,
        }
    }
}

/// Who asks, as the authorizer sees it (Kafka's `AuthorizableRequestContext`).
#[derive(Debug, Clone)]
pub struct Requester<'a> {
    /// The principal (the original client's for a forwarded request).
    pub principal: KafkaPrincipal,
    /// The client's address, for ACL host rules.
    pub client_address: IpAddr,
    /// The listener it came in on.
    pub listener_name: &'a str,
    /// The client id.
    pub client_id: &'a str,
}

impl<'a> Requester<'a> {
    /// The requester of `ctx`.
    pub fn of(ctx: &'a RequestContext) -> Self {
        Requester {
            principal: ctx.principal(),
            client_address: ctx.client_address(),
            listener_name: &ctx.connection.listener_name,
            client_id: ctx.client_id(),
        }
    }
}

/// Decides whether a requester may perform an operation on a resource.
pub trait Authorizer: Send + Sync {
    /// Whether `requester` may perform `operation` on `resource`.
    fn authorize(
        &self,
        requester: &Requester<'_>,
        operation: AclOperation,
        resource: &Resource<'_>,
    ) -> bool;

    /// Whether `requester` may perform `operation` on at least one resource of
    /// `resource_type` (Kafka's `authorizeByResourceType`, KIP-679: e.g. an idempotent
    /// producer needs WRITE on some topic). Refuses unless an implementation knows better.
    fn authorize_by_resource_type(
        &self,
        _requester: &Requester<'_>,
        _operation: AclOperation,
        _resource_type: ResourceType,
    ) -> bool {
        false
    }
}

/// Kafka's `authorizedOperations`: the bit field (bit `1 << code`) of the operations of
/// `resource`'s type that `requester` may perform on it — what Metadata, DescribeCluster,
/// DescribeGroups and ConsumerGroupDescribe answer when the request asks for them.
pub fn authorized_operations(
    authorizer: &dyn Authorizer,
    requester: &Requester<'_>,
    resource: &Resource<'_>,
) -> i32 {
    resource
        .resource_type
        .supported_operations()
        .iter()
        .filter(|op| authorizer.authorize(requester, **op, resource))
        .fold(0i32, |bits, op| bits | (1i32 << op.code()))
}

/// Allows every operation: Kafka's behaviour without `authorizer.class.name`.
#[derive(Debug, Default)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn authorize(&self, _: &Requester<'_>, _: AclOperation, _: &Resource<'_>) -> bool {
        true
    }

    fn authorize_by_resource_type(
        &self,
        _: &Requester<'_>,
        _: AclOperation,
        _: ResourceType,
    ) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct OnlyRead;

    impl Authorizer for OnlyRead {
        fn authorize(&self, _: &Requester<'_>, op: AclOperation, _: &Resource<'_>) -> bool {
            matches!(op, AclOperation::Read | AclOperation::Describe)
        }
    }

    fn requester() -> Requester<'static> {
        Requester {
            principal: KafkaPrincipal::anonymous(),
            client_address: IpAddr::from([127, 0, 0, 1]),
            listener_name: "PLAINTEXT",
            client_id: "test",
        }
    }

    #[test]
    fn authorized_operations_are_bits_of_the_supported_operations() {
        // Without an authorizer every supported operation: for a topic READ (3) to
        // ALTER_CONFIGS (11) except CLUSTER_ACTION (9).
        let all = authorized_operations(&AllowAll, &requester(), &Resource::topic("t"));
        assert_eq!(all, 0b1101_1111_1000);
        let read = authorized_operations(&OnlyRead, &requester(), &Resource::group("g"));
        assert_eq!(read, (1 << 3) | (1 << 8));
        let cluster = authorized_operations(&AllowAll, &requester(), &Resource::cluster());
        assert_eq!(cluster & (1 << 9), 1 << 9, "CLUSTER_ACTION");
        assert_eq!(cluster & (1 << 3), 0, "READ is not a cluster operation");
    }
}
