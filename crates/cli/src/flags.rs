//! nats-server's command-line flags, parsed the way Go's `flag` package parses them: `-flag`,
//! `--flag`, `-flag=value`, `-flag value` (the next argument is taken even if it starts with
//! `-`, so `-p -1` works); a bool flag takes no separate value (`-D`, `-T=false`); `--` ends the
//! flags; the first non-flag argument ends them too.

use std::path::PathBuf;

use thiserror::Error;

use crate::cluster::{parse_cluster_listen, redact, split_routes};
use crate::settings::{Settings, TlsSettings};

/// What kind of value a flag takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bool,
    Int,
    Str,
}

/// What a flag does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flag {
    Addr,
    Port,
    Name,
    Pid,
    Config,
    TestConfig,
    Signal,
    ClientAdvertise,
    PortsFileDir,
    Log,
    LogTime,
    Debug,
    Trace,
    DebugTrace,
    User,
    Pass,
    Auth,
    Help,
    HelpTls,
    Version,
    HttpPort,
    HttpsPort,
    /// `--http HOST:PORT`: Starling's flag for the config file's `http` key.
    Http,
    /// `--cluster URL` / `--cluster_listen URL`.
    Cluster,
    /// `--routes URL,URL`.
    Routes,
    /// `--cluster_name NAME`.
    ClusterName,
    /// `--cluster_advertise HOST:PORT`.
    ClusterAdvertise,
    /// `--no_advertise`.
    NoAdvertise,
    /// `--connect_retries N`.
    ConnectRetries,
    /// `-js` / `--jetstream`: JetStream on.
    JetStream,
    /// `-sd DIR` / `--store_dir DIR`: JetStream's store directory.
    StoreDir,
    /// `--tls`: TLS on (or, `--tls=false`, off).
    Tls,
    /// `--tlscert FILE`.
    TlsCert,
    /// `--tlskey FILE`.
    TlsKey,
    /// `--tlscacert FILE`.
    TlsCaCert,
    /// `--tlsverify`.
    TlsVerify,
    /// A nats-server flag for a feature Starling lacks, harmless to ignore: a warning.
    Ignored(&'static str),
}

/// Every flag nats-server 2.9 has, with its names as `nats-server --help` lists them.
const FLAGS: &[(&[&str], Kind, Flag)] = &[
    (&["a", "addr", "net"], Kind::Str, Flag::Addr),
    (&["p", "port"], Kind::Int, Flag::Port),
    (&["n", "name", "server_name"], Kind::Str, Flag::Name),
    (&["P", "pid"], Kind::Str, Flag::Pid),
    (&["c", "config"], Kind::Str, Flag::Config),
    (&["t"], Kind::Bool, Flag::TestConfig),
    (&["sl", "signal"], Kind::Str, Flag::Signal),
    (&["client_advertise"], Kind::Str, Flag::ClientAdvertise),
    (&["ports_file_dir"], Kind::Str, Flag::PortsFileDir),
    (&["l", "log"], Kind::Str, Flag::Log),
    (&["T", "logtime"], Kind::Bool, Flag::LogTime),
    (&["D", "debug"], Kind::Bool, Flag::Debug),
    (&["V", "trace", "VV"], Kind::Bool, Flag::Trace),
    (&["DV", "DVV"], Kind::Bool, Flag::DebugTrace),
    (&["user"], Kind::Str, Flag::User),
    (&["pass"], Kind::Str, Flag::Pass),
    (&["auth"], Kind::Str, Flag::Auth),
    (&["h", "help"], Kind::Bool, Flag::Help),
    (&["help_tls"], Kind::Bool, Flag::HelpTls),
    (&["v", "version"], Kind::Bool, Flag::Version),
    (&["m", "http_port"], Kind::Int, Flag::HttpPort),
    (&["http"], Kind::Str, Flag::Http),
    (&["ms", "https_port"], Kind::Int, Flag::HttpsPort),
    (&["s", "syslog"], Kind::Bool, Flag::Ignored("syslog")),
    (&["r", "remote_syslog"], Kind::Str, Flag::Ignored("syslog")),
    (
        &["log_size_limit"],
        Kind::Int,
        Flag::Ignored("log rotation"),
    ),
    (
        &["max_traced_msg_len"],
        Kind::Int,
        Flag::Ignored("trace truncation"),
    ),
    (&["profile"], Kind::Int, Flag::Ignored("profiling")),
    (&["js", "jetstream"], Kind::Bool, Flag::JetStream),
    // Accepted without JetStream, as nats-server accepts it: client test harnesses (async-nats,
    // nats.py) pass `--store_dir` to every server they start.
    (&["sd", "store_dir"], Kind::Str, Flag::StoreDir),
    (&["tls"], Kind::Bool, Flag::Tls),
    (&["tlscert"], Kind::Str, Flag::TlsCert),
    (&["tlskey"], Kind::Str, Flag::TlsKey),
    (&["tlscacert"], Kind::Str, Flag::TlsCaCert),
    (&["tlsverify"], Kind::Bool, Flag::TlsVerify),
    (&["cluster", "cluster_listen"], Kind::Str, Flag::Cluster),
    (&["routes"], Kind::Str, Flag::Routes),
    (&["cluster_name"], Kind::Str, Flag::ClusterName),
    (&["cluster_advertise"], Kind::Str, Flag::ClusterAdvertise),
    (&["no_advertise"], Kind::Bool, Flag::NoAdvertise),
    (&["connect_retries"], Kind::Int, Flag::ConnectRetries),
];

fn lookup(name: &str) -> Option<(Kind, Flag)> {
    FLAGS
        .iter()
        .find(|(names, _, _)| names.contains(&name))
        .map(|&(_, kind, flag)| (kind, flag))
}

/// The parsed command line.
#[derive(Debug, Default)]
pub(crate) struct Cli {
    /// The flags' settings alone (what is decided before the config file is read).
    pub(crate) settings: Settings,
    /// Every setting flag in order, to apply over the config file ([`Self::over`]).
    given: Vec<(String, Flag, Value)>,
    /// `-c FILE`.
    pub(crate) config: Option<PathBuf>,
    /// `-t`: check the config file and exit.
    pub(crate) test_config: bool,
    /// `--signal SIGNAL[=PID]`.
    pub(crate) signal: Option<String>,
    /// `-h`.
    pub(crate) help: bool,
    /// `--help_tls`.
    pub(crate) help_tls: bool,
    /// `-v`.
    pub(crate) version: bool,
    /// Flags that were accepted but ignored.
    pub(crate) warnings: Vec<String>,
}

/// A command-line error, worded as Go's `flag` package and nats-server word them.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub(crate) enum FlagError {
    /// `---x`, `-=x`.
    #[error("bad flag syntax: {0}")]
    BadSyntax(String),
    /// A flag nats-server does not have either.
    #[error("flag provided but not defined: -{0}")]
    Undefined(String),
    /// A value flag at the end of the line.
    #[error("flag needs an argument: -{0}")]
    NeedsArgument(String),
    /// `-T=maybe`.
    #[error("invalid boolean value {value:?} for -{flag}: parse error")]
    InvalidBool {
        /// The flag as written (without dashes).
        flag: String,
        /// The value given.
        value: String,
    },
    /// `-p abc`.
    #[error("invalid value {value:?} for flag -{flag}: {reason}")]
    InvalidValue {
        /// The flag as written (without dashes).
        flag: String,
        /// The value given (a URL's password redacted).
        value: String,
        /// `parse error` or `value out of range`, as Go says; or what is wrong with a URL.
        reason: String,
    },
    /// A leftover argument that is not `version` or `help`.
    #[error("unrecognized command: {0:?}")]
    UnrecognizedCommand(String),
}

/// Parses the arguments (without the program name).
pub(crate) fn parse<I, S>(args: I) -> Result<Cli, FlagError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let args: Vec<String> = args.into_iter().map(Into::into).collect();
    let mut cli = Cli::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg.len() < 2 || !arg.starts_with('-') {
            break; // the first non-flag argument
        }
        let body = if let Some(rest) = arg.strip_prefix("--") {
            if rest.is_empty() {
                i += 1; // "--" ends the flags
                break;
            }
            rest
        } else {
            &arg[1..]
        };
        if body.starts_with('-') || body.starts_with('=') {
            return Err(FlagError::BadSyntax(arg.clone()));
        }
        i += 1;
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let (kind, flag) = lookup(name).ok_or_else(|| FlagError::Undefined(name.to_string()))?;
        let value = match (kind, inline) {
            (Kind::Bool, None) => Value::Bool(true),
            (Kind::Bool, Some(v)) => {
                Value::Bool(parse_bool(&v).ok_or_else(|| FlagError::InvalidBool {
                    flag: name.to_string(),
                    value: v.clone(),
                })?)
            }
            (kind, inline) => {
                let v = match inline {
                    Some(v) => v,
                    None => {
                        let v = args
                            .get(i)
                            .cloned()
                            .ok_or_else(|| FlagError::NeedsArgument(name.to_string()))?;
                        i += 1;
                        v
                    }
                };
                if kind == Kind::Int {
                    Value::Int(parse_int(&v).map_err(|reason| FlagError::InvalidValue {
                        flag: name.to_string(),
                        value: v.clone(),
                        reason: reason.into(),
                    })?)
                } else {
                    Value::Str(v)
                }
            }
        };
        apply(&mut cli, name, flag, value)?;
    }
    // nats-server accepts `version` and `help` as commands after the flags.
    match args.get(i).map(String::as_str) {
        None => {}
        Some("version") => cli.version = true,
        Some("help") => cli.help = true,
        Some(other) => return Err(FlagError::UnrecognizedCommand(other.to_string())),
    }
    Ok(cli)
}

#[derive(Clone, Debug)]
enum Value {
    Bool(bool),
    Int(i64),
    Str(String),
}

impl Value {
    fn bool(&self) -> bool {
        matches!(self, Self::Bool(true))
    }
    fn int(&self) -> i64 {
        match self {
            Self::Int(n) => *n,
            _ => 0,
        }
    }
    fn string(self) -> String {
        match self {
            Self::Str(s) => s,
            Self::Int(n) => n.to_string(),
            Self::Bool(b) => b.to_string(),
        }
    }
}

impl Cli {
    /// `file`'s settings with the flags applied over them (flags win, as in nats-server).
    pub(crate) fn over(&self, mut file: Settings) -> Result<Settings, FlagError> {
        for (name, flag, v) in &self.given {
            set(&mut file, name, *flag, v.clone())?;
        }
        Ok(file)
    }
}

/// What flag `name` does: to the command line's own options, or to the settings.
fn apply(cli: &mut Cli, name: &str, flag: Flag, v: Value) -> Result<(), FlagError> {
    match flag {
        Flag::Config => cli.config = Some(v.string().into()),
        Flag::TestConfig => cli.test_config = v.bool(),
        Flag::Signal => cli.signal = Some(v.string()),
        Flag::Help => cli.help = v.bool(),
        Flag::HelpTls => cli.help_tls = v.bool(),
        Flag::Version => cli.version = v.bool(),
        Flag::Ignored(feature) => cli.warnings.push(format!(
            "flag -{name} ignored: {feature} is not available in starling-server yet"
        )),
        _ => {
            set(&mut cli.settings, name, flag, v.clone())?;
            cli.given.push((name.to_string(), flag, v));
        }
    }
    Ok(())
}

/// What a setting flag sets.
fn set(s: &mut Settings, name: &str, flag: Flag, v: Value) -> Result<(), FlagError> {
    match flag {
        Flag::Addr => s.host = Some(v.string()),
        Flag::Port => s.port = Some(v.int()),
        Flag::Name => s.config.server_name = Some(v.string()),
        Flag::Pid => s.pid_file = Some(v.string().into()),
        Flag::ClientAdvertise => s.config.client_advertise = Some(v.string()),
        Flag::PortsFileDir => s.ports_file_dir = Some(v.string().into()),
        // As nats-server's ConfigureOptions: only `-js` (true) and a non-empty `-sd` override
        // the file; `-js=false` does not turn off the file's JetStream.
        Flag::JetStream if v.bool() => s.jetstream = Some(true),
        Flag::JetStream => {}
        Flag::StoreDir => {
            let dir = v.string();
            if !dir.is_empty() {
                s.store_dir = Some(dir.into());
            }
        }
        // As nats-server: `--tls=false` turns TLS off and makes later --tls* flags no-ops;
        // any other --tls* flag replaces the file's tls block with the flags' own.
        Flag::Tls if !v.bool() => {
            s.tls = Some(TlsSettings {
                enabled: false,
                ..TlsSettings::flags(&mut None).clone()
            })
        }
        Flag::Tls | Flag::TlsCert | Flag::TlsKey | Flag::TlsCaCert | Flag::TlsVerify
            if s.tls.as_ref().is_some_and(|t| t.from_flags && !t.enabled) => {}
        Flag::Tls => {
            TlsSettings::flags(&mut s.tls);
        }
        Flag::TlsCert => TlsSettings::flags(&mut s.tls).cert_file = Some(v.string().into()),
        Flag::TlsKey => TlsSettings::flags(&mut s.tls).key_file = Some(v.string().into()),
        Flag::TlsCaCert => TlsSettings::flags(&mut s.tls).ca_file = Some(v.string().into()),
        Flag::TlsVerify => TlsSettings::flags(&mut s.tls).verify = v.bool(),
        Flag::Log => s.log_file = Some(v.string().into()),
        Flag::LogTime => s.logtime = Some(v.bool()),
        Flag::Debug => s.debug = Some(v.bool()),
        Flag::Trace => s.trace = Some(v.bool()),
        // As in nats-server: -DV=false turns nothing off.
        Flag::DebugTrace if v.bool() => (s.debug, s.trace) = (Some(true), Some(true)),
        Flag::DebugTrace => {}
        Flag::User => s.user = Some(v.string()),
        Flag::Pass => s.password = Some(v.string()),
        Flag::Auth => s.token = Some(v.string()),
        Flag::HttpPort => s.http_port = Some(v.int()),
        Flag::HttpsPort => s.https_port = Some(v.int()),
        Flag::Http => {
            let text = v.string();
            let invalid = || FlagError::InvalidValue {
                flag: name.to_string(),
                value: text.clone(),
                reason: "parse error".into(),
            };
            let (host, port) = match text.rsplit_once(':') {
                Some((h, p)) => (Some(h.trim_start_matches('[').trim_end_matches(']')), p),
                None => (None, text.as_str()),
            };
            s.http_port = Some(parse_int(port).map_err(|_| invalid())?);
            if let Some(h) = host.filter(|h| !h.is_empty()) {
                s.http_host = Some(h.to_string());
            }
        }
        Flag::Cluster => {
            // As nats-server: an empty URL turns clustering off; a URL without credentials
            // clears those of the config file.
            let text = v.string();
            if text.is_empty() {
                s.cluster_port = Some(0);
                return Ok(());
            }
            let listen = parse_cluster_listen(&text).map_err(|e| FlagError::InvalidValue {
                flag: name.to_string(),
                value: redact(&text),
                reason: e.to_string(),
            })?;
            s.cluster_host = Some(listen.host);
            s.cluster_port = Some(listen.port);
            let (user, password) = listen.credentials.unwrap_or_default();
            (s.cluster_user, s.cluster_password) = (Some(user), Some(password));
        }
        Flag::Routes => s.routes = Some(split_routes(&v.string())),
        Flag::ClusterName => s.cluster_name = Some(v.string()),
        Flag::ClusterAdvertise => s.cluster_advertise = Some(v.string()),
        Flag::NoAdvertise => s.no_advertise = Some(v.bool()),
        Flag::ConnectRetries => {
            let n = v.int();
            s.connect_retries = Some(u32::try_from(n).map_err(|_| FlagError::InvalidValue {
                flag: name.to_string(),
                value: n.to_string(),
                reason: "value out of range".into(),
            })?);
        }
        // The command line's own: `apply` handles them.
        Flag::Config
        | Flag::TestConfig
        | Flag::Signal
        | Flag::Help
        | Flag::HelpTls
        | Flag::Version
        | Flag::Ignored(_) => {}
    }
    Ok(())
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)`: optional sign; `0x`, `0o`, `0b` or a leading `0`
/// (octal) choose the base; `_` may separate digits when a prefix is given.
fn parse_int(s: &str) -> Result<i64, &'static str> {
    const PARSE: &str = "parse error";
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.replace('_', ""))
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.replace('_', ""))
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.replace('_', ""))
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].replace('_', ""))
    } else {
        (10, lower.clone())
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(PARSE);
    }
    let magnitude = u64::from_str_radix(&digits, radix).map_err(|_| "value out of range")?;
    if neg {
        0i64.checked_sub_unsigned(magnitude)
            .ok_or("value out of range")
    } else {
        i64::try_from(magnitude).map_err(|_| "value out of range")
    }
}

/// `starling-server --help`: nats-server's layout, listing what Starling supports.
pub(crate) const USAGE: &str = "\
Usage: starling-server [options]

Server Options:
    -a, --addr, --net <host>         Bind to host address (default: 0.0.0.0)
    -p, --port <port>                Use port for clients (default: 4222; -1 picks a free port)
    -n, --name
        --server_name <server_name>  Server name (default: auto)
    -P, --pid <file>                 File to store PID
    -m, --http_port <port>           Use port for http monitoring (-1 picks a free port)
    -ms, --https_port <port>         Use port for https monitoring (with the tls certificate)
        --http <host:port>           Use host and port for http monitoring
    -c, --config <file>              Configuration file
    -t                               Test configuration and exit
    -sl,--signal <signal>[=<pid>]    Send signal to starling-server process (ldm, stop, quit, term, reopen, reload)
                                     <pid> can be either a PID (e.g. 1) or the path to a PID file (e.g. /var/run/starling-server.pid)
        --client_advertise <string>  Client URL to advertise to other servers
        --ports_file_dir <dir>       Creates a ports file in the specified directory (<executable_name>_<pid>.ports).

Logging Options:
    -l, --log <file>                 File to also write log output to
    -T, --logtime                    Timestamp log entries (default: true)
    -D, --debug                      Enable debugging output
    -V, --trace                      Trace the raw protocol
    -VV                              Verbose trace (same as -V)
    -DV                              Debug and trace
    -DVV                             Debug and verbose trace (same as -DV)

JetStream Options:
    -js, --jetstream                 Enable JetStream functionality
    -sd, --store_dir <dir>           Set the storage directory

Authorization Options:
        --user <user>                User required for connections
        --pass <password>            Password required for connections
        --auth <token>               Authorization token required for connections

TLS Options:
        --tls                        Enable TLS, do not verify clients (default: false)
        --tlscert <file>             Server certificate file
        --tlskey <file>              Private key for server certificate
        --tlsverify                  Enable TLS, verify client certificates
        --tlscacert <file>           Client certificate CA for verification

Cluster Options:
        --routes <rurl-1, rurl-2>    Routes to solicit and connect
        --cluster <cluster-url>      Cluster URL for solicited routes (port -1 picks a free port)
        --cluster_name <string>      Cluster Name, if not set one will be dynamically generated
        --no_advertise <bool>        Do not advertise known cluster information to clients
        --cluster_advertise <string> Cluster host[:port] to advertise to other servers
        --connect_retries <number>   For implicit routes, number of connect retries
        --cluster_listen <url>       Cluster url from which members can solicit routes

Common Options:
    -h, --help                       Show this message
        --help_tls                   TLS help
    -v, --version                    Show version

Accepted and ignored for now (with a warning): -s/--syslog,
-r/--remote_syslog, --log_size_limit, --max_traced_msg_len, --profile.
JetStream without a store directory keeps memory streams only (nats-server would use a
temporary directory); -sd/--store_dir without JetStream does nothing, as in nats-server.
";

/// `starling-server --help_tls`: the names `tls { cipher_suites curve_preferences }` take.
pub(crate) const HELP_TLS: &str = "\
TLS Options (rustls with the ring provider; TLS 1.2 and 1.3):

cipher_suites (TLS 1.2; TLS 1.3 suites are always on):
    TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
    TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
    TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
    TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256

curve_preferences:
    X25519
    CurveP256
    CurveP384

Refused (rustls does not implement them): CBC and RSA key-exchange suites, CurveP521.
";

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(args: &[&str]) -> Cli {
        parse(args.iter().copied()).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn err(args: &[&str]) -> String {
        parse(args.iter().copied()).unwrap_err().to_string()
    }

    #[test]
    fn every_go_form_of_a_value_flag() {
        for args in [
            &["-p", "4333"][..],
            &["-p=4333"],
            &["--p", "4333"],
            &["--p=4333"],
            &["-port", "4333"],
            &["-port=4333"],
            &["--port", "4333"],
            &["--port=4333"],
        ] {
            assert_eq!(ok(args).settings.port, Some(4333), "{args:?}");
        }
    }

    #[test]
    fn every_go_form_of_a_bool_flag() {
        for (args, want) in [
            (&["-D"][..], true),
            (&["--D"], true),
            (&["-debug"], true),
            (&["--debug"], true),
            (&["-D=true"], true),
            (&["-D=1"], true),
            (&["-D=T"], true),
            (&["-D=false"], false),
            (&["--debug=False"], false),
            (&["-D=0"], false),
        ] {
            assert_eq!(ok(args).settings.debug, Some(want), "{args:?}");
        }
        assert_eq!(ok(&[]).settings.debug, None);
        assert_eq!(ok(&["-T=false"]).settings.logtime, Some(false));
        assert_eq!(ok(&["--logtime"]).settings.logtime, Some(true));
    }

    #[test]
    fn random_port_and_negative_values() {
        assert_eq!(ok(&["-p", "-1"]).settings.port, Some(-1));
        assert_eq!(ok(&["--port=-1"]).settings.port, Some(-1));
        assert_eq!(ok(&["-p", "0x10"]).settings.port, Some(16));
        assert_eq!(ok(&["-p", "010"]).settings.port, Some(8)); // Go reads a leading 0 as octal
    }

    #[test]
    fn names_and_aliases() {
        let c = ok(&[
            "-a",
            "127.0.0.1",
            "-n",
            "n1",
            "-P",
            "/tmp/p.pid",
            "-l",
            "/tmp/l.log",
            "-c",
            "x.conf",
            "-t",
            "--client_advertise",
            "h:1",
            "--user",
            "u",
            "--pass",
            "p",
            "--auth",
            "tok",
            "--ports_file_dir",
            "/tmp",
        ]);
        let s = &c.settings;
        assert_eq!(s.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(s.config.server_name.as_deref(), Some("n1"));
        assert_eq!(s.pid_file, Some("/tmp/p.pid".into()));
        assert_eq!(s.log_file, Some("/tmp/l.log".into()));
        assert_eq!(s.config.client_advertise.as_deref(), Some("h:1"));
        assert_eq!(
            (s.user.as_deref(), s.password.as_deref()),
            (Some("u"), Some("p"))
        );
        assert_eq!(s.token.as_deref(), Some("tok"));
        assert_eq!(s.ports_file_dir, Some("/tmp".into()));
        assert_eq!(c.config, Some("x.conf".into()));
        assert!(c.test_config);
        assert_eq!(ok(&["--addr", "::1"]).settings.host.as_deref(), Some("::1"));
        assert_eq!(ok(&["--net=h"]).settings.host.as_deref(), Some("h"));
        assert_eq!(
            ok(&["--server_name", "x"])
                .settings
                .config
                .server_name
                .as_deref(),
            Some("x")
        );
        assert_eq!(
            ok(&["--name=y"]).settings.config.server_name.as_deref(),
            Some("y")
        );
    }

    #[test]
    fn store_dir_is_accepted_without_jetstream() {
        for args in [
            &["-sd", "/tmp/js"][..],
            &["-sd=/tmp/js"],
            &["--store_dir", "/tmp/js"],
            &["--store_dir=/tmp/js"],
        ] {
            let c = ok(args);
            assert_eq!(c.settings.store_dir, Some("/tmp/js".into()), "{args:?}");
            assert!(c.warnings.is_empty(), "{args:?}: {:?}", c.warnings);
        }
        assert_eq!(
            err(&["-sd"]),
            "flag needs an argument: -sd",
            "a store_dir flag without its directory is still an error"
        );
    }

    #[test]
    fn debug_and_trace_combinations() {
        let dt = |args: &[&str]| {
            let s = ok(args).settings;
            (s.debug, s.trace)
        };
        assert_eq!(dt(&["-D"]), (Some(true), None));
        assert_eq!(dt(&["-V"]), (None, Some(true)));
        assert_eq!(dt(&["-VV"]), (None, Some(true)));
        assert_eq!(dt(&["-DV"]), (Some(true), Some(true)));
        assert_eq!(dt(&["-DVV"]), (Some(true), Some(true)));
        assert_eq!(dt(&["--trace"]), (None, Some(true)));
        assert_eq!(dt(&["-DV=false"]), (None, None));
        assert_eq!(dt(&["-D", "-V=false"]), (Some(true), Some(false)));
    }

    #[test]
    fn signal_values() {
        assert_eq!(
            ok(&["--signal", "ldm=123"]).signal.as_deref(),
            Some("ldm=123")
        );
        assert_eq!(
            ok(&["--signal=quit=/var/run/x.pid"]).signal.as_deref(),
            Some("quit=/var/run/x.pid")
        );
        assert_eq!(ok(&["-sl", "stop"]).signal.as_deref(), Some("stop"));
    }

    #[test]
    fn help_and_version() {
        assert!(ok(&["-h"]).help);
        assert!(ok(&["--help"]).help);
        assert!(ok(&["help"]).help);
        assert!(ok(&["-v"]).version);
        assert!(ok(&["--version"]).version);
        assert!(ok(&["-p", "1", "version"]).version);
        assert!(ok(&["--help_tls"]).help_tls);
    }

    #[test]
    fn errors_are_worded_as_go_words_them() {
        assert_eq!(err(&["--bogus"]), "flag provided but not defined: -bogus");
        assert_eq!(err(&["-bogus=1"]), "flag provided but not defined: -bogus");
        assert_eq!(err(&["-p"]), "flag needs an argument: -p");
        assert_eq!(
            err(&["-p", "abc"]),
            "invalid value \"abc\" for flag -p: parse error"
        );
        assert_eq!(
            err(&["-p", "99999999999999999999"]),
            "invalid value \"99999999999999999999\" for flag -p: value out of range"
        );
        assert_eq!(
            err(&["-T=maybe"]),
            "invalid boolean value \"maybe\" for -T: parse error"
        );
        assert_eq!(err(&["---p"]), "bad flag syntax: ---p");
        assert_eq!(err(&["-=p"]), "bad flag syntax: -=p");
        assert_eq!(err(&["extra"]), "unrecognized command: \"extra\"");
        // A bool flag does not take the next argument: "false" is left over, as in Go.
        assert_eq!(err(&["-T", "false"]), "unrecognized command: \"false\"");
        assert_eq!(
            err(&["-js=maybe"]),
            "invalid boolean value \"maybe\" for -js: parse error"
        );
    }

    #[test]
    fn jetstream_flags() {
        for args in [
            &["-js"][..],
            &["--js"],
            &["-jetstream"],
            &["--jetstream"],
            &["-js=true"],
            &["--jetstream=1"],
        ] {
            let c = ok(args);
            assert_eq!(c.settings.jetstream, Some(true), "{args:?}");
            assert!(c.warnings.is_empty(), "{args:?}: {:?}", c.warnings);
        }
        // As nats-server: only a true -js overrides the file; -js=false leaves it alone.
        assert_eq!(ok(&["-js=false"]).settings.jetstream, None);
        assert_eq!(ok(&[]).settings.jetstream, None);
        for args in [
            &["-js", "-sd=/tmp/js"][..],
            &["-sd", "/tmp/js", "--jetstream"],
            &["--jetstream", "--store_dir", "/tmp/js"],
            &["--store_dir=/tmp/js", "-js"],
        ] {
            let s = ok(args).settings;
            assert_eq!(s.jetstream, Some(true), "{args:?}");
            assert_eq!(s.store_dir, Some("/tmp/js".into()), "{args:?}");
            let plan = s.jetstream().unwrap();
            assert!(plan.config.is_some() && !plan.no_store_dir, "{args:?}");
            assert_eq!(plan.accounts, ["$G"], "{args:?}");
        }
        // A bool flag: the next argument is not its value.
        assert_eq!(err(&["-js", "true"]), "unrecognized command: \"true\"");
        // An empty -sd does not override the file's store_dir (nats-server's rule).
        assert_eq!(ok(&["-sd="]).settings.store_dir, None);
        // Without a store dir: memory streams only, and a warning.
        let plan = ok(&["-js"]).settings.jetstream().unwrap();
        assert!(plan.config.is_some() && plan.no_store_dir);
        // -sd alone does not turn JetStream on.
        assert!(ok(&["-sd", "/tmp/js"])
            .settings
            .jetstream()
            .unwrap()
            .config
            .is_none());
    }

    #[test]
    fn tls_flags_make_a_block_of_their_own() {
        let cli = ok(&[
            "--tlscert",
            "c.pem",
            "--tlskey=k.pem",
            "--tlsverify",
            "--tlscacert",
            "ca",
        ]);
        let tls = cli.settings.tls.expect("tls from the flags");
        assert!(tls.enabled && tls.from_flags && tls.verify);
        assert_eq!(
            tls.cert_file.as_deref(),
            Some(std::path::Path::new("c.pem"))
        );
        assert_eq!(tls.ca_file.as_deref(), Some(std::path::Path::new("ca")));
        // `--tls=false` turns TLS off, and the --tls* flags after it do nothing.
        let tls = ok(&["--tls=false", "--tlscert", "c.pem"])
            .settings
            .tls
            .unwrap();
        assert!(!tls.enabled);
        assert_eq!(tls.cert_file, None);
        // Missing pieces: nats-server's words.
        let err = ok(&["--tls"])
            .settings
            .tls_config()
            .unwrap_err()
            .to_string();
        assert_eq!(err, "TLS Server certificate must be present and valid");
        let err = ok(&["--tls", "--tlscert", "c"])
            .settings
            .tls_config()
            .unwrap_err()
            .to_string();
        assert_eq!(err, "TLS Server private key must be present and valid");
    }

    #[test]
    fn end_of_flags() {
        // Everything after "--" is positional.
        assert_eq!(err(&["-D", "--", "-p"]), "unrecognized command: \"-p\"");
        assert!(ok(&["--", "version"]).version);
        // A lone "-" is not a flag.
        assert_eq!(err(&["-"]), "unrecognized command: \"-\"");
    }

    #[test]
    fn ignored_flags_warn() {
        let c = ok(&["--profile", "6060", "-p", "1", "--syslog"]);
        assert_eq!(c.settings.port, Some(1));
        assert_eq!(c.warnings.len(), 2);
        assert!(
            c.warnings[0].contains("-profile ignored: profiling"),
            "{:?}",
            c.warnings
        );
        // Their values are still checked.
        assert_eq!(
            err(&["--profile", "x"]),
            "invalid value \"x\" for flag -profile: parse error"
        );
    }

    #[test]
    fn monitoring_flags() {
        let c = ok(&["-m", "8222"]);
        assert_eq!(c.settings.http_port, Some(8222));
        assert!(c.warnings.is_empty());
        assert_eq!(ok(&["--http_port=-1"]).settings.http_port, Some(-1));
        let c = ok(&["--http", "127.0.0.1:8223"]);
        assert_eq!(c.settings.http_host.as_deref(), Some("127.0.0.1"));
        assert_eq!(c.settings.http_port, Some(8223));
        let c = ok(&["--http", "[::1]:8224"]);
        assert_eq!(c.settings.http_host.as_deref(), Some("::1"));
        assert_eq!(ok(&["--http", "8225"]).settings.http_port, Some(8225));
        assert_eq!(
            err(&["-m", "x"]),
            "invalid value \"x\" for flag -m: parse error"
        );
        assert_eq!(
            err(&["--http", "host:x"]),
            "invalid value \"host:x\" for flag -http: parse error"
        );
    }

    #[test]
    fn cluster_flags() {
        let c = ok(&[
            "--cluster",
            "nats://ruser:T0p@127.0.0.1:-1",
            "--routes",
            "nats://10.0.0.1:6222, nats-route://u:p@10.0.0.2:6222",
            "--cluster_name",
            "storage",
            "--cluster_advertise",
            "10.0.0.3:6222",
            "--no_advertise",
            "--connect_retries",
            "3",
        ]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let s = &c.settings;
        assert_eq!(s.cluster_host.as_deref(), Some("127.0.0.1"));
        assert_eq!(s.cluster_port, Some(-1));
        assert_eq!(s.cluster_user.as_deref(), Some("ruser"));
        assert_eq!(s.cluster_password.as_deref(), Some("T0p"));
        assert_eq!(
            s.routes.as_deref(),
            Some(
                &[
                    "nats://10.0.0.1:6222".into(),
                    "nats-route://u:p@10.0.0.2:6222".into()
                ][..]
            )
        );
        assert_eq!(s.cluster_name.as_deref(), Some("storage"));
        assert_eq!(s.cluster_advertise.as_deref(), Some("10.0.0.3:6222"));
        assert_eq!(s.no_advertise, Some(true));
        assert_eq!(s.connect_retries, Some(3));

        // --cluster_listen is an alias; no credentials in the URL clears the file's.
        let s = ok(&["--cluster_listen=nats://0.0.0.0:6222"]).settings;
        assert_eq!(
            (s.cluster_host.as_deref(), s.cluster_port),
            (Some("0.0.0.0"), Some(6222))
        );
        assert_eq!(s.cluster_user.as_deref(), Some(""));
        // An empty --cluster turns clustering off; an empty --routes clears the file's.
        assert_eq!(ok(&["--cluster", ""]).settings.cluster_port, Some(0));
        assert_eq!(ok(&["--routes", ""]).settings.routes, Some(vec![]));
        assert_eq!(
            ok(&["--no_advertise=false"]).settings.no_advertise,
            Some(false)
        );
    }

    #[test]
    fn cluster_flag_errors() {
        assert_eq!(
            err(&["--cluster", "nats://u@h:1"]),
            "invalid value \"nats://u@h:1\" for flag -cluster: expected cluster password to be set"
        );
        assert_eq!(
            err(&["--cluster", "bogus"]),
            "invalid value \"bogus\" for flag -cluster: missing port in address"
        );
        // The password never shows in a message.
        assert_eq!(
            err(&["--cluster", "nats://u:secret@h:x"]),
            "invalid value \"nats://u:xxxxx@h:x\" for flag -cluster: invalid port \":x\" after host"
        );
        assert_eq!(
            err(&["--connect_retries", "-1"]),
            "invalid value \"-1\" for flag -connect_retries: value out of range"
        );
        assert_eq!(
            err(&["--connect_retries", "x"]),
            "invalid value \"x\" for flag -connect_retries: parse error"
        );
        // A bool flag: the next argument is not its value (as in Go).
        assert_eq!(
            err(&["--no_advertise", "true"]),
            "unrecognized command: \"true\""
        );
    }

    #[test]
    fn value_taken_verbatim_even_if_it_looks_like_a_flag() {
        assert_eq!(
            ok(&["-n", "-D"]).settings.config.server_name.as_deref(),
            Some("-D")
        );
        assert_eq!(
            ok(&["--pass", "--x=y"]).settings.password.as_deref(),
            Some("--x=y")
        );
        assert_eq!(
            ok(&["-n="]).settings.config.server_name.as_deref(),
            Some("")
        );
        assert_eq!(
            ok(&["--pass=a=b"]).settings.password.as_deref(),
            Some("a=b")
        );
    }

    #[test]
    fn later_flags_win() {
        assert_eq!(ok(&["-p", "1", "--port=2"]).settings.port, Some(2));
    }

    #[test]
    fn go_ints() {
        assert_eq!(parse_int("42"), Ok(42));
        assert_eq!(parse_int("-42"), Ok(-42));
        assert_eq!(parse_int("+7"), Ok(7));
        assert_eq!(parse_int("0"), Ok(0));
        assert_eq!(parse_int("0b101"), Ok(5));
        assert_eq!(parse_int("0o17"), Ok(15));
        assert_eq!(parse_int("0x_ff"), Ok(255));
        assert_eq!(parse_int("-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(parse_int("9223372036854775808"), Err("value out of range"));
        for bad in ["", "-", "x", "1x", "08", "0x", " 1", "1 "] {
            assert_eq!(parse_int(bad), Err("parse error"), "{bad:?}");
        }
    }

    #[test]
    fn usage_lists_jetstream_as_nats_server_does() {
        assert!(USAGE.contains(
            "JetStream Options:\n    -js, --jetstream                 Enable JetStream functionality\n    -sd, --store_dir <dir>           Set the storage directory\n"
        ));
        assert!(!USAGE.contains("Not supported yet"));
    }

    #[test]
    fn usage_mentions_every_supported_flag() {
        for (names, _, flag) in FLAGS {
            if matches!(flag, Flag::Ignored(_) | Flag::HelpTls) {
                continue;
            }
            for n in *names {
                let dashed = if n.len() <= 3 && *n != "pid" && *n != "net" {
                    format!("-{n}")
                } else {
                    format!("--{n}")
                };
                assert!(USAGE.contains(&dashed), "usage lacks {dashed}");
            }
        }
    }
}
