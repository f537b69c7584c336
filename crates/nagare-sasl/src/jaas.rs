//! Kafka's `sasl.jaas.config` values (`JaasConfig`): one login module, a control flag and
//! `key=value` options, ended by `;` —
//! `org.apache.kafka.common.security.plain.PlainLoginModule required username="admin"
//! password="admin-secret" user_admin="admin-secret";`. Values may be bare words or quoted
//! with `"` or `'`; `\` escapes the next character inside quotes.

use std::collections::BTreeMap;

/// The PLAIN login module's class name.
pub const PLAIN_LOGIN_MODULE: &str = "org.apache.kafka.common.security.plain.PlainLoginModule";
/// The SCRAM login module's class name.
pub const SCRAM_LOGIN_MODULE: &str = "org.apache.kafka.common.security.scram.ScramLoginModule";
/// Kafka's OAUTHBEARER login module (its broker-side options configure the JWKS fetch's TLS).
pub const OAUTHBEARER_LOGIN_MODULE: &str =
    "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule";

/// One parsed login module entry.
#[derive(Clone, PartialEq, Eq)]
pub struct JaasEntry {
    /// The login module's class name.
    pub login_module: String,
    /// `required`, `requisite`, `sufficient` or `optional`.
    pub flag: String,
    /// The options, in key order.
    pub options: BTreeMap<String, String>,
}

impl std::fmt::Debug for JaasEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Options hold passwords: only their names are printable.
        f.debug_struct("JaasEntry")
            .field("login_module", &self.login_module)
            .field("flag", &self.flag)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl JaasEntry {
    /// The users of a `PlainLoginModule` entry: each `user_<name>="<password>"` option.
    pub fn plain_users(&self) -> BTreeMap<String, String> {
        self.options
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("user_")?.to_string(), v.clone())))
            .collect()
    }
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Equals,
    Semicolon,
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '=' => {
                chars.next();
                tokens.push(Token::Equals);
            }
            ';' => {
                chars.next();
                tokens.push(Token::Semicolon);
            }
            '"' | '\'' => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        None => return Err("unterminated quoted value".into()),
                        Some('\\') => match chars.next() {
                            Some(e) => value.push(e),
                            None => return Err("unterminated quoted value".into()),
                        },
                        Some(q) if q == c => break,
                        Some(other) => value.push(other),
                    }
                }
                tokens.push(Token::Quoted(value));
            }
            _ => {
                let mut word = String::new();
                while let Some(&w) = chars.peek() {
                    if w.is_whitespace() || matches!(w, '=' | ';' | '"' | '\'') {
                        break;
                    }
                    word.push(w);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

/// Parses a `sasl.jaas.config` value, which Kafka requires to hold exactly one login
/// module. The error never contains option values (they may be passwords).
pub fn parse(text: &str) -> Result<JaasEntry, String> {
    let tokens = tokenize(text)?;
    let mut it = tokens.into_iter();
    let login_module = match it.next() {
        Some(Token::Word(w)) => w,
        _ => return Err("JAAS config must start with a login module class name".into()),
    };
    let flag = match it.next() {
        Some(Token::Word(w))
            if ["required", "requisite", "sufficient", "optional"]
                .contains(&w.to_ascii_lowercase().as_str()) =>
        {
            w.to_ascii_lowercase()
        }
        _ => {
            return Err(format!(
                "JAAS config for {login_module}: expected a control flag (required, requisite, sufficient, optional)"
            ))
        }
    };
    let mut options = BTreeMap::new();
    loop {
        match it.next() {
            Some(Token::Semicolon) => break,
            Some(Token::Word(key)) => {
                if it.next() != Some(Token::Equals) {
                    return Err(format!("JAAS config: option {key} has no '=value'"));
                }
                match it.next() {
                    Some(Token::Word(v)) | Some(Token::Quoted(v)) => {
                        options.insert(key, v);
                    }
                    _ => return Err(format!("JAAS config: option {key} has no value")),
                }
            }
            Some(_) => return Err("JAAS config: expected an option name".into()),
            None => return Err("JAAS config must end with ';'".into()),
        }
    }
    if it.next().is_some() {
        return Err("JAAS config must contain exactly one login module".into());
    }
    Ok(JaasEntry {
        login_module,
        flag,
        options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kafka_plain_config() {
        let e = parse(
            "org.apache.kafka.common.security.plain.PlainLoginModule required \
             username=\"admin\" password=\"admin-secret\" user_admin=\"admin-secret\" \
             user_alice=\"alice-secret\";",
        )
        .expect("ok");
        assert_eq!(e.login_module, PLAIN_LOGIN_MODULE);
        assert_eq!(e.flag, "required");
        assert_eq!(e.options["username"], "admin");
        let users = e.plain_users();
        assert_eq!(users.len(), 2);
        assert_eq!(users["alice"], "alice-secret");
        assert_eq!(users["admin"], "admin-secret");
    }

    #[test]
    fn quoting_and_spacing() {
        let e = parse("M optional a=bare b = 'single q' c=\"with ; and = and \\\" inside\"  ;  ")
            .expect("ok");
        assert_eq!(e.options["a"], "bare");
        assert_eq!(e.options["b"], "single q");
        assert_eq!(e.options["c"], "with ; and = and \" inside");
        assert_eq!(parse("M Required;").expect("ok").flag, "required");
    }

    #[test]
    fn errors() {
        for bad in [
            "",
            "M",
            "M required a=\"b\"",
            "M maybe a=b;",
            "M required a=;",
            "M required a b;",
            "M required a=\"unterminated;",
            "M required a=b; N required c=d;",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        // Password values never reach the error text.
        let e = parse("M required user_a=\"s3cret\" x").expect_err("bad");
        assert!(!e.contains("s3cret"));
        let dbg = format!("{:?}", parse("M required user_a=\"s3cret\";").expect("ok"));
        assert!(!dbg.contains("s3cret"));
    }
}
