//! Reading properties: the `server.properties` syntax, `--override key=value`, and typed
//! values whose defaults come from the definition table.

use std::collections::BTreeMap;
use std::path::Path;

use super::definitions::{self, DefaultValue};
use super::{invalid, ConfigError};

/// Parses `server.properties` text (Java properties: `key=value`, `key: value` or
/// `key value`; `#`/`!` comments; `\` line continuations).
pub fn parse_properties(text: &str, path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    let mut pending = String::new();
    let mut start_line = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if pending.is_empty() {
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            start_line = i + 1;
        }
        if let Some(stripped) = line.strip_suffix('\\') {
            pending.push_str(stripped);
            continue;
        }
        pending.push_str(line);
        let entry = std::mem::take(&mut pending);
        let split = entry
            .find(['=', ':'])
            .or_else(|| entry.find(char::is_whitespace));
        let Some(pos) = split else {
            return Err(ConfigError::Malformed {
                path: path.to_path_buf(),
                line: start_line,
                text: entry,
            });
        };
        let key = entry[..pos].trim().to_string();
        let value = entry[pos + 1..].trim().to_string();
        if key.is_empty() {
            return Err(ConfigError::Malformed {
                path: path.to_path_buf(),
                line: start_line,
                text: entry,
            });
        }
        out.push((key, value));
    }
    Ok(out)
}

/// The properties of a file (if any) followed by `key=value` overrides; a later value of a
/// key replaces an earlier one, so an override wins over the file.
pub(crate) fn read_props(
    file: Option<&Path>,
    overrides: &[String],
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut pairs = Vec::new();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        pairs.extend(parse_properties(&text, path)?);
    }
    for o in overrides {
        let Some((k, v)) = o.split_once('=') else {
            return Err(invalid(o, "", "an override must be key=value"));
        };
        pairs.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(pairs.into_iter().collect())
}

/// Typed reads of validated properties, falling back to the table's default.
///
/// Only for keys whose values were already checked by [`definitions::check`], so a given
/// value parses; a key without a literal default in the table is a programming error
/// (every accessor runs in the unit tests with an empty file, so it cannot ship).
#[derive(Clone, Copy)]
pub(crate) struct Props<'a> {
    props: &'a BTreeMap<String, String>,
}

impl<'a> Props<'a> {
    /// Reads from these properties.
    pub(crate) fn new(props: &'a BTreeMap<String, String>) -> Self {
        Props { props }
    }

    /// The value as given, if given.
    pub(crate) fn given(&self, key: &str) -> Option<&'a str> {
        self.props.get(key).map(String::as_str)
    }

    /// The value as given, else the table's literal default (`None` for keys without one).
    pub(crate) fn text(&self, key: &str) -> Option<&'a str> {
        self.given(key).or_else(|| match lookup(key).default {
            DefaultValue::Value(v) => Some(v),
            DefaultValue::Null | DefaultValue::Derived(_) => None,
        })
    }

    /// An integer: the given value, else the table's default.
    pub(crate) fn int(&self, key: &str) -> i64 {
        self.given(key)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or_else(|| parse_default(key))
    }

    /// A boolean: `true` (any case) is true, anything else false; the table's default when
    /// not given.
    pub(crate) fn boolean(&self, key: &str) -> bool {
        match self.given(key) {
            Some(v) => v.trim().eq_ignore_ascii_case("true"),
            None => literal_default(key).eq_ignore_ascii_case("true"),
        }
    }
}

fn lookup(key: &str) -> &'static definitions::ConfigDef {
    match definitions::definition(key) {
        Some(d) => d,
        None => panic!("broker config {key} is read but has no definition in BROKER_CONFIGS"),
    }
}

fn literal_default(key: &str) -> &'static str {
    match lookup(key).default {
        DefaultValue::Value(v) => v,
        DefaultValue::Null | DefaultValue::Derived(_) => {
            panic!("broker config {key} is read with its default, but the table has no literal one")
        }
    }
}

fn parse_default(key: &str) -> i64 {
    let v = literal_default(key);
    match v.parse::<i64>() {
        Ok(n) => n,
        Err(_) => panic!("the default {v:?} of broker config {key} is not an integer"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_syntax() {
        let p =
            parse_properties("a = 1\nb: 2\n! c\nlong=x\\\n  y\n", Path::new("x")).expect("parse");
        assert_eq!(
            p,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "2".into()),
                ("long".into(), "xy".into())
            ]
        );
    }

    #[test]
    fn overrides_replace_file_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("server.properties");
        std::fs::write(&path, "num.partitions=3\nnode.id=4\n").expect("write");
        let props = read_props(Some(&path), &["num.partitions = 7".into()]).expect("props");
        assert_eq!(props.get("num.partitions").map(String::as_str), Some("7"));
        assert_eq!(props.get("node.id").map(String::as_str), Some("4"));
        let e = read_props(None, &["oops".into()]).unwrap_err().to_string();
        assert!(e.contains("oops") && e.contains("key=value"), "{e}");
    }

    #[test]
    fn typed_reads_fall_back_to_the_table() {
        let mut m = BTreeMap::new();
        m.insert("num.partitions".to_string(), " 5 ".to_string());
        m.insert("auto.create.topics.enable".to_string(), "FALSE".to_string());
        let p = Props::new(&m);
        assert_eq!(p.int("num.partitions"), 5);
        assert_eq!(p.int("default.replication.factor"), 1);
        assert!(!p.boolean("auto.create.topics.enable"));
        assert!(p.boolean("delete.topic.enable"));
        assert_eq!(p.text("controller.listener.names"), Some("CONTROLLER"));
        assert_eq!(p.text("broker.rack"), None);
    }
}
