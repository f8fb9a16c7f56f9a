//! nats-server's client `tls { ... }` block and its `--tls*` flags, read into the server
//! crate's [`TlsConfig`]. As in nats-server, any `--tls*` flag replaces the file's block with
//! one made of the flags alone, and `--tls=false` turns TLS off.

use std::path::PathBuf;
use std::time::Duration;

use starling_server::{HandshakeFirst, TlsConfig, TlsVersion, DEFAULT_HANDSHAKE_FIRST_FALLBACK};

use super::{ConfigError, Cx, SettingsError};
use crate::conf::{Item, Value};
use starling_server::gotime::parse_duration;

/// A `tls {}` block or the `--tls*` flags, as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    /// `false` after `--tls=false`.
    pub(crate) enabled: bool,
    /// Made of flags (nats-server's error texts for missing files differ).
    pub(crate) from_flags: bool,
    pub(crate) cert_file: Option<PathBuf>,
    pub(crate) key_file: Option<PathBuf>,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) verify: bool,
    pub(crate) timeout: Option<Duration>,
    pub(crate) handshake_first: HandshakeFirst,
    pub(crate) min_version: Option<TlsVersion>,
    pub(crate) cipher_suites: Vec<String>,
    pub(crate) curve_preferences: Vec<String>,
    pub(crate) verify_and_map: bool,
    pub(crate) pinned_certs: Vec<String>,
}

impl TlsSettings {
    fn new(from_flags: bool) -> Self {
        Self {
            enabled: true,
            from_flags,
            cert_file: None,
            key_file: None,
            ca_file: None,
            verify: false,
            timeout: None,
            handshake_first: HandshakeFirst::Off,
            min_version: None,
            cipher_suites: Vec::new(),
            curve_preferences: Vec::new(),
            verify_and_map: false,
            pinned_certs: Vec::new(),
        }
    }

    /// What the flags build on: the flags' own block (never the file's).
    pub(crate) fn flags(current: &mut Option<Self>) -> &mut Self {
        if !current.as_ref().is_some_and(|t| t.from_flags) {
            *current = Some(Self::new(true));
        }
        current.as_mut().expect("just set")
    }

    /// The server's TLS configuration (`None` when TLS is off), with nats-server's errors for
    /// missing files.
    pub(crate) fn config(&self) -> Result<Option<TlsConfig>, SettingsError> {
        if !self.enabled {
            return Ok(None);
        }
        let missing = |flag: &str, key: &str| {
            SettingsError::Invalid(if self.from_flags {
                format!("TLS Server {flag} must be present and valid")
            } else {
                format!("missing '{key}' in TLS configuration")
            })
        };
        // nats-server checks the flags' certificate first, and the file's key first.
        let cert = || {
            self.cert_file
                .clone()
                .ok_or_else(|| missing("certificate", "cert_file"))
        };
        let key = || {
            self.key_file
                .clone()
                .ok_or_else(|| missing("private key", "key_file"))
        };
        let (cert, key) = if self.from_flags {
            (cert()?, key()?)
        } else {
            let key = key()?;
            (cert()?, key)
        };
        let mut c = TlsConfig::new(cert, key)
            .verify(self.verify)
            .verify_and_map(self.verify_and_map)
            .pinned_certs(&self.pinned_certs)
            .handshake_first(self.handshake_first)
            .cipher_suites(self.cipher_suites.iter().cloned())
            .curve_preferences(self.curve_preferences.iter().cloned());
        if let Some(ca) = &self.ca_file {
            c = c.ca_file(ca.clone());
        }
        if let Some(t) = self.timeout {
            c = c.timeout(t);
        }
        if let Some(v) = self.min_version {
            c = c.min_version(v);
        }
        Ok(Some(c))
    }
}

impl Cx<'_> {
    /// The client `tls { ... }` block, with nats-server's keys, aliases and error texts.
    pub(super) fn tls(
        &self,
        key: &str,
        item: &Item,
        warnings: &mut Vec<String>,
    ) -> Result<TlsSettings, ConfigError> {
        let Value::Map(map) = &item.value else {
            return Err(self.expected(key, item, "a block"));
        };
        let mut t = TlsSettings::new(false);
        for (k, v) in map.iter() {
            let name = format!("{key}.{k}");
            let file = |what: &str| match &v.value {
                Value::Str(s) => Ok(PathBuf::from(s)),
                _ => Err(self.invalid(
                    &name,
                    v,
                    format!("error parsing tls config, expected '{what}' to be filename"),
                )),
            };
            let boolean = |what: &str| match v.value {
                Value::Bool(b) => Ok(b),
                _ => Err(self.invalid(
                    &name,
                    v,
                    format!("error parsing tls config, expected '{what}' to be a boolean"),
                )),
            };
            match k.to_ascii_lowercase().as_str() {
                "cert_file" => t.cert_file = Some(file("cert_file")?),
                "key_file" => t.key_file = Some(file("key_file")?),
                "ca_file" => t.ca_file = Some(file("ca_file")?),
                "verify" => t.verify = boolean("verify")?,
                "timeout" => t.timeout = Some(self.tls_timeout(&name, v)?),
                "handshake_first" | "first" | "immediate" => {
                    t.handshake_first = self.handshake_first(&name, v)?
                }
                "min_version" | "minimum_version" => {
                    let s = self.string(&name, v)?;
                    t.min_version = Some(s.parse().map_err(|e| {
                        self.invalid(&name, v, format!("error parsing tls config: {e}"))
                    })?);
                }
                "cipher_suites" => {
                    t.cipher_suites = self.names(&name, v, "cipher_suites", |n| {
                        TlsConfig::new("", "").cipher_suites([n])
                    })?
                }
                "curve_preferences" => {
                    t.curve_preferences = self.names(&name, v, "curve_preferences", |n| {
                        TlsConfig::new("", "").curve_preferences([n])
                    })?
                }
                "allow_insecure_cipher_suites" => {
                    boolean("allow_insecure_cipher_suites")?;
                    warnings.push(format!(
                        "{}:{}:{}: \"{name}\" ignored: rustls has no insecure cipher suites",
                        self.file, v.pos.line, v.pos.col
                    ));
                }
                "insecure" => {
                    boolean("insecure")?;
                    warnings.push(format!(
                        "{}:{}:{}: \"{name}\" ignored: it applies to solicited routes only",
                        self.file, v.pos.line, v.pos.col
                    ));
                }
                "verify_and_map" => t.verify_and_map = boolean("verify_and_map")?,
                "pinned_certs" => t.pinned_certs = self.pins(&name, v)?,
                "verify_cert_and_check_known_urls" => {
                    return Err(self.unsupported(&name, v, "known-URL checks (routes)"))
                }
                "connection_rate_limit" => {
                    return Err(self.unsupported(&name, v, "TLS connection rate limits"))
                }
                "certs"
                | "cert_store"
                | "cert_match"
                | "cert_match_by"
                | "ca_certs_match"
                | "cert_match_skip_invalid"
                | "ocsp_peer" => return Err(self.unsupported(&name, v, "this TLS option")),
                _ => {
                    return Err(self.invalid(
                        &name,
                        v,
                        format!("error parsing tls config, unknown field {k:?}"),
                    ))
                }
            }
        }
        Ok(t)
    }

    /// `pinned_certs`: a list of hex SHA-256 digests of SubjectPublicKeyInfos.
    fn pins(&self, name: &str, v: &Item) -> Result<Vec<String>, ConfigError> {
        let Value::Array(items) = &v.value else {
            return Err(self.invalid(
                name,
                v,
                "error parsing tls config, expected 'pinned_certs' to be a list of hex-encoded sha256 of DER encoded SubjectPublicKeyInfo",
            ));
        };
        items
            .iter()
            .map(|item| {
                let entry = match &item.value {
                    Value::Str(s) => s.to_ascii_lowercase(),
                    _ => item.raw.to_ascii_lowercase(),
                };
                if entry.len() == 64 && entry.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Ok(entry)
                } else {
                    Err(self.invalid(name, item, format!("error parsing tls config, 'pinned_certs' key {entry} does not look like hex-encoded sha256 of DER encoded SubjectPublicKeyInfo")))
                }
            })
            .collect()
    }

    /// `timeout`: seconds (a number, fractions allowed) or a duration string.
    fn tls_timeout(&self, name: &str, v: &Item) -> Result<Duration, ConfigError> {
        let wrong = || self.invalid(name, v, "error parsing tls config, 'timeout' wrong type");
        match &v.value {
            Value::Int(n) => Ok(Duration::from_secs(u64::try_from(*n).map_err(|_| wrong())?)),
            Value::Float(f) if *f >= 0.0 && f.is_finite() && *f < 1e9 => {
                Ok(Duration::from_secs_f64(*f))
            }
            Value::Str(s) => parse_duration(s).map_err(|e| {
                self.invalid(name, v, format!("error parsing tls config, 'timeout' {e}"))
            }),
            _ => Err(wrong()),
        }
    }

    /// `handshake_first`: a bool, `on`/`off`, `auto` (50 ms fallback) or a duration.
    fn handshake_first(&self, name: &str, v: &Item) -> Result<HandshakeFirst, ConfigError> {
        match &v.value {
            Value::Bool(true) => Ok(HandshakeFirst::On),
            Value::Bool(false) => Ok(HandshakeFirst::Off),
            Value::Str(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "on" => Ok(HandshakeFirst::On),
                "false" | "off" => Ok(HandshakeFirst::Off),
                "auto" | "auto_fallback" => {
                    Ok(HandshakeFirst::Fallback(DEFAULT_HANDSHAKE_FIRST_FALLBACK))
                }
                _ => parse_duration(s)
                    .map(HandshakeFirst::Fallback)
                    .map_err(|_| {
                        self.invalid(
                            name,
                            v,
                            format!(
                                "error parsing tls config, 'handshake_first' expects a boolean, \
                                 \"auto\" or a duration, got {s:?}"
                            ),
                        )
                    }),
            },
            _ => Err(self.expected(name, v, "a boolean, \"auto\" or a duration")),
        }
    }

    /// A non-empty list of names (`cipher_suites`, `curve_preferences`), each one checked
    /// where it is written (`with` makes a configuration of that one name).
    fn names(
        &self,
        name: &str,
        v: &Item,
        what: &str,
        with: impl Fn(&str) -> TlsConfig,
    ) -> Result<Vec<String>, ConfigError> {
        let Value::Array(list) = &v.value else {
            return Err(self.expected(name, v, "an array of names"));
        };
        if list.is_empty() {
            return Err(self.invalid(
                name,
                v,
                format!("error parsing tls config, '{what}' cannot be empty"),
            ));
        }
        list.iter()
            .map(|entry| {
                let n = self.string(name, entry)?;
                with(&n).check_names().map_err(|e| {
                    self.invalid(name, entry, format!("error parsing tls config: {e}"))
                })?;
                Ok(n)
            })
            .collect()
    }
}
