//! The flag syntax `consul-worker` and `worker-resolver-coordinator` share.

use std::time::Duration;

/// A duration written the Consul way, in whole units: `500ms`, `2s`, `1m`. The error names
/// the flag and the value, on one line.
pub fn duration(flag: &str, v: &str) -> Result<Duration, String> {
    let bad = || format!("{flag}: {v:?} is not a duration like 500ms, 2s or 1m");
    let (num, mul) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60_000)
    } else {
        return Err(bad());
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .map(Duration::from_millis)
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_the_consul_way() {
        assert_eq!(duration("--x", "500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("--x", "2s"), Ok(Duration::from_secs(2)));
        assert_eq!(duration("--x", "1m"), Ok(Duration::from_secs(60)));
        assert!(duration("--x", "2").unwrap_err().contains("--x"));
        assert!(duration("--x", "s").is_err());
        assert!(duration("--x", "1.5s").is_err());
        assert!(duration("--x", "-1s").is_err());
        // Too large for milliseconds in a u64: an error, not an overflow.
        assert!(duration("--x", &format!("{}m", u64::MAX / 1000)).is_err());
    }
}
