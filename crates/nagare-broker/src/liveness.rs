//! The active controller's watch on brokers' heartbeat connections (Nagare, beyond Kafka's
//! session-only fencing): when the peer closes the connection a broker's latest
//! BrokerHeartbeat arrived on — end-of-stream or a reset, which is what the kernel sends when
//! the broker's process dies — the controller fences that broker after
//! `nagare.broker.disconnect.fence.grace.ms` unless it heartbeats again, so its partitions get
//! new leaders within a fraction of a second instead of after `broker.session.timeout.ms`. A
//! broker that is only slow (stopped, paging, behind a saturated disk) keeps its connection
//! open and is governed by the session timeout alone.
//!
//! This is the I/O shell only: it reports "the connection of broker N with epoch E closed"
//! to [`Controller::broker_connection_closed`]; whether that fences, and when, is the
//! controller's sans-I/O decision ([`nagare_controller::cluster_control`]).

use std::sync::Arc;

use nagare_controller::shell::Controller;

use crate::context::{ConnectionContext, ConnectionEnd};

/// Notes that broker `broker_id` heartbeated with `broker_epoch` on `conn` and, on the first
/// heartbeat of the connection, starts watching it: once the peer closes it, the controller
/// is told, and after the grace period it runs the fencing check.
pub fn watch_heartbeat_connection(
    controller: &Arc<Controller>,
    conn: &Arc<ConnectionContext>,
    broker_id: i32,
    broker_epoch: i64,
) {
    if conn.set_heartbeat_of(broker_id, broker_epoch).is_some() {
        return;
    }
    let controller = Arc::downgrade(controller);
    let conn = conn.clone();
    tokio::spawn(async move {
        if conn.ended().await != ConnectionEnd::ClosedByPeer {
            return;
        }
        // The latest heartbeat on this connection decides who it belonged to.
        let Some((broker_id, broker_epoch)) = conn.heartbeat_of() else {
            return;
        };
        let Some(c) = controller.upgrade() else {
            return;
        };
        let Some(grace) = c
            .broker_connection_closed(broker_id, broker_epoch, conn.index)
            .await
        else {
            return;
        };
        tokio::time::sleep(grace).await;
        if let Err(e) = c.fence_expired_brokers().await {
            tracing::debug!(error = %e, broker = broker_id, "disconnect fencing check failed");
        }
    });
}
