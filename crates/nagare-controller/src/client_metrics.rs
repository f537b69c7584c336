//! KIP-714 client metrics subscriptions: the CLIENT_METRICS config resource (type 16), as
//! Kafka's `ClientMetricsConfigs`. A subscription is a named resource whose configs say which
//! metrics (`metrics`, name prefixes, `*` for all), how often (`interval.ms`) and from which
//! clients (`match`, `key=regex` selectors) clients push telemetry. They are set with
//! IncrementalAlterConfigs (`kafka-client-metrics.sh --alter`), stored in the metadata log as
//! ConfigRecords like topic configs, and read by every broker from its metadata image.
//! Parsing and validation live here, shared by the controller (validating alterations) and
//! the brokers (matching clients against subscriptions); nothing here does I/O.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use nagare_metadata::records::ConfigResource;
use nagare_metadata::MetadataImage;

use crate::logic::ApiError;

/// Kafka's ConfigResource.Type code for client metrics subscriptions.
pub const RESOURCE_TYPE: i8 = 16;
/// The metric name prefixes a subscription asks for (comma-separated; `*` for all).
pub const METRICS: &str = "metrics";
/// The push interval, in ms.
pub const INTERVAL_MS: &str = "interval.ms";
/// Client selectors, `key=regex` (comma-separated); none matches every client.
pub const MATCH: &str = "match";
/// `metrics` value subscribing to every metric.
pub const ALL_METRICS: &str = "*";
/// Kafka's default push interval (5 minutes), also the interval of a client no subscription
/// matches (it asks again then).
pub const DEFAULT_INTERVAL_MS: i32 = 300_000;
/// Kafka's bounds on `interval.ms`: 100 ms to one hour.
pub const MIN_INTERVAL_MS: i32 = 100;
/// See [`MIN_INTERVAL_MS`].
pub const MAX_INTERVAL_MS: i32 = 3_600_000;

/// The configs of a CLIENT_METRICS resource with their defaults and docs (DescribeConfigs).
pub const CONFIGS: [(&str, &str, &str); 3] = [
    (
        METRICS,
        "",
        "Telemetry metric name prefixes to subscribe to, comma-separated; `*` for all.",
    ),
    (
        INTERVAL_MS,
        "300000",
        "How often matching clients push their metrics, in ms (100 to 3600000).",
    ),
    (
        MATCH,
        "",
        "Client selectors `key=regex`, comma-separated (keys: client_instance_id, client_id, client_software_name, client_software_version, client_source_address, client_source_port); empty matches every client.",
    ),
];

/// What a `match` selector may test, as KIP-714 names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKey {
    /// The broker-assigned client instance id.
    ClientInstanceId,
    /// The `client.id` of the request header.
    ClientId,
    /// The software name from ApiVersions (KIP-511).
    ClientSoftwareName,
    /// The software version from ApiVersions.
    ClientSoftwareVersion,
    /// The client's IP address.
    ClientSourceAddress,
    /// The client's port.
    ClientSourcePort,
}

impl MatchKey {
    fn parse(s: &str) -> Option<MatchKey> {
        Some(match s {
            "client_instance_id" => MatchKey::ClientInstanceId,
            "client_id" => MatchKey::ClientId,
            "client_software_name" => MatchKey::ClientSoftwareName,
            "client_software_version" => MatchKey::ClientSoftwareVersion,
            "client_source_address" => MatchKey::ClientSourceAddress,
            "client_source_port" => MatchKey::ClientSourcePort,
            _ => return None,
        })
    }
}

/// The facts about a client that `match` selectors test.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientSelector {
    /// Client instance id (a UUID string).
    pub client_instance_id: String,
    /// `client.id`.
    pub client_id: String,
    /// Software name (empty when the client sent ApiVersions below v3).
    pub client_software_name: String,
    /// Software version.
    pub client_software_version: String,
    /// IP address.
    pub client_source_address: String,
    /// Port.
    pub client_source_port: String,
}

impl ClientSelector {
    fn get(&self, key: MatchKey) -> &str {
        match key {
            MatchKey::ClientInstanceId => &self.client_instance_id,
            MatchKey::ClientId => &self.client_id,
            MatchKey::ClientSoftwareName => &self.client_software_name,
            MatchKey::ClientSoftwareVersion => &self.client_software_version,
            MatchKey::ClientSourceAddress => &self.client_source_address,
            MatchKey::ClientSourcePort => &self.client_source_port,
        }
    }
}

/// One parsed subscription.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// The resource name.
    pub name: String,
    /// Metric name prefixes (`*` for all); empty subscribes to nothing.
    pub metrics: Vec<String>,
    /// Push interval, ms.
    pub interval_ms: i32,
    /// Selectors, all of which must match (the whole value, as Java's `Matcher.matches`).
    pub matches: Vec<(MatchKey, regex::Regex)>,
}

impl Subscription {
    /// Whether the client is selected by this subscription.
    pub fn matches(&self, client: &ClientSelector) -> bool {
        self.matches
            .iter()
            .all(|(k, re)| re.is_match(client.get(*k)))
    }
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn invalid_request(m: String) -> ApiError {
    ApiError::new(ResponseError::InvalidRequest.code(), m)
}

fn parse_interval(v: &str) -> Result<i32, ApiError> {
    let n: i32 = v.trim().parse().map_err(|_| {
        ApiError::new(
            ResponseError::InvalidConfig.code(),
            format!("Invalid value {v} for configuration {INTERVAL_MS}: Not a number of type INT"),
        )
    })?;
    if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&n) {
        return Err(invalid_request(format!(
            "Invalid value {n} for {INTERVAL_MS}, interval must be between 100 and 3600000 (1 hour)"
        )));
    }
    Ok(n)
}

fn parse_matches(v: &str) -> Result<Vec<(MatchKey, regex::Regex)>, ApiError> {
    let bad = |m: String| ApiError::new(ResponseError::InvalidConfig.code(), m);
    list(v)
        .into_iter()
        .map(|p| {
            let (k, re) = p
                .split_once('=')
                .ok_or_else(|| bad(format!("Illegal client matching pattern: {p}")))?;
            let key = MatchKey::parse(k.trim())
                .ok_or_else(|| bad(format!("Invalid client matching pattern key: {k}")))?;
            let re = re.trim();
            if re.is_empty() {
                return Err(bad(format!("Illegal client matching pattern: {p}")));
            }
            // Anchored: Kafka tests with `Matcher.matches()`, the whole value.
            let compiled = regex::Regex::new(&format!("^(?:{re})$"))
                .map_err(|e| bad(format!("Illegal regex pattern {re}: {e}")))?;
            Ok((key, compiled))
        })
        .collect()
}

/// Checks one config of a CLIENT_METRICS resource (Kafka's `ClientMetricsConfigs.validate`):
/// unknown names are INVALID_REQUEST, as are intervals out of bounds; bad selectors are
/// INVALID_CONFIG.
pub fn validate(key: &str, value: &str) -> Result<(), ApiError> {
    match key {
        INTERVAL_MS => parse_interval(value).map(|_| ()),
        MATCH => parse_matches(value).map(|_| ()),
        _ => check_name(key),
    }
}

/// Checks that `key` is a config of CLIENT_METRICS resources (INVALID_REQUEST otherwise).
pub fn check_name(key: &str) -> Result<(), ApiError> {
    if CONFIGS.iter().any(|(k, _, _)| *k == key) {
        Ok(())
    } else {
        Err(invalid_request(format!(
            "Unknown client metrics configuration: {key}"
        )))
    }
}

/// Checks a subscription name (Kafka refuses an empty one).
pub fn validate_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() {
        return Err(invalid_request("Subscription name can't be empty".into()));
    }
    Ok(())
}

/// Parses a subscription from its stored configs (validated when they were written, so a
/// bad value here is skipped with its default rather than failing).
pub fn parse(name: &str, configs: &BTreeMap<String, String>) -> Subscription {
    Subscription {
        name: name.to_string(),
        metrics: configs.get(METRICS).map(|v| list(v)).unwrap_or_default(),
        interval_ms: configs
            .get(INTERVAL_MS)
            .and_then(|v| parse_interval(v).ok())
            .unwrap_or(DEFAULT_INTERVAL_MS),
        matches: configs
            .get(MATCH)
            .and_then(|v| parse_matches(v).ok())
            .unwrap_or_default(),
    }
}

/// Every subscription in the image, by name.
pub fn subscriptions(image: &MetadataImage) -> Vec<Subscription> {
    let mut subs: Vec<Subscription> = image
        .configs
        .iter()
        .filter(|((r, _), c)| *r == ConfigResource::ClientMetrics && !c.is_empty())
        .map(|((_, name), c)| parse(name, c))
        .collect();
    subs.sort_by(|a, b| a.name.cmp(&b.name));
    subs
}

/// What the subscriptions matching a client ask of it (Kafka's `ClientMetricsManager`): the
/// union of their metric prefixes (`[""]`, all, when one says `*`) and the smallest of their
/// intervals; no match gives no metrics and [`DEFAULT_INTERVAL_MS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    /// Prefixes, sorted; `[""]` asks for every metric; empty asks for none.
    pub metrics: Vec<String>,
    /// Push interval, ms.
    pub interval_ms: i32,
}

/// The union of what the subscriptions matching `client` ask for.
pub fn requested(subs: &[Subscription], client: &ClientSelector) -> Requested {
    let mut metrics: Vec<String> = Vec::new();
    let mut interval: Option<i32> = None;
    let mut all = false;
    for s in subs.iter().filter(|s| s.matches(client)) {
        interval = Some(interval.map_or(s.interval_ms, |i| i.min(s.interval_ms)));
        for m in &s.metrics {
            if m == ALL_METRICS {
                all = true;
            } else if !metrics.contains(m) {
                metrics.push(m.clone());
            }
        }
    }
    metrics.sort();
    Requested {
        metrics: if all { vec![String::new()] } else { metrics },
        interval_ms: interval.unwrap_or(DEFAULT_INTERVAL_MS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn validation_follows_kafka() {
        assert!(validate(METRICS, "org.apache.kafka.producer., *").is_ok());
        assert!(validate(INTERVAL_MS, "1000").is_ok());
        assert_eq!(
            validate(INTERVAL_MS, "99").unwrap_err().code,
            ResponseError::InvalidRequest.code()
        );
        assert_eq!(
            validate(INTERVAL_MS, "3600001").unwrap_err().code,
            ResponseError::InvalidRequest.code()
        );
        assert_eq!(
            validate(INTERVAL_MS, "x").unwrap_err().code,
            ResponseError::InvalidConfig.code()
        );
        assert_eq!(
            validate("client.id", "x").unwrap_err().code,
            ResponseError::InvalidRequest.code()
        );
        assert!(validate(MATCH, "client_id=app-.*,client_software_name=librdkafka").is_ok());
        for bad in ["client_id", "colour=red", "client_id=(", "client_id="] {
            assert_eq!(
                validate(MATCH, bad).unwrap_err().code,
                ResponseError::InvalidConfig.code(),
                "{bad}"
            );
        }
        assert!(validate_name("").is_err());
    }

    #[test]
    fn matching_unions_metrics_and_takes_the_smallest_interval() {
        let a = parse(
            "a",
            &cfg(&[
                (METRICS, "org.apache.kafka.producer."),
                (INTERVAL_MS, "5000"),
                (MATCH, "client_id=app-.*"),
            ]),
        );
        let b = parse(
            "b",
            &cfg(&[
                (METRICS, "org.apache.kafka.consumer."),
                (INTERVAL_MS, "1000"),
            ]),
        );
        let c = parse(
            "c",
            &cfg(&[(METRICS, "*"), (MATCH, "client_software_name=java")]),
        );
        let subs = vec![a, b, c];
        let app = ClientSelector {
            client_id: "app-1".into(),
            client_software_name: "librdkafka".into(),
            ..Default::default()
        };
        let r = requested(&subs, &app);
        assert_eq!(
            r.metrics,
            vec!["org.apache.kafka.consumer.", "org.apache.kafka.producer."]
        );
        assert_eq!(r.interval_ms, 1000);
        // The whole value must match: "xapp-1" is not selected by `app-.*`.
        let other = ClientSelector {
            client_id: "xapp-1".into(),
            client_software_name: "java".into(),
            ..Default::default()
        };
        let r = requested(&subs, &other);
        assert_eq!(r.metrics, vec![String::new()], "`*` asks for everything");
        assert_eq!(r.interval_ms, 1000);
        let r = requested(&[], &other);
        assert!(r.metrics.is_empty());
        assert_eq!(r.interval_ms, DEFAULT_INTERVAL_MS);
    }
}
