//! The `CONNECT` document: what clients (and, with more fields, routes and leafnodes) send.

use serde::{Deserialize, Deserializer, Serialize};

use crate::info::{is_false, none_or_empty, nullable, object, opt_string};
use crate::{ProtoError, SubjectPermission};

/// `CONNECT` JSON: every field a client, a route or a leafnode may send.
///
/// nats-server applies the JSON *on top of* defaults in which `verbose`, `pedantic` and `echo`
/// are true, so a field the client omits (or sends as `null`) keeps its default:
/// [`Connect::default`] has those values and [`Connect::from_json`] (and `Deserialize`)
/// implement exactly that. Unknown fields are ignored; a field of the wrong type is an error
/// (nats-server then closes the connection silently).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Connect {
    /// Acknowledge every op with `+OK`. Default true.
    #[serde(deserialize_with = "nullable_true")]
    pub verbose: bool,
    /// Strict checks (e.g. publish subjects). Default true.
    #[serde(deserialize_with = "nullable_true")]
    pub pedantic: bool,
    /// User JWT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<String>,
    /// Public nkey.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nkey: Option<String>,
    /// Signed nonce.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
    /// Token authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    /// User name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pass: Option<String>,
    /// The client requires TLS.
    #[serde(deserialize_with = "nullable")]
    pub tls_required: bool,
    /// Client (or, for leafnodes, server) name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Client library language. Its presence on a route port marks a misdirected client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// Client library version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Protocol level: 0 original, 1 async INFO (nats-server refuses anything else from clients).
    #[serde(deserialize_with = "nullable")]
    pub protocol: i32,
    /// Receive own messages. Default true.
    #[serde(deserialize_with = "nullable_true")]
    pub echo: bool,
    /// The client supports headers.
    #[serde(deserialize_with = "nullable")]
    pub headers: bool,
    /// The client wants 503 no-responders statuses (needs `headers`).
    #[serde(deserialize_with = "nullable")]
    pub no_responders: bool,
    /// Legacy account field (nats-server now rejects a CONNECT carrying it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Legacy new-account flag.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub new_account: bool,
    /// Route/leaf: cluster name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Route: the cluster name is dynamic.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub cluster_dynamic: bool,
    /// Route: understands `LS+`/`LMSG`.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub lnoc: bool,
    /// Route: `LS-` carries the origin (2.10+).
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub lnocu: bool,
    /// Gateway name (a gateway dialling a route or leaf port).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Route/leaf: import permissions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import: Option<SubjectPermission>,
    /// Route/leaf: export permissions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export: Option<SubjectPermission>,
    /// Leaf: the soliciting server's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_id: Option<String>,
    /// Leaf: JetStream domain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Leaf: the soliciting side is a hub.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub is_hub: bool,
    /// Leaf: JetStream enabled on the soliciting side.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub jetstream: bool,
    /// Leaf: subjects the soliciting side may not publish.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub deny_pub: Vec<String>,
    /// Leaf: compression mode (2.10+).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compress_mode: Option<String>,
    /// Leaf: account the soliciting side binds to (2.10+).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_account: Option<String>,
}

impl Default for Connect {
    /// nats-server's defaults: `verbose`, `pedantic` and `echo` true, everything else empty.
    fn default() -> Self {
        Self {
            verbose: true,
            pedantic: true,
            jwt: None,
            nkey: None,
            sig: None,
            auth_token: None,
            user: None,
            pass: None,
            tls_required: false,
            name: None,
            lang: None,
            version: None,
            protocol: 0,
            echo: true,
            headers: false,
            no_responders: false,
            account: None,
            new_account: false,
            cluster: None,
            cluster_dynamic: false,
            lnoc: false,
            lnocu: false,
            gateway: None,
            import: None,
            export: None,
            server_id: None,
            domain: None,
            is_hub: false,
            jetstream: false,
            deny_pub: Vec::new(),
            compress_mode: None,
            remote_account: None,
        }
    }
}

impl Connect {
    /// Parses a `CONNECT` document on top of the defaults (see the type's docs).
    pub fn from_json(json: &[u8]) -> Result<Self, ProtoError> {
        Ok(serde_json::from_slice(object(json)?)?)
    }

    /// Applies a `CONNECT` document on top of `self`, as nats-server does when a client sends
    /// `CONNECT` again: fields absent from (or `null` in) the JSON keep their current values.
    pub fn apply_json(&mut self, json: &[u8]) -> Result<(), ProtoError> {
        // Validates types exactly as `from_json` does.
        let parsed = Self::from_json(json)?;
        let given: std::collections::HashMap<String, Given> = serde_json::from_slice(json)?;
        let serde_json::Value::Object(new) = serde_json::to_value(&parsed)? else {
            unreachable!("a struct")
        };
        let serde_json::Value::Object(mut merged) = serde_json::to_value(&*self)? else {
            unreachable!("a struct")
        };
        for (key, g) in given {
            if g == Given::Value {
                match new.get(&key) {
                    Some(v) => merged.insert(key, v.clone()),
                    // Omitted when empty: removing it selects the (empty) default.
                    None => merged.remove(&key),
                };
            }
        }
        *self = serde_json::from_value(serde_json::Value::Object(merged))?;
        Ok(())
    }

    /// The JSON text (what follows `CONNECT ` on the wire).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("CONNECT serialization cannot fail")
    }
}

/// A route's `CONNECT` document, field for field as nats-server sends it
/// (`{"echo":true,"verbose":false,"pedantic":false,"tls_required":false,"headers":true,"name":"<server id>","cluster":"demo","lnoc":true}`).
///
/// A route `CONNECT` also parses as a [`Connect`]; this type exists to emit the exact form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RouteConnect {
    /// Echo (nats-server sends true).
    #[serde(deserialize_with = "nullable")]
    pub echo: bool,
    /// Verbose (false).
    #[serde(deserialize_with = "nullable")]
    pub verbose: bool,
    /// Pedantic (false).
    #[serde(deserialize_with = "nullable")]
    pub pedantic: bool,
    /// Route user (from the route URL's userinfo).
    #[serde(skip_serializing_if = "none_or_empty", deserialize_with = "opt_string")]
    pub user: Option<String>,
    /// Route password.
    #[serde(skip_serializing_if = "none_or_empty", deserialize_with = "opt_string")]
    pub pass: Option<String>,
    /// TLS required.
    #[serde(deserialize_with = "nullable")]
    pub tls_required: bool,
    /// Headers supported.
    #[serde(deserialize_with = "nullable")]
    pub headers: bool,
    /// The dialling server's **id** (the route is keyed by it).
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// Cluster name.
    #[serde(deserialize_with = "nullable")]
    pub cluster: String,
    /// The cluster name is dynamic.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub cluster_dynamic: bool,
    /// Understands `LS+`/`LMSG`.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub lnoc: bool,
    /// `LS-` carries the origin (2.10+).
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub lnocu: bool,
    /// Gateway name (set only by a misdirected gateway).
    #[serde(skip_serializing_if = "none_or_empty", deserialize_with = "opt_string")]
    pub gateway: Option<String>,
}

impl RouteConnect {
    /// Parses a route `CONNECT` document.
    pub fn from_json(json: &[u8]) -> Result<Self, ProtoError> {
        Ok(serde_json::from_slice(object(json)?)?)
    }

    /// The JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("CONNECT serialization cannot fail")
    }
}

/// Whether a JSON field was given a value or `null` (which leaves the field as it was).
#[derive(PartialEq, Eq)]
enum Given {
    Null,
    Value,
}

impl<'de> Deserialize<'de> for Given {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Option::<serde::de::IgnoredAny>::deserialize(d)?;
        Ok(if v.is_some() { Self::Value } else { Self::Null })
    }
}

/// Reads `null` as `true` (the default of `verbose`, `pedantic`, `echo`).
fn nullable_true<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(true))
}
