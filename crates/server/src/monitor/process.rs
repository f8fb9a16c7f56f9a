//! Process figures from `/proc/self` (Linux; zero elsewhere): resident memory and CPU time.

use std::time::{Duration, Instant, SystemTime};

/// Clock ticks per second of `/proc/self/stat` times (`USER_HZ`, 100 on every Linux port).
const TICKS_PER_SEC: f64 = 100.0;
/// Shorter intervals than this give noisy percentages: the last figure is reported again.
const MIN_SAMPLE: Duration = Duration::from_millis(500);

/// Resident set size in bytes (`VmRSS` of `/proc/self/status`).
pub(crate) fn rss_bytes() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// User plus system CPU time used by this process so far.
pub(crate) fn cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return Duration::ZERO;
    };
    let mut fields = rest.split_whitespace().skip(11); // field 14 (utime) is the 12th after ')'
    let utime: u64 = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
    let stime: u64 = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
    Duration::from_secs_f64((utime + stime) as f64 / TICKS_PER_SEC)
}

/// CPU use in percent of one core between two `/varz` requests (nats-server's `cpu`).
#[derive(Default)]
pub(crate) struct CpuSampler {
    last: Option<(Instant, Duration)>,
    percent: f64,
}

impl CpuSampler {
    /// The CPU percentage since the previous sample (since `start` for the first one).
    pub(crate) fn sample(&mut self, start: SystemTime) -> f64 {
        let now = Instant::now();
        let used = cpu_time();
        let (elapsed, delta) = match self.last {
            Some((at, _)) if now - at < MIN_SAMPLE => return self.percent,
            Some((at, before)) => (now - at, used.saturating_sub(before)),
            None => (start.elapsed().unwrap_or_default(), used),
        };
        self.last = Some((now, used));
        self.percent = if elapsed.is_zero() {
            0.0
        } else {
            let pct = delta.as_secs_f64() / elapsed.as_secs_f64() * 100.0;
            (pct * 100.0).round() / 100.0
        };
        self.percent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn reads_proc() {
        assert!(rss_bytes() > 1024 * 1024);
        // Burn CPU until the counter (in 10 ms ticks) moves off zero; bounded in wall time,
        // which on a loaded machine may pass with little CPU given to this thread.
        let t = Instant::now();
        let mut x = 0u64;
        while cpu_time().is_zero() && t.elapsed() < Duration::from_secs(10) {
            for _ in 0..100_000 {
                x = x.wrapping_mul(31).wrapping_add(7);
            }
        }
        std::hint::black_box(x);
        assert!(cpu_time() > Duration::ZERO);
    }
}
