//! SASL on a SASL_PLAINTEXT listener, in process: the gate, handshakes, PLAIN and SCRAM
//! exchanges setting the principal, failures (delayed, then closed), KIP-368 session expiry
//! and re-authentication, and SCRAM credentials altered through the controller.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, ApiVersionsRequest, DescribeUserScramCredentialsRequest,
    MetadataRequest, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::StrBytes;

use nagare_protocol::error::ResponseError;
use nagare_sasl::plain;
use nagare_sasl::scram::{ScramClient, ScramMechanism};

use crate::context::{ConnectionContext, KafkaPrincipal};
use crate::testing::{response_bytes, Answer, TestBroker};

const JAAS: &str = "org.apache.kafka.common.security.plain.PlainLoginModule required \
    username=\"admin\" password=\"admin-secret\" user_admin=\"admin-secret\" \
    user_alice=\"alice-secret\";";

async fn sasl_broker(extra: &[(&str, &str)]) -> TestBroker {
    sasl_broker_with(extra, None).await
}

async fn sasl_broker_with(
    extra: &[(&str, &str)],
    authorizer: Option<Arc<dyn crate::authorizer::Authorizer>>,
) -> TestBroker {
    let mut props = vec![
        (
            "listeners",
            "PLAINTEXT://127.0.0.1:9092,SASL_PLAINTEXT://127.0.0.1:9094,CONTROLLER://127.0.0.1:9093",
        ),
        (
            "listener.security.protocol.map",
            "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
        ),
        (
            "listener.name.sasl_plaintext.sasl.enabled.mechanisms",
            "PLAIN,SCRAM-SHA-512",
        ),
        ("listener.name.sasl_plaintext.plain.sasl.jaas.config", JAAS),
        ("connection.failed.authentication.delay.ms", "150"),
    ];
    props.extend_from_slice(extra);
    TestBroker::build(&props, authorizer).await
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

async fn handshake(
    t: &TestBroker,
    conn: &Arc<ConnectionContext>,
    mechanism: &str,
) -> kafka_protocol::messages::SaslHandshakeResponse {
    t.send_on(
        conn,
        &SaslHandshakeRequest::default().with_mechanism(s(mechanism)),
        1,
    )
    .await
    .expect("handshake answer")
}

async fn authenticate(
    t: &TestBroker,
    conn: &Arc<ConnectionContext>,
    token: Vec<u8>,
) -> kafka_protocol::messages::SaslAuthenticateResponse {
    t.send_on(
        conn,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)),
        2,
    )
    .await
    .expect("authenticate answer")
}

async fn metadata_allowed(t: &TestBroker, conn: &Arc<ConnectionContext>) -> bool {
    matches!(
        t.send_on(conn, &MetadataRequest::default(), 12).await,
        Answer::Response(_)
    )
}

async fn plain_login(t: &TestBroker, user: &str, password: &str) -> Arc<ConnectionContext> {
    let conn = t.connection_on("SASL_PLAINTEXT");
    let h = handshake(t, &conn, "PLAIN").await;
    assert_eq!(h.error_code, 0);
    let a = authenticate(t, &conn, plain::client_message(user, password)).await;
    assert_eq!(a.error_code, 0, "{:?}", a.error_message);
    conn
}

async fn scram_login(
    t: &TestBroker,
    conn: &Arc<ConnectionContext>,
    m: ScramMechanism,
    user: &str,
    password: &str,
) -> Result<kafka_protocol::messages::SaslAuthenticateResponse, (i16, String)> {
    let h = handshake(t, conn, m.name()).await;
    if h.error_code != 0 {
        return Err((h.error_code, String::new()));
    }
    let mut client = ScramClient::new(m, user, password, "fyko+d2lbbFgONRv9qkxdawL");
    let first = authenticate(t, conn, client.client_first()).await;
    if first.error_code != 0 {
        return Err((
            first.error_code,
            first
                .error_message
                .map(|m| m.to_string())
                .unwrap_or_default(),
        ));
    }
    let fin = client
        .client_final(&first.auth_bytes)
        .expect("server-first is valid");
    let done = authenticate(t, conn, fin).await;
    if done.error_code != 0 {
        return Err((
            done.error_code,
            done.error_message
                .map(|m| m.to_string())
                .unwrap_or_default(),
        ));
    }
    client
        .verify_server_final(&done.auth_bytes)
        .expect("the broker proves it holds the credential");
    Ok(done)
}

async fn set_scram(
    t: &TestBroker,
    user: &str,
    m: ScramMechanism,
    password: &str,
    iterations: i32,
) -> i16 {
    let salt = b"0123456789abcdef".to_vec();
    let salted = m.salted_password(password.as_bytes(), &salt, iterations as u32);
    let r = t
        .send(
            &AlterUserScramCredentialsRequest::default().with_upsertions(vec![
                ScramCredentialUpsertion::default()
                    .with_name(s(user))
                    .with_mechanism(m.type_id())
                    .with_iterations(iterations)
                    .with_salt(Bytes::from(salt))
                    .with_salted_password(Bytes::from(salted)),
            ]),
            0,
        )
        .await
        .expect("alter answer");
    assert_eq!(r.results.len(), 1);
    r.results[0].error_code
}

#[tokio::test]
async fn unauthenticated_connection_may_only_negotiate() {
    let t = sasl_broker(&[]).await;
    let conn = t.connection_on("SASL_PLAINTEXT");
    assert!(matches!(
        t.send_on(&conn, &ApiVersionsRequest::default(), 3).await,
        Answer::Response(_)
    ));
    // Anything else before authentication closes the connection.
    assert!(!metadata_allowed(&t, &conn).await);
    // PLAINTEXT connections are not affected; SASL requests there are out of place.
    assert!(metadata_allowed(&t, &t.connection).await);
    let h = handshake(&t, &t.connection, "PLAIN").await;
    assert_eq!(h.error_code, ResponseError::IllegalSaslState.code());
    // ApiVersions in the middle of an exchange.
    let conn = t.connection_on("SASL_PLAINTEXT");
    assert_eq!(handshake(&t, &conn, "PLAIN").await.error_code, 0);
    assert!(matches!(
        t.send_on(&conn, &ApiVersionsRequest::default(), 3).await,
        Answer::Closed
    ));
    // SaslAuthenticate before SaslHandshake.
    let conn = t.connection_on("SASL_PLAINTEXT");
    let a = authenticate(&t, &conn, plain::client_message("alice", "alice-secret")).await;
    assert_eq!(a.error_code, ResponseError::IllegalSaslState.code());
    assert!(conn.sasl.close_requested());
}

#[tokio::test]
async fn handshake_for_a_disabled_mechanism_lists_the_enabled_ones() {
    let t = sasl_broker(&[]).await;
    for m in ["GSSAPI", "SCRAM-SHA-256", "OAUTHBEARER"] {
        let conn = t.connection_on("SASL_PLAINTEXT");
        let h = handshake(&t, &conn, m).await;
        assert_eq!(
            h.error_code,
            ResponseError::UnsupportedSaslMechanism.code(),
            "{m}"
        );
        let listed: Vec<String> = h.mechanisms.iter().map(|m| m.to_string()).collect();
        assert_eq!(listed, vec!["PLAIN", "SCRAM-SHA-512"]);
        assert!(conn.sasl.close_requested(), "closed after the answer");
    }
}

#[tokio::test]
async fn plain_login_sets_the_principal() {
    let t = sasl_broker(&[]).await;
    let conn = plain_login(&t, "alice", "alice-secret").await;
    assert_eq!(conn.principal(), KafkaPrincipal::user("alice"));
    assert!(!conn.sasl.close_requested());
    assert!(metadata_allowed(&t, &conn).await);
}

#[tokio::test]
async fn wrong_password_is_refused_late_and_closes() {
    let t = sasl_broker(&[]).await;
    let conn = t.connection_on("SASL_PLAINTEXT");
    assert_eq!(handshake(&t, &conn, "PLAIN").await.error_code, 0);
    let started = Instant::now();
    let a = authenticate(&t, &conn, plain::client_message("alice", "guess")).await;
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "connection.failed.authentication.delay.ms holds the answer back"
    );
    assert_eq!(a.error_code, ResponseError::SaslAuthenticationFailed.code());
    assert_eq!(
        a.error_message.as_deref(),
        Some("Authentication failed: Invalid username or password")
    );
    assert!(conn.sasl.close_requested());
    assert_eq!(conn.principal(), KafkaPrincipal::anonymous());
    assert!(!metadata_allowed(&t, &conn).await);
}

#[tokio::test]
async fn scram_credentials_through_the_controller_and_login() {
    let t = sasl_broker(&[]).await;
    let m = ScramMechanism::Sha512;
    // Unknown user: RESOURCE_NOT_FOUND; listing everyone: nobody yet.
    let d = t
        .send(
            &DescribeUserScramCredentialsRequest::default()
                .with_users(Some(vec![UserName::default().with_name(s("bob"))])),
            0,
        )
        .await
        .expect("describe");
    assert_eq!(
        d.results[0].error_code,
        ResponseError::ResourceNotFound.code()
    );
    // Credentials Kafka refuses.
    assert_eq!(
        set_scram(&t, "bob", m, "pw", 1000).await,
        ResponseError::UnacceptableCredential.code()
    );
    assert_eq!(set_scram(&t, "bob", m, "bob-secret", 8192).await, 0);
    let d = t
        .send(&DescribeUserScramCredentialsRequest::default(), 0)
        .await
        .expect("describe");
    assert_eq!(d.results.len(), 1);
    assert_eq!(d.results[0].user.as_str(), "bob");
    assert_eq!(d.results[0].credential_infos[0].mechanism, m.type_id());
    assert_eq!(d.results[0].credential_infos[0].iterations, 8192);

    let conn = t.connection_on("SASL_PLAINTEXT");
    scram_login(&t, &conn, m, "bob", "bob-secret")
        .await
        .expect("SCRAM login");
    assert_eq!(conn.principal(), KafkaPrincipal::user("bob"));
    assert!(metadata_allowed(&t, &conn).await);

    // Wrong password and unknown user fail alike.
    for (user, pw) in [("bob", "nope"), ("nobody", "x")] {
        let conn = t.connection_on("SASL_PLAINTEXT");
        let e = scram_login(&t, &conn, m, user, pw)
            .await
            .expect_err("refused");
        assert_eq!(e.0, ResponseError::SaslAuthenticationFailed.code());
        assert!(conn.sasl.close_requested());
        assert_eq!(conn.principal(), KafkaPrincipal::anonymous());
    }

    // Deleting the credential: later logins fail; deleting again is RESOURCE_NOT_FOUND.
    let delete = AlterUserScramCredentialsRequest::default().with_deletions(vec![
        ScramCredentialDeletion::default()
            .with_name(s("bob"))
            .with_mechanism(m.type_id()),
    ]);
    let r = t.send(&delete, 0).await.expect("delete");
    assert_eq!(r.results[0].error_code, 0);
    let r = t.send(&delete, 0).await.expect("delete again");
    assert_eq!(
        r.results[0].error_code,
        ResponseError::ResourceNotFound.code()
    );
    let conn = t.connection_on("SASL_PLAINTEXT");
    assert!(scram_login(&t, &conn, m, "bob", "bob-secret")
        .await
        .is_err());
}

#[tokio::test]
async fn sessions_expire_unless_reauthenticated() {
    let t = sasl_broker(&[("connections.max.reauth.ms", "300")]).await;
    let stale = t.connection_on("SASL_PLAINTEXT");
    assert_eq!(handshake(&t, &stale, "PLAIN").await.error_code, 0);
    let a = authenticate(&t, &stale, plain::client_message("alice", "alice-secret")).await;
    assert_eq!(a.session_lifetime_ms, 300);
    let fresh = plain_login(&t, "alice", "alice-secret").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Re-authentication (KIP-368) on `fresh` restarts its session.
    assert_eq!(handshake(&t, &fresh, "PLAIN").await.error_code, 0);
    let a = authenticate(&t, &fresh, plain::client_message("alice", "alice-secret")).await;
    assert_eq!(a.error_code, 0);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(metadata_allowed(&t, &fresh).await, "re-authenticated");
    assert!(!metadata_allowed(&t, &stale).await, "expired: closed");
    // Re-authentication may not switch users.
    assert_eq!(handshake(&t, &fresh, "PLAIN").await.error_code, 0);
    let a = authenticate(&t, &fresh, plain::client_message("admin", "admin-secret")).await;
    assert_eq!(a.error_code, ResponseError::SaslAuthenticationFailed.code());
    assert!(fresh.sasl.close_requested());
}

#[tokio::test]
async fn handshake_v0_then_raw_tokens() {
    let t = sasl_broker(&[]).await;
    let conn = t.connection_on("SASL_PLAINTEXT");
    let h = t
        .send_on(
            &conn,
            &SaslHandshakeRequest::default().with_mechanism(s("PLAIN")),
            0,
        )
        .await
        .expect("handshake v0");
    assert_eq!(h.error_code, 0);
    assert!(conn.sasl.expects_raw_token());
    let reply = t
        .send_frame_on(
            &conn,
            Bytes::from(plain::client_message("alice", "alice-secret")),
        )
        .await
        .expect("answered")
        .expect("a token");
    // An empty size-prefixed token.
    let mut expected = BytesMut::new();
    expected.put_i32(0);
    assert_eq!(response_bytes(reply), expected.freeze());
    assert_eq!(conn.principal(), KafkaPrincipal::user("alice"));
    assert!(metadata_allowed(&t, &conn).await);
}

#[test]
fn configuration_errors_name_the_problem() {
    use crate::config::BrokerConfig;
    use crate::sasl::SaslSettings;
    let load = |extra: &[(&str, &str)]| {
        let mut props = std::collections::BTreeMap::new();
        props.insert(
            "listeners".to_string(),
            "PLAINTEXT://:9092,SASL_PLAINTEXT://:9094,CONTROLLER://:9093".to_string(),
        );
        props.insert(
            "listener.security.protocol.map".to_string(),
            "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT".to_string(),
        );
        for (k, v) in extra {
            props.insert(k.to_string(), v.to_string());
        }
        let (c, _) = BrokerConfig::from_props(props).expect("config");
        SaslSettings::from_config(&c)
    };
    let e = load(&[]).expect_err("GSSAPI is Kafka's default");
    assert!(e.contains("GSSAPI"), "{e}");
    let e = load(&[("sasl.enabled.mechanisms", "PLAIN,SCRAM-SHA-1")]).expect_err("bad");
    assert!(e.contains("mechanism(s) SCRAM-SHA-1 not supported"), "{e}");
    let e = load(&[("sasl.enabled.mechanisms", "PLAIN")]).expect_err("no JAAS");
    assert!(
        e.contains("listener.name.sasl_plaintext.plain.sasl.jaas.config"),
        "{e}"
    );
    let e = load(&[
        ("sasl.enabled.mechanisms", "PLAIN"),
        (
            "sasl.jaas.config",
            "org.apache.kafka.common.security.plain.PlainLoginModule required user_a=\"s3cret\"",
        ),
    ])
    .expect_err("no ';'");
    assert!(!e.contains("s3cret"), "{e}");
    let ok = load(&[
        ("sasl.enabled.mechanisms", "SCRAM-SHA-256"),
        (
            "listener.name.sasl_plaintext.sasl.enabled.mechanisms",
            "PLAIN",
        ),
        ("sasl.jaas.config", JAAS),
    ])
    .expect("ok");
    let l = ok.listener("SASL_PLAINTEXT").expect("listener");
    assert_eq!(l.mechanisms, vec!["PLAIN"]);
    assert_eq!(
        l.plain_user_names().collect::<Vec<_>>(),
        vec!["admin", "alice"]
    );
    assert!(!format!("{ok:?}").contains("alice-secret"));
    assert_eq!(ok.failed_authentication_delay_ms, 100);
    assert_eq!(ok.max_reauth_ms, 0);
}

/// `sasl.jaas.config` is a PASSWORD config: DescribeConfigs shows it as sensitive, without
/// its value, as Kafka does.
#[tokio::test]
async fn describe_configs_hides_the_jaas_config() {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::DescribeConfigsRequest;
    let t = sasl_broker(&[("sasl.jaas.config", JAAS)]).await;
    let r = t
        .send(
            &DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(s("1"))
                    .with_configuration_keys(Some(vec![
                        s("sasl.jaas.config"),
                        s("sasl.enabled.mechanisms"),
                    ])),
            ]),
            4,
        )
        .await
        .expect("describe");
    let configs = &r.results[0].configs;
    let jaas = configs
        .iter()
        .find(|c| c.name.as_str() == "sasl.jaas.config")
        .expect("listed");
    assert!(jaas.is_sensitive);
    assert_eq!(jaas.value, None);
    let text = format!("{r:?}");
    assert!(!text.contains("alice-secret"), "{text}");
}

/// SASL is served on every listener; a SASL inter-broker or controller listener needs this
/// node's own login (Kafka's `sasl.mechanism.*.protocol`, default GSSAPI, and the
/// listener's JAAS `username` / `password`), else startup fails naming the key.
#[test]
fn inter_node_sasl_needs_a_mechanism_and_a_login() {
    use crate::config::BrokerConfig;
    use crate::server::{check_listener_security, inter_node_sasl};
    let config = |listeners: &str, map: &str, extra: &[(&str, &str)]| {
        let mut props = std::collections::BTreeMap::new();
        props.insert("listeners".to_string(), listeners.to_string());
        props.insert(
            "listener.security.protocol.map".to_string(),
            map.to_string(),
        );
        props.insert("sasl.enabled.mechanisms".to_string(), "PLAIN".to_string());
        props.insert("sasl.jaas.config".to_string(), JAAS.to_string());
        for (k, v) in extra {
            props.insert(k.to_string(), v.to_string());
        }
        let (c, _) = BrokerConfig::from_props(props).expect("config");
        c
    };
    let both = "PLAINTEXT://:9092,SASL_PLAINTEXT://:9094,CONTROLLER://:9093";
    let plain_map = "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT";
    // A SASL client listener that is not the inter-broker one needs no login of ours.
    let c = config(both, plain_map, &[]);
    assert!(check_listener_security(&c).is_ok());
    assert_eq!(inter_node_sasl(&c).expect("logins"), (None, None));

    // SASL on the inter-broker listener: GSSAPI (Kafka's default) is refused by key name.
    let first = "SASL_PLAINTEXT://:9094,PLAINTEXT://:9092,CONTROLLER://:9093";
    let e = check_listener_security(&config(first, plain_map, &[])).expect_err("GSSAPI");
    assert!(
        e.to_string()
            .contains("sasl.mechanism.inter.broker.protocol"),
        "{e}"
    );
    let c = config(
        first,
        plain_map,
        &[("sasl.mechanism.inter.broker.protocol", "PLAIN")],
    );
    check_listener_security(&c).expect("inter-broker SASL");
    let (controller, broker) = inter_node_sasl(&c).expect("logins");
    assert_eq!(controller, None);
    let broker = broker.expect("inter-broker login");
    assert_eq!(
        (
            broker.mechanism.as_str(),
            broker.username.as_str(),
            broker.password.as_str()
        ),
        ("PLAIN", "admin", "admin-secret")
    );
    // The mechanism must be enabled on the listener this node serves.
    let e = check_listener_security(&config(
        first,
        plain_map,
        &[("sasl.mechanism.inter.broker.protocol", "SCRAM-SHA-512")],
    ))
    .expect_err("not enabled");
    assert!(e.to_string().contains("sasl.enabled.mechanisms"), "{e}");

    // SASL_SSL on the controller listener: the controller mechanism and the per-listener,
    // per-mechanism JAAS config (as Kafka's inter-broker client reads it).
    let ssl_map = "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_SSL";
    let e = inter_node_sasl(&config(both, ssl_map, &[])).expect_err("GSSAPI");
    assert!(
        e.to_string().contains("sasl.mechanism.controller.protocol"),
        "{e}"
    );
    let c = config(
        both,
        ssl_map,
        &[
            ("sasl.mechanism.controller.protocol", "SCRAM-SHA-256"),
            ("listener.name.controller.sasl.enabled.mechanisms", "SCRAM-SHA-256"),
            (
                "listener.name.controller.scram-sha-256.sasl.jaas.config",
                "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"ctl\" password=\"ctl-secret\";",
            ),
        ],
    );
    let controller = inter_node_sasl(&c)
        .expect("logins")
        .0
        .expect("controller login");
    assert_eq!(
        (
            controller.mechanism.as_str(),
            controller.username.as_str(),
            controller.password.as_str()
        ),
        ("SCRAM-SHA-256", "ctl", "ctl-secret")
    );
    // A JAAS config without this node's own username is refused, naming the key.
    let e = inter_node_sasl(&config(
        both,
        ssl_map,
        &[
            ("sasl.mechanism.controller.protocol", "PLAIN"),
            (
                "listener.name.controller.plain.sasl.jaas.config",
                "org.apache.kafka.common.security.plain.PlainLoginModule required user_a=\"b\";",
            ),
        ],
    ))
    .expect_err("no username");
    assert!(
        e.to_string()
            .contains("listener.name.controller.plain.sasl.jaas.config"),
        "{e}"
    );
}

/// Allows everything but cluster operations, which only `User:admin` may perform.
struct ClusterAdminOnly;

impl crate::authorizer::Authorizer for ClusterAdminOnly {
    fn authorize(
        &self,
        who: &crate::authorizer::Requester<'_>,
        _op: crate::authorizer::AclOperation,
        r: &crate::authorizer::Resource<'_>,
    ) -> bool {
        r.resource_type != crate::authorizer::ResourceType::Cluster
            || who.principal == KafkaPrincipal::user("admin")
    }
}

/// The SASL principal is what authorization sees: SCRAM credentials are ALTER / DESCRIBE on
/// the cluster, refused to `User:alice` and allowed to `User:admin`.
#[tokio::test]
async fn credentials_need_cluster_permissions_of_the_sasl_principal() {
    let t = sasl_broker_with(&[], Some(Arc::new(ClusterAdminOnly))).await;
    let upsert = |salted: Vec<u8>| {
        AlterUserScramCredentialsRequest::default().with_upsertions(vec![
            ScramCredentialUpsertion::default()
                .with_name(s("carol"))
                .with_mechanism(ScramMechanism::Sha512.type_id())
                .with_iterations(4096)
                .with_salt(Bytes::from_static(b"salt"))
                .with_salted_password(Bytes::from(salted)),
        ])
    };
    let salted = ScramMechanism::Sha512.salted_password(b"carol-secret", b"salt", 4096);
    let alice = plain_login(&t, "alice", "alice-secret").await;
    let r = t
        .send_on(&alice, &upsert(salted.clone()), 0)
        .await
        .expect("alter");
    assert_eq!(
        r.results[0].error_code,
        ResponseError::ClusterAuthorizationFailed.code()
    );
    let d = t
        .send_on(&alice, &DescribeUserScramCredentialsRequest::default(), 0)
        .await
        .expect("describe");
    assert_eq!(
        d.error_code,
        ResponseError::ClusterAuthorizationFailed.code()
    );
    assert!(t.broker.image().scram.is_empty(), "nothing written");
    let admin = plain_login(&t, "admin", "admin-secret").await;
    let r = t.send_on(&admin, &upsert(salted), 0).await.expect("alter");
    assert_eq!(r.results[0].error_code, 0);
    let d = t
        .send_on(&admin, &DescribeUserScramCredentialsRequest::default(), 0)
        .await
        .expect("describe");
    assert_eq!(d.results.len(), 1);
    let carol = t.connection_on("SASL_PLAINTEXT");
    scram_login(&t, &carol, ScramMechanism::Sha512, "carol", "carol-secret")
        .await
        .expect("the new user logs in");
}

/// nagare-client re-authenticates (KIP-368) on the same connection before its session
/// expires: over a real socket to a SASL_PLAINTEXT listener with a 400-ms
/// `connections.max.reauth.ms`, one connection keeps being served across five session
/// lifetimes, re-authenticating between requests.
#[tokio::test]
async fn nagare_client_reauthenticates_on_the_same_connection() {
    let t = sasl_broker(&[("connections.max.reauth.ms", "400")]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let ctx = crate::network::ServeContext::for_broker(
        t.broker.clone(),
        "SASL_PLAINTEXT",
        crate::handlers::ListenerKind::Broker,
    );
    assert_eq!(
        ctx.security_protocol,
        crate::context::SecurityProtocol::SaslPlaintext
    );
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            tokio::spawn(crate::network::serve_with(ctx.clone(), stream, peer));
        }
    });
    let options = nagare_client::ConnectionOptions {
        sasl: Some(nagare_client::SaslCredentials {
            mechanism: "PLAIN".into(),
            username: "alice".into(),
            password: "alice-secret".into(),
        }),
        ..Default::default()
    };
    let mut conn = nagare_client::Connection::connect_with(&addr, "reauth", options)
        .await
        .expect("login");
    let started = Instant::now();
    let mut served = 0;
    while started.elapsed() < Duration::from_millis(2_000) {
        let md = conn
            .send(&MetadataRequest::default().with_topics(None))
            .await
            .unwrap_or_else(|e| panic!("request {served} after {:?}: {e}", started.elapsed()));
        assert_eq!(md.brokers.len(), 1);
        served += 1;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    // Five lifetimes, a re-authentication at 85-95% of each.
    assert!(
        conn.reauthentications() >= 4,
        "{} re-authentications over {served} requests",
        conn.reauthentications()
    );
}
