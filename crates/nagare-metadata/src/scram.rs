//! SCRAM credentials in the metadata image: what UserScramCredentialRecord (apiKey 11) and
//! RemoveUserScramCredentialRecord add and remove (KIP-554 on KRaft). Each user has at most
//! one credential per mechanism; only the salt, iteration count, StoredKey and ServerKey are
//! kept, never a password. Brokers authenticate SCRAM clients against this image, and
//! DescribeUserScramCredentials answers from it.

use std::collections::BTreeMap;

use crate::records::MetadataRecord;

/// One stored credential (Kafka's `ScramCredentialData`).
#[derive(Clone, PartialEq, Eq)]
pub struct StoredScramCredential {
    /// The random salt.
    pub salt: Vec<u8>,
    /// H(ClientKey).
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: i32,
}

impl std::fmt::Debug for StoredScramCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys are secrets: a ServerKey lets one impersonate the broker.
        f.debug_struct("StoredScramCredential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// Every user's SCRAM credentials: user name → mechanism type (Kafka's wire type: 1 for
/// SCRAM-SHA-256, 2 for SCRAM-SHA-512) → credential.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScramImage {
    users: BTreeMap<String, BTreeMap<i8, StoredScramCredential>>,
}

impl ScramImage {
    /// The credential of `user` for mechanism type `mechanism`.
    pub fn credential(&self, user: &str, mechanism: i8) -> Option<&StoredScramCredential> {
        self.users.get(user)?.get(&mechanism)
    }

    /// A user's credentials by mechanism type (`None` when the user has none).
    pub fn user(&self, user: &str) -> Option<&BTreeMap<i8, StoredScramCredential>> {
        self.users.get(user)
    }

    /// Every user with at least one credential, sorted, with their credentials.
    pub fn users(&self) -> impl Iterator<Item = (&String, &BTreeMap<i8, StoredScramCredential>)> {
        self.users.iter()
    }

    /// Whether no user has a credential.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Applies a SCRAM record; other records are ignored (returns whether it applied).
    pub fn apply(&mut self, record: &MetadataRecord) -> bool {
        match record {
            MetadataRecord::UserScramCredential {
                name,
                mechanism,
                salt,
                stored_key,
                server_key,
                iterations,
            } => {
                self.users.entry(name.clone()).or_default().insert(
                    *mechanism,
                    StoredScramCredential {
                        salt: salt.clone(),
                        stored_key: stored_key.clone(),
                        server_key: server_key.clone(),
                        iterations: *iterations,
                    },
                );
                true
            }
            MetadataRecord::RemoveUserScramCredential { name, mechanism } => {
                if let Some(creds) = self.users.get_mut(name) {
                    creds.remove(mechanism);
                    if creds.is_empty() {
                        self.users.remove(name);
                    }
                }
                true
            }
            _ => false,
        }
    }

    /// The records that rebuild this state (for metadata snapshots), sorted.
    pub fn to_records(&self) -> Vec<MetadataRecord> {
        self.users
            .iter()
            .flat_map(|(name, creds)| {
                creds
                    .iter()
                    .map(move |(mechanism, c)| MetadataRecord::UserScramCredential {
                        name: name.clone(),
                        mechanism: *mechanism,
                        salt: c.salt.clone(),
                        stored_key: c.stored_key.clone(),
                        server_key: c.server_key.clone(),
                        iterations: c.iterations,
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upsert(name: &str, mechanism: i8, iterations: i32) -> MetadataRecord {
        MetadataRecord::UserScramCredential {
            name: name.into(),
            mechanism,
            salt: vec![1, 2],
            stored_key: vec![3; 32],
            server_key: vec![4; 32],
            iterations,
        }
    }

    #[test]
    fn upsert_replace_remove_and_snapshot() {
        let mut img = ScramImage::default();
        assert!(img.apply(&upsert("alice", 1, 4096)));
        assert!(img.apply(&upsert("alice", 2, 8192)));
        assert!(img.apply(&upsert("alice", 1, 5000)));
        assert!(img.apply(&upsert("bob", 2, 4096)));
        assert_eq!(img.credential("alice", 1).map(|c| c.iterations), Some(5000));
        assert_eq!(img.user("alice").map(|u| u.len()), Some(2));
        let mut rebuilt = ScramImage::default();
        for r in img.to_records() {
            rebuilt.apply(&r);
        }
        assert_eq!(rebuilt, img);
        img.apply(&MetadataRecord::RemoveUserScramCredential {
            name: "bob".into(),
            mechanism: 2,
        });
        assert!(img.user("bob").is_none());
        assert_eq!(img.users().count(), 1);
        assert!(!img.apply(&MetadataRecord::RemoveTopic {
            topic_id: uuid::Uuid::nil()
        }));
        // Secrets stay out of debug output.
        assert!(!format!("{img:?}").contains("3, 3"));
    }
}
