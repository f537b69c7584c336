//! The one declaration of every API this node serves (Kafka's `ApiKeys` plus the
//! `ApiVersionManager`, Redpanda's typed handler list): its key, version range, the listeners
//! it is served on, whether a broker forwards it to the active controller, and its handler.
//! ApiVersions answers, routing, forwarding and the README's API table all come from
//! [`APIS`]; adding an API means adding one entry here (and its handler module).

use std::sync::Arc;

use kafka_protocol::messages::ApiKey;

use super::{
    acls, add_offsets_to_txn, add_partitions_to_txn, alter_configs, api_versions, client_quotas,
    consumer_group_describe, consumer_group_heartbeat, controller_apis, create_partitions,
    create_topics, delete_records, delete_topics, describe_cluster, describe_configs,
    describe_log_dirs, describe_producers, describe_quorum, describe_topic_partitions,
    describe_transactions, elect_leaders, end_txn, envelope, fetch, find_coordinator, groups,
    init_producer_id, list_offsets, list_transactions, metadata, offset_for_leader_epoch, produce,
    sasl, scram_credentials, telemetry, txn_offset_commit, unregister_broker, update_features,
    write_txn_markers, BoxFuture, HandlerResult, ListenerKind, Request,
};
use crate::controller_requests;
use crate::Broker;

/// A handler: takes the broker and the request, answers (possibly later).
pub type HandlerFn = fn(Arc<Broker>, Request) -> BoxFuture<HandlerResult>;

/// Who answers an API.
#[derive(Clone, Copy)]
pub enum Handler {
    /// A handler module of this crate.
    Local(HandlerFn),
    /// The KRaft shell (`nagare_raft_manager::RaftManager::handle`): the quorum RPCs, served on
    /// the controller listener from the first moment of startup.
    Quorum,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Handler::Local(_) => f.write_str("Local"),
            Handler::Quorum => f.write_str("Quorum"),
        }
    }
}

/// The listeners an API is served on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listeners {
    /// Client (broker) listeners.
    pub client: bool,
    /// The `CONTROLLER` listener.
    pub controller: bool,
}

/// Served to clients only.
pub const CLIENT: Listeners = Listeners {
    client: true,
    controller: false,
};
/// Served on the controller listener only.
pub const CONTROLLER: Listeners = Listeners {
    client: false,
    controller: true,
};
/// Served on both.
pub const BOTH: Listeners = Listeners {
    client: true,
    controller: true,
};

impl Listeners {
    /// Whether `kind` serves the API.
    pub fn includes(self, kind: ListenerKind) -> bool {
        match kind {
            ListenerKind::Broker => self.client,
            ListenerKind::Controller => self.controller,
        }
    }
}

/// One API's declaration.
#[derive(Debug)]
pub struct ApiSpec {
    /// The API key.
    pub key: ApiKey,
    /// Lowest and highest version served.
    pub versions: (i16, i16),
    /// Where it is served.
    pub listeners: Listeners,
    /// On a client listener of a node that is not the active controller, the request is
    /// forwarded to the active controller in an Envelope (KIP-590) and its answer relayed.
    pub forwarded: bool,
    /// Who answers.
    pub handler: Handler,
    /// One line for the README's API table.
    pub doc: &'static str,
}

impl ApiSpec {
    /// Whether `version` is in the served range.
    pub fn supports(&self, version: i16) -> bool {
        (self.versions.0..=self.versions.1).contains(&version)
    }
}

// Adapters from the handler modules' functions (sync or async, taking `&Arc<Broker>`) to
// `HandlerFn`.
macro_rules! handler {
    (sync $name:ident => $f:path) => {
        fn $name(b: Arc<Broker>, r: Request) -> BoxFuture<HandlerResult> {
            Box::pin(async move { $f(&b, r) })
        }
    };
    (async $name:ident => $f:path) => {
        fn $name(b: Arc<Broker>, r: Request) -> BoxFuture<HandlerResult> {
            Box::pin(async move { $f(&b, r).await })
        }
    };
    (group $name:ident => $key:expr) => {
        fn $name(b: Arc<Broker>, r: Request) -> BoxFuture<HandlerResult> {
            Box::pin(async move { groups::handle(&b, $key, r).await })
        }
    };
    (controller $name:ident => $key:expr) => {
        fn $name(b: Arc<Broker>, r: Request) -> BoxFuture<HandlerResult> {
            Box::pin(async move { controller_apis::dispatch(&b, $key, r).await })
        }
    };
}

handler!(async h_produce => produce::handle);
handler!(sync h_fetch => fetch::handle);
handler!(sync h_list_offsets => list_offsets::handle);
handler!(async h_metadata => metadata::handle);
handler!(sync h_api_versions => api_versions::handle);
handler!(async h_create_topics => create_topics::handle);
handler!(async h_create_acls => acls::handle_create);
handler!(sync h_describe_acls => acls::handle_describe);
handler!(async h_delete_acls => acls::handle_delete);
handler!(async h_delete_topics => delete_topics::handle);
handler!(sync h_delete_records => delete_records::handle);
handler!(async h_init_producer_id => init_producer_id::handle);
handler!(async h_write_txn_markers => write_txn_markers::handle);
handler!(async h_txn_offset_commit => txn_offset_commit::handle);
handler!(sync h_offset_for_leader_epoch => offset_for_leader_epoch::handle);
handler!(sync h_describe_configs => describe_configs::handle);
handler!(async h_alter_configs => alter_configs::handle_alter);
handler!(async h_create_partitions => create_partitions::handle);
handler!(async h_incremental_alter_configs => alter_configs::handle_incremental);
handler!(async h_elect_leaders => elect_leaders::handle);
handler!(sync h_describe_cluster => describe_cluster::handle);
handler!(sync h_describe_log_dirs => describe_log_dirs::handle);
handler!(async h_update_features => update_features::handle);
handler!(async h_unregister_broker => unregister_broker::handle);
handler!(sync h_describe_topic_partitions => describe_topic_partitions::handle);
handler!(async h_find_coordinator => find_coordinator::handle);
handler!(group h_join_group => ApiKey::JoinGroup);
handler!(group h_sync_group => ApiKey::SyncGroup);
handler!(group h_heartbeat => ApiKey::Heartbeat);
handler!(group h_leave_group => ApiKey::LeaveGroup);
handler!(group h_offset_commit => ApiKey::OffsetCommit);
handler!(group h_offset_fetch => ApiKey::OffsetFetch);
handler!(group h_describe_groups => ApiKey::DescribeGroups);
handler!(group h_list_groups => ApiKey::ListGroups);
handler!(group h_delete_groups => ApiKey::DeleteGroups);
handler!(group h_offset_delete => ApiKey::OffsetDelete);
handler!(async h_consumer_group_heartbeat => consumer_group_heartbeat::handle);
handler!(async h_consumer_group_describe => consumer_group_describe::handle);
handler!(sync h_describe_quorum => describe_quorum::handle);
handler!(sync h_describe_producers => describe_producers::handle);
handler!(controller h_broker_registration => ApiKey::BrokerRegistration);
handler!(controller h_broker_heartbeat => ApiKey::BrokerHeartbeat);
handler!(controller h_allocate_producer_ids => ApiKey::AllocateProducerIds);
handler!(controller h_alter_partition => ApiKey::AlterPartition);
handler!(async h_envelope => envelope::handle);
handler!(async h_add_partitions_to_txn => add_partitions_to_txn::handle);
handler!(async h_add_offsets_to_txn => add_offsets_to_txn::handle);
handler!(async h_end_txn => end_txn::handle);
handler!(async h_describe_transactions => describe_transactions::handle);
handler!(async h_list_transactions => list_transactions::handle);
handler!(sync h_describe_client_quotas => client_quotas::handle_describe);
handler!(async h_alter_client_quotas => client_quotas::handle_alter);
handler!(sync h_sasl_handshake => sasl::handle_handshake);
handler!(sync h_sasl_authenticate => sasl::handle_authenticate);
handler!(sync h_describe_user_scram_credentials => scram_credentials::handle_describe);
handler!(async h_alter_user_scram_credentials => scram_credentials::handle_alter);
handler!(sync h_get_telemetry_subscriptions => telemetry::handle_get);
handler!(sync h_push_telemetry => telemetry::handle_push);

const fn local(
    key: ApiKey,
    versions: (i16, i16),
    listeners: Listeners,
    forwarded: bool,
    f: HandlerFn,
    doc: &'static str,
) -> ApiSpec {
    ApiSpec {
        key,
        versions,
        listeners,
        forwarded,
        handler: Handler::Local(f),
        doc,
    }
}

const fn quorum(key: ApiKey, versions: (i16, i16), doc: &'static str) -> ApiSpec {
    ApiSpec {
        key,
        versions,
        listeners: CONTROLLER,
        forwarded: false,
        handler: Handler::Quorum,
        doc,
    }
}

/// Every API this node serves. A key may appear twice, once per listener, when the two
/// listeners serve it differently (Fetch: consumers and followers on client listeners, the
/// metadata quorum on the controller listener).
#[rustfmt::skip]
pub static APIS: &[ApiSpec] = &[
    local(ApiKey::Produce, produce::VERSIONS, CLIENT, false, h_produce,
        "appends record batches (acks 0, 1, all; idempotent and transactional producers)"),
    local(ApiKey::Fetch, fetch::VERSIONS, CLIENT, false, h_fetch,
        "consumers (read_committed up to the LSO with aborted transactions) and follower replicas; KIP-227 sessions, KIP-392 follower reads, zero-copy"),
    local(ApiKey::ListOffsets, list_offsets::VERSIONS, CLIENT, false, h_list_offsets,
        "earliest, latest (the LSO under read_committed), max timestamp, by timestamp"),
    local(ApiKey::Metadata, metadata::VERSIONS, CLIENT, false, h_metadata,
        "brokers, topics, partitions; topic auto-creation"),
    local(ApiKey::OffsetCommit, groups::OFFSET_COMMIT, CLIENT, false, h_offset_commit,
        "group offsets, stored in `__consumer_offsets`"),
    local(ApiKey::OffsetFetch, groups::OFFSET_FETCH, CLIENT, false, h_offset_fetch,
        "committed offsets (with metadata strings); several groups per request from v8"),
    local(ApiKey::FindCoordinator, find_coordinator::VERSIONS, CLIENT, false, h_find_coordinator,
        "group and transaction coordinators (creates `__consumer_offsets` / `__transaction_state` on first use)"),
    local(ApiKey::JoinGroup, groups::JOIN_GROUP, CLIENT, false, h_join_group,
        "classic group protocol (KIP-394 member ids, KIP-345 static membership)"),
    local(ApiKey::Heartbeat, groups::HEARTBEAT, CLIENT, false, h_heartbeat,
        "classic group protocol"),
    local(ApiKey::LeaveGroup, groups::LEAVE_GROUP, CLIENT, false, h_leave_group,
        "classic group protocol"),
    local(ApiKey::SyncGroup, groups::SYNC_GROUP, CLIENT, false, h_sync_group,
        "classic group protocol"),
    local(ApiKey::DescribeGroups, groups::DESCRIBE_GROUPS, CLIENT, false, h_describe_groups,
        "group state, members, assignments"),
    local(ApiKey::ListGroups, groups::LIST_GROUPS, CLIENT, false, h_list_groups,
        "groups with state and type filters"),
    local(ApiKey::ApiVersions, api_versions::VERSIONS, BOTH, false, h_api_versions,
        "built from this table; newer versions get the KIP-511 v0 fallback; v3+ client software name kept, supported and finalized features (`metadata.version`, `transaction.version`)"),
    local(ApiKey::CreateTopics, create_topics::VERSIONS, BOTH, true, h_create_topics,
        "forwarded to the active controller"),
    local(ApiKey::DeleteTopics, delete_topics::VERSIONS, BOTH, true, h_delete_topics,
        "forwarded to the active controller"),
    local(ApiKey::DeleteRecords, delete_records::VERSIONS, CLIENT, false, h_delete_records,
        "moves the log start offset"),
    local(ApiKey::InitProducerId, init_producer_id::VERSIONS, CLIENT, false, h_init_producer_id,
        "idempotent producers (always a new id, as Kafka); transactional ids via the transaction coordinator (epoch bump, fencing, KIP-360)"),
    local(ApiKey::OffsetForLeaderEpoch, offset_for_leader_epoch::VERSIONS, CLIENT, false,
        h_offset_for_leader_epoch, "KIP-101/279 truncation"),
    local(ApiKey::WriteTxnMarkers, write_txn_markers::VERSIONS, CLIENT, false, h_write_txn_markers,
        "transaction markers from the transaction coordinator (CLUSTER_ACTION); completes pending offsets on `__consumer_offsets`"),
    local(ApiKey::TxnOffsetCommit, txn_offset_commit::VERSIONS, CLIENT, false, h_txn_offset_commit,
        "offsets committed in a transaction, visible once it commits (KIP-98, KIP-447)"),
    local(ApiKey::DescribeConfigs, describe_configs::VERSIONS, CLIENT, false, h_describe_configs,
        "topic and broker configs: every key, with type, source, synonyms and docs"),
    local(ApiKey::AlterConfigs, alter_configs::ALTER_VERSIONS, BOTH, true, h_alter_configs,
        "forwarded to the active controller"),
    local(ApiKey::CreatePartitions, create_partitions::VERSIONS, BOTH, true, h_create_partitions,
        "forwarded to the active controller"),
    local(ApiKey::DeleteGroups, groups::DELETE_GROUPS, CLIENT, false, h_delete_groups,
        "empty groups and their offsets"),
    local(ApiKey::UpdateFeatures, update_features::VERSIONS, BOTH, true, h_update_features,
        "finalizes `metadata.version` (upgrades only) and `transaction.version`; forwarded to the active controller"),
    local(ApiKey::UnregisterBroker, unregister_broker::VERSIONS, BOTH, true, h_unregister_broker,
        "removes a (decommissioned) broker's registration: it leaves every ISR, its partitions elect new leaders; forwarded to the active controller"),
    local(ApiKey::ElectLeaders, elect_leaders::VERSIONS, BOTH, true, h_elect_leaders,
        "preferred and unclean elections; forwarded to the active controller"),
    local(ApiKey::IncrementalAlterConfigs, alter_configs::INCREMENTAL_VERSIONS, BOTH, true,
        h_incremental_alter_configs, "forwarded to the active controller"),
    local(ApiKey::OffsetDelete, groups::OFFSET_DELETE, CLIENT, false, h_offset_delete,
        "a group's offsets for some partitions"),
    local(ApiKey::AddPartitionsToTxn, add_partitions_to_txn::VERSIONS, CLIENT, false, h_add_partitions_to_txn,
        "v0–3 from producers; v4+ batched verification from partition leaders (KIP-890)"),
    local(ApiKey::AddOffsetsToTxn, add_offsets_to_txn::VERSIONS, CLIENT, false, h_add_offsets_to_txn,
        "adds a group's `__consumer_offsets` partition to a transaction"),
    local(ApiKey::EndTxn, end_txn::VERSIONS, CLIENT, false, h_end_txn,
        "commit/abort; markers written by the coordinator's marker sender; v5+ runs transaction version 2 (epoch bump per transaction, KIP-890 part 2)"),
    local(ApiKey::DescribeTransactions, describe_transactions::VERSIONS, CLIENT, false, h_describe_transactions,
        "KIP-664"),
    local(ApiKey::ListTransactions, list_transactions::VERSIONS, CLIENT, false, h_list_transactions,
        "KIP-664; KIP-994 duration filter; KIP-1152 transactional-id pattern"),
    local(ApiKey::DescribeAcls, acls::VERSIONS, CLIENT, false, h_describe_acls,
        "StandardAuthorizer ACLs, from this node's metadata image; ANY/MATCH filters"),
    local(ApiKey::CreateAcls, acls::VERSIONS, BOTH, true, h_create_acls,
        "AccessControlEntry records written by the active controller; forwarded to it"),
    local(ApiKey::DeleteAcls, acls::VERSIONS, BOTH, true, h_delete_acls,
        "RemoveAccessControlEntry records for every ACL a filter matches; forwarded to the active controller"),
    local(ApiKey::DescribeCluster, describe_cluster::VERSIONS, CLIENT, false, h_describe_cluster,
        "brokers, controller id, cluster id"),
    local(ApiKey::DescribeLogDirs, describe_log_dirs::VERSIONS, CLIENT, false, h_describe_log_dirs,
        "partition sizes in the log dir; v4 total and usable bytes"),
    local(ApiKey::DescribeTopicPartitions, describe_topic_partitions::VERSIONS, CLIENT, false,
        h_describe_topic_partitions, "KIP-966 paginated topic describe (Kafka 4 admin clients), sorted, with a cursor"),
    local(ApiKey::DescribeQuorum, describe_quorum::VERSIONS, CLIENT, true, h_describe_quorum,
        "forwarded to the active controller"),
    local(ApiKey::ConsumerGroupHeartbeat, consumer_group_heartbeat::VERSIONS, CLIENT, false,
        h_consumer_group_heartbeat, "KIP-848 `group.protocol=consumer`: server-side `uniform`/`range` assignment, incremental reconciliation, static members"),
    local(ApiKey::ConsumerGroupDescribe, consumer_group_describe::VERSIONS, CLIENT, false,
        h_consumer_group_describe, "KIP-848 consumer groups"),
    local(ApiKey::DescribeProducers, describe_producers::VERSIONS, CLIENT, false,
        h_describe_producers, "KIP-664 producer states of a partition (any replica hosting it)"),
    local(ApiKey::DescribeClientQuotas, client_quotas::DESCRIBE_VERSIONS, CLIENT, false,
        h_describe_client_quotas, "KIP-546 client quotas from the metadata image (exact / default / any matches, strict)"),
    local(ApiKey::AlterClientQuotas, client_quotas::ALTER_VERSIONS, BOTH, true,
        h_alter_client_quotas, "forwarded to the active controller; written as ClientQuotaRecords"),
    local(ApiKey::SaslHandshake, sasl::HANDSHAKE_VERSIONS, BOTH, false, h_sasl_handshake,
        "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER per `sasl.enabled.mechanisms`; v0 raw tokens; re-authentication (KIP-368)"),
    local(ApiKey::SaslAuthenticate, sasl::AUTHENTICATE_VERSIONS, BOTH, false, h_sasl_authenticate,
        "failed logins delayed by `connection.failed.authentication.delay.ms`, then closed; `session_lifetime_ms` from `connections.max.reauth.ms` (capped by an OAUTHBEARER token's `exp`)"),
    local(ApiKey::DescribeUserScramCredentials, scram_credentials::DESCRIBE_VERSIONS, BOTH, false,
        h_describe_user_scram_credentials, "mechanisms and iterations from the metadata image (KIP-554)"),
    local(ApiKey::AlterUserScramCredentials, scram_credentials::ALTER_VERSIONS, BOTH, true,
        h_alter_user_scram_credentials, "forwarded to the active controller; credentials in the metadata log (KIP-554)"),
    local(ApiKey::GetTelemetrySubscriptions, telemetry::GET_VERSIONS, CLIENT, false,
        h_get_telemetry_subscriptions, "KIP-714: client instance ids, the CLIENT_METRICS subscriptions matching the client, throttled to its push interval"),
    local(ApiKey::PushTelemetry, telemetry::PUSH_VERSIONS, CLIENT, false, h_push_telemetry,
        "KIP-714: OTLP metrics (none/gzip/lz4/zstd) decoded and re-exported per client on `/metrics`; UNKNOWN_SUBSCRIPTION_ID, THROTTLING_QUOTA_EXCEEDED, TELEMETRY_TOO_LARGE as Kafka"),
    // Brokers → active controller.
    local(ApiKey::BrokerRegistration, controller_requests::BROKER_REGISTRATION_VERSIONS, CONTROLLER, false, h_broker_registration,
        "broker registration (KIP-631)"),
    local(ApiKey::BrokerHeartbeat, controller_requests::BROKER_HEARTBEAT_VERSIONS, CONTROLLER, false, h_broker_heartbeat,
        "broker liveness, fencing, controlled shutdown"),
    local(ApiKey::AllocateProducerIds, controller_requests::ALLOCATE_PRODUCER_IDS_VERSIONS, CONTROLLER, false, h_allocate_producer_ids,
        "producer-id blocks for idempotent producers"),
    local(ApiKey::AlterPartition, controller_requests::ALTER_PARTITION_VERSIONS, CONTROLLER, false, h_alter_partition,
        "ISR changes proposed by partition leaders"),
    local(ApiKey::Envelope, envelope::VERSIONS, CONTROLLER, false, h_envelope,
        "requests forwarded by brokers with their client's principal (KIP-590)"),
    // The metadata quorum (KIP-595, KIP-630), answered by the KRaft shell.
    quorum(ApiKey::Vote, (0, 2), "KRaft elections (KIP-996 pre-vote)"),
    quorum(ApiKey::BeginQuorumEpoch, (0, 1), "KRaft"),
    quorum(ApiKey::EndQuorumEpoch, (0, 1), "KRaft"),
    quorum(ApiKey::Fetch, (12, 17), "KRaft replication of `__cluster_metadata`"),
    quorum(ApiKey::FetchSnapshot, (0, 1), "KRaft snapshots (KIP-630)"),
    quorum(ApiKey::DescribeQuorum, (0, 2), "KRaft quorum state"),
];

/// The declaration of `key` on a listener of `kind`, if it is served there.
pub fn spec(kind: ListenerKind, key: ApiKey) -> Option<&'static ApiSpec> {
    APIS.iter()
        .find(|s| s.key == key && s.listeners.includes(kind))
}

/// The declaration of the raw `api_key` on a listener of `kind`.
pub fn spec_for_code(kind: ListenerKind, api_key: i16) -> Option<&'static ApiSpec> {
    let key = ApiKey::try_from(api_key).ok()?;
    spec(kind, key)
}

/// `(key, min, max)` for every API a listener of `kind` serves, in key order (ApiVersions).
pub fn apis_for(kind: ListenerKind) -> Vec<(ApiKey, i16, i16)> {
    let mut v: Vec<(ApiKey, i16, i16)> = APIS
        .iter()
        .filter(|s| s.listeners.includes(kind))
        .map(|s| (s.key, s.versions.0, s.versions.1))
        .collect();
    v.sort_by_key(|(k, _, _)| *k as i16);
    v
}

/// The README's table of APIs, generated from [`APIS`].
pub fn markdown_table() -> String {
    let mut rows: Vec<&ApiSpec> = APIS.iter().collect();
    rows.sort_by_key(|s| (s.key as i16, s.listeners.controller));
    let mut out =
        String::from("| key | API | versions | listeners | notes |\n|---|---|---|---|---|\n");
    for s in rows {
        let listeners = match (s.listeners.client, s.listeners.controller) {
            (true, true) => "client, controller",
            (true, false) => "client",
            (false, true) => "controller",
            (false, false) => "-",
        };
        out.push_str(&format!(
            "| {} | {:?} | {}–{} | {} | {} |\n",
            s.key as i16, s.key, s.versions.0, s.versions.1, listeners, s.doc
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_declaration_per_key_and_listener() {
        for kind in [ListenerKind::Broker, ListenerKind::Controller] {
            let mut seen = std::collections::HashSet::new();
            for s in APIS.iter().filter(|s| s.listeners.includes(kind)) {
                assert!(
                    seen.insert(s.key),
                    "{:?} declared twice for {kind:?}",
                    s.key
                );
                assert!(s.versions.0 <= s.versions.1, "{:?}", s.key);
            }
        }
    }

    #[test]
    fn forwarded_apis_are_also_served_by_the_controller() {
        for s in APIS.iter().filter(|s| s.forwarded) {
            assert!(
                spec(ListenerKind::Controller, s.key).is_some(),
                "{:?} is forwarded but the controller listener does not serve it",
                s.key
            );
        }
    }

    #[test]
    fn quorum_apis_match_the_raft_shell() {
        for (key, min, max) in nagare_raft_manager::SUPPORTED {
            let s = spec(ListenerKind::Controller, *key).expect("quorum API declared");
            assert!(matches!(s.handler, Handler::Quorum));
            assert_eq!(s.versions, (*min, *max), "{key:?}");
        }
    }

    /// The README's API table is generated from the declarations;
    /// `NAGARE_UPDATE_README=1 cargo test -p nagare-broker readme_api_table` rewrites it.
    #[test]
    fn readme_api_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
        let readme = std::fs::read_to_string(path).expect("README.md");
        let (start, end) = ("<!-- api-table:start -->\n", "<!-- api-table:end -->");
        let (Some(a), Some(b)) = (readme.find(start), readme.find(end)) else {
            panic!("README.md lacks the {start:?} / {end:?} markers");
        };
        let current = &readme[a + start.len()..b];
        let generated = markdown_table();
        if current != generated {
            if std::env::var_os("NAGARE_UPDATE_README").is_some() {
                let updated = format!(
                    "{}{}{}",
                    &readme[..a + start.len()],
                    generated,
                    &readme[b..]
                );
                std::fs::write(path, updated).expect("write README.md");
            } else {
                panic!(
                    "README.md's API table is out of date; run \
                     NAGARE_UPDATE_README=1 cargo test -p nagare-broker readme_api_table"
                );
            }
        }
    }
}
