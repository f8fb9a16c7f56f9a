//! Signals: the ones the running broker traps, and `--signal` (a second invocation sending
//! one to the running broker), with nats-server's names:
//!
//! | `--signal` | signal  | what the broker does                              |
//! |------------|---------|---------------------------------------------------|
//! | `ldm`      | SIGUSR2 | lame duck: stop accepting, tell clients, drain, exit |
//! | `quit`     | SIGINT  | graceful shutdown                                 |
//! | `term`     | SIGTERM | graceful shutdown                                 |
//! | `stop`     | SIGKILL | (killed)                                          |
//! | `reload`   | SIGHUP  | reload: the config file read again, flags over it |
//! | `reopen`   | SIGUSR1 | reopen the log file                               |

use std::path::{Path, PathBuf};

use thiserror::Error;

/// The process name `--signal` looks for when no PID is given.
const PROCESS_NAME: &str = "starling-server";

/// A signal the running broker acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trapped {
    /// SIGINT.
    Interrupt,
    /// SIGTERM.
    Terminate,
    /// SIGUSR2.
    LameDuck,
    /// SIGHUP.
    Reload,
    /// SIGUSR1.
    Reopen,
}

impl Trapped {
    /// The signal's name as nats-server logs it (`Trapped "interrupt" signal`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Interrupt => "interrupt",
            Self::Terminate => "terminated",
            Self::LameDuck => "user defined signal 2",
            Self::Reload => "hangup",
            Self::Reopen => "user defined signal 1",
        }
    }
}

/// The signal handlers of the running broker. Create them before the server starts, so that a
/// signal sent as soon as the broker is ready is not lost to the default action.
#[cfg(unix)]
pub(crate) struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    /// Installs the handlers (inside a tokio runtime).
    pub(crate) fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            usr2: signal(SignalKind::user_defined2())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
        })
    }

    /// The next signal.
    pub(crate) async fn recv(&mut self) -> Trapped {
        tokio::select! {
            _ = self.int.recv() => Trapped::Interrupt,
            _ = self.term.recv() => Trapped::Terminate,
            _ = self.usr2.recv() => Trapped::LameDuck,
            _ = self.hup.recv() => Trapped::Reload,
            _ = self.usr1.recv() => Trapped::Reopen,
        }
    }
}

/// Elsewhere only Ctrl-C is trapped.
#[cfg(not(unix))]
pub(crate) struct Signals;

#[cfg(not(unix))]
impl Signals {
    /// Nothing to install.
    pub(crate) fn new() -> std::io::Result<Self> {
        Ok(Self)
    }

    /// The next Ctrl-C.
    pub(crate) async fn recv(&mut self) -> Trapped {
        let _ = tokio::signal::ctrl_c().await;
        Trapped::Interrupt
    }
}

/// A signal `--signal` can send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// `ldm`: SIGUSR2.
    LameDuck,
    /// `quit`: SIGINT.
    Quit,
    /// `stop`: SIGKILL.
    Stop,
    /// `term`: SIGTERM.
    Term,
    /// `reload`: SIGHUP.
    Reload,
    /// `reopen`: SIGUSR1.
    Reopen,
}

impl Command {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "ldm" => Self::LameDuck,
            "quit" => Self::Quit,
            "stop" => Self::Stop,
            "term" => Self::Term,
            "reload" => Self::Reload,
            "reopen" => Self::Reopen,
            _ => return None,
        })
    }

    #[cfg(unix)]
    fn signo(self) -> libc::c_int {
        match self {
            Self::LameDuck => libc::SIGUSR2,
            Self::Quit => libc::SIGINT,
            Self::Stop => libc::SIGKILL,
            Self::Term => libc::SIGTERM,
            Self::Reload => libc::SIGHUP,
            Self::Reopen => libc::SIGUSR1,
        }
    }
}

/// Where `--signal` finds the process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A PID given on the command line.
    Pid(i32),
    /// A PID file given on the command line (`ldm=/run/x.pid`) or with `-P`.
    PidFile(PathBuf),
    /// The one running `starling-server` process.
    Find,
}

/// Why `--signal` failed. Worded as nats-server words it.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum SignalError {
    /// Not one of ldm, quit, stop, term, reload, reopen.
    #[error("unknown signal {0:?}")]
    Unknown(String),
    /// The PID file could not be read.
    #[error("cannot read pid file {path}: {reason}")]
    PidFile {
        /// The file.
        path: String,
        /// The operating system's error.
        reason: String,
    },
    /// The PID (or the PID file's content) is not a number.
    #[error("invalid pid {0:?}")]
    InvalidPid(String),
    /// No process to signal.
    #[error("no {PROCESS_NAME} processes running")]
    NoProcess,
    /// More than one process and no PID given.
    #[error("multiple {PROCESS_NAME} processes running:\n{}", .0.iter().map(i32::to_string).collect::<Vec<_>>().join("\n"))]
    Multiple(Vec<i32>),
    /// The PID does not exist.
    #[error("no such process")]
    NoSuchProcess,
    /// Not allowed to signal it.
    #[error("operation not permitted")]
    NotPermitted,
    /// Another `kill` failure.
    #[error("{0}")]
    Kill(String),
    /// Not available on this platform.
    #[cfg(not(unix))]
    #[error("--signal is only supported on Unix")]
    NotUnix,
}

/// Parses `--signal`'s value, `SIGNAL[=PID or PID file]`. Without a PID, `-P`'s file is used if
/// given, else the one running `starling-server` process is looked for.
pub(crate) fn parse(arg: &str, pid_file: Option<&Path>) -> Result<(Command, Target), SignalError> {
    let (name, pid) = match arg.split_once('=') {
        Some((n, p)) => (n, Some(p)),
        None => (arg, None),
    };
    let command = Command::parse(name).ok_or_else(|| SignalError::Unknown(name.to_string()))?;
    let target = match pid {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Target::Pid(
            p.parse()
                .map_err(|_| SignalError::InvalidPid(p.to_string()))?,
        ),
        Some("") | None => match pid_file {
            Some(f) => Target::PidFile(f.to_path_buf()),
            None => Target::Find,
        },
        Some(p) => Target::PidFile(PathBuf::from(p)),
    };
    Ok((command, target))
}

/// Resolves the target to one PID.
pub(crate) fn resolve(target: &Target) -> Result<i32, SignalError> {
    match target {
        Target::Pid(p) => Ok(*p),
        Target::PidFile(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| SignalError::PidFile {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            let text = text.trim();
            text.parse()
                .map_err(|_| SignalError::InvalidPid(text.to_string()))
        }
        Target::Find => match find_processes(PROCESS_NAME).as_slice() {
            [] => Err(SignalError::NoProcess),
            [one] => Ok(*one),
            many => Err(SignalError::Multiple(many.to_vec())),
        },
    }
}

/// Sends `command` to `pid`.
#[cfg(unix)]
pub(crate) fn send(command: Command, pid: i32) -> Result<(), SignalError> {
    if pid <= 0 {
        // kill(0) and kill(-1) signal whole groups: never what `--signal` means.
        return Err(SignalError::InvalidPid(pid.to_string()));
    }
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(pid, command.signo()) } == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    Err(match err.raw_os_error() {
        Some(libc::ESRCH) => SignalError::NoSuchProcess,
        Some(libc::EPERM) => SignalError::NotPermitted,
        _ => SignalError::Kill(err.to_string()),
    })
}

/// Sends `command` to `pid`.
#[cfg(not(unix))]
pub(crate) fn send(_command: Command, _pid: i32) -> Result<(), SignalError> {
    Err(SignalError::NotUnix)
}

/// PIDs of running processes named `name` (from `/proc`), this one excluded.
fn find_processes(name: &str) -> Vec<i32> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
        })
        .filter_map(|pid| i32::try_from(pid).ok())
        .collect();
    pids.sort_unstable();
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_arguments() {
        assert_eq!(
            parse("ldm=123", None),
            Ok((Command::LameDuck, Target::Pid(123)))
        );
        assert_eq!(parse("quit", None), Ok((Command::Quit, Target::Find)));
        assert_eq!(parse("quit=", None), Ok((Command::Quit, Target::Find)));
        assert_eq!(
            parse("term", Some(Path::new("/run/s.pid"))),
            Ok((Command::Term, Target::PidFile("/run/s.pid".into())))
        );
        assert_eq!(
            parse("reopen=/var/run/x.pid", None),
            Ok((Command::Reopen, Target::PidFile("/var/run/x.pid".into())))
        );
        assert_eq!(parse("stop=1", None), Ok((Command::Stop, Target::Pid(1))));
        assert_eq!(
            parse("reload=7", None),
            Ok((Command::Reload, Target::Pid(7)))
        );
        assert_eq!(parse("hup", None), Err(SignalError::Unknown("hup".into())));
        assert_eq!(
            parse("ldm=99999999999", None),
            Err(SignalError::InvalidPid("99999999999".into()))
        );
    }

    #[test]
    fn pid_files() {
        let dir = crate::test_dir("signal-pid");
        let good = dir.join("good.pid");
        std::fs::write(&good, "4242\n").unwrap();
        assert_eq!(resolve(&Target::PidFile(good)), Ok(4242));
        let bad = dir.join("bad.pid");
        std::fs::write(&bad, "nope").unwrap();
        assert_eq!(
            resolve(&Target::PidFile(bad)),
            Err(SignalError::InvalidPid("nope".into()))
        );
        let missing = resolve(&Target::PidFile(dir.join("missing.pid"))).unwrap_err();
        assert!(
            missing.to_string().starts_with("cannot read pid file"),
            "{missing}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn kill_errors() {
        assert_eq!(
            send(Command::Quit, 0),
            Err(SignalError::InvalidPid("0".into()))
        );
        assert_eq!(
            send(Command::Quit, -1),
            Err(SignalError::InvalidPid("-1".into()))
        );
        // PIDs are below 2^22 on Linux: this one cannot exist.
        assert_eq!(
            send(Command::Reopen, i32::MAX),
            Err(SignalError::NoSuchProcess)
        );
    }

    #[test]
    fn messages() {
        assert_eq!(
            SignalError::NoProcess.to_string(),
            "no starling-server processes running"
        );
        assert_eq!(
            SignalError::Multiple(vec![1, 2]).to_string(),
            "multiple starling-server processes running:\n1\n2"
        );
    }

    #[test]
    fn finds_no_process_under_another_name() {
        assert!(find_processes("surely-no-such-process-name").is_empty());
    }
}
