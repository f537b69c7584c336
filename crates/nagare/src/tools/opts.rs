//! A command-line parser with the rules of jopt-simple, the parser behind most of Kafka's
//! tools: long options only (`--name`), a value as the next argument or after `=`
//! (`--name=value`), unambiguous prefixes accepted as abbreviations (`--bootstrap` for
//! `--bootstrap-server`), repeatable options collecting every value. Options Kafka has and
//! Nagare's tool does not implement are declared too, so their error names them as
//! unsupported rather than unknown.

use std::collections::BTreeMap;

/// What an option takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A switch without a value.
    Flag,
    /// A required value.
    Value,
    /// An optional value (jopt-simple's `withOptionalArg`): the next argument if it is not an
    /// option itself.
    OptionalValue,
    /// An option Kafka's tool has that Nagare's does not implement; `true` if it takes a value.
    Unsupported(bool),
}

/// One option of a tool: its long name (without `--`) and kind.
pub type Spec = (&'static str, Kind);

/// A usage error: printed with the tool's name, exit code 1 as Kafka's tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Shorthand for a usage error.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// The parsed command line.
#[derive(Debug, Default, Clone)]
pub struct Parsed {
    /// Values by option name; a flag has one empty value per occurrence.
    values: BTreeMap<&'static str, Vec<String>>,
    /// Arguments that are not options (in order).
    pub positional: Vec<String>,
}

impl Parsed {
    /// True if the option was given.
    pub fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// The last value of the option (jopt-simple's `valueOf` with repeats: the first; Kafka's
    /// tools never repeat single-valued options, so either is fine).
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    /// Every value of a repeatable option.
    pub fn values(&self, name: &str) -> &[String] {
        self.values.get(name).map_or(&[], Vec::as_slice)
    }

    /// The value parsed as a number, or a usage error naming the option.
    pub fn number<T: std::str::FromStr>(&self, name: &str) -> anyhow::Result<Option<T>> {
        match self.value(name) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<T>()
                .map(Some)
                .map_err(|_| usage(format!("Invalid value '{v}' for option --{name}"))),
        }
    }

    /// The value, or a usage error saying the option is required.
    pub fn required(&self, name: &str) -> anyhow::Result<&str> {
        self.value(name)
            .ok_or_else(|| usage(format!("Missing required argument \"[{name}]\"")))
    }

    /// Which of `names` were given.
    pub fn given<'a>(&self, names: &[&'a str]) -> Vec<&'a str> {
        names.iter().copied().filter(|n| self.has(n)).collect()
    }

    /// Exactly one of `names` must be given (Kafka: "Command must include exactly one action").
    pub fn exactly_one<'a>(&self, names: &[&'a str]) -> anyhow::Result<&'a str> {
        let given = self.given(names);
        match given.as_slice() {
            [one] => Ok(one),
            _ => Err(usage(format!(
                "Command must include exactly one action: {}",
                names
                    .iter()
                    .map(|n| format!("--{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// `option` is only valid with one of `with` (Kafka's `checkInvalidArgs`).
    pub fn only_with(&self, option: &str, with: &[&str]) -> anyhow::Result<()> {
        if self.has(option) && !with.iter().any(|w| self.has(w)) {
            return Err(usage(format!(
                "Option \"[{option}]\" can't be used without {}",
                with.iter()
                    .map(|w| format!("\"[{w}]\""))
                    .collect::<Vec<_>>()
                    .join(" or ")
            )));
        }
        Ok(())
    }
}

/// Parses `args` against `specs`. `tool` names the tool in errors.
pub fn parse(tool: &str, specs: &[Spec], args: &[String]) -> anyhow::Result<Parsed> {
    let mut parsed = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            parsed.positional.extend(args[i..].iter().cloned());
            break;
        }
        let Some(body) = arg.strip_prefix("--") else {
            parsed.positional.push(arg.clone());
            continue;
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (body, None),
        };
        let (spec_name, kind) = lookup(specs, name)?;
        match kind {
            Kind::Unsupported(_) => {
                return Err(usage(format!(
                    "Option --{spec_name} of {tool} is not supported by Nagare"
                )))
            }
            Kind::Flag => {
                if inline.is_some() {
                    return Err(usage(format!("Option --{spec_name} takes no argument")));
                }
                parsed
                    .values
                    .entry(spec_name)
                    .or_default()
                    .push(String::new());
            }
            Kind::OptionalValue => {
                let value = match inline {
                    Some(v) => v,
                    None => match args.get(i) {
                        Some(v) if !v.starts_with("--") => {
                            i += 1;
                            v.clone()
                        }
                        _ => String::new(),
                    },
                };
                parsed.values.entry(spec_name).or_default().push(value);
            }
            Kind::Value => {
                let value = match inline {
                    Some(v) => v,
                    None => {
                        let v = args.get(i).ok_or_else(|| {
                            usage(format!("Option --{spec_name} requires an argument"))
                        })?;
                        i += 1;
                        v.clone()
                    }
                };
                parsed.values.entry(spec_name).or_default().push(value);
            }
        }
    }
    Ok(parsed)
}

/// The spec an option name or unambiguous prefix names.
fn lookup(specs: &[Spec], name: &str) -> anyhow::Result<(&'static str, Kind)> {
    if let Some(&(n, k)) = specs.iter().find(|(n, _)| *n == name) {
        return Ok((n, k));
    }
    let matches: Vec<&Spec> = specs
        .iter()
        .filter(|(n, _)| !name.is_empty() && n.starts_with(name))
        .collect();
    match matches.as_slice() {
        [(n, k)] => Ok((n, *k)),
        [] => Err(usage(format!("{name} is not a recognized option"))),
        many => Err(usage(format!(
            "Option {name} is ambiguous (could be {})",
            many.iter()
                .map(|(n, _)| format!("--{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Splits `k=v,k2=v2` (Kafka's `--add-config` / `--property` lists): commas inside `[...]`
/// do not split, as in `SCRAM-SHA-256=[iterations=8192,password=pw]`.
pub fn split_key_values(s: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for item in split_top_level(s) {
        if item.trim().is_empty() {
            continue;
        }
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| usage(format!("Invalid entity config: all configs to be added must be in the format \"key=val\": '{item}'")))?;
        let v = v.trim();
        let v = v
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .unwrap_or(v);
        out.push((k.trim().to_owned(), v.to_owned()));
    }
    Ok(out)
}

/// Splits at commas outside square brackets.
pub fn split_top_level(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '[' => {
                depth += 1;
                cur.push(c);
            }
            ']' => {
                depth -= 1;
                cur.push(c);
            }
            ',' if depth <= 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[Spec] = &[
        ("bootstrap-server", Kind::Value),
        ("topic", Kind::Value),
        ("config", Kind::Value),
        ("create", Kind::Flag),
        ("command-config", Kind::Value),
        ("replica-assignment", Kind::Unsupported(true)),
    ];

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn values_flags_repeats_and_equals() {
        let p = parse(
            "kafka-topics.sh",
            SPECS,
            &args(&[
                "--bootstrap-server",
                "h:1",
                "--create",
                "--topic=t",
                "--config",
                "a=1",
                "--config",
                "b=2",
            ]),
        )
        .expect("ok");
        assert_eq!(p.value("bootstrap-server"), Some("h:1"));
        assert_eq!(p.value("topic"), Some("t"));
        assert!(p.has("create"));
        assert_eq!(p.values("config"), &["a=1".to_owned(), "b=2".to_owned()]);
        assert!(p.positional.is_empty());
    }

    #[test]
    fn abbreviations_like_jopt_simple() {
        let p = parse("t", SPECS, &args(&["--bootstrap", "h:1", "--cr"])).expect("ok");
        assert_eq!(p.value("bootstrap-server"), Some("h:1"));
        assert!(p.has("create"));
        // `--co` could be --config or --command-config.
        let e = parse("t", SPECS, &args(&["--co", "x"])).expect_err("ambiguous");
        assert!(e.to_string().contains("ambiguous"), "{e}");
    }

    #[test]
    fn errors_name_the_option() {
        let e = parse("kafka-topics.sh", SPECS, &args(&["--nope"])).expect_err("unknown");
        assert_eq!(e.to_string(), "nope is not a recognized option");
        let e = parse(
            "kafka-topics.sh",
            SPECS,
            &args(&["--replica-assignment", "1:2"]),
        )
        .expect_err("unsupported");
        assert_eq!(
            e.to_string(),
            "Option --replica-assignment of kafka-topics.sh is not supported by Nagare"
        );
        let e = parse("t", SPECS, &args(&["--topic"])).expect_err("missing value");
        assert!(
            e.to_string().contains("--topic requires an argument"),
            "{e}"
        );
        let e = parse("t", SPECS, &args(&["--create=yes"])).expect_err("flag with value");
        assert!(e.to_string().contains("takes no argument"), "{e}");
    }

    #[test]
    fn actions_and_dependencies() {
        let p = parse("t", SPECS, &args(&["--create", "--config", "a=1"])).expect("ok");
        assert_eq!(p.exactly_one(&["create", "topic"]).expect("one"), "create");
        let p = parse("t", SPECS, &args(&["--config", "a=1"])).expect("ok");
        assert!(p.exactly_one(&["create", "topic"]).is_err());
        assert!(p.only_with("config", &["create"]).is_err());
        assert!(p.required("topic").is_err());
    }

    #[test]
    fn key_value_lists_keep_bracketed_commas() {
        assert_eq!(
            split_key_values("a=1,SCRAM-SHA-256=[iterations=8192,password=pw],b=x=y").expect("ok"),
            vec![
                ("a".into(), "1".into()),
                ("SCRAM-SHA-256".into(), "iterations=8192,password=pw".into()),
                ("b".into(), "x=y".into()),
            ]
        );
        assert!(split_key_values("novalue").is_err());
    }
}
