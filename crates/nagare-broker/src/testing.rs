//! A broker built in memory for handler tests: no ports, a temporary log dir, and a local
//! single-voter quorum that commits the controller's records at once and publishes them to
//! the broker's image (listeners run inline, so a request that changed metadata is visible
//! to the next one). Requests go through the real pipeline ([`crate::handlers::dispatch`])
//! with a connection context of their own, and answers are decoded back with
//! `kafka-protocol`, so each handler's rules can be tested in milliseconds.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request as KafkaRequest, StrBytes};
use parking_lot::Mutex;

use nagare_controller::cluster_control::{Heartbeat, Registration};
use nagare_controller::shell::{BoxFuture, Quorum};
use nagare_controller::Controller;
use nagare_metadata::MetadataPublisher;
use nagare_protocol::fetch::Chunk;
use nagare_storage::LogManager;

use crate::context::ConnectionContext;
use crate::handlers::{self, ListenerKind};
use crate::network::{Reply, Response};
use crate::replica_manager::now_ms;
use crate::{Broker, BrokerConfig, ReplicaManager};

/// A single-voter quorum that commits every proposal at once.
struct LocalQuorum {
    publisher: Arc<MetadataPublisher>,
    next_offset: Mutex<i64>,
}

impl Quorum for LocalQuorum {
    fn leader_id(&self) -> Option<i32> {
        Some(1)
    }
    fn ready_epoch(&self) -> BoxFuture<'_, Option<i32>> {
        Box::pin(async { Some(1) })
    }
    fn propose(&self, _epoch: i32, records: Vec<Bytes>) -> BoxFuture<'_, Result<i64, String>> {
        Box::pin(async move {
            let mut next = self.next_offset.lock();
            let first = *next;
            self.publisher.apply_committed(
                records
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (first + i as i64, r.as_ref())),
            );
            *next += records.len() as i64;
            Ok(*next - 1)
        })
    }
}

/// What a request produced, as a test sees it.
pub enum Answer<T> {
    /// A decoded response.
    Response(T),
    /// No response (acks=0).
    Nothing,
    /// The connection would be closed.
    Closed,
}

impl<T: std::fmt::Debug> Answer<T> {
    /// The response; panics otherwise.
    pub fn expect(self, what: &str) -> T {
        match self {
            Answer::Response(r) => r,
            Answer::Nothing => panic!("{what}: no response"),
            Answer::Closed => panic!("{what}: connection closed"),
        }
    }
}

/// Node 1, broker and controller, in memory.
pub struct TestBroker {
    /// The broker state handlers run against.
    pub broker: Arc<Broker>,
    /// Its (always active) controller.
    pub controller: Arc<Controller>,
    /// The connection requests are sent on.
    pub connection: Arc<ConnectionContext>,
    correlation: Mutex<i32>,
    _dir: tempfile::TempDir,
}

impl TestBroker {
    /// A registered, unfenced broker with default settings.
    pub async fn start() -> Self {
        Self::build(&[], None).await
    }

    /// A broker whose requests are authorized by `authorizer`.
    pub async fn with_authorizer(authorizer: Arc<dyn crate::authorizer::Authorizer>) -> Self {
        Self::build(&[], Some(authorizer)).await
    }

    /// Like [`TestBroker::start`] with extra `server.properties` settings and, optionally,
    /// an authorizer.
    pub async fn build(
        extra: &[(&str, &str)],
        authorizer: Option<Arc<dyn crate::authorizer::Authorizer>>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut props: BTreeMap<String, String> = BTreeMap::new();
        props.insert("log.dirs".into(), dir.path().display().to_string());
        props.insert("node.id".into(), "1".into());
        for (k, v) in extra {
            props.insert(k.to_string(), v.to_string());
        }
        let (config, _unknown) = BrokerConfig::from_props(props).expect("config");
        let cluster_id = "test-cluster".to_string();
        let publisher = Arc::new(MetadataPublisher::new());
        let quorum = Arc::new(LocalQuorum {
            publisher: publisher.clone(),
            next_offset: Mutex::new(0),
        });
        let controller = Arc::new(Controller::new(
            1,
            cluster_id.clone(),
            quorum,
            publisher.clone(),
            config.quorum.broker_session_timeout_ms,
        ));
        let defaults = config.topic_defaults(&BTreeMap::new());
        let logs = LogManager::open(
            dir.path().to_path_buf(),
            move |_| defaults.log_config(&BTreeMap::new()),
            now_ms(),
        )
        .expect("log manager");
        let replicas = Arc::new(ReplicaManager::open(1, logs));
        // acks=all and coordinator writes wait for the group-commit fsync loop.
        tokio::spawn(replicas.clone().run_group_commit());
        let mut state = Broker::new(
            config,
            cluster_id.clone(),
            Some(controller.clone()),
            publisher.clone(),
            replicas,
        );
        if let Some(a) = authorizer {
            state.authorizer = a;
        }
        // Tiered storage as `server::start` sets it up (the test drives its passes).
        if let Some(rlm) =
            crate::remote_log_manager::RemoteLogManager::from_config(1, &state.config.tiered)
                .expect("tiered storage")
        {
            let _ = state.replicas.remote_log.set(rlm.clone());
            let _ = state.remote_log.set(rlm);
        }
        let broker = Arc::new(state);
        // The channel to the active controller, which is this node: requests go in-process.
        let voters = broker.config.quorum.voters.clone();
        let _ = broker.channel.set(Arc::new(
            crate::controller_channel::ControllerChannel::new(
                voters,
                Arc::new(|| Some(1)),
                1,
                Duration::from_secs(5),
                Duration::from_millis(20),
            )
            .with_local(Arc::downgrade(&broker)),
        ));
        broker.transactions.start(&broker);
        // The group coordinator's timers (session and rebalance timeouts), as `server::start`
        // runs them.
        tokio::spawn(crate::coordinator_runtime::CoordinatorRuntime::run_timers(
            Arc::downgrade(broker.groups.runtime()),
        ));
        let weak = Arc::downgrade(&broker);
        publisher.install(Box::new(move |delta, new| {
            if let Some(b) = weak.upgrade() {
                b.on_image(delta, new);
            }
        }));
        let epoch = controller
            .register_broker(Registration {
                broker_id: 1,
                cluster_id,
                incarnation_id: nagare_metadata::Uuid::from_bytes([1; 16]),
                endpoints: vec![nagare_metadata::records::Endpoint {
                    name: "PLAINTEXT".into(),
                    host: "127.0.0.1".into(),
                    port: 9092,
                    security_protocol: "PLAINTEXT".into(),
                }],
                rack: None,
            })
            .await
            .expect("register");
        controller
            .heartbeat(Heartbeat {
                broker_id: 1,
                broker_epoch: epoch,
                current_metadata_offset: publisher.image().offset,
                want_fence: false,
                want_shut_down: false,
            })
            .await
            .expect("heartbeat");
        let connection = Arc::new(ConnectionContext::new(
            "PLAINTEXT",
            ListenerKind::Broker,
            crate::context::SecurityProtocol::Plaintext,
            None,
            "127.0.0.1:40000".parse().expect("addr"),
        ));
        TestBroker {
            broker,
            controller,
            connection,
            correlation: Mutex::new(0),
            _dir: dir,
        }
    }

    /// The frame (header and body, without the size prefix) of `req` at `version`.
    pub fn frame<R: KafkaRequest>(&self, req: &R, version: i16) -> Bytes {
        let correlation_id = {
            let mut c = self.correlation.lock();
            *c += 1;
            *c
        };
        let key = ApiKey::try_from(R::KEY).expect("known key");
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("test-client")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, key.request_header_version(version))
            .expect("encode header");
        req.encode(&mut buf, version).expect("encode body");
        buf.freeze()
    }

    /// Sends a raw frame through the pipeline and returns the reply, waiting for a deferred
    /// one (at most 10 s).
    pub async fn send_frame(&self, frame: Bytes) -> Option<Option<Response>> {
        self.send_frame_on(&self.connection, frame).await
    }

    /// A new connection on listener `listener_name`, with that listener's security protocol
    /// (e.g. a SASL_PLAINTEXT one, which must authenticate before anything else).
    pub fn connection_on(&self, listener_name: &str) -> Arc<ConnectionContext> {
        Arc::new(ConnectionContext::new(
            listener_name,
            ListenerKind::Broker,
            self.broker.config.security_protocol(listener_name),
            None,
            "127.0.0.1:40001".parse().expect("addr"),
        ))
    }

    /// Sends `req` at `version` on connection `conn` and decodes the answer; `Closed` also
    /// when the connection was asked to close after this answer (failed authentication).
    pub async fn send_on<R: KafkaRequest>(
        &self,
        conn: &Arc<ConnectionContext>,
        req: &R,
        version: i16,
    ) -> Answer<R::Response> {
        match self.send_frame_on(conn, self.frame(req, version)).await {
            None => Answer::Closed,
            Some(None) => Answer::Nothing,
            Some(Some(resp)) => Answer::Response(decode_response::<R>(
                response_bytes(resp).slice(4..),
                version,
            )),
        }
    }

    /// Sends a raw frame on connection `conn` (see [`TestBroker::send_frame`]).
    pub async fn send_frame_on(
        &self,
        conn: &Arc<ConnectionContext>,
        frame: Bytes,
    ) -> Option<Option<Response>> {
        let d = handlers::dispatch(&self.broker, frame, conn, Instant::now()).await;
        match d.reply {
            Reply::Now(r) => Some(Some(r)),
            Reply::Later(f) => Some(Some(
                tokio::time::timeout(Duration::from_secs(10), f)
                    .await
                    .expect("deferred reply within 10 s"),
            )),
            Reply::Nothing => Some(None),
            Reply::Close => None,
        }
    }

    /// Sends `req` at `version` and decodes the answer.
    pub async fn send<R: KafkaRequest>(&self, req: &R, version: i16) -> Answer<R::Response> {
        match self.send_frame(self.frame(req, version)).await {
            None => Answer::Closed,
            Some(None) => Answer::Nothing,
            Some(Some(resp)) => Answer::Response(decode_response::<R>(
                response_bytes(resp).slice(4..),
                version,
            )),
        }
    }

    /// A client connection on the PLAINTEXT listener from `host`, authenticated as
    /// `principal` (as TLS or SASL would have set it).
    pub fn connection_as(
        &self,
        principal: crate::context::KafkaPrincipal,
        host: std::net::IpAddr,
    ) -> Arc<ConnectionContext> {
        let conn = Arc::new(ConnectionContext::new(
            "PLAINTEXT",
            ListenerKind::Broker,
            crate::context::SecurityProtocol::Plaintext,
            None,
            std::net::SocketAddr::new(host, 40001),
        ));
        conn.set_principal(principal);
        conn
    }

    /// Sends `req` at `version` as `principal` from `host` (a connection of its own) and
    /// decodes the answer.
    pub async fn send_as<R: KafkaRequest>(
        &self,
        principal: crate::context::KafkaPrincipal,
        host: std::net::IpAddr,
        req: &R,
        version: i16,
    ) -> Answer<R::Response> {
        let conn = self.connection_as(principal, host);
        self.send_on(&conn, req, version).await
    }

    /// Creates a topic directly through the controller (no authorization), waiting until
    /// this broker leads its partitions.
    pub async fn create_topic(&self, name: &str, partitions: i32) {
        self.broker
            .create_topics_internal(vec![nagare_controller::logic::NewTopic {
                name: name.into(),
                num_partitions: partitions,
                replication_factor: 1,
                assignments: vec![],
                configs: vec![],
            }])
            .await
            .expect("create topic");
        assert!(self.broker.image().topic(name).is_some(), "{name} created");
    }
}

/// Decodes a response frame (header and body, without the size prefix) of `R`.
pub fn decode_response<R: KafkaRequest>(mut b: Bytes, version: i16) -> R::Response {
    let key = ApiKey::try_from(R::KEY).expect("known key");
    ResponseHeader::decode(&mut b, key.response_header_version(version)).expect("response header");
    let resp = R::Response::decode(&mut b, version).expect("response body");
    assert!(!b.has_remaining(), "trailing bytes after the response");
    resp
}

/// A response's bytes, reading file regions (fetched records) from their segments.
pub fn response_bytes(resp: Response) -> Bytes {
    let mut out = BytesMut::new();
    for c in resp.chunks {
        match c {
            Chunk::Bytes(b) => out.extend_from_slice(&b),
            Chunk::Records(crate::network::Region(slice)) => {
                let mut buf = vec![0u8; slice.len];
                slice
                    .file
                    .read_exact_at(&mut buf, slice.position)
                    .expect("read segment");
                out.extend_from_slice(&buf);
            }
        }
    }
    out.freeze()
}

/// A plain record as a non-idempotent producer sends it (no producer id, no sequence, magic 2
/// defaults): record `i` of its batch, stamped `timestamp`. Tests set the other fields with
/// struct update syntax (`Record { producer_id, ..plain_record(..) }`).
pub fn plain_record(i: usize, timestamp: i64, value: Bytes) -> kafka_protocol::records::Record {
    kafka_protocol::records::Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: kafka_protocol::records::TimestampType::Creation,
        offset: i as i64,
        sequence: -1,
        timestamp,
        key: None,
        value: Some(value),
        headers: Default::default(),
    }
}

/// `records` encoded as one uncompressed record batch (magic 2), as a producer sends it.
pub fn encode_batch(records: &[kafka_protocol::records::Record]) -> BytesMut {
    use kafka_protocol::records::{Compression, RecordBatchEncoder, RecordEncodeOptions};
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encoding records into a growable buffer cannot fail");
    buf
}
