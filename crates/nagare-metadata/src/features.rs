//! The finalized features of the cluster (KIP-584, KIP-778, KIP-1022) that this code
//! supports: `metadata.version` ([`crate::metadata_version`]) and `transaction.version`
//! (KIP-890 part 2, KIP-1022). Each is finalized by a `FeatureLevelRecord` in the metadata
//! log; a new cluster's first controller writes the levels chosen at format time
//! ([`bootstrap_levels`]), and the image and snapshots carry them from then on.

use std::collections::BTreeMap;

use crate::metadata_version;

/// The `transaction.version` feature (Kafka's `TransactionVersion.FEATURE_NAME`).
pub const TRANSACTION_VERSION: &str = "transaction.version";

/// The highest `transaction.version` this code supports: 2, the epoch bump on every
/// EndTxn (KIP-890 part 2). Level 1 is the flexible `__transaction_state` value format.
pub const TRANSACTION_VERSION_LATEST: i16 = 2;

/// The `transaction.version` a new cluster is formatted with. Kafka 4.0 formats a new
/// cluster at 2 (its latest production `metadata.version`, 4.0-IV3, is past `TV_2`'s
/// bootstrap version 4.0-IV2), but Nagare defaults to 1 until partition leaders add
/// partitions implicitly: a Java 4.x producer that sees 2 finalized stops sending
/// AddPartitionsToTxn and AddOffsetsToTxn and relies on Produce v12 and TxnOffsetCommit v5
/// adding the partition to its transaction (KIP-890 part 2), which Nagare does not do yet;
/// its records would stay in a transaction the coordinator never marks. Level 1 is what
/// Nagare's coordinator writes anyway (flexible `__transaction_state` values) and keeps
/// every client on the classic protocol. `storage format --feature transaction.version=2`
/// chooses 2 (for clients that still add partitions explicitly).
pub const TRANSACTION_VERSION_DEFAULT: i16 = 1;

/// A supported feature and the range of levels this node can run at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportedFeature {
    /// The feature name.
    pub name: &'static str,
    /// The lowest supported level.
    pub min: i16,
    /// The highest supported level.
    pub max: i16,
}

/// The features this node supports, as ApiVersions reports them (KIP-584) and as
/// `storage format --feature` checks them.
pub const SUPPORTED: &[SupportedFeature] = &[
    SupportedFeature {
        name: metadata_version::FEATURE_NAME,
        min: metadata_version::MINIMUM_LEVEL,
        max: metadata_version::LATEST_LEVEL,
    },
    SupportedFeature {
        name: TRANSACTION_VERSION,
        min: 0,
        max: TRANSACTION_VERSION_LATEST,
    },
];

/// Errors choosing a feature level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeatureError {
    /// Not a feature this node knows.
    #[error("unknown feature {0:?} (supported: metadata.version, transaction.version)")]
    Unknown(String),
    /// A level outside the supported range.
    #[error("{name} level {level} is not supported (supported levels are {min}-{max})")]
    Unsupported {
        /// The feature.
        name: String,
        /// The requested level.
        level: i16,
        /// The lowest supported level.
        min: i16,
        /// The highest supported level.
        max: i16,
    },
    /// Not `name=level`.
    #[error("invalid feature {0:?}: expected NAME=LEVEL, e.g. transaction.version=2")]
    Syntax(String),
}

/// The supported range of `name`, if this node knows the feature.
pub fn supported(name: &str) -> Option<SupportedFeature> {
    SUPPORTED.iter().copied().find(|f| f.name == name)
}

/// The levels a new cluster is bootstrapped at: every supported feature at its default
/// (`metadata.version` 4.0-IV3, `transaction.version` [`TRANSACTION_VERSION_DEFAULT`]), overridden by `overrides`
/// (`storage format --feature NAME=LEVEL`), each checked against the supported range.
pub fn bootstrap_levels(
    overrides: &[(String, i16)],
) -> Result<BTreeMap<String, i16>, FeatureError> {
    let mut levels = BTreeMap::from([
        (
            metadata_version::FEATURE_NAME.to_string(),
            metadata_version::LATEST_LEVEL,
        ),
        (TRANSACTION_VERSION.to_string(), TRANSACTION_VERSION_DEFAULT),
    ]);
    for (name, level) in overrides {
        let Some(f) = supported(name) else {
            return Err(FeatureError::Unknown(name.clone()));
        };
        if *level < f.min || *level > f.max {
            return Err(FeatureError::Unsupported {
                name: name.clone(),
                level: *level,
                min: f.min,
                max: f.max,
            });
        }
        levels.insert(name.clone(), *level);
    }
    Ok(levels)
}

/// Parses `NAME=LEVEL` (the argument of `storage format --feature`).
pub fn parse_feature(arg: &str) -> Result<(String, i16), FeatureError> {
    let syntax = || FeatureError::Syntax(arg.to_string());
    let (name, level) = arg.split_once('=').ok_or_else(syntax)?;
    let level = level.trim().parse::<i16>().map_err(|_| syntax())?;
    let name = name.trim();
    if name.is_empty() {
        return Err(syntax());
    }
    Ok((name.to_string(), level))
}

/// The finalized `transaction.version` of an image's features (0 when not finalized, as
/// Kafka's `finalizedFeatures.getOrDefault(TransactionVersion.FEATURE_NAME, 0)`).
pub fn transaction_version(features: &BTreeMap<String, i16>) -> i16 {
    features.get(TRANSACTION_VERSION).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_cluster_finalizes_the_default_transaction_version() {
        let levels = bootstrap_levels(&[]).unwrap();
        assert_eq!(
            levels.get(TRANSACTION_VERSION),
            Some(&TRANSACTION_VERSION_DEFAULT)
        );
        assert_eq!(
            levels.get(metadata_version::FEATURE_NAME),
            Some(&metadata_version::LATEST_LEVEL)
        );
    }

    #[test]
    fn format_overrides_are_checked_against_the_supported_range() {
        let levels = bootstrap_levels(&[(TRANSACTION_VERSION.into(), 2)]).unwrap();
        assert_eq!(levels.get(TRANSACTION_VERSION), Some(&2));
        assert_eq!(
            bootstrap_levels(&[(TRANSACTION_VERSION.into(), 3)]),
            Err(FeatureError::Unsupported {
                name: TRANSACTION_VERSION.into(),
                level: 3,
                min: 0,
                max: 2
            })
        );
        assert_eq!(
            bootstrap_levels(&[("group.version".into(), 1)]),
            Err(FeatureError::Unknown("group.version".into()))
        );
    }

    #[test]
    fn parses_name_equals_level() {
        assert_eq!(
            parse_feature("transaction.version=1"),
            Ok((TRANSACTION_VERSION.to_string(), 1))
        );
        assert!(matches!(
            parse_feature("transaction.version"),
            Err(FeatureError::Syntax(_))
        ));
        assert!(matches!(
            parse_feature("transaction.version=x"),
            Err(FeatureError::Syntax(_))
        ));
    }
}
