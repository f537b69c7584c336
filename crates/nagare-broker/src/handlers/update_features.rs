//! UpdateFeatures (key 57, KIP-584/KIP-778): finalize feature levels (`metadata.version`,
//! `transaction.version`). A broker forwards it to the active controller, which decides it
//! with `nagare_controller::feature_control` and writes FeatureLevel records; every node's
//! ApiVersions then reports the new finalized levels and epoch. ALTER on the cluster.

use std::sync::Arc;

use kafka_protocol::messages::update_features_request::FeatureUpdateKey;
use kafka_protocol::messages::update_features_response::UpdatableFeatureResult;
use kafka_protocol::messages::{ApiKey, UpdateFeaturesRequest, UpdateFeaturesResponse};

use nagare_controller::feature_control::{self, FeatureUpdate, UpgradeType};
use nagare_controller::shell::ControllerError;
use nagare_protocol::error::ResponseError;

use super::HandlerResult;
use super::{respond, sb, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::network::Reply;
use crate::Broker;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (0, 2);

/// Handles UpdateFeatures on the active controller (NOT_CONTROLLER elsewhere: the
/// forwarding broker's client retries).
pub async fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: UpdateFeaturesRequest = req.decode()?;
    let v = req.version();
    let outcome = update(broker, &req, &r, v).await;
    if let Err((code, message)) = &outcome {
        tracing::info!(peer = %req.ctx.connection.peer, code, %message, "UpdateFeatures refused");
    }
    let (code, message) = outcome.err().unwrap_or((0, String::new()));
    // As Kafka: every feature gets the request's outcome; v2 leaves the per-feature results
    // out when the request failed as a whole.
    let results = if v >= 2 && code != 0 {
        vec![]
    } else {
        r.feature_updates
            .iter()
            .map(|u| {
                UpdatableFeatureResult::default()
                    .with_feature(u.feature.clone())
                    .with_error_code(code)
                    .with_error_message((code != 0).then(|| sb(message.clone())))
            })
            .collect()
    };
    let resp = UpdateFeaturesResponse::default()
        .with_error_code(code)
        .with_error_message((code != 0).then(|| sb(message)))
        .with_results(results);
    Ok(Reply::Now(respond(
        ApiKey::UpdateFeatures,
        v,
        req.correlation_id(),
        &resp,
    )))
}

async fn update(
    broker: &Arc<Broker>,
    req: &Request,
    r: &UpdateFeaturesRequest,
    v: i16,
) -> Result<(), (i16, String)> {
    if !broker.authorize(&req.ctx, AclOperation::Alter, &Resource::cluster()) {
        return Err((
            ResponseError::ClusterAuthorizationFailed.code(),
            "The client is not authorized to update features.".into(),
        ));
    }
    let updates = r
        .feature_updates
        .iter()
        .map(|u| parse_update(u, v))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(controller) = &broker.controller else {
        let e = ControllerError::NotController { leader: None };
        return Err((e.code(), e.message()));
    };
    controller
        .commit(r.validate_only && v >= 1, |image| {
            Ok((feature_control::update_features(image, &updates)?, ()))
        })
        .await
        .map_err(|e| (e.code(), e.message()))
}

fn parse_update(u: &FeatureUpdateKey, v: i16) -> Result<FeatureUpdate, (i16, String)> {
    let upgrade_type = if v == 0 {
        // v0 has a boolean; the downgrade it allows is a safe one.
        if u.allow_downgrade {
            UpgradeType::SafeDowngrade
        } else {
            UpgradeType::Upgrade
        }
    } else {
        UpgradeType::from_code(u.upgrade_type).ok_or_else(|| {
            (
                ResponseError::InvalidRequest.code(),
                format!(
                    "Unknown upgrade type {} for feature {}.",
                    u.upgrade_type, u.feature
                ),
            )
        })?
    };
    Ok(FeatureUpdate {
        name: u.feature.to_string(),
        level: u.max_version_level,
        upgrade_type,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kafka_protocol::messages::update_features_request::FeatureUpdateKey;
    use kafka_protocol::messages::{ApiVersionsRequest, UpdateFeaturesRequest};
    use kafka_protocol::protocol::StrBytes;

    use crate::authorizer::{AclOperation, Authorizer, Requester, Resource};
    use crate::testing::TestBroker;
    use nagare_metadata::features::TRANSACTION_VERSION;

    fn request(level: i16, upgrade_type: i8, validate_only: bool) -> UpdateFeaturesRequest {
        UpdateFeaturesRequest::default()
            .with_timeout_ms(30_000)
            .with_validate_only(validate_only)
            .with_feature_updates(vec![FeatureUpdateKey::default()
                .with_feature(StrBytes::from_static_str(TRANSACTION_VERSION))
                .with_max_version_level(level)
                .with_upgrade_type(upgrade_type)])
    }

    /// (finalized transaction.version, finalized features epoch) as ApiVersions reports.
    async fn finalized(b: &TestBroker) -> (Option<i16>, i64) {
        let r = b
            .send(&ApiVersionsRequest::default(), 3)
            .await
            .expect("ApiVersions");
        let tv = r
            .finalized_features
            .iter()
            .find(|f| f.name.as_str() == TRANSACTION_VERSION)
            .map(|f| f.max_version_level);
        (tv, r.finalized_features_epoch)
    }

    #[tokio::test]
    async fn finalizes_levels_through_the_controller() {
        let b = TestBroker::start().await;
        let (tv, epoch) = finalized(&b).await;
        assert_eq!(tv, Some(1), "the default transaction.version");
        // validate_only: accepted, nothing written.
        let r = b.send(&request(2, 1, true), 1).await.expect("validate");
        assert_eq!((r.error_code, r.results[0].error_code), (0, 0));
        assert_eq!(finalized(&b).await, (Some(1), epoch));
        // An upgrade is written and reported with a newer epoch.
        let r = b.send(&request(2, 1, false), 1).await.expect("upgrade");
        assert_eq!((r.error_code, r.results[0].error_code), (0, 0));
        let (tv, newer) = finalized(&b).await;
        assert_eq!(tv, Some(2));
        assert!(newer > epoch);
        // A downgrade needs a downgrade type (INVALID_UPDATE_VERSION, 95), v2 without results.
        let r = b.send(&request(1, 1, false), 2).await.expect("refused");
        assert_eq!(r.error_code, 95);
        assert!(r.results.is_empty());
        assert!(r
            .error_message
            .as_ref()
            .is_some_and(|m| m.contains("downgrade")));
        // v0's allow_downgrade.
        let mut v0 = request(1, 1, false);
        v0.feature_updates[0].allow_downgrade = true;
        let r = b.send(&v0, 0).await.expect("v0 downgrade");
        assert_eq!(r.error_code, 0);
        assert_eq!(finalized(&b).await.0, Some(1));
    }

    struct NoClusterAlter;

    impl Authorizer for NoClusterAlter {
        fn authorize(&self, _: &Requester<'_>, op: AclOperation, r: &Resource<'_>) -> bool {
            !(op == AclOperation::Alter && r.name == crate::authorizer::CLUSTER_NAME)
        }
    }

    #[tokio::test]
    async fn needs_alter_on_the_cluster() {
        let b = TestBroker::with_authorizer(Arc::new(NoClusterAlter)).await;
        let before = finalized(&b).await;
        let r = b.send(&request(2, 1, false), 1).await.expect("refused");
        assert_eq!((r.error_code, r.results[0].error_code), (31, 31));
        assert_eq!(finalized(&b).await, before, "nothing changed");
    }
}
