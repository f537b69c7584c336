//! Offsets of a partition by spec (ListOffsets).

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, ListOffsetsRequest};

use super::{duration_ms_i32, topic_name, Client, Target};
use crate::error::{check_code, Error, Result};
use crate::types::OffsetSpec;

impl Client {
    /// Looks up an offset of a partition. For [`OffsetSpec::Timestamp`] the answer is -1 when
    /// no record has a timestamp at or after it.
    pub async fn list_offsets(
        &mut self,
        topic: &str,
        partition: i32,
        spec: OffsetSpec,
    ) -> Result<i64> {
        let mut attempt = 0;
        loop {
            match self.list_offsets_once(topic, partition, spec).await {
                Err(e) if e.is_stale_metadata() && attempt < self.config.retries => {
                    self.invalidate_topic(topic);
                    self.backoff(attempt).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn list_offsets_once(
        &mut self,
        topic: &str,
        partition: i32,
        spec: OffsetSpec,
    ) -> Result<i64> {
        let leader = self.leader_for(topic, partition).await?;
        let key = self.ensure_conn(Target::Node(leader)).await?;
        let conn = self.conn_mut(key)?;
        let version = conn.negotiate(ApiKey::ListOffsets, None)?;
        if spec == OffsetSpec::MaxTimestamp && version < 7 {
            return Err(Error::InvalidArgument(format!(
                "broker {} does not support looking up the max timestamp (ListOffsets v7)",
                conn.addr()
            )));
        }
        let needed = match spec {
            OffsetSpec::EarliestLocal => 8,
            OffsetSpec::LatestTiered => 9,
            _ => 0,
        };
        if version < needed {
            return Err(Error::InvalidArgument(format!(
                "broker {} does not support {spec:?} (ListOffsets v{needed})",
                conn.addr()
            )));
        }
        let mut p = ListOffsetsPartition::default();
        p.partition_index = partition;
        p.timestamp = spec.to_wire();
        let mut t = ListOffsetsTopic::default();
        t.name = topic_name(topic);
        t.partitions = vec![p];
        let mut req = ListOffsetsRequest::default();
        req.replica_id = BrokerId(-1);
        req.isolation_level = 0;
        req.topics = vec![t];
        req.timeout_ms = duration_ms_i32(conn.options().request_timeout);
        let addr = conn.addr().to_owned();
        let result = conn.send_version(&req, version).await;
        if matches!(&result, Err(e) if e.is_transport()) {
            self.drop_conn(key);
        }
        let resp = result?;
        let part = resp
            .topics
            .iter()
            .filter(|t| t.name.0.as_str() == topic)
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == partition)
            .ok_or_else(|| Error::UnexpectedResponse {
                addr,
                reason: format!("ListOffsets response lacks {topic}-{partition}"),
            })?;
        check_code(part.error_code, None, || {
            format!("list offsets of topic '{topic}' partition {partition}")
        })?;
        Ok(part.offset)
    }
}
