//! mTLS principals, as Kafka's `DefaultKafkaPrincipalBuilder` makes them for SSL connections:
//! the client certificate's subject as an RFC 2253 distinguished name (Java's
//! `X500Principal.getName()`), passed through `ssl.principal.mapping.rules`
//! (`SslPrincipalMapper`, KIP-371). Pure functions over bytes and strings: no I/O.

use regex::Regex;

/// A `ssl.principal.mapping.rules` parse error (Kafka fails startup on these too).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rule in ssl.principal.mapping.rules: {0}")]
pub struct RuleError(pub String);

/// One rule: `DEFAULT` (the DN unchanged) or `RULE:pattern/replacement/[LU]`.
#[derive(Debug, Clone)]
enum Rule {
    Default,
    Replace {
        /// The pattern anchored at both ends: Kafka applies a rule only when the whole DN
        /// matches (`Matcher.matches()`).
        whole: Regex,
        /// The pattern as written, for the replacement (`String.replaceAll`).
        pattern: Regex,
        /// The replacement in the `regex` crate's syntax.
        replacement: String,
        lower: bool,
        upper: bool,
    },
}

/// `ssl.principal.mapping.rules`: the first rule matching a DN decides the principal name.
#[derive(Debug, Clone)]
pub struct PrincipalMapper {
    rules: Vec<Rule>,
}

impl Default for PrincipalMapper {
    /// Kafka's default, `DEFAULT`: the principal name is the DN.
    fn default() -> Self {
        PrincipalMapper {
            rules: vec![Rule::Default],
        }
    }
}

impl PrincipalMapper {
    /// Parses Kafka's syntax: rules separated by commas or newlines, each `DEFAULT` or
    /// `RULE:pattern/replacement/` optionally followed by `L` (lower-case) or `U`
    /// (upper-case). A pattern may itself contain commas (it ends at the `/`).
    pub fn parse(text: &str) -> Result<Self, RuleError> {
        let mut rules = Vec::new();
        let mut rest = text.trim_start();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("DEFAULT") {
                rules.push(Rule::Default);
                rest = r;
            } else if let Some(r) = rest.strip_prefix("RULE:") {
                let (pattern, r) = r
                    .split_once('/')
                    .ok_or_else(|| RuleError(format!("missing '/' after the pattern in {rest}")))?;
                let (replacement, r) = r.split_once('/').ok_or_else(|| {
                    RuleError(format!("missing '/' after the replacement in {rest}"))
                })?;
                let (lower, upper, r) = match r.chars().next() {
                    Some('L') => (true, false, &r[1..]),
                    Some('U') => (false, true, &r[1..]),
                    _ => (false, false, r),
                };
                let whole = Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| RuleError(format!("bad pattern {pattern:?}: {e}")))?;
                let pattern_re = Regex::new(pattern)
                    .map_err(|e| RuleError(format!("bad pattern {pattern:?}: {e}")))?;
                rules.push(Rule::Replace {
                    whole,
                    pattern: pattern_re,
                    replacement: java_replacement(replacement),
                    lower,
                    upper,
                });
                rest = r;
            } else {
                return Err(RuleError(rest.to_string()));
            }
            // Between rules: optional spaces, then a comma or a newline (or the end).
            let r = rest.trim_start_matches([' ', '\t', '\r']);
            rest = match r.chars().next() {
                None => r,
                Some(',') | Some('\n') => r[1..].trim_start(),
                Some(_) => return Err(RuleError(format!("unexpected text {r:?}"))),
            };
        }
        if rules.is_empty() {
            return Err(RuleError("no rules".into()));
        }
        Ok(PrincipalMapper { rules })
    }

    /// The principal name for `dn`, or `None` when no rule matches (Kafka then fails the
    /// authentication with `NoMatchingRule`).
    pub fn map(&self, dn: &str) -> Option<String> {
        self.rules.iter().find_map(|rule| match rule {
            Rule::Default => Some(dn.to_string()),
            Rule::Replace {
                whole,
                pattern,
                replacement,
                lower,
                upper,
            } => {
                if !whole.is_match(dn) {
                    return None;
                }
                let out = pattern.replace_all(dn, replacement.as_str()).into_owned();
                Some(if *lower {
                    out.to_lowercase()
                } else if *upper {
                    out.to_uppercase()
                } else {
                    out
                })
            }
        })
    }
}

/// Java's `Matcher.replaceAll` replacement (`$1`, `${name}`, `\` escapes) in the `regex`
/// crate's syntax, where `$1x` would name a group `1x`.
fn java_replacement(java: &str) -> String {
    let mut out = String::with_capacity(java.len() + 4);
    let mut chars = java.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(other) => out.push(other),
                None => {}
            },
            '$' if chars.peek().is_some_and(|d| d.is_ascii_digit()) => {
                out.push_str("${");
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    out.push(d);
                    chars.next();
                }
                out.push('}');
            }
            other => out.push(other),
        }
    }
    out
}

/// The subject of a DER certificate as an RFC 2253 string, as Java's
/// `X500Principal.getName()` writes it (what Kafka maps): the RDNs last to first, separated
/// by `,`, multi-valued RDNs joined with `+`, the keywords CN, C, L, ST, O, OU, STREET, DC
/// and UID, other attributes as `oid=#hex` of their DER encoding.
pub fn subject_rfc2253(cert_der: &[u8]) -> Result<String, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| format!("cannot parse the client certificate: {e}"))?;
    let rdns: Vec<String> = cert
        .subject()
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let oid = atv.attr_type().to_id_string();
                    let value = atv.attr_value();
                    match (keyword(&oid), decode_string(value)) {
                        (Some(k), Some(s)) => format!("{k}={}", escape(&s)),
                        (k, _) => format!("{}=#{}", k.unwrap_or(&oid), der_hex(value)),
                    }
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    Ok(rdns.into_iter().rev().collect::<Vec<_>>().join(","))
}

/// The attribute keywords Java's RFC 2253 output uses.
fn keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// A directory string's text (UTF8, Printable, IA5, Numeric, Teletex as Latin-1, BMP as
/// UTF-16, Universal as UTF-32), `None` for other types.
fn decode_string(v: &x509_parser::der_parser::asn1_rs::Any<'_>) -> Option<String> {
    let data = v.data;
    match v.header.tag().0 {
        12 | 18 | 19 | 22 | 26 => std::str::from_utf8(data).ok().map(str::to_string),
        20 => Some(data.iter().map(|&b| b as char).collect()),
        30 => {
            let units: Vec<u16> = data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        28 => data
            .chunks_exact(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => None,
    }
}

/// RFC 2253 §2.4 escaping, as Java applies it.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let last = s.chars().count().saturating_sub(1);
    for (i, c) in s.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `#hex` form: the value's full DER encoding (tag, length, contents).
fn der_hex(v: &x509_parser::der_parser::asn1_rs::Any<'_>) -> String {
    let h = &v.header;
    let class = h.class() as u8;
    let tag = h.tag().0.min(30) as u8;
    let mut der = vec![(class << 6) | (u8::from(h.is_constructed()) << 5) | tag];
    let len = v.data.len();
    if len < 128 {
        der.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        der.push(0x80 | bytes.len() as u8);
        der.extend(bytes);
    }
    der.extend_from_slice(v.data);
    der.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's documented examples (docs/security.html, "Customizing SSL User Name").
    #[test]
    fn kafka_documented_rules() {
        let rules = "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,\n\
                     RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,\n\
                     RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L,\n\
                     DEFAULT";
        let m = PrincipalMapper::parse(rules).expect("rules");
        assert_eq!(
            m.map("CN=serviceuser,OU=ServiceUsers,O=Unknown,L=Unknown,ST=Unknown,C=Unknown")
                .as_deref(),
            Some("serviceuser")
        );
        assert_eq!(
            m.map("CN=adminUser,OU=Admin,O=Unknown,L=Unknown,ST=Unknown,C=Unknown")
                .as_deref(),
            Some("adminuser@admin")
        );
        assert_eq!(m.map("OU=x,cn=Some.Host,O=y").as_deref(), Some("some.host"));
        // Nothing but DEFAULT matches.
        assert_eq!(m.map("O=nobody").as_deref(), Some("O=nobody"));
        let upper = PrincipalMapper::parse(
            "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/U",
        )
        .expect("rule");
        assert_eq!(
            upper
                .map("CN=adminUser,OU=Admin,O=Unknown,L=Unknown,ST=Unknown,C=Unknown")
                .as_deref(),
            Some("ADMINUSER@ADMIN")
        );
        // Without DEFAULT, a DN no rule matches has no principal (authentication fails).
        assert_eq!(upper.map("CN=a"), None);
    }

    #[test]
    fn default_and_syntax_errors() {
        let m = PrincipalMapper::default();
        assert_eq!(m.map("CN=alice,O=acme").as_deref(), Some("CN=alice,O=acme"));
        let m = PrincipalMapper::parse("  DEFAULT  ").expect("default");
        assert_eq!(m.map("CN=a").as_deref(), Some("CN=a"));
        assert!(PrincipalMapper::parse("RULE:^CN=(.*)$").is_err());
        assert!(PrincipalMapper::parse("RULE:^CN=(.*)$/$1").is_err());
        assert!(PrincipalMapper::parse("NOPE").is_err());
        assert!(PrincipalMapper::parse("RULE:(/x/").is_err());
        assert!(PrincipalMapper::parse("DEFAULT junk").is_err());
        // `$1` followed by text, and an escaped dollar, as Java reads them.
        let m = PrincipalMapper::parse(r"RULE:^CN=(\w+)$/$1x\$/").expect("rule");
        assert_eq!(m.map("CN=bob").as_deref(), Some("bobx$"));
    }

    #[test]
    fn rfc2253_subject_of_a_certificate() {
        let mut params = rcgen::CertificateParams::new(vec![]).expect("params");
        let mut dn = rcgen::DistinguishedName::new();
        // Written in DER order; RFC 2253 lists them the other way round.
        dn.push(rcgen::DnType::OrganizationName, "acme");
        dn.push(rcgen::DnType::OrganizationalUnitName, "eng");
        dn.push(rcgen::DnType::CommonName, "alice, \"the\" admin");
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let dn = subject_rfc2253(cert.der()).expect("dn");
        assert_eq!(dn, r#"CN=alice\, \"the\" admin,OU=eng,O=acme"#);
        assert!(subject_rfc2253(b"not a certificate").is_err());
    }

    #[test]
    fn escaping_follows_rfc2253() {
        assert_eq!(escape(" #a+b "), r"\ #a\+b\ ");
        assert_eq!(escape("#x"), r"\#x");
        assert_eq!(escape("a;b<c>"), r"a\;b\<c\>");
    }
}
