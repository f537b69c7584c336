//! SASL/OAUTHBEARER (RFC 7628, KIP-255, KIP-768), server side, as Kafka's broker runs it
//! with `OAuthBearerValidatorCallbackHandler`: the client's initial response carries a JWT
//! (`auth=Bearer <jwt>`), whose signature is checked against a JSON Web Key Set (RFC 7517)
//! and whose claims (`exp`, `iat`, `nbf`, `aud`, `iss`, the principal claim) are checked
//! against the listener's `sasl.oauthbearer.*` settings.
//!
//! Sans-I/O: the caller supplies the key set (read from a file or URL elsewhere) and the
//! current time. Signatures are verified with `ring` (RS256/384/512, ES256/ES384); `none`
//! and the HMAC algorithms are refused, as Kafka's validator does (`DISALLOW_NONE`, and an
//! HMAC key can never come from a public JWKS).

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::Value;

use crate::SaslError;

/// RFC 7628 §3.2.2's error challenge Kafka's `OAuthBearerSaslServer` sends for a token that
/// failed validation; the client acknowledges it with a lone `\x01`, and the exchange then
/// fails with SASL_AUTHENTICATION_FAILED.
pub const INVALID_TOKEN_CHALLENGE: &[u8] = br#"{"status":"invalid_token"}"#;

/// The separator of the key/value pairs in OAUTHBEARER messages (RFC 7628 `kvsep`).
const KVSEP: char = '\u{1}';

/// The client's first (and, on success, only) OAUTHBEARER message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInitialResponse {
    /// The GS2 authorization id (`a=`), if given: must equal the token's principal.
    pub authzid: Option<String>,
    /// The bearer token (a compact JWS).
    pub token: String,
    /// SASL extensions (KIP-342): every key/value pair besides `auth`.
    pub extensions: BTreeMap<String, String>,
}

/// Parses a client initial response: `n,[a=<authzid>],` then `\x01`-separated `key=value`
/// pairs (one `auth=Bearer <token>`, the rest extensions), ending with `\x01\x01`. Kafka's
/// `OAuthBearerClientInitialResponse` rules: the GS2 flag must be `n` or `y` (no channel
/// binding), extension keys are letters only, values printable ASCII or whitespace.
pub fn parse_client_initial_response(message: &[u8]) -> Result<ClientInitialResponse, SaslError> {
    let bad = |why: &str| {
        SaslError::Malformed(format!("Invalid OAUTHBEARER client first message: {why}"))
    };
    let text = std::str::from_utf8(message).map_err(|_| bad("not UTF-8"))?;
    let (flag, rest) = text.split_once(',').ok_or_else(|| bad("no GS2 header"))?;
    if flag != "n" && flag != "y" {
        return Err(bad("channel binding is not supported"));
    }
    let (authzid, rest) = rest.split_once(',').ok_or_else(|| bad("no GS2 header"))?;
    let authzid = match authzid {
        "" => None,
        a => Some(
            a.strip_prefix("a=")
                .filter(|a| !a.is_empty())
                .ok_or_else(|| bad("invalid authorization id"))?
                // RFC 5801 saslname escapes.
                .replace("=2C", ",")
                .replace("=3D", "="),
        ),
    };
    let pairs = rest
        .strip_prefix(KVSEP)
        .and_then(|r| r.strip_suffix("\u{1}\u{1}"))
        .ok_or_else(|| bad("key/value pairs must start with 0x01 and end with 0x01 0x01"))?;
    let mut token = None;
    let mut extensions = BTreeMap::new();
    for pair in pairs.split(KVSEP) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| bad("key/value pair without '='"))?;
        if key == "auth" {
            let (scheme, t) = value
                .split_once(' ')
                .ok_or_else(|| bad("auth is not '<scheme> <token>'"))?;
            let t = t.trim_start_matches(' ');
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(bad("auth scheme is not Bearer"));
            }
            let token_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
            if t.is_empty() || !t.chars().all(token_char) {
                return Err(bad("invalid bearer token"));
            }
            if token.replace(t.to_string()).is_some() {
                return Err(bad("auth given twice"));
            }
        } else {
            let value_char = |c: char| matches!(c, '\x21'..='\x7e' | ' ' | '\t' | '\r' | '\n');
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphabetic()) {
                return Err(bad("invalid extension key"));
            }
            if !value.chars().all(value_char) {
                return Err(bad("invalid extension value"));
            }
            extensions.insert(key.to_string(), value.to_string());
        }
    }
    let token = token.ok_or_else(|| bad("no auth=Bearer <token>"))?;
    Ok(ClientInitialResponse {
        authzid,
        token,
        extensions,
    })
}

/// The client's OAUTHBEARER initial response for `token` (what Kafka's and librdkafka's
/// clients send), for tests and `nagare-client`.
pub fn client_initial_response(token: &str, extensions: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = format!("n,,\u{1}auth=Bearer {token}");
    for (k, v) in extensions {
        out.push(KVSEP);
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out.push_str("\u{1}\u{1}");
    out.into_bytes()
}

/// A JWS signature algorithm Nagare verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
}

impl Algorithm {
    /// The algorithm named by a JWS header's `alg`, if Nagare accepts it.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "RS256" => Algorithm::Rs256,
            "RS384" => Algorithm::Rs384,
            "RS512" => Algorithm::Rs512,
            "ES256" => Algorithm::Es256,
            "ES384" => Algorithm::Es384,
            _ => return None,
        })
    }

    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Rs384 => "RS384",
            Algorithm::Rs512 => "RS512",
            Algorithm::Es256 => "ES256",
            Algorithm::Es384 => "ES384",
        }
    }
}

/// A public key of a JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyMaterial {
    /// `kty: RSA`: modulus and exponent, big-endian.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// `kty: EC`: the uncompressed point `04 || x || y` on `crv`.
    Ec { curve: EcCurve, point: Vec<u8> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EcCurve {
    P256,
    P384,
}

/// One signing key of a JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    /// `kid`, if any.
    pub kid: Option<String>,
    /// `alg`, if the key is restricted to one algorithm.
    alg: Option<String>,
    material: KeyMaterial,
}

impl Jwk {
    /// Whether this key can verify `alg` (right key type and curve, and the key's own
    /// `alg`, when given, is `alg`).
    fn fits(&self, alg: Algorithm) -> bool {
        if self.alg.as_deref().is_some_and(|a| a != alg.name()) {
            return false;
        }
        match (&self.material, alg) {
            (KeyMaterial::Rsa { .. }, Algorithm::Rs256 | Algorithm::Rs384 | Algorithm::Rs512) => {
                true
            }
            (KeyMaterial::Ec { curve, .. }, Algorithm::Es256) => *curve == EcCurve::P256,
            (KeyMaterial::Ec { curve, .. }, Algorithm::Es384) => *curve == EcCurve::P384,
            _ => false,
        }
    }

    fn verify(&self, alg: Algorithm, message: &[u8], sig: &[u8]) -> bool {
        match &self.material {
            KeyMaterial::Rsa { n, e } => {
                let params = match alg {
                    Algorithm::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Algorithm::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Algorithm::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    _ => return false,
                };
                RsaPublicKeyComponents { n, e }
                    .verify(params, message, sig)
                    .is_ok()
            }
            KeyMaterial::Ec { point, .. } => {
                let params = match alg {
                    Algorithm::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
                    Algorithm::Es384 => &signature::ECDSA_P384_SHA384_FIXED,
                    _ => return false,
                };
                UnparsedPublicKey::new(params, point)
                    .verify(message, sig)
                    .is_ok()
            }
        }
    }
}

/// A JSON Web Key Set (RFC 7517 §5): the signing keys tokens are checked against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Jwks {
    keys: Vec<Jwk>,
}

fn b64(value: &Value, field: &str) -> Result<Vec<u8>, String> {
    let text = value
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing {field}"))?;
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| format!("{field} is not base64url"))
}

impl Jwks {
    /// Parses a JWKS document. Keys Nagare cannot use (other key types or curves, `use`
    /// other than `sig`, symmetric keys) are skipped, as a JWKS may mix them; a document
    /// that is not a key set, or a usable-looking key with broken fields, is an error.
    pub fn parse(json: &str) -> Result<Self, String> {
        let doc: Value =
            serde_json::from_str(json).map_err(|e| format!("JWKS is not JSON: {e}"))?;
        let list = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("JWKS has no \"keys\" array")?;
        let mut keys = Vec::new();
        for (i, k) in list.iter().enumerate() {
            if k.get("use")
                .and_then(Value::as_str)
                .is_some_and(|u| u != "sig")
            {
                continue;
            }
            let kid = k.get("kid").and_then(Value::as_str).map(str::to_string);
            let alg = k.get("alg").and_then(Value::as_str).map(str::to_string);
            let err =
                |e: String| format!("JWKS key {i} ({}): {e}", kid.as_deref().unwrap_or("no kid"));
            let material = match k.get("kty").and_then(Value::as_str) {
                Some("RSA") => KeyMaterial::Rsa {
                    n: b64(k, "n").map_err(err)?,
                    e: b64(k, "e").map_err(err)?,
                },
                Some("EC") => {
                    let (curve, len) = match k.get("crv").and_then(Value::as_str) {
                        Some("P-256") => (EcCurve::P256, 32),
                        Some("P-384") => (EcCurve::P384, 48),
                        _ => continue,
                    };
                    let x = b64(k, "x").map_err(err)?;
                    let y = b64(k, "y").map_err(err)?;
                    if x.len() != len || y.len() != len {
                        return Err(err("x or y has the wrong length for its curve".into()));
                    }
                    let mut point = Vec::with_capacity(1 + 2 * len);
                    point.push(4);
                    point.extend_from_slice(&x);
                    point.extend_from_slice(&y);
                    KeyMaterial::Ec { curve, point }
                }
                _ => continue,
            };
            keys.push(Jwk { kid, alg, material });
        }
        Ok(Jwks { keys })
    }

    /// Whether a key with this `kid` is in the set.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// How many usable keys the set holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key for a token: the one with its `kid`; without a `kid`, the only key that fits
    /// the algorithm (jose4j's `VerificationJwkSelector`, which Kafka uses, does the same).
    fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<&Jwk, String> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid) && k.fits(alg))
                .ok_or_else(|| format!("no key with kid {kid:?} for {} in the JWKS", alg.name())),
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.fits(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(k), None) => Ok(k),
                    (None, _) => Err(format!("no key for {} in the JWKS", alg.name())),
                    (Some(_), Some(_)) => {
                        Err("the token has no kid and several JWKS keys fit".into())
                    }
                }
            }
        }
    }
}

/// A listener's token checks (`sasl.oauthbearer.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorConfig {
    /// `sasl.oauthbearer.expected.audience`: if not empty, the token's `aud` must hold one.
    pub expected_audience: Vec<String>,
    /// `sasl.oauthbearer.expected.issuer`: if set, `iss` must equal it.
    pub expected_issuer: Option<String>,
    /// `sasl.oauthbearer.clock.skew.seconds` (Kafka's default 30).
    pub clock_skew_seconds: i64,
    /// `sasl.oauthbearer.sub.claim.name` (default `sub`): the claim naming the principal.
    pub sub_claim_name: String,
}

impl Default for ValidatorConfig {
    fn default() -> Self {
        ValidatorConfig {
            expected_audience: Vec::new(),
            expected_issuer: None,
            clock_skew_seconds: 30,
            sub_claim_name: "sub".into(),
        }
    }
}

/// A token that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidToken {
    /// The principal name (the `sub.claim.name` claim).
    pub principal: String,
    /// `exp`, in milliseconds since the epoch: the session must end by then (KIP-368).
    pub expires_at_ms: i64,
    /// `iat`, in milliseconds since the epoch.
    pub issued_at_ms: i64,
}

/// A NumericDate claim (RFC 7519: seconds, possibly fractional) in milliseconds.
fn numeric_date(claims: &Value, name: &str) -> Result<Option<i64>, String> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|s| s.is_finite())
            .map(|s| Some((s * 1000.0) as i64))
            .ok_or_else(|| format!("claim {name} is not a number")),
    }
}

/// The `kid` of a compact JWS's header, if it has a readable one (before any validation:
/// for deciding whether the key set may be stale).
pub fn token_kid(token: &str) -> Option<String> {
    let header = URL_SAFE_NO_PAD.decode(token.split('.').next()?).ok()?;
    let header: Value = serde_json::from_slice(&header).ok()?;
    header.get("kid")?.as_str().map(str::to_string)
}

fn decode_part(part: &str, what: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| format!("the token's {what} is not base64url"))
}

/// Validates a compact JWS `token` against `jwks` and `config` at `now_ms` (milliseconds
/// since the epoch), as Kafka's `ValidatorAccessTokenValidator` does with jose4j: `alg`
/// must be an asymmetric algorithm, the signature must verify with the key the header's
/// `kid` names, `exp` and `iat` are required, `exp`/`nbf` are checked with the clock skew,
/// then audience, issuer and the principal claim. The error says why, for the log line;
/// the client only learns `invalid_token`.
pub fn validate_token(
    token: &str,
    jwks: &Jwks,
    config: &ValidatorConfig,
    now_ms: i64,
) -> Result<ValidToken, String> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the token is not a compact JWS (header.payload.signature)".into());
    };
    let header: Value = serde_json::from_slice(&decode_part(h, "header")?)
        .map_err(|_| "the token's header is not JSON".to_string())?;
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or("the token's header has no alg")?;
    let alg = Algorithm::from_name(alg_name)
        .ok_or_else(|| format!("signature algorithm {alg_name:?} is not allowed"))?;
    if header.get("crit").is_some() {
        // RFC 7515 §4.1.11: unknown critical extensions make the token invalid.
        return Err("the token's header has critical extensions Nagare does not know".into());
    }
    let kid = header.get("kid").and_then(Value::as_str);
    let key = jwks.select(kid, alg)?;
    let sig = decode_part(s, "signature")?;
    let signed = &token[..h.len() + 1 + p.len()];
    if !key.verify(alg, signed.as_bytes(), &sig) {
        return Err("the token's signature does not verify".into());
    }
    let claims: Value = serde_json::from_slice(&decode_part(p, "payload")?)
        .map_err(|_| "the token's payload is not JSON".to_string())?;
    if !claims.is_object() {
        return Err("the token's payload is not a JSON object".into());
    }
    let skew_ms = config.clock_skew_seconds.saturating_mul(1000);
    let exp = numeric_date(&claims, "exp")?.ok_or("the token has no exp claim")?;
    if now_ms >= exp.saturating_add(skew_ms) {
        return Err(format!("the token expired at {exp} ms (now {now_ms} ms)"));
    }
    let iat = numeric_date(&claims, "iat")?.ok_or("the token has no iat claim")?;
    if let Some(nbf) = numeric_date(&claims, "nbf")? {
        if now_ms.saturating_add(skew_ms) < nbf {
            return Err(format!(
                "the token is not valid before {nbf} ms (now {now_ms} ms)"
            ));
        }
    }
    if !config.expected_audience.is_empty() {
        let auds: Vec<&str> = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !auds
            .iter()
            .any(|a| config.expected_audience.iter().any(|e| e == a))
        {
            return Err(format!(
                "the token's audience {auds:?} is not one of {:?}",
                config.expected_audience
            ));
        }
    }
    if let Some(issuer) = &config.expected_issuer {
        let iss = claims.get("iss").and_then(Value::as_str);
        if iss != Some(issuer.as_str()) {
            return Err(format!("the token's issuer {iss:?} is not {issuer:?}"));
        }
    }
    let principal = claims
        .get(&config.sub_claim_name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| format!("the token has no {} claim", config.sub_claim_name))?;
    Ok(ValidToken {
        principal: principal.to_string(),
        expires_at_ms: exp,
        issued_at_ms: iat,
    })
}

/// What the server does with one OAUTHBEARER client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerStep {
    /// Authenticated (the server's final message is empty).
    Done(ValidToken),
    /// The token was refused: send [`INVALID_TOKEN_CHALLENGE`], await the client's `\x01`,
    /// then fail with this reason (RFC 7628 §3.2.3, as Kafka's `OAuthBearerSaslServer`).
    InvalidToken(String),
}

/// The server side of one OAUTHBEARER exchange.
#[derive(Debug, Default)]
pub struct OAuthBearerServer {
    /// Why the token was refused, once the error challenge has been sent.
    pending_error: Option<String>,
}

impl OAuthBearerServer {
    /// A fresh exchange.
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles the client's initial response.
    pub fn client_first(
        &mut self,
        message: &[u8],
        jwks: &Jwks,
        config: &ValidatorConfig,
        now_ms: i64,
    ) -> Result<ServerStep, SaslError> {
        let first = parse_client_initial_response(message)?;
        match validate_token(&first.token, jwks, config, now_ms) {
            Ok(valid) => {
                // Kafka refuses an authorization id other than the token's principal.
                if let Some(a) = &first.authzid {
                    if *a != valid.principal {
                        return Err(SaslError::AuthenticationFailed(format!(
                            "Authentication failed: Authorization ID ({a}) not equal to the token's principal name ({})",
                            valid.principal
                        )));
                    }
                }
                Ok(ServerStep::Done(valid))
            }
            Err(why) => {
                self.pending_error = Some(why.clone());
                Ok(ServerStep::InvalidToken(why))
            }
        }
    }

    /// Handles the client's answer to the error challenge: a lone `\x01` ends the exchange
    /// with the failure; anything else is out of order. As Kafka's `OAuthBearerSaslServer`,
    /// the client is told only the RFC 7628 status, not why (the broker logs that).
    pub fn client_error_ack(&mut self, message: &[u8]) -> SaslError {
        match self.pending_error.take() {
            Some(_) if message == [1u8] => SaslError::AuthenticationFailed(format!(
                "Authentication failed: {}",
                String::from_utf8_lossy(INVALID_TOKEN_CHALLENGE)
            )),
            _ => SaslError::Malformed(
                "unexpected message after the OAUTHBEARER error challenge".into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, RsaKeyPair};
    use serde_json::json;

    /// A fixed 2048-bit RSA test key (PKCS#1 DER, base64), generated for these tests only.
    const RSA_PKCS1: &str = include_str!("../testdata/oauth_rsa_pkcs1.b64");

    const NOW_MS: i64 = 1_800_000_000_000;
    const NOW: i64 = NOW_MS / 1000;

    fn b64u(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    struct Keys {
        rsa: RsaKeyPair,
        ec: EcdsaKeyPair,
        jwks: Jwks,
    }

    fn keys() -> Keys {
        let der = base64::engine::general_purpose::STANDARD
            .decode(RSA_PKCS1.trim())
            .expect("test key");
        let rsa = RsaKeyPair::from_der(&der).expect("rsa key");
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("ec keygen");
        let ec = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .expect("ec key");
        let point = ec.public_key().as_ref();
        let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(rsa.public());
        let (n, e) = (&public.n, &public.e);
        let doc = json!({"keys": [
            {"kty": "RSA", "kid": "rsa1", "use": "sig", "alg": "RS256", "n": b64u(n), "e": b64u(e)},
            {"kty": "EC", "kid": "ec1", "crv": "P-256", "x": b64u(&point[1..33]), "y": b64u(&point[33..65])},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        ]});
        let jwks = Jwks::parse(&doc.to_string()).expect("jwks");
        assert_eq!(jwks.len(), 2, "the symmetric key is skipped");
        Keys { rsa, ec, jwks }
    }

    fn sign(keys: &Keys, header: Value, claims: Value) -> String {
        let signed = format!(
            "{}.{}",
            b64u(header.to_string().as_bytes()),
            b64u(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let sig = match header["alg"].as_str() {
            Some("RS256") => {
                let mut sig = vec![0; keys.rsa.public().modulus_len()];
                keys.rsa
                    .sign(
                        &signature::RSA_PKCS1_SHA256,
                        &rng,
                        signed.as_bytes(),
                        &mut sig,
                    )
                    .expect("sign");
                sig
            }
            Some("ES256") => keys
                .ec
                .sign(&rng, signed.as_bytes())
                .expect("sign")
                .as_ref()
                .to_vec(),
            _ => Vec::new(),
        };
        format!("{signed}.{}", b64u(&sig))
    }

    fn claims() -> Value {
        json!({"sub": "alice", "iss": "https://idp.test", "aud": ["kafka", "other"],
               "iat": NOW - 10, "exp": NOW + 3600})
    }

    fn config() -> ValidatorConfig {
        ValidatorConfig {
            expected_audience: vec!["kafka".into()],
            expected_issuer: Some("https://idp.test".into()),
            ..ValidatorConfig::default()
        }
    }

    fn rs256() -> Value {
        json!({"alg": "RS256", "typ": "JWT", "kid": "rsa1"})
    }

    #[test]
    fn valid_rs256_and_es256_tokens() {
        let k = keys();
        let t = sign(&k, rs256(), claims());
        let v = validate_token(&t, &k.jwks, &config(), NOW_MS).expect("valid");
        assert_eq!(v.principal, "alice");
        assert_eq!(v.expires_at_ms, (NOW + 3600) * 1000);
        assert_eq!(v.issued_at_ms, (NOW - 10) * 1000);
        let t = sign(&k, json!({"alg": "ES256", "kid": "ec1"}), claims());
        assert!(validate_token(&t, &k.jwks, &config(), NOW_MS).is_ok());
        // No expectations configured: any audience and issuer.
        let mut c = claims();
        c["aud"] = json!("elsewhere");
        c["iss"] = json!("someone");
        let t = sign(&k, rs256(), c);
        assert!(validate_token(&t, &k.jwks, &ValidatorConfig::default(), NOW_MS).is_ok());
    }

    #[test]
    fn custom_principal_claim() {
        let k = keys();
        let mut c = claims();
        c["client_id"] = json!("svc-1");
        let t = sign(&k, rs256(), c);
        let cfg = ValidatorConfig {
            sub_claim_name: "client_id".into(),
            ..config()
        };
        assert_eq!(
            validate_token(&t, &k.jwks, &cfg, NOW_MS).map(|v| v.principal),
            Ok("svc-1".into())
        );
        let cfg = ValidatorConfig {
            sub_claim_name: "azp".into(),
            ..config()
        };
        assert!(validate_token(&t, &k.jwks, &cfg, NOW_MS).is_err());
    }

    #[test]
    fn expiry_with_clock_skew() {
        let k = keys();
        let mut c = claims();
        c["exp"] = json!(NOW - 20);
        let t = sign(&k, rs256(), c.clone());
        // Within the default 30 s skew.
        assert!(validate_token(&t, &k.jwks, &config(), NOW_MS).is_ok());
        c["exp"] = json!(NOW - 31);
        let t = sign(&k, rs256(), c.clone());
        let err = validate_token(&t, &k.jwks, &config(), NOW_MS).unwrap_err();
        assert!(err.contains("expired"), "{err}");
        let no_skew = ValidatorConfig {
            clock_skew_seconds: 0,
            ..config()
        };
        c["exp"] = json!(NOW);
        let t = sign(&k, rs256(), c.clone());
        assert!(validate_token(&t, &k.jwks, &no_skew, NOW_MS).is_err());
        c.as_object_mut().map(|o| o.remove("exp"));
        let t = sign(&k, rs256(), c);
        assert!(validate_token(&t, &k.jwks, &config(), NOW_MS)
            .unwrap_err()
            .contains("no exp"));
    }

    #[test]
    fn nbf_and_iat() {
        let k = keys();
        let mut c = claims();
        c["nbf"] = json!(NOW + 20);
        assert!(validate_token(&sign(&k, rs256(), c.clone()), &k.jwks, &config(), NOW_MS).is_ok());
        c["nbf"] = json!(NOW + 60);
        assert!(
            validate_token(&sign(&k, rs256(), c.clone()), &k.jwks, &config(), NOW_MS)
                .unwrap_err()
                .contains("not valid before")
        );
        let mut c = claims();
        c.as_object_mut().map(|o| o.remove("iat"));
        assert!(
            validate_token(&sign(&k, rs256(), c), &k.jwks, &config(), NOW_MS)
                .unwrap_err()
                .contains("no iat")
        );
    }

    #[test]
    fn wrong_audience_and_issuer() {
        let k = keys();
        let mut c = claims();
        c["aud"] = json!("not-kafka");
        let err = validate_token(&sign(&k, rs256(), c), &k.jwks, &config(), NOW_MS).unwrap_err();
        assert!(err.contains("audience"), "{err}");
        let mut c = claims();
        c.as_object_mut().map(|o| o.remove("aud"));
        assert!(validate_token(&sign(&k, rs256(), c), &k.jwks, &config(), NOW_MS).is_err());
        let mut c = claims();
        c["iss"] = json!("https://evil.test");
        let err = validate_token(&sign(&k, rs256(), c), &k.jwks, &config(), NOW_MS).unwrap_err();
        assert!(err.contains("issuer"), "{err}");
    }

    #[test]
    fn unknown_kid_and_mismatched_key() {
        let k = keys();
        let t = sign(&k, json!({"alg": "RS256", "kid": "rotated-away"}), claims());
        assert_eq!(token_kid(&t).as_deref(), Some("rotated-away"));
        assert!(!k.jwks.has_kid("rotated-away") && k.jwks.has_kid("rsa1"));
        assert_eq!(token_kid("%%.x.y"), None);
        let err = validate_token(&t, &k.jwks, &config(), NOW_MS).unwrap_err();
        assert!(err.contains("no key with kid"), "{err}");
        // An RSA signature claiming the EC key's kid does not find a fitting key.
        let t = sign(&k, json!({"alg": "RS256", "kid": "ec1"}), claims());
        assert!(validate_token(&t, &k.jwks, &config(), NOW_MS).is_err());
        // Without kid: the only key fitting the algorithm.
        let t = sign(&k, json!({"alg": "ES256"}), claims());
        assert!(validate_token(&t, &k.jwks, &config(), NOW_MS).is_ok());
    }

    #[test]
    fn bad_signature() {
        let k = keys();
        let t = sign(&k, rs256(), claims());
        // Same header and signature, a payload naming someone else.
        let mut c = claims();
        c["sub"] = json!("admin");
        let forged_payload = b64u(c.to_string().as_bytes());
        let parts: Vec<&str> = t.split('.').collect();
        let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
        let err = validate_token(&forged, &k.jwks, &config(), NOW_MS).unwrap_err();
        assert!(err.contains("signature"), "{err}");
        // Signed by another key under the right kid: an ES256 signature with the RSA kid.
        let t = sign(&k, json!({"alg": "ES256", "kid": "ec1"}), claims());
        let parts: Vec<&str> = t.split('.').collect();
        let other = format!(
            "{}.{}.{}",
            b64u(rs256().to_string().as_bytes()),
            parts[1],
            parts[2]
        );
        assert!(validate_token(&other, &k.jwks, &config(), NOW_MS).is_err());
    }

    #[test]
    fn alg_none_and_hmac_refused() {
        let k = keys();
        let t = format!(
            "{}.{}.",
            b64u(json!({"alg": "none"}).to_string().as_bytes()),
            b64u(claims().to_string().as_bytes())
        );
        let err = validate_token(&t, &k.jwks, &config(), NOW_MS).unwrap_err();
        assert!(err.contains("not allowed"), "{err}");
        let t = sign(&k, json!({"alg": "HS256", "kid": "hmac"}), claims());
        assert!(validate_token(&t, &k.jwks, &config(), NOW_MS)
            .unwrap_err()
            .contains("not allowed"));
        assert!(validate_token("a.b", &k.jwks, &config(), NOW_MS).is_err());
        assert!(validate_token("!!.??.##", &k.jwks, &config(), NOW_MS).is_err());
    }

    #[test]
    fn parses_client_initial_response() {
        let mut ext = BTreeMap::new();
        ext.insert("traceId".to_string(), "abc 123".to_string());
        let msg = client_initial_response("aa.bb.cc", &ext);
        let parsed = parse_client_initial_response(&msg).expect("parse");
        assert_eq!(parsed.token, "aa.bb.cc");
        assert_eq!(parsed.authzid, None);
        assert_eq!(parsed.extensions, ext);
        let parsed = parse_client_initial_response(b"n,a=alice,\x01auth=bearer aa.bb.cc\x01\x01")
            .expect("parse");
        assert_eq!(parsed.authzid.as_deref(), Some("alice"));
        for bad in [
            &b"p=tls,,\x01auth=Bearer t\x01\x01"[..],
            b"n,,\x01auth=Basic dXNlcg==\x01\x01",
            b"n,,\x01auth=Bearer t\x01",
            b"n,,\x01\x01",
            b"n,,\x01auth=Bearer t\x01k1=v\x01\x01",
            b"n,,\x01auth=Bearer t\x01auth=Bearer u\x01\x01",
            b"n,x,\x01auth=Bearer t\x01\x01",
            b"\xff",
        ] {
            assert!(
                matches!(
                    parse_client_initial_response(bad),
                    Err(SaslError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn server_exchange() {
        let k = keys();
        let good = client_initial_response(&sign(&k, rs256(), claims()), &BTreeMap::new());
        let mut s = OAuthBearerServer::new();
        assert!(matches!(
            s.client_first(&good, &k.jwks, &config(), NOW_MS),
            Ok(ServerStep::Done(v)) if v.principal == "alice"
        ));
        // A refused token: the error challenge, then the failure after the client's 0x01.
        let mut c = claims();
        c["exp"] = json!(NOW - 3600);
        let expired = client_initial_response(&sign(&k, rs256(), c), &BTreeMap::new());
        let mut s = OAuthBearerServer::new();
        assert!(matches!(
            s.client_first(&expired, &k.jwks, &config(), NOW_MS),
            Ok(ServerStep::InvalidToken(why)) if why.contains("expired")
        ));
        assert!(matches!(
            s.client_error_ack(b"\x01"),
            SaslError::AuthenticationFailed(m) if m.contains("invalid_token")
        ));
        // Impersonation through the authorization id.
        let token = sign(&k, rs256(), claims());
        let msg = format!("n,a=admin,\u{1}auth=Bearer {token}\u{1}\u{1}");
        assert!(matches!(
            OAuthBearerServer::new().client_first(msg.as_bytes(), &k.jwks, &config(), NOW_MS),
            Err(SaslError::AuthenticationFailed(_))
        ));
    }
}
