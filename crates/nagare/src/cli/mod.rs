//! One module per CLI subcommand.

pub mod acl;
pub mod bench;
pub mod cluster;
pub mod consume;
pub mod group;
pub mod produce;
pub mod quorum;
pub mod quota;
pub mod server;
pub mod storage;
pub mod tiered;
pub mod topic;
pub mod transactions;
pub mod user;

/// The broker-address option every client subcommand takes.
#[derive(clap::Args, Clone, Debug)]
pub struct Bootstrap {
    /// Broker(s) to bootstrap from, comma-separated `host:port`.
    #[arg(
        long = "bootstrap-server",
        short = 'b',
        alias = "bootstrap-servers",
        env = "NAGARE_BOOTSTRAP_SERVER",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    pub bootstrap_server: String,
    /// A Kafka client property, as `KEY=VALUE` (like kcat's `-X`): `security.protocol`,
    /// `sasl.mechanism`, `sasl.username`, `sasl.password`, `sasl.jaas.config`,
    /// `ssl.ca.location`, `ssl.certificate.location`, `ssl.key.location`. Repeatable; wins
    /// over `--command-config`.
    #[arg(
        short = 'X',
        long = "property",
        value_name = "KEY=VALUE",
        global = true
    )]
    pub properties: Vec<String>,
    /// A Kafka client properties file (the `--command-config` of Kafka's tools).
    #[arg(long = "command-config", value_name = "FILE", global = true)]
    pub command_config: Option<std::path::PathBuf>,
}

impl Bootstrap {
    /// Connects a client for the CLI, authenticating as the client properties say; the error
    /// already names the broker and the cause.
    pub async fn connect(&self) -> anyhow::Result<nagare_client::Client> {
        let mut config =
            nagare_client::ClientConfig::new(&self.bootstrap_server).with_client_id("nagare-cli");
        let props = self.client_properties()?;
        config.connection.sasl = sasl_from_properties(&props)?;
        config.connection.tls = tls_from_properties(&props)?;
        Ok(nagare_client::Client::connect(config).await?)
    }

    /// The client properties: the `--command-config` file, then every `-X`.
    pub fn client_properties(&self) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
        let mut props = std::collections::BTreeMap::new();
        if let Some(path) = &self.command_config {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            for (k, v) in nagare_broker::config::parse_properties(&text, path)? {
                props.insert(k, v);
            }
        }
        for p in &self.properties {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("-X {p:?}: expected KEY=VALUE"))?;
            props.insert(k.trim().to_string(), v.trim().to_string());
        }
        Ok(props)
    }
}

/// The SASL login of Kafka client properties: `security.protocol=SASL_PLAINTEXT`,
/// `sasl.mechanism` (librdkafka: `sasl.mechanisms`), and the user and password as
/// `sasl.username` / `sasl.password` (librdkafka) or in `sasl.jaas.config` (Java clients:
/// `... required username="alice" password="alice-secret";`).
pub fn sasl_from_properties(
    props: &std::collections::BTreeMap<String, String>,
) -> anyhow::Result<Option<nagare_client::SaslCredentials>> {
    let protocol = props
        .get("security.protocol")
        .map(|p| p.to_ascii_uppercase())
        .unwrap_or_else(|| "PLAINTEXT".into());
    match protocol.as_str() {
        "PLAINTEXT" | "SSL" => return Ok(None),
        "SASL_PLAINTEXT" | "SASL_SSL" => {}
        other => anyhow::bail!("security.protocol={other} is not a security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)"),
    }
    let mechanism = props
        .get("sasl.mechanism")
        .or_else(|| props.get("sasl.mechanisms"))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("security.protocol=SASL_PLAINTEXT needs sasl.mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER)"))?;
    if mechanism == "OAUTHBEARER" {
        return oauthbearer_from_properties(props).map(Some);
    }
    let jaas = match props.get("sasl.jaas.config") {
        Some(text) => Some(
            nagare_sasl::jaas::parse(text).map_err(|e| anyhow::anyhow!("sasl.jaas.config: {e}"))?,
        ),
        None => None,
    };
    let from_jaas = |key: &str| jaas.as_ref().and_then(|j| j.options.get(key).cloned());
    let username = props
        .get("sasl.username")
        .cloned()
        .or_else(|| from_jaas("username"))
        .ok_or_else(|| {
            anyhow::anyhow!("SASL needs sasl.username (or username in sasl.jaas.config)")
        })?;
    let password = props
        .get("sasl.password")
        .cloned()
        .or_else(|| from_jaas("password"))
        .ok_or_else(|| {
            anyhow::anyhow!("SASL needs sasl.password (or password in sasl.jaas.config)")
        })?;
    Ok(Some(nagare_client::SaslCredentials {
        mechanism,
        username,
        password,
    }))
}

/// An OAUTHBEARER login from Kafka client properties: the token (a JWT) from the file named
/// by `sasl.oauthbearer.token.endpoint.url=file:///path` (Kafka's file-based token
/// endpoint; the file is read once, surrounding whitespace trimmed). The client-credentials
/// flow against an `https://` token endpoint is not supported yet.
fn oauthbearer_from_properties(
    props: &std::collections::BTreeMap<String, String>,
) -> anyhow::Result<nagare_client::SaslCredentials> {
    let url = props
        .get("sasl.oauthbearer.token.endpoint.url")
        .ok_or_else(|| {
            anyhow::anyhow!(
                "sasl.mechanism=OAUTHBEARER needs sasl.oauthbearer.token.endpoint.url=file:///path/to/token.jwt"
            )
        })?;
    let Some(path) = url.strip_prefix("file://") else {
        anyhow::bail!(
            "sasl.oauthbearer.token.endpoint.url={url}: only file:// token files are supported (the client-credentials flow against a token endpoint is not implemented)"
        );
    };
    let token = std::fs::read_to_string(path)
        .map_err(|e| {
            anyhow::anyhow!("sasl.oauthbearer.token.endpoint.url: cannot read {path}: {e}")
        })?
        .trim()
        .to_string();
    if token.is_empty() {
        anyhow::bail!("sasl.oauthbearer.token.endpoint.url: {path} is empty");
    }
    Ok(nagare_client::SaslCredentials {
        mechanism: "OAUTHBEARER".into(),
        username: String::new(),
        password: token,
    })
}

/// TLS for the CLI's client from Kafka client properties: `security.protocol=SSL` or
/// `SASL_SSL`, with librdkafka's `ssl.ca.location`, `ssl.certificate.location` +
/// `ssl.key.location` and `ssl.endpoint.identification.algorithm` (`none` or empty: no host
/// name check), or the Java client's PEM `ssl.truststore.location` / `ssl.keystore.location`.
pub fn tls_from_properties(
    props: &std::collections::BTreeMap<String, String>,
) -> anyhow::Result<Option<nagare_client::TlsOptions>> {
    use anyhow::Context;
    match props
        .get("security.protocol")
        .map(|p| p.to_ascii_uppercase())
        .as_deref()
    {
        Some("SSL") | Some("SASL_SSL") => {}
        _ => return Ok(None),
    }
    // The same settings in the broker's (Kafka's) key names, read by its TLS module.
    let mut kafka = std::collections::BTreeMap::new();
    for key in [
        "ssl.truststore.location",
        "ssl.truststore.type",
        "ssl.keystore.location",
        "ssl.keystore.type",
    ] {
        if let Some(v) = props.get(key) {
            kafka.insert(key.to_string(), v.clone());
        }
    }
    if let Some(ca) = props.get("ssl.ca.location") {
        kafka.insert("ssl.truststore.location".to_string(), ca.clone());
    }
    if let (Some(cert), Some(key)) = (
        props.get("ssl.certificate.location"),
        props.get("ssl.key.location"),
    ) {
        let read = |path: &String| {
            std::fs::read_to_string(path).with_context(|| format!("reading {path}"))
        };
        kafka.insert("ssl.keystore.certificate.chain".to_string(), read(cert)?);
        kafka.insert("ssl.keystore.key".to_string(), read(key)?);
    }
    if let Some(alg) = props.get("ssl.endpoint.identification.algorithm") {
        let alg = if alg.eq_ignore_ascii_case("none") {
            ""
        } else {
            alg.as_str()
        };
        kafka.insert(
            "ssl.endpoint.identification.algorithm".to_string(),
            alg.to_string(),
        );
    }
    let config = nagare_broker::tls::TlsSettings::from_props(&kafka, None)
        .and_then(|s| s.client_config())
        .context("TLS client properties")?;
    Ok(Some(nagare_client::TlsOptions {
        config: std::sync::Arc::new(config),
        server_name: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(kv: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sasl_properties_in_kafka_and_librdkafka_spelling() {
        assert_eq!(sasl_from_properties(&props(&[])).expect("ok"), None);
        let c = sasl_from_properties(&props(&[
            ("security.protocol", "sasl_plaintext"),
            ("sasl.mechanisms", "PLAIN"),
            ("sasl.username", "alice"),
            ("sasl.password", "alice-secret"),
        ]))
        .expect("ok")
        .expect("sasl");
        assert_eq!(
            (
                c.mechanism.as_str(),
                c.username.as_str(),
                c.password.as_str()
            ),
            ("PLAIN", "alice", "alice-secret")
        );
        let c = sasl_from_properties(&props(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"admin-secret\";"),
        ]))
        .expect("ok")
        .expect("sasl");
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("admin", "admin-secret")
        );
        assert!(!format!("{c:?}").contains("admin-secret"));
        for bad in [
            props(&[("security.protocol", "SASL_PLAINTEXT")]),
            props(&[
                ("security.protocol", "SASL_PLAINTEXT"),
                ("sasl.mechanism", "PLAIN"),
            ]),
            props(&[("security.protocol", "SASL_SSL")]),
        ] {
            assert!(sasl_from_properties(&bad).is_err());
        }
    }

    #[test]
    fn oauthbearer_token_from_a_file_url() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("token.jwt");
        std::fs::write(&file, "  header.claims.signature\n").expect("write");
        let url = format!("file://{}", file.display());
        let c = sasl_from_properties(&props(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "OAUTHBEARER"),
            ("sasl.oauthbearer.token.endpoint.url", &url),
        ]))
        .expect("ok")
        .expect("sasl");
        assert_eq!(
            (c.mechanism.as_str(), c.password.as_str()),
            ("OAUTHBEARER", "header.claims.signature")
        );
        for bad in ["https://idp.test/token", "file:///no/such/token.jwt"] {
            let e = sasl_from_properties(&props(&[
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "OAUTHBEARER"),
                ("sasl.oauthbearer.token.endpoint.url", bad),
            ]))
            .expect_err(bad);
            assert!(
                e.to_string()
                    .contains("sasl.oauthbearer.token.endpoint.url"),
                "{e}"
            );
        }
    }
}
