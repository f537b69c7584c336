//! AlterUserScramCredentials on the controller (Kafka's `ScramControlManager`, KIP-554):
//! validates each user's deletions and upsertions against the image and turns them into
//! UserScramCredentialRecord / RemoveUserScramCredentialRecord. An upsertion carries the
//! salt, iterations and salted password the client computed; the controller derives the
//! StoredKey and ServerKey from it, so the password itself never reaches the cluster.
//! One bad alteration fails every alteration of the same user, and only that user.

use kafka_protocol::error::ResponseError;
use nagare_metadata::records::MetadataRecord;
use nagare_metadata::scram::ScramImage;
use nagare_sasl::scram::{ScramCredential, ScramMechanism};

/// One requested deletion.
#[derive(Debug, Clone)]
pub struct ScramDeletion {
    /// User name.
    pub name: String,
    /// Kafka's mechanism type.
    pub mechanism: i8,
}

/// One requested upsertion.
#[derive(Clone)]
pub struct ScramUpsertion {
    /// User name.
    pub name: String,
    /// Kafka's mechanism type.
    pub mechanism: i8,
    /// PBKDF2 iterations.
    pub iterations: i32,
    /// Salt.
    pub salt: Vec<u8>,
    /// Hi(password, salt, iterations).
    pub salted_password: Vec<u8>,
}

impl std::fmt::Debug for ScramUpsertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramUpsertion")
            .field("name", &self.name)
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// The answer for one user: `None` on success, else Kafka's error and message.
pub type UserResult = (String, Option<(ResponseError, String)>);

/// Decides an AlterUserScramCredentials request: the records to commit and one result per
/// user, in the order users first appear (deletions first, as Kafka lists them).
pub fn alter(
    image: &ScramImage,
    deletions: &[ScramDeletion],
    upsertions: &[ScramUpsertion],
) -> (Vec<MetadataRecord>, Vec<UserResult>) {
    let mut order: Vec<String> = Vec::new();
    let mut errors: std::collections::HashMap<String, (ResponseError, String)> =
        std::collections::HashMap::new();
    let mut seen: std::collections::HashSet<(String, i8)> = std::collections::HashSet::new();
    let fail = |errors: &mut std::collections::HashMap<String, (ResponseError, String)>,
                name: &str,
                e: ResponseError,
                m: &str| {
        errors
            .entry(name.to_string())
            .or_insert_with(|| (e, m.to_string()));
    };
    let all = deletions
        .iter()
        .map(|d| (d.name.as_str(), d.mechanism))
        .chain(upsertions.iter().map(|u| (u.name.as_str(), u.mechanism)));
    for (name, mechanism) in all {
        if !order.iter().any(|n| n == name) {
            order.push(name.to_string());
        }
        if !seen.insert((name.to_string(), mechanism)) {
            fail(
                &mut errors,
                name,
                ResponseError::DuplicateResource,
                "A user credential cannot be altered twice in the same request",
            );
        }
        if name.is_empty() {
            fail(
                &mut errors,
                name,
                ResponseError::UnacceptableCredential,
                "Username must not be empty",
            );
        }
        if ScramMechanism::from_type_id(mechanism).is_none() {
            fail(
                &mut errors,
                name,
                ResponseError::UnsupportedSaslMechanism,
                "Unknown SCRAM mechanism",
            );
        }
    }
    for d in deletions {
        if image.credential(&d.name, d.mechanism).is_none() {
            fail(
                &mut errors,
                &d.name,
                ResponseError::ResourceNotFound,
                "Attempt to delete a user credential that does not exist",
            );
        }
    }
    for u in upsertions {
        let Some(m) = ScramMechanism::from_type_id(u.mechanism) else {
            continue;
        };
        if u.iterations < m.min_iterations() as i32 {
            fail(
                &mut errors,
                &u.name,
                ResponseError::UnacceptableCredential,
                "Too few iterations",
            );
        } else if u.iterations > m.max_iterations() as i32 {
            fail(
                &mut errors,
                &u.name,
                ResponseError::UnacceptableCredential,
                "Too many iterations",
            );
        }
        if u.salt.is_empty() || u.salted_password.len() != m.hash_len() {
            fail(
                &mut errors,
                &u.name,
                ResponseError::UnacceptableCredential,
                "Invalid salt or salted password",
            );
        }
    }
    let mut records = Vec::new();
    for d in deletions.iter().filter(|d| !errors.contains_key(&d.name)) {
        records.push(MetadataRecord::RemoveUserScramCredential {
            name: d.name.clone(),
            mechanism: d.mechanism,
        });
    }
    for u in upsertions.iter().filter(|u| !errors.contains_key(&u.name)) {
        let Some(m) = ScramMechanism::from_type_id(u.mechanism) else {
            continue;
        };
        let c = ScramCredential::from_salted_password(
            m,
            &u.salted_password,
            &u.salt,
            u.iterations as u32,
        );
        records.push(MetadataRecord::UserScramCredential {
            name: u.name.clone(),
            mechanism: u.mechanism,
            salt: c.salt,
            stored_key: c.stored_key,
            server_key: c.server_key,
            iterations: u.iterations,
        });
    }
    let results = order
        .into_iter()
        .map(|n| {
            let e = errors.remove(&n);
            (n, e)
        })
        .collect();
    (records, results)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(name: &str, mechanism: i8, iterations: i32) -> ScramUpsertion {
        let m = ScramMechanism::from_type_id(mechanism).unwrap_or(ScramMechanism::Sha256);
        ScramUpsertion {
            name: name.into(),
            mechanism,
            iterations,
            salt: b"salt".to_vec(),
            salted_password: m.salted_password(b"pw", b"salt", 4096),
        }
    }

    fn del(name: &str, mechanism: i8) -> ScramDeletion {
        ScramDeletion {
            name: name.into(),
            mechanism,
        }
    }

    fn code(r: &UserResult) -> Option<ResponseError> {
        r.1.as_ref().map(|(e, _)| *e)
    }

    #[test]
    fn upsert_derives_keys_and_errors_are_per_user() {
        let mut image = ScramImage::default();
        let (records, results) = alter(
            &image,
            &[del("ghost", 1)],
            &[
                up("alice", 2, 4096),
                up("bob", 1, 100),
                up("carol", 1, 20000),
                up("dave", 9, 4096),
                up("erin", 1, 4096),
                up("erin", 1, 8192),
            ],
        );
        let codes: Vec<(String, Option<ResponseError>)> =
            results.iter().map(|r| (r.0.clone(), code(r))).collect();
        assert_eq!(
            codes,
            vec![
                ("ghost".into(), Some(ResponseError::ResourceNotFound)),
                ("alice".into(), None),
                ("bob".into(), Some(ResponseError::UnacceptableCredential)),
                ("carol".into(), Some(ResponseError::UnacceptableCredential)),
                ("dave".into(), Some(ResponseError::UnsupportedSaslMechanism)),
                ("erin".into(), Some(ResponseError::DuplicateResource)),
            ]
        );
        assert_eq!(records.len(), 1);
        for r in &records {
            image.apply(r);
        }
        let stored = image.credential("alice", 2).expect("alice");
        let expected = ScramCredential::from_password(ScramMechanism::Sha512, "pw", b"salt", 4096);
        assert_eq!(stored.stored_key, expected.stored_key);
        assert_eq!(stored.server_key, expected.server_key);
        // Deleting an existing credential, in the same request as another user's upsert.
        let (records, results) = alter(&image, &[del("alice", 2)], &[up("bob", 1, 4096)]);
        assert!(results.iter().all(|r| r.1.is_none()));
        for r in &records {
            image.apply(r);
        }
        assert!(image.user("alice").is_none());
        assert!(image.credential("bob", 1).is_some());
        // Deleting and upserting the same user and mechanism at once is a duplicate.
        let (records, results) = alter(&image, &[del("bob", 1)], &[up("bob", 1, 4096)]);
        assert!(records.is_empty());
        assert_eq!(code(&results[0]), Some(ResponseError::DuplicateResource));
    }
}
