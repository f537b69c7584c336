//! Cluster and quorum descriptions: DescribeCluster (brokers with their fencing state and
//! racks, or the controllers) and DescribeQuorum (the KRaft metadata quorum, KIP-595), as
//! `kafka-cluster` / `kafka-metadata-quorum describe` show them.

use std::time::Duration;

use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{DescribeClusterRequest, DescribeQuorumRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::client::{Client, Target};
use crate::error::{check_code, Result};

/// One node of a DescribeCluster answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// `node.id`.
    pub id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// Whether the controller has fenced it (DescribeCluster v2+).
    pub fenced: bool,
}

/// A DescribeCluster answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    /// The cluster id.
    pub cluster_id: String,
    /// The controller id as the broker reports it.
    pub controller_id: i32,
    /// The nodes.
    pub nodes: Vec<ClusterNode>,
}

/// One replica of the metadata quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumReplica {
    /// `node.id`.
    pub id: i32,
    /// Its log end offset as the leader knows it.
    pub log_end_offset: i64,
    /// When it last fetched from the leader (ms since the epoch, -1 if unknown).
    pub last_fetch_timestamp: i64,
    /// When it was last caught up with the leader (ms since the epoch, -1 if unknown).
    pub last_caught_up_timestamp: i64,
}

/// A DescribeQuorum answer for `__cluster_metadata-0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumDescription {
    /// The active controller.
    pub leader_id: i32,
    /// Its epoch.
    pub leader_epoch: i32,
    /// The quorum's high watermark.
    pub high_watermark: i64,
    /// The voters.
    pub voters: Vec<QuorumReplica>,
    /// The observers (brokers).
    pub observers: Vec<QuorumReplica>,
}

impl Client {
    /// DescribeCluster: the brokers (with fenced ones when `include_fenced`), or with
    /// `controllers` the controller quorum's nodes.
    pub async fn describe_cluster(
        &mut self,
        include_fenced: bool,
        controllers: bool,
    ) -> Result<ClusterDescription> {
        let resp = self
            .send_to(Target::Any, None, Duration::ZERO, |v| {
                let mut r = DescribeClusterRequest::default();
                if v >= 1 {
                    r = r.with_endpoint_type(if controllers { 2 } else { 1 });
                }
                if v >= 2 {
                    r = r.with_include_fenced_brokers(include_fenced);
                }
                r
            })
            .await?;
        check_code(resp.error_code, resp.error_message.as_deref(), || {
            "DescribeCluster".into()
        })?;
        Ok(ClusterDescription {
            cluster_id: resp.cluster_id.to_string(),
            controller_id: resp.controller_id.0,
            nodes: resp
                .brokers
                .iter()
                .map(|b| ClusterNode {
                    id: b.broker_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.as_ref().map(|r| r.to_string()),
                    fenced: b.is_fenced,
                })
                .collect(),
        })
    }

    /// DescribeQuorum for the metadata partition (brokers forward it to the controller).
    pub async fn describe_quorum(&mut self) -> Result<QuorumDescription> {
        let req = |_v: i16| {
            DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
                .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
                .with_partitions(vec![PartitionData::default().with_partition_index(0)])])
        };
        let resp = self
            .send_to(Target::Controller, None, Duration::ZERO, req)
            .await?;
        check_code(resp.error_code, resp.error_message.as_deref(), || {
            "DescribeQuorum".into()
        })?;
        let p = resp
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| crate::error::Error::UnexpectedResponse {
                addr: String::new(),
                reason: "DescribeQuorum answer has no partition".into(),
            })?;
        check_code(p.error_code, p.error_message.as_deref(), || {
            "DescribeQuorum __cluster_metadata-0".into()
        })?;
        let replicas =
            |v: &[kafka_protocol::messages::describe_quorum_response::ReplicaState]| {
                v.iter()
                    .map(|r| QuorumReplica {
                        id: r.replica_id.0,
                        log_end_offset: r.log_end_offset,
                        last_fetch_timestamp: r.last_fetch_timestamp,
                        last_caught_up_timestamp: r.last_caught_up_timestamp,
                    })
                    .collect()
            };
        Ok(QuorumDescription {
            leader_id: p.leader_id.0,
            leader_epoch: p.leader_epoch,
            high_watermark: p.high_watermark,
            voters: replicas(&p.current_voters),
            observers: replicas(&p.observers),
        })
    }
}
