//! DescribeClientQuotas (key 48) and AlterClientQuotas (key 49): client quotas kept in the
//! metadata log as `ClientQuotaRecord`s (KIP-546). Describe answers from this node's
//! metadata image with Kafka's filter semantics (`ClientQuotasImage.describe`); alter is
//! forwarded to the active controller, which validates each entry as Kafka's
//! `ClientQuotaControlManager` does and writes one record per changed key.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::{
    alter_client_quotas_response, describe_client_quotas_response, AlterClientQuotasRequest,
    AlterClientQuotasResponse, ApiKey, DescribeClientQuotasRequest, DescribeClientQuotasResponse,
};

use nagare_controller::logic::ApiError;
use nagare_metadata::client_quotas::{
    ClientQuotasImage, EntityComponent, QuotaEntity, CLIENT_ID, CONNECTION_CREATION_RATE,
    CONSUMER_BYTE_RATE, CONTROLLER_MUTATION_RATE, IP, PRODUCER_BYTE_RATE, REQUEST_PERCENTAGE, USER,
};
use nagare_metadata::records::MetadataRecord;
use nagare_protocol::error::ResponseError;

use super::HandlerResult;
use super::{respond, sb, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::network::Reply;
use crate::Broker;

/// DescribeClientQuotas versions.
pub const DESCRIBE_VERSIONS: (i16, i16) = (0, 1);
/// AlterClientQuotas versions.
pub const ALTER_VERSIONS: (i16, i16) = (0, 1);

/// Match the entity name exactly (`MATCH_TYPE_EXACT`).
const MATCH_EXACT: i8 = 0;
/// Match the type's default entity (`MATCH_TYPE_DEFAULT`).
const MATCH_DEFAULT: i8 = 1;
/// Match any entity of the type, default included (`MATCH_TYPE_SPECIFIED`).
const MATCH_SPECIFIED: i8 = 2;

/// How a quota value is typed in Kafka's `QuotaConfig` (integral types refuse fractions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueType {
    Long,
    Int,
    Double,
}

/// The keys valid for an entity and their types: `connection_creation_rate` for ip
/// entities, the four client keys for user / client-id ones.
fn key_type(is_ip: bool, key: &str) -> Option<ValueType> {
    if is_ip {
        return (key == CONNECTION_CREATION_RATE).then_some(ValueType::Int);
    }
    match key {
        PRODUCER_BYTE_RATE | CONSUMER_BYTE_RATE => Some(ValueType::Long),
        REQUEST_PERCENTAGE | CONTROLLER_MUTATION_RATE => Some(ValueType::Double),
        _ => None,
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError {
        code: ResponseError::InvalidRequest.code(),
        message: message.into(),
    }
}

/// Validates an entity as Kafka's `ClientQuotaControlManager.validateEntity`: known types,
/// each at most once, no empty names, a valid IP address, and only the combinations ip,
/// user, client-id, or user + client-id.
pub fn validate_entity(components: &[(String, Option<String>)]) -> Result<QuotaEntity, ApiError> {
    if components.is_empty() {
        return Err(invalid("Invalid empty client quota entity"));
    }
    let mut seen: Vec<&str> = Vec::new();
    for (entity_type, name) in components {
        if seen.contains(&entity_type.as_str()) {
            return Err(invalid(format!(
                "Invalid empty client quota entity, duplicate entity entry {entity_type}"
            )));
        }
        match entity_type.as_str() {
            USER | CLIENT_ID => {}
            IP => {
                if let Some(n) = name {
                    if n.parse::<std::net::IpAddr>().is_err() {
                        return Err(invalid(format!("Invalid IP address: {n}")));
                    }
                }
            }
            other => {
                return Err(invalid(format!(
                    "Unhandled client quota entity type: {other}"
                )))
            }
        }
        if name.as_deref() == Some("") {
            return Err(invalid(format!("Empty {entity_type} not supported")));
        }
        seen.push(entity_type);
    }
    let (user, client, ip) = (
        seen.contains(&USER),
        seen.contains(&CLIENT_ID),
        seen.contains(&IP),
    );
    if ip && (user || client) {
        return Err(invalid(
            "Invalid quota entity combination, only ip entities, or user and client-id entities are supported",
        ));
    }
    Ok(QuotaEntity::new(
        components
            .iter()
            .map(|(t, n)| EntityComponent {
                entity_type: t.clone(),
                name: n.clone(),
            })
            .collect(),
    ))
}

/// Validates one value as Kafka's `validateQuotaKeyValue`.
fn validate_value(is_ip: bool, key: &str, value: f64) -> Result<(), ApiError> {
    let Some(t) = key_type(is_ip, key) else {
        return Err(invalid(format!("Invalid configuration key {key}")));
    };
    if value <= 0.0 || value.is_nan() {
        return Err(invalid(format!("Quota {key} must be greater than 0")));
    }
    let max = match t {
        ValueType::Double => return Ok(()),
        ValueType::Int => i32::MAX as f64,
        ValueType::Long => i64::MAX as f64,
    };
    if value > max {
        let ty = if t == ValueType::Int { "INT" } else { "LONG" };
        return Err(invalid(format!(
            "Proposed value for {key} is too large for a {ty}."
        )));
    }
    if value % 1.0 != 0.0 {
        return Err(invalid(format!("Integer value required for key {key}")));
    }
    Ok(())
}

/// The records one alteration of `entity` writes against `image` (nothing for a value that
/// does not change or a removal of an absent key), or why it is refused. `ops` are
/// (key, value, remove) in request order; a later op on the same key wins.
pub fn alter_records(
    image: &ClientQuotasImage,
    entity: &QuotaEntity,
    ops: &[(String, f64, bool)],
) -> Result<Vec<MetadataRecord>, ApiError> {
    let is_ip = entity.component(IP).is_some();
    let mut wanted: BTreeMap<&str, Option<f64>> = BTreeMap::new();
    for (key, value, remove) in ops {
        wanted.insert(key.as_str(), (!remove).then_some(*value));
    }
    let current = image.get(entity);
    let mut records = Vec::new();
    for (key, value) in wanted {
        let now = current.and_then(|m| m.get(key)).copied();
        match value {
            None => {
                if now.is_some() {
                    records.push(MetadataRecord::ClientQuota {
                        entity: entity.0.clone(),
                        key: key.to_string(),
                        value: 0.0,
                        remove: true,
                    });
                }
            }
            Some(v) => {
                validate_value(is_ip, key, v)?;
                if now != Some(v) {
                    records.push(MetadataRecord::ClientQuota {
                        entity: entity.0.clone(),
                        key: key.to_string(),
                        value: v,
                        remove: false,
                    });
                }
            }
        }
    }
    Ok(records)
}

/// One component of a DescribeClientQuotas filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterComponent {
    /// The entity type.
    pub entity_type: String,
    /// `MATCH_TYPE_EXACT` (0), `_DEFAULT` (1) or `_SPECIFIED` (2).
    pub match_type: i8,
    /// The name for an exact match.
    pub name: Option<String>,
}

/// One entity a describe found, with its values.
pub type Described<'a> = (&'a QuotaEntity, &'a BTreeMap<String, f64>);

/// The entities of `image` matching the filter (Kafka's `ClientQuotasImage.describe`), or
/// the error for a malformed filter: INVALID_REQUEST, or UNSUPPORTED_VERSION for an unknown
/// entity or match type, as Kafka answers.
pub fn describe<'a>(
    image: &'a ClientQuotasImage,
    filter: &[FilterComponent],
    strict: bool,
) -> Result<Vec<Described<'a>>, ApiError> {
    let mut exact: BTreeMap<&str, Option<&str>> = BTreeMap::new();
    let mut typed: Vec<&str> = Vec::new();
    for c in filter {
        let t = c.entity_type.as_str();
        if t.is_empty() {
            return Err(invalid("Invalid empty entity type."));
        }
        if exact.contains_key(t) || typed.contains(&t) {
            return Err(invalid(format!(
                "Entity type {t} cannot appear more than once in the filter."
            )));
        }
        if ![IP, USER, CLIENT_ID].contains(&t) {
            return Err(ApiError {
                code: ResponseError::UnsupportedVersion.code(),
                message: format!("Unsupported entity type {t}"),
            });
        }
        match (c.match_type, &c.name) {
            (MATCH_EXACT, Some(n)) => {
                exact.insert(t, Some(n.as_str()));
            }
            (MATCH_EXACT, None) => {
                return Err(invalid(
                    "Request specified MATCH_TYPE_EXACT, but set match string to null.",
                ))
            }
            (MATCH_DEFAULT, None) => {
                exact.insert(t, None);
            }
            (MATCH_DEFAULT, Some(_)) => {
                return Err(invalid(
                    "Request specified MATCH_TYPE_DEFAULT, but also specified a match string.",
                ))
            }
            (MATCH_SPECIFIED, None) => typed.push(t),
            (MATCH_SPECIFIED, Some(_)) => {
                return Err(invalid(
                    "Request specified MATCH_TYPE_SPECIFIED, but also specified a match string.",
                ))
            }
            (other, _) => {
                return Err(ApiError {
                    code: ResponseError::UnsupportedVersion.code(),
                    message: format!("Unknown match type {other}"),
                })
            }
        }
    }
    let has = |t: &str| exact.contains_key(t) || typed.contains(&t);
    if has(IP) && (has(USER) || has(CLIENT_ID)) {
        return Err(invalid(
            "Invalid entity filter component combination. IP filter component should not be used with user or clientId filter component.",
        ));
    }
    Ok(image
        .entities
        .iter()
        .filter(|(entity, _)| {
            if strict && entity.0.len() != exact.len() + typed.len() {
                return false;
            }
            exact.iter().all(|(t, name)| {
                entity
                    .component(t)
                    .is_some_and(|c| c.name.as_deref() == *name)
            }) && typed.iter().all(|t| entity.component(t).is_some())
        })
        .collect())
}

/// Handles DescribeClientQuotas (from this node's image).
pub fn handle_describe(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: DescribeClientQuotasRequest = req.decode()?;
    let reply = |resp: DescribeClientQuotasResponse| {
        Ok(Reply::Now(respond(
            ApiKey::DescribeClientQuotas,
            req.version(),
            req.correlation_id(),
            &resp,
        )))
    };
    // Kafka: DESCRIBE_CONFIGS on the cluster.
    if !broker.authorize(
        &req.ctx,
        AclOperation::DescribeConfigs,
        &Resource::cluster(),
    ) {
        return reply(
            DescribeClientQuotasResponse::default()
                .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
                .with_error_message(Some(sb(
                    ResponseError::ClusterAuthorizationFailed.to_string()
                )))
                .with_entries(None),
        );
    }
    let filter: Vec<FilterComponent> = r
        .components
        .iter()
        .map(|c| FilterComponent {
            entity_type: c.entity_type.to_string(),
            match_type: c.match_type,
            name: c._match.as_ref().map(|m| m.to_string()),
        })
        .collect();
    let image = broker.image();
    let resp = match describe(&image.client_quotas, &filter, r.strict) {
        Err(e) => DescribeClientQuotasResponse::default()
            .with_error_code(e.code)
            .with_error_message(Some(sb(e.message)))
            .with_entries(None),
        Ok(found) => DescribeClientQuotasResponse::default().with_entries(Some(
            found
                .into_iter()
                .map(|(entity, values)| {
                    describe_client_quotas_response::EntryData::default()
                        .with_entity(
                            entity
                                .0
                                .iter()
                                .map(|c| {
                                    describe_client_quotas_response::EntityData::default()
                                        .with_entity_type(sb(c.entity_type.clone()))
                                        .with_entity_name(c.name.clone().map(sb))
                                })
                                .collect(),
                        )
                        .with_values(
                            values
                                .iter()
                                .map(|(k, v)| {
                                    describe_client_quotas_response::ValueData::default()
                                        .with_key(sb(k.clone()))
                                        .with_value(*v)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )),
    };
    reply(resp)
}

/// Handles AlterClientQuotas (on the active controller; brokers forward it there).
pub async fn handle_alter(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: AlterClientQuotasRequest = req.decode()?;
    // Kafka: ALTER_CONFIGS on the cluster, else every entry is refused.
    let allowed = broker.authorize(&req.ctx, AclOperation::AlterConfigs, &Resource::cluster());
    let mut out = Vec::with_capacity(r.entries.len());
    for entry in r.entries {
        let components: Vec<(String, Option<String>)> = entry
            .entity
            .iter()
            .map(|e| {
                (
                    e.entity_type.to_string(),
                    e.entity_name.as_ref().map(|n| n.to_string()),
                )
            })
            .collect();
        let ops: Vec<(String, f64, bool)> = entry
            .ops
            .iter()
            .map(|o| (o.key.to_string(), o.value, o.remove))
            .collect();
        let result = if !allowed {
            Err(ApiError {
                code: ResponseError::ClusterAuthorizationFailed.code(),
                message: ResponseError::ClusterAuthorizationFailed.to_string(),
            })
        } else {
            match validate_entity(&components) {
                Err(e) => Err(e),
                Ok(entity) => broker
                    .controller_commit(r.validate_only, move |img| {
                        let recs = alter_records(&img.client_quotas, &entity, &ops)?;
                        Ok((recs, ()))
                    })
                    .await
                    .map_err(|e| ApiError {
                        code: e.code(),
                        message: e.message(),
                    }),
            }
        };
        let (code, message) = match result {
            Ok(()) => (0, None),
            Err(e) => {
                tracing::debug!(code = e.code, message = %e.message, "AlterClientQuotas entry refused");
                (e.code, Some(sb(e.message)))
            }
        };
        out.push(
            alter_client_quotas_response::EntryData::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_entity(
                    entry
                        .entity
                        .into_iter()
                        .map(|e| {
                            alter_client_quotas_response::EntityData::default()
                                .with_entity_type(e.entity_type)
                                .with_entity_name(e.entity_name)
                        })
                        .collect(),
                ),
        );
    }
    let resp = AlterClientQuotasResponse::default().with_entries(out);
    Ok(Reply::Now(respond(
        ApiKey::AlterClientQuotas,
        req.version(),
        req.correlation_id(),
        &resp,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comps(c: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        c.iter()
            .map(|(t, n)| (t.to_string(), n.map(str::to_string)))
            .collect()
    }

    #[test]
    fn entity_validation_is_kafkas() {
        let msg = |c: &[(&str, Option<&str>)]| validate_entity(&comps(c)).err().map(|e| e.message);
        assert_eq!(msg(&[]), Some("Invalid empty client quota entity".into()));
        assert_eq!(msg(&[(USER, Some("a"))]), None);
        assert_eq!(msg(&[(USER, Some("a")), (CLIENT_ID, None)]), None);
        assert_eq!(msg(&[(IP, Some("10.0.0.1"))]), None);
        assert_eq!(msg(&[(IP, None)]), None);
        assert_eq!(
            msg(&[(IP, Some("nope"))]),
            Some("Invalid IP address: nope".into())
        );
        assert!(msg(&[(USER, Some("a")), (IP, None)])
            .is_some_and(|m| m.starts_with("Invalid quota entity combination")));
        assert_eq!(
            msg(&[(USER, Some(""))]),
            Some("Empty user not supported".into())
        );
        assert_eq!(
            msg(&[("group", Some("g"))]),
            Some("Unhandled client quota entity type: group".into())
        );
        assert!(msg(&[(USER, Some("a")), (USER, Some("b"))])
            .is_some_and(|m| m.contains("duplicate entity entry user")));
    }

    #[test]
    fn alteration_validates_keys_and_writes_only_changes() {
        let mut img = ClientQuotasImage::default();
        let user = validate_entity(&comps(&[(USER, Some("a"))])).expect("valid");
        let ip = validate_entity(&comps(&[(IP, None)])).expect("valid");
        let op = |k: &str, v: f64, rm: bool| (k.to_string(), v, rm);
        let err = |e: Result<Vec<MetadataRecord>, ApiError>| e.err().map(|e| e.message);
        assert_eq!(
            err(alter_records(&img, &user, &[op("bogus", 1.0, false)])),
            Some("Invalid configuration key bogus".into())
        );
        assert_eq!(
            err(alter_records(
                &img,
                &user,
                &[op(CONNECTION_CREATION_RATE, 1.0, false)]
            )),
            Some("Invalid configuration key connection_creation_rate".into())
        );
        assert_eq!(
            err(alter_records(
                &img,
                &ip,
                &[op(PRODUCER_BYTE_RATE, 1.0, false)]
            )),
            Some("Invalid configuration key producer_byte_rate".into())
        );
        assert_eq!(
            err(alter_records(
                &img,
                &user,
                &[op(PRODUCER_BYTE_RATE, 0.0, false)]
            )),
            Some("Quota producer_byte_rate must be greater than 0".into())
        );
        assert_eq!(
            err(alter_records(
                &img,
                &user,
                &[op(PRODUCER_BYTE_RATE, 1.5, false)]
            )),
            Some("Integer value required for key producer_byte_rate".into())
        );
        assert!(alter_records(&img, &user, &[op(REQUEST_PERCENTAGE, 1.5, false)]).is_ok());
        let recs = alter_records(
            &img,
            &user,
            &[
                op(PRODUCER_BYTE_RATE, 1024.0, false),
                op(CONSUMER_BYTE_RATE, 0.0, true),
            ],
        )
        .expect("valid");
        assert_eq!(recs.len(), 1, "removing an absent key writes nothing");
        img.apply(&user, PRODUCER_BYTE_RATE, 1024.0, false);
        assert!(
            alter_records(&img, &user, &[op(PRODUCER_BYTE_RATE, 1024.0, false)])
                .expect("valid")
                .is_empty()
        );
        let rm = alter_records(&img, &user, &[op(PRODUCER_BYTE_RATE, 0.0, true)]).expect("ok");
        assert!(matches!(
            &rm[..],
            [MetadataRecord::ClientQuota { remove: true, .. }]
        ));
    }

    #[test]
    fn describe_filters_like_kafka() {
        let mut img = ClientQuotasImage::default();
        let e = |c: &[(&str, Option<&str>)]| validate_entity(&comps(c)).expect("valid");
        let entities = [
            e(&[(USER, Some("a"))]),
            e(&[(USER, None)]),
            e(&[(USER, Some("a")), (CLIENT_ID, Some("c"))]),
            e(&[(CLIENT_ID, Some("c"))]),
            e(&[(IP, Some("1.2.3.4"))]),
        ];
        for ent in &entities {
            img.apply(ent, PRODUCER_BYTE_RATE, 1.0, false);
        }
        let f = |t: &str, m: i8, n: Option<&str>| FilterComponent {
            entity_type: t.into(),
            match_type: m,
            name: n.map(str::to_string),
        };
        let count = |filter: &[FilterComponent], strict| {
            describe(&img, filter, strict)
                .map(|v| v.len())
                .map_err(|e| e.code)
        };
        assert_eq!(count(&[], false), Ok(5));
        assert_eq!(count(&[], true), Ok(0));
        assert_eq!(count(&[f(USER, MATCH_EXACT, Some("a"))], false), Ok(2));
        assert_eq!(count(&[f(USER, MATCH_EXACT, Some("a"))], true), Ok(1));
        assert_eq!(count(&[f(USER, MATCH_DEFAULT, None)], false), Ok(1));
        assert_eq!(count(&[f(USER, MATCH_SPECIFIED, None)], false), Ok(3));
        assert_eq!(
            count(
                &[
                    f(USER, MATCH_SPECIFIED, None),
                    f(CLIENT_ID, MATCH_SPECIFIED, None)
                ],
                true
            ),
            Ok(1)
        );
        assert_eq!(count(&[f(IP, MATCH_SPECIFIED, None)], false), Ok(1));
        let invalid = ResponseError::InvalidRequest.code();
        assert_eq!(count(&[f(USER, MATCH_EXACT, None)], false), Err(invalid));
        assert_eq!(
            count(&[f(USER, MATCH_DEFAULT, Some("x"))], false),
            Err(invalid)
        );
        assert_eq!(
            count(
                &[f(USER, MATCH_DEFAULT, None), f(USER, MATCH_SPECIFIED, None)],
                false
            ),
            Err(invalid)
        );
        assert_eq!(
            count(
                &[f(IP, MATCH_DEFAULT, None), f(USER, MATCH_SPECIFIED, None)],
                false
            ),
            Err(invalid)
        );
        assert_eq!(
            count(&[f("group", MATCH_SPECIFIED, None)], false),
            Err(ResponseError::UnsupportedVersion.code())
        );
        assert_eq!(
            count(&[f(USER, 7, None)], false),
            Err(ResponseError::UnsupportedVersion.code())
        );
    }
}
