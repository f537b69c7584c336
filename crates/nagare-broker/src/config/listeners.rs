//! Who this node is and where it listens: `node.id`, `process.roles`, `listeners`,
//! `advertised.listeners`, `controller.listener.names` and `controller.quorum.voters`, with
//! KRaft's rules tying them together (Kafka's `KafkaConfig.validateValues`).

use std::collections::BTreeMap;

use super::parse::Props;
use super::{invalid, ConfigError};
use crate::context::SecurityProtocol;

/// One listener from `listeners` (`NAME://host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Listener name (`PLAINTEXT`, `CONTROLLER`, ...).
    pub name: String,
    /// Host to bind (empty = all interfaces).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl Listener {
    /// The socket address to bind.
    pub fn bind_addr(&self) -> String {
        let host = if self.host.is_empty() {
            "0.0.0.0"
        } else {
            &self.host
        };
        format!("{host}:{}", self.port)
    }
}

/// Parses a `listeners`-style list: `NAME://host:port,...`.
pub fn parse_listeners(key: &str, value: &str) -> Result<Vec<Listener>, ConfigError> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((name, rest)) = item.split_once("://") else {
            return Err(invalid(
                key,
                value,
                format!("listener {item:?} is not NAME://host:port"),
            ));
        };
        let Some((host, port)) = rest.rsplit_once(':') else {
            return Err(invalid(
                key,
                value,
                format!("listener {item:?} has no port"),
            ));
        };
        let port: u16 = port
            .parse()
            .map_err(|_| invalid(key, value, format!("listener {item:?} has an invalid port")))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        out.push(Listener {
            name: name.to_ascii_uppercase(),
            host,
            port,
        });
    }
    Ok(out)
}

/// The node's identity, roles, listeners and voters, checked against each other.
pub(crate) struct Topology {
    pub(crate) node_id: i32,
    pub(crate) process_roles: Vec<String>,
    pub(crate) listeners: Vec<Listener>,
    pub(crate) advertised_listeners: Vec<Listener>,
    pub(crate) controller_listener_names: Vec<String>,
    pub(crate) voters: Vec<nagare_raft::VoterAddress>,
    pub(crate) voters_configured: bool,
    pub(crate) security_protocols: BTreeMap<String, SecurityProtocol>,
    pub(crate) inter_broker_listener_name: Option<String>,
}

/// Parses `listener.security.protocol.map` (`NAME:PROTOCOL,...`).
pub fn parse_security_protocol_map(
    key: &str,
    value: &str,
) -> Result<BTreeMap<String, SecurityProtocol>, ConfigError> {
    let mut out = BTreeMap::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((name, protocol)) = item.split_once(':') else {
            return Err(invalid(
                key,
                value,
                format!("{item:?} is not LISTENER_NAME:SECURITY_PROTOCOL"),
            ));
        };
        let Some(protocol) = SecurityProtocol::from_name(protocol) else {
            return Err(invalid(
                key,
                value,
                format!(
                    "{protocol:?} is not a security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)"
                ),
            ));
        };
        out.insert(name.trim().to_ascii_uppercase(), protocol);
    }
    Ok(out)
}

/// A wildcard or empty host is not an address anyone can connect to: advertise loopback.
fn connectable_host(host: &str) -> String {
    if host.is_empty() || host == "0.0.0.0" {
        "127.0.0.1".into()
    } else {
        host.to_string()
    }
}

/// Resolves the topology from validated properties (single-node defaults where Kafka has
/// none: node 1, combined roles, the node its own only voter).
pub(crate) fn resolve(p: Props<'_>) -> Result<Topology, ConfigError> {
    // `broker.id` is the older name of `node.id`; `node.id` wins when both are set.
    let node_id = match (p.given("node.id"), p.given("broker.id")) {
        (Some(_), _) | (None, None) => p.int("node.id"),
        (None, Some(_)) => p.int("broker.id"),
    } as i32;
    let process_roles: Vec<String> = p
        .text("process.roles")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    for r in &process_roles {
        if r != "broker" && r != "controller" {
            return Err(invalid(
                "process.roles",
                p.given("process.roles").unwrap_or(""),
                format!("unknown role {r}"),
            ));
        }
    }
    if process_roles.is_empty() {
        return Err(invalid("process.roles", "", "no role given"));
    }
    let listeners = parse_listeners("listeners", p.text("listeners").unwrap_or_default())?;
    let controller_listener_names: Vec<String> = p
        .text("controller.listener.names")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| !s.is_empty())
        .collect();
    let is_broker = process_roles.iter().any(|r| r == "broker");
    let is_controller = process_roles.iter().any(|r| r == "controller");
    let has_broker_listener = listeners
        .iter()
        .any(|l| !controller_listener_names.contains(&l.name));
    let controller_listener = listeners
        .iter()
        .find(|l| controller_listener_names.first() == Some(&l.name))
        .cloned();
    let given_listeners = p.given("listeners").unwrap_or("");
    if is_broker && !has_broker_listener {
        return Err(invalid(
            "listeners",
            given_listeners,
            "no broker listener (all listeners are controller listeners)",
        ));
    }
    // Kafka: a controller listens on the first of controller.listener.names; a
    // broker-only node must not list a controller listener in `listeners`.
    if is_controller && controller_listener.is_none() {
        return Err(invalid(
            "listeners",
            given_listeners,
            format!(
                "a controller must have a listener named by controller.listener.names ({})",
                controller_listener_names.join(",")
            ),
        ));
    }
    if !is_controller && controller_listener.is_some() {
        return Err(invalid(
            "listeners",
            given_listeners,
            "a broker-only node (process.roles=broker) must not have a controller listener",
        ));
    }
    if !is_broker && has_broker_listener {
        return Err(invalid(
            "listeners",
            given_listeners,
            "a controller-only node (process.roles=controller) may only have controller listeners",
        ));
    }
    let advertised_listeners = match p.given("advertised.listeners") {
        Some(v) => parse_listeners("advertised.listeners", v)?,
        None => listeners
            .iter()
            .filter(|l| !controller_listener_names.contains(&l.name))
            .map(|l| Listener {
                host: connectable_host(&l.host),
                ..l.clone()
            })
            .collect(),
    };
    let (voters, voters_configured) = match p.given("controller.quorum.voters") {
        Some(v) => (
            nagare_raft::parse_voters(v)
                .map_err(|e| invalid("controller.quorum.voters", v, e.to_string()))?,
            true,
        ),
        // The single-node default: this node is the only voter, on its own listener.
        None => match (&controller_listener, is_controller) {
            (Some(l), true) => (
                vec![nagare_raft::VoterAddress {
                    node_id,
                    host: connectable_host(&l.host),
                    port: l.port,
                }],
                false,
            ),
            _ => {
                return Err(invalid(
                    "controller.quorum.voters",
                    "",
                    "a broker-only node needs controller.quorum.voters to find the controllers",
                ))
            }
        },
    };
    let given_voters = p.given("controller.quorum.voters").unwrap_or("");
    if is_controller && !voters.iter().any(|v| v.node_id == node_id) {
        return Err(invalid(
            "controller.quorum.voters",
            given_voters,
            format!("node.id {node_id} has the controller role but is not a voter"),
        ));
    }
    if !is_controller && voters.iter().any(|v| v.node_id == node_id) {
        return Err(invalid(
            "controller.quorum.voters",
            given_voters,
            format!("node.id {node_id} is a voter but does not have the controller role"),
        ));
    }
    // Every listener needs a security protocol from the map. As in Kafka, when the map is
    // left at its default, controller listeners not in it speak PLAINTEXT.
    let map_given = p.given("listener.security.protocol.map").is_some();
    let mut security_protocols = parse_security_protocol_map(
        "listener.security.protocol.map",
        p.text("listener.security.protocol.map").unwrap_or_default(),
    )?;
    for l in listeners.iter().chain(advertised_listeners.iter()) {
        if security_protocols.contains_key(&l.name) {
            continue;
        }
        if !map_given && controller_listener_names.contains(&l.name) {
            security_protocols.insert(l.name.clone(), SecurityProtocol::Plaintext);
            continue;
        }
        return Err(invalid(
            "listener.security.protocol.map",
            p.given("listener.security.protocol.map").unwrap_or(""),
            format!("no security protocol defined for listener {}", l.name),
        ));
    }
    // `inter.broker.listener.name`: the listener brokers replicate and send markers over; it
    // must be a broker listener this node has and advertises (Kafka's `validateValues`).
    // Unset, Nagare uses the first broker listener.
    let inter_broker_listener_name = match p.given("inter.broker.listener.name").map(str::trim) {
        None | Some("") => None,
        Some(name) => {
            let name = name.to_ascii_uppercase();
            if is_broker {
                let given = p.given("inter.broker.listener.name").unwrap_or("");
                if controller_listener_names.contains(&name) {
                    return Err(invalid(
                        "inter.broker.listener.name",
                        given,
                        "the inter-broker listener cannot be a controller listener",
                    ));
                }
                if !listeners.iter().any(|l| l.name == name) {
                    return Err(invalid(
                        "inter.broker.listener.name",
                        given,
                        format!("{name} is not a listener in listeners"),
                    ));
                }
                if !advertised_listeners.iter().any(|l| l.name == name) {
                    return Err(invalid(
                        "inter.broker.listener.name",
                        given,
                        format!("{name} must be a listener name defined in advertised.listeners"),
                    ));
                }
            }
            Some(name)
        }
    };
    Ok(Topology {
        node_id,
        process_roles,
        listeners,
        advertised_listeners,
        controller_listener_names,
        voters,
        voters_configured,
        security_protocols,
        inter_broker_listener_name,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::BrokerConfig;
    use super::*;

    fn load(lines: &[&str]) -> Result<BrokerConfig, ConfigError> {
        let props: BTreeMap<String, String> = lines
            .iter()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        BrokerConfig::from_props(props).map(|(c, _)| c)
    }

    fn err(lines: &[&str]) -> String {
        match load(lines) {
            Ok(_) => panic!("{lines:?} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn inter_broker_listener_name_picks_the_replication_listener() {
        let lines = [
            "listeners=EXTERNAL://127.0.0.1:9092,INTERNAL://127.0.0.1:9094,CONTROLLER://127.0.0.1:9093",
            "listener.security.protocol.map=EXTERNAL:PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
        ];
        let first = load(&lines).expect("no inter.broker.listener.name");
        assert_eq!(
            first.broker_listener().map(|l| l.name.as_str()),
            Some("EXTERNAL")
        );
        let mut named = lines.to_vec();
        named.push("inter.broker.listener.name=internal");
        let c = load(&named).expect("named");
        assert_eq!(c.broker_listener().map(|l| l.port), Some(9094));
        assert_eq!(
            c.advertised_broker_listener().map(|l| l.name.as_str()),
            Some("INTERNAL")
        );
        let mut bad = lines.to_vec();
        bad.push("inter.broker.listener.name=CONTROLLER");
        assert!(err(&bad).contains("controller listener"));
        let mut missing = lines.to_vec();
        missing.push("inter.broker.listener.name=REPLICATION");
        assert!(err(&missing).contains("not a listener"));
        let mut unadvertised = lines.to_vec();
        unadvertised.push("inter.broker.listener.name=INTERNAL");
        unadvertised.push("advertised.listeners=EXTERNAL://127.0.0.1:9092");
        assert!(err(&unadvertised).contains("advertised.listeners"));
    }

    #[test]
    fn security_protocol_map() {
        let c = load(&[]).expect("defaults");
        assert_eq!(
            c.security_protocol("PLAINTEXT"),
            SecurityProtocol::Plaintext
        );
        assert_eq!(
            c.security_protocol("CONTROLLER"),
            SecurityProtocol::Plaintext
        );
        let c = load(&[
            "listeners=CLIENT://127.0.0.1:9092,REPL://127.0.0.1:9094,CONTROLLER://127.0.0.1:9093",
            "listener.security.protocol.map=CLIENT:sasl_ssl,REPL:SSL,CONTROLLER:SASL_PLAINTEXT",
        ])
        .expect("named listeners");
        assert_eq!(c.security_protocol("CLIENT"), SecurityProtocol::SaslSsl);
        assert_eq!(c.security_protocol("REPL"), SecurityProtocol::Ssl);
        assert_eq!(
            c.security_protocol("CONTROLLER"),
            SecurityProtocol::SaslPlaintext
        );
        // A listener the map does not name is a startup error (Kafka's message).
        let e = err(&[
            "listeners=CLIENT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT",
        ]);
        assert!(
            e.contains("no security protocol defined for listener CLIENT"),
            "{e}"
        );
        let e = err(&["listener.security.protocol.map=PLAINTEXT:TLS"]);
        assert!(e.contains("not a security protocol"), "{e}");
    }

    #[test]
    fn single_node_defaults() {
        let c = load(&[]).expect("defaults");
        assert_eq!(c.node_id, 1);
        assert!(c.is_single_node_default());
        assert!(!c.quorum.voters_configured);
        assert_eq!(c.controller_listener().map(|l| l.port), Some(9093));
        assert_eq!(
            c.advertised_listeners.len(),
            1,
            "controller listener not advertised"
        );
    }

    #[test]
    fn broker_id_is_the_older_name_of_node_id() {
        let c = load(&["broker.id=7", "controller.quorum.voters=7@127.0.0.1:9093"]).expect("ok");
        assert_eq!(c.node_id, 7);
        let c = load(&[
            "node.id=3",
            "broker.id=7",
            "controller.quorum.voters=3@127.0.0.1:9093",
        ])
        .expect("ok");
        assert_eq!(c.node_id, 3, "node.id wins");
    }

    #[test]
    fn wildcard_hosts_are_advertised_as_loopback() {
        let c = load(&["listeners=PLAINTEXT://0.0.0.0:9192,CONTROLLER://:9193"]).expect("ok");
        let adv = c.advertised_broker_listener().expect("advertised");
        assert_eq!((adv.host.as_str(), adv.port), ("127.0.0.1", 9192));
        assert_eq!(c.quorum.voters[0].host, "127.0.0.1");
        assert_eq!(c.listeners[1].bind_addr(), "0.0.0.0:9193");
    }

    #[test]
    fn roles_listeners_and_voters_must_agree() {
        let broker_only = [
            "process.roles=broker",
            "node.id=101",
            "listeners=PLAINTEXT://127.0.0.1:9192",
        ];
        let e = err(&broker_only);
        assert!(e.contains("controller.quorum.voters"), "{e}");
        let mut ok = broker_only.to_vec();
        ok.push("controller.quorum.voters=1@127.0.0.1:9093");
        let c = load(&ok).expect("broker-only node");
        assert!(c.is_broker() && !c.is_controller() && c.controller_listener().is_none());
        let e = err(&[
            "process.roles=broker",
            "controller.quorum.voters=1@127.0.0.1:9093",
            "node.id=101",
        ]);
        assert!(e.contains("must not have a controller listener"), "{e}");
        let e = err(&["process.roles=controller"]);
        assert!(e.contains("may only have controller listeners"), "{e}");
        let e = err(&["controller.quorum.voters=2@127.0.0.1:9093"]);
        assert!(e.contains("is not a voter"), "{e}");
        let e = err(&[
            "process.roles=broker",
            "node.id=1",
            "listeners=PLAINTEXT://127.0.0.1:9192",
            "controller.quorum.voters=1@127.0.0.1:9093",
        ]);
        assert!(e.contains("does not have the controller role"), "{e}");
        let e = err(&["process.roles=broker,zookeeper"]);
        assert!(e.contains("unknown role zookeeper"), "{e}");
        let e = err(&["listeners=CONTROLLER://127.0.0.1:9093"]);
        assert!(e.contains("no broker listener"), "{e}");
    }

    #[test]
    fn malformed_listeners_name_the_key() {
        for bad in [
            "localhost:9092",
            "PLAINTEXT://localhost",
            "PLAINTEXT://h:99999",
        ] {
            let e = parse_listeners("advertised.listeners", bad)
                .expect_err(bad)
                .to_string();
            assert!(e.contains("advertised.listeners"), "{e}");
        }
        let l = parse_listeners("listeners", "plaintext://[::1]:9092").expect("ipv6");
        assert_eq!(
            (l[0].name.as_str(), l[0].host.as_str()),
            ("PLAINTEXT", "::1")
        );
    }
}
