//! A small `--key value` command-line parser (no dependency needed for a handful of flags).

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{BenchError, Result};

/// Parsed `--key value` pairs (also `--key=value`); `--flag` alone means `true`.
#[derive(Debug, Default)]
pub struct Args {
    values: HashMap<String, String>,
    used: Vec<String>,
}

impl Args {
    /// Parses `argv` (without the program name and sub-command).
    pub fn parse(argv: impl IntoIterator<Item = String>) -> Result<Self> {
        let mut values = HashMap::new();
        let mut it = argv.into_iter().peekable();
        while let Some(a) = it.next() {
            let Some(key) = a.strip_prefix("--") else {
                return Err(BenchError::Usage(format!("unexpected argument {a:?}")));
            };
            let (key, value) = match key.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => match it.peek() {
                    Some(v) if !v.starts_with("--") => {
                        (key.to_string(), it.next().unwrap_or_default())
                    }
                    _ => (key.to_string(), "true".to_string()),
                },
            };
            values.insert(key, value);
        }
        Ok(Self {
            values,
            used: Vec::new(),
        })
    }

    /// The raw value of `--key`.
    pub fn str(&mut self, key: &str) -> Option<String> {
        self.used.push(key.to_string());
        self.values.get(key).cloned()
    }

    /// `--key` parsed as `T`.
    pub fn get<T: FromStr>(&mut self, key: &str) -> Result<Option<T>> {
        match self.str(key) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| BenchError::Usage(format!("bad value {v:?} for --{key}"))),
        }
    }

    /// `--key` in seconds (fractions allowed).
    pub fn secs(&mut self, key: &str) -> Result<Option<Duration>> {
        Ok(self
            .get::<f64>(key)?
            .map(|s| Duration::from_secs_f64(s.max(0.0))))
    }

    /// `--key` as a byte size: `128`, `4k`/`4KiB`, `64KiB`, `1m`.
    pub fn size(&mut self, key: &str) -> Result<Option<usize>> {
        let Some(v) = self.str(key) else {
            return Ok(None);
        };
        let lower = v.to_ascii_lowercase();
        let t = lower.trim_end_matches('b').trim_end_matches('i');
        let (num, mult) = match t.chars().last() {
            Some('k') => (&t[..t.len() - 1], 1024),
            Some('m') => (&t[..t.len() - 1], 1024 * 1024),
            _ => (t, 1),
        };
        num.parse::<usize>()
            .map(|n| Some(n * mult))
            .map_err(|_| BenchError::Usage(format!("bad size {v:?} for --{key}")))
    }

    /// Fails on any flag that no one asked for (a typo should not be silently ignored).
    pub fn finish(&self) -> Result<()> {
        let mut unknown: Vec<_> = self
            .values
            .keys()
            .filter(|k| !self.used.contains(k))
            .map(|k| format!("--{k}"))
            .collect();
        unknown.sort();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(BenchError::Usage(format!(
                "unknown flag(s): {}",
                unknown.join(" ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Args {
        Args::parse(s.split_whitespace().map(String::from)).unwrap()
    }

    #[test]
    fn parses_pairs_sizes_and_flags() {
        let mut a = args("--size 64KiB --duration=0.5 --k 3 --verbose");
        assert_eq!(a.size("size").unwrap(), Some(65536));
        assert_eq!(
            a.secs("duration").unwrap(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(a.get::<usize>("k").unwrap(), Some(3));
        assert!(a.finish().is_err());
        assert_eq!(a.str("verbose").as_deref(), Some("true"));
        assert!(a.finish().is_ok());
        assert_eq!(args("--size 4k").size("size").unwrap(), Some(4096));
        assert!(args("--k x").get::<usize>("k").is_err());
    }
}
