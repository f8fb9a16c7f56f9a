//! How nats-server writes numbers in its monitoring JSON (it is a Go program): its own uptime
//! strings (`"1d2h3m4s"`), floats without a trailing `.0`. Times and Go durations are in
//! [`crate::gotime`].

use std::time::Duration;

use serde::Serializer;

/// nats-server's uptime format (used for `uptime` and `idle`): whole seconds, with minutes,
/// hours, days and years as they become non-zero: `"7s"`, `"1m2s"`, `"3h0m5s"`,
/// `"2d1h0m0s"`, `"1y0d0h0m0s"`.
pub(crate) fn uptime(d: Duration) -> String {
    let s = d.as_secs();
    let (mins, hours, days) = (s / 60, s / 3600, s / 86_400);
    let years = days / 365;
    if years > 0 {
        format!(
            "{years}y{}d{}h{}m{}s",
            days % 365,
            hours % 24,
            mins % 60,
            s % 60
        )
    } else if days > 0 {
        format!("{days}d{}h{}m{}s", hours % 24, mins % 60, s % 60)
    } else if hours > 0 {
        format!("{hours}h{}m{}s", mins % 60, s % 60)
    } else if mins > 0 {
        format!("{mins}m{}s", s % 60)
    } else {
        format!("{s}s")
    }
}

/// Serializes an `f64` as Go's encoding/json does for the values we produce: whole numbers
/// without a fraction (`2`, not `2.0`), others in their shortest form.
pub(crate) fn go_float<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        s.serialize_i64(*v as i64)
    } else if v.is_finite() {
        s.serialize_f64(*v)
    } else {
        s.serialize_i64(0)
    }
}

/// For `skip_serializing_if`: Go's `omitempty` on a number.
pub(crate) fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptimes_as_nats_server_writes_them() {
        assert_eq!(uptime(Duration::from_millis(999)), "0s");
        assert_eq!(uptime(Duration::from_secs(7)), "7s");
        assert_eq!(uptime(Duration::from_secs(62)), "1m2s");
        assert_eq!(uptime(Duration::from_secs(3605)), "1h0m5s");
        assert_eq!(uptime(Duration::from_secs(2 * 86_400 + 3600)), "2d1h0m0s");
        assert_eq!(uptime(Duration::from_secs(366 * 86_400)), "1y1d0h0m0s");
    }

    #[test]
    fn floats_as_go_writes_them() {
        #[derive(serde::Serialize)]
        struct F(#[serde(serialize_with = "go_float")] f64);
        assert_eq!(serde_json::to_string(&F(2.0)).unwrap(), "2");
        assert_eq!(serde_json::to_string(&F(0.0)).unwrap(), "0");
        assert_eq!(serde_json::to_string(&F(0.75)).unwrap(), "0.75");
        assert_eq!(
            serde_json::to_string(&F(5.0 / 7.0)).unwrap(),
            "0.7142857142857143"
        );
    }
}
