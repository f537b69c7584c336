//! UpdateFeatures (KIP-584, KIP-778) decided over the image, as Kafka's
//! `FeatureControlManager.updateFeatures`: each update names a feature, the level to
//! finalize and how (upgrade, safe or unsafe downgrade); the request is atomic — one invalid
//! update fails it all and nothing is written.

use kafka_protocol::ResponseError;
use nagare_metadata::features;
use nagare_metadata::metadata_version;
use nagare_metadata::records::MetadataRecord;
use nagare_metadata::MetadataImage;

use crate::logic::ApiError;

/// How a feature may move (UpdateFeatures v1+ `upgrade_type`; v0's `allow_downgrade`
/// maps to [`UpgradeType::SafeDowngrade`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeType {
    /// Only to a higher level (1).
    Upgrade,
    /// Down as well, when no metadata is lost (2).
    SafeDowngrade,
    /// Down even if metadata is lost (3).
    UnsafeDowngrade,
}

impl UpgradeType {
    /// From the wire code; `None` for an unknown one.
    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            1 => Some(UpgradeType::Upgrade),
            2 => Some(UpgradeType::SafeDowngrade),
            3 => Some(UpgradeType::UnsafeDowngrade),
            _ => None,
        }
    }
}

/// One requested change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureUpdate {
    /// The feature's name.
    pub name: String,
    /// The level to finalize (0: no longer finalized).
    pub level: i16,
    /// How it may move.
    pub upgrade_type: UpgradeType,
}

fn invalid(message: String) -> ApiError {
    ApiError {
        code: ResponseError::InvalidUpdateVersion.code(),
        message,
    }
}

/// The FeatureLevel records that finalize `updates`, or the error of the first invalid one.
pub fn update_features(
    image: &MetadataImage,
    updates: &[FeatureUpdate],
) -> Result<Vec<MetadataRecord>, ApiError> {
    let mut records = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for u in updates {
        if !seen.insert(u.name.as_str()) {
            return Err(ApiError {
                code: ResponseError::InvalidRequest.code(),
                message: format!("Feature {} appears more than once in the request.", u.name),
            });
        }
        let current = image.features.get(&u.name).copied().unwrap_or(0);
        let Some(supported) = features::supported(&u.name) else {
            return Err(invalid(format!(
                "Invalid update version {} for feature {}. The controller does not support the given feature.",
                u.level, u.name
            )));
        };
        if u.level < 0 {
            return Err(invalid(format!(
                "Invalid update version {} for feature {}. A feature version cannot be negative.",
                u.level, u.name
            )));
        }
        if u.level != 0 && (u.level < supported.min || u.level > supported.max) {
            return Err(invalid(format!(
                "Invalid update version {} for feature {}. Local controller {}-{} does not support this feature at this level.",
                u.level, u.name, supported.min, supported.max
            )));
        }
        if u.level < current {
            if u.upgrade_type == UpgradeType::Upgrade {
                return Err(invalid(format!(
                    "Invalid update version {} for feature {}. Can't downgrade the version of this feature without setting the upgrade type to either safe or unsafe downgrade.",
                    u.level, u.name
                )));
            }
            // Kafka 4: metadata.version cannot be downgraded (the records written at the
            // higher level could not be read back), nor un-finalized.
            if u.name == metadata_version::FEATURE_NAME {
                return Err(invalid(format!(
                    "Invalid update version {} for feature {}. Downgrading metadata.version is not supported.",
                    u.level, u.name
                )));
            }
        }
        if u.name == metadata_version::FEATURE_NAME && u.level == 0 {
            return Err(invalid(format!(
                "Invalid update version 0 for feature {}. metadata.version cannot be disabled.",
                u.name
            )));
        }
        if u.level != current {
            records.push(MetadataRecord::FeatureLevel {
                name: u.name.clone(),
                level: u.level,
            });
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(tv: i16) -> MetadataImage {
        let mut img = MetadataImage::empty();
        img.apply(
            1,
            &MetadataRecord::FeatureLevel {
                name: metadata_version::FEATURE_NAME.into(),
                level: metadata_version::LATEST_LEVEL,
            },
        );
        img.apply(
            2,
            &MetadataRecord::FeatureLevel {
                name: features::TRANSACTION_VERSION.into(),
                level: tv,
            },
        );
        img
    }

    fn up(name: &str, level: i16, t: UpgradeType) -> FeatureUpdate {
        FeatureUpdate {
            name: name.into(),
            level,
            upgrade_type: t,
        }
    }

    const TV: &str = features::TRANSACTION_VERSION;
    const MV: &str = metadata_version::FEATURE_NAME;
    const INVALID: i16 = ResponseError::InvalidUpdateVersion.code();

    #[test]
    fn upgrades_downgrades_and_refusals() {
        let img = image(1);
        assert_eq!(
            update_features(&img, &[up(TV, 2, UpgradeType::Upgrade)]),
            Ok(vec![MetadataRecord::FeatureLevel {
                name: TV.into(),
                level: 2
            }])
        );
        // Same level: nothing to write.
        assert_eq!(
            update_features(&img, &[up(TV, 1, UpgradeType::Upgrade)]),
            Ok(vec![])
        );
        // A downgrade needs a downgrade type; transaction.version may go to 0.
        let e = update_features(&img, &[up(TV, 0, UpgradeType::Upgrade)]).unwrap_err();
        assert_eq!(e.code, INVALID);
        assert!(e.message.contains("downgrade"), "{}", e.message);
        assert_eq!(
            update_features(&img, &[up(TV, 0, UpgradeType::SafeDowngrade)]),
            Ok(vec![MetadataRecord::FeatureLevel {
                name: TV.into(),
                level: 0
            }])
        );
        // Beyond the supported range, unknown features, and metadata.version downgrades.
        for bad in [
            up(TV, 3, UpgradeType::Upgrade),
            up("group.version", 1, UpgradeType::Upgrade),
            up(
                MV,
                metadata_version::LATEST_LEVEL - 1,
                UpgradeType::UnsafeDowngrade,
            ),
            up(MV, 0, UpgradeType::UnsafeDowngrade),
            up(TV, -1, UpgradeType::SafeDowngrade),
        ] {
            assert_eq!(
                update_features(&img, std::slice::from_ref(&bad)).map_err(|e| e.code),
                Err(INVALID),
                "{bad:?}"
            );
        }
        // Atomic: a valid update beside an invalid one writes nothing.
        assert!(update_features(
            &img,
            &[
                up(TV, 2, UpgradeType::Upgrade),
                up(TV, 0, UpgradeType::Upgrade)
            ]
        )
        .is_err());
        assert!(update_features(
            &img,
            &[
                up(TV, 2, UpgradeType::Upgrade),
                up("nope", 1, UpgradeType::Upgrade)
            ]
        )
        .is_err());
    }
}
