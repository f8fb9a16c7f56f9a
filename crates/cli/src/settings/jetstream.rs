//! JetStream's settings: `-js`, `jetstream: enabled`, the `jetstream {}` block and accounts'
//! `jetstream`, read as nats-server's `parseJetStream` and `parseJetStreamForAccount`
//! (server/opts.go) read them; and which accounts get JetStream, by nats-server's rule
//! (`enableJetStreamAccounts`, server/jetstream.go).

use starling_jetstream::{JetStream, SyncPolicy, DEFAULT_SYNC_INTERVAL};
use starling_server::{DEFAULT_SYSTEM_ACCOUNT, GLOBAL_ACCOUNT};

use super::{ConfigError, Cx, Settings, SettingsError};
use crate::conf::{Item, Value};
use starling_server::gotime::parse_duration;

/// The `jetstream {}` block, without `store_dir` (kept in [`Settings::store_dir`], which the
/// top-level key and `-sd` also set) and `enabled` (kept in [`Settings::jetstream`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct JetStreamSettings {
    /// `max_memory_store` / `max_mem_store` / `max_mem` (negative: the default).
    pub(crate) max_memory: Option<i64>,
    /// `max_file_store` / `max_file` (negative: the default).
    pub(crate) max_file: Option<i64>,
    /// `sync_interval` / `sync`: a duration, or `always`.
    pub(crate) sync: Option<SyncPolicy>,
    /// `strict`: accepted and kept; Starling's API is always strict about requests.
    pub(crate) strict: Option<bool>,
    /// `domain`.
    pub(crate) domain: Option<String>,
}

/// An account's `jetstream`: `enabled` / `disabled` / a bool / a block of limits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AccountJetStream {
    /// The account's name.
    pub(crate) account: String,
    /// Whether it asks for JetStream (a block asks for it).
    pub(crate) enabled: bool,
    /// The block form's limits, if given.
    pub(crate) limits: Option<AccountJetStreamLimits>,
}

/// An account's JetStream limits (`-1` = unlimited, as nats-server has them), as the config
/// file gives them; `cluster_traffic` is kept but has no effect on a single server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AccountJetStreamLimits {
    /// `max_memory` / `max_mem` / `mem` / `memory`.
    pub(crate) max_memory: i64,
    /// `max_store` / `max_file` / `max_disk` / `store` / `disk`.
    pub(crate) max_store: i64,
    /// `max_streams` / `streams`.
    pub(crate) max_streams: i64,
    /// `max_consumers` / `consumers`.
    pub(crate) max_consumers: i64,
    /// `max_bytes_required` / `max_stream_bytes` / `max_bytes`.
    pub(crate) max_bytes_required: bool,
    /// `mem_max_stream_bytes` / `memory_max_stream_bytes`.
    pub(crate) memory_max_stream_bytes: i64,
    /// `disk_max_stream_bytes` / `store_max_stream_bytes`.
    pub(crate) store_max_stream_bytes: i64,
    /// `max_ack_pending`.
    pub(crate) max_ack_pending: i64,
    /// `cluster_traffic`: `system` or `owner`.
    pub(crate) cluster_traffic: Option<String>,
}

impl AccountJetStreamLimits {
    /// The limits JetStream enforces.
    fn to_limits(&self) -> starling_jetstream::AccountLimits {
        let mut l = starling_jetstream::AccountLimits::default();
        l.max_memory = self.max_memory;
        l.max_storage = self.max_store;
        l.max_streams = self.max_streams;
        l.max_consumers = self.max_consumers;
        l.max_ack_pending = self.max_ack_pending;
        l.memory_max_stream_bytes = self.memory_max_stream_bytes;
        l.storage_max_stream_bytes = self.store_max_stream_bytes;
        l.max_bytes_required = self.max_bytes_required;
        l
    }
}

impl Default for AccountJetStreamLimits {
    fn default() -> Self {
        Self {
            max_memory: -1,
            max_store: -1,
            max_streams: -1,
            max_consumers: -1,
            max_bytes_required: false,
            memory_max_stream_bytes: -1,
            store_max_stream_bytes: -1,
            max_ack_pending: -1,
            cluster_traffic: None,
        }
    }
}

/// What the settings make of JetStream.
#[derive(Debug, Default)]
pub(crate) struct JetStreamPlan {
    /// The extension to give the builder; `None`: JetStream is off (or serves no account).
    pub(crate) config: Option<JetStream>,
    /// The accounts it serves (`$G` alone when no accounts are configured).
    pub(crate) accounts: Vec<String>,
    /// What to log before the server starts (and what `-t` prints).
    pub(crate) warnings: Vec<String>,
    /// JetStream is on without a store directory: memory streams only. starling-jetstream
    /// logs [`NO_STORE_DIR`]'s like when it starts; `-t`, which starts nothing, prints it.
    pub(crate) no_store_dir: bool,
}

/// The warning for JetStream without a store directory.
pub(crate) const NO_STORE_DIR: &str = "JetStream has no store directory (-sd/--store_dir, \
    store_dir or jetstream { store_dir }): file streams are refused, only memory streams can be \
    created";

impl Settings {
    /// JetStream as the settings have it, by nats-server's rules: on with `-js`, `jetstream:
    /// enabled` or a `jetstream {}` block; in the global account when no other accounts are
    /// configured, else in each account with `jetstream: enabled` (and then in none if no
    /// account asks for it).
    pub(crate) fn jetstream(&self) -> Result<JetStreamPlan, SettingsError> {
        let mut plan = JetStreamPlan::default();
        if self.jetstream != Some(true) {
            return Ok(plan);
        }
        let block = self.jetstream_block.clone().unwrap_or_default();
        let mut js = JetStream::new();
        match self
            .store_dir
            .as_ref()
            .filter(|d| !d.as_os_str().is_empty())
        {
            Some(dir) => js = js.store_dir(dir),
            // nats-server falls back to a temporary directory; Starling does not put streams
            // where a reboot may delete them.
            None => plan.no_store_dir = true,
        }
        // As nats-server: a negative limit means the default; zero is a limit.
        if let Some(n) = block.max_memory.and_then(|n| u64::try_from(n).ok()) {
            js = js.max_memory(n);
        }
        if let Some(n) = block.max_file.and_then(|n| u64::try_from(n).ok()) {
            js = js.max_file(n);
        }
        if let Some(sync) = block.sync {
            js = js.sync(sync);
        }
        if let Some(domain) = block.domain.filter(|d| !d.is_empty()) {
            js = js.domain(domain);
        }

        // nats-server's `globalAccountOnly`: no account but the global and system ones (and
        // no operator, whose accounts come from JWTs).
        let system = (!self.config.no_system_account).then(|| {
            self.config
                .system_account
                .as_deref()
                .unwrap_or(DEFAULT_SYSTEM_ACCOUNT)
        });
        let others = self
            .config
            .accounts
            .iter()
            .any(|a| Some(a.name()) != system);
        let operator = !self.config.operators.is_empty();
        if !others && !operator {
            plan.accounts.push(GLOBAL_ACCOUNT.to_string());
            plan.config = Some(js);
            return Ok(plan);
        }
        for a in self
            .account_jetstream
            .iter()
            .flatten()
            .filter(|a| a.enabled)
        {
            if Some(a.account.as_str()) == system {
                return Err(SettingsError::Invalid(
                    "Error enabling jetstream on configured accounts: jetstream can not be \
                     enabled on the system account"
                        .into(),
                ));
            }
            js = match &a.limits {
                Some(l) => js.account_with_limits(&a.account, l.to_limits()),
                None => js.account(&a.account),
            };
            plan.accounts.push(a.account.clone());
        }
        if plan.accounts.is_empty() {
            plan.warnings.push(
                "JetStream is enabled but no configured account enables it (accounts { A: { \
                 jetstream: enabled } }): as in nats-server, it serves no account"
                    .into(),
            );
            return Ok(plan);
        }
        plan.config = Some(js);
        Ok(plan)
    }
}

/// A nats-server key of the block that Starling reads but does not apply.
fn ignored_key(key: &str) -> Option<&'static str> {
    Some(match key {
        "unique_tag" | "max_outstanding_catchup" | "extension_hint" => "clustered JetStream",
        "limits" => "JetStream API limits",
        "max_buffered_msgs" | "max_buffered_size" => "stream buffering limits",
        "request_queue_limit" | "info_queue_limit" => "API queue limits",
        "meta_compact" | "meta_compact_size" | "meta_compact_sync" => "clustered JetStream",
        "max_concurrent_io" => "this I/O option",
        _ => return None,
    })
}

impl Cx<'_> {
    /// The top-level `jetstream`: `enabled`/`disabled`, a bool, or the block.
    pub(super) fn jetstream(
        &self,
        key: &str,
        item: &Item,
        s: &mut Settings,
        warnings: &mut Vec<String>,
    ) -> Result<(), ConfigError> {
        let map = match &item.value {
            Value::Bool(b) => {
                s.jetstream = Some(*b);
                return Ok(());
            }
            Value::Str(text) => {
                s.jetstream = Some(self.enabled_or_disabled(key, item, text)?);
                return Ok(());
            }
            Value::Map(map) => map,
            other => {
                return Err(self.invalid(
                    key,
                    item,
                    format!(
                        "Expected map, bool or string to define JetStream, got {}",
                        other.kind()
                    ),
                ))
            }
        };
        let mut block = JetStreamSettings::default();
        let mut enabled = true;
        for (k, v) in map.iter() {
            let name = format!("{key}.{k}");
            let lower = k.to_ascii_lowercase();
            match lower.as_str() {
                "strict" => match v.value {
                    Value::Bool(b) => block.strict = Some(b),
                    _ => {
                        return Err(self.invalid(
                            &name,
                            v,
                            format!(
                                "Expected 'true' or 'false' for bool value, got '{}'",
                                shown(v)
                            ),
                        ))
                    }
                },
                "store" | "store_dir" | "storedir" => {
                    if s.store_dir
                        .as_ref()
                        .is_some_and(|d| !d.as_os_str().is_empty())
                    {
                        return Err(self.invalid(&name, v, "Duplicate 'store_dir' configuration"));
                    }
                    s.store_dir = Some(self.string(&name, v)?.into());
                }
                "sync" | "sync_interval" => {
                    block.sync = Some(match &v.value {
                        Value::Str(t) if t.eq_ignore_ascii_case("always") => SyncPolicy::Always,
                        Value::Str(t) => {
                            let d = parse_duration(t).map_err(|e| {
                                self.invalid(&name, v, format!("error parsing {k}: {e}"))
                            })?;
                            sync_interval(d)
                        }
                        _ => sync_interval(self.duration(&name, v, warnings)?),
                    })
                }
                "max_memory_store" | "max_mem_store" | "max_mem" => {
                    block.max_memory = Some(self.storage_size(&name, v, "max_mem_store")?)
                }
                "max_file_store" | "max_file" => {
                    block.max_file = Some(self.storage_size(&name, v, "max_file_store")?)
                }
                "domain" => {
                    let domain = self.string(&name, v)?;
                    if domain.contains([' ', '\t', '\r', '\n', '\x0c', '.', '*', '>']) {
                        return Err(self.invalid(
                            &name,
                            v,
                            "invalid domain name: may not contain ., * or >",
                        ));
                    }
                    block.domain = Some(domain);
                }
                "enable" | "enabled" => enabled = self.boolean(&name, v)?,
                "key"
                | "ek"
                | "encryption_key"
                | "prev_key"
                | "prev_ek"
                | "prev_encryption_key"
                | "cipher"
                | "tpm" => return Err(self.unsupported(&name, v, "JetStream encryption")),
                other => match ignored_key(other) {
                    Some(feature) => {
                        self.check_ignored(&name, other, v)?;
                        warnings.push(format!(
                            "{}:{}:{}: \"{name}\" ignored: {feature} is not available in \
                             starling-server yet",
                            self.file, v.pos.line, v.pos.col
                        ));
                    }
                    None => return Err(self.unknown(name, v)),
                },
            }
        }
        s.jetstream = Some(enabled);
        s.jetstream_block = Some(block);
        Ok(())
    }

    /// The types nats-server requires of the keys Starling ignores.
    fn check_ignored(&self, name: &str, key: &str, v: &Item) -> Result<(), ConfigError> {
        match key {
            "max_outstanding_catchup" | "max_buffered_size" | "meta_compact_size" => {
                self.storage_size(name, v, key).map(drop)
            }
            "max_buffered_msgs"
            | "request_queue_limit"
            | "info_queue_limit"
            | "meta_compact"
            | "max_concurrent_io" => match v.value {
                Value::Int(_) => Ok(()),
                _ => Err(self.invalid(
                    name,
                    v,
                    format!("Expected a parseable size for {key:?}, got {}", shown(v)),
                )),
            },
            "limits" => match v.value {
                Value::Map(_) => Ok(()),
                _ => Err(self.invalid(
                    name,
                    v,
                    format!(
                        "Expected a map to define JetStreamLimits, got {}",
                        v.value.kind()
                    ),
                )),
            },
            "meta_compact_sync" => self.boolean(name, v).map(drop),
            _ => self.string(name, v).map(drop),
        }
    }

    /// `enabled`/`enable` or `disabled`/`disable`, in any case.
    fn enabled_or_disabled(&self, key: &str, item: &Item, text: &str) -> Result<bool, ConfigError> {
        match text.to_ascii_lowercase().as_str() {
            "enabled" | "enable" => Ok(true),
            "disabled" | "disable" => Ok(false),
            _ => Err(self.invalid(
                key,
                item,
                format!("Expected 'enabled' or 'disabled' for string value, got '{text}'"),
            )),
        }
    }

    /// nats-server's `getStorageSize`: an integer (the parser has applied `64MiB`, `1G`, `512MB`
    /// already), or a string of an integer and one of `K`, `M`, `G`, `T` (powers of 1024:
    /// `"1G"` quoted is 2^30, as in nats-server); `""` is 0.
    fn storage_size(&self, key: &str, item: &Item, what: &str) -> Result<i64, ConfigError> {
        let s = match &item.value {
            Value::Int(n) => return Ok(*n),
            Value::Str(s) => s,
            _ => return Err(self.invalid(key, item, format!("{what} must be int64 or string"))),
        };
        let Some(last) = s.chars().last() else {
            return Ok(0);
        };
        let prefix = &s[..s.len() - last.len_utf8()];
        let num: i64 = prefix.parse().map_err(|e: std::num::ParseIntError| {
            let why = match e.kind() {
                std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                    "value out of range"
                }
                _ => "invalid syntax",
            };
            self.invalid(
                key,
                item,
                format!("{what} strconv.ParseInt: parsing {prefix:?}: {why}"),
            )
        })?;
        let shift = match last {
            'K' => 10,
            'M' => 20,
            'G' => 30,
            'T' => 40,
            _ => {
                return Err(self.invalid(
                    key,
                    item,
                    format!("{what} sizes defined as strings must end in K, M, G, T"),
                ))
            }
        };
        num.checked_mul(1 << shift)
            .ok_or_else(|| self.invalid(key, item, format!("{what} {s:?} is too large")))
    }

    /// An account's `jetstream`, as nats-server's `parseJetStreamForAccount`.
    pub(super) fn account_jetstream(
        &self,
        key: &str,
        account: &str,
        item: &Item,
    ) -> Result<AccountJetStream, ConfigError> {
        let mut out = AccountJetStream {
            account: account.to_string(),
            ..Default::default()
        };
        let map = match &item.value {
            Value::Bool(b) => {
                out.enabled = *b;
                return Ok(out);
            }
            Value::Str(text) => {
                out.enabled = self.enabled_or_disabled(key, item, text)?;
                return Ok(out);
            }
            Value::Map(map) => map,
            other => {
                return Err(self.invalid(
                    key,
                    item,
                    format!(
                        "Expected map, bool or string to define JetStream, got {}",
                        other.kind()
                    ),
                ))
            }
        };
        let mut limits = AccountJetStreamLimits::default();
        for (k, v) in map.iter() {
            let name = format!("{key}.{k}");
            let int = || match v.value {
                Value::Int(n) => Ok(n),
                _ => Err(self.invalid(
                    &name,
                    v,
                    format!("Expected a parseable size for {k:?}, got {}", shown(v)),
                )),
            };
            match k.to_ascii_lowercase().as_str() {
                "max_memory" | "max_mem" | "mem" | "memory" => limits.max_memory = int()?,
                "max_store" | "max_file" | "max_disk" | "store" | "disk" => {
                    limits.max_store = int()?
                }
                "max_streams" | "streams" => limits.max_streams = int()?,
                "max_consumers" | "consumers" => limits.max_consumers = int()?,
                "max_bytes_required" | "max_stream_bytes" | "max_bytes" => match v.value {
                    Value::Bool(b) => limits.max_bytes_required = b,
                    _ => {
                        return Err(self.invalid(
                            &name,
                            v,
                            format!("Expected a parseable bool for {k:?}, got {}", shown(v)),
                        ))
                    }
                },
                "mem_max_stream_bytes" | "memory_max_stream_bytes" => {
                    limits.memory_max_stream_bytes = int()?
                }
                "disk_max_stream_bytes" | "store_max_stream_bytes" => {
                    limits.store_max_stream_bytes = int()?
                }
                "max_ack_pending" => limits.max_ack_pending = int()?,
                "cluster_traffic" => match &v.value {
                    Value::Str(t) if t.is_empty() || t == "system" || t == "owner" => {
                        limits.cluster_traffic = Some(t.clone())
                    }
                    _ => {
                        return Err(self.invalid(
                            &name,
                            v,
                            format!(
                                "Expected 'system' or 'owner' string value for {k:?}, got {}",
                                shown(v)
                            ),
                        ))
                    }
                },
                _ => return Err(self.unknown(name, v)),
            }
        }
        out.enabled = true;
        out.limits = Some(limits);
        Ok(out)
    }
}

/// A value as written, for messages.
fn shown(item: &Item) -> String {
    match &item.value {
        _ if !item.raw.is_empty() => item.raw.clone(),
        Value::Str(s) => s.clone(),
        other => other.kind().to_string(),
    }
}

/// nats-server's file store reads a zero interval as the default.
fn sync_interval(d: std::time::Duration) -> SyncPolicy {
    SyncPolicy::Interval(if d.is_zero() {
        DEFAULT_SYNC_INTERVAL
    } else {
        d
    })
}
