//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka implements them
//! (`ScramSaslServer`, `ScramSaslClient`, `ScramFormatter`): the server keeps only a
//! [`ScramCredential`] (salt, iterations, StoredKey, ServerKey — never the password), the
//! client proves it knows the password without sending it, and the server proves in turn
//! that it holds the credential. Channel binding is not offered (`n,,`), as in Kafka.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

use crate::{constant_time_eq, SaslError};

/// Kafka's message for a failed SCRAM exchange; the same whatever went wrong, so a client
/// cannot tell an unknown user from a wrong password.
pub const INVALID_CREDENTIALS: &str = "Authentication failed: Invalid user credentials";

/// A SCRAM hash function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScramMechanism {
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

impl ScramMechanism {
    /// Both, in Kafka's order.
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// Kafka's mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// From Kafka's mechanism name (exact, as SASL mechanism names are).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "SCRAM-SHA-256" => Some(ScramMechanism::Sha256),
            "SCRAM-SHA-512" => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    /// Kafka's wire type (`ScramMechanism.type()`: 1 and 2; 0 is UNKNOWN), as
    /// AlterUserScramCredentials and UserScramCredentialRecord carry it.
    pub fn type_id(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    /// From Kafka's wire type.
    pub fn from_type_id(id: i8) -> Option<Self> {
        match id {
            1 => Some(ScramMechanism::Sha256),
            2 => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    /// The fewest PBKDF2 iterations accepted (RFC 7677 recommends 4096; Kafka's minimum).
    pub fn min_iterations(self) -> u32 {
        4096
    }

    /// The most iterations Kafka accepts for a credential (`ScramMechanism.maxIterations`).
    pub fn max_iterations(self) -> u32 {
        16384
    }

    /// Output size of the hash in bytes.
    pub fn hash_len(self) -> usize {
        match self {
            ScramMechanism::Sha256 => 32,
            ScramMechanism::Sha512 => 64,
        }
    }

    /// H(data).
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
            ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// HMAC(key, data).
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length, so `new_from_slice` cannot fail; an empty
        // output would only make every comparison fail, never succeed.
        match self {
            ScramMechanism::Sha256 => Hmac::<Sha256>::new_from_slice(key)
                .map(|mut m| {
                    m.update(data);
                    m.finalize().into_bytes().to_vec()
                })
                .unwrap_or_default(),
            ScramMechanism::Sha512 => Hmac::<Sha512>::new_from_slice(key)
                .map(|mut m| {
                    m.update(data);
                    m.finalize().into_bytes().to_vec()
                })
                .unwrap_or_default(),
        }
    }

    /// Hi(password, salt, iterations): PBKDF2 with HMAC-H, the SaltedPassword.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.hash_len()];
        match self {
            ScramMechanism::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out)
            }
            ScramMechanism::Sha512 => {
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out)
            }
        }
        out
    }

    fn client_key(self, salted_password: &[u8]) -> Vec<u8> {
        self.hmac(salted_password, b"Client Key")
    }

    fn server_key(self, salted_password: &[u8]) -> Vec<u8> {
        self.hmac(salted_password, b"Server Key")
    }
}

impl std::fmt::Display for ScramMechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the server stores for one user and mechanism (Kafka's `ScramCredential`, the
/// `UserScramCredentialRecord`): enough to verify a client proof and to sign the answer,
/// not enough to log in as the user.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    /// The hash function.
    pub mechanism: ScramMechanism,
    /// The random salt.
    pub salt: Vec<u8>,
    /// H(ClientKey).
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
}

impl std::fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys are secrets in their own right (ServerKey lets one impersonate the
        // server), so they never reach a log.
        f.debug_struct("ScramCredential")
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// The credential for `password` with `salt` and `iterations`.
    pub fn from_password(
        mechanism: ScramMechanism,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Self {
        let salted = mechanism.salted_password(password.as_bytes(), salt, iterations);
        Self::from_salted_password(mechanism, &salted, salt, iterations)
    }

    /// The credential from an already salted password, as AlterUserScramCredentials
    /// sends it (the client does the PBKDF2 work; the controller derives the keys).
    pub fn from_salted_password(
        mechanism: ScramMechanism,
        salted_password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Self {
        ScramCredential {
            mechanism,
            salt: salt.to_vec(),
            stored_key: mechanism.hash(&mechanism.client_key(salted_password)),
            server_key: mechanism.server_key(salted_password),
            iterations,
        }
    }
}

/// Decodes a SCRAM `saslname` (`=2C` is `,`, `=3D` is `=`; any other `=` is an error).
pub fn decode_sasl_name(name: &str) -> Result<String, SaslError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 3);
        match code {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => {
                return Err(SaslError::Malformed(format!(
                    "Invalid SCRAM username {name:?}: bad '=' escape"
                )))
            }
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Encodes a user name as a SCRAM `saslname`.
pub fn encode_sasl_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// `key=value` attributes of a SCRAM message, in order (keys are one letter, except
/// extensions such as Kafka's `tokenauth`).
fn attributes(message: &str) -> Result<Vec<(&str, &str)>, SaslError> {
    message
        .split(',')
        .map(|part| match part.split_once('=') {
            Some((k, v)) if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric()) => {
                Ok((k, v))
            }
            _ => Err(SaslError::Malformed(format!(
                "Invalid SCRAM message: attribute {part:?} is not key=value"
            ))),
        })
        .collect()
}

fn utf8(message: &[u8]) -> Result<&str, SaslError> {
    std::str::from_utf8(message)
        .map_err(|_| SaslError::Malformed("Invalid SCRAM message: not UTF-8".into()))
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

fn failed() -> SaslError {
    SaslError::AuthenticationFailed(INVALID_CREDENTIALS.into())
}

/// Where a server-side exchange stands.
#[derive(Debug)]
enum ServerState {
    ReceiveClientFirst,
    ReceiveClientFinal {
        username: String,
        gs2_header: String,
        client_first_bare: String,
        server_first: String,
        nonce: String,
        credential: ScramCredential,
    },
    Complete {
        username: String,
    },
    Failed,
}

/// The server side of one SCRAM exchange: client-first → server-first, client-final →
/// server-final. Any error leaves it failed; Kafka then closes the connection.
#[derive(Debug)]
pub struct ScramServer {
    mechanism: ScramMechanism,
    state: ServerState,
}

impl ScramServer {
    /// A new exchange for `mechanism`.
    pub fn new(mechanism: ScramMechanism) -> Self {
        ScramServer {
            mechanism,
            state: ServerState::ReceiveClientFirst,
        }
    }

    /// The mechanism.
    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// Whether the client has proven itself.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, ServerState::Complete { .. })
    }

    /// The authenticated user, once complete.
    pub fn username(&self) -> Option<&str> {
        match &self.state {
            ServerState::Complete { username } => Some(username),
            _ => None,
        }
    }

    /// Handles the client-first message and returns server-first. `server_nonce` is this
    /// server's random part of the nonce (printable ASCII without `,`); `credential_of`
    /// looks up the user's stored credential for this mechanism.
    pub fn client_first(
        &mut self,
        message: &[u8],
        server_nonce: &str,
        credential_of: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<Vec<u8>, SaslError> {
        let result = self.client_first_inner(message, server_nonce, credential_of);
        if result.is_err() {
            self.state = ServerState::Failed;
        }
        result
    }

    fn client_first_inner(
        &mut self,
        message: &[u8],
        server_nonce: &str,
        credential_of: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<Vec<u8>, SaslError> {
        if !matches!(self.state, ServerState::ReceiveClientFirst) {
            return Err(SaslError::Malformed(
                "Unexpected SCRAM client-first message".into(),
            ));
        }
        let text = utf8(message)?;
        // gs2-header: cbind-flag "," [ "a=" authzid ] ","
        let mut parts = text.splitn(3, ',');
        let (Some(cbind), Some(authz), Some(bare)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SaslError::Malformed(
                "Invalid SCRAM client first message".into(),
            ));
        };
        match cbind {
            "n" | "y" => {}
            _ => {
                // Kafka offers no channel binding (`p=`), so a client requiring it fails.
                return Err(SaslError::Malformed(format!(
                    "Invalid SCRAM client first message: unsupported channel binding {cbind:?}"
                )));
            }
        }
        let authzid = match authz {
            "" => None,
            a => match a.strip_prefix("a=") {
                Some(id) => Some(decode_sasl_name(id)?),
                None => {
                    return Err(SaslError::Malformed(
                        "Invalid SCRAM client first message: bad authorization id".into(),
                    ))
                }
            },
        };
        let attrs = attributes(bare)?;
        let mut username = None;
        let mut client_nonce = None;
        for (i, (k, v)) in attrs.iter().enumerate() {
            match (i, *k) {
                (0, "n") => username = Some(decode_sasl_name(v)?),
                (1, "r") => client_nonce = Some(*v),
                (0 | 1, _) => {
                    return Err(SaslError::Malformed(
                        "Invalid SCRAM client first message: expected n= and r=".into(),
                    ))
                }
                (_, _) => {
                    // Extensions (Kafka's KIP-84 `tokenauth=true` for delegation tokens);
                    // Nagare has no delegation tokens, so a token login must fail rather
                    // than be treated as a password login.
                }
            }
        }
        if attrs
            .iter()
            .skip(2)
            .any(|(k, v)| *k == "tokenauth" && *v == "true")
        {
            return Err(failed());
        }
        let (Some(username), Some(client_nonce)) = (username, client_nonce) else {
            return Err(SaslError::Malformed(
                "Invalid SCRAM client first message: expected n= and r=".into(),
            ));
        };
        if client_nonce.is_empty() {
            return Err(SaslError::Malformed(
                "Invalid SCRAM client first message: empty nonce".into(),
            ));
        }
        if authzid.as_ref().is_some_and(|a| a != &username) {
            return Err(SaslError::AuthenticationFailed(
                "Authentication failed: Client requested an authorization id that is different from username".into(),
            ));
        }
        let credential = credential_of(&username).ok_or_else(failed)?;
        if credential.mechanism != self.mechanism
            || credential.iterations < self.mechanism.min_iterations()
        {
            return Err(failed());
        }
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        let gs2_len = cbind.len() + authz.len() + 2;
        self.state = ServerState::ReceiveClientFinal {
            username,
            gs2_header: text[..gs2_len].to_string(),
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            nonce,
            credential,
        };
        Ok(server_first.into_bytes())
    }

    /// Handles the client-final message: verifies the channel binding, the nonce and the
    /// client proof, and returns server-final (`v=ServerSignature`).
    pub fn client_final(&mut self, message: &[u8]) -> Result<Vec<u8>, SaslError> {
        let state = std::mem::replace(&mut self.state, ServerState::Failed);
        let ServerState::ReceiveClientFinal {
            username,
            gs2_header,
            client_first_bare,
            server_first,
            nonce,
            credential,
        } = state
        else {
            return Err(SaslError::Malformed(
                "Unexpected SCRAM client-final message".into(),
            ));
        };
        let text = utf8(message)?;
        let Some((without_proof, proof)) = text.rsplit_once(",p=") else {
            return Err(SaslError::Malformed(
                "Invalid SCRAM client final message: no proof".into(),
            ));
        };
        let attrs = attributes(without_proof)?;
        let (Some(("c", binding)), Some(("r", final_nonce))) = (attrs.first(), attrs.get(1)) else {
            return Err(SaslError::Malformed(
                "Invalid SCRAM client final message: expected c= and r=".into(),
            ));
        };
        let binding = B64.decode(binding).map_err(|_| {
            SaslError::Malformed("Invalid SCRAM client final message: bad c=".into())
        })?;
        if binding != gs2_header.as_bytes() {
            return Err(SaslError::AuthenticationFailed(
                "Authentication failed: Invalid channel binding".into(),
            ));
        }
        // Kafka's `ScramSaslServer` checks that the client's nonce *ends with* the combined
        // nonce, not that it equals it, and librdkafka up to 2.0 relies on that: it sends
        // its own nonce followed by the whole combined one.
        if !final_nonce.ends_with(nonce.as_str()) {
            return Err(SaslError::AuthenticationFailed(
                "Authentication failed: Invalid client nonce in the final client message.".into(),
            ));
        }
        let proof = B64.decode(proof).map_err(|_| {
            SaslError::Malformed("Invalid SCRAM client final message: bad p=".into())
        })?;
        let mechanism = self.mechanism;
        if proof.len() != mechanism.hash_len() {
            return Err(failed());
        }
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = mechanism.hmac(&credential.stored_key, auth_message.as_bytes());
        let client_key = xor(&proof, &client_signature);
        if !constant_time_eq(&mechanism.hash(&client_key), &credential.stored_key) {
            return Err(failed());
        }
        let server_signature = mechanism.hmac(&credential.server_key, auth_message.as_bytes());
        self.state = ServerState::Complete { username };
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

/// Where a client-side exchange stands.
#[derive(Debug)]
enum ClientState {
    SendClientFirst,
    ReceiveServerFirst,
    ReceiveServerFinal { server_signature: Vec<u8> },
    Complete,
    Failed,
}

/// The client side of one SCRAM exchange (Kafka's `ScramSaslClient`), for `nagare-client`
/// and tests.
pub struct ScramClient {
    mechanism: ScramMechanism,
    username: String,
    password: String,
    client_nonce: String,
    client_first_bare: String,
    state: ClientState,
}

impl std::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramClient")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl ScramClient {
    /// A new exchange logging in as `username` with `password`; `client_nonce` is the
    /// client's random nonce (printable ASCII without `,`).
    pub fn new(
        mechanism: ScramMechanism,
        username: &str,
        password: &str,
        client_nonce: &str,
    ) -> Self {
        ScramClient {
            mechanism,
            username: username.to_string(),
            password: password.to_string(),
            client_nonce: client_nonce.to_string(),
            client_first_bare: String::new(),
            state: ClientState::SendClientFirst,
        }
    }

    /// The client-first message (`n,,n=<user>,r=<nonce>`).
    pub fn client_first(&mut self) -> Vec<u8> {
        self.client_first_bare = format!(
            "n={},r={}",
            encode_sasl_name(&self.username),
            self.client_nonce
        );
        self.state = ClientState::ReceiveServerFirst;
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// Handles server-first and returns client-final (with the proof).
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, SaslError> {
        if !matches!(self.state, ClientState::ReceiveServerFirst) {
            return Err(SaslError::Malformed("Unexpected SCRAM server-first".into()));
        }
        self.state = ClientState::Failed;
        let text = utf8(server_first)?;
        let attrs = attributes(text)?;
        let (Some(("r", nonce)), Some(("s", salt)), Some(("i", iterations))) =
            (attrs.first(), attrs.get(1), attrs.get(2))
        else {
            return Err(SaslError::Malformed(format!(
                "Invalid SCRAM server first message {text:?}"
            )));
        };
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(SaslError::AuthenticationFailed(
                "Invalid server nonce: does not start with client nonce".into(),
            ));
        }
        let salt = B64
            .decode(salt)
            .map_err(|_| SaslError::Malformed("Invalid SCRAM server first message: s=".into()))?;
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| SaslError::Malformed("Invalid SCRAM server first message: i=".into()))?;
        if iterations < self.mechanism.min_iterations() {
            return Err(SaslError::AuthenticationFailed(format!(
                "Requested iterations {iterations} is less than the minimum {} for {}",
                self.mechanism.min_iterations(),
                self.mechanism
            )));
        }
        let m = self.mechanism;
        let salted = m.salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = m.client_key(&salted);
        let stored_key = m.hash(&client_key);
        let without_proof = format!("c={},r={nonce}", B64.encode("n,,"));
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let client_signature = m.hmac(&stored_key, auth_message.as_bytes());
        let proof = xor(&client_key, &client_signature);
        let server_signature = m.hmac(&m.server_key(&salted), auth_message.as_bytes());
        self.state = ClientState::ReceiveServerFinal { server_signature };
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks server-final: the server must prove it holds the credential.
    pub fn verify_server_final(&mut self, server_final: &[u8]) -> Result<(), SaslError> {
        let state = std::mem::replace(&mut self.state, ClientState::Failed);
        let ClientState::ReceiveServerFinal { server_signature } = state else {
            return Err(SaslError::Malformed("Unexpected SCRAM server-final".into()));
        };
        let text = utf8(server_final)?;
        if let Some(e) = text.strip_prefix("e=") {
            return Err(SaslError::AuthenticationFailed(format!(
                "SCRAM authentication failed: {e}"
            )));
        }
        let Some(v) = text.strip_prefix("v=") else {
            return Err(SaslError::Malformed(format!(
                "Invalid SCRAM server final message {text:?}"
            )));
        };
        let v = B64
            .decode(v)
            .map_err(|_| SaslError::Malformed("Invalid SCRAM server final message".into()))?;
        if !constant_time_eq(&v, &server_signature) {
            return Err(SaslError::AuthenticationFailed(
                "Invalid server signature in server final message".into(),
            ));
        }
        self.state = ClientState::Complete;
        Ok(())
    }

    /// Whether the server has proven itself.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, ClientState::Complete)
    }
}

/// A nonce from random bytes: one letter or digit per byte. Kafka's nonces are alphanumeric
/// too (`ScramFormatter.secureRandomString`); some clients (librdkafka 2.0) mishandle other
/// printable characters in the server's nonce.
pub fn printable_nonce(random: &[u8]) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    random
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// One `--add-scram` argument of `kafka-storage format`, parsed:
/// `SCRAM-SHA-256=[name=alice,password=alice-secret]`, optionally with `iterations=N` and
/// `salt=<base64>`, or with `saltedpassword=<base64>` (and then `salt` and `iterations`)
/// instead of the password. Quotes around values are allowed. `random_salt` is used when no
/// salt is given; the default iterations are Kafka's 4096.
pub fn parse_add_scram(arg: &str, random_salt: &[u8]) -> Result<(String, ScramCredential), String> {
    let (mech, rest) = arg
        .split_once('=')
        .ok_or_else(|| format!("--add-scram {arg:?}: expected MECHANISM=[name=...,...]"))?;
    let mechanism = ScramMechanism::from_name(mech.trim())
        .ok_or_else(|| format!("--add-scram: unknown SCRAM mechanism {mech:?}"))?;
    let body = rest
        .trim()
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(|| format!("--add-scram {arg:?}: the settings must be in [...]"))?;
    let (mut name, mut password, mut salt, mut salted, mut iterations) =
        (None, None, None, None, None);
    for part in body.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("--add-scram: {part:?} is not key=value"))?;
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or(v);
        match k.trim() {
            "name" => name = Some(v.to_string()),
            "password" => password = Some(v.to_string()),
            "salt" => {
                salt = Some(
                    B64.decode(v)
                        .map_err(|_| format!("--add-scram: salt {v:?} is not base64"))?,
                )
            }
            "saltedpassword" => {
                salted = Some(
                    B64.decode(v)
                        .map_err(|_| format!("--add-scram: saltedpassword {v:?} is not base64"))?,
                )
            }
            "iterations" => {
                iterations = Some(
                    v.parse::<u32>()
                        .map_err(|_| format!("--add-scram: iterations {v:?} is not a number"))?,
                )
            }
            other => return Err(format!("--add-scram: unknown setting {other:?}")),
        }
    }
    let name = name
        .filter(|n| !n.is_empty())
        .ok_or("--add-scram: name= is required")?;
    let iterations = iterations.unwrap_or(4096);
    if iterations < mechanism.min_iterations() || iterations > mechanism.max_iterations() {
        return Err(format!(
            "--add-scram: iterations {iterations} out of range [{}, {}] for {mechanism}",
            mechanism.min_iterations(),
            mechanism.max_iterations()
        ));
    }
    let credential = match (password, salted) {
        (Some(_), Some(_)) => {
            return Err("--add-scram: give password= or saltedpassword=, not both".into())
        }
        (Some(p), None) => {
            let salt = salt.unwrap_or_else(|| random_salt.to_vec());
            ScramCredential::from_password(mechanism, &p, &salt, iterations)
        }
        (None, Some(s)) => {
            let salt = salt.ok_or("--add-scram: saltedpassword= needs salt=")?;
            ScramCredential::from_salted_password(mechanism, &s, &salt, iterations)
        }
        (None, None) => return Err("--add-scram: password= is required".into()),
    };
    Ok((name, credential))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3: user "user", password "pencil".
    #[test]
    fn rfc7677_test_vector() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let cred = ScramCredential::from_password(ScramMechanism::Sha256, "pencil", &salt, 4096);
        let mut server = ScramServer::new(ScramMechanism::Sha256);
        let server_first = server
            .client_first(
                b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
                |u| (u == "user").then(|| cred.clone()),
            )
            .expect("server-first");
        assert_eq!(
            String::from_utf8(server_first.clone()).expect("utf8"),
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let server_final = server
            .client_final(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .expect("server-final");
        assert_eq!(
            String::from_utf8(server_final).expect("utf8"),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        assert_eq!(server.username(), Some("user"));

        // Our client produces the RFC's client messages too.
        let mut client = ScramClient::new(
            ScramMechanism::Sha256,
            "user",
            "pencil",
            "rOprNGfwEbeRWgbNEkqO",
        );
        assert_eq!(
            client.client_first(),
            b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO".to_vec()
        );
        let client_final = client.client_final(&server_first).expect("client-final");
        assert_eq!(
            String::from_utf8(client_final).expect("utf8"),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        client
            .verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .expect("server proven");
        assert!(client.is_complete());
    }

    fn exchange(
        mechanism: ScramMechanism,
        stored: &ScramCredential,
        user: &str,
        password: &str,
    ) -> Result<String, SaslError> {
        let mut client = ScramClient::new(mechanism, user, password, "clientnonce123");
        let mut server = ScramServer::new(mechanism);
        let first = server.client_first(&client.client_first(), "servernonce456", |u| {
            (u == "alice").then(|| stored.clone())
        })?;
        let fin = server.client_final(&client.client_final(&first)?)?;
        client.verify_server_final(&fin)?;
        Ok(server.username().expect("complete").to_string())
    }

    #[test]
    fn full_exchange_both_mechanisms() {
        for m in ScramMechanism::ALL {
            let cred = ScramCredential::from_password(m, "alice-secret", b"salty", 4096);
            assert_eq!(cred.stored_key.len(), m.hash_len());
            assert_eq!(
                exchange(m, &cred, "alice", "alice-secret"),
                Ok("alice".into())
            );
            assert_eq!(
                exchange(m, &cred, "alice", "wrong"),
                Err(SaslError::AuthenticationFailed(INVALID_CREDENTIALS.into()))
            );
            assert_eq!(
                exchange(m, &cred, "bob", "alice-secret"),
                Err(SaslError::AuthenticationFailed(INVALID_CREDENTIALS.into()))
            );
        }
    }

    #[test]
    fn salted_password_form_matches_password_form() {
        let m = ScramMechanism::Sha512;
        let salted = m.salted_password(b"pw", b"salt", 8192);
        assert_eq!(
            ScramCredential::from_salted_password(m, &salted, b"salt", 8192),
            ScramCredential::from_password(m, "pw", b"salt", 8192)
        );
    }

    #[test]
    fn credential_of_other_mechanism_or_few_iterations_fails() {
        let cred = ScramCredential::from_password(ScramMechanism::Sha256, "p", b"s", 4096);
        assert!(exchange(ScramMechanism::Sha512, &cred, "alice", "p").is_err());
        let weak = ScramCredential::from_password(ScramMechanism::Sha256, "p", b"s", 1000);
        assert!(exchange(ScramMechanism::Sha256, &weak, "alice", "p").is_err());
    }

    #[test]
    fn server_refuses_bad_messages() {
        let cred = ScramCredential::from_password(ScramMechanism::Sha256, "p", b"s", 4096);
        let lookup = |_: &str| Some(cred.clone());
        for bad in [
            &b"p=tls-unique,,n=alice,r=x"[..],
            b"n,,r=x,n=alice",
            b"n,,n=alice",
            b"n,x,n=alice,r=x",
            b"n,,n=al=ZZice,r=x",
            b"n,,n=alice,r=",
        ] {
            let mut s = ScramServer::new(ScramMechanism::Sha256);
            assert!(s.client_first(bad, "srv", lookup).is_err(), "{bad:?}");
        }
        // A different authorization id is impersonation, refused as in Kafka.
        let mut s = ScramServer::new(ScramMechanism::Sha256);
        assert!(s
            .client_first(b"n,a=bob,n=alice,r=x", "srv", lookup)
            .is_err());
        // A delegation-token login is not a password login.
        let mut s = ScramServer::new(ScramMechanism::Sha256);
        assert!(s
            .client_first(b"n,,n=alice,r=x,tokenauth=true", "srv", lookup)
            .is_err());
        // Final message with a tampered nonce or channel binding.
        for tamper in [
            |m: String| m.replacen("r=cn", "r=xx", 1),
            |m: String| m.replacen("c=biws", "c=eSws", 1),
        ] {
            let mut client = ScramClient::new(ScramMechanism::Sha256, "alice", "p", "cn");
            let mut server = ScramServer::new(ScramMechanism::Sha256);
            let first = server
                .client_first(&client.client_first(), "srv", lookup)
                .expect("first");
            let fin = String::from_utf8(client.client_final(&first).expect("final")).expect("u");
            assert!(server.client_final(tamper(fin).as_bytes()).is_err());
            assert!(!server.is_complete());
        }
        // librdkafka 2.0 repeats its nonce before the combined one; Kafka accepts that.
        let mut server = ScramServer::new(ScramMechanism::Sha256);
        let stored = cred.clone();
        let first = server
            .client_first(b"n,,n=alice,r=cn", "srv", |_| Some(stored))
            .expect("first");
        let mut client = ScramClient::new(ScramMechanism::Sha256, "alice", "p", "cn");
        client.client_first();
        let _ = client.client_final(&first).expect("final");
        // Build the doubled-nonce final message with a correct proof for it.
        let m = ScramMechanism::Sha256;
        let salted = m.salted_password(b"p", b"s", 4096);
        let client_key = m.hmac(&salted, b"Client Key");
        let without_proof = "c=biws,r=cncnsrv";
        let auth = format!(
            "n=alice,r=cn,{},{without_proof}",
            String::from_utf8(first).expect("u")
        );
        let sig = m.hmac(&m.hash(&client_key), auth.as_bytes());
        let proof = B64.encode(xor(&client_key, &sig));
        assert!(server
            .client_final(format!("{without_proof},p={proof}").as_bytes())
            .is_ok());
        // Out of order.
        let mut s = ScramServer::new(ScramMechanism::Sha256);
        assert!(s.client_final(b"c=biws,r=x,p=AA==").is_err());
    }

    #[test]
    fn client_refuses_forged_server() {
        let mut client = ScramClient::new(ScramMechanism::Sha256, "alice", "p", "cn");
        client.client_first();
        assert!(client.client_final(b"r=other,s=c2FsdA==,i=4096").is_err());
        let mut client = ScramClient::new(ScramMechanism::Sha256, "alice", "p", "cn");
        client.client_first();
        assert!(client.client_final(b"r=cnX,s=c2FsdA==,i=10").is_err());
        let mut client = ScramClient::new(ScramMechanism::Sha256, "alice", "p", "cn");
        client.client_first();
        client
            .client_final(b"r=cnX,s=c2FsdA==,i=4096")
            .expect("final");
        assert!(client.verify_server_final(b"v=AAAA").is_err());
    }

    #[test]
    fn nonces_are_alphanumeric() {
        let n = printable_nonce(&(0..=255u8).collect::<Vec<_>>());
        assert_eq!(n.len(), 256);
        assert!(n.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn sasl_names() {
        assert_eq!(decode_sasl_name("a=2Cb=3Dc").expect("ok"), "a,b=c");
        assert_eq!(encode_sasl_name("a,b=c"), "a=2Cb=3Dc");
        assert!(decode_sasl_name("a=").is_err());
    }

    #[test]
    fn add_scram_syntax() {
        let (name, c) = parse_add_scram("SCRAM-SHA-256=[name=alice,password=alice-secret]", b"rnd")
            .expect("ok");
        assert_eq!(name, "alice");
        assert_eq!(
            c,
            ScramCredential::from_password(ScramMechanism::Sha256, "alice-secret", b"rnd", 4096)
        );
        let (_, c) = parse_add_scram(
            "SCRAM-SHA-512=[name=\"bob\",password=\"pw\",iterations=8192,salt=\"c2FsdA==\"]",
            b"rnd",
        )
        .expect("ok");
        assert_eq!(
            c,
            ScramCredential::from_password(ScramMechanism::Sha512, "pw", b"salt", 8192)
        );
        let salted = B64.encode(ScramMechanism::Sha512.salted_password(b"pw", b"salt", 8192));
        let (_, c2) = parse_add_scram(
            &format!("SCRAM-SHA-512=[name=bob,iterations=8192,salt=\"c2FsdA==\",saltedpassword=\"{salted}\"]"),
            b"rnd",
        )
        .expect("ok");
        assert_eq!(c, c2);
        for bad in [
            "SCRAM-SHA-1=[name=a,password=b]",
            "SCRAM-SHA-256=name=a,password=b",
            "SCRAM-SHA-256=[password=b]",
            "SCRAM-SHA-256=[name=a]",
            "SCRAM-SHA-256=[name=a,password=b,iterations=100]",
            "SCRAM-SHA-256=[name=a,password=b,colour=red]",
        ] {
            assert!(parse_add_scram(bad, b"rnd").is_err(), "{bad}");
        }
    }
}
