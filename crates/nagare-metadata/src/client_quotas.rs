//! Client quotas in the metadata image (Kafka's `ClientQuotasImage`): for each quota entity —
//! a combination of `user`, `client-id` (each a name or the default) or an `ip` (an address or
//! the default) — the quota values set on it (`producer_byte_rate`, `consumer_byte_rate`,
//! `request_percentage`, `controller_mutation_rate`, `connection_creation_rate`). Built by
//! replaying `ClientQuotaRecord`s (apiKey 14); a snapshot holds one record per (entity, key).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::records::MetadataRecord;

/// Entity type of a user principal's name.
pub const USER: &str = "user";
/// Entity type of a client id.
pub const CLIENT_ID: &str = "client-id";
/// Entity type of a client IP address.
pub const IP: &str = "ip";

/// Producer bytes/s (user and client-id entities).
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
/// Consumer (fetch) bytes/s (user and client-id entities).
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
/// Percentage of request-handling time per quota window (user and client-id entities).
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
/// Partition mutations/s of CreateTopics, CreatePartitions, DeleteTopics (KIP-599).
pub const CONTROLLER_MUTATION_RATE: &str = "controller_mutation_rate";
/// New connections/s from one IP (KIP-612; ip entities only).
pub const CONNECTION_CREATION_RATE: &str = "connection_creation_rate";

/// The keys a user / client-id entity may carry (Kafka's `QuotaConfig.userAndClientQuotaConfigs`).
pub const CLIENT_KEYS: [&str; 4] = [
    PRODUCER_BYTE_RATE,
    CONSUMER_BYTE_RATE,
    REQUEST_PERCENTAGE,
    CONTROLLER_MUTATION_RATE,
];
/// The keys an ip entity may carry (Kafka's `QuotaConfig.ipConfigs`).
pub const IP_KEYS: [&str; 1] = [CONNECTION_CREATION_RATE];

/// One component of a quota entity: its type and its name, `None` for the type's default
/// (Kafka's `<default>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EntityComponent {
    /// `user`, `client-id` or `ip`.
    pub entity_type: String,
    /// The name, or `None` for the default entity of the type.
    pub name: Option<String>,
}

impl EntityComponent {
    /// A named component.
    pub fn named(entity_type: &str, name: &str) -> Self {
        EntityComponent {
            entity_type: entity_type.to_string(),
            name: Some(name.to_string()),
        }
    }

    /// The default component of a type.
    pub fn default_of(entity_type: &str) -> Self {
        EntityComponent {
            entity_type: entity_type.to_string(),
            name: None,
        }
    }
}

/// A quota entity: its components, sorted by type (so `user` + `client-id` is one key
/// whichever order a request names them in).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QuotaEntity(pub Vec<EntityComponent>);

impl QuotaEntity {
    /// The entity of these components, sorted by type.
    pub fn new(mut components: Vec<EntityComponent>) -> Self {
        components.sort();
        QuotaEntity(components)
    }

    /// The component of `entity_type`, if the entity has one.
    pub fn component(&self, entity_type: &str) -> Option<&EntityComponent> {
        self.0.iter().find(|c| c.entity_type == entity_type)
    }

    /// Whether the entity names (or defaults) exactly the types `types`, in any order.
    pub fn has_types(&self, types: &[&str]) -> bool {
        self.0.len() == types.len() && types.iter().all(|t| self.component(t).is_some())
    }
}

impl std::fmt::Display for QuotaEntity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|c| {
                format!(
                    "{}={}",
                    c.entity_type,
                    c.name.as_deref().unwrap_or("<default>")
                )
            })
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// Every quota set, by entity (Kafka's `ClientQuotasImage`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientQuotasImage {
    /// Quota values by entity, then by key. An entity with no values left is removed.
    pub entities: BTreeMap<QuotaEntity, BTreeMap<String, f64>>,
}

impl ClientQuotasImage {
    /// The values set on `entity` (`None` when it has none).
    pub fn get(&self, entity: &QuotaEntity) -> Option<&BTreeMap<String, f64>> {
        self.entities.get(entity)
    }

    /// The value of `key` on `entity`.
    pub fn value(&self, entity: &QuotaEntity, key: &str) -> Option<f64> {
        self.entities.get(entity).and_then(|m| m.get(key)).copied()
    }

    /// Applies one `ClientQuotaRecord`: sets `key` to `value`, or removes it.
    pub fn apply(&mut self, entity: &QuotaEntity, key: &str, value: f64, remove: bool) {
        if remove {
            if let Some(m) = self.entities.get_mut(entity) {
                m.remove(key);
                if m.is_empty() {
                    self.entities.remove(entity);
                }
            }
        } else {
            self.entities
                .entry(entity.clone())
                .or_default()
                .insert(key.to_string(), value);
        }
    }

    /// The records that rebuild this image (one per entity and key, in order).
    pub fn to_records(&self) -> Vec<MetadataRecord> {
        let mut out = Vec::new();
        for (entity, values) in &self.entities {
            for (key, value) in values {
                out.push(MetadataRecord::ClientQuota {
                    entity: entity.0.clone(),
                    key: key.clone(),
                    value: *value,
                    remove: false,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_remove_and_rebuild() {
        let mut img = ClientQuotasImage::default();
        let e = QuotaEntity::new(vec![
            EntityComponent::default_of(CLIENT_ID),
            EntityComponent::named(USER, "alice"),
        ]);
        // Components are sorted by type whatever the order they were given in.
        assert_eq!(e.0[0].entity_type, CLIENT_ID);
        assert!(e.has_types(&[USER, CLIENT_ID]));
        assert!(!e.has_types(&[USER]));
        img.apply(&e, PRODUCER_BYTE_RATE, 1024.0, false);
        img.apply(&e, CONSUMER_BYTE_RATE, 2048.0, false);
        assert_eq!(img.value(&e, PRODUCER_BYTE_RATE), Some(1024.0));
        let rebuilt = {
            let mut r = ClientQuotasImage::default();
            for rec in img.to_records() {
                if let MetadataRecord::ClientQuota {
                    entity,
                    key,
                    value,
                    remove,
                } = rec
                {
                    r.apply(&QuotaEntity::new(entity), &key, value, remove);
                }
            }
            r
        };
        assert_eq!(rebuilt, img);
        img.apply(&e, PRODUCER_BYTE_RATE, 0.0, true);
        img.apply(&e, CONSUMER_BYTE_RATE, 0.0, true);
        assert!(img.entities.is_empty(), "an entity without values is gone");
        assert_eq!(e.to_string(), "client-id=<default>, user=alice");
    }
}
