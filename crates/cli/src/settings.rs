//! What the binary is configured with, from the config file and the flags (flags win), and how
//! that becomes a [`ServerBuilder`].

use std::path::PathBuf;
use std::time::Duration;

use starling_jetstream::ServerBuilderExt;
use starling_server::gotime::parse_duration;
use starling_server::{
    AccountError, Auth, Cluster, Config, Monitor, ServerBuilder, DEFAULT_HOST, DEFAULT_PORT,
};
use thiserror::Error;

mod accounts;
mod jetstream;
mod leafnodes;
mod operator;
mod tls;
mod websocket;

pub(crate) use jetstream::NO_STORE_DIR;

pub(crate) use tls::TlsSettings;

use crate::cluster::{check_advertise, check_route_url, redact, UrlError};
use crate::conf::{self, ConfError, Item, Map, Value};

/// Every setting the binary knows: the broker's options in [`Config`] (the file and the flags
/// write them there, over the server's defaults), and beside it what nats-server gives in
/// parts that the `Config` holds as one value (host and port, the cluster's pieces, the TLS
/// block) and what only the binary has (logging, files, JetStream). `None` = not given.
#[derive(Clone, Debug, Default)]
pub(crate) struct Settings {
    /// The broker's options.
    pub(crate) config: Config,
    /// `-a` / `host`: the client listener's host.
    pub(crate) host: Option<String>,
    /// `-p` / `port`: the client listener's port (`-1` = any free port).
    pub(crate) port: Option<i64>,
    /// `--user` / `authorization.user`.
    pub(crate) user: Option<String>,
    /// `--pass` / `authorization.password`.
    pub(crate) password: Option<String>,
    /// `--auth` / `authorization.token`.
    pub(crate) token: Option<String>,
    /// `-D` / `debug`.
    pub(crate) debug: Option<bool>,
    /// `-V` / `trace`.
    pub(crate) trace: Option<bool>,
    /// `-T` / `logtime`.
    pub(crate) logtime: Option<bool>,
    /// `-l` / `log_file`.
    pub(crate) log_file: Option<PathBuf>,
    /// `-P` / `pid_file`.
    pub(crate) pid_file: Option<PathBuf>,
    /// `--ports_file_dir` / `ports_file_dir`.
    pub(crate) ports_file_dir: Option<PathBuf>,
    /// `--http HOST:PORT` / `http`: the monitoring listener's host (default: the client host).
    pub(crate) http_host: Option<String>,
    /// `-m` / `http_port` / `http`: the monitoring port (0 = none, -1 = any free port).
    pub(crate) http_port: Option<i64>,
    /// `-ms` / `https_port` / `https`: the monitoring port over HTTPS (exclusive with
    /// [`Self::http_port`]).
    pub(crate) https_port: Option<i64>,
    /// `-sd` / `--store_dir` / `store_dir` / `jetstream { store_dir }`: JetStream's store
    /// directory. Accepted without JetStream, doing nothing then, as nats-server accepts it
    /// without `-js`.
    pub(crate) store_dir: Option<PathBuf>,
    /// `-js` / `jetstream: enabled` / `jetstream {}`: JetStream on (`Some(false)`: the file
    /// turned it off; `-js=false` leaves it as the file says, as in nats-server).
    pub(crate) jetstream: Option<bool>,
    /// The `jetstream {}` block's limits, sync policy and domain.
    pub(crate) jetstream_block: Option<jetstream::JetStreamSettings>,
    /// `accounts { A: { jetstream } }`, for the accounts that have the key.
    pub(crate) account_jetstream: Option<Vec<jetstream::AccountJetStream>>,
    /// `--cluster URL` / `cluster.host`: the cluster listener's host (default `0.0.0.0`).
    pub(crate) cluster_host: Option<String>,
    /// `--cluster URL` / `cluster.port`: the cluster port (`-1` = any free port; unset or `0`
    /// = no clustering, as in nats-server).
    pub(crate) cluster_port: Option<i64>,
    /// `--cluster_name` / `cluster.name` (unset or empty: a dynamic name).
    pub(crate) cluster_name: Option<String>,
    /// `--cluster_advertise` / `cluster.advertise`: `host[:port]` peers should dial.
    pub(crate) cluster_advertise: Option<String>,
    /// `--no_advertise` / `cluster.no_advertise`.
    pub(crate) no_advertise: Option<bool>,
    /// `--connect_retries` / `cluster.connect_retries`.
    pub(crate) connect_retries: Option<u32>,
    /// `--routes` / `cluster.routes`: the seeds to dial.
    pub(crate) routes: Option<Vec<String>>,
    /// `--cluster nats://user:pass@...` / `cluster.authorization.user`: the user peers must
    /// present (empty = none).
    pub(crate) cluster_user: Option<String>,
    /// The password that goes with [`Self::cluster_user`].
    pub(crate) cluster_password: Option<String>,
    /// `tls {}` / `--tls*`: TLS on the client listener.
    pub(crate) tls: Option<TlsSettings>,
    /// `cluster { tls {} }`: TLS on routes.
    pub(crate) cluster_tls: Option<TlsSettings>,
    /// `leafnodes {}`.
    pub(crate) leafnodes: Option<leafnodes::LeafSettings>,
    /// `websocket {}`: the WebSocket listener.
    pub(crate) websocket: Option<websocket::WebsocketSettings>,
}

impl Settings {
    /// `host:port` for the client listener (nats-server's defaults: `0.0.0.0:4222`; port -1
    /// means any free port).
    pub(crate) fn listen_addr(&self) -> Result<String, SettingsError> {
        let host = self.host.as_deref().unwrap_or(DEFAULT_HOST);
        let port = match self.port.unwrap_or(DEFAULT_PORT.into()) {
            -1 => 0,
            p @ 0..=65535 => p,
            p => return Err(SettingsError::Port(p)),
        };
        Ok(host_port(host, port))
    }

    /// `host:port` for the monitoring listener, if there is one: nats-server's `-m` port (0 =
    /// none, -1 = any free port) on the `http` host, else on the client host.
    pub(crate) fn monitor_addr(&self) -> Result<Option<String>, SettingsError> {
        let (http, https) = (self.http_port.unwrap_or(0), self.https_port.unwrap_or(0));
        if http != 0 && https != 0 {
            return Err(SettingsError::Invalid(format!(
                "can't specify both HTTP ({http}) and HTTPs ({https}) ports"
            )));
        }
        let port = match self.http_port.filter(|&p| p != 0).or(self.https_port) {
            None | Some(0) => return Ok(None),
            Some(-1) => 0,
            Some(p @ 1..=65535) => p,
            Some(p) => return Err(SettingsError::Port(p)),
        };
        let host = self
            .http_host
            .as_deref()
            .or(self.host.as_deref())
            .unwrap_or(DEFAULT_HOST);
        Ok(Some(host_port(host, port)))
    }

    /// The authentication the settings ask for.
    pub(crate) fn auth(&self) -> Result<Auth, SettingsError> {
        match (&self.user, &self.password, &self.token) {
            (Some(user), password, _) => Ok(Auth::UserPassword {
                user: user.clone(),
                password: password.clone().unwrap_or_default(),
            }),
            (None, Some(_), _) => Err(SettingsError::PasswordWithoutUser),
            (None, None, Some(token)) => Ok(Auth::Token(token.clone())),
            (None, None, None) => Ok(Auth::None),
        }
    }

    /// The cluster side, if clustering is on: nats-server turns it on with a cluster port
    /// (`--cluster`, `cluster.listen`, `cluster.port`; `-1` = any free port).
    pub(crate) fn cluster(&self) -> Result<Option<Cluster>, SettingsError> {
        let routes = self.routes.as_deref().unwrap_or_default();
        for url in routes {
            check_route_url(url).map_err(|e| SettingsError::RouteUrl(redact(url), e))?;
        }
        let port = match self.cluster_port {
            None | Some(0) if routes.is_empty() => return Ok(None),
            None | Some(0) => return Err(SettingsError::RoutesWithoutCluster),
            Some(-1) => 0,
            Some(p @ 1..=65535) => p,
            Some(p) => return Err(SettingsError::ClusterPort(p)),
        };
        // The name is the server's to check (`Config::validate`).
        let mut cluster = match self.cluster_name.as_deref() {
            None | Some("") => Cluster::unnamed(),
            Some(name) => Cluster::new(name),
        };
        let host = match self.cluster_host.as_deref() {
            None | Some("") => DEFAULT_HOST,
            Some(h) => h,
        };
        cluster = cluster
            .listen(host_port(host, port))
            .seeds(routes.iter().cloned());
        if let Some(addr) = self.cluster_advertise.as_deref().filter(|a| !a.is_empty()) {
            check_advertise(addr)
                .map_err(|e| SettingsError::ClusterAdvertise(addr.to_string(), e))?;
            cluster = cluster.advertise(addr);
        }
        if let Some(v) = self.no_advertise {
            cluster = cluster.no_advertise(v);
        }
        if let Some(v) = self.connect_retries {
            cluster = cluster.connect_retries(v);
        }
        if let Some(settings) = &self.cluster_tls {
            if let Some(tls) = settings.config()? {
                cluster = cluster.tls(tls);
            }
        }
        match (
            self.cluster_user.as_deref(),
            self.cluster_password.as_deref(),
        ) {
            (None | Some(""), None | Some("")) => {}
            (None | Some(""), Some(_)) => return Err(SettingsError::ClusterPasswordWithoutUser),
            (Some(user), password) => {
                cluster = cluster.credentials(user, password.unwrap_or_default());
            }
        }
        Ok(Some(cluster))
    }

    /// The checks nats-server makes before starting, on the merged settings: the server's
    /// own ([`ServerBuilder::check`]), on the configuration these settings give.
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        self.jetstream()?;
        starling_server::Server::builder()
            .config(self.server_config()?)
            .check()
            .map_err(|e| match e {
                starling_server::StartError::Account(e @ AccountError::InvalidPermission(_)) => {
                    SettingsError::Invalid(format!("invalid permissions: {e}"))
                }
                starling_server::StartError::Account(e) => SettingsError::Accounts(e),
                starling_server::StartError::Tls(e) => {
                    SettingsError::Invalid(format!("error parsing tls config: {e}"))
                }
                other => SettingsError::Invalid(other.to_string()),
            })
    }

    /// The client listener's TLS, if on.
    pub(crate) fn tls_config(&self) -> Result<Option<starling_server::TlsConfig>, SettingsError> {
        match &self.tls {
            Some(t) => t.config(),
            None => Ok(None),
        }
    }

    /// The server configuration these settings give: [`Self::config`] with the options
    /// nats-server gives in parts put together (the listeners, the cluster, TLS, the single
    /// user). The defaults and the checks are the server's; this only maps nats-server's
    /// names onto its options.
    pub(crate) fn server_config(&self) -> Result<Config, SettingsError> {
        let mut c = self.config.clone();
        c.listen = Some(self.listen_addr()?);
        c.monitor = self.monitor_addr()?.map(|addr| Monitor {
            addr,
            https: self.https_port.is_some_and(|p| p != 0),
        });
        c.cluster = self.cluster()?;
        c.tls = self.tls_config()?;
        c.auth = self.auth()?;
        c.leafnodes = self
            .leafnodes
            .as_ref()
            .map(leafnodes::LeafSettings::config)
            .transpose()?;
        c.websocket = self
            .websocket
            .as_ref()
            .map(websocket::WebsocketSettings::config)
            .transpose()?
            .flatten();
        Ok(c)
    }

    /// How the log looks and where it goes (nats-server's defaults: no debug or trace lines,
    /// timestamps on, stderr only).
    pub(crate) fn log_config(&self) -> crate::logging::LogConfig {
        crate::logging::LogConfig {
            debug: self.debug.unwrap_or(false),
            trace: self.trace.unwrap_or(false),
            logtime: self.logtime.unwrap_or(true),
            file: self.log_file.clone(),
        }
    }

    /// A builder configured with these settings (and JetStream, when on).
    pub(crate) fn builder(&self) -> Result<ServerBuilder, SettingsError> {
        self.validate()?;
        let mut b = starling_server::Server::builder().config(self.server_config()?);
        if let Some(js) = self.jetstream()?.config {
            b = b.jetstream(js);
        }
        Ok(b)
    }
}

/// `host:port`, with an IPv6 host in brackets.
fn host_port(host: &str, port: i64) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Why merged settings cannot start a server.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub(crate) enum SettingsError {
    /// The port is outside 0..=65535 (and not -1).
    #[error("invalid port {0}: must be -1 (any free port) or 0..65535")]
    Port(i64),
    /// A password without a user name.
    #[error("a password was given without a user (--user / authorization.user)")]
    PasswordWithoutUser,
    /// The cluster port is outside 0..=65535 (and not -1).
    #[error("invalid cluster port {0}: must be -1 (any free port) or 0..65535")]
    ClusterPort(i64),
    /// Routes without a cluster listener (nats-server's words).
    #[error("solicited routes require cluster capabilities, e.g. --cluster")]
    RoutesWithoutCluster,
    /// A route URL that cannot be dialled (password redacted).
    #[error("error parsing route url [{0:?}]: {1}")]
    RouteUrl(String, UrlError),
    /// `cluster_advertise` is not `host[:port]`.
    #[error("invalid cluster advertise address {0:?}: {1}")]
    ClusterAdvertise(String, UrlError),
    /// A route password without a user name.
    #[error("a cluster password was given without a user (cluster.authorization.user)")]
    ClusterPasswordWithoutUser,
    /// The accounts do not fit together (an import without its export, ...).
    #[error("accounts: {0}")]
    Accounts(AccountError),
    /// Another check of the server's.
    #[error("{0}")]
    Invalid(String),
}

/// Why a configuration file could not be turned into settings.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub(crate) enum ConfigError {
    /// The file could not be read or parsed.
    #[error(transparent)]
    Syntax(#[from] ConfError),
    /// A key that nats-server does not know.
    #[error("{file}:{line}:{col}: unknown field \"{key}\"")]
    UnknownField {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// 0-based column.
        col: usize,
        /// The key as written.
        key: String,
    },
    /// A nats-server key whose feature Starling does not have yet.
    #[error("{file}:{line}:{col}: \"{key}\" is not supported by starling-server yet ({feature})")]
    Unsupported {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// 0-based column.
        col: usize,
        /// The key as written.
        key: String,
        /// What it belongs to.
        feature: &'static str,
    },
    /// A value of the wrong type or out of range.
    #[error("{file}:{line}:{col}: invalid value for \"{key}\": {reason}")]
    Invalid {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// 0-based column.
        col: usize,
        /// The key as written.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// Settings read from a configuration file, and warnings about keys that were ignored.
#[derive(Debug, Default)]
pub(crate) struct FromConfig {
    /// What the file sets.
    pub(crate) settings: Settings,
    /// Keys accepted but ignored (features not available yet), and deprecated forms.
    pub(crate) warnings: Vec<String>,
}

/// Reads a configuration file into settings.
pub(crate) fn load_config(path: &std::path::Path) -> Result<FromConfig, ConfigError> {
    let map = conf::parse_file(path)?;
    from_map(&map, &path.display().to_string())
}

/// Interprets a parsed configuration.
pub(crate) fn from_map(map: &Map, file: &str) -> Result<FromConfig, ConfigError> {
    let mut out = FromConfig::default();
    let cx = Cx { file };
    let mut user_names = accounts::UserNames::default();
    // Where the single user/token and the user lists were given (nats-server refuses both).
    let (mut single_at, mut users_at): (Option<&Item>, Option<(&str, &Item)>) = (None, None);
    for (key, item) in map.iter() {
        let s = &mut out.settings;
        match key.to_ascii_lowercase().as_str() {
            "listen" => {
                cx.set_listen(key, item, &mut s.host, &mut s.port)?;
            }
            "port" => s.port = Some(cx.int(key, item)?),
            "host" | "net" => s.host = Some(cx.string(key, item)?),
            "server_name" => s.config.server_name = Some(cx.string(key, item)?),
            "client_advertise" => s.config.client_advertise = Some(cx.string(key, item)?),
            "max_payload" => s.config.max_payload = cx.size(key, item)?,
            "max_control_line" => s.config.max_control_line = cx.size(key, item)?,
            "max_pending" => s.config.max_pending = cx.size(key, item)?,
            "max_connections" | "max_conn" => s.config.max_connections = cx.count(key, item)?,
            "max_subscriptions" | "max_subs" => s.config.max_subscriptions = cx.count(key, item)?,
            "ping_interval" => s.config.ping_interval = cx.duration(key, item, &mut out.warnings)?,
            "ping_max" => {
                let n = cx.count(key, item)?;
                s.config.max_pings_out = u32::try_from(n).map_err(|_| cx.invalid(key, item, "too large"))?;
            }
            "write_deadline" => s.config.write_deadline = cx.duration(key, item, &mut out.warnings)?,
            "lame_duck_duration" => s.config.lame_duck_duration = cx.duration(key, item, &mut out.warnings)?,
            "lame_duck_grace_period" => {
                s.config.lame_duck_grace_period = cx.duration(key, item, &mut out.warnings)?
            }
            "authorization" => {
                cx.authorization(key, item, s, &mut out.warnings, &mut user_names)?;
                if s.user.is_some() || s.token.is_some() {
                    single_at = Some(item);
                }
                if !s.config.users.is_empty() {
                    users_at = Some((key, item));
                }
            }
            "accounts" => {
                let mut jetstream = Vec::new();
                let accounts = cx.accounts(key, item, &mut user_names, &mut jetstream)?;
                if accounts.iter().any(|a| !a.users().is_empty()) {
                    users_at = users_at.or(Some((key, item)));
                }
                s.config.accounts = accounts;
                s.account_jetstream = Some(jetstream);
            }
            "no_auth_user" => s.config.no_auth_user = Some(cx.string(key, item)?),
            "system_account" => s.config.system_account = Some(cx.string(key, item)?),
            "no_system_account" => s.config.no_system_account = cx.boolean(key, item)?,
            "cluster" => cx.cluster(key, item, s, &mut out.warnings)?,
            "tls" => s.tls = Some(cx.tls(key, item, &mut out.warnings)?),
            "leafnodes" | "leaf" | "leafnode" => {
                s.leafnodes = Some(cx.leafnodes(key, item, &mut out.warnings)?)
            }
            "websocket" | "ws" => s.websocket = Some(cx.websocket(key, item, &mut out.warnings)?),
            "allow_non_tls" => s.config.allow_non_tls = cx.boolean(key, item)?,
            "operator" | "operators" | "root" | "roots" => {
                s.config.operators = operator::operators(&cx, key, item)?
            }
            "resolver" => operator::resolver(&cx, key, item)?,
            "resolver_preload" => s.config.resolver_preload = operator::preload(&cx, key, item)?,
            "debug" => s.debug = Some(cx.boolean(key, item)?),
            "trace" => s.trace = Some(cx.boolean(key, item)?),
            "logtime" => s.logtime = Some(cx.boolean(key, item)?),
            "log_file" | "logfile" => s.log_file = Some(cx.string(key, item)?.into()),
            "pid_file" | "pidfile" => s.pid_file = Some(cx.string(key, item)?.into()),
            "ports_file_dir" => s.ports_file_dir = Some(cx.string(key, item)?.into()),
            "store_dir" | "storedir" => {
                // As nats-server: the block's store_dir and this one are one setting.
                if s.store_dir.as_ref().is_some_and(|d| !d.as_os_str().is_empty()) {
                    return Err(cx.invalid(key, item, "Duplicate 'store_dir' configuration"));
                }
                s.store_dir = Some(cx.string(key, item)?.into());
            }
            "jetstream" => cx.jetstream(key, item, s, &mut out.warnings)?,
            "http" => {
                cx.set_listen(key, item, &mut s.http_host, &mut s.http_port)?;
            }
            "http_port" | "monitor_port" => s.http_port = Some(cx.int(key, item)?),
            "https" => {
                cx.set_listen(key, item, &mut s.http_host, &mut s.https_port)?;
            }
            "https_port" => s.https_port = Some(cx.int(key, item)?),
            "max_closed_clients" => s.config.max_closed_clients = cx.count(key, item)?,
            other => match nats_feature(other) {
                Some(Known::Ignored(feature)) => out.warnings.push(format!(
                    "{file}:{}:{}: \"{key}\" ignored: {feature} is not available in starling-server yet",
                    item.pos.line, item.pos.col
                )),
                Some(Known::Unsupported(feature)) => {
                    return Err(ConfigError::Unsupported {
                        file: file.to_string(),
                        line: item.pos.line,
                        col: item.pos.col,
                        key: key.to_string(),
                        feature,
                    })
                }
                None => return Err(cx.unknown(key.to_string(), item)),
            },
        }
    }
    if let (Some(_), Some((key, item))) = (single_at, users_at) {
        let with = if out.settings.token.is_some() {
            "a token"
        } else {
            "a single user/pass"
        };
        let what = if key.eq_ignore_ascii_case("accounts") {
            "accounts"
        } else {
            "a users array"
        };
        return Err(cx.invalid(key, item, format!("Can not have {with} and {what}")));
    }
    Ok(out)
}

/// A nats-server key that Starling does not implement yet.
enum Known {
    /// Harmless to ignore (monitoring, log rotation): a warning.
    Ignored(&'static str),
    /// Ignoring it would change what clients see or weaken security: an error.
    Unsupported(&'static str),
}

fn nats_feature(key: &str) -> Option<Known> {
    use Known::{Ignored, Unsupported};
    Some(match key {
        "http_base_path" => Ignored("this monitoring option"),
        "logfile_size_limit"
        | "log_size_limit"
        | "logfile_max_num"
        | "max_traced_msg_len"
        | "syslog"
        | "remote_syslog"
        | "trace_verbose"
        | "logfile_max_num_files" => Ignored("this logging option"),
        "connect_error_reports"
        | "reconnect_error_reports"
        | "disable_sublist_cache"
        | "no_sublist_cache"
        | "prof_port" => Ignored("this option"),
        "gateway" | "gateways" => Unsupported("gateways"),
        "mqtt" => Unsupported("MQTT"),
        "nkeys" | "trusted" | "trusted_keys" | "authorization_callout" => {
            Unsupported("accounts and decentralized auth")
        }
        "no_header_support" => Unsupported("disabling headers"),
        _ => return None,
    })
}

/// Error context: the file being interpreted.
struct Cx<'a> {
    file: &'a str,
}

impl Cx<'_> {
    fn invalid(&self, key: &str, item: &Item, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_string(),
            line: item.pos.line,
            col: item.pos.col,
            key: key.to_string(),
            reason: reason.into(),
        }
    }

    fn expected(&self, key: &str, item: &Item, what: &str) -> ConfigError {
        self.invalid(
            key,
            item,
            format!("expected {what}, got {}", item.value.kind()),
        )
    }

    fn string(&self, key: &str, item: &Item) -> Result<String, ConfigError> {
        match &item.value {
            Value::Str(s) => Ok(s.clone()),
            // A bare `server_name: 42` is still a fine name.
            Value::Int(_) | Value::Float(_) if !item.raw.is_empty() => Ok(item.raw.clone()),
            _ => Err(self.expected(key, item, "a string")),
        }
    }

    fn int(&self, key: &str, item: &Item) -> Result<i64, ConfigError> {
        match &item.value {
            Value::Int(n) => Ok(*n),
            Value::Str(s) => s
                .trim()
                .parse()
                .map_err(|_| self.expected(key, item, "an integer")),
            _ => Err(self.expected(key, item, "an integer")),
        }
    }

    fn count(&self, key: &str, item: &Item) -> Result<usize, ConfigError> {
        let n = self.int(key, item)?;
        usize::try_from(n).map_err(|_| self.invalid(key, item, format!("{n} is negative")))
    }

    /// A byte size: an integer (`1MB` is already one) or a string like `"1MB"`.
    fn size(&self, key: &str, item: &Item) -> Result<usize, ConfigError> {
        let n = match &item.value {
            Value::Int(n) => *n,
            Value::Str(s) => parse_size(s)
                .ok_or_else(|| self.invalid(key, item, format!("{s:?} is not a size")))?,
            _ => return Err(self.expected(key, item, "a size")),
        };
        usize::try_from(n).map_err(|_| self.invalid(key, item, format!("{n} is negative")))
    }

    fn boolean(&self, key: &str, item: &Item) -> Result<bool, ConfigError> {
        match &item.value {
            Value::Bool(b) => Ok(*b),
            _ => Err(self.expected(key, item, "true or false")),
        }
    }

    /// A Go duration string (`"2m"`, `"1h30m"`), or a number of seconds (deprecated).
    fn duration(
        &self,
        key: &str,
        item: &Item,
        warnings: &mut Vec<String>,
    ) -> Result<Duration, ConfigError> {
        match &item.value {
            Value::Str(s) => parse_duration(s).map_err(|e| self.invalid(key, item, e.to_string())),
            Value::Int(n) => {
                let secs =
                    u64::try_from(*n).map_err(|_| self.invalid(key, item, "negative duration"))?;
                warnings.push(format!(
                    "{}:{}:{}: \"{key}\": {} is taken as {secs} seconds (as nats-server does); \
                     write a quoted duration such as \"2m\" instead",
                    self.file, item.pos.line, item.pos.col, item.raw
                ));
                Ok(Duration::from_secs(secs))
            }
            Value::Float(f) if *f >= 0.0 && f.is_finite() && *f < 1e12 => {
                Ok(Duration::from_secs_f64(*f))
            }
            _ => Err(self.expected(key, item, "a duration like \"2m\"")),
        }
    }

    /// A `listen`-style key: the port always, the host when it names one (`listen`,
    /// `cluster.listen`, `http`, `https`, `leafnodes.listen`, `websocket.listen`).
    fn set_listen(
        &self,
        key: &str,
        item: &Item,
        host: &mut Option<String>,
        port: &mut Option<i64>,
    ) -> Result<(), ConfigError> {
        let (h, p) = self.listen(key, item)?;
        if h.is_some() {
            *host = h;
        }
        *port = Some(p);
        Ok(())
    }

    /// `listen: host:port`, `listen: :port` or `listen: port`.
    fn listen(&self, key: &str, item: &Item) -> Result<(Option<String>, i64), ConfigError> {
        if let Value::Int(p) = item.value {
            return Ok((None, p));
        }
        let s = self.string(key, item)?;
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| self.invalid(key, item, format!("{s:?} is not host:port")))?;
        let port: i64 = port
            .parse()
            .map_err(|_| self.invalid(key, item, format!("{s:?} has no valid port")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Ok(((!host.is_empty()).then(|| host.to_string()), port))
    }

    fn authorization(
        &self,
        key: &str,
        item: &Item,
        s: &mut Settings,
        warnings: &mut Vec<String>,
        user_names: &mut accounts::UserNames,
    ) -> Result<(), ConfigError> {
        let Value::Map(map) = &item.value else {
            return Err(self.expected(key, item, "a block"));
        };
        for (k, v) in map.iter() {
            match k.to_ascii_lowercase().as_str() {
                "user" | "username" => s.user = Some(self.string(k, v)?),
                "password" | "pass" => s.password = Some(self.string(k, v)?),
                "token" => s.token = Some(self.string(k, v)?),
                // Seconds (a number) is the documented form here; a duration string works too.
                "timeout" => {
                    s.config.auth_timeout = Some(match v.value {
                        Value::Int(n) => Duration::from_secs(
                            u64::try_from(n)
                                .map_err(|_| self.invalid(k, v, "negative duration"))?,
                        ),
                        _ => self.duration(k, v, warnings)?,
                    })
                }
                "users" => {
                    s.config.users = self.users(&format!("authorization.{k}"), v, user_names)?
                }
                "default_permission" | "default_permissions" | "permissions" => {
                    s.config.default_permissions =
                        Some(self.permissions(&format!("authorization.{k}"), v)?)
                }
                "auth_callout" | "auth_hook" => {
                    return Err(ConfigError::Unsupported {
                        file: self.file.to_string(),
                        line: v.pos.line,
                        col: v.pos.col,
                        key: format!("authorization.{k}"),
                        feature: "auth callout",
                    })
                }
                _ => return Err(self.unknown(format!("authorization.{k}"), v)),
            }
        }
        Ok(())
    }
}

impl Cx<'_> {
    /// The `cluster { ... }` block.
    fn cluster(
        &self,
        key: &str,
        item: &Item,
        s: &mut Settings,
        warnings: &mut Vec<String>,
    ) -> Result<(), ConfigError> {
        let Value::Map(map) = &item.value else {
            return Err(self.expected(key, item, "a block"));
        };
        for (k, v) in map.iter() {
            let name = format!("cluster.{k}");
            match k.to_ascii_lowercase().as_str() {
                "name" => s.cluster_name = Some(self.string(&name, v)?),
                "listen" => {
                    self.set_listen(&name, v, &mut s.cluster_host, &mut s.cluster_port)?;
                }
                "port" => s.cluster_port = Some(self.int(&name, v)?),
                "host" | "net" => s.cluster_host = Some(self.string(&name, v)?),
                "advertise" | "cluster_advertise" => {
                    let addr = self.string(&name, v)?;
                    check_advertise(&addr).map_err(|e| self.invalid(&name, v, e.to_string()))?;
                    s.cluster_advertise = Some(addr);
                }
                "no_advertise" => s.no_advertise = Some(self.boolean(&name, v)?),
                "connect_retries" => {
                    let n = self.count(&name, v)?;
                    s.connect_retries =
                        Some(u32::try_from(n).map_err(|_| self.invalid(&name, v, "too large"))?);
                }
                "routes" => s.routes = Some(self.routes(&name, v, warnings)?),
                "authorization" => self.cluster_authorization(&name, v, s, warnings)?,
                "pool_size" | "compression" | "accounts" => warnings.push(format!(
                    "{}:{}:{}: \"{name}\" ignored: starling-server routes use one connection \
                     per peer, without compression (as nats-server 2.9 does)",
                    self.file, v.pos.line, v.pos.col
                )),
                "tls" => s.cluster_tls = Some(self.tls(&name, v, warnings)?),
                "permissions" => return Err(self.unsupported(&name, v, "route permissions")),
                _ => return Err(self.unknown(name, v)),
            }
        }
        Ok(())
    }

    /// `cluster.routes: [url, ...]`: each checked; a repeated one is dropped with a warning,
    /// as nats-server does.
    fn routes(
        &self,
        key: &str,
        item: &Item,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<String>, ConfigError> {
        let Value::Array(list) = &item.value else {
            return Err(self.expected(key, item, "an array of route URLs"));
        };
        let mut routes: Vec<String> = Vec::with_capacity(list.len());
        for entry in list {
            let url = self.string(key, entry)?.trim().to_string();
            check_route_url(&url).map_err(|e| {
                self.invalid(key, entry, format!("route url {:?}: {e}", redact(&url)))
            })?;
            if routes.contains(&url) {
                warnings.push(format!(
                    "{}:{}:{}: duplicate route entry {:?} ignored",
                    self.file,
                    entry.pos.line,
                    entry.pos.col,
                    redact(&url)
                ));
                continue;
            }
            routes.push(url);
        }
        Ok(routes)
    }

    /// `cluster.authorization { user, password, timeout }`: the credentials peers present.
    fn cluster_authorization(
        &self,
        key: &str,
        item: &Item,
        s: &mut Settings,
        warnings: &mut Vec<String>,
    ) -> Result<(), ConfigError> {
        let Value::Map(map) = &item.value else {
            return Err(self.expected(key, item, "a block"));
        };
        for (k, v) in map.iter() {
            let name = format!("{key}.{k}");
            match k.to_ascii_lowercase().as_str() {
                "user" | "username" => s.cluster_user = Some(self.string(&name, v)?),
                "password" | "pass" => s.cluster_password = Some(self.string(&name, v)?),
                "timeout" => {
                    if !matches!(v.value, Value::Int(n) if n >= 0) {
                        self.duration(&name, v, &mut Vec::new())?;
                    }
                    warnings.push(format!(
                        "{}:{}:{}: \"{name}\" ignored: the route authentication timeout is not \
                         configurable in starling-server yet",
                        self.file, v.pos.line, v.pos.col
                    ));
                }
                // nats-server's own messages for these two.
                "token" => {
                    return Err(self.invalid(
                        key,
                        v,
                        "Cluster authorization does not support tokens",
                    ))
                }
                "users" => {
                    return Err(self.invalid(
                        key,
                        v,
                        "Cluster authorization does not allow multiple users",
                    ))
                }
                "permissions" | "default_permissions" => {
                    return Err(self.unsupported(&name, v, "route permissions"))
                }
                _ => return Err(self.unknown(name, v)),
            }
        }
        Ok(())
    }

    /// A key nats-server does not know either.
    fn unknown(&self, key: String, item: &Item) -> ConfigError {
        ConfigError::UnknownField {
            file: self.file.to_string(),
            line: item.pos.line,
            col: item.pos.col,
            key,
        }
    }

    fn unsupported(&self, key: &str, item: &Item, feature: &'static str) -> ConfigError {
        ConfigError::Unsupported {
            file: self.file.to_string(),
            line: item.pos.line,
            col: item.pos.col,
            key: key.to_string(),
            feature,
        }
    }
}

/// A size with an optional nats-server suffix (`"1MB"`, `"64k"`, `"512"`).
pub(crate) fn parse_size(s: &str) -> Option<i64> {
    let s = s.trim();
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let n: i64 = s[..digits].parse().ok()?;
    let suffix = s[digits..].trim();
    if suffix.is_empty() {
        return Some(n);
    }
    n.checked_mul(conf::size_multiplier(suffix)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<FromConfig, ConfigError> {
        from_map(&conf::parse_str(text)?, "test.conf")
    }

    #[test]
    fn store_dir_key_is_accepted_without_jetstream() {
        let c = load("store_dir: \"/var/lib/nats\"\n").unwrap();
        assert_eq!(c.settings.store_dir, Some("/var/lib/nats".into()));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        // It does nothing without JetStream.
        let plan = c.settings.jetstream().unwrap();
        assert!(plan.config.is_none() && plan.warnings.is_empty() && !plan.no_store_dir);
        assert!(c.settings.builder().is_ok());
    }

    /// The plan's JetStream, as its Debug shows it.
    fn js_debug(s: &Settings) -> String {
        format!("{:?}", s.jetstream().unwrap().config.expect("JetStream on"))
    }

    #[test]
    fn jetstream_enabled_and_disabled_forms() {
        for (text, want) in [
            ("jetstream: enabled", Some(true)),
            ("jetstream: enable", Some(true)),
            ("jetstream: ENABLED", Some(true)),
            ("jetstream: \"Enabled\"", Some(true)),
            ("jetstream: true", Some(true)),
            ("jetstream: on", Some(true)),
            ("jetstream: disabled", Some(false)),
            ("jetstream: disable", Some(false)),
            ("jetstream: false", Some(false)),
            ("jetstream {}", Some(true)),
            ("jetstream { enabled: false }", Some(false)),
            ("jetstream { enable: true }", Some(true)),
            ("store_dir: /x", None),
        ] {
            let c = load(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(c.settings.jetstream, want, "{text}");
            assert!(c.warnings.is_empty(), "{text}: {:?}", c.warnings);
            let plan = c.settings.jetstream().unwrap();
            assert_eq!(plan.config.is_some(), want == Some(true), "{text}");
        }
        let s = load("jetstream: enabled").unwrap().settings;
        let plan = s.jetstream().unwrap();
        assert_eq!(plan.accounts, ["$G"]);
        assert!(plan.no_store_dir, "no store dir: memory streams only");
        assert!(s.builder().is_ok());
    }

    #[test]
    fn the_jetstream_block() {
        let text = r#"
            jetstream {
                store_dir: "/var/lib/nats"
                max_memory_store: 64MiB
                max_file_store: 10GiB
                sync_interval: "10s"
                strict: true
                domain: hub
            }
        "#;
        let c = load(text).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let s = &c.settings;
        assert_eq!(s.jetstream, Some(true));
        assert_eq!(s.store_dir, Some("/var/lib/nats".into()));
        let block = s.jetstream_block.clone().unwrap();
        assert_eq!(block.max_memory, Some(64 << 20));
        assert_eq!(block.max_file, Some(10 << 30));
        assert_eq!(
            block.sync,
            Some(starling_jetstream::SyncPolicy::Interval(
                Duration::from_secs(10)
            ))
        );
        assert_eq!(block.strict, Some(true));
        assert_eq!(block.domain.as_deref(), Some("hub"));
        let js = js_debug(s);
        for want in [
            "store_dir: Some(\"/var/lib/nats\")",
            "max_memory: Some(67108864)",
            "max_file: Some(10737418240)",
            "sync: Interval(10s)",
            "domain: Some(\"hub\")",
        ] {
            assert!(js.contains(want), "{want}: {js}");
        }
        assert!(!s.jetstream().unwrap().no_store_dir);
        assert!(s.builder().is_ok());

        // The aliases, sizes as nats-server reads them, `sync: always`.
        let s = load(
            "jetstream { store: /a, max_mem_store: 1G, max_file: 512MB, sync: always, strict: false }",
        )
        .unwrap()
        .settings;
        let block = s.jetstream_block.clone().unwrap();
        assert_eq!(s.store_dir, Some("/a".into()));
        assert_eq!(block.max_memory, Some(1_000_000_000), "bare 1G is 10^9");
        assert_eq!(block.max_file, Some(512 << 20));
        assert_eq!(block.sync, Some(starling_jetstream::SyncPolicy::Always));
        assert_eq!(block.strict, Some(false));
        assert!(js_debug(&s).contains("sync: Always"));
        let block = load(
            "jetstream { storedir: /b, max_mem: \"2G\", max_file_store: 1048576, SYNC_INTERVAL: \"2m\" }",
        )
        .unwrap()
        .settings
        .jetstream_block
        .unwrap();
        assert_eq!(block.max_memory, Some(2 << 30), "a quoted 2G is 2 * 2^30");
        assert_eq!(block.max_file, Some(1 << 20));
        assert_eq!(
            block.sync,
            Some(starling_jetstream::SyncPolicy::Interval(
                Duration::from_secs(120)
            ))
        );
        for (text, want) in [
            ("\"64K\"", 64 << 10),
            ("\"3M\"", 3 << 20),
            ("\"1T\"", 1 << 40),
            ("\"\"", 0),
            ("64KB", 64 << 10),
            ("64k", 64_000),
            ("-1", -1),
        ] {
            let block = load(&format!("jetstream {{ max_mem: {text} }}"))
                .unwrap_or_else(|e| panic!("{text}: {e}"))
                .settings
                .jetstream_block
                .unwrap();
            assert_eq!(block.max_memory, Some(want), "{text}");
        }
        // A negative limit is the default; zero is a limit; a zero sync interval the default.
        let s = load("jetstream { max_mem: -1, max_file: 0, sync_interval: \"0s\" }")
            .unwrap()
            .settings;
        let js = js_debug(&s);
        assert!(js.contains("max_memory: None"), "{js}");
        assert!(js.contains("max_file: Some(0)"), "{js}");
        assert!(js.contains("sync: Interval(120s)"), "{js}");
        // A bare number of seconds, as nats-server reads it, with its warning.
        let c = load("jetstream { sync_interval: 30 }").unwrap();
        assert_eq!(
            c.settings.jetstream_block.unwrap().sync,
            Some(starling_jetstream::SyncPolicy::Interval(
                Duration::from_secs(30)
            ))
        );
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    }

    #[test]
    fn jetstream_block_errors_name_the_key_and_line() {
        for (text, want) in [
            (
                "jetstream: maybe",
                "test.conf:1:0: invalid value for \"jetstream\": Expected 'enabled' or 'disabled' for string value, got 'maybe'",
            ),
            (
                "jetstream: 1",
                "test.conf:1:0: invalid value for \"jetstream\": Expected map, bool or string to define JetStream, got integer",
            ),
            (
                "jetstream {\n  max_mem: \"1GB\"\n}",
                "test.conf:2:2: invalid value for \"jetstream.max_mem\": max_mem_store strconv.ParseInt: parsing \"1G\": invalid syntax",
            ),
            (
                "jetstream {\n  max_file_store: \"10x\"\n}",
                "test.conf:2:2: invalid value for \"jetstream.max_file_store\": max_file_store sizes defined as strings must end in K, M, G, T",
            ),
            (
                "jetstream { max_file: true }",
                "test.conf:1:12: invalid value for \"jetstream.max_file\": max_file_store must be int64 or string",
            ),
            (
                "jetstream {\n  sync_interval: \"soon\"\n}",
                "test.conf:2:2: invalid value for \"jetstream.sync_interval\": error parsing sync_interval: invalid duration \"soon\"",
            ),
            (
                "jetstream { sync: true }",
                "test.conf:1:12: invalid value for \"jetstream.sync\": expected a duration like \"2m\", got boolean",
            ),
            (
                "jetstream { strict: \"yes\" }",
                "invalid value for \"jetstream.strict\": Expected 'true' or 'false' for bool value, got 'yes'",
            ),
            (
                "jetstream { enabled: \"no\" }",
                "invalid value for \"jetstream.enabled\": expected true or false, got string",
            ),
            (
                "jetstream { domain: \"a.b\" }",
                "invalid value for \"jetstream.domain\": invalid domain name: may not contain ., * or >",
            ),
            (
                "jetstream { store_dir: [1] }",
                "invalid value for \"jetstream.store_dir\": expected a string, got array",
            ),
            (
                "jetstream {\n  bogus: 1\n}",
                "test.conf:2:2: unknown field \"jetstream.bogus\"",
            ),
            (
                "jetstream { max_catchup: 1 }",
                "unknown field \"jetstream.max_catchup\"",
            ),
            (
                "store_dir: /a\njetstream {\n  store_dir: /b\n}",
                "test.conf:3:2: invalid value for \"jetstream.store_dir\": Duplicate 'store_dir' configuration",
            ),
            (
                "jetstream { store_dir: /b }\nstore_dir: /a",
                "test.conf:2:0: invalid value for \"store_dir\": Duplicate 'store_dir' configuration",
            ),
            (
                "jetstream { max_buffered_msgs: \"lots\" }",
                "Expected a parseable size for \"max_buffered_msgs\", got lots",
            ),
            (
                "jetstream { limits: 3 }",
                "Expected a map to define JetStreamLimits, got integer",
            ),
        ] {
            let e = load(text).unwrap_err().to_string();
            assert!(e.starts_with("test.conf:"), "{text}: {e}");
            assert!(e.contains(want), "{text}:\n{e}\nwanted: {want}");
        }
        // Encryption is refused, naming the key and its line.
        for key in [
            "key",
            "ek",
            "encryption_key",
            "prev_key",
            "prev_encryption_key",
            "cipher",
            "tpm",
        ] {
            let e = load(&format!("jetstream {{\n  store_dir: /a\n  {key}: x\n}}"))
                .unwrap_err()
                .to_string();
            assert_eq!(
                e,
                format!(
                    "test.conf:3:2: \"jetstream.{key}\" is not supported by starling-server yet (JetStream encryption)"
                )
            );
        }
    }

    #[test]
    fn jetstream_keys_starling_ignores_warn() {
        let c = load(
            r#"
            jetstream {
                max_buffered_msgs: 10000
                max_buffered_size: 128MB
                request_queue_limit: 1000
                limits { max_ack_pending: 100 }
                unique_tag: az
                max_outstanding_catchup: "64M"
                extension_hint: will_extend
            }
            "#,
        )
        .unwrap();
        assert_eq!(c.settings.jetstream, Some(true));
        assert_eq!(c.warnings.len(), 7, "{:?}", c.warnings);
        for (w, key) in c.warnings.iter().zip([
            "max_buffered_msgs",
            "max_buffered_size",
            "request_queue_limit",
            "limits",
            "unique_tag",
            "max_outstanding_catchup",
            "extension_hint",
        ]) {
            assert!(w.contains(&format!("\"jetstream.{key}\" ignored")), "{w}");
            assert!(w.starts_with("test.conf:"), "{w}");
        }
    }

    #[test]
    fn jetstream_flags_override_the_file() {
        let file = load("jetstream: disabled\nstore_dir: /file")
            .unwrap()
            .settings;
        let flags = crate::flags::parse(["-js", "-sd", "/flag"]).unwrap();
        let s = flags.over(file.clone()).unwrap();
        assert_eq!(s.jetstream, Some(true));
        assert_eq!(s.store_dir, Some("/flag".into()));
        assert!(js_debug(&s).contains("store_dir: Some(\"/flag\")"));
        // -js=false leaves the file's choice, as in nats-server.
        let on = load("jetstream { store_dir: /file, max_mem: 1K }")
            .unwrap()
            .settings;
        let s = crate::flags::parse(["-js=false"])
            .unwrap()
            .over(on)
            .unwrap();
        assert_eq!(s.jetstream, Some(true));
        assert!(js_debug(&s).contains("max_memory: Some(1000)"));
        assert!(file.jetstream().unwrap().config.is_none());
    }

    #[test]
    fn the_common_keys() {
        let text = r#"
            # a typical nats-server config
            listen: 127.0.0.1:4333
            server_name: "node-1"
            max_payload: 2MB
            max_control_line: 8KB
            max_pending: 128MB
            max_connections: 100
            max_subscriptions: 1000
            ping_interval: "30s"
            ping_max: 3
            write_deadline: "5s"
            lame_duck_duration: "45s"
            lame_duck_grace_period: "2s"
            authorization { user: alice, password: "s3cret", timeout: 0.5 }
            debug: true
            trace: false
            logtime: false
            log_file: "/tmp/x.log"
            pid_file: /tmp/x.pid
            client_advertise: "example.com:4222"
        "#;
        let s = load(text).unwrap().settings;
        assert_eq!(s.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(s.port, Some(4333));
        assert_eq!(s.config.server_name.as_deref(), Some("node-1"));
        assert_eq!(s.config.max_payload, 2 << 20);
        assert_eq!(s.config.max_control_line, 8192);
        assert_eq!(s.config.max_pending, 128 << 20);
        assert_eq!(s.config.max_connections, 100);
        assert_eq!(s.config.max_subscriptions, 1000);
        assert_eq!(s.config.ping_interval, Duration::from_secs(30));
        assert_eq!(s.config.max_pings_out, 3);
        assert_eq!(s.config.write_deadline, Duration::from_secs(5));
        assert_eq!(s.config.lame_duck_duration, Duration::from_secs(45));
        assert_eq!(s.config.lame_duck_grace_period, Duration::from_secs(2));
        assert_eq!(s.user.as_deref(), Some("alice"));
        assert_eq!(s.password.as_deref(), Some("s3cret"));
        assert_eq!(s.config.auth_timeout, Some(Duration::from_millis(500)));
        assert_eq!(
            (s.debug, s.trace, s.logtime),
            (Some(true), Some(false), Some(false))
        );
        assert_eq!(s.log_file, Some(PathBuf::from("/tmp/x.log")));
        assert_eq!(s.pid_file, Some(PathBuf::from("/tmp/x.pid")));
        assert_eq!(
            s.config.client_advertise.as_deref(),
            Some("example.com:4222")
        );
        assert_eq!(s.listen_addr().unwrap(), "127.0.0.1:4333");
        assert_eq!(
            s.auth().unwrap(),
            Auth::UserPassword {
                user: "alice".into(),
                password: "s3cret".into()
            }
        );
        assert!(s.builder().is_ok());
    }

    #[test]
    fn listen_forms() {
        let s = load("listen: 4333").unwrap().settings;
        assert_eq!((s.host, s.port), (None, Some(4333)));
        let s = load("listen: \":4333\"").unwrap().settings;
        assert_eq!((s.host, s.port), (None, Some(4333)));
        let s = load("listen: \"[::1]:4333\"").unwrap().settings;
        assert_eq!(s.listen_addr().unwrap(), "[::1]:4333");
        let s = load("host: 127.0.0.1\nport: -1").unwrap().settings;
        assert_eq!(s.listen_addr().unwrap(), "127.0.0.1:0");
        assert!(load("listen: nonsense").is_err());
        let s = load("port: 70000").unwrap().settings;
        assert_eq!(s.listen_addr(), Err(SettingsError::Port(70000)));
    }

    #[test]
    fn token_auth_and_keys_are_case_insensitive() {
        let s = load("AUTHORIZATION { TOKEN: t0k, Timeout: 3 }\nPort: 1").unwrap();
        assert_eq!(s.settings.auth().unwrap(), Auth::Token("t0k".into()));
        assert_eq!(s.settings.config.auth_timeout, Some(Duration::from_secs(3)));
        assert_eq!(s.settings.port, Some(1));
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    }

    #[test]
    fn bare_number_durations_are_seconds_with_a_warning() {
        let c = load("ping_interval: 90\nwrite_deadline: 2m").unwrap();
        assert_eq!(c.settings.config.ping_interval, Duration::from_secs(90));
        // nats-server reads a bare 2m as 2,000,000 (seconds): same here, and a warning says so.
        assert_eq!(
            c.settings.config.write_deadline,
            Duration::from_secs(2_000_000)
        );
        assert_eq!(c.warnings.len(), 2);
        assert!(c.warnings[1].contains("\"2m\""), "{:?}", c.warnings);
    }

    #[test]
    fn unknown_unsupported_and_ignored_keys() {
        let e = load("port: 1\nprot: 3").unwrap_err();
        assert_eq!(e.to_string(), "test.conf:2:0: unknown field \"prot\"");
        let e = load("gateway { name: a }").unwrap_err();
        assert!(
            e.to_string()
                .contains("\"gateway\" is not supported by starling-server yet (gateways)"),
            "{e}"
        );
        // As in nats-server, routes belong in the cluster block.
        let e = load("routes: [\"nats://a:1\"]").unwrap_err();
        assert_eq!(e.to_string(), "test.conf:1:0: unknown field \"routes\"");
        let e = load("authorization { auth_callout: {} }").unwrap_err();
        assert!(e.to_string().contains("authorization.auth_callout"), "{e}");
        let c = load("http_base_path: \"/nats\"").unwrap();
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("monitoring"), "{:?}", c.warnings);
    }

    #[test]
    fn nkey_users() {
        // async-nats's own tests/configs/nkey.conf.
        let key = "UAFHG6FUD2UU4SDFVAFUL5LDFO2XM4WYM76UNXTPJYJK7EEMYRBHT2VE";
        let s = load(&format!(
            "authorization: {{ users: [ {{ nkey: {key} }} ] }}"
        ))
        .unwrap()
        .settings;
        let users = s.config.users.clone();
        assert!(users[0].is_nkey());
        assert_eq!(users[0].name(), key);
        for (text, want) in [
            (
                format!("authorization {{ users: [ {{ nkey: {key}, user: u }} ] }}"),
                "Nkey users do not take usernames or passwords",
            ),
            (
                format!("authorization {{ users: [ {{ nkey: {key}, pass: p }} ] }}"),
                "Nkey users do not take usernames or passwords",
            ),
            (
                "authorization { users: [ { nkey: UBOGUS } ] }".to_string(),
                "Not a valid public nkey for a user",
            ),
            (
                format!("accounts {{ A {{ users [ {{nkey: {key}}} ] }}, B {{ users [ {{nkey: {key}}} ] }} }}"),
                "Duplicate nkey",
            ),
        ] {
            let err = load(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn the_tls_block() {
        let s = load(
            r#"
            tls {
                cert_file: "./server-cert.pem"
                key_file: "./server-key.pem"
                ca_file: "./ca.pem"
                verify: true
                timeout: 0.5
                handshake_first: "300ms"
                min_version: "1.3"
                cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
                curve_preferences: [X25519, CurveP256]
            }
            allow_non_tls: true
            "#,
        )
        .unwrap()
        .settings;
        let tls = s.tls.clone().unwrap();
        assert!(tls.enabled && !tls.from_flags && tls.verify);
        assert_eq!(tls.timeout, Some(Duration::from_millis(500)));
        assert_eq!(
            tls.handshake_first,
            starling_server::HandshakeFirst::Fallback(Duration::from_millis(300))
        );
        assert_eq!(tls.min_version, Some(starling_server::TlsVersion::V1_3));
        assert_eq!(tls.curve_preferences, ["X25519", "CurveP256"]);
        assert!(s.config.allow_non_tls);
        let c = s.tls_config().unwrap().unwrap();
        assert!(c.verifies_clients());
        assert_eq!(c.handshake_timeout(), Duration::from_millis(500));

        for (first, want) in [
            ("true", starling_server::HandshakeFirst::On),
            ("\"off\"", starling_server::HandshakeFirst::Off),
            (
                "auto",
                starling_server::HandshakeFirst::Fallback(Duration::from_millis(50)),
            ),
        ] {
            let text = format!("tls {{ cert_file: c, key_file: k, first: {first} }}");
            let tls = load(&text).unwrap().settings.tls.unwrap();
            assert_eq!(tls.handshake_first, want, "{text}");
        }
    }

    #[test]
    fn tls_block_errors() {
        for (text, want) in [
            (
                "tls { cert_file: 1 }",
                "expected 'cert_file' to be filename",
            ),
            (
                "tls { verify: \"yes\" }",
                "expected 'verify' to be a boolean",
            ),
            (
                "tls { cipher_suites: [] }",
                "'cipher_suites' cannot be empty",
            ),
            (
                "tls { min_version: \"1.1\" }",
                "unsupported TLS version: 1.1",
            ),
            (
                "tls { bogus: 1 }",
                "error parsing tls config, unknown field \"bogus\"",
            ),
            (
                "tls { timeout: \"soon\" }",
                "error parsing tls config, 'timeout'",
            ),
            (
                "tls { handshake_first: \"maybe\" }",
                "'handshake_first' expects",
            ),
            (
                "tls { verify_and_map: 1 }",
                "expected 'verify_and_map' to be a boolean",
            ),
            (
                "tls { pinned_certs: [\"abc\"] }",
                "'pinned_certs' key abc does not look like hex-encoded sha256",
            ),
            (
                "tls { pinned_certs: \"abc\" }",
                "expected 'pinned_certs' to be a list",
            ),
        ] {
            let err = load(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
            assert!(err.starts_with("test.conf:1:"), "{text}: {err}");
        }
        let pin = "AB".repeat(32);
        let s = load(&format!(
            "tls {{ cert_file: c, key_file: k, verify_and_map: true, pinned_certs: [\"{pin}\"] }}"
        ))
        .unwrap()
        .settings;
        let tls = s.tls.clone().unwrap();
        assert!(tls.verify_and_map);
        assert_eq!(tls.pinned_certs, vec!["ab".repeat(32)]);
        assert!(s.tls_config().unwrap().unwrap().maps_clients());
        let s = load("tls { cert_file: c }").unwrap().settings;
        assert_eq!(
            s.tls_config().unwrap_err().to_string(),
            "missing 'key_file' in TLS configuration"
        );
        // Flags replace the file's block whole.
        let file = load("tls { cert_file: c, key_file: k, verify: true }")
            .unwrap()
            .settings;
        let flags = crate::flags::parse(["--tls", "--tlscert", "f", "--tlskey", "g"]).unwrap();
        let merged = flags.over(file).unwrap().tls.unwrap();
        assert!(merged.from_flags && !merged.verify);
    }

    #[test]
    fn the_cluster_block() {
        let text = r#"
            cluster {
                name: storage
                listen: 127.0.0.1:6333
                advertise: "10.0.0.3:6333"
                no_advertise: true
                connect_retries: 4
                routes: [
                    nats-route://ruser:T0p@10.0.0.1:6333
                    "nats://10.0.0.2:6333"
                ]
                authorization { user: ruser, password: T0p, timeout: 2 }
            }
        "#;
        let c = load(text).unwrap();
        let s = &c.settings;
        assert_eq!(s.cluster_name.as_deref(), Some("storage"));
        assert_eq!(s.cluster_host.as_deref(), Some("127.0.0.1"));
        assert_eq!(s.cluster_port, Some(6333));
        assert_eq!(s.cluster_advertise.as_deref(), Some("10.0.0.3:6333"));
        assert_eq!(s.no_advertise, Some(true));
        assert_eq!(s.connect_retries, Some(4));
        assert_eq!(
            s.routes.as_deref(),
            Some(
                &[
                    "nats-route://ruser:T0p@10.0.0.1:6333".to_string(),
                    "nats://10.0.0.2:6333".to_string()
                ][..]
            )
        );
        assert_eq!(s.cluster_user.as_deref(), Some("ruser"));
        assert_eq!(s.cluster_password.as_deref(), Some("T0p"));
        // The route authentication timeout is read, checked and reported as not applied.
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("cluster.authorization.timeout"));
        let cluster = format!("{:?}", s.cluster().unwrap().expect("clustering is on"));
        assert!(cluster.contains("name: Some(\"storage\")"), "{cluster}");
        assert!(cluster.contains("listen: \"127.0.0.1:6333\""), "{cluster}");
        assert!(
            cluster.contains("advertise: Some(\"10.0.0.3:6333\")"),
            "{cluster}"
        );
        assert!(s.builder().is_ok());

        // host/port, port -1, no name (dynamic), keys in any case.
        let s = load("CLUSTER { Host: 127.0.0.2, PORT: -1 }")
            .unwrap()
            .settings;
        let cluster = format!("{:?}", s.cluster().unwrap().expect("clustering is on"));
        assert!(cluster.contains("name: None"), "{cluster}");
        assert!(cluster.contains("listen: \"127.0.0.2:0\""), "{cluster}");
        // listen: PORT alone listens on every interface.
        let s = load("cluster { listen: 6222 }").unwrap().settings;
        let cluster = format!("{:?}", s.cluster().unwrap().expect("clustering is on"));
        assert!(cluster.contains("listen: \"0.0.0.0:6222\""), "{cluster}");
        // No port: no clustering, as in nats-server.
        assert!(load("cluster { name: x }")
            .unwrap()
            .settings
            .cluster()
            .unwrap()
            .is_none());
        assert!(Settings::default().cluster().unwrap().is_none());
    }

    #[test]
    fn cluster_block_warnings_and_errors() {
        let c = load("cluster { port: 1, pool_size: 3, compression: s2_auto }").unwrap();
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(
            c.warnings[0].contains("cluster.pool_size"),
            "{:?}",
            c.warnings
        );
        let c = load("cluster { port: 1, routes: [\"nats://a:1\", \"nats://a:1\"] }").unwrap();
        assert_eq!(c.settings.routes.as_ref().map(Vec::len), Some(1));
        assert!(
            c.warnings[0].contains("duplicate route"),
            "{:?}",
            c.warnings
        );

        for (text, want) in [
            ("cluster: 6222", "expected a block"),
            ("cluster { bogus: 1 }", "unknown field \"cluster.bogus\""),
            ("cluster { port: x }", "expected an integer"),
            ("cluster { no_advertise: 3 }", "expected true or false"),
            ("cluster { connect_retries: -1 }", "-1 is negative"),
            ("cluster { routes: \"nats://a:1\" }", "expected an array"),
            (
                "cluster { routes: [\"nats://a\"] }",
                "missing port in address",
            ),
            (
                "cluster { routes: [\"nats://u:pw@a:x\"] }",
                "nats://u:xxxxx@a:x",
            ),
            ("cluster { advertise: \"nats://a:1\" }", "without a scheme"),
            (
                "cluster { tls { pinned_certs: [\"abc\"] } }",
                "'pinned_certs' key abc does not look like",
            ),
            (
                "cluster { authorization { token: t } }",
                "Cluster authorization does not support tokens",
            ),
            (
                "cluster { authorization { users: [] } }",
                "Cluster authorization does not allow multiple users",
            ),
            (
                "cluster { authorization { timeout: \"soon\" } }",
                "invalid duration",
            ),
            (
                "cluster { authorization { bogus: 1 } }",
                "cluster.authorization.bogus",
            ),
        ] {
            let e = load(text).unwrap_err().to_string();
            assert!(e.starts_with("test.conf:1:"), "{text}: {e}");
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn cluster_settings_checks() {
        let with = |f: fn(&mut Settings)| {
            let mut s = Settings {
                cluster_port: Some(6222),
                ..Settings::default()
            };
            f(&mut s);
            s.validate().err().map(|e| e.to_string())
        };
        assert_eq!(with(|_| {}), None);
        assert_eq!(
            with(|s| s.cluster_port = Some(70000)),
            Some("invalid cluster port 70000: must be -1 (any free port) or 0..65535".into())
        );
        assert_eq!(
            with(|s| (s.cluster_port, s.routes) = (None, Some(vec!["nats://a:1".into()]))),
            Some("solicited routes require cluster capabilities, e.g. --cluster".into())
        );
        assert_eq!(
            with(|s| s.routes = Some(vec!["nats://u:pw@a".into()])),
            Some("error parsing route url [\"nats://u:xxxxx@a\"]: missing port in address".into())
        );
        assert_eq!(
            with(|s| s.cluster_name = Some("my cluster".into())),
            Some("cluster name \"my cluster\" cannot contain spaces or new lines".into())
        );
        assert!(with(|s| s.cluster_advertise = Some("nats://h:1".into())).is_some());
        assert!(with(|s| s.cluster_password = Some("p".into())).is_some());
        // --cluster without credentials empties them: no route authentication.
        assert_eq!(
            with(|s| (s.cluster_user, s.cluster_password) =
                (Some(String::new()), Some(String::new()))),
            None
        );
        // --cluster "" turns clustering off even if the file has it.
        let file = load("cluster { port: 6222 }").unwrap().settings;
        let flags = crate::flags::parse(["--cluster", ""]).unwrap();
        assert!(flags.over(file).unwrap().cluster().unwrap().is_none());
    }

    #[test]
    fn cluster_flags_override_the_file() {
        let file = load(
            "cluster { name: a, port: 1, routes: [\"nats://x:1\"], \
             authorization { user: u, password: p } }",
        )
        .unwrap()
        .settings;
        let flags = crate::flags::parse([
            "--cluster",
            "nats://0.0.0.0:2",
            "--cluster_name",
            "b",
            "--routes",
            "",
        ])
        .unwrap();
        let s = flags.over(file).unwrap();
        assert_eq!(s.cluster_port, Some(2));
        assert_eq!(s.cluster_name.as_deref(), Some("b"));
        assert_eq!(s.routes, Some(vec![]));
        assert_eq!(s.cluster_user.as_deref(), Some(""));
        assert!(s.cluster().unwrap().is_some());
    }

    #[test]
    fn https_monitoring_keys() {
        let s = load("https: \"127.0.0.1:8443\"").unwrap().settings;
        assert_eq!(s.https_port, Some(8443));
        assert_eq!(s.monitor_addr().unwrap().as_deref(), Some("127.0.0.1:8443"));
        let s = load("https_port: -1").unwrap().settings;
        assert_eq!(s.monitor_addr().unwrap().as_deref(), Some("0.0.0.0:0"));
        let s = load("http_port: 8222\nhttps_port: 8443").unwrap().settings;
        assert_eq!(
            s.monitor_addr().unwrap_err().to_string(),
            "can't specify both HTTP (8222) and HTTPs (8443) ports"
        );
        let flags = crate::flags::parse(["-ms", "8443"]).unwrap();
        assert_eq!(flags.settings.https_port, Some(8443));
        assert!(flags.warnings.is_empty(), "{:?}", flags.warnings);
    }

    #[test]
    fn monitoring_keys() {
        let c = load("http_port: 8222").unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(c.settings.http_port, Some(8222));
        assert_eq!(
            c.settings.monitor_addr().unwrap().as_deref(),
            Some("0.0.0.0:8222")
        );
        let s = load("http: \"127.0.0.1:8223\"\nmax_closed_clients: 5")
            .unwrap()
            .settings;
        assert_eq!(s.monitor_addr().unwrap().as_deref(), Some("127.0.0.1:8223"));
        assert_eq!(s.config.max_closed_clients, 5);
        let s = load("monitor_port: -1\nhost: 127.0.0.2").unwrap().settings;
        assert_eq!(s.monitor_addr().unwrap().as_deref(), Some("127.0.0.2:0"));
        assert_eq!(
            load("http_port: 0")
                .unwrap()
                .settings
                .monitor_addr()
                .unwrap(),
            None
        );
        assert!(load("http_port: 70000")
            .unwrap()
            .settings
            .validate()
            .is_err());
    }

    #[test]
    fn wrong_types_are_errors_not_panics() {
        for text in [
            "port: \"abc\"",
            "port: true",
            "max_payload: -1",
            "max_payload: \"lots\"",
            "max_connections: -5",
            "ping_interval: \"soon\"",
            "ping_interval: -1",
            "ping_max: 99999999999",
            "debug: 1",
            "authorization: 3",
            "authorization { bogus: 1 }",
            "server_name: [1]",
            "listen: true",
        ] {
            let e = load(text).unwrap_err();
            assert!(e.to_string().starts_with("test.conf:1:"), "{text}: {e}");
        }
    }

    #[test]
    fn flags_override_the_file() {
        let file = load("port: 1\nhost: 10.0.0.1\ndebug: true\nauthorization { token: t }")
            .unwrap()
            .settings;
        let flags = crate::flags::parse(["-p", "2", "-D=false", "--user", "u"]).unwrap();
        let s = flags.over(file).unwrap();
        assert_eq!(s.port, Some(2));
        assert_eq!(s.host.as_deref(), Some("10.0.0.1"));
        assert_eq!(s.debug, Some(false));
        // user/password beats a token, as in nats-server
        assert_eq!(
            s.auth().unwrap(),
            Auth::UserPassword {
                user: "u".into(),
                password: String::new()
            }
        );
    }

    #[test]
    fn validation() {
        let s = Settings {
            password: Some("p".into()),
            ..Settings::default()
        };
        assert_eq!(s.validate(), Err(SettingsError::PasswordWithoutUser));
        let mut s = Settings::default();
        s.config.lame_duck_duration = Duration::from_secs(6);
        assert_eq!(
            s.validate().unwrap_err().to_string(),
            "invalid lame_duck_duration of 6s, minimum is 30 seconds"
        );
        assert_eq!(Settings::default().listen_addr().unwrap(), "0.0.0.0:4222");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MB"), Some(1 << 20));
        assert_eq!(parse_size("64k"), Some(64_000));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("1 GiB"), Some(1 << 30));
        assert_eq!(parse_size("MB"), None);
        assert_eq!(parse_size("1XB"), None);
        assert_eq!(parse_size("99999999999999999999"), None);
    }
}
