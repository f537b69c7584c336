//! The connection pool: one connection per broker, opened lazily, plus one to a bootstrap
//! server; sending a request at the negotiated version; the retry backoff.

use std::time::Duration;

use kafka_protocol::protocol::Request;

use super::{Client, ConnKey, Target};
use crate::connection::{api_key_of, Connection};
use crate::error::{Error, Result};

impl Client {
    async fn bootstrap_connect(&mut self) -> Result<Connection> {
        if self.config.bootstrap_servers.is_empty() {
            return Err(Error::NoBootstrapServers);
        }
        let mut errors = Vec::new();
        for addr in &self.config.bootstrap_servers {
            match Connection::connect_with(
                addr,
                &self.config.client_id,
                self.config.connection.clone(),
            )
            .await
            {
                Ok(conn) => return Ok(conn),
                Err(e) => errors.push(e),
            }
        }
        // Bootstrap servers may be unreachable while advertised broker addresses work.
        for broker in self.brokers.values() {
            if let Ok(conn) = Connection::connect_with(
                &broker.addr(),
                &self.config.client_id,
                self.config.connection.clone(),
            )
            .await
            {
                return Ok(conn);
            }
        }
        if errors.len() == 1 {
            if let Some(e) = errors.pop() {
                return Err(e);
            }
        }
        Err(Error::Bootstrap {
            errors: errors.iter().map(ToString::to_string).collect(),
        })
    }

    /// Makes sure a healthy connection for `target` exists and says which one it is.
    pub(super) async fn ensure_conn(&mut self, target: Target) -> Result<ConnKey> {
        self.conns.retain(|_, c| !c.is_broken());
        if self.bootstrap.as_ref().is_some_and(Connection::is_broken) {
            self.bootstrap = None;
        }
        let node = match target {
            Target::Node(n) => Some(n),
            Target::Controller if self.brokers.contains_key(&self.controller_id) => {
                Some(self.controller_id)
            }
            Target::Controller | Target::Any => {
                // Reuse any open broker connection before the bootstrap one.
                let mut open: Vec<i32> = self.conns.keys().copied().collect();
                open.sort_unstable();
                open.first().copied()
            }
        };
        if let Some(node_id) = node {
            if !self.conns.contains_key(&node_id) {
                let broker = self
                    .brokers
                    .get(&node_id)
                    .ok_or(Error::UnknownBroker { node_id })?;
                let conn = Connection::connect_with(
                    &broker.addr(),
                    &self.config.client_id,
                    self.config.connection.clone(),
                )
                .await?;
                self.conns.insert(node_id, conn);
            }
            return Ok(ConnKey::Node(node_id));
        }
        if self.bootstrap.is_none() {
            self.bootstrap = Some(self.bootstrap_connect().await?);
        }
        Ok(ConnKey::Bootstrap)
    }

    pub(super) fn conn_mut(&mut self, key: ConnKey) -> Result<&mut Connection> {
        let conn = match key {
            ConnKey::Bootstrap => self.bootstrap.as_mut(),
            ConnKey::Node(n) => self.conns.get_mut(&n),
        };
        conn.ok_or(Error::ConnectionBroken {
            addr: format!("{key:?}"),
        })
    }

    pub(super) fn drop_conn(&mut self, key: ConnKey) {
        match key {
            ConnKey::Bootstrap => self.bootstrap = None,
            ConnKey::Node(n) => {
                self.conns.remove(&n);
            }
        }
    }

    /// Sends a request built for the negotiated version (at most `cap`) to `target`. A
    /// connection that failed is dropped so the next request reconnects.
    pub(crate) async fn send_to<R: Request>(
        &mut self,
        target: Target,
        cap: Option<i16>,
        extra_wait: Duration,
        build: impl FnOnce(i16) -> R,
    ) -> Result<R::Response> {
        let key = self.ensure_conn(target).await?;
        let conn = self.conn_mut(key)?;
        let version = conn.negotiate(api_key_of::<R>()?, cap)?;
        let req = build(version);
        let timeout = conn.options().request_timeout + extra_wait;
        let result = conn.send_version_timeout(&req, version, timeout).await;
        if matches!(&result, Err(e) if e.is_transport()) {
            self.drop_conn(key);
        }
        result
    }

    /// Sleeps before retry number `attempt` (0-based): backoff doubled per attempt, at most 1 s.
    pub(crate) async fn backoff(&self, attempt: u32) {
        let wait = self
            .config
            .retry_backoff
            .saturating_mul(1u32 << attempt.min(10))
            .min(Duration::from_secs(1));
        tokio::time::sleep(wait).await;
    }
}
