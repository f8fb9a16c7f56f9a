//! `starling-server`: the Starling broker as a program, taking nats-server's command-line flags
//! and configuration file so that scripts and client libraries' test suites can run it in place
//! of nats-server.
//!
//! ```text
//! starling-server -p 4222                 # listen on 0.0.0.0:4222
//! starling-server -a 127.0.0.1 -p -1 -DV  # any free port, debug and trace logging
//! starling-server -c server.conf -t       # check a config file
//! starling-server -js -sd /var/lib/nats   # JetStream, streams under /var/lib/nats/jetstream
//! starling-server -p -1 --cluster nats://127.0.0.1:6222 --routes nats://10.0.0.1:6222
//! starling-server --signal ldm=4242       # lame duck the broker with PID 4242
//! ```
//!
//! # Layout
//! - `flags`: the command line, parsed as Go's `flag` package does; the help text.
//! - `conf`: the nats-server configuration file syntax.
//! - `settings`: what the file and the flags mean, written straight into the server's `Config`
//!   (flags applied after the file, so they win); the server builder;
//!   JetStream (`-js`, `jetstream {}`) as the `starling-jetstream` extension.
//! - `cluster`: the cluster and route URLs of `--cluster`, `--routes` and `cluster {}`.
//! - `logging`: the `tracing` subscriber that prints nats-server's log lines.
//! - `signal`: the signals the broker traps, and `--signal` to send one.

mod cluster;
mod conf;
mod flags;
mod logging;
mod settings;
mod signal;

use std::future::Future;
use std::io::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use starling_server::{ServerBuilder, StartError, NATS_VERSION};
use thiserror::Error;
use tracing::{error, info, warn};

use crate::flags::FlagError;
use crate::logging::{Log, LogConfig};
use crate::settings::{ConfigError, Settings, SettingsError};
use crate::signal::{SignalError, Signals, Trapped};

/// This binary's version (the workspace's).
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why the binary exits with status 1.
#[derive(Debug, Error)]
enum CliError {
    /// A bad command line.
    #[error(transparent)]
    Flag(#[from] FlagError),
    /// A bad configuration file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Settings that cannot start a server.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// `--signal` failed.
    #[error(transparent)]
    Signal(#[from] SignalError),
    /// `-t` without `-c`.
    #[error("must specify [-c, --config] option to check configuration file syntax")]
    TestWithoutConfig,
    /// The broker did not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// A file or the runtime could not be set up.
    #[error("{0}")]
    Io(String),
}

fn main() -> ExitCode {
    let mut argv = std::env::args_os().map(|a| a.to_string_lossy().into_owned());
    let program = argv.next().unwrap_or_else(|| "starling-server".into());
    match run(&program, argv.collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Flag(e)) => {
            // As nats-server: the flag package's message on stderr, then the usage.
            eprintln!("{e}");
            print!("\n{}", flags::USAGE);
            let _ = std::io::stdout().flush();
            ExitCode::FAILURE
        }
        Err(e) => {
            if tracing::dispatcher::has_been_set() {
                error!(fatal = true, "{e}");
            } else {
                eprintln!("starling-server: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(program: &str, args: Vec<String>) -> Result<(), CliError> {
    let cli = flags::parse(args)?;
    if cli.help {
        print!("\n{}", flags::USAGE);
        return Ok(());
    }
    if cli.help_tls {
        print!("{}", flags::HELP_TLS);
        return Ok(());
    }
    if cli.version {
        println!("starling-server: v{VERSION} (nats {NATS_VERSION})");
        return Ok(());
    }
    if let Some(arg) = &cli.signal {
        let (command, target) = signal::parse(arg, cli.settings.pid_file.as_deref())?;
        let pid = signal::resolve(&target)?;
        signal::send(command, pid)?;
        return Ok(());
    }

    let (file_settings, mut warnings) = match &cli.config {
        Some(path) => {
            let loaded = settings::load_config(path)?;
            (loaded.settings, loaded.warnings)
        }
        None => (Settings::default(), Vec::new()),
    };
    let settings = cli.over(file_settings)?;
    warnings.extend(cli.warnings.iter().cloned());
    if cli.test_config {
        let path = cli.config.ok_or(CliError::TestWithoutConfig)?;
        settings.validate()?;
        let js = settings.jetstream()?;
        warnings.extend(js.warnings);
        if js.no_store_dir {
            warnings.push(settings::NO_STORE_DIR.into());
        }
        for w in &warnings {
            eprintln!("starling-server: warning: {w}");
        }
        eprintln!(
            "starling-server: configuration file {} is valid",
            path.display()
        );
        return Ok(());
    }
    let builder = settings.builder()?;
    warnings.extend(settings.jetstream()?.warnings);

    let log = logging::init(&settings.log_config()).map_err(|e| CliError::Io(e.to_string()))?;
    for w in &warnings {
        warn!("{w}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("starling")
        .build()
        .map_err(|e| CliError::Io(format!("cannot start the runtime: {e}")))?;
    // SIGHUP: the file read again, the flags over it again, as nats-server reloads.
    let config_path = cli.config.clone();
    let jetstream_at_start = format!("{:?}", settings.jetstream()?.config);
    let reread = move || -> Result<(starling_server::Config, LogConfig), CliError> {
        let file = match &config_path {
            Some(path) => settings::load_config(path)?.settings,
            None => Settings::default(),
        };
        let settings = cli.over(file)?;
        settings.validate()?;
        let jetstream = format!("{:?}", settings.jetstream()?.config);
        if jetstream != jetstream_at_start {
            return Err(CliError::Io(
                "config reload not supported for jetstream: restart the server to change it".into(),
            ));
        }
        Ok((settings.server_config()?, settings.log_config()))
    };
    let result = runtime.block_on(serve(builder, &settings, program, log, reread));
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// Runs the broker until SIGINT/SIGTERM, or the end of lame-duck mode.
async fn serve(
    builder: ServerBuilder,
    settings: &Settings,
    program: &str,
    log: Log,
    reread: impl Fn() -> Result<(starling_server::Config, LogConfig), CliError>,
) -> Result<(), CliError> {
    // Before the server starts: a signal sent as soon as it is ready must find a handler.
    let mut signals =
        Signals::new().map_err(|e| CliError::Io(format!("cannot install signal handlers: {e}")))?;
    info!("Starting nats-server");
    info!("  Version:  {NATS_VERSION}");
    info!("  Starling: {VERSION}");
    if let Some(name) = &settings.config.server_name {
        info!("  Name:     {name}");
    }
    let _pid_file = settings
        .pid_file
        .as_deref()
        .map(RemoveOnDrop::pid_file)
        .transpose()?;
    // The ports file must exist before "Server is ready" is logged (scripts read it then), so
    // with one the listener is bound here and handed to the builder.
    let (builder, _ports_file) = match &settings.ports_file_dir {
        Some(dir) => {
            let addr = settings.listen_addr()?;
            let listener = std::net::TcpListener::bind(&addr)
                .map_err(|e| CliError::Io(format!("Error listening on port: {addr}, \"{e}\"")))?;
            let bound = listener
                .local_addr()
                .map_err(|e| CliError::Io(format!("Error listening on port: {addr}, \"{e}\"")))?;
            let file = RemoveOnDrop::ports_file(dir, program, bound)?;
            (builder.listener(listener), Some(file))
        }
        None => (builder, None),
    };
    let server = builder.start().await?;

    let mut lame_duck: Option<Pin<Box<dyn Future<Output = ()> + Send>>> = None;
    loop {
        let lame_duck_done = async {
            match lame_duck.as_mut() {
                Some(f) => f.await,
                None => std::future::pending().await,
            }
        };
        let trapped = tokio::select! {
            t = signals.recv() => t,
            () = lame_duck_done => break,
        };
        info!("Trapped \"{}\" signal", trapped.name());
        match trapped {
            Trapped::Interrupt | Trapped::Terminate => {
                info!("Initiating Shutdown...");
                server.shutdown().await;
                break;
            }
            Trapped::LameDuck => {
                if lame_duck.is_none() {
                    let server = server.clone();
                    lame_duck = Some(Box::pin(async move { server.lame_duck().await }));
                }
            }
            Trapped::Reload => {
                // The server's options first: if it refuses them, nothing changes.
                let reloaded = match reread() {
                    Ok((config, log_config)) => match server.reload(config).await {
                        Ok(_) => log.reload(&log_config).map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    },
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = reloaded {
                    error!("Failed to reload server configuration: {e}");
                }
            }
            Trapped::Reopen => match log.reopen() {
                Ok(true) => info!("Reopened log file"),
                Ok(false) => info!("No log file to reopen"),
                Err(e) => error!("{e}"),
            },
        }
    }
    Ok(())
}

/// A file the broker writes at start and removes at exit (the PID file, the ports file).
struct RemoveOnDrop(PathBuf);

impl RemoveOnDrop {
    /// Writes this process's PID to `path` (`-P`).
    fn pid_file(path: &Path) -> Result<Self, CliError> {
        std::fs::write(path, std::process::id().to_string())
            .map_err(|e| CliError::Io(format!("could not write pidfile: {e}")))?;
        Ok(Self(path.to_path_buf()))
    }

    /// Writes `<dir>/<program>_<pid>.ports` (`--ports_file_dir`), as nats-server does:
    /// `{"nats":["nats://127.0.0.1:4222"]}`. Written whole (through a rename), so a reader never
    /// sees half of it.
    fn ports_file(dir: &Path, program: &str, mut addr: SocketAddr) -> Result<Self, CliError> {
        let exe = Path::new(program).file_name().map_or_else(
            || "starling-server".into(),
            |n| n.to_string_lossy().into_owned(),
        );
        let path = dir.join(format!("{exe}_{}.ports", std::process::id()));
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() {
                Ipv4Addr::LOCALHOST.into()
            } else {
                Ipv6Addr::LOCALHOST.into()
            });
        }
        let tmp = path.with_extension("ports.tmp");
        let err = |e: std::io::Error| {
            CliError::Io(format!("error creating ports file {}: {e}", path.display()))
        };
        std::fs::write(&tmp, format!("{{\"nats\":[\"nats://{addr}\"]}}")).map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)?;
        Ok(Self(path))
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A fresh temporary directory for a unit test.
#[cfg(test)]
pub(crate) fn test_dir(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "starling-cli-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}
