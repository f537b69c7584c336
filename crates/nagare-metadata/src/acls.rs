//! ACLs in the metadata image (Kafka's `AclsImage` and the index of its
//! `StandardAuthorizerData`): every ACL by id, indexed so that the ACLs that may apply to one
//! resource are found without scanning the others — literal ACLs by (type, name), prefixed
//! ACLs by (type, prefix), looked up once per prefix of the resource's name.
//!
//! Fields are Kafka's wire codes (as `AccessControlEntryRecord` stores them), so records,
//! CreateAcls and DescribeAcls carry them unchanged; [`codes`] names them.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use crate::records::MetadataRecord;

/// Kafka's wire codes of the ACL enums (`ResourceType`, `PatternType`, `AclOperation`,
/// `AclPermissionType`).
pub mod codes {
    /// `ResourceType.ANY` (filters only).
    pub const RESOURCE_ANY: i8 = 1;
    /// `ResourceType.TOPIC`.
    pub const RESOURCE_TOPIC: i8 = 2;
    /// `ResourceType.GROUP`.
    pub const RESOURCE_GROUP: i8 = 3;
    /// `ResourceType.CLUSTER`.
    pub const RESOURCE_CLUSTER: i8 = 4;
    /// `ResourceType.TRANSACTIONAL_ID`.
    pub const RESOURCE_TRANSACTIONAL_ID: i8 = 5;
    /// `ResourceType.DELEGATION_TOKEN`.
    pub const RESOURCE_DELEGATION_TOKEN: i8 = 6;
    /// `ResourceType.USER`.
    pub const RESOURCE_USER: i8 = 7;

    /// `PatternType.ANY` (filters only): any pattern type, the name exactly.
    pub const PATTERN_ANY: i8 = 1;
    /// `PatternType.MATCH` (filters only): every ACL that applies to the name.
    pub const PATTERN_MATCH: i8 = 2;
    /// `PatternType.LITERAL`.
    pub const PATTERN_LITERAL: i8 = 3;
    /// `PatternType.PREFIXED`.
    pub const PATTERN_PREFIXED: i8 = 4;

    /// `AclOperation.ANY` (filters only).
    pub const OPERATION_ANY: i8 = 1;
    /// `AclOperation.ALL`.
    pub const OPERATION_ALL: i8 = 2;

    /// `AclPermissionType.ANY` (filters only).
    pub const PERMISSION_ANY: i8 = 1;
    /// `AclPermissionType.DENY`.
    pub const PERMISSION_DENY: i8 = 2;
    /// `AclPermissionType.ALLOW`.
    pub const PERMISSION_ALLOW: i8 = 3;

    /// The wildcard resource name of LITERAL ACLs, and the wildcard host.
    pub const WILDCARD: &str = "*";
}

use codes::*;

/// One ACL (Kafka's `StandardAcl`), as its record stores it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StandardAcl {
    /// Resource type code.
    pub resource_type: i8,
    /// Resource name or prefix.
    pub resource_name: String,
    /// LITERAL (3) or PREFIXED (4).
    pub pattern_type: i8,
    /// `Type:name`.
    pub principal: String,
    /// IP address or `*`.
    pub host: String,
    /// Operation code.
    pub operation: i8,
    /// DENY (2) or ALLOW (3).
    pub permission_type: i8,
}

impl StandardAcl {
    /// The record creating this ACL under `id`.
    pub fn to_record(&self, id: Uuid) -> MetadataRecord {
        MetadataRecord::AccessControlEntry {
            id,
            resource_type: self.resource_type,
            resource_name: self.resource_name.clone(),
            pattern_type: self.pattern_type,
            principal: self.principal.clone(),
            host: self.host.clone(),
            operation: self.operation,
            permission_type: self.permission_type,
        }
    }
}

/// An ACL filter (Kafka's `AclBindingFilter`), as DescribeAcls and DeleteAcls send it:
/// ANY codes and `None` strings match everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    /// Resource type code, or ANY.
    pub resource_type: i8,
    /// Resource name, or `None` for any.
    pub resource_name: Option<String>,
    /// LITERAL, PREFIXED, ANY (that name under any pattern type) or MATCH (every ACL that
    /// applies to that name: literal, wildcard and matching prefixes).
    pub pattern_type: i8,
    /// Principal, or `None` for any.
    pub principal: Option<String>,
    /// Host, or `None` for any.
    pub host: Option<String>,
    /// Operation code, or ANY.
    pub operation: i8,
    /// Permission code, or ANY.
    pub permission_type: i8,
}

impl AclFilter {
    /// Whether `acl` matches (Kafka's `ResourcePatternFilter.matches` and
    /// `AccessControlEntryFilter.matches`).
    pub fn matches(&self, acl: &StandardAcl) -> bool {
        if self.resource_type != RESOURCE_ANY && self.resource_type != acl.resource_type {
            return false;
        }
        if self.pattern_type != PATTERN_ANY
            && self.pattern_type != PATTERN_MATCH
            && self.pattern_type != acl.pattern_type
        {
            return false;
        }
        let name_matches = match &self.resource_name {
            None => true,
            Some(name) if self.pattern_type != PATTERN_MATCH => *name == acl.resource_name,
            Some(name) => match acl.pattern_type {
                PATTERN_LITERAL => *name == acl.resource_name || acl.resource_name == WILDCARD,
                PATTERN_PREFIXED => name.starts_with(acl.resource_name.as_str()),
                _ => false,
            },
        };
        name_matches
            && self.principal.as_ref().is_none_or(|p| *p == acl.principal)
            && self.host.as_ref().is_none_or(|h| *h == acl.host)
            && (self.operation == OPERATION_ANY || self.operation == acl.operation)
            && (self.permission_type == PERMISSION_ANY
                || self.permission_type == acl.permission_type)
    }
}

/// Every ACL, by id, with the lookup indexes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AclImage {
    /// Every ACL by id (ordered, so snapshots are deterministic).
    by_id: BTreeMap<Uuid, StandardAcl>,
    /// LITERAL ACLs (the `*` wildcard included) by (resource type, name).
    literal: BTreeMap<(i8, String), BTreeSet<Uuid>>,
    /// PREFIXED ACLs by (resource type, prefix).
    prefixed: BTreeMap<(i8, String), BTreeSet<Uuid>>,
}

impl AclImage {
    /// How many ACLs there are.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The ACL with this id.
    pub fn get(&self, id: &Uuid) -> Option<&StandardAcl> {
        self.by_id.get(id)
    }

    /// Every ACL with its id, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&Uuid, &StandardAcl)> {
        self.by_id.iter()
    }

    fn index(&mut self, acl: &StandardAcl) -> Option<&mut BTreeMap<(i8, String), BTreeSet<Uuid>>> {
        match acl.pattern_type {
            PATTERN_LITERAL => Some(&mut self.literal),
            PATTERN_PREFIXED => Some(&mut self.prefixed),
            _ => None,
        }
    }

    /// Adds (or replaces) the ACL `id`. An ACL of a pattern type other than LITERAL or
    /// PREFIXED — which the controller never writes — is kept by id but never matches.
    pub fn add(&mut self, id: Uuid, acl: StandardAcl) {
        self.remove(&id);
        let key = (acl.resource_type, acl.resource_name.clone());
        if let Some(index) = self.index(&acl) {
            index.entry(key).or_default().insert(id);
        } else {
            tracing::warn!(%id, pattern_type = acl.pattern_type, "ACL with an unknown pattern type never matches");
        }
        self.by_id.insert(id, acl);
    }

    /// Removes the ACL `id`, returning it.
    pub fn remove(&mut self, id: &Uuid) -> Option<StandardAcl> {
        let acl = self.by_id.remove(id)?;
        let key = (acl.resource_type, acl.resource_name.clone());
        if let Some(index) = self.index(&acl) {
            if let Some(ids) = index.get_mut(&key) {
                ids.remove(id);
                if ids.is_empty() {
                    index.remove(&key);
                }
            }
        }
        Some(acl)
    }

    /// The id of an ACL equal to `acl`, if one exists (creating it again is a no-op, as in
    /// Kafka's `AclControlManager`).
    pub fn find(&self, acl: &StandardAcl) -> Option<Uuid> {
        let index = match acl.pattern_type {
            PATTERN_LITERAL => &self.literal,
            PATTERN_PREFIXED => &self.prefixed,
            _ => return None,
        };
        index
            .get(&(acl.resource_type, acl.resource_name.clone()))?
            .iter()
            .find(|id| self.by_id.get(id) == Some(acl))
            .copied()
    }

    /// Every ACL that applies to the resource `name` of type `resource_type`: LITERAL ACLs on
    /// the name and on `*`, and PREFIXED ACLs on every prefix of the name — one index lookup
    /// per prefix, never a scan of unrelated ACLs.
    pub fn applicable<'a>(
        &'a self,
        resource_type: i8,
        name: &'a str,
    ) -> impl Iterator<Item = &'a StandardAcl> + 'a {
        let literal = [name, WILDCARD]
            .into_iter()
            .enumerate()
            // A resource literally named `*` must not see its ACLs twice.
            .filter(move |(i, n)| *i == 0 || *n != name)
            .filter_map(move |(_, n)| self.literal.get(&(resource_type, n.to_string())));
        let prefixed = name
            .char_indices()
            .map(|(i, c)| i + c.len_utf8())
            .filter_map(move |end| self.prefixed.get(&(resource_type, name[..end].to_string())));
        literal
            .chain(prefixed)
            .flat_map(|ids| ids.iter())
            .filter_map(move |id| self.by_id.get(id))
    }

    /// Every ACL of `resource_type` (for KIP-679's `authorizeByResourceType`).
    pub fn of_type(&self, resource_type: i8) -> impl Iterator<Item = &StandardAcl> {
        let range = |m: &'_ BTreeMap<(i8, String), BTreeSet<Uuid>>| {
            m.range((resource_type, String::new())..)
                .take_while(move |((t, _), _)| *t == resource_type)
                .flat_map(|(_, ids)| ids.iter().copied())
                .collect::<Vec<_>>()
        };
        let mut ids = range(&self.literal);
        ids.extend(range(&self.prefixed));
        ids.into_iter().filter_map(move |id| self.by_id.get(&id))
    }

    /// The ACLs matching `filter`, with their ids, in id order.
    pub fn filter(&self, filter: &AclFilter) -> Vec<(Uuid, StandardAcl)> {
        self.by_id
            .iter()
            .filter(|(_, acl)| filter.matches(acl))
            .map(|(id, acl)| (*id, acl.clone()))
            .collect()
    }

    /// The records that rebuild this state (snapshot content), in id order.
    pub fn to_records(&self) -> Vec<MetadataRecord> {
        self.by_id
            .iter()
            .map(|(id, acl)| acl.to_record(*id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(rt: i8, name: &str, pattern: i8, principal: &str, op: i8, perm: i8) -> StandardAcl {
        StandardAcl {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pattern,
            principal: principal.into(),
            host: "*".into(),
            operation: op,
            permission_type: perm,
        }
    }

    fn id(n: u8) -> Uuid {
        Uuid::from_bytes([n; 16])
    }

    fn names(img: &AclImage, rt: i8, name: &str) -> Vec<String> {
        let mut v: Vec<String> = img
            .applicable(rt, name)
            .map(|a| format!("{}:{}", a.pattern_type, a.resource_name))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn applicable_finds_literal_wildcard_and_prefixes_only() {
        let mut img = AclImage::default();
        img.add(id(1), acl(2, "orders", 3, "User:a", 3, 3));
        img.add(id(2), acl(2, "*", 3, "User:a", 3, 3));
        img.add(id(3), acl(2, "ord", 4, "User:a", 3, 3));
        img.add(id(4), acl(2, "orders-eu", 4, "User:a", 3, 3));
        img.add(id(5), acl(3, "orders", 3, "User:a", 3, 3)); // a group, not a topic
        img.add(id(6), acl(2, "x", 4, "User:a", 3, 3));
        assert_eq!(names(&img, 2, "orders"), ["3:*", "3:orders", "4:ord"]);
        assert_eq!(
            names(&img, 2, "orders-eu-1"),
            ["3:*", "4:ord", "4:orders-eu"]
        );
        assert_eq!(names(&img, 2, "other"), ["3:*"]);
        assert_eq!(names(&img, 3, "orders"), ["3:orders"]);
        assert_eq!(names(&img, 2, "*"), ["3:*"]);
        // Multi-byte names split on character boundaries.
        img.add(id(7), acl(2, "é", 4, "User:a", 3, 3));
        assert_eq!(names(&img, 2, "éa"), ["3:*", "4:é"]);
        assert_eq!(img.of_type(3).count(), 1);
        assert_eq!(img.of_type(2).count(), 6);
    }

    #[test]
    fn add_remove_find_and_snapshot() {
        let mut img = AclImage::default();
        let a = acl(2, "t", 3, "User:a", 3, 3);
        img.add(id(1), a.clone());
        assert_eq!(img.find(&a), Some(id(1)));
        let mut other = a.clone();
        other.operation = 4;
        assert_eq!(img.find(&other), None);
        let recs = img.to_records();
        assert_eq!(recs, vec![a.to_record(id(1))]);
        assert_eq!(img.remove(&id(1)), Some(a.clone()));
        assert!(img.is_empty());
        assert_eq!(img.applicable(2, "t").count(), 0);
        assert_eq!(img, AclImage::default(), "indexes emptied too");
        assert_eq!(img.remove(&id(1)), None);
    }

    #[test]
    fn filters_follow_kafkas_pattern_rules() {
        let mut img = AclImage::default();
        img.add(id(1), acl(2, "orders", 3, "User:a", 3, 3));
        img.add(id(2), acl(2, "*", 3, "User:b", 4, 2));
        img.add(id(3), acl(2, "ord", 4, "User:a", 2, 3));
        img.add(id(4), acl(3, "orders", 3, "User:a", 3, 3));
        let f = |rt, name: Option<&str>, pattern| AclFilter {
            resource_type: rt,
            resource_name: name.map(str::to_string),
            pattern_type: pattern,
            principal: None,
            host: None,
            operation: OPERATION_ANY,
            permission_type: PERMISSION_ANY,
        };
        let ids = |filter: AclFilter| -> Vec<u8> {
            img.filter(&filter)
                .iter()
                .map(|(i, _)| i.as_bytes()[0])
                .collect()
        };
        assert_eq!(ids(f(RESOURCE_ANY, None, PATTERN_ANY)), [1, 2, 3, 4]);
        assert_eq!(ids(f(RESOURCE_TOPIC, None, PATTERN_ANY)), [1, 2, 3]);
        assert_eq!(ids(f(RESOURCE_TOPIC, Some("orders"), PATTERN_ANY)), [1]);
        assert_eq!(ids(f(RESOURCE_TOPIC, Some("orders"), PATTERN_LITERAL)), [1]);
        assert_eq!(
            ids(f(RESOURCE_TOPIC, Some("orders"), PATTERN_PREFIXED)),
            Vec::<u8>::new()
        );
        assert_eq!(ids(f(RESOURCE_TOPIC, Some("ord"), PATTERN_PREFIXED)), [3]);
        assert_eq!(
            ids(f(RESOURCE_TOPIC, Some("orders"), PATTERN_MATCH)),
            [1, 2, 3]
        );
        assert_eq!(ids(f(RESOURCE_TOPIC, Some("x"), PATTERN_MATCH)), [2]);
        assert_eq!(ids(f(RESOURCE_TOPIC, None, PATTERN_PREFIXED)), [3]);
        let mut by_principal = f(RESOURCE_ANY, None, PATTERN_ANY);
        by_principal.principal = Some("User:b".into());
        assert_eq!(ids(by_principal), [2]);
        let mut by_op = f(RESOURCE_ANY, None, PATTERN_ANY);
        by_op.operation = 3;
        by_op.permission_type = PERMISSION_ALLOW;
        assert_eq!(ids(by_op), [1, 4]);
        let mut by_host = f(RESOURCE_ANY, None, PATTERN_ANY);
        by_host.host = Some("10.0.0.1".into());
        assert_eq!(ids(by_host), Vec::<u8>::new());
    }
}
