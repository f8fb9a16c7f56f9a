//! The binary's `tracing` subscriber (the library never installs one). Lines look like
//! nats-server's:
//!
//! ```text
//! [4242] 2024/05/01 12:00:00.123456 [INF] Listening for client connections on 0.0.0.0:4222
//! [4242] [INF] Server is ready                                    (with -T=false)
//! ```
//!
//! Levels print as `INF`, `DBG`, `TRC`, `WRN`, `ERR`. An `INF` line is the message alone, as
//! nats-server prints it, so scripts can match it whole; `DBG`, `TRC`, `WRN` and `ERR` lines
//! (and every line under `-D`/`-V`) also carry the event's fields as `key=value`. Lines go to
//! stderr and, with `-l FILE`, to that file as well; SIGUSR1 reopens the file (log rotation).

use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// How the log looks and where it goes.
#[derive(Clone, Debug)]
pub(crate) struct LogConfig {
    /// `-D`: debug lines.
    pub(crate) debug: bool,
    /// `-V`: trace lines.
    pub(crate) trace: bool,
    /// `-T`: timestamps (default true).
    pub(crate) logtime: bool,
    /// `-l FILE`: also write to this file.
    pub(crate) file: Option<PathBuf>,
}

/// What a reload may change about the log: the levels and the timestamps, read by the
/// filter and the formatter on every event (two relaxed loads), and the file.
#[derive(Debug)]
struct Switches {
    debug: AtomicBool,
    trace: AtomicBool,
    logtime: AtomicBool,
}

impl Switches {
    fn max(&self) -> Level {
        // -V without -D shows trace lines but not debug lines, as nats-server does.
        if self.trace.load(Ordering::Relaxed) {
            Level::TRACE
        } else if self.debug.load(Ordering::Relaxed) {
            Level::DEBUG
        } else {
            Level::INFO
        }
    }

    fn enabled(&self, level: Level) -> bool {
        level <= Level::INFO
            || (level == Level::DEBUG && self.debug.load(Ordering::Relaxed))
            || (level == Level::TRACE && self.trace.load(Ordering::Relaxed))
    }
}

/// The filter: the switches' levels. Its max-level hint is what keeps `debug!` and `trace!`
/// free when they are off (tracing skips them before any call); a reload that changes the
/// levels rebuilds tracing's interest cache so the hint is asked again.
struct LevelSwitch(Arc<Switches>);

impl<S> tracing_subscriber::layer::Filter<S> for LevelSwitch {
    fn enabled(
        &self,
        meta: &tracing::Metadata<'_>,
        _: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        self.0.enabled(*meta.level())
    }

    fn callsite_enabled(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if self.0.enabled(*meta.level()) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(self.0.max().into())
    }
}

/// The installed log: its sink, and the switches a reload flips.
#[derive(Clone, Debug)]
pub(crate) struct Log {
    sink: LogSink,
    switches: Arc<Switches>,
}

impl Log {
    /// Reopens the log file (after a log rotation moved it away). No file: nothing to do.
    pub(crate) fn reopen(&self) -> io::Result<bool> {
        self.sink.reopen()
    }

    /// Applies a reloaded configuration's `debug`, `trace`, `logtime` and `log_file`, logging
    /// each change as nats-server does (`Reloaded: debug = true`).
    pub(crate) fn reload(&self, cfg: &LogConfig) -> io::Result<()> {
        let sw = &self.switches;
        let mut levels_changed = false;
        for (name, flag, new) in [
            ("trace", &sw.trace, cfg.trace),
            ("debug", &sw.debug, cfg.debug),
            ("logtime", &sw.logtime, cfg.logtime),
        ] {
            if flag.swap(new, Ordering::Relaxed) != new {
                levels_changed |= name != "logtime";
                tracing::info!("Reloaded: {name} = {new}");
            }
        }
        if levels_changed {
            tracing::callsite::rebuild_interest_cache();
        }
        if self.sink.set_path(cfg.file.as_deref())? {
            let file = cfg
                .file
                .as_deref()
                .map_or(String::new(), |p| p.display().to_string());
            tracing::info!("Reloaded: log_file = {file}");
        }
        Ok(())
    }
}

/// Installs the subscriber. Returns the log, which reopens its file and takes reloads.
pub(crate) fn init(cfg: &LogConfig) -> io::Result<Log> {
    let sink = LogSink::new(cfg.file.as_deref(), true)?;
    let switches = Arc::new(Switches {
        debug: AtomicBool::new(cfg.debug),
        trace: AtomicBool::new(cfg.trace),
        logtime: AtomicBool::new(cfg.logtime),
    });
    let format = NatsFormat {
        pid: std::process::id(),
        switches: switches.clone(),
    };
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;
    let layer = tracing_subscriber::fmt::layer()
        .event_format(format)
        .with_writer(sink.clone())
        .with_filter(LevelSwitch(switches.clone()));
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::set_global_default(subscriber).map_err(io::Error::other)?;
    time::init();
    Ok(Log { sink, switches })
}

/// Formats events as nats-server log lines.
struct NatsFormat {
    pid: u32,
    switches: Arc<Switches>,
}

impl<S, N> FormatEvent<S, N> for NatsFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = *event.metadata().level();
        let sw = &self.switches;
        let fields_at_info = sw.debug.load(Ordering::Relaxed) || sw.trace.load(Ordering::Relaxed);
        let with_fields = level != Level::INFO || fields_at_info;
        let mut v = LineVisitor {
            message: String::new(),
            fields: String::new(),
            with_fields,
            fatal: false,
        };
        event.record(&mut v);
        let stamp = if sw.logtime.load(Ordering::Relaxed) {
            time::now()
        } else {
            String::new()
        };
        let tag = if v.fatal { "FTL" } else { level_tag(level) };
        w.write_str(&render_tagged(self.pid, &stamp, tag, &v.message, &v.fields))
    }
}

/// One log line: `[PID] STAMP [LVL] message fields\n` (no stamp when it is empty).
#[cfg(test)]
pub(crate) fn render_line(
    pid: u32,
    stamp: &str,
    level: Level,
    message: &str,
    fields: &str,
) -> String {
    render_tagged(pid, stamp, level_tag(level), message, fields)
}

/// A line with the level's tag given: `FTL` is nats-server's fatal level, which `tracing`
/// does not have (an error event with `fatal = true` gets it, and the process then exits).
fn render_tagged(pid: u32, stamp: &str, tag: &str, message: &str, fields: &str) -> String {
    let mut line = String::with_capacity(48 + message.len() + fields.len());
    let _ = write!(line, "[{pid}] ");
    if !stamp.is_empty() {
        line.push_str(stamp);
        line.push(' ');
    }
    let _ = write!(line, "[{tag}] {message}{fields}");
    line.push('\n');
    line
}

fn level_tag(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERR",
        Level::WARN => "WRN",
        Level::INFO => "INF",
        Level::DEBUG => "DBG",
        Level::TRACE => "TRC",
    }
}

struct LineVisitor {
    message: String,
    fields: String,
    with_fields: bool,
    /// The event has `fatal = true`: tagged `FTL`.
    fatal: bool,
}

impl Visit for LineVisitor {
    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "fatal" {
            self.fatal = value;
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else if self.with_fields {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else if self.with_fields && !field.name().starts_with("log.") {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

/// Where log lines go: stderr, and the `-l` file when there is one.
#[derive(Clone, Debug)]
pub(crate) struct LogSink {
    inner: Arc<SinkInner>,
}

#[derive(Debug)]
struct SinkInner {
    stderr: bool,
    /// The file and its path, replaced together by a reload.
    file: Mutex<(Option<PathBuf>, Option<File>)>,
}

impl LogSink {
    fn new(path: Option<&Path>, stderr: bool) -> io::Result<Self> {
        let file = path.map(open_log).transpose()?;
        Ok(Self {
            inner: Arc::new(SinkInner {
                stderr,
                file: Mutex::new((path.map(Path::to_path_buf), file)),
            }),
        })
    }

    /// Reopens the log file (after a log rotation moved it away). No file: nothing to do.
    pub(crate) fn reopen(&self) -> io::Result<bool> {
        let mut slot = self
            .inner
            .file
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(path) = &slot.0 else {
            return Ok(false);
        };
        slot.1 = Some(open_log(path)?);
        Ok(true)
    }

    /// Writes to `path` from now on (none: stderr only); `false` if it already did.
    fn set_path(&self, path: Option<&Path>) -> io::Result<bool> {
        let mut slot = self
            .inner
            .file
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.0.as_deref() == path {
            return Ok(false);
        }
        let file = path.map(open_log).transpose()?;
        *slot = (path.map(Path::to_path_buf), file);
        Ok(true)
    }
}

fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot open log file {}: {e}", path.display()),
            )
        })
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = SinkWriter<'a>;
    fn make_writer(&'a self) -> SinkWriter<'a> {
        SinkWriter(&self.inner)
    }
}

/// Writes one formatted line to every destination (each line is a single write).
pub(crate) struct SinkWriter<'a>(&'a SinkInner);

impl Write for SinkWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // A full disk or a closed stderr must not take the broker down: errors are dropped.
        // The file first: whoever sees a line on stderr finds it in the file already.
        if let Some(f) = self
            .0
            .file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .as_mut()
        {
            let _ = f.write_all(buf);
        }
        if self.0.stderr {
            let _ = io::stderr().lock().write_all(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Local time stamps as nats-server prints them: `2006/01/02 15:04:05.000000`.
mod time {
    use super::*;

    /// Reads the time zone once (`localtime_r` need not).
    pub(super) fn init() {
        #[cfg(unix)]
        // SAFETY: tzset only reads the TZ environment variable and the zone files; it is called
        // once, before the runtime's threads exist.
        unsafe {
            tzset();
        }
    }

    #[cfg(unix)]
    extern "C" {
        fn tzset();
    }

    /// The current local time.
    pub(super) fn now() -> String {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let secs = since.as_secs() as i64;
        let (y, mo, d, h, mi, s) = local(secs).unwrap_or_else(|| civil(secs));
        format!(
            "{y:04}/{mo:02}/{d:02} {h:02}:{mi:02}:{s:02}.{:06}",
            since.subsec_micros()
        )
    }

    #[cfg(unix)]
    fn local(secs: i64) -> Option<(i64, u32, u32, u32, u32, u32)> {
        #[allow(clippy::useless_conversion)] // time_t is 32 bits on some targets
        let t: libc::time_t = secs.try_into().ok()?;
        // SAFETY: `tm` is plain old data, fully written by localtime_r on success; localtime_r
        // is the thread-safe variant and only reads `t`.
        let tm = unsafe {
            let mut tm: libc::tm = std::mem::zeroed();
            if libc::localtime_r(&t, &mut tm).is_null() {
                return None;
            }
            tm
        };
        Some((
            i64::from(tm.tm_year) + 1900,
            u32::try_from(tm.tm_mon + 1).ok()?,
            u32::try_from(tm.tm_mday).ok()?,
            u32::try_from(tm.tm_hour).ok()?,
            u32::try_from(tm.tm_min).ok()?,
            u32::try_from(tm.tm_sec).ok()?,
        ))
    }

    #[cfg(not(unix))]
    fn local(_secs: i64) -> Option<(i64, u32, u32, u32, u32, u32)> {
        None
    }

    /// UTC from seconds since the epoch (Howard Hinnant's days-to-civil algorithm).
    pub(super) fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let y = yoe + era * 400 + i64::from(m <= 2);
        (y, m, d, rem / 3600, (rem / 60) % 60, rem % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_look_like_nats_servers() {
        assert_eq!(
            render_line(
                42,
                "2024/05/01 12:00:00.123456",
                Level::INFO,
                "Server is ready",
                ""
            ),
            "[42] 2024/05/01 12:00:00.123456 [INF] Server is ready\n"
        );
        assert_eq!(
            render_line(7, "", Level::WARN, "slow", " cid=3"),
            "[7] [WRN] slow cid=3\n"
        );
        assert_eq!(render_line(7, "", Level::DEBUG, "d", ""), "[7] [DBG] d\n");
        assert_eq!(render_line(7, "", Level::TRACE, "t", ""), "[7] [TRC] t\n");
        assert_eq!(render_line(7, "", Level::ERROR, "e", ""), "[7] [ERR] e\n");
    }

    #[test]
    fn timestamps() {
        let s = time::now();
        // 2006/01/02 15:04:05.000000
        assert_eq!(s.len(), 26, "{s}");
        let b = s.as_bytes();
        assert_eq!(
            (b[4], b[7], b[10], b[13], b[16], b[19]),
            (b'/', b'/', b' ', b':', b':', b'.')
        );
        assert_eq!(time::civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(time::civil(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(time::civil(1_714_564_800 + 3661), (2024, 5, 1, 13, 1, 1));
    }

    #[test]
    fn visitor_splits_message_and_fields() {
        use tracing_subscriber::layer::SubscriberExt;
        let captured = Arc::new(Mutex::new(Vec::<String>::new()));
        struct Capture(Arc<Mutex<Vec<String>>>, bool);
        impl<S: Subscriber> tracing_subscriber::Layer<S> for Capture {
            fn on_event(&self, event: &Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
                let mut v = LineVisitor {
                    message: String::new(),
                    fields: String::new(),
                    with_fields: self.1,
                    fatal: false,
                };
                event.record(&mut v);
                self.0
                    .lock()
                    .unwrap()
                    .push(format!("{}|{}", v.message, v.fields));
            }
        }
        let sub = tracing_subscriber::registry().with(Capture(captured.clone(), true));
        tracing::subscriber::with_default(sub, || {
            let addr = "0.0.0.0:4222";
            tracing::info!("Listening for client connections on {addr}");
            tracing::info!(server_id = %"NABC", n = 3, "Server is ready");
        });
        let sub = tracing_subscriber::registry().with(Capture(captured.clone(), false));
        tracing::subscriber::with_default(
            sub,
            || tracing::info!(server_id = %"NABC", "Server is ready"),
        );
        assert_eq!(
            *captured.lock().unwrap(),
            [
                "Listening for client connections on 0.0.0.0:4222|",
                "Server is ready| server_id=NABC n=3",
                "Server is ready|",
            ]
        );
    }

    #[test]
    fn sink_writes_and_reopens_the_file() {
        let dir = crate::test_dir("log-sink");
        let path = dir.join("s.log");
        let sink = LogSink::new(Some(&path), false).unwrap();
        sink.make_writer().write_all(b"one\n").unwrap();
        std::fs::rename(&path, dir.join("s.log.1")).unwrap();
        assert!(sink.reopen().unwrap());
        sink.make_writer().write_all(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        assert_eq!(
            std::fs::read_to_string(dir.join("s.log.1")).unwrap(),
            "one\n"
        );
        assert!(!LogSink::new(None, false).unwrap().reopen().unwrap());
        assert!(LogSink::new(Some(&dir.join("no/such/dir/x.log")), false).is_err());
    }
}
