//! NATS JWTs as a server reads them: operator, account and user tokens in both of their forms
//! (v1: `alg` `ed25519`, the signature over the claims segment; v2: `alg` `ed25519-nkey`,
//! the signature over `header.claims`), each signed by the nkey its `iss` names.
//!
//! Written here because the Rust NATS JWT crates only mint tokens; none validates them, and
//! none reads v1. What is checked matches nats-io/jwt's `Decode`: three base64url chunks, the
//! header's `typ`/`alg`, the claim type, the issuer's key kind, and the signature. Whether the
//! issuer is trusted, and the time window, are the caller's to check ([`Claims::check_time`]).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use data_encoding::BASE64URL_NOPAD;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::permissions::{Permissions, ResponsePermission, SubjectPermission};

/// nats-io/jwt's `MaxTokenSize`.
const MAX_TOKEN_SIZE: usize = 1024 * 1024;

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// Not three base64url chunks of JSON, or claims of the wrong shape.
    #[error("malformed JWT: {0}")]
    Malformed(String),
    /// The header's `typ` is not JWT or its `alg` is not an nkey algorithm.
    #[error("unsupported JWT header: {0}")]
    Header(String),
    /// An operator token where a user token was expected, say.
    #[error("expected a {expected} JWT, got {got:?}")]
    Kind {
        /// The claim type wanted.
        expected: &'static str,
        /// The claim type the token has.
        got: String,
    },
    /// `iss` is not a public key of the kind that may sign this claim.
    #[error("issuer {0:?} cannot sign this claim")]
    Issuer(String),
    /// The signature does not verify with `iss`'s key.
    #[error("claim failed signature verification")]
    Signature,
    /// `exp` has passed.
    #[error("claim is expired")]
    Expired,
    /// `nbf` has not come yet.
    #[error("claim is not yet valid")]
    NotYetValid,
    /// No token was given.
    #[error("no JWT")]
    Missing,
    /// The client did not sign the nonce with the key the user token is about.
    #[error("the nonce is not signed by the user's key")]
    NonceNotSigned,
}

/// The fields every NATS JWT has, and its type's own (`nats`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Claims<N> {
    /// `jti`: the token's id.
    pub id: String,
    /// `iat`: when it was issued (seconds since the epoch).
    pub issued_at: i64,
    /// `iss`: the public key that signed it.
    pub issuer: String,
    /// `sub`: the public key it is about.
    pub subject: String,
    /// `name`.
    pub name: String,
    /// `exp` (seconds since the epoch), if it expires.
    pub expires: Option<i64>,
    /// `nbf` (seconds since the epoch), if it is not valid before then.
    pub not_before: Option<i64>,
    /// 1 or 2: which form the token has.
    pub version: u8,
    /// The claim type's own fields.
    pub nats: N,
}

impl<N> Claims<N> {
    /// Checks `exp` and `nbf` against `now`.
    pub fn check_time(&self, now: SystemTime) -> Result<(), JwtError> {
        let now = unix(now);
        match (self.expires, self.not_before) {
            (Some(exp), _) if exp > 0 && now >= exp => Err(JwtError::Expired),
            (_, Some(nbf)) if nbf > 0 && now < nbf => Err(JwtError::NotYetValid),
            _ => Ok(()),
        }
    }

    /// `exp` as a time.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires
            .filter(|&e| e > 0)
            .map(|e| UNIX_EPOCH + Duration::from_secs(e as u64))
    }
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// An operator's claims.
#[derive(Clone, Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct Operator {
    /// Keys that may sign account tokens besides the operator's own.
    #[serde(default)]
    pub signing_keys: Vec<String>,
    /// The system account's public key.
    #[serde(default)]
    pub system_account: Option<String>,
    /// Only the signing keys may sign account tokens, not the operator's own key.
    #[serde(default)]
    pub strict_signing_key_usage: bool,
}

/// An activation's claims: the exporting account lets the account in `sub` import
/// `subject` from it.
#[derive(Clone, Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct Activation {
    /// The exported subject the activation is for.
    #[serde(default)]
    pub subject: String,
    /// `stream` or `service`.
    #[serde(default, rename = "kind")]
    pub kind: String,
}

/// An allow/deny list (`pub`, `sub`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubjectList {
    /// Subjects allowed (empty: all, unless `deny` says otherwise).
    #[serde(default, deserialize_with = "null_as_default")]
    pub allow: Vec<String>,
    /// Subjects denied.
    #[serde(default, deserialize_with = "null_as_default")]
    pub deny: Vec<String>,
}

impl SubjectList {
    fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    fn to_permission(&self) -> Option<SubjectPermission> {
        (!self.is_empty()).then(|| {
            SubjectPermission::new()
                .allow(self.allow.iter().cloned())
                .deny(self.deny.iter().cloned())
        })
    }
}

/// `resp`: the response permission (`allow_responses`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct Responses {
    /// `max`: responses per request (negative: any number).
    #[serde(default)]
    pub max: i64,
    /// `ttl` in nanoseconds (negative: for ever).
    #[serde(default)]
    pub ttl: i64,
}

/// Publish/subscribe/response permissions, as user tokens, scopes and account defaults carry
/// them.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwtPermissions {
    /// `pub`.
    #[serde(default, rename = "pub")]
    pub publish: SubjectList,
    /// `sub`.
    #[serde(default, rename = "sub")]
    pub subscribe: SubjectList,
    /// `resp`.
    #[serde(default)]
    pub resp: Option<Responses>,
}

impl JwtPermissions {
    /// As nats-server's `buildPermissionsFromJwt`: `None` when nothing is set.
    pub fn to_permissions(&self) -> Option<Permissions> {
        if self.publish.is_empty() && self.subscribe.is_empty() && self.resp.is_none() {
            return None;
        }
        let mut p = Permissions::new();
        if let Some(publish) = self.publish.to_permission() {
            p = p.publish(publish);
        }
        if let Some(subscribe) = self.subscribe.to_permission() {
            p = p.subscribe(subscribe);
        }
        if let Some(r) = &self.resp {
            let max = u64::try_from(r.max).ok();
            let ttl = u64::try_from(r.ttl).ok().map(Duration::from_nanos);
            p = p.allow_responses(ResponsePermission::new().max_msgs(max).expires(ttl));
        }
        Some(p)
    }
}

/// A connect-time window (`times`: `HH:MM:SS`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimeRange {
    /// `start`.
    #[serde(default)]
    pub start: String,
    /// `end`.
    #[serde(default)]
    pub end: String,
}

/// What a user (or a scope's template) may do and from where.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserLimits {
    /// The permissions.
    #[serde(flatten)]
    pub permissions: JwtPermissions,
    /// `src`: the CIDR blocks the client may connect from (empty: anywhere).
    #[serde(default, deserialize_with = "cidr_list")]
    pub src: Vec<String>,
    /// `times`: when the client may connect (empty: always).
    #[serde(default, deserialize_with = "null_as_default")]
    pub times: Vec<TimeRange>,
    /// `times_location`: the IANA zone `times` are in.
    #[serde(default)]
    pub times_location: String,
    /// `subs`: the most subscriptions (-1 or 0: no limit).
    #[serde(default)]
    pub subs: i64,
    /// `data`: the most bytes (-1 or 0: no limit).
    #[serde(default)]
    pub data: i64,
    /// `payload`: the largest message payload (-1 or 0: no limit).
    #[serde(default)]
    pub payload: i64,
    /// `bearer_token`: the token alone authenticates, no nonce signature needed.
    #[serde(default)]
    pub bearer_token: bool,
    /// `allowed_connection_types` (empty: all).
    #[serde(default, deserialize_with = "null_as_default")]
    pub allowed_connection_types: Vec<String>,
}

impl UserLimits {
    /// Whether nothing is set: what a user signed by a scoped key must look like.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// A user's claims.
#[derive(Clone, Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct User {
    /// Permissions and limits.
    #[serde(flatten)]
    pub limits: UserLimits,
    /// The account the user belongs to when one of its signing keys signed the token.
    #[serde(default)]
    pub issuer_account: Option<String>,
    /// `tags` (`key:value` strings a scoped template may use).
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
}

/// An account signing key and, for a scoped key, the template its users get.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SigningKey {
    /// The public key.
    pub key: String,
    /// A scoped key's template: its users' permissions and limits, whatever their tokens say.
    pub scope: Option<UserLimits>,
}

/// An account's limits (`-1`: no limit).
#[derive(Clone, Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct AccountLimits {
    /// `conn`: active connections.
    #[serde(default)]
    pub conn: i64,
    /// `subs`: subscriptions.
    #[serde(default)]
    pub subs: i64,
    /// `payload`: the largest payload.
    #[serde(default)]
    pub payload: i64,
    /// `disallow_bearer`: bearer user tokens are refused.
    #[serde(default)]
    pub disallow_bearer: bool,
}

/// An export in an account token.
#[derive(Clone, Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct Export {
    /// `subject`.
    #[serde(default)]
    pub subject: String,
    /// `type`: `stream` or `service`.
    #[serde(default, rename = "type")]
    pub kind: String,
    /// `token_req`: importers need an activation token.
    #[serde(default)]
    pub token_req: bool,
    /// `response_type`: `Singleton`, `Stream` or `Chunked`.
    #[serde(default)]
    pub response_type: Option<String>,
    /// `account_token_position`: the (1-based) token of the subject where an importer must
    /// put its own account's public key (0: none).
    #[serde(default)]
    pub account_token_position: usize,
}

/// An import in an account token.
#[derive(Clone, Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct Import {
    /// `subject`: the exporter's subject.
    #[serde(default)]
    pub subject: String,
    /// `account`: the exporting account's public key.
    #[serde(default)]
    pub account: String,
    /// `to` (v1) / `local_subject` (v2): where the import lands here.
    #[serde(default)]
    pub to: Option<String>,
    /// `local_subject`.
    #[serde(default)]
    pub local_subject: Option<String>,
    /// `type`: `stream` or `service`.
    #[serde(default, rename = "type")]
    pub kind: String,
    /// `token`: an activation token for a `token_req` export.
    #[serde(default)]
    pub token: Option<String>,
}

/// An account's claims.
#[derive(Clone, Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct Account {
    /// Limits.
    #[serde(default)]
    pub limits: AccountLimits,
    /// Keys that may sign the account's user tokens besides its own.
    #[serde(default, deserialize_with = "signing_keys")]
    pub signing_keys: Vec<SigningKey>,
    /// User keys (or `*`, every user) and the time before which their tokens are revoked.
    #[serde(default, deserialize_with = "null_as_default")]
    pub revocations: HashMap<String, i64>,
    /// The permissions of users whose tokens set none.
    #[serde(default)]
    pub default_permissions: JwtPermissions,
    /// Exports.
    #[serde(default, deserialize_with = "null_as_default")]
    pub exports: Vec<Export>,
    /// Imports.
    #[serde(default, deserialize_with = "null_as_default")]
    pub imports: Vec<Import>,
    /// `tags`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
}

impl Account {
    /// Whether a user token about `user` issued at `issued_at` has been revoked.
    pub fn is_revoked(&self, user: &str, issued_at: i64) -> bool {
        let at = |k: &str| self.revocations.get(k).is_some_and(|&t| t >= issued_at);
        at("*") || at(user)
    }
}

/// Decodes and verifies an operator token (self-signed).
pub fn decode_operator(token: &str) -> Result<Claims<Operator>, JwtError> {
    decode(token, "operator", b'O')
}

/// Decodes and verifies an account token (signed by an operator key).
pub fn decode_account(token: &str) -> Result<Claims<Account>, JwtError> {
    decode(token, "account", b'O')
}

/// Decodes and verifies an activation token (signed by the exporting account's key).
pub fn decode_activation(token: &str) -> Result<Claims<Activation>, JwtError> {
    decode(token, "activation", b'A')
}

/// Decodes and verifies a user token (signed by an account key).
pub fn decode_user(token: &str) -> Result<Claims<User>, JwtError> {
    decode(token, "user", b'A')
}

#[derive(Deserialize)]
struct Header {
    #[serde(default)]
    typ: String,
    #[serde(default)]
    alg: String,
}

/// The claim fields common to v1 and v2. v1 keeps `type` (and a user's `issuer_account`)
/// at the top; v2 moves them into `nats` beside `version`.
#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    jti: String,
    #[serde(default)]
    iat: i64,
    #[serde(default)]
    iss: String,
    #[serde(default)]
    sub: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default, rename = "type")]
    v1_type: Option<String>,
    #[serde(default)]
    issuer_account: Option<String>,
    #[serde(default)]
    tags: Option<serde_json::Value>,
    #[serde(default)]
    nats: serde_json::Map<String, serde_json::Value>,
}

fn decode<N: DeserializeOwned>(
    token: &str,
    expected: &'static str,
    issuer_prefix: u8,
) -> Result<Claims<N>, JwtError> {
    let malformed = |what: &str| JwtError::Malformed(what.to_string());
    if token.len() > MAX_TOKEN_SIZE {
        return Err(malformed("token too large"));
    }
    let token = token.trim();
    let mut chunks = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (chunks.next(), chunks.next(), chunks.next(), chunks.next())
    else {
        return Err(malformed("expected 3 chunks"));
    };
    let b64 = |chunk: &str| {
        BASE64URL_NOPAD
            .decode(chunk.as_bytes())
            .map_err(|e| JwtError::Malformed(e.to_string()))
    };
    let header: Header =
        serde_json::from_slice(&b64(h)?).map_err(|e| JwtError::Malformed(e.to_string()))?;
    if !header.typ.eq_ignore_ascii_case("jwt") {
        return Err(JwtError::Header(format!(
            "not supported type {:?}",
            header.typ
        )));
    }
    let alg = header.alg.to_ascii_lowercase();
    if alg != "ed25519" && alg != "ed25519-nkey" {
        return Err(JwtError::Header(format!(
            "unexpected {:?} algorithm",
            header.alg
        )));
    }
    let mut raw: Raw =
        serde_json::from_slice(&b64(c)?).map_err(|e| JwtError::Malformed(e.to_string()))?;
    let (kind, version) = match raw.v1_type.take() {
        Some(kind) => (kind, 1),
        None => {
            let kind = raw.nats.get("type").and_then(|v| v.as_str()).unwrap_or("");
            let version = raw
                .nats
                .get("version")
                .and_then(|v| v.as_u64())
                .unwrap_or(0);
            (kind.to_string(), if version >= 2 { 2 } else { 1 })
        }
    };
    if kind != expected {
        return Err(JwtError::Kind {
            expected,
            got: kind,
        });
    }
    if raw.iss.as_bytes().first() != Some(&issuer_prefix) {
        return Err(JwtError::Issuer(raw.iss));
    }
    let key =
        nkeys::KeyPair::from_public_key(&raw.iss).map_err(|_| JwtError::Issuer(raw.iss.clone()))?;
    let signature = b64(s)?;
    // v1 signed the claims segment alone; v2 signs header and claims.
    let signed = if version == 1 {
        c
    } else {
        &token[..h.len() + 1 + c.len()]
    };
    key.verify(signed.as_bytes(), &signature)
        .map_err(|_| JwtError::Signature)?;
    // v1 kept these beside the claims; v2 inside `nats`.
    if let Some(account) = raw.issuer_account.take() {
        raw.nats
            .entry("issuer_account")
            .or_insert(serde_json::Value::String(account));
    }
    if let Some(tags) = raw.tags.take() {
        raw.nats.entry("tags").or_insert(tags);
    }
    let nats = serde_json::from_value(serde_json::Value::Object(raw.nats))
        .map_err(|e| JwtError::Malformed(e.to_string()))?;
    Ok(Claims {
        id: raw.jti,
        issued_at: raw.iat,
        issuer: raw.iss,
        subject: raw.sub,
        name: raw.name,
        expires: raw.exp,
        not_before: raw.nbf,
        version,
        nats,
    })
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `src`: a list of CIDRs, or one comma-separated string of them (as nats-io/jwt accepts).
fn cidr_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Src {
        List(Vec<String>),
        Joined(String),
    }
    Ok(match Option::<Src>::deserialize(d)? {
        None => Vec::new(),
        Some(Src::List(v)) => v,
        Some(Src::Joined(s)) => s
            .split(',')
            .map(|c| c.trim().to_ascii_lowercase())
            .filter(|c| !c.is_empty())
            .collect(),
    })
}

/// `signing_keys`: plain keys, or `{kind: user_scope, key, template}` objects.
fn signing_keys<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<SigningKey>, D::Error> {
    #[derive(Deserialize)]
    struct Scoped {
        kind: String,
        key: String,
        #[serde(default)]
        template: UserLimits,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Entry {
        Key(String),
        Scoped(Box<Scoped>),
    }
    let entries = Option::<Vec<Entry>>::deserialize(d)?.unwrap_or_default();
    entries
        .into_iter()
        .map(|e| match e {
            Entry::Key(key) => Ok(SigningKey { key, scope: None }),
            Entry::Scoped(s) if s.kind == "user_scope" => Ok(SigningKey {
                key: s.key,
                scope: Some(s.template),
            }),
            Entry::Scoped(s) => Err(serde::de::Error::custom(format!(
                "unknown signing key scope {:?}",
                s.kind
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nats.py's v1 test operator (nats/tests/nkeys/op.jwt), minted by Go's nsc.
    const V1_OPERATOR: &str = "eyJ0eXAiOiJqd3QiLCJhbGciOiJlZDI1NTE5In0.eyJqdGkiOiIyTVhXQ0VaRFo2S0g3NU5ZU1NaUFBTTElET1NEVzdMVVE0RVRUSjJMWEhKQlFGWTRTMkZBIiwiaWF0IjoxNTUzODQwMzM3LCJpc3MiOiJPRFdJSUU3SjdOT1M3M1dWQk5WWTdIQ1dYVTRXWFdEQlNDVjRWSUtNNVk0TFhUT1Q1U1FQT0xXTCIsIm5hbWUiOiJ0ZXN0X29wZXJhdG9yIiwic3ViIjoiT0RXSUlFN0o3Tk9TNzNXVkJOVlk3SENXWFU0V1hXREJTQ1Y0VklLTTVZNExYVE9UNVNRUE9MV0wiLCJ0eXBlIjoib3BlcmF0b3IifQ.V_v6k3aMOpyau83RaqNHW_YmZw8X0ZnJWLOas3YvQYIyXrHF0bL9inBaQw6zXzbN_ViQnNskhB7tM40qguitAg";
    /// A v1 user of nats.py's account "foo" (nats/tests/nkeys/foo-user.creds).
    const V1_USER: &str = "eyJ0eXAiOiJqd3QiLCJhbGciOiJlZDI1NTE5In0.eyJqdGkiOiJXTURGT1dHV1JGWkRGRFVSM0dPUkdESEtUTTdDUlZBVDQ1RkRFMllNRUY1N0VOQ0JBVFFRIiwiaWF0IjoxNTUzODQwOTQ0LCJpc3MiOiJBRDdTRUFOUzZCQ0JGNkZISUI3U1EzVUdKVlBXNTNCWE9BTFA3NVlYSkJCWFFMN0VBRkI2TkpOQSIsIm5hbWUiOiJmb28tdXNlciIsInN1YiI6IlVDSzVON042Nk9CT0lORlhBWUMyQUNKUVlGU09ENFZZTlU2QVBFSlRBVkZaQjJTVkhMS0dFVzdMIiwidHlwZSI6InVzZXIiLCJuYXRzIjp7InB1YiI6e30sInN1YiI6e319fQ.Vri09BN561m37GvuSWoGN9L9TSkwQbjC_jIv1BCJcoxZqNc_Pa7WbR12b3SAS4_Ip2D9-2HCwyYib1JUEIO8Bg";
    /// async-nats's v2 test operator (async-nats/tests/configs/jwt.conf).
    const V2_OPERATOR: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJqdGkiOiJVWlhRWjVXR1VGSUY0S0ZKS1dFRUhSTU5PM0RQVUdZMzUyM1QyNk1IQU1KTENDVzVZVjdRIiwiaWF0IjoxNjUxNzkwOTcwLCJpc3MiOiJPQjVYQ0U0NVdFVkYyRjVWWUZOM1Q3NEpJRVpFT1JaVzYzSEJFSVdVWEpHWU9HS0VBSVVLM0FMTSIsIm5hbWUiOiJUZXN0T3BlcmF0b3IiLCJzdWIiOiJPQjVYQ0U0NVdFVkYyRjVWWUZOM1Q3NEpJRVpFT1JaVzYzSEJFSVdVWEpHWU9HS0VBSVVLM0FMTSIsIm5hdHMiOnsic3lzdGVtX2FjY291bnQiOiJBQlJFSk5ZQVNXR1MyQTVFVlhQVlhHR0NPSzJMSlhUN0taTllCQlpBWFVUVUJJMlZTTUFWN0RITiIsInR5cGUiOiJvcGVyYXRvciIsInZlcnNpb24iOjJ9fQ.RN7AkgTATcx9E_ykTQHI0wM3OE8BwKPb3aPj7ojLGiNpjIRP-ehvSiUUkfWPh6rcO709TKspfQgTxcRxLoq5Bg";

    #[test]
    fn tokens_minted_by_go_decode_in_both_forms() {
        let op = decode_operator(V1_OPERATOR).unwrap();
        assert_eq!(op.version, 1);
        assert_eq!(
            op.subject,
            "ODWIIE7J7NOS73WVBNVY7HCWXU4WXWDBSCV4VIKM5Y4LXTOT5SQPOLWL"
        );
        let user = decode_user(V1_USER).unwrap();
        assert_eq!(user.version, 1);
        assert_eq!(
            user.issuer,
            "AD7SEANS6BCBF6FHIB7SQ3UGJVPW53BXOALP75YXJBBXQL7EAFB6NJNA"
        );
        assert!(user.nats.limits.permissions.to_permissions().is_none());
        let op = decode_operator(V2_OPERATOR).unwrap();
        assert_eq!(op.version, 2);
        assert_eq!(
            op.nats.system_account.as_deref(),
            Some("ABREJNYASWGS2A5EVXPVXGGCOK2LJXT7KZNYBBZAXUTUBI2VSMAV7DHN")
        );
    }

    #[test]
    fn tampered_or_misused_tokens_are_refused() {
        // A user token is not an operator token.
        assert!(matches!(
            decode_operator(V1_USER),
            Err(JwtError::Kind { .. })
        ));
        // Another claim under the same signature.
        let mut parts: Vec<&str> = V2_OPERATOR.split('.').collect();
        let claims = String::from_utf8(BASE64URL_NOPAD.decode(parts[1].as_bytes()).unwrap())
            .unwrap()
            .replace("TestOperator", "EvilOperator");
        let forged = BASE64URL_NOPAD.encode(claims.as_bytes());
        parts[1] = &forged;
        assert_eq!(
            decode_operator(&parts.join(".")).unwrap_err(),
            JwtError::Signature
        );
        assert!(matches!(
            decode_operator("a.b"),
            Err(JwtError::Malformed(_))
        ));
        // A v2 token whose header says v1 is checked as v1, and fails.
        let v2: Vec<&str> = V2_OPERATOR.split('.').collect();
        let v1_header = V1_OPERATOR.split('.').next().unwrap();
        let relabelled = format!("{v1_header}.{}.{}", v2[1], v2[2]);
        assert_eq!(
            decode_operator(&relabelled).unwrap_err(),
            JwtError::Signature
        );
    }

    proptest::proptest! {
        /// Tokens come from clients: whatever they are, decoding answers without panicking.
        #[test]
        fn any_token_is_answered_without_a_panic(
            text in ".{0,200}",
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..120), 0..5),
        ) {
            let _ = decode_user(&text);
            let _ = decode_operator(&text);
            let encoded: Vec<String> = chunks.iter().map(|c| BASE64URL_NOPAD.encode(c)).collect();
            let token = encoded.join(".");
            let _ = decode_user(&token);
            let _ = decode_account(&token);
            // A real token with one byte changed.
            let mut forged = V2_OPERATOR.as_bytes().to_vec();
            if let Some(first) = chunks.first().and_then(|c| c.first()) {
                let at = *first as usize % forged.len();
                forged[at] = chunks[0].get(1).copied().unwrap_or(b'A');
            }
            let forged = String::from_utf8_lossy(&forged).into_owned();
            // Any change to a signed token is refused.
            proptest::prop_assert!(forged == V2_OPERATOR || decode_operator(&forged).is_err());
        }
    }

    #[test]
    fn revocations_and_time_windows() {
        let account = Account {
            revocations: HashMap::from([("U1".to_string(), 100)]),
            ..Default::default()
        };
        assert!(account.is_revoked("U1", 100));
        assert!(!account.is_revoked("U1", 101));
        assert!(!account.is_revoked("U2", 1));
        let all = Account {
            revocations: HashMap::from([("*".to_string(), 50)]),
            ..Default::default()
        };
        assert!(all.is_revoked("U9", 49));

        let mut claims = decode_operator(V2_OPERATOR).unwrap();
        claims.expires = Some(unix(SystemTime::now()) - 1);
        assert_eq!(claims.check_time(SystemTime::now()), Err(JwtError::Expired));
        claims.expires = None;
        claims.not_before = Some(unix(SystemTime::now()) + 60);
        assert_eq!(
            claims.check_time(SystemTime::now()),
            Err(JwtError::NotYetValid)
        );
    }
}
