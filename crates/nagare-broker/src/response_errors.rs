//! The error codes a response carries, counted per API for Kafka's
//! `RequestMetrics,name=ErrorsPerSec` (`kafka_network_requestmetrics_errors_total`). Kafka's
//! `AbstractResponse.errorCounts()` counts every error code in a response, `NONE` included:
//! the top-level code, or each partition's / topic's code where the API reports errors per
//! item. [`ResponseErrors`] is that method for the response types the handlers encode with
//! [`crate::handlers::respond`].

use kafka_protocol::messages::*;

/// Error codes and how often each occurs in one response. The first code is kept inline, so
/// the usual response (one code) costs no allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    first: Option<(i16, u32)>,
    rest: Vec<(i16, u32)>,
}

impl ErrorCounts {
    /// Counts `code` once.
    pub fn add(&mut self, code: i16) {
        match &mut self.first {
            None => self.first = Some((code, 1)),
            Some((c, n)) if *c == code => *n += 1,
            Some(_) => match self.rest.iter_mut().find(|(c, _)| *c == code) {
                Some((_, n)) => *n += 1,
                None => self.rest.push((code, 1)),
            },
        }
    }

    /// Every `(code, count)`.
    pub fn iter(&self) -> impl Iterator<Item = (i16, u32)> + '_ {
        self.first.iter().chain(self.rest.iter()).copied()
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }
}

/// Kafka's `errorCounts()` of a response.
pub trait ResponseErrors {
    /// Adds the response's error codes to `c`.
    fn error_counts(&self, c: &mut ErrorCounts);
}

/// Responses with one top-level error code.
macro_rules! top_level {
    ($($t:ty),* $(,)?) => {$(
        impl ResponseErrors for $t {
            fn error_counts(&self, c: &mut ErrorCounts) {
                c.add(self.error_code);
            }
        }
    )*};
}

/// Responses with an error code per item of a list (`items`), or per item of a list of
/// lists (`outer => inner`).
macro_rules! per_item {
    ($t:ty: $items:ident) => {
        impl ResponseErrors for $t {
            fn error_counts(&self, c: &mut ErrorCounts) {
                for i in &self.$items {
                    c.add(i.error_code);
                }
            }
        }
    };
    ($t:ty: $outer:ident => $inner:ident) => {
        impl ResponseErrors for $t {
            fn error_counts(&self, c: &mut ErrorCounts) {
                for o in &self.$outer {
                    for i in &o.$inner {
                        c.add(i.error_code);
                    }
                }
            }
        }
    };
}

per_item!(DescribeTopicPartitionsResponse: topics);
per_item!(IncrementalAlterConfigsResponse: responses);
per_item!(AlterConfigsResponse: responses);
per_item!(DescribeTransactionsResponse: transaction_states);
per_item!(DescribeGroupsResponse: groups);
per_item!(ConsumerGroupDescribeResponse: groups);
per_item!(DescribeConfigsResponse: results);
per_item!(DeleteGroupsResponse: results);
per_item!(DeleteAclsResponse: filter_results);
per_item!(CreatePartitionsResponse: results);
per_item!(CreateAclsResponse: results);
per_item!(AlterUserScramCredentialsResponse: results);
per_item!(AlterClientQuotasResponse: entries);
per_item!(TxnOffsetCommitResponse: topics => partitions);
per_item!(OffsetForLeaderEpochResponse: topics => partitions);
per_item!(DescribeProducersResponse: topics => partitions);
per_item!(DeleteRecordsResponse: topics => partitions);

impl ResponseErrors for WriteTxnMarkersResponse {
    fn error_counts(&self, c: &mut ErrorCounts) {
        for m in &self.markers {
            for t in &m.topics {
                for p in &t.partitions {
                    c.add(p.error_code);
                }
            }
        }
    }
}

top_level!(
    AddPartitionsToTxnResponse,
    VoteResponse,
    FetchSnapshotResponse,
    EndQuorumEpochResponse,
    BeginQuorumEpochResponse,
    ApiVersionsResponse,
    FindCoordinatorResponse,
    JoinGroupResponse,
    HeartbeatResponse,
    LeaveGroupResponse,
    SyncGroupResponse,
    ListGroupsResponse,
    InitProducerIdResponse,
    AddOffsetsToTxnResponse,
    EndTxnResponse,
    DescribeAclsResponse,
    SaslHandshakeResponse,
    SaslAuthenticateResponse,
    DescribeClusterResponse,
    DescribeLogDirsResponse,
    UpdateFeaturesResponse,
    UnregisterBrokerResponse,
    ElectLeadersResponse,
    OffsetDeleteResponse,
    DescribeClientQuotasResponse,
    DescribeUserScramCredentialsResponse,
    ConsumerGroupHeartbeatResponse,
    ListTransactionsResponse,
    DescribeQuorumResponse,
    BrokerRegistrationResponse,
    BrokerHeartbeatResponse,
    AllocateProducerIdsResponse,
    AlterPartitionResponse,
    EnvelopeResponse,
    GetTelemetrySubscriptionsResponse,
    PushTelemetryResponse,
);

impl ResponseErrors for ProduceResponse {
    fn error_counts(&self, c: &mut ErrorCounts) {
        for t in &self.responses {
            for p in &t.partition_responses {
                c.add(p.error_code);
            }
        }
    }
}

impl ResponseErrors for FetchResponse {
    fn error_counts(&self, c: &mut ErrorCounts) {
        c.add(self.error_code);
        for t in &self.responses {
            for p in &t.partitions {
                c.add(p.error_code);
            }
        }
    }
}

impl ResponseErrors for MetadataResponse {
    fn error_counts(&self, c: &mut ErrorCounts) {
        if self.topics.is_empty() {
            c.add(0);
        }
        for t in &self.topics {
            c.add(t.error_code);
        }
    }
}

impl ResponseErrors for CreateTopicsResponse {
    fn error_counts(&self, c: &mut ErrorCounts) {
        for t in &self.topics {
            c.add(t.error_code);
        }
    }
}

impl ResponseErrors for DeleteTopicsResponse {
    fn error_counts(&self, c: &mut ErrorCounts) {
        for t in &self.responses {
            c.add(t.error_code);
        }
    }
}

impl ResponseErrors for ListOffsetsResponse {
    fn error_counts(&self, c: &mut ErrorCounts) {
        for t in &self.topics {
            for p in &t.partitions {
                c.add(p.error_code);
            }
        }
    }
}

impl ResponseErrors for OffsetCommitResponse {
    fn error_counts(&self, c: &mut ErrorCounts) {
        for t in &self.topics {
            for p in &t.partitions {
                c.add(p.error_code);
            }
        }
    }
}

impl ResponseErrors for OffsetFetchResponse {
    fn error_counts(&self, c: &mut ErrorCounts) {
        if self.groups.is_empty() {
            c.add(self.error_code);
        }
        for g in &self.groups {
            c.add(g.error_code);
        }
    }
}

/// Kafka's name of an error code (`Errors.name()`): `NONE`, `NOT_LEADER_OR_FOLLOWER`, ...;
/// a code Kafka does not define is shown as its number.
pub fn error_name(code: i16) -> String {
    if code == 0 {
        return "NONE".into();
    }
    let Some(e) = kafka_protocol::ResponseError::try_from_code(code) else {
        return code.to_string();
    };
    let camel = format!("{e:?}");
    if camel.contains('(') {
        // kafka-protocol's `Unknown(code)`.
        return code.to_string();
    }
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_code_including_none() {
        let resp = ProduceResponse::default().with_responses(vec![
            produce_response::TopicProduceResponse::default().with_partition_responses(vec![
                produce_response::PartitionProduceResponse::default(),
                produce_response::PartitionProduceResponse::default().with_error_code(6),
                produce_response::PartitionProduceResponse::default().with_error_code(6),
            ]),
        ]);
        let mut c = ErrorCounts::default();
        resp.error_counts(&mut c);
        assert_eq!(c.iter().collect::<Vec<_>>(), vec![(0, 1), (6, 2)]);
        assert_eq!(error_name(0), "NONE");
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(9999), "9999");
    }
}
