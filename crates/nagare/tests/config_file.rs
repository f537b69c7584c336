//! `nagare server --config server.properties` with a Kafka 4.x KRaft combined-mode file: it
//! starts, warns about unknown keys, applies `num.partitions` to auto-created topics, and
//! refuses invalid values with an error naming the property.

mod common;

use std::time::Duration;

use common::{ServerOptions, TestServer};
use rdkafka::consumer::Consumer;
use rdkafka::producer::{BaseRecord, Producer};

/// A Kafka 4.x `config/server.properties` (KRaft, combined broker+controller), trimmed of
/// comments; `{PORT}`, `{CPORT}` and `{LOG_DIR}` are filled in by the harness.
const SERVER_PROPERTIES: &str = "\
############################# Server Basics #############################
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{CPORT}

############################# Socket Server Settings #############################
listeners=PLAINTEXT://127.0.0.1:{PORT},CONTROLLER://127.0.0.1:{CPORT}
inter.broker.listener.name=PLAINTEXT
advertised.listeners=PLAINTEXT://127.0.0.1:{PORT}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
num.network.threads=3
num.io.threads=8
socket.send.buffer.bytes=102400
socket.receive.buffer.bytes=102400
socket.request.max.bytes=104857600

############################# Log Basics #############################
log.dirs={LOG_DIR}
num.partitions=3
num.recovery.threads.per.data.dir=1

############################# Internal Topic Settings  #############################
default.replication.factor=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1

############################# Log Retention Policy #############################
log.retention.hours=168
log.segment.bytes=1073741824
log.retention.check.interval.ms=300000

############################# Group Coordinator Settings #############################
group.initial.rebalance.delay.ms=0

# Not a Kafka property: must be warned about, not fatal.
foo.bar=1
";

#[test]
fn kafka_server_properties_are_accepted() {
    let server = TestServer::start_with(ServerOptions {
        config_template: Some(SERVER_PROPERTIES.to_string()),
        ..ServerOptions::default()
    });
    let output = server.current_output();
    let warning = output
        .lines()
        .find(|l| l.contains("foo.bar"))
        .unwrap_or_else(|| panic!("no line names the unknown key foo.bar; output:\n{output}"));
    assert!(
        warning.to_lowercase().contains("warn") || warning.to_lowercase().contains("unknown"),
        "the foo.bar line is not a warning: {warning}"
    );

    // Topic auto-creation uses num.partitions=3 from the file.
    let topic = "auto-created";
    let producer = server.producer(&[("message.timeout.ms", "30000")]);
    producer
        .send(BaseRecord::<(), _>::to(topic).payload("hello"))
        .map_err(|(e, _)| e)
        .expect("enqueue");
    producer
        .flush(Duration::from_secs(30))
        .expect("record to an auto-created topic acknowledged");
    server.wait_for_partitions(topic, 3);
    let md = server
        .consumer(&[])
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .expect("topic in metadata");
    assert_eq!(t.partitions().len(), 3, "num.partitions=3 applied");
}

#[test]
fn invalid_value_is_fatal_and_named() {
    let properties = SERVER_PROPERTIES.replace("num.partitions=3", "num.partitions=abc");
    let mut server = TestServer::spawn_with(ServerOptions {
        config_template: Some(properties),
        ..ServerOptions::default()
    });
    let status = server
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| {
            panic!(
                "server with num.partitions=abc did not exit; output:\n{}",
                server.current_output()
            )
        });
    let output = server.current_output();
    assert!(!status.success(), "exit status {status} should be non-zero");
    assert!(
        output.contains("num.partitions"),
        "the error does not name num.partitions:\n{output}"
    );
    assert!(
        !output.contains("listening on"),
        "the server must not start serving with an invalid config:\n{output}"
    );
}

/// The same check for a bad `--override`, which takes precedence over the file.
#[test]
fn invalid_override_is_fatal_and_named() {
    let mut server = TestServer::spawn_with(ServerOptions {
        config_template: Some(SERVER_PROPERTIES.to_string()),
        overrides: vec!["log.retention.check.interval.ms=soon".to_string()],
        ..ServerOptions::default()
    });
    let status = server
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| {
            panic!(
                "server with a bad override did not exit; output:\n{}",
                server.current_output()
            )
        });
    assert!(!status.success(), "exit status {status} should be non-zero");
    let output = server.current_output();
    assert!(
        output.contains("log.retention.check.interval.ms"),
        "the error does not name the property:\n{output}"
    );
}
