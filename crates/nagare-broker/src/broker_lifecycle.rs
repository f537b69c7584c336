//! The broker's side of its registration with the controller (Kafka's
//! `BrokerLifecycleManager`): register at startup (BrokerRegistration) with a fresh
//! incarnation id, then heartbeat every `broker.heartbeat.interval.ms` (BrokerHeartbeat) with
//! the metadata offset applied so far. The controller unfences the broker once it has caught
//! up and fences it when the heartbeats stop. On shutdown the broker asks for a controlled
//! shutdown so that leadership moves away first.
//!
//! Every request goes through the [`ControllerChannel`](crate::controller_channel) on its
//! heartbeat lane (Kafka's "heartbeat" channel manager), which answers in-process when this
//! node is the active controller: one code path whichever node that is, and heartbeats never
//! wait behind admin requests or ISR changes.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::broker_registration_request::Listener as WireListener;
use kafka_protocol::messages::{BrokerHeartbeatRequest, BrokerId, BrokerRegistrationRequest};
use nagare_controller::cluster_control::{Heartbeat, HeartbeatReply, Registration};
use nagare_controller::shell::ControllerError;
use nagare_metadata::records::Endpoint;
use nagare_metadata::Uuid;

use crate::Broker;

fn str_bytes(s: impl Into<String>) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.into())
}

/// A failed lifecycle request: the Kafka error code and message.
#[derive(Debug, Clone)]
pub struct LifecycleError {
    /// Kafka error code.
    pub code: i16,
    /// Detail.
    pub message: String,
}

impl From<ControllerError> for LifecycleError {
    fn from(e: ControllerError) -> Self {
        LifecycleError {
            code: e.code(),
            message: e.message(),
        }
    }
}

/// This broker's registration state.
pub struct BrokerLifecycle {
    incarnation_id: Uuid,
    endpoints: Vec<Endpoint>,
    broker_epoch: parking_lot::Mutex<Option<i64>>,
    /// Set once a controlled shutdown began: every later heartbeat (also the periodic ones)
    /// carries `want_shut_down`, so a regular heartbeat cannot unfence the broker again.
    shutting_down: std::sync::atomic::AtomicBool,
}

impl BrokerLifecycle {
    /// A lifecycle for this process (a new incarnation id per start).
    pub fn new(broker: &Broker) -> Self {
        let endpoints = broker
            .config
            .advertised_listeners
            .iter()
            .map(|l| Endpoint {
                name: l.name.clone(),
                host: l.host.clone(),
                port: l.port,
                security_protocol: broker.config.security_protocol(&l.name).name().to_string(),
            })
            .collect();
        BrokerLifecycle {
            incarnation_id: Uuid::new_v4(),
            endpoints,
            broker_epoch: parking_lot::Mutex::new(None),
            shutting_down: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The epoch of the current registration, if registered.
    pub fn broker_epoch(&self) -> Option<i64> {
        *self.broker_epoch.lock()
    }

    /// Registers with the active controller; returns the broker epoch.
    pub async fn register(&self, broker: &Arc<Broker>) -> Result<i64, LifecycleError> {
        let reg = Registration {
            broker_id: broker.config.node_id,
            cluster_id: broker.cluster_id.clone(),
            incarnation_id: self.incarnation_id,
            endpoints: self.endpoints.clone(),
            rack: broker.config.broker_rack.clone(),
        };
        let req = BrokerRegistrationRequest::default()
            .with_broker_id(BrokerId(reg.broker_id))
            .with_cluster_id(str_bytes(reg.cluster_id))
            .with_incarnation_id(reg.incarnation_id)
            .with_listeners(
                reg.endpoints
                    .iter()
                    .map(|e| {
                        WireListener::default()
                            .with_name(str_bytes(e.name.clone()))
                            .with_host(str_bytes(e.host.clone()))
                            .with_port(e.port)
                            .with_security_protocol(
                                crate::context::SecurityProtocol::from_name(&e.security_protocol)
                                    .map_or(0, |p| p.id()),
                            )
                    })
                    .collect(),
            )
            .with_rack(reg.rack.map(str_bytes));
        let resp = broker.channel_send(&req).await?;
        if resp.error_code != 0 {
            return Err(LifecycleError {
                code: resp.error_code,
                message: "BrokerRegistration refused".into(),
            });
        }
        let epoch = resp.broker_epoch;
        *self.broker_epoch.lock() = Some(epoch);
        Ok(epoch)
    }

    /// Sends one heartbeat (registering first if needed).
    pub async fn heartbeat(
        &self,
        broker: &Arc<Broker>,
        want_shut_down: bool,
    ) -> Result<HeartbeatReply, LifecycleError> {
        let epoch = match self.broker_epoch() {
            Some(e) => e,
            None => self.register(broker).await?,
        };
        let hb = Heartbeat {
            broker_id: broker.config.node_id,
            broker_epoch: epoch,
            current_metadata_offset: broker.image().offset,
            want_fence: false,
            want_shut_down: want_shut_down
                || self.shutting_down.load(std::sync::atomic::Ordering::SeqCst),
        };
        let req = BrokerHeartbeatRequest::default()
            .with_broker_id(BrokerId(hb.broker_id))
            .with_broker_epoch(hb.broker_epoch)
            .with_current_metadata_offset(hb.current_metadata_offset)
            .with_want_fence(hb.want_fence)
            .with_want_shut_down(hb.want_shut_down);
        let result = match broker.channel_send(&req).await {
            Ok(resp) if resp.error_code != 0 => Err(LifecycleError {
                code: resp.error_code,
                message: "BrokerHeartbeat refused".into(),
            }),
            Ok(resp) => Ok(HeartbeatReply {
                is_caught_up: resp.is_caught_up,
                is_fenced: resp.is_fenced,
                should_shut_down: resp.should_shut_down,
            }),
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            // STALE_BROKER_EPOCH / BROKER_ID_NOT_REGISTERED: the registration is gone (e.g. a
            // new controller restored an older snapshot); register again next time.
            if e.code == kafka_protocol::ResponseError::StaleBrokerEpoch.code()
                || e.code == kafka_protocol::ResponseError::BrokerIdNotRegistered.code()
            {
                *self.broker_epoch.lock() = None;
            }
        }
        result
    }

    /// Heartbeats until `broker` is unfenced — by the controller and in this node's own image,
    /// which is what its Metadata answers list — or `timeout` passes (Kafka's brokers wait for
    /// this before serving clients). Returns whether it was unfenced.
    pub async fn wait_unfenced(&self, broker: &Arc<Broker>, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let me = broker.config.node_id;
        let mut unfenced = false;
        loop {
            if unfenced {
                if broker.image().brokers.get(&me).is_some_and(|b| !b.fenced) {
                    return true;
                }
            } else {
                match self.heartbeat(broker, false).await {
                    Ok(r) if !r.is_fenced => {
                        unfenced = true;
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(code = e.code, error = %e.message, "heartbeat failed")
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Heartbeats forever every `broker.heartbeat.interval.ms`.
    pub async fn run(self: Arc<Self>, broker: Arc<Broker>) {
        let interval = Duration::from_millis(broker.config.quorum.broker_heartbeat_interval_ms);
        let mut fenced_logged = false;
        loop {
            tokio::time::sleep(interval).await;
            match self.heartbeat(&broker, false).await {
                Ok(r) => {
                    if r.is_fenced && !fenced_logged {
                        tracing::warn!("this broker is fenced by the controller");
                    }
                    fenced_logged = r.is_fenced;
                }
                Err(e) => {
                    tracing::warn!(code = e.code, error = %e.message, "broker heartbeat failed")
                }
            }
        }
    }

    /// Controlled shutdown (Kafka's `BrokerLifecycleManager.beginControlledShutdown`): heartbeats
    /// with `want_shut_down` until the controller answers `should_shut_down` — it has moved
    /// the leadership of every partition this broker led to another ISR member, removed it
    /// from the ISRs, and the other brokers have applied that — or `timeout` passes.
    pub async fn controlled_shutdown(&self, broker: &Arc<Broker>, timeout: Duration) {
        self.shutting_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let started = tokio::time::Instant::now();
        let deadline = started + timeout;
        tracing::info!("controlled shutdown: asking the controller to move leadership away");
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.heartbeat(broker, true)).await {
                Ok(Ok(r)) if r.should_shut_down => {
                    tracing::info!(
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "controlled shutdown complete"
                    );
                    return;
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::debug!(code = e.code, "controlled shutdown heartbeat failed")
                }
                Err(_) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!("controlled shutdown timed out; shutting down anyway");
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
