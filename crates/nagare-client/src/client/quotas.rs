//! Client quotas: DescribeClientQuotas and AlterClientQuotas (KIP-546).

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::{
    alter_client_quotas_request, describe_client_quotas_request, AlterClientQuotasRequest,
    DescribeClientQuotasRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::{Client, Target};
use crate::error::{check_code, Error, Result};

/// One component of a quota entity: `user`, `client-id` or `ip`, and its name (`None`: the
/// type's default entity).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct QuotaEntityComponent {
    /// `user`, `client-id` or `ip`.
    pub entity_type: String,
    /// The name, or `None` for the default.
    pub name: Option<String>,
}

impl std::fmt::Display for QuotaEntityComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}={}", self.entity_type, n),
            None => write!(f, "{}=<default>", self.entity_type),
        }
    }
}

/// How a DescribeClientQuotas filter matches one entity type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaMatch {
    /// Exactly this name.
    Exact(String),
    /// The type's default entity.
    Default,
    /// Any entity of the type (named or default).
    Any,
}

/// One component of a DescribeClientQuotas filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaFilter {
    /// The entity type.
    pub entity_type: String,
    /// How it is matched.
    pub matches: QuotaMatch,
}

/// A quota entity and the values set on it.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaEntry {
    /// The entity's components.
    pub entity: Vec<QuotaEntityComponent>,
    /// Quota key → value.
    pub values: BTreeMap<String, f64>,
}

impl Client {
    /// The quota entities matching `filter` (all components must match; `strict`: the
    /// entity has no other component) and their values.
    pub async fn describe_client_quotas(
        &mut self,
        filter: &[QuotaFilter],
        strict: bool,
    ) -> Result<Vec<QuotaEntry>> {
        let resp = self
            .send_to(Target::Any, None, Duration::ZERO, |_| {
                DescribeClientQuotasRequest::default()
                    .with_strict(strict)
                    .with_components(
                        filter
                            .iter()
                            .map(|f| {
                                let (match_type, name) = match &f.matches {
                                    QuotaMatch::Exact(n) => (0, Some(n.clone())),
                                    QuotaMatch::Default => (1, None),
                                    QuotaMatch::Any => (2, None),
                                };
                                describe_client_quotas_request::ComponentData::default()
                                    .with_entity_type(StrBytes::from_string(f.entity_type.clone()))
                                    .with_match_type(match_type)
                                    .with_match(name.map(StrBytes::from_string))
                            })
                            .collect(),
                    )
            })
            .await?;
        check_code(resp.error_code, resp.error_message.as_deref(), || {
            "cannot describe client quotas".to_string()
        })?;
        let mut out: Vec<QuotaEntry> = resp
            .entries
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                let mut entity: Vec<QuotaEntityComponent> = e
                    .entity
                    .into_iter()
                    .map(|c| QuotaEntityComponent {
                        entity_type: c.entity_type.to_string(),
                        name: c.entity_name.map(|n| n.to_string()),
                    })
                    .collect();
                entity.sort();
                QuotaEntry {
                    entity,
                    values: e
                        .values
                        .into_iter()
                        .map(|v| (v.key.to_string(), v.value))
                        .collect(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.entity.cmp(&b.entity));
        Ok(out)
    }

    /// Sets (`Some`) or removes (`None`) quota values of one entity.
    pub async fn alter_client_quotas(
        &mut self,
        entity: &[QuotaEntityComponent],
        ops: &[(String, Option<f64>)],
        validate_only: bool,
    ) -> Result<()> {
        let resp = self
            .send_to(Target::Any, None, Duration::ZERO, |_| {
                AlterClientQuotasRequest::default()
                    .with_validate_only(validate_only)
                    .with_entries(vec![alter_client_quotas_request::EntryData::default()
                        .with_entity(
                            entity
                                .iter()
                                .map(|c| {
                                    alter_client_quotas_request::EntityData::default()
                                        .with_entity_type(StrBytes::from_string(
                                            c.entity_type.clone(),
                                        ))
                                        .with_entity_name(c.name.clone().map(StrBytes::from_string))
                                })
                                .collect(),
                        )
                        .with_ops(
                            ops.iter()
                                .map(|(k, v)| {
                                    alter_client_quotas_request::OpData::default()
                                        .with_key(StrBytes::from_string(k.clone()))
                                        .with_value(v.unwrap_or(0.0))
                                        .with_remove(v.is_none())
                                })
                                .collect(),
                        )])
            })
            .await?;
        let entry = resp
            .entries
            .into_iter()
            .next()
            .ok_or_else(|| Error::UnexpectedResponse {
                addr: "broker".into(),
                reason: "AlterClientQuotas response has no entry".into(),
            })?;
        check_code(entry.error_code, entry.error_message.as_deref(), || {
            let names: Vec<String> = entity.iter().map(|c| c.to_string()).collect();
            format!("cannot alter client quotas of {}", names.join(", "))
        })
    }
}
