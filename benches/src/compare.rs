//! Side by side: start Starling and nats-server as child processes on free ports, run each
//! scenario against both, alternately, for several rounds, and report medians and ratios.

use std::cell::Cell;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::conn::connect;
use crate::error::{BenchError, Result};
use crate::js::JsServer;
use crate::report::{self, RunResult};
use crate::scenario::Topology;
use crate::scenario::{self, Config, Scenario};
use crate::tls::TlsFiles;

/// How long a freshly started server may take to answer a PING.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// What `compare` runs.
#[derive(Debug, Clone)]
pub struct CompareConfig {
    /// Scenario parameters (url and pids are filled in per server).
    pub base: Config,
    /// Scenarios to run, in order.
    pub scenarios: Vec<Scenario>,
    /// Rounds per scenario; each round runs every server once.
    pub rounds: usize,
    /// The Starling binary (nats-server flags).
    pub starling_bin: PathBuf,
    /// The reference nats-server binary.
    pub nats_bin: PathBuf,
    /// Run every server with its clients in this named account (a config file with the
    /// account and `no_auth_user`), instead of the global account.
    pub account: Option<String>,
    /// Compare Starling in [`Self::account`] with Starling in the global account, instead of
    /// Starling with nats-server.
    pub versus_global: bool,
    /// Give the clients' user publish and subscribe permissions that every message is
    /// checked against (see [`crate::accounts::PERMISSIONS`]).
    pub permissions: bool,
    /// Compare Starling with [`Self::permissions`] against Starling without them, instead of
    /// Starling with nats-server.
    pub versus_unrestricted: bool,
    /// Run every server with TLS on its client listener (a certificate generated for the
    /// run) and connect every client with TLS; cluster routes stay plaintext.
    pub tls: bool,
    /// Compare Starling with TLS against Starling without, instead of Starling with
    /// nats-server.
    pub versus_plaintext: bool,
    /// Every server gets a WebSocket listener (`websocket { port no_tls }`) and every client
    /// connects over WebSocket (`ws://`).
    pub ws: bool,
}

/// One side of a comparison: a label, a binary, and the config file it runs with.
#[derive(Debug, Clone)]
pub struct Contender {
    /// How reports name it.
    pub label: String,
    /// The server binary (nats-server flags).
    pub bin: PathBuf,
    /// The text of the `-c` config file, if any.
    pub config: Option<String>,
    /// Its client listener uses TLS, and so do the clients.
    pub tls: bool,
    /// Runs JetStream (in a fresh store directory per process).
    pub jetstream: Option<JsServer>,
    /// Its clients connect over WebSocket.
    pub ws: bool,
}

impl CompareConfig {
    /// Defaults: 3 rounds; Starling next to this executable (else
    /// `target/release/starling-server`); `nats-server` on PATH.
    pub fn new(base: Config, scenarios: Vec<Scenario>) -> Self {
        let beside = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("starling-server")))
            .filter(|p| p.is_file());
        Self {
            base,
            scenarios,
            rounds: 3,
            starling_bin: beside.unwrap_or_else(|| "target/release/starling-server".into()),
            nats_bin: "nats-server".into(),
            account: None,
            versus_global: false,
            permissions: false,
            versus_unrestricted: false,
            tls: false,
            versus_plaintext: false,
            ws: false,
        }
    }

    /// The two sides for `scenario`: Starling and nats-server, or (`versus_global`) Starling
    /// in the named account and Starling in the global account, or (`versus_unrestricted`)
    /// Starling with and without permissions, or (`versus_plaintext`) Starling with and
    /// without TLS.
    pub fn contenders(&self, scenario: Scenario, base: &Config) -> [Contender; 2] {
        let users = |permissions: bool| {
            crate::accounts::clients_config(self.account.as_deref(), permissions)
        };
        let config = scenario
            .server_config(base)
            .or(users(self.permissions || self.versus_unrestricted));
        let tls = self.tls || self.versus_plaintext;
        let side = |label: &str, bin: &PathBuf, config: Option<String>| Contender {
            label: label.into(),
            bin: bin.clone(),
            config,
            tls,
            jetstream: scenario.jetstream(),
            ws: self.ws,
        };
        if self.versus_plaintext {
            [
                side("starling-tls", &self.starling_bin, config.clone()),
                Contender {
                    tls: false,
                    ..side("starling-plain", &self.starling_bin, config)
                },
            ]
        } else if self.versus_unrestricted {
            let unrestricted = scenario.server_config(base).or(users(false));
            [
                side("starling-perms", &self.starling_bin, config),
                side("starling-open", &self.starling_bin, unrestricted),
            ]
        } else if self.versus_global {
            let name = self.account.as_deref().unwrap_or("A");
            [
                side(&format!("starling-{name}"), &self.starling_bin, config),
                side(
                    "starling-$G",
                    &self.starling_bin,
                    scenario.server_config(base),
                ),
            ]
        } else {
            [
                side("starling", &self.starling_bin, config.clone()),
                side("nats-server", &self.nats_bin, config),
            ]
        }
    }
}

/// A server child process; killed when dropped (also when a run fails or panics).
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// Its client URL.
    pub url: String,
    /// Its pid.
    pub pid: u32,
    /// Where its stdout and stderr go; removed on drop unless [`Self::keep_log`] was called.
    pub log: PathBuf,
    keep_log: Cell<bool>,
    /// Its config file, removed on drop.
    config: Option<PathBuf>,
    /// Its JetStream store directory, removed on drop.
    store_dir: Option<PathBuf>,
}

impl ServerProcess {
    /// Keeps the log file after the process is gone (a run against it failed).
    pub fn keep_log(&self) {
        self.keep_log.set(true);
    }
}

impl Contender {
    /// Starts this side as `topology` says; `tls` holds the certificate files when this side
    /// uses TLS.
    pub fn start(&self, topology: Topology, tls: Option<&TlsFiles>) -> Result<Deployment> {
        Deployment::start_with(
            &self.bin,
            topology,
            self.config.as_deref(),
            tls.filter(|_| self.tls),
            self.jetstream,
            self.ws,
        )
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.keep_log.get() {
            let _ = std::fs::remove_file(&self.log);
        }
        if let Some(c) = &self.config {
            let _ = std::fs::remove_file(c);
        }
        if let Some(d) = &self.store_dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released for the server to take).
pub fn free_port() -> Result<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| BenchError::io("finding a free port", e))
}

/// Starts `bin` with nats-server flags on `port` (plus `extra` flags, and `--tls --tlscert
/// --tlskey` with `tls`'s files) and waits until it answers a PING (over TLS with `tls`).
pub fn start_server(
    bin: &PathBuf,
    port: u16,
    extra: &[String],
    config: Option<&str>,
    tls: Option<&TlsFiles>,
) -> Result<ServerProcess> {
    start_server_with(bin, port, extra, config, tls, None, false)
}

/// [`start_server`], with JetStream when `js` is given: a fresh store directory (removed
/// with the process) given by `-js -sd DIR`, or by a `jetstream {}` block appended to the
/// config file for `sync_interval: always`.
pub fn start_server_with(
    bin: &PathBuf,
    port: u16,
    extra: &[String],
    config: Option<&str>,
    tls: Option<&TlsFiles>,
    js: Option<JsServer>,
    ws: bool,
) -> Result<ServerProcess> {
    let name = bin.file_name().unwrap_or_default().to_string_lossy();
    let mut extra = extra.to_vec();
    let mut config = config.map(str::to_string);
    // With `ws`, clients come in on a WebSocket listener of its own.
    let ws_port = if ws { Some(free_port()?) } else { None };
    if let Some(p) = ws_port {
        config = Some(format!(
            "{}\nwebsocket {{\n  port: {p}\n  no_tls: true\n}}\n",
            config.unwrap_or_default()
        ));
    }
    let store_dir = match js {
        Some(mode) => {
            let dir = std::env::temp_dir().join(format!(
                "starling-bench-{}-{name}-{port}.js",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)
                .map_err(|e| BenchError::io(format!("creating {}", dir.display()), e))?;
            let text = dir.display().to_string();
            extra.extend(mode.flags(&text));
            if let Some(block) = mode.config_block(&text) {
                config = Some(format!("{}\n{block}", config.unwrap_or_default()));
            }
            Some(dir)
        }
        None => None,
    };
    // Removes the store directory if the server never gets going.
    let cleanup = |e: BenchError| {
        if let Some(d) = &store_dir {
            let _ = std::fs::remove_dir_all(d);
        }
        e
    };
    let config_file = match config.as_deref() {
        Some(text) => {
            let path = std::env::temp_dir().join(format!(
                "starling-bench-{}-{name}-{port}.conf",
                std::process::id()
            ));
            std::fs::write(&path, text)
                .map_err(|e| cleanup(BenchError::io(format!("writing {}", path.display()), e)))?;
            Some(path)
        }
        None => None,
    };
    if let Some(t) = tls {
        extra.extend(t.server_flags());
    }
    if let Some(path) = &config_file {
        extra.extend(["-c".to_string(), path.display().to_string()]);
    }
    let log = std::env::temp_dir().join(format!(
        "starling-bench-{}-{name}-{port}.log",
        std::process::id()
    ));
    let file = std::fs::File::create(&log)
        .map_err(|e| BenchError::io(format!("creating {}", log.display()), e))?;
    let file2 = file
        .try_clone()
        .map_err(|e| BenchError::io("cloning a log file handle", e))?;
    let mut cmd = Command::new(bin);
    // SAFETY: prctl is async-signal-safe and touches nothing of the parent's state.
    unsafe {
        cmd.pre_exec(|| {
            // If the bench dies without unwinding (SIGKILL), the server goes with it.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .args(&extra)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(file2)
        .spawn()
        .map_err(|e| {
            if let Some(c) = &config_file {
                let _ = std::fs::remove_file(c);
            }
            cleanup(BenchError::io(format!("starting {}", bin.display()), e))
        })?;
    let mut proc = ServerProcess {
        pid: child.id(),
        child,
        url: match ws_port {
            Some(p) => format!("ws://127.0.0.1:{p}"),
            None => format!(
                "{}://127.0.0.1:{port}",
                if tls.is_some() { "tls" } else { "nats" }
            ),
        },
        log,
        keep_log: Cell::new(false),
        config: config_file,
        store_dir,
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = proc.child.try_wait() {
            return Err(BenchError::Protocol(format!(
                "{} {} exited during start-up ({status})",
                bin.display(),
                extra.join(" ")
            )));
        }
        match connect(&proc.url, Duration::from_secs(2)) {
            Ok(_) => return Ok(proc),
            Err(e) if Instant::now() >= deadline => {
                return Err(BenchError::Timeout(format!(
                    "{} not ready on port {port}: {e}",
                    bin.display()
                )))
            }
            // Not listening yet: try again shortly.
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// One server, a two-node cluster for `route`, or a hub and its leaf for `leaf`.
#[derive(Debug)]
pub struct Deployment {
    /// The server publishers (and everyone else) connect to.
    pub a: ServerProcess,
    /// The second cluster node (`route`), or the leaf (`leaf`).
    pub b: Option<ServerProcess>,
}

impl Deployment {
    /// Starts `bin` (with `config`) as `topology` says; with `tls`, client listeners use TLS
    /// (routes and leaf connections stay plaintext).
    pub fn start(
        bin: &PathBuf,
        topology: Topology,
        config: Option<&str>,
        tls: Option<&TlsFiles>,
    ) -> Result<Self> {
        Self::start_with(bin, topology, config, tls, None, false)
    }

    /// [`Self::start`], with JetStream on every node when `js` is given (each with its own
    /// fresh store directory).
    pub fn start_with(
        bin: &PathBuf,
        topology: Topology,
        config: Option<&str>,
        tls: Option<&TlsFiles>,
        js: Option<JsServer>,
        ws: bool,
    ) -> Result<Self> {
        match topology {
            Topology::Single => Ok(Self {
                a: start_server_with(bin, free_port()?, &[], config, tls, js, ws)?,
                b: None,
            }),
            Topology::Cluster => {
                let (ca, cb) = (free_port()?, free_port()?);
                let flags = |own: u16, other: u16| -> Vec<String> {
                    vec![
                        "--cluster".into(),
                        format!("nats://127.0.0.1:{own}"),
                        "--routes".into(),
                        format!("nats://127.0.0.1:{other}"),
                        "--cluster_name".into(),
                        "bench".into(),
                    ]
                };
                let a = start_server_with(bin, free_port()?, &flags(ca, cb), config, tls, js, ws)?;
                let b = start_server_with(bin, free_port()?, &flags(cb, ca), config, tls, js, ws)?;
                Ok(Self { a, b: Some(b) })
            }
            Topology::Leaf => {
                // nats-server has no leafnode flags: both sides get a config block.
                let port = free_port()?;
                let with = |block: String| format!("{}\n{block}\n", config.unwrap_or_default());
                let hub = with(format!("leafnodes {{ listen: \"127.0.0.1:{port}\" }}"));
                let leaf = with(format!(
                    "leafnodes {{ remotes: [ {{ url: \"nats-leaf://127.0.0.1:{port}\" }} ] }}"
                ));
                let a = start_server_with(bin, free_port()?, &[], Some(&hub), tls, js, ws)?;
                let b = start_server_with(bin, free_port()?, &[], Some(&leaf), tls, js, ws)?;
                Ok(Self { a, b: Some(b) })
            }
        }
    }

    /// Where the servers' logs are.
    pub fn logs(&self) -> String {
        self.a.keep_log();
        self.b.iter().for_each(ServerProcess::keep_log);
        let mut s = self.a.log.display().to_string();
        if let Some(b) = &self.b {
            s = format!("{s}, {}", b.log.display());
        }
        s
    }

    /// `base` pointed at this deployment.
    pub fn config(&self, base: &Config, label: &str) -> Config {
        Config {
            url: self.a.url.clone(),
            pid: Some(self.a.pid),
            url2: self.b.as_ref().map(|b| b.url.clone()),
            pid2: self.b.as_ref().map(|b| b.pid),
            label: Some(label.into()),
            ..base.clone()
        }
    }
}

/// Every round's result of one scenario, per server.
#[derive(Debug, Clone)]
pub struct ScenarioRuns {
    /// The scenario.
    pub scenario: Scenario,
    /// Its parameters, for JetStream scenarios ([`Scenario::detail`]; empty otherwise).
    pub detail: String,
    /// The two sides' labels (`starling`, `nats-server` unless comparing accounts).
    pub labels: [String; 2],
    /// Whether each side's clients used TLS.
    pub tls: [bool; 2],
    /// The first side's (Starling's) results, one per round.
    pub starling: Vec<RunResult>,
    /// The second side's (nats-server's) results, one per round.
    pub nats: Vec<RunResult>,
}

/// Runs every scenario of `cfg` against both servers; `progress` gets a line per run.
pub fn run(cfg: &CompareConfig, mut progress: impl FnMut(String)) -> Result<Vec<ScenarioRuns>> {
    // One certificate for every server of the run; the files go when the run ends.
    let tls_files = if cfg.tls || cfg.versus_plaintext {
        Some(TlsFiles::generate()?)
    } else {
        None
    };
    let tls = tls_files.as_ref();
    if cfg.account.is_some() && cfg.scenarios.iter().any(|s| s.jetstream().is_some()) {
        return Err(BenchError::Usage(
            "the JetStream scenarios run in the global account: drop --account".into(),
        ));
    }
    let mut out = Vec::new();
    for &scenario in &cfg.scenarios {
        let base = Config {
            scenario,
            ..cfg.base.clone()
        };
        let cluster = scenario.topology();
        let sides = cfg.contenders(scenario, &base);
        // Memory scenarios: every round gets fresh processes.
        let fresh = scenario.measures_memory();
        let mut deployments: Vec<Option<Deployment>> = Vec::new();
        if !fresh {
            for side in &sides {
                deployments.push(Some(side.start(cluster, tls)?));
            }
        } else {
            deployments.extend([None, None]);
        }
        let mut runs = ScenarioRuns {
            scenario,
            detail: scenario.detail(&base),
            labels: sides.clone().map(|s| s.label),
            tls: sides.clone().map(|s| s.tls),
            starling: Vec::new(),
            nats: Vec::new(),
        };
        for round in 0..cfg.rounds {
            // Alternate who goes first, so drift on a shared machine hits both alike.
            let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let side = &sides[i];
                let label = side.label.as_str();
                let fresh_one;
                let d = if fresh {
                    fresh_one = side.start(cluster, tls)?;
                    &fresh_one
                } else {
                    deployments[i].as_ref().expect("started")
                };
                let r = scenario::run(&d.config(&base, label))
                    .map_err(|e| annotate(e, scenario, label, d))?;
                let (rate_name, cpu_name) = figure_names(scenario);
                let cpu_name = cpu_name.trim_start_matches("server ");
                progress(format!(
                    "[{scenario} {}/{}] {label:<14} {:>9} {rate_name}  {cpu_name} {:>8}{}",
                    round + 1,
                    cfg.rounds,
                    report::rate(r.msgs_per_sec()),
                    r.cpu_ns_per_msg().map_or("-".into(), report::nanos),
                    extra_progress(&r),
                ));
                if i == 0 {
                    runs.starling.push(r);
                } else {
                    runs.nats.push(r);
                }
            }
        }
        drop(deployments);
        out.push(runs);
    }
    Ok(out)
}

fn annotate(e: BenchError, scenario: Scenario, label: &str, d: &Deployment) -> BenchError {
    let at = format!("{scenario} on {label} (server log kept: {})", d.logs());
    match e {
        BenchError::Sequence(m) => BenchError::Sequence(format!("{at}: {m}")),
        other => other.context(&at),
    }
}

fn extra_progress(r: &RunResult) -> String {
    let mut s = String::new();
    if let Some(v) = r.rss_per_account {
        s.push_str(&format!("  rss/account {}", report::bytes(v)));
    }
    if let Some(v) = r.rss_per_sub {
        s.push_str(&format!("  rss/sub {}", report::bytes(v)));
    }
    if let Some(l) = r.latency {
        s.push_str(&format!(
            "  p50 {}  p99 {}",
            report::nanos(l.p50),
            report::nanos(l.p99)
        ));
    }
    s
}

/// The median of the values present.
pub fn median(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().flatten().collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Medians of one server's rounds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Medians {
    /// Delivered messages per second.
    pub msgs_per_sec: Option<f64>,
    /// Server CPU ns per delivered message.
    pub cpu_ns_per_msg: Option<f64>,
    /// Server RSS bytes per subscription.
    pub rss_per_sub: Option<f64>,
    /// Server RSS bytes per account.
    pub rss_per_account: Option<f64>,
    /// Request/reply median latency, ns.
    pub p50: Option<f64>,
    /// Request/reply 90th percentile, ns.
    pub p90: Option<f64>,
    /// Request/reply 99th percentile, ns.
    pub p99: Option<f64>,
    /// Request/reply 99.9th percentile, ns.
    pub p999: Option<f64>,
}

impl Medians {
    /// Medians over `runs`.
    pub fn of(runs: &[RunResult]) -> Self {
        let m = |f: &dyn Fn(&RunResult) -> Option<f64>| median(runs.iter().map(f));
        Self {
            msgs_per_sec: m(&|r| Some(r.msgs_per_sec())),
            cpu_ns_per_msg: m(&|r| r.cpu_ns_per_msg()),
            rss_per_sub: m(&|r| r.rss_per_sub),
            rss_per_account: m(&|r| r.rss_per_account),
            p50: m(&|r| r.latency.map(|l| l.p50)),
            p90: m(&|r| r.latency.map(|l| l.p90)),
            p99: m(&|r| r.latency.map(|l| l.p99)),
            p999: m(&|r| r.latency.map(|l| l.p999)),
        }
    }
}

/// The names of a scenario's two main figures: what it counts per second, and server CPU per
/// one of those.
fn figure_names(scenario: Scenario) -> (&'static str, &'static str) {
    match scenario {
        Scenario::Subs | Scenario::Accounts => ("subs/s", "server cpu/sub"),
        Scenario::ReqRep => ("requests/s", "server cpu/request"),
        Scenario::Handshake => ("connects/s", "server cpu/connect"),
        Scenario::JsPub | Scenario::JsPubSync => ("acked pubs/s", "server cpu/pub"),
        Scenario::KvPut => ("puts/s", "server cpu/put"),
        Scenario::KvGet => ("gets/s", "server cpu/get"),
        _ => ("msgs/s", "server cpu/msg"),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    }
}

/// The comparison table: per scenario and figure, both medians and their ratio (first side /
/// second side: Starling / nats-server unless comparing accounts).
pub fn table(runs: &[ScenarioRuns]) -> String {
    let labels = runs.first().map_or_else(
        || ["starling".to_string(), "nats-server".to_string()],
        |r| r.labels.clone(),
    );
    let mut rows = vec![vec![
        "scenario".to_string(),
        "figure (median)".to_string(),
        labels[0].clone(),
        labels[1].clone(),
        if labels[1] == "nats-server" {
            "ratio S/N".to_string()
        } else {
            "ratio".to_string()
        },
    ]];
    let dash = || "-".to_string();
    for r in runs {
        let (s, n) = (Medians::of(&r.starling), Medians::of(&r.nats));
        type Fig = (&'static str, fn(&Medians) -> Option<f64>, fn(f64) -> String);
        let (rate_name, cpu_name) = figure_names(r.scenario);
        let mut figs: Vec<Fig> = vec![
            (rate_name, |m| m.msgs_per_sec, report::rate),
            (cpu_name, |m| m.cpu_ns_per_msg, report::nanos),
        ];
        if r.scenario.measures_memory() {
            if r.scenario == Scenario::Accounts {
                figs.push(("rss/account", |m| m.rss_per_account, report::bytes));
            }
            figs.push(("rss/sub", |m| m.rss_per_sub, report::bytes));
        }
        if r.scenario == Scenario::ReqRep {
            figs.push(("p50 latency", |m| m.p50, report::nanos));
            figs.push(("p99 latency", |m| m.p99, report::nanos));
        }
        for (i, (name, get, fmt)) in figs.into_iter().enumerate() {
            let (a, b) = (get(&s), get(&n));
            rows.push(vec![
                match i {
                    0 => r.scenario.name().into(),
                    1 if !r.detail.is_empty() => format!("  ({})", r.detail),
                    _ => String::new(),
                },
                name.into(),
                a.map_or_else(dash, fmt),
                b.map_or_else(dash, fmt),
                ratio(a, b),
            ]);
        }
    }
    report::table(&rows)
}

/// One JSON object per scenario and server with the medians.
pub fn json_lines(runs: &[ScenarioRuns]) -> Vec<Value> {
    let mut out = Vec::new();
    for r in runs {
        let sides = [
            (&r.labels[0], r.tls[0], &r.starling),
            (&r.labels[1], r.tls[1], &r.nats),
        ];
        for (label, tls, rs) in sides {
            let m = Medians::of(rs);
            out.push(json!({
                "scenario": r.scenario.name(),
                "detail": r.detail,
                "server": label,
                "tls": tls,
                "rounds": rs.len(),
                "size": rs.first().map(|x| x.size),
                "msgs_per_sec": m.msgs_per_sec,
                "cpu_ns_per_msg": m.cpu_ns_per_msg,
                "rss_per_sub": m.rss_per_sub,
                "rss_per_account": m.rss_per_account,
                "p50_ns": m.p50,
                "p90_ns": m.p90,
                "p99_ns": m.p99,
                "p999_ns": m.p999,
            }));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median([Some(3.0), None, Some(1.0), Some(2.0)]), Some(2.0));
        assert_eq!(median([Some(4.0), Some(1.0)]), Some(2.5));
        assert_eq!(median([None]), None);
    }
}
