//! Local partition sizes of one broker (DescribeLogDirs).

use std::time::Duration;

use kafka_protocol::messages::DescribeLogDirsRequest;

use super::{Client, Target};
use crate::error::Result;

impl Client {
    /// The local size in bytes of each partition of `topic` on broker `node`, summed over
    /// its log directories (DescribeLogDirs; with tiered storage, KIP-405, the local tail
    /// only). Partitions the broker does not host are absent.
    pub async fn local_partition_sizes(
        &mut self,
        node: i32,
        topic: &str,
    ) -> Result<Vec<(i32, i64)>> {
        if !self.brokers.contains_key(&node) {
            self.metadata(Some(&[])).await?;
        }
        let resp = self
            .send_to(Target::Node(node), None, Duration::ZERO, |_| {
                let mut req = DescribeLogDirsRequest::default();
                // Null topics: every partition; the answer is filtered below.
                req.topics = None;
                req
            })
            .await?;
        let mut out: Vec<(i32, i64)> = Vec::new();
        for dir in &resp.results {
            for t in dir.topics.iter().filter(|t| t.name.0.as_str() == topic) {
                for p in &t.partitions {
                    match out.iter_mut().find(|(i, _)| *i == p.partition_index) {
                        Some(e) => e.1 += p.partition_size,
                        None => out.push((p.partition_index, p.partition_size)),
                    }
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }
}
