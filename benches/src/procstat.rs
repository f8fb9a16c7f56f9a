//! CPU time and resident memory of a server process, from `/proc`.

use std::fs;

use crate::error::{BenchError, Result};

/// One reading of a process's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcSample {
    /// User plus system CPU time, in nanoseconds (clock-tick resolution).
    pub cpu_ns: u64,
    /// Resident set size, in bytes.
    pub rss_bytes: u64,
}

/// Reads utime+stime from `/proc/<pid>/stat` and VmRSS from `/proc/<pid>/status`.
pub fn sample(pid: u32) -> Result<ProcSample> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| BenchError::io(format!("reading /proc/{pid}/stat"), e))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| BenchError::Protocol(format!("odd /proc/{pid}/stat")))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15 (1-based).
    let tick = |i: usize| -> Result<u64> {
        fields
            .get(i - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| BenchError::Protocol(format!("odd /proc/{pid}/stat field {i}")))
    };
    let ticks = tick(14)? + tick(15)?;
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| BenchError::io(format!("reading /proc/{pid}/status"), e))?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(ProcSample {
        cpu_ns: ticks * (1_000_000_000 / clock_ticks_per_sec()),
        rss_bytes: rss_kib * 1024,
    })
}

/// Samples every pid; `None` pids are skipped.
pub fn sample_all(pids: &[u32]) -> Result<Vec<ProcSample>> {
    pids.iter().map(|&p| sample(p)).collect()
}

/// CPU nanoseconds spent by all pids between two sample sets.
pub fn cpu_delta(before: &[ProcSample], after: &[ProcSample]) -> u64 {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| a.cpu_ns.saturating_sub(b.cpu_ns))
        .sum()
}

fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn samples_this_process() {
        let s = super::sample(std::process::id()).unwrap();
        assert!(s.rss_bytes > 0);
    }
}
