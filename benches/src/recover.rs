//! `starling-bench recover`: what a file stream costs on disk, and how long a server takes to
//! be back with it after `kill -9`, Starling and nats-server side by side.
//!
//! Each round, for each server: start it with `-js -sd <fresh dir>`, fill the file stream
//! `BENCH` with `--msgs` messages of `--size` bytes (every PubAck checked), let it settle,
//! `kill -9` it, and measure the store directory (the bytes of its files, and the blocks they
//! take). Then start it again on the same directory (after dropping the page cache with
//! `--cold`) and time from the spawn until `$JS.API.STREAM.INFO.BENCH` answers. The count it
//! answers with is reported: a Starling that lost an acknowledged message fails the run.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::compare::{free_port, start_server_with};
use crate::error::{BenchError, Result};
use crate::js;
use crate::report;
use crate::scenario::Config;

/// How long a restarted server may take to answer for its stream.
const RECOVERY_LIMIT: Duration = Duration::from_secs(120);
/// Between the last PubAck and the kill: a server that writes behind its acks gets to write.
const SETTLE: Duration = Duration::from_secs(1);

/// What `recover` runs.
#[derive(Debug, Clone)]
pub struct RecoverConfig {
    /// Payload size, timeouts (url and pid are per server).
    pub base: Config,
    /// Messages in the stream.
    pub msgs: u64,
    /// Rounds; each round runs both servers once.
    pub rounds: usize,
    /// `[Starling, nats-server]` binaries.
    pub bins: [PathBuf; 2],
    /// Drop the page cache before each restart (needs root).
    pub cold: bool,
}

/// One server's round.
#[derive(Debug, Clone, Copy)]
pub struct RecoverRun {
    /// Messages acknowledged before the kill.
    pub msgs: u64,
    /// The store directory's files, in bytes, after the kill.
    pub disk_bytes: u64,
    /// What they take on the file system (allocated blocks), in bytes.
    pub disk_allocated: u64,
    /// From the restart's spawn to the stream's STREAM.INFO.
    pub recovery: Duration,
    /// The messages STREAM.INFO reported after the restart.
    pub recovered: u64,
}

/// The labels of the two sides.
pub const LABELS: [&str; 2] = ["starling", "nats-server"];

/// Runs every round; `progress` gets a line per server and round.
pub fn run(cfg: &RecoverConfig, mut progress: impl FnMut(String)) -> Result<[Vec<RecoverRun>; 2]> {
    let mut out = [Vec::new(), Vec::new()];
    for round in 0..cfg.rounds {
        // Alternate who goes first, so drift on a shared machine hits both alike.
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let r = one(cfg, i).map_err(|e| e.context(&format!("recover on {}", LABELS[i])))?;
            progress(format!(
                "[recover {}/{}] {:<12} {} msgs  disk {}/msg  back in {}  ({} recovered)",
                round + 1,
                cfg.rounds,
                LABELS[i],
                r.msgs,
                report::bytes(r.disk_bytes as f64 / r.msgs as f64),
                report::nanos(r.recovery.as_nanos() as f64),
                r.recovered,
            ));
            out[i].push(r);
        }
    }
    Ok(out)
}

fn one(cfg: &RecoverConfig, side: usize) -> Result<RecoverRun> {
    let bin = &cfg.bins[side];
    let dir = std::env::temp_dir().join(format!(
        "starling-bench-recover-{}-{}",
        std::process::id(),
        LABELS[side]
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| BenchError::io(format!("creating {}", dir.display()), e))?;
    let result = fill_kill_restart(cfg, bin, &dir, side == 0);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn fill_kill_restart(
    cfg: &RecoverConfig,
    bin: &PathBuf,
    dir: &Path,
    keeps_every_ack: bool,
) -> Result<RecoverRun> {
    // The store directory is given as flags, so the process handle does not remove it.
    let flags = ["-js".to_string(), "-sd".into(), dir.display().to_string()];
    let server = start_server_with(bin, free_port()?, &flags, None, None, None, false)?;
    let at = |url: &str| Config {
        url: url.to_string(),
        ..cfg.base.clone()
    };
    js::fill_file_stream(&at(&server.url), cfg.msgs)?;
    std::thread::sleep(SETTLE);
    // Dropping the handle is SIGKILL, then wait.
    drop(server);
    let (disk_bytes, disk_allocated) = dir_size(dir)?;
    if cfg.cold {
        drop_page_cache()?;
    }
    let spawned = Instant::now();
    let server = start_server_with(bin, free_port()?, &flags, None, None, None, false)?;
    let (recovered, last_seq) = js::await_stream(&at(&server.url), spawned + RECOVERY_LIMIT)?;
    let recovery = spawned.elapsed();
    drop(server);
    if keeps_every_ack && (recovered != cfg.msgs || last_seq != cfg.msgs) {
        return Err(BenchError::Sequence(format!(
            "{} messages acknowledged before kill -9, {recovered} (last_seq {last_seq}) after \
             the restart",
            cfg.msgs
        )));
    }
    Ok(RecoverRun {
        msgs: cfg.msgs,
        disk_bytes,
        disk_allocated,
        recovery,
        recovered,
    })
}

/// The bytes of the files under `dir`, and the bytes of the blocks they take.
fn dir_size(dir: &Path) -> Result<(u64, u64)> {
    let mut total = (0, 0);
    let entries = std::fs::read_dir(dir)
        .map_err(|e| BenchError::io(format!("reading {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| BenchError::io(format!("reading {}", dir.display()), e))?;
        let meta = entry
            .metadata()
            .map_err(|e| BenchError::io(format!("reading {}", entry.path().display()), e))?;
        if meta.is_dir() {
            let (a, b) = dir_size(&entry.path())?;
            total = (total.0 + a, total.1 + b);
        } else {
            total = (total.0 + meta.len(), total.1 + meta.blocks() * 512);
        }
    }
    Ok(total)
}

/// Writes dirty pages out and drops the page cache, so that the restart reads from the disk.
fn drop_page_cache() -> Result<()> {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3")
        .map_err(|e| BenchError::io("--cold: writing /proc/sys/vm/drop_caches (needs root)", e))
}

/// The median of `values`.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The table of medians: disk per message, allocated per message, recovery time, recovered
/// messages, with Starling / nats-server ratios.
pub fn table(runs: &[Vec<RecoverRun>; 2]) -> String {
    let per_msg = |r: &RecoverRun, v: u64| v as f64 / r.msgs.max(1) as f64;
    let figure =
        |f: &dyn Fn(&RecoverRun) -> f64| runs.clone().map(|rs| median(rs.iter().map(f).collect()));
    let disk = figure(&|r| per_msg(r, r.disk_bytes));
    let alloc = figure(&|r| per_msg(r, r.disk_allocated));
    let back = figure(&|r| r.recovery.as_nanos() as f64);
    let kept = figure(&|r| r.recovered as f64);
    let ratio = |v: [f64; 2]| format!("{:.2}", v[0] / v[1]);
    let msgs = runs[0].first().map_or(0, |r| r.msgs);
    let mut rows = vec![vec![
        format!("recover ({msgs} msgs)"),
        "starling".into(),
        "nats-server".into(),
        "ratio S/N".into(),
    ]];
    for (name, v, show) in [
        ("disk per msg", disk, report::bytes as fn(f64) -> String),
        ("allocated per msg", alloc, report::bytes),
        ("kill -9 to STREAM.INFO", back, report::nanos),
        ("messages after restart", kept, |v: f64| format!("{v:.0}")),
    ] {
        rows.push(vec![name.into(), show(v[0]), show(v[1]), ratio(v)]);
    }
    report::table(&rows)
}
