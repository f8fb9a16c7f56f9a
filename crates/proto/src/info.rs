//! The `INFO` document a server sends to clients, routes and leafnodes.

use serde::{Deserialize, Deserializer, Serialize};

use crate::ProtoError;

/// `INFO` JSON, with every field nats-server (2.9 to 2.15) sends.
///
/// Field order and omission follow nats-server's struct (`omitempty` fields are skipped when
/// empty, false or zero), so our `INFO` looks like theirs. Parsing tolerates unknown fields
/// and `null` for any field (read as its default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Info {
    /// Server id (56-char public nkey, starts with `N`).
    #[serde(deserialize_with = "nullable")]
    pub server_id: String,
    /// Server name (defaults to the id).
    #[serde(deserialize_with = "nullable")]
    pub server_name: String,
    /// NATS server version implemented (clients gate features on it).
    #[serde(deserialize_with = "nullable")]
    pub version: String,
    /// Protocol level: 1 for clients, 2 (3 on 2.10+) for routes.
    #[serde(deserialize_with = "nullable")]
    pub proto: i32,
    /// Git commit of the build.
    #[serde(skip_serializing_if = "none_or_empty", deserialize_with = "opt_string")]
    pub git_commit: Option<String>,
    /// Go version (nats-server); free text for us.
    #[serde(deserialize_with = "nullable")]
    pub go: String,
    /// Listen host.
    #[serde(deserialize_with = "nullable")]
    pub host: String,
    /// Listen port.
    #[serde(deserialize_with = "nullable")]
    pub port: u16,
    /// Whether the server supports headers (always sent).
    #[serde(deserialize_with = "nullable")]
    pub headers: bool,
    /// Authentication is required.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub auth_required: bool,
    /// TLS is required.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub tls_required: bool,
    /// Client certificates are verified.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub tls_verify: bool,
    /// TLS is available (but not required).
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub tls_available: bool,
    /// Max payload (always sent; nats.go refuses publishes above it).
    #[serde(deserialize_with = "nullable")]
    pub max_payload: usize,
    /// JetStream is enabled.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub jetstream: bool,
    /// Route URL of a gossiped route INFO (`nats-route://host:port/`), or a leaf's address.
    #[serde(skip_serializing_if = "none_or_empty", deserialize_with = "opt_string")]
    pub ip: Option<String>,
    /// The connection id given to this client.
    #[serde(skip_serializing_if = "is_zero_u64", deserialize_with = "nullable")]
    pub client_id: u64,
    /// The client's IP as the server sees it.
    #[serde(skip_serializing_if = "none_or_empty", deserialize_with = "opt_string")]
    pub client_ip: Option<String>,
    /// Nonce to sign (nkey/JWT auth).
    #[serde(skip_serializing_if = "none_or_empty", deserialize_with = "opt_string")]
    pub nonce: Option<String>,
    /// Cluster name.
    #[serde(skip_serializing_if = "none_or_empty", deserialize_with = "opt_string")]
    pub cluster: Option<String>,
    /// The cluster name is dynamic (none was configured).
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub cluster_dynamic: bool,
    /// JetStream domain.
    #[serde(skip_serializing_if = "none_or_empty", deserialize_with = "opt_string")]
    pub domain: Option<String>,
    /// Client URLs (`host:port`) of the cluster's servers, own first.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub connect_urls: Vec<String>,
    /// Websocket client URLs.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub ws_connect_urls: Vec<String>,
    /// Lame duck mode announcement.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub ldm: bool,
    /// Route/leaf compression mode (2.10+). Leave unset unless S2 framing is implemented.
    #[serde(skip_serializing_if = "none_or_empty", deserialize_with = "opt_string")]
    pub compression: Option<String>,
    /// Route: subjects the peer may import.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import: Option<SubjectPermission>,
    /// Route: subjects the peer may export.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export: Option<SubjectPermission>,
    /// Route: understands `LS+`/`LMSG` (leaf origin cluster).
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub lnoc: bool,
    /// Route: `LS-` carries the origin cluster (2.10+).
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub lnocu: bool,
    /// Route/leaf: this INFO is the one sent on connect.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub info_on_connect: bool,
    /// This INFO answers a CONNECT.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub connect_info: bool,
    /// Route pool size (2.10+). Leave 0 (omitted) to stay on the single-connection protocol.
    #[serde(skip_serializing_if = "is_zero_i32", deserialize_with = "nullable")]
    pub route_pool_size: i32,
    /// Route pool index of this connection (2.10+).
    #[serde(skip_serializing_if = "is_zero_i32", deserialize_with = "nullable")]
    pub route_pool_idx: i32,
    /// Account pinned to this route connection (2.10+).
    #[serde(skip_serializing_if = "none_or_empty", deserialize_with = "opt_string")]
    pub route_account: Option<String>,
    /// Request id of a pinned-account addition (2.10+).
    #[serde(skip_serializing_if = "none_or_empty", deserialize_with = "opt_string")]
    pub route_acc_add_reqid: Option<String>,
    /// Gossip mode of a forwarded route INFO (2.10+): 0 default, 1 disabled, 2 override.
    #[serde(skip_serializing_if = "is_zero_u8", deserialize_with = "nullable")]
    pub gossip_mode: u8,
    /// Gateway name.
    #[serde(skip_serializing_if = "none_or_empty", deserialize_with = "opt_string")]
    pub gateway: Option<String>,
    /// Gateway URLs.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub gateway_urls: Vec<String>,
    /// Gateway URL.
    #[serde(skip_serializing_if = "none_or_empty", deserialize_with = "opt_string")]
    pub gateway_url: Option<String>,
    /// Gateway command.
    #[serde(skip_serializing_if = "is_zero_u8", deserialize_with = "nullable")]
    pub gateway_cmd: u8,
    /// Gateway command payload (base64 text, as Go encodes bytes).
    #[serde(skip_serializing_if = "none_or_empty", deserialize_with = "opt_string")]
    pub gateway_cmd_payload: Option<String>,
    /// Gateway: no-reply-prefix support.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub gateway_nrp: bool,
    /// Gateway: interest-only mode.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub gateway_iom: bool,
    /// Leafnode URLs of the hub's cluster.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub leafnode_urls: Vec<String>,
    /// Account the connection is bound to (in the INFO answering a CONNECT).
    #[serde(skip_serializing_if = "none_or_empty", deserialize_with = "opt_string")]
    pub remote_account: Option<String>,
    /// JetStream API level (2.10+).
    #[serde(skip_serializing_if = "is_zero_i32", deserialize_with = "nullable")]
    pub api_lvl: i32,
    /// Curve public key for auth-callout encryption (2.10+).
    #[serde(skip_serializing_if = "none_or_empty", deserialize_with = "opt_string")]
    pub xkey: Option<String>,
}

impl Info {
    /// Parses an `INFO` document.
    pub fn from_json(json: &[u8]) -> Result<Self, ProtoError> {
        Ok(serde_json::from_slice(object(json)?)?)
    }

    /// The JSON text (what follows `INFO ` on the wire).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("INFO serialization cannot fail")
    }
}

/// Checks that a document is a JSON object: serde would also read a struct from an array,
/// which nats-server (Go's `json.Unmarshal`) refuses.
pub(crate) fn object(json: &[u8]) -> Result<&[u8], ProtoError> {
    match json
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
    {
        Some(b'{') => Ok(json),
        _ => Err(ProtoError::Json("expected a JSON object".into())),
    }
}

/// Subjects allowed and denied (route `import`/`export` permissions).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubjectPermission {
    /// Allowed subjects.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub allow: Vec<String>,
    /// Denied subjects.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub deny: Vec<String>,
}

/// Reads `null` as the type's default, as Go's `json.Unmarshal` leaves a field untouched.
pub(crate) fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Reads an omitempty string: absent, `null` and `""` are all `None` (Go cannot tell them
/// apart either), so parsing and encoding round-trip.
pub(crate) fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

pub(crate) fn none_or_empty(s: &Option<String>) -> bool {
    !matches!(s.as_deref(), Some(x) if !x.is_empty())
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

fn is_zero_i32(n: &i32) -> bool {
    *n == 0
}

fn is_zero_u8(n: &u8) -> bool {
    *n == 0
}
