//! Produce: one record batch to one partition, retried only when it certainly was not
//! appended.

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest};

use super::{duration_ms_i32, now_ms, topic_name, Client, Target, LAST_VERSION_WITH_TOPIC_NAMES};
use crate::error::{check_code, Error, Result};
use crate::records::{encode_batch, Compression, ProduceRecord};
use crate::types::Acks;

impl Client {
    /// Produces `records` to one partition as a single record batch and returns the offset
    /// the broker assigned to the first one (-1 with [`Acks::None`], which gets no answer).
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        records: Vec<ProduceRecord>,
        acks: Acks,
        compression: Compression,
    ) -> Result<i64> {
        let batch =
            encode_batch(&records, compression, now_ms()).map_err(Error::InvalidArgument)?;
        self.produce_batch(topic, partition, batch, acks).await
    }

    /// Produces an already encoded record batch (v2) to one partition; see [`Client::produce`].
    ///
    /// Retries only when the broker certainly did not append the batch (stale leader, topic not
    /// yet known, connection failed before sending), so a retry cannot duplicate records.
    pub async fn produce_batch(
        &mut self,
        topic: &str,
        partition: i32,
        batch: Bytes,
        acks: Acks,
    ) -> Result<i64> {
        let mut attempt = 0;
        loop {
            match self
                .produce_once(topic, partition, batch.clone(), acks)
                .await
            {
                Err(e)
                    if e.is_stale_metadata()
                        && !matches!(e, Error::Io { .. } | Error::Timeout { .. })
                        && attempt < self.config.retries =>
                {
                    tracing::debug!(error = %e, topic, partition, "produce failed; retrying");
                    self.invalidate_topic(topic);
                    self.backoff(attempt).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn produce_once(
        &mut self,
        topic: &str,
        partition: i32,
        batch: Bytes,
        acks: Acks,
    ) -> Result<i64> {
        let leader = self.leader_for(topic, partition).await?;
        let topic_id = self.topic_id(topic);
        let produce_timeout = self.config.produce_timeout;
        let key = self.ensure_conn(Target::Node(leader)).await?;
        let conn = self.conn_mut(key)?;
        let cap = topic_id.is_nil().then_some(LAST_VERSION_WITH_TOPIC_NAMES);
        let version = conn.negotiate(ApiKey::Produce, cap)?;
        let mut pd = PartitionProduceData::default();
        pd.index = partition;
        pd.records = Some(batch);
        let mut td = TopicProduceData::default();
        td.name = topic_name(topic);
        td.topic_id = topic_id;
        td.partition_data = vec![pd];
        let mut req = ProduceRequest::default();
        req.acks = acks.to_wire();
        req.timeout_ms = duration_ms_i32(produce_timeout);
        req.topic_data = vec![td];
        let addr = conn.addr().to_owned();
        if acks == Acks::None {
            let result = conn.send_no_response(&req, version).await;
            if matches!(&result, Err(e) if e.is_transport()) {
                self.drop_conn(key);
            }
            return result.map(|()| -1);
        }
        let timeout = conn.options().request_timeout + produce_timeout;
        let result = conn.send_version_timeout(&req, version, timeout).await;
        if matches!(&result, Err(e) if e.is_transport()) {
            self.drop_conn(key);
        }
        let resp = result?;
        let part = resp
            .responses
            .iter()
            .filter(|t| {
                t.name.0.as_str() == topic || (!topic_id.is_nil() && t.topic_id == topic_id)
            })
            .flat_map(|t| t.partition_responses.iter())
            .find(|p| p.index == partition)
            .ok_or_else(|| Error::UnexpectedResponse {
                addr,
                reason: format!("Produce response lacks {topic}-{partition}"),
            })?;
        let message = part
            .error_message
            .as_deref()
            .map(str::to_owned)
            .or_else(|| {
                part.record_errors
                    .first()
                    .and_then(|e| e.batch_index_error_message.as_deref().map(str::to_owned))
            });
        check_code(part.error_code, message.as_deref(), || {
            format!("produce to topic '{topic}' partition {partition}")
        })?;
        Ok(part.base_offset)
    }
}
