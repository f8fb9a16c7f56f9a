//! What one run measured, and how it is printed: an aligned table for people, JSON lines for
//! scripts.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

/// Latency percentiles of a request/reply run, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// Requests measured.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
}

impl Latency {
    /// Percentiles of `samples` (nanoseconds); `None` when there are none.
    pub fn from_samples(mut samples: Vec<u64>) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i] as f64
        };
        Some(Self {
            count: samples.len() as u64,
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
        })
    }
}

/// The figures of one scenario run against one server.
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    /// Scenario name.
    pub scenario: String,
    /// Which server (a label or the URL).
    pub server: String,
    /// Messages published (requests sent, subscriptions made).
    pub published: u64,
    /// Messages delivered (replies received, subscriptions confirmed).
    pub delivered: u64,
    /// From the first publish to the last delivery.
    pub elapsed: Duration,
    /// Payload size in bytes.
    pub size: usize,
    /// Server CPU time (user + system) during the run, when the server's pid is known.
    pub server_cpu_ns: Option<u64>,
    /// Server RSS before the run, bytes.
    pub rss_before: Option<u64>,
    /// Server RSS after the run, bytes.
    pub rss_after: Option<u64>,
    /// `subs`, `accounts`: (RSS after − RSS before) / subscriptions.
    pub rss_per_sub: Option<f64>,
    /// `accounts`: (RSS after − RSS before) / accounts.
    pub rss_per_account: Option<f64>,
    /// `reqrep`: round-trip latency percentiles.
    pub latency: Option<Latency>,
}

impl RunResult {
    /// Delivered messages per second.
    pub fn msgs_per_sec(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.delivered as f64 / s
        } else {
            0.0
        }
    }

    /// Server CPU nanoseconds per delivered message.
    pub fn cpu_ns_per_msg(&self) -> Option<f64> {
        let cpu = self.server_cpu_ns?;
        (self.delivered > 0).then(|| cpu as f64 / self.delivered as f64)
    }

    /// One JSON object with every figure.
    pub fn to_json(&self) -> Value {
        json!({
            "scenario": self.scenario,
            "server": self.server,
            "size": self.size,
            "published": self.published,
            "delivered": self.delivered,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "msgs_per_sec": self.msgs_per_sec(),
            "server_cpu_ns": self.server_cpu_ns,
            "cpu_ns_per_msg": self.cpu_ns_per_msg(),
            "rss_before": self.rss_before,
            "rss_after": self.rss_after,
            "rss_per_sub": self.rss_per_sub,
            "rss_per_account": self.rss_per_account,
            "p50_ns": self.latency.map(|l| l.p50),
            "p90_ns": self.latency.map(|l| l.p90),
            "p99_ns": self.latency.map(|l| l.p99),
            "p999_ns": self.latency.map(|l| l.p999),
        })
    }
}

/// A count per second with a k/M suffix.
pub fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Nanoseconds, with µs/ms units when large.
pub fn nanos(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}ms", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}µs", v / 1e3)
    } else {
        format!("{v:.0}ns")
    }
}

/// Bytes, with KiB/MiB units when large.
pub fn bytes(v: f64) -> String {
    if v.abs() >= 1024.0 * 1024.0 {
        format!("{:.1}MiB", v / (1024.0 * 1024.0))
    } else if v.abs() >= 1024.0 {
        format!("{:.1}KiB", v / 1024.0)
    } else {
        format!("{v:.0}B")
    }
}

/// Formats rows as an aligned text table; the first row is the header.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width = |c: usize| {
        rows.iter()
            .filter_map(|r| r.get(c))
            .map(|s| s.chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..cols).map(width).collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            if c == 0 {
                let _ = write!(out, "{cell}{}", " ".repeat(pad));
            } else {
                let _ = write!(out, "  {}{cell}", " ".repeat(pad));
            }
        }
        out.push('\n');
        if i == 0 {
            let total = widths.iter().sum::<usize>() + 2 * cols.saturating_sub(1);
            out.push_str(&"-".repeat(total));
            out.push('\n');
        }
    }
    out
}

/// The table `run` prints: one row per result.
pub fn run_table(results: &[RunResult]) -> String {
    let mut rows = vec![[
        "scenario",
        "server",
        "size",
        "delivered",
        "msgs/s",
        "cpu/msg",
        "rss/sub",
        "rss/account",
        "p50",
        "p99",
    ]
    .map(String::from)
    .to_vec()];
    let dash = || "-".to_string();
    for r in results {
        rows.push(vec![
            r.scenario.clone(),
            r.server.clone(),
            r.size.to_string(),
            r.delivered.to_string(),
            rate(r.msgs_per_sec()),
            r.cpu_ns_per_msg().map_or_else(dash, nanos),
            r.rss_per_sub.map_or_else(dash, bytes),
            r.rss_per_account.map_or_else(dash, bytes),
            r.latency.map_or_else(dash, |l| nanos(l.p50)),
            r.latency.map_or_else(dash, |l| nanos(l.p99)),
        ]);
    }
    table(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let l = Latency::from_samples((1..=1000).collect()).unwrap();
        assert_eq!((l.p50, l.p90, l.p99, l.p999), (500.0, 900.0, 990.0, 999.0));
        assert!(Latency::from_samples(Vec::new()).is_none());
    }

    #[test]
    fn table_aligns() {
        let t = table(&[
            vec!["a".into(), "bb".into()],
            vec!["ccc".into(), "d".into()],
        ]);
        assert_eq!(t, "a    bb\n-------\nccc   d\n");
    }
}
