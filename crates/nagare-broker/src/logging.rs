//! Log levels per logger, from the config and at run time: Kafka's BROKER_LOGGER config
//! resource (DescribeConfigs / IncrementalAlterConfigs with resource type 8, as
//! `kafka-configs --entity-type broker-loggers` uses them).
//!
//! Nagare's loggers are `tracing` targets (`nagare_broker::replica_manager`, ...), the root
//! logger is `root`. As in log4j, a logger without a level of its own inherits the level of
//! its nearest ancestor (`a::b` inherits from `a`), and finally root's. The process's
//! subscriber is installed by the binary ([`install_reload`]); this module only keeps the
//! levels and renders them as a filter directive string for it.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use parking_lot::Mutex;

/// The name of the root logger, as in Kafka.
pub const ROOT_LOGGER: &str = "root";

/// Loggers listed by DescribeConfigs even when no level is set for them: the crates and the
/// modules an operator turns up when chasing a problem.
const KNOWN_LOGGERS: &[&str] = &[
    "nagare",
    "nagare_broker",
    "nagare_broker::network",
    "nagare_broker::request_logger",
    "nagare_broker::handlers",
    "nagare_broker::replica_manager",
    "nagare_broker::replica_fetcher",
    "nagare_broker::group_coordinator",
    "nagare_broker::transaction_coordinator",
    "nagare_broker::marker_sender",
    "nagare_broker::controller_channel",
    "nagare_broker::broker_lifecycle",
    "nagare_broker::quorum",
    "nagare_broker::sasl",
    "nagare_broker::tls",
    "nagare_broker::quotas",
    "nagare_broker::metrics",
    "nagare_client",
    "nagare_controller",
    "nagare_coordinator",
    "nagare_metadata",
    "nagare_protocol",
    "nagare_raft",
    "nagare_raft_manager",
    "nagare_sasl",
    "nagare_storage",
    "nagare_transaction_coordinator",
];

/// A log level as Kafka's log4j names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Nothing is logged.
    Off,
    /// Errors only (log4j's FATAL maps here too).
    Error,
    /// Warnings and errors.
    Warn,
    /// The default.
    Info,
    /// Debugging detail.
    Debug,
    /// Everything (log4j's ALL maps here too).
    Trace,
}

impl LogLevel {
    /// Parses a level the way Kafka's `Log4jController` accepts it (case-insensitive; ALL and
    /// FATAL are log4j's extremes).
    pub fn parse(s: &str) -> Option<LogLevel> {
        Some(match s.trim().to_ascii_uppercase().as_str() {
            "OFF" => LogLevel::Off,
            "FATAL" | "ERROR" => LogLevel::Error,
            "WARN" => LogLevel::Warn,
            "INFO" => LogLevel::Info,
            "DEBUG" => LogLevel::Debug,
            "TRACE" | "ALL" => LogLevel::Trace,
            _ => return None,
        })
    }

    /// The level's name as DescribeConfigs reports it.
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Off => "OFF",
            LogLevel::Error => "ERROR",
            LogLevel::Warn => "WARN",
            LogLevel::Info => "INFO",
            LogLevel::Debug => "DEBUG",
            LogLevel::Trace => "TRACE",
        }
    }

    /// The level as a `tracing` filter directive.
    fn directive(self) -> &'static str {
        match self {
            LogLevel::Off => "off",
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// Why a logger change was refused (INVALID_CONFIG / INVALID_REQUEST in the response).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoggerError {
    /// The level is not one of Kafka's log4j levels.
    InvalidLevel(String),
    /// The logger name is not a valid logger (empty or with characters no target has).
    InvalidLogger(String),
    /// Root's level can be changed but not removed.
    RemoveRoot,
}

impl std::fmt::Display for LoggerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoggerError::InvalidLevel(l) => write!(
                f,
                "Cannot set the log level to {l}: valid levels are OFF, FATAL, ERROR, WARN, INFO, DEBUG, TRACE, ALL"
            ),
            LoggerError::InvalidLogger(n) => write!(f, "Invalid logger name {n:?}"),
            LoggerError::RemoveRoot => write!(f, "Removing the log level of the root logger is not allowed"),
        }
    }
}

/// Where a logger's level comes from, as DescribeConfigs reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelSource {
    /// Set at run time (DYNAMIC_BROKER_LOGGER_CONFIG, 6).
    Dynamic,
    /// Set in the config file (`log.level` / `log.levels`: STATIC_BROKER_CONFIG, 4).
    Static,
    /// Inherited from an ancestor or root's default (DEFAULT_CONFIG, 5).
    Default,
}

impl LevelSource {
    /// Kafka's config source code.
    pub fn code(self) -> i8 {
        match self {
            LevelSource::Dynamic => 6,
            LevelSource::Static => 4,
            LevelSource::Default => 5,
        }
    }
}

/// One logger as DescribeConfigs lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggerLevel {
    /// The logger (`root` or a `tracing` target).
    pub name: String,
    /// Its effective level.
    pub level: LogLevel,
    /// Where the level comes from.
    pub source: LevelSource,
}

/// The function that applies a filter directive string to the process's subscriber.
type ReloadFn = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

static RELOAD: OnceLock<ReloadFn> = OnceLock::new();

/// Installs the process's log filter reload (the binary does, once, with the subscriber's
/// reload handle). Without it (in-process tests) levels are kept but change no output.
pub fn install_reload(f: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static) {
    let _ = RELOAD.set(Box::new(f));
}

/// Validates a logger name: `root` or a `tracing` target path.
fn valid_logger(name: &str) -> bool {
    name == ROOT_LOGGER
        || (!name.is_empty()
            && name
                .split("::")
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')))
}

/// Parses `log.levels` (`target=LEVEL,target=LEVEL`).
pub fn parse_levels(value: &str) -> Result<Vec<(String, LogLevel)>, LoggerError> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, level) = item
            .split_once('=')
            .ok_or_else(|| LoggerError::InvalidLogger(item.to_string()))?;
        let name = name.trim();
        if !valid_logger(name) {
            return Err(LoggerError::InvalidLogger(name.to_string()));
        }
        let level =
            LogLevel::parse(level).ok_or_else(|| LoggerError::InvalidLevel(level.into()))?;
        out.push((name.to_string(), level));
    }
    Ok(out)
}

#[derive(Debug)]
struct Levels {
    /// Levels from the config file (root included).
    configured: BTreeMap<String, LogLevel>,
    /// Levels set at run time; they win over the configured ones and last until restart.
    dynamic: BTreeMap<String, LogLevel>,
}

/// The broker's loggers: configured levels plus run-time changes.
#[derive(Debug)]
pub struct BrokerLoggers {
    levels: Mutex<Levels>,
}

impl BrokerLoggers {
    /// Loggers with root at `root` (`log.level`; `None`: INFO, the default) and the given
    /// per-logger levels (`log.levels`).
    pub fn new(root: Option<LogLevel>, levels: &[(String, LogLevel)]) -> Self {
        let mut configured: BTreeMap<String, LogLevel> = levels.iter().cloned().collect();
        if let Some(root) = root {
            configured.insert(ROOT_LOGGER.to_string(), root);
        }
        BrokerLoggers {
            levels: Mutex::new(Levels {
                configured,
                dynamic: BTreeMap::new(),
            }),
        }
    }

    /// The filter directives for the current levels (`info,nagare_raft=debug`), for the
    /// subscriber.
    pub fn directives(&self) -> String {
        Self::render(&self.levels.lock())
    }

    fn render(l: &Levels) -> String {
        let mut merged = l.configured.clone();
        merged.extend(l.dynamic.iter().map(|(k, v)| (k.clone(), *v)));
        let root = merged
            .remove(ROOT_LOGGER)
            .unwrap_or(LogLevel::Info)
            .directive();
        let mut out = root.to_string();
        for (name, level) in merged {
            out.push(',');
            out.push_str(&name);
            out.push('=');
            out.push_str(level.directive());
        }
        out
    }

    /// The effective level of one logger and where it comes from.
    pub fn level_of(&self, name: &str) -> LoggerLevel {
        Self::lookup(&self.levels.lock(), name)
    }

    fn lookup(l: &Levels, name: &str) -> LoggerLevel {
        let own = |n: &str| {
            l.dynamic
                .get(n)
                .map(|v| (*v, LevelSource::Dynamic))
                .or_else(|| l.configured.get(n).map(|v| (*v, LevelSource::Static)))
        };
        if let Some((level, source)) = own(name) {
            return LoggerLevel {
                name: name.to_string(),
                level,
                source,
            };
        }
        // log4j inheritance: the nearest ancestor with a level, else root.
        let mut prefix = name;
        while let Some((parent, _)) = prefix.rsplit_once("::") {
            if let Some((level, _)) = own(parent) {
                return LoggerLevel {
                    name: name.to_string(),
                    level,
                    source: LevelSource::Default,
                };
            }
            prefix = parent;
        }
        let root = own(ROOT_LOGGER).map(|(l, _)| l).unwrap_or(LogLevel::Info);
        LoggerLevel {
            name: name.to_string(),
            level: root,
            source: LevelSource::Default,
        }
    }

    /// Every logger: root, the known ones and any with a level of its own, sorted by name.
    pub fn describe(&self) -> Vec<LoggerLevel> {
        let l = self.levels.lock();
        let mut names: Vec<String> = KNOWN_LOGGERS.iter().map(|s| s.to_string()).collect();
        names.extend(l.configured.keys().cloned());
        names.extend(l.dynamic.keys().cloned());
        names.push(ROOT_LOGGER.to_string());
        names.sort();
        names.dedup();
        names.iter().map(|n| Self::lookup(&l, n)).collect()
    }

    /// Validates a change without applying it (validate_only, and the whole request first).
    pub fn validate(&self, name: &str, level: Option<&str>) -> Result<(), LoggerError> {
        if !valid_logger(name) {
            return Err(LoggerError::InvalidLogger(name.to_string()));
        }
        match level {
            Some(v) => LogLevel::parse(v)
                .map(|_| ())
                .ok_or_else(|| LoggerError::InvalidLevel(v.to_string())),
            None if name == ROOT_LOGGER => Err(LoggerError::RemoveRoot),
            None => Ok(()),
        }
    }

    /// Applies changes (SET with a level, DELETE with `None`): a deleted logger inherits again
    /// (Kafka sets it back to root's level). All are validated first; nothing changes on error.
    pub fn apply(&self, changes: &[(String, Option<String>)]) -> Result<(), LoggerError> {
        for (name, level) in changes {
            self.validate(name, level.as_deref())?;
        }
        let directives = {
            let mut l = self.levels.lock();
            for (name, level) in changes {
                match level.as_deref().and_then(LogLevel::parse) {
                    Some(v) => {
                        l.dynamic.insert(name.clone(), v);
                    }
                    None => {
                        l.dynamic.remove(name);
                        l.configured.remove(name);
                    }
                }
            }
            Self::render(&l)
        };
        if let Some(reload) = RELOAD.get() {
            if let Err(e) = reload(&directives) {
                tracing::error!(error = %e, %directives, "could not apply the new log levels");
            }
        }
        tracing::info!(%directives, "log levels changed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inheritance_sources_and_directives() {
        let l = BrokerLoggers::new(
            Some(LogLevel::Warn),
            &parse_levels("nagare_raft=DEBUG, nagare_broker::network=trace").expect("parse"),
        );
        assert_eq!(
            l.directives(),
            "warn,nagare_broker::network=trace,nagare_raft=debug"
        );
        let raft = l.level_of("nagare_raft::log");
        assert_eq!(
            (raft.level, raft.source),
            (LogLevel::Debug, LevelSource::Default)
        );
        let net = l.level_of("nagare_broker::network");
        assert_eq!(
            (net.level, net.source),
            (LogLevel::Trace, LevelSource::Static)
        );
        let other = l.level_of("nagare_storage");
        assert_eq!(
            (other.level, other.source),
            (LogLevel::Warn, LevelSource::Default)
        );

        l.apply(&[("nagare_storage".into(), Some("fatal".into()))])
            .expect("set");
        let s = l.level_of("nagare_storage::log");
        assert_eq!(s.level, LogLevel::Error);
        assert_eq!(l.level_of("nagare_storage").source, LevelSource::Dynamic);
        // DELETE: back to inheriting from root.
        l.apply(&[("nagare_raft".into(), None)]).expect("delete");
        assert_eq!(l.level_of("nagare_raft").level, LogLevel::Warn);
        assert!(l
            .describe()
            .iter()
            .any(|x| x.name == "root" && x.level == LogLevel::Warn));
    }

    #[test]
    fn bad_changes_are_refused_and_change_nothing() {
        let l = BrokerLoggers::new(None, &[]);
        assert_eq!(l.level_of("root").source, LevelSource::Default);
        let before = l.directives();
        assert_eq!(
            l.apply(&[
                ("nagare_raft".into(), Some("DEBUG".into())),
                ("nagare_storage".into(), Some("LOUD".into())),
            ]),
            Err(LoggerError::InvalidLevel("LOUD".into()))
        );
        assert_eq!(
            l.apply(&[("root".into(), None)]),
            Err(LoggerError::RemoveRoot)
        );
        assert_eq!(
            l.apply(&[("no spaces".into(), Some("INFO".into()))]),
            Err(LoggerError::InvalidLogger("no spaces".into()))
        );
        assert_eq!(l.directives(), before);
        assert!(parse_levels("nagare_raft").is_err());
        assert!(parse_levels("nagare_raft=LOUD").is_err());
    }
}
