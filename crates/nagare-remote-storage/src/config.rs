//! The object store named by the broker's `rsm.config.*` keys (Kafka passes keys with this
//! prefix to the RemoteStorageManager plugin; Nagare's plugin is built in).
//!
//! | key | meaning |
//! |---|---|
//! | `rsm.config.url` | `s3://bucket/prefix` or `file:///absolute/path` |
//! | `rsm.config.endpoint` | S3 endpoint (MinIO, moto, ...); `http://` allows plain HTTP |
//! | `rsm.config.region` | S3 region (default `us-east-1`) |
//! | `rsm.config.access.key.id` / `rsm.config.secret.access.key` / `rsm.config.session.token` | static credentials; without them the AWS environment variables, web identity or instance metadata (the standard chain) |
//! | `rsm.config.path.style.access.enabled` | `true`: `endpoint/bucket/key` instead of `bucket.endpoint/key` |

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;

/// The keys this module reads (all optional except the URL).
pub const RSM_CONFIG_KEYS: &[&str] = &[
    "rsm.config.url",
    "rsm.config.endpoint",
    "rsm.config.region",
    "rsm.config.access.key.id",
    "rsm.config.secret.access.key",
    "rsm.config.session.token",
    "rsm.config.path.style.access.enabled",
];

/// Where remote segments go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// An S3 bucket and a key prefix (possibly empty).
    S3 {
        /// The bucket.
        bucket: String,
        /// Key prefix, without leading or trailing `/`.
        prefix: String,
    },
    /// A local directory (tests, or a shared file system mounted on every broker).
    File {
        /// Absolute path of the directory.
        path: std::path::PathBuf,
    },
}

/// The parsed `rsm.config.*` keys.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteStorageConfig {
    /// The store and prefix.
    pub location: StoreLocation,
    /// S3 endpoint override.
    pub endpoint: Option<String>,
    /// S3 region.
    pub region: Option<String>,
    /// Static access key id.
    pub access_key_id: Option<String>,
    /// Static secret key (never printed).
    pub secret_access_key: Option<String>,
    /// Static session token (never printed).
    pub session_token: Option<String>,
    /// Path-style requests.
    pub path_style: bool,
}

impl std::fmt::Debug for RemoteStorageConfig {
    // Secrets stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteStorageConfig")
            .field("location", &self.location)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("path_style", &self.path_style)
            .finish_non_exhaustive()
    }
}

/// A configuration error, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {key}: {reason}")]
pub struct ConfigError {
    /// The offending key.
    pub key: &'static str,
    /// What is wrong.
    pub reason: String,
}

fn err(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        reason: reason.into(),
    }
}

/// Parses `s3://bucket/prefix` or `file:///path`.
pub fn parse_url(url: &str) -> Result<StoreLocation, ConfigError> {
    const KEY: &str = "rsm.config.url";
    let url = url.trim();
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(err(KEY, "missing bucket in s3://bucket/prefix"));
        }
        Ok(StoreLocation::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        })
    } else if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(err(KEY, "file:// needs an absolute path (file:///dir)"));
        }
        Ok(StoreLocation::File {
            path: std::path::PathBuf::from(path),
        })
    } else {
        Err(err(KEY, "expected s3://bucket/prefix or file:///path"))
    }
}

impl RemoteStorageConfig {
    /// Reads the keys through `get` (a broker property lookup).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let non_empty = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let url = non_empty("rsm.config.url").ok_or_else(|| {
            err(
                "rsm.config.url",
                "required when remote.log.storage.system.enable=true",
            )
        })?;
        let path_style = match non_empty("rsm.config.path.style.access.enabled").as_deref() {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(_) => {
                return Err(err(
                    "rsm.config.path.style.access.enabled",
                    "expected true or false",
                ))
            }
        };
        let endpoint = non_empty("rsm.config.endpoint");
        if let Some(e) = &endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(err("rsm.config.endpoint", "expected http(s)://host:port"));
            }
        }
        let access_key_id = non_empty("rsm.config.access.key.id");
        let secret_access_key = non_empty("rsm.config.secret.access.key");
        if access_key_id.is_some() != secret_access_key.is_some() {
            return Err(err(
                "rsm.config.secret.access.key",
                "set both rsm.config.access.key.id and rsm.config.secret.access.key, or neither",
            ));
        }
        Ok(RemoteStorageConfig {
            location: parse_url(&url)?,
            endpoint,
            region: non_empty("rsm.config.region"),
            access_key_id,
            secret_access_key,
            session_token: non_empty("rsm.config.session.token"),
            path_style,
        })
    }

    /// Builds the store and the key prefix every object goes under. A `file://` directory is
    /// created if missing.
    pub fn build(&self) -> Result<(Arc<dyn ObjectStore>, ObjectPath), ConfigError> {
        match &self.location {
            StoreLocation::File { path } => {
                std::fs::create_dir_all(path)
                    .map_err(|e| err("rsm.config.url", format!("{}: {e}", path.display())))?;
                let fs = LocalFileSystem::new_with_prefix(path)
                    .map_err(|e| err("rsm.config.url", e.to_string()))?;
                Ok((Arc::new(fs), ObjectPath::default()))
            }
            StoreLocation::S3 { bucket, prefix } => {
                // from_env: the standard AWS variables (AWS_ACCESS_KEY_ID, AWS_REGION, web
                // identity, ...) fill whatever the rsm.config.* keys leave unset.
                let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
                if let Some(r) = &self.region {
                    b = b.with_region(r);
                } else if std::env::var_os("AWS_REGION").is_none()
                    && std::env::var_os("AWS_DEFAULT_REGION").is_none()
                {
                    b = b.with_region("us-east-1");
                }
                if let Some(e) = &self.endpoint {
                    b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
                }
                if let (Some(k), Some(s)) = (&self.access_key_id, &self.secret_access_key) {
                    b = b.with_access_key_id(k).with_secret_access_key(s);
                    if let Some(t) = &self.session_token {
                        b = b.with_token(t);
                    }
                }
                b = b.with_virtual_hosted_style_request(!self.path_style);
                let store = b
                    .build()
                    .map_err(|e| err("rsm.config.url", e.to_string()))?;
                Ok((Arc::new(store), ObjectPath::from(prefix.as_str())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn parses_urls() {
        assert_eq!(
            parse_url("s3://b/some/prefix/"),
            Ok(StoreLocation::S3 {
                bucket: "b".into(),
                prefix: "some/prefix".into()
            })
        );
        assert_eq!(
            parse_url("s3://b"),
            Ok(StoreLocation::S3 {
                bucket: "b".into(),
                prefix: String::new()
            })
        );
        assert!(parse_url("s3:///x").is_err());
        assert!(parse_url("file://relative").is_err());
        assert!(parse_url("gs://b").is_err());
        assert_eq!(
            parse_url("file:///tmp/x"),
            Ok(StoreLocation::File {
                path: "/tmp/x".into()
            })
        );
    }

    #[test]
    fn validates_keys() {
        let e = RemoteStorageConfig::from_lookup(lookup(&[])).unwrap_err();
        assert_eq!(e.key, "rsm.config.url");
        let e = RemoteStorageConfig::from_lookup(lookup(&[
            ("rsm.config.url", "s3://b"),
            ("rsm.config.access.key.id", "k"),
        ]))
        .unwrap_err();
        assert_eq!(e.key, "rsm.config.secret.access.key");
        let e = RemoteStorageConfig::from_lookup(lookup(&[
            ("rsm.config.url", "s3://b"),
            ("rsm.config.path.style.access.enabled", "yes"),
        ]))
        .unwrap_err();
        assert_eq!(e.key, "rsm.config.path.style.access.enabled");
        let c = RemoteStorageConfig::from_lookup(lookup(&[
            ("rsm.config.url", "s3://b/p"),
            ("rsm.config.endpoint", "http://127.0.0.1:9000"),
            ("rsm.config.access.key.id", "k"),
            ("rsm.config.secret.access.key", "secret"),
            ("rsm.config.path.style.access.enabled", "true"),
        ]))
        .expect("valid");
        assert!(c.path_style);
        assert!(
            !format!("{c:?}").contains("\"secret\""),
            "secrets are not printed"
        );
        let (_store, prefix) = c.build().expect("s3 store builds without network");
        assert_eq!(prefix.as_ref(), "p");
    }
}
