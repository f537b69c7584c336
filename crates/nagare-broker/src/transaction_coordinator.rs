//! The transaction coordinator of this broker: the [coordinator runtime](crate::coordinator_runtime)
//! over the transaction shards of `nagare-transaction-coordinator` (Kafka's
//! `TransactionCoordinator` and `TransactionStateManager`), for the partitions of
//! `__transaction_state` this broker leads. The runtime loads, serialises, writes, waits for
//! the high watermark, unloads and ticks; this wrapper adds what is transaction-specific:
//!
//! - the shards' side effects — markers to write once a PrepareCommit/PrepareAbort record is
//!   committed — go to the [marker sender](crate::marker_sender), tagged with the shard's
//!   partition and leader epoch (Kafka's `coordinatorEpoch`);
//! - when a transaction's markers are all written the sender's report becomes a
//!   [`TxnRequest::MarkersWritten`] on the owning shard, which writes CompleteCommit or
//!   CompleteAbort (Kafka's `TransactionMarkerChannelManager.tryAppendToLog`, retried while
//!   the write times out and the shard is still ours);
//! - a tick task drives the shards' timers (timed-out transactions, expired ids).

use std::sync::{Arc, Weak};
use std::time::Duration;

use nagare_coordinator::RequestContext;
use nagare_metadata::{MetadataDelta, MetadataImage};
use nagare_transaction_coordinator::{TxnMarkerRequest, TxnRequest, TxnResponse};

use crate::config::BrokerConfig;
use crate::coordinator_runtime::{CoordinatorRuntime, COORDINATOR_NOT_AVAILABLE};
use crate::marker_sender::{Completed, MarkerSender, MarkerSink};
use crate::replica_manager::ReplicaManager;
use crate::txn_verification::TxnVerifier;
use crate::Broker;

pub use nagare_transaction_coordinator::{
    TransactionCoordinatorConfig, TransactionCoordinatorShard, TRANSACTION_STATE_TOPIC,
};

/// How long a write to `__transaction_state` may wait for the high watermark before
/// COORDINATOR_NOT_AVAILABLE: Kafka's transaction coordinator appends with the broker's
/// `request.timeout.ms` (30 s).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Tries of a CompleteCommit/CompleteAbort write that timed out, and the pause between.
const COMPLETE_RETRIES: u32 = 20;
const COMPLETE_RETRY_BACKOFF: Duration = Duration::from_millis(500);

/// A pending answer: resolves once the request's effects are committed.
pub type PendingReply = crate::coordinator_runtime::PendingReply<TxnResponse>;

/// The shards' settings from the broker's (`transaction.*`).
pub fn shard_config(config: &BrokerConfig) -> TransactionCoordinatorConfig {
    TransactionCoordinatorConfig {
        transaction_max_timeout_ms: config.transaction_max_timeout_ms,
        transactional_id_expiration_ms: config.transaction.transactional_id_expiration_ms,
        abort_timed_out_transaction_cleanup_interval_ms: config
            .transaction
            .abort_timed_out_transaction_cleanup_interval_ms,
        remove_expired_transaction_cleanup_interval_ms: config
            .transaction
            .remove_expired_transaction_cleanup_interval_ms,
    }
}

/// The transaction coordinator of this broker.
pub struct TransactionCoordinator {
    runtime: Arc<CoordinatorRuntime<TransactionCoordinatorShard>>,
    markers: Arc<MarkerSender>,
    verifier: Arc<TxnVerifier>,
}

impl TransactionCoordinator {
    /// A coordinator with no shards yet. Call it inside the Tokio runtime that should run
    /// shard loading; [`start`](Self::start) it once the broker exists.
    pub fn new(replicas: Arc<ReplicaManager>, config: TransactionCoordinatorConfig) -> Self {
        TransactionCoordinator {
            runtime: Arc::new(CoordinatorRuntime::new(replicas, config, WRITE_TIMEOUT)),
            markers: Arc::new(MarkerSender::new()),
            verifier: Arc::new(TxnVerifier::new()),
        }
    }

    /// The KIP-890 part 1 verification client partition leaders on this broker use.
    pub fn verifier(&self) -> &Arc<TxnVerifier> {
        &self.verifier
    }

    /// Connects the shards' markers to the marker sender and starts the sender and the tick
    /// task. Both stop when the broker is dropped.
    pub fn start(&self, broker: &Arc<Broker>) {
        let sink: Arc<dyn MarkerSink> = Arc::new(Sink {
            broker: Arc::downgrade(broker),
            runtime: Arc::downgrade(&self.runtime),
        });
        let markers = self.markers.clone();
        let on_complete = sink.clone();
        self.runtime.set_effect_sink(Arc::new(
            move |partition: i32, epoch: i32, effects: Vec<TxnMarkerRequest>| {
                for c in markers.enqueue(partition, epoch, effects) {
                    on_complete.markers_written(c);
                }
            },
        ));
        tokio::spawn(
            self.markers
                .clone()
                .run(Arc::downgrade(broker), sink.clone()),
        );
        // Transaction timeouts and expirations fire at their deadlines.
        tokio::spawn(CoordinatorRuntime::run_timers(Arc::downgrade(
            &self.runtime,
        )));
    }

    /// The runtime the transaction shards run on.
    pub fn runtime(&self) -> &Arc<CoordinatorRuntime<TransactionCoordinatorShard>> {
        &self.runtime
    }

    /// The marker sender.
    pub fn markers(&self) -> &Arc<MarkerSender> {
        &self.markers
    }

    /// Starts loading shards for the `__transaction_state` partitions this node now leads and
    /// unloads the others ([`CoordinatorRuntime::on_image`]); wakes the marker sender, whose
    /// partitions may have new leaders. Call after [`ReplicaManager::apply_delta`] of the
    /// same delta.
    pub fn on_image(&self, delta: &MetadataDelta, image: &MetadataImage, node_id: i32) {
        // The shards write the aborts they start themselves (fencing, timeouts) under the
        // finalized transaction.version (KIP-1022); set before loading new shards.
        self.runtime
            .set_metadata(nagare_metadata::features::transaction_version(
                &image.features,
            ));
        self.runtime.on_image(delta, image, node_id);
        if !delta.partitions.is_empty() || !delta.deleted_topics.is_empty() {
            self.markers.wake();
        }
    }

    /// The `__transaction_state` partition of `transactional_id`, if the topic exists.
    pub fn shard_of(image: &MetadataImage, transactional_id: &str) -> Option<i32> {
        CoordinatorRuntime::<TransactionCoordinatorShard>::shard_of(image, transactional_id)
    }

    /// Handles one request on the shard owning `transactional_id` (COORDINATOR_NOT_AVAILABLE
    /// while `__transaction_state` does not exist, NOT_COORDINATOR if another broker leads
    /// its partition, COORDINATOR_LOAD_IN_PROGRESS while it loads here).
    pub async fn handle(
        &self,
        image: &MetadataImage,
        transactional_id: &str,
        ctx: RequestContext,
        req: TxnRequest,
    ) -> PendingReply {
        self.runtime.handle(image, transactional_id, ctx, req).await
    }

    /// Handles a request on shard `p` (ListTransactions asks each).
    pub async fn handle_on(&self, p: i32, ctx: RequestContext, req: TxnRequest) -> PendingReply {
        self.runtime.handle_on(p, ctx, req).await
    }

    /// Whether the shard of `transactional_id` is loaded here.
    pub fn is_loaded_for(&self, image: &MetadataImage, transactional_id: &str) -> bool {
        Self::shard_of(image, transactional_id)
            .is_some_and(|p| self.runtime.loaded_shards().contains(&p))
    }

    /// Shard numbers loaded here.
    pub fn loaded_shards(&self) -> Vec<i32> {
        self.runtime.loaded_shards()
    }

    /// Shard numbers loaded or being loaded here (ListTransactions asks all of them, so that
    /// a loading one makes the answer COORDINATOR_LOAD_IN_PROGRESS, as in Kafka).
    pub fn owned_shards(&self) -> Vec<i32> {
        self.runtime.owned_shards()
    }
}

/// What the marker sender needs from the coordinator.
struct Sink {
    broker: Weak<Broker>,
    runtime: Weak<CoordinatorRuntime<TransactionCoordinatorShard>>,
}

impl MarkerSink for Sink {
    fn is_current(&self, partition: i32, epoch: i32) -> bool {
        let (Some(broker), Some(runtime)) = (self.broker.upgrade(), self.runtime.upgrade()) else {
            return false;
        };
        if !runtime.loaded_shards().contains(&partition) {
            return false;
        }
        let image = broker.image();
        image
            .topic(TRANSACTION_STATE_TOPIC)
            .and_then(|t| t.partitions.get(&partition))
            .is_some_and(|p| p.leader == broker.config.node_id && p.leader_epoch == epoch)
    }

    fn markers_written(&self, c: Completed) {
        let Some(runtime) = self.runtime.upgrade() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::error!(transactional_id = %c.transactional_id, "no runtime to complete the transaction on");
            return;
        };
        rt.spawn(async move {
            let ctx = RequestContext {
                api_version: 0,
                client_id: "nagare-txn-marker-sender".into(),
                client_host: String::new(),
            };
            for attempt in 0..COMPLETE_RETRIES {
                let req = TxnRequest::MarkersWritten {
                    transactional_id: c.transactional_id.clone(),
                    producer_id: c.producer_id,
                    producer_epoch: c.producer_epoch,
                    commit: c.commit,
                };
                let resp = runtime
                    .handle_on(c.coordinator_partition, ctx.clone(), req)
                    .await
                    .await;
                let code = match resp {
                    TxnResponse::MarkersWritten { error } => error,
                    other => {
                        tracing::error!(?other, "unexpected answer to MarkersWritten");
                        return;
                    }
                };
                // Kafka retries the log append while it times out; any other failure means
                // the shard is gone, and the coordinator that loads it completes the
                // transaction from its Prepare state.
                if code != COORDINATOR_NOT_AVAILABLE {
                    if code != 0 {
                        tracing::info!(transactional_id = %c.transactional_id, code, "transaction not completed here");
                    }
                    return;
                }
                tracing::warn!(transactional_id = %c.transactional_id, attempt, "completing the transaction timed out; retrying");
                tokio::time::sleep(COMPLETE_RETRY_BACKOFF).await;
            }
        });
    }
}

/// The coordinator's view of a request (API version, client id and address).
pub fn request_context(req: &crate::handlers::Request) -> RequestContext {
    RequestContext {
        api_version: req.version(),
        client_id: req.ctx.client_id().to_string(),
        client_host: format!("/{}", req.peer().ip()),
    }
}

/// The transaction version an EndTxn runs under (KIP-890 part 2), Kafka's
/// `TransactionVersion.transactionVersionForEndTxn`: 2 for v5+, else 0. It follows the
/// request version alone: a client sends v5 only once the cluster finalized
/// `transaction.version` 2 (the Java client reads the finalized level from ApiVersions,
/// KIP-1022), and an older request cannot take a bumped epoch back in its response, so
/// the finalized level must not turn it into a transaction version 2 one.
pub fn end_txn_transaction_version(api_version: i16) -> i16 {
    if api_version > 4 {
        2
    } else {
        0
    }
}

/// The transaction version an AddPartitionsToTxn runs under, Kafka's
/// `TransactionVersion.transactionVersionForAddPartitionsToTxn`: 2 for v4+ (sent by
/// partition leaders on behalf of producers), else 0.
pub fn add_partitions_transaction_version(api_version: i16) -> i16 {
    if api_version > 3 {
        2
    } else {
        0
    }
}
