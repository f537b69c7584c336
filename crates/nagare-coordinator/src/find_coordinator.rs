//! Which `__consumer_offsets` partition owns a group, and the FindCoordinator answer.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

/// Kafka's `Utils.abs(groupId.hashCode()) % num_partitions`: Java's `String.hashCode` over
/// UTF-16 code units (wrapping `s[0]*31^(n-1) + … + s[n-1]`), with `Utils.abs` mapping
/// `Integer.MIN_VALUE` to 0. Clients and Kafka brokers agree on this placement, so a mixed or
/// migrated cluster finds the same coordinator. `num_partitions` of 0 is treated as 1.
pub fn partition_for(group_id: &str, num_partitions: i32) -> i32 {
    let hash = group_id.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % num_partitions.max(1)
}

/// Where a coordinator lives, or why it cannot be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoordinatorLocation {
    /// The leader of the key's partition.
    Node {
        /// The broker id.
        node_id: i32,
        /// Its advertised host.
        host: String,
        /// Its advertised port.
        port: i32,
    },
    /// An error code, e.g. COORDINATOR_NOT_AVAILABLE while `__consumer_offsets` does not exist
    /// or its partition has no leader.
    Error(i16),
}

/// Builds the FindCoordinator response for `request` at `api_version`: v0–v3 carry one key,
/// v4+ a batch (`coordinator_keys`, KIP-699). `locate(key_type, key)` resolves each key (key
/// type 0 = group, 1 = transaction); key types other than 0 and 1 get INVALID_REQUEST.
pub fn find_coordinator_response(
    request: &FindCoordinatorRequest,
    api_version: i16,
    mut locate: impl FnMut(i8, &str) -> CoordinatorLocation,
) -> FindCoordinatorResponse {
    let mut resolve = |key: &StrBytes| -> Coordinator {
        let loc = if request.key_type == 0 || request.key_type == 1 {
            locate(request.key_type, key.as_str())
        } else {
            CoordinatorLocation::Error(ResponseError::InvalidRequest.code())
        };
        let mut c = Coordinator::default().with_key(key.clone());
        match loc {
            CoordinatorLocation::Node {
                node_id,
                host,
                port,
            } => {
                c.node_id = BrokerId(node_id);
                c.host = StrBytes::from_string(host);
                c.port = port;
            }
            CoordinatorLocation::Error(code) => {
                c.node_id = BrokerId(-1);
                c.host = StrBytes::default();
                c.port = -1;
                c.error_code = code;
            }
        }
        c
    };
    let mut response = FindCoordinatorResponse::default();
    if api_version >= 4 {
        response.coordinators = request.coordinator_keys.iter().map(&mut resolve).collect();
    } else {
        let c = resolve(&request.key);
        response.error_code = c.error_code;
        response.node_id = c.node_id;
        response.host = c.host;
        response.port = c.port;
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_java_string_hash_code() {
        // Values of java.lang.String#hashCode.
        assert_eq!(partition_for("", 50), 0);
        assert_eq!(partition_for("a", 1000), 97);
        assert_eq!(partition_for("hello", i32::MAX), 99_162_322);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE; Utils.abs maps it to 0.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        // A negative hash: "Aa-negative"… use a known one: "zzzzzzzzzz".hashCode() < 0.
        let h = "zzzzzzzzzz"
            .encode_utf16()
            .fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(i32::from(u)));
        assert!(h < 0);
        assert_eq!(partition_for("zzzzzzzzzz", 50), h.abs() % 50);
        // Characters outside the BMP hash as two UTF-16 surrogates, as in Java.
        assert_eq!(
            partition_for("\u{1F600}", i32::MAX),
            0xD83Di32 * 31 + 0xDE00
        );
    }

    #[test]
    fn batched_and_single_key_answers() {
        let req = FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_key(StrBytes::from_static_str("g"))
            .with_coordinator_keys(vec![
                StrBytes::from_static_str("a"),
                StrBytes::from_static_str("b"),
            ]);
        let locate = |_t: i8, k: &str| {
            if k == "b" {
                CoordinatorLocation::Error(ResponseError::CoordinatorNotAvailable.code())
            } else {
                CoordinatorLocation::Node {
                    node_id: 1,
                    host: "h".into(),
                    port: 9092,
                }
            }
        };
        let v4 = find_coordinator_response(&req, 4, locate);
        assert_eq!(v4.coordinators.len(), 2);
        assert_eq!(v4.coordinators[0].node_id, BrokerId(1));
        assert_eq!(
            v4.coordinators[1].error_code,
            ResponseError::CoordinatorNotAvailable.code()
        );
        let v3 = find_coordinator_response(&req, 3, locate);
        assert_eq!(v3.port, 9092);
        let bad = find_coordinator_response(&req.clone().with_key_type(7), 3, locate);
        assert_eq!(bad.error_code, ResponseError::InvalidRequest.code());
    }
}
