//! Kafka's `StandardAuthorizer` (`authorizer.class.name=
//! org.apache.kafka.metadata.authorizer.StandardAuthorizer`): ACLs from the metadata log,
//! matched as `StandardAuthorizerData` does. The decision ([`decide`],
//! [`decide_by_resource_type`]) is a pure function of the ACL image, the settings and the
//! request; [`StandardAuthorizer`] reads the ACLs of the image the broker has applied, so a
//! CreateAcls or DeleteAcls takes effect here as soon as its records are applied.
//!
//! The rules, as Kafka's:
//! - super users (`super.users`, `User:a;User:b`) may do everything;
//! - the ACLs that apply to a resource are the LITERAL ones on its name and on `*`, and the
//!   PREFIXED ones on a prefix of its name; of those, the ones whose principal is the
//!   requester's or `User:*`, whose host is the client's IP or `*`, and whose operation is the
//!   requested one or ALL count;
//! - an ALLOW ACL for READ, WRITE, DELETE or ALTER also allows DESCRIBE, one for ALTER_CONFIGS
//!   also DESCRIBE_CONFIGS (DENY ACLs imply nothing);
//! - a matching DENY wins over any ALLOW;
//! - a resource without any ACL is allowed only with `allow.everyone.if.no.acl.found=true`.

use std::net::IpAddr;
use std::sync::Arc;

use nagare_metadata::acls::{codes, AclImage, StandardAcl};
use nagare_metadata::MetadataPublisher;

use crate::authorizer::{AclOperation, Authorizer, Requester, Resource, ResourceType};
use crate::context::KafkaPrincipal;

/// The class name that selects this authorizer.
pub const STANDARD_AUTHORIZER: &str = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";

/// The authorizer settings (`authorizer.class.name`, `super.users`,
/// `allow.everyone.if.no.acl.found`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizerConfig {
    /// Whether `authorizer.class.name` selects the StandardAuthorizer (else everything is
    /// allowed and the ACL APIs answer SECURITY_DISABLED, as Kafka without an authorizer).
    pub enabled: bool,
    /// `super.users`: principals (`User:name`) allowed everything.
    pub super_users: Vec<String>,
    /// `allow.everyone.if.no.acl.found`.
    pub allow_everyone_if_no_acl_found: bool,
}

impl AuthorizerConfig {
    /// Parses the three settings; an unknown `authorizer.class.name` or a super user that is
    /// not `Type:name` is an error message naming it (a startup error, as in Kafka, which
    /// cannot load an unknown class).
    pub fn parse(
        class_name: Option<&str>,
        super_users: Option<&str>,
        allow_everyone_if_no_acl_found: bool,
    ) -> Result<Self, (&'static str, String, String)> {
        let enabled = match class_name.map(str::trim) {
            None | Some("") => false,
            Some(STANDARD_AUTHORIZER) => true,
            Some(other) => {
                return Err((
                    "authorizer.class.name",
                    other.to_string(),
                    format!("the only authorizer is {STANDARD_AUTHORIZER}"),
                ))
            }
        };
        let mut users = Vec::new();
        for u in super_users.unwrap_or("").split(';') {
            let u = u.trim();
            if u.is_empty() {
                continue;
            }
            match u.split_once(':') {
                Some((t, n)) if !t.is_empty() && !n.is_empty() => users.push(u.to_string()),
                _ => {
                    return Err((
                        "super.users",
                        u.to_string(),
                        "a principal is Type:name, e.g. User:admin".into(),
                    ))
                }
            }
        }
        Ok(AuthorizerConfig {
            enabled,
            super_users: users,
            allow_everyone_if_no_acl_found,
        })
    }
}

/// `Type:name` of a principal, as ACLs store it.
fn principal_string(p: &KafkaPrincipal) -> String {
    format!("{}:{}", p.principal_type, p.name)
}

/// Whether the ACL's host rule covers `host`.
fn host_matches(acl: &StandardAcl, host: IpAddr) -> bool {
    acl.host == codes::WILDCARD
        || acl
            .host
            .parse::<IpAddr>()
            .map_or(acl.host == host.to_string(), |h| h == host)
}

/// Whether the ACL's principal covers `principal` (itself or `User:*`, Kafka's
/// `WILDCARD_KAFKA_PRINCIPAL`).
fn principal_matches(acl: &StandardAcl, principal: &str) -> bool {
    acl.principal == principal || acl.principal == "User:*"
}

/// Whether the ACL's operation covers `op`: the same, ALL, or (ALLOW ACLs only) an
/// operation implying it.
fn operation_matches(acl: &StandardAcl, op: AclOperation) -> bool {
    use AclOperation::*;
    if acl.operation == codes::OPERATION_ALL || acl.operation == op.code() {
        return true;
    }
    if acl.permission_type != codes::PERMISSION_ALLOW {
        return false;
    }
    let implies: &[AclOperation] = match op {
        Describe => &[Read, Write, Delete, Alter],
        DescribeConfigs => &[AlterConfigs],
        _ => &[],
    };
    implies.iter().any(|i| i.code() == acl.operation)
}

/// Whether `principal` from `host` may perform `op` on `resource` (Kafka's
/// `StandardAuthorizerData.authorize`). The broker's own in-process requests
/// ([`KafkaPrincipal::is_broker_internal`]) are always allowed: they act as the broker,
/// which Kafka never authorizes against itself.
pub fn decide(
    acls: &AclImage,
    config: &AuthorizerConfig,
    principal: &KafkaPrincipal,
    host: IpAddr,
    op: AclOperation,
    resource: &Resource<'_>,
) -> bool {
    if principal.is_broker_internal() {
        return true;
    }
    let who = principal_string(principal);
    if config.super_users.contains(&who) {
        return true;
    }
    let mut any_acl = false;
    let mut allowed = false;
    for acl in acls.applicable(resource.resource_type.code(), resource.name) {
        any_acl = true;
        if !(principal_matches(acl, &who) && host_matches(acl, host) && operation_matches(acl, op))
        {
            continue;
        }
        match acl.permission_type {
            codes::PERMISSION_DENY => return false,
            codes::PERMISSION_ALLOW => allowed = true,
            _ => {}
        }
    }
    if any_acl {
        allowed
    } else {
        config.allow_everyone_if_no_acl_found
    }
}

/// Whether `principal` from `host` may perform `op` on at least one resource of
/// `resource_type` (Kafka's `Authorizer.authorizeByResourceType`, KIP-679): allowed if a
/// resource named `hardcode` would be (super users, no ACLs with
/// `allow.everyone.if.no.acl.found`), denied by a DENY on the wildcard, else allowed by an
/// ALLOW (wildcard, or a literal or prefix not covered by a DENY on the same literal or on a
/// prefix of it).
pub fn decide_by_resource_type(
    acls: &AclImage,
    config: &AuthorizerConfig,
    principal: &KafkaPrincipal,
    host: IpAddr,
    op: AclOperation,
    resource_type: ResourceType,
) -> bool {
    let probe = Resource {
        resource_type,
        name: "hardcode",
    };
    if decide(acls, config, principal, host, op, &probe) {
        return true;
    }
    let who = principal_string(principal);
    let mut deny_literal = std::collections::HashSet::new();
    let mut deny_prefixed = std::collections::HashSet::new();
    let mut allows: Vec<&StandardAcl> = Vec::new();
    for acl in acls.of_type(resource_type.code()) {
        // Kafka's default implementation matches the operation exactly or ALL (no implied
        // operations) here.
        if !(principal_matches(acl, &who)
            && host_matches(acl, host)
            && (acl.operation == op.code() || acl.operation == codes::OPERATION_ALL))
        {
            continue;
        }
        match (acl.permission_type, acl.pattern_type) {
            (codes::PERMISSION_DENY, codes::PATTERN_LITERAL) => {
                if acl.resource_name == codes::WILDCARD {
                    return false;
                }
                deny_literal.insert(acl.resource_name.as_str());
            }
            (codes::PERMISSION_DENY, codes::PATTERN_PREFIXED) => {
                deny_prefixed.insert(acl.resource_name.as_str());
            }
            (codes::PERMISSION_ALLOW, _) => allows.push(acl),
            _ => {}
        }
    }
    if allows
        .iter()
        .any(|a| a.pattern_type == codes::PATTERN_LITERAL && a.resource_name == codes::WILDCARD)
    {
        return true;
    }
    allows.iter().any(|a| {
        if a.pattern_type == codes::PATTERN_LITERAL
            && deny_literal.contains(a.resource_name.as_str())
        {
            return false;
        }
        let name = a.resource_name.as_str();
        !name
            .char_indices()
            .map(|(i, c)| &name[..i + c.len_utf8()])
            .any(|prefix| deny_prefixed.contains(prefix))
    })
}

/// The StandardAuthorizer over the ACLs of the broker's current metadata image.
pub struct StandardAuthorizer {
    config: AuthorizerConfig,
    acls: Box<dyn Fn() -> Arc<AclImage> + Send + Sync>,
}

impl StandardAuthorizer {
    /// An authorizer reading the ACLs of `publisher`'s current image: the image is swapped
    /// as soon as committed records are applied, before any listener runs.
    pub fn new(config: AuthorizerConfig, publisher: Arc<MetadataPublisher>) -> Self {
        StandardAuthorizer {
            config,
            acls: Box::new(move || publisher.image().acls.clone()),
        }
    }

    /// An authorizer over fixed ACLs (tests).
    pub fn with_acls(config: AuthorizerConfig, acls: AclImage) -> Self {
        let acls = Arc::new(acls);
        StandardAuthorizer {
            config,
            acls: Box::new(move || acls.clone()),
        }
    }
}

impl Authorizer for StandardAuthorizer {
    fn authorize(
        &self,
        requester: &Requester<'_>,
        operation: AclOperation,
        resource: &Resource<'_>,
    ) -> bool {
        decide(
            &(self.acls)(),
            &self.config,
            &requester.principal,
            requester.client_address,
            operation,
            resource,
        )
    }

    fn authorize_by_resource_type(
        &self,
        requester: &Requester<'_>,
        operation: AclOperation,
        resource_type: ResourceType,
    ) -> bool {
        decide_by_resource_type(
            &(self.acls)(),
            &self.config,
            &requester.principal,
            requester.client_address,
            operation,
            resource_type,
        )
    }
}

/// The authorizer `config` selects: the StandardAuthorizer over `publisher`'s ACLs, or
/// allow-all when none is configured.
pub fn build(config: &AuthorizerConfig, publisher: Arc<MetadataPublisher>) -> Arc<dyn Authorizer> {
    if config.enabled {
        Arc::new(StandardAuthorizer::new(config.clone(), publisher))
    } else {
        Arc::new(crate::authorizer::AllowAll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nagare_metadata::Uuid;
    use AclOperation::*;

    const ALLOW: i8 = codes::PERMISSION_ALLOW;
    const DENY: i8 = codes::PERMISSION_DENY;
    const LIT: i8 = codes::PATTERN_LITERAL;
    const PRE: i8 = codes::PATTERN_PREFIXED;

    struct Fixture {
        acls: AclImage,
        config: AuthorizerConfig,
        next: u8,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                acls: AclImage::default(),
                config: AuthorizerConfig {
                    enabled: true,
                    ..Default::default()
                },
                next: 0,
            }
        }

        #[allow(clippy::too_many_arguments)]
        fn acl(
            &mut self,
            rt: ResourceType,
            name: &str,
            pattern: i8,
            principal: &str,
            host: &str,
            op: AclOperation,
            perm: i8,
        ) -> Uuid {
            self.next += 1;
            let id = Uuid::from_bytes([self.next; 16]);
            self.acls.add(
                id,
                StandardAcl {
                    resource_type: rt.code(),
                    resource_name: name.into(),
                    pattern_type: pattern,
                    principal: principal.into(),
                    host: host.into(),
                    operation: op.code(),
                    permission_type: perm,
                },
            );
            id
        }

        fn allow_topic(&mut self, name: &str, pattern: i8, principal: &str, op: AclOperation) {
            self.acl(
                ResourceType::Topic,
                name,
                pattern,
                principal,
                "*",
                op,
                ALLOW,
            );
        }

        fn can(&self, user: &str, host: &str, op: AclOperation, r: Resource<'_>) -> bool {
            decide(
                &self.acls,
                &self.config,
                &KafkaPrincipal::user(user),
                host.parse().expect("ip"),
                op,
                &r,
            )
        }

        fn can_topic(&self, user: &str, op: AclOperation, name: &str) -> bool {
            self.can(user, "10.0.0.1", op, Resource::topic(name))
        }

        fn any(&self, user: &str, op: AclOperation, rt: ResourceType) -> bool {
            decide_by_resource_type(
                &self.acls,
                &self.config,
                &KafkaPrincipal::user(user),
                "10.0.0.1".parse().expect("ip"),
                op,
                rt,
            )
        }
    }

    #[test]
    fn literal_acl_allows_exactly_its_principal_operation_and_resource() {
        let mut f = Fixture::new();
        f.allow_topic("orders", LIT, "User:alice", Read);
        assert!(f.can_topic("alice", Read, "orders"));
        assert!(!f.can_topic("bob", Read, "orders"), "another principal");
        assert!(!f.can_topic("alice", Write, "orders"), "another operation");
        assert!(
            !f.can_topic("alice", Read, "orders2"),
            "another topic, no ACL"
        );
        assert!(
            !f.can("alice", "10.0.0.1", Read, Resource::group("orders")),
            "same name, another type"
        );
    }

    #[test]
    fn no_acl_denies_unless_allow_everyone_if_no_acl_found() {
        let mut f = Fixture::new();
        assert!(!f.can_topic("alice", Read, "t"));
        f.config.allow_everyone_if_no_acl_found = true;
        assert!(f.can_topic("alice", Read, "t"));
        // Once the resource has any ACL (for anyone), only the ACLs decide.
        f.allow_topic("t", LIT, "User:bob", Write);
        assert!(!f.can_topic("alice", Read, "t"));
        assert!(f.can_topic("alice", Read, "other"));
    }

    #[test]
    fn wildcards_of_resource_principal_and_host() {
        let mut f = Fixture::new();
        f.allow_topic("*", LIT, "User:alice", Read);
        assert!(f.can_topic("alice", Read, "anything"));
        f.allow_topic("pub", LIT, "User:*", Write);
        assert!(f.can_topic("bob", Write, "pub"));
        assert!(!f.can_topic("bob", Write, "priv"));
        f.acl(
            ResourceType::Topic,
            "h",
            LIT,
            "User:carol",
            "10.0.0.2",
            Read,
            ALLOW,
        );
        assert!(f.can("carol", "10.0.0.2", Read, Resource::topic("h")));
        assert!(!f.can("carol", "10.0.0.1", Read, Resource::topic("h")));
        f.acl(
            ResourceType::Topic,
            "v6",
            LIT,
            "User:carol",
            "::1",
            Read,
            ALLOW,
        );
        assert!(f.can("carol", "0:0:0:0:0:0:0:1", Read, Resource::topic("v6")));
    }

    #[test]
    fn prefixed_acls_cover_names_starting_with_the_prefix() {
        let mut f = Fixture::new();
        f.allow_topic("team-a.", PRE, "User:alice", Write);
        assert!(f.can_topic("alice", Write, "team-a.orders"));
        assert!(f.can_topic("alice", Write, "team-a."));
        assert!(!f.can_topic("alice", Write, "team-b.orders"));
        assert!(!f.can_topic("alice", Write, "team-a"));
    }

    #[test]
    fn deny_beats_allow_whatever_the_pattern() {
        let mut f = Fixture::new();
        f.allow_topic("*", LIT, "User:*", All);
        f.acl(
            ResourceType::Topic,
            "secret",
            PRE,
            "User:bob",
            "*",
            Read,
            DENY,
        );
        assert!(f.can_topic("bob", Read, "public"));
        assert!(!f.can_topic("bob", Read, "secret-1"));
        assert!(
            f.can_topic("bob", Write, "secret-1"),
            "DENY READ leaves WRITE"
        );
        assert!(f.can_topic("alice", Read, "secret-1"));
        f.acl(
            ResourceType::Topic,
            "*",
            LIT,
            "User:*",
            "10.0.0.9",
            All,
            DENY,
        );
        assert!(!f.can("alice", "10.0.0.9", Write, Resource::topic("x")));
        assert!(f.can("alice", "10.0.0.8", Write, Resource::topic("x")));
    }

    #[test]
    fn all_matches_every_operation_and_implied_operations_only_allow() {
        let mut f = Fixture::new();
        f.allow_topic("a", LIT, "User:u", All);
        for op in ResourceType::Topic.supported_operations() {
            assert!(f.can_topic("u", *op, "a"), "{op:?}");
        }
        for op in [Read, Write, Delete, Alter] {
            let name = format!("{op:?}");
            f.allow_topic(&name, LIT, "User:u", op);
            assert!(f.can_topic("u", Describe, &name), "{op:?} implies DESCRIBE");
            assert!(!f.can_topic("u", DescribeConfigs, &name));
        }
        f.allow_topic("ac", LIT, "User:u", AlterConfigs);
        assert!(f.can_topic("u", DescribeConfigs, "ac"));
        assert!(!f.can_topic("u", Describe, "ac"));
        // Create does not imply Describe.
        f.allow_topic("c", LIT, "User:u", Create);
        assert!(!f.can_topic("u", Describe, "c"));
        // A DENY READ does not deny DESCRIBE (that an ALLOW ALL grants).
        f.allow_topic("d", LIT, "User:u", All);
        f.acl(ResourceType::Topic, "d", LIT, "User:u", "*", Read, DENY);
        assert!(f.can_topic("u", Describe, "d"));
        assert!(!f.can_topic("u", Read, "d"));
    }

    #[test]
    fn super_users_and_the_broker_itself_are_allowed_everything() {
        let mut f = Fixture::new();
        f.config.super_users = vec!["User:admin".into()];
        f.acl(ResourceType::Topic, "*", LIT, "User:*", "*", All, DENY);
        assert!(f.can_topic("admin", Write, "t"));
        assert!(!f.can_topic("other", Write, "t"));
        assert!(f.can("admin", "10.0.0.1", ClusterAction, Resource::cluster()));
        assert!(decide(
            &f.acls,
            &f.config,
            &KafkaPrincipal::broker_internal(),
            "127.0.0.1".parse().expect("ip"),
            ClusterAction,
            &Resource::cluster()
        ));
        assert!(f.any("admin", Write, ResourceType::Topic));
    }

    #[test]
    fn authorize_by_resource_type_follows_kip_679() {
        let mut f = Fixture::new();
        assert!(!f.any("p", Write, ResourceType::Topic), "no ACL at all");
        f.allow_topic("orders", LIT, "User:p", Write);
        assert!(f.any("p", Write, ResourceType::Topic));
        assert!(!f.any("p", Read, ResourceType::Topic));
        assert!(!f.any("q", Write, ResourceType::Topic));
        assert!(!f.any("p", Write, ResourceType::Group));
        // A DENY on the same literal or on a prefix of it cancels that ALLOW.
        f.acl(ResourceType::Topic, "ord", PRE, "User:p", "*", Write, DENY);
        assert!(!f.any("p", Write, ResourceType::Topic));
        f.allow_topic("pay", PRE, "User:p", All);
        assert!(f.any("p", Write, ResourceType::Topic));
        // A DENY on the wildcard denies every resource.
        f.acl(ResourceType::Topic, "*", LIT, "User:*", "*", Write, DENY);
        assert!(!f.any("p", Write, ResourceType::Topic));
        let mut g = Fixture::new();
        g.allow_topic("*", LIT, "User:*", Write);
        assert!(g.any("anyone", Write, ResourceType::Topic));
        g.acl(ResourceType::Topic, "x", LIT, "User:*", "*", Write, DENY);
        assert!(
            g.any("anyone", Write, ResourceType::Topic),
            "wildcard ALLOW"
        );
        let mut h = Fixture::new();
        h.config.allow_everyone_if_no_acl_found = true;
        assert!(h.any("anyone", Write, ResourceType::Topic));
    }

    /// The authorizer over a publisher sees an ACL as soon as its record is applied, and
    /// stops seeing it once its removal is.
    #[test]
    fn acl_records_take_effect_when_the_publisher_applies_them() {
        let publisher = Arc::new(MetadataPublisher::new());
        let config = AuthorizerConfig {
            enabled: true,
            ..Default::default()
        };
        let authorizer = StandardAuthorizer::new(config, publisher.clone());
        let requester = Requester {
            principal: KafkaPrincipal::user("alice"),
            client_address: "10.0.0.1".parse().expect("ip"),
            listener_name: "PLAINTEXT",
            client_id: "c",
        };
        let read = |a: &StandardAuthorizer| a.authorize(&requester, Read, &Resource::topic("t"));
        assert!(!read(&authorizer));
        let id = Uuid::from_bytes([7; 16]);
        let acl = StandardAcl {
            resource_type: ResourceType::Topic.code(),
            resource_name: "t".into(),
            pattern_type: LIT,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: Read.code(),
            permission_type: ALLOW,
        };
        let create = acl.to_record(id).encode();
        publisher.apply_committed([(0, create.as_slice())]);
        assert!(read(&authorizer));
        assert!(authorizer.authorize_by_resource_type(&requester, Read, ResourceType::Topic));
        let remove = nagare_metadata::MetadataRecord::RemoveAccessControlEntry { id }.encode();
        publisher.apply_committed([(1, remove.as_slice())]);
        assert!(!read(&authorizer));
        // Without authorizer.class.name: allow-all.
        assert!(
            build(&AuthorizerConfig::default(), publisher.clone()).authorize_by_resource_type(
                &requester,
                Read,
                ResourceType::Group
            )
        );
    }

    #[test]
    fn config_parsing() {
        assert_eq!(
            AuthorizerConfig::parse(None, None, false),
            Ok(AuthorizerConfig::default())
        );
        let c = AuthorizerConfig::parse(Some(STANDARD_AUTHORIZER), Some("User:a; User:b;"), true)
            .expect("valid");
        assert!(c.enabled && c.allow_everyone_if_no_acl_found);
        assert_eq!(c.super_users, ["User:a", "User:b"]);
        let e =
            AuthorizerConfig::parse(Some("kafka.security.authorizer.AclAuthorizer"), None, false)
                .expect_err("unknown class");
        assert_eq!(e.0, "authorizer.class.name");
        assert!(e.1.contains("AclAuthorizer"));
        assert_eq!(
            AuthorizerConfig::parse(None, Some("admin"), false).map_err(|e| e.0),
            Err("super.users")
        );
    }
}
