//! Capped exponential backoff with full jitter (crate-internal: its one user is the poll loop).

use std::time::Duration;

/// Capped exponential backoff with "full jitter" (AWS architecture blog): the n-th consecutive
/// failure waits a uniformly random time in `[0, min(cap, base * 2^(n-1))]`, so a fleet of
/// coordinators whose sidecars restart together does not come back in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first retry.
    pub base: Duration,
    /// The largest ceiling ever used.
    pub cap: Duration,
}

impl Backoff {
    /// The ceiling of the delay after `failures` consecutive failures (`failures >= 1`; 0 gives 0).
    pub fn ceiling(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let shift = (failures - 1).min(31);
        let grown = self.base.saturating_mul(1u32 << shift);
        grown.min(self.cap)
    }

    /// The delay after `failures` consecutive failures, for a uniform random `unit` in `[0, 1)`.
    pub fn delay(&self, failures: u32, unit: f64) -> Duration {
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.ceiling(failures).mul_f64(unit)
    }

    /// The delay after `failures` consecutive failures, with the thread's random generator.
    pub fn random_delay(&self, failures: u32) -> Duration {
        self.delay(failures, rand::random::<f64>())
    }

    /// Like [`Backoff::random_delay`] with the ceiling lowered to `cap` (full jitter still).
    pub fn random_delay_capped(&self, failures: u32, cap: Duration) -> Duration {
        self.ceiling(failures)
            .min(cap)
            .mul_f64(rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(5),
    };

    #[test]
    fn ceiling_doubles_then_caps() {
        assert_eq!(B.ceiling(0), Duration::ZERO);
        assert_eq!(B.ceiling(1), Duration::from_millis(100));
        assert_eq!(B.ceiling(2), Duration::from_millis(200));
        assert_eq!(B.ceiling(3), Duration::from_millis(400));
        assert_eq!(B.ceiling(6), Duration::from_millis(3200));
        assert_eq!(B.ceiling(7), Duration::from_secs(5));
        assert_eq!(B.ceiling(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn full_jitter_spans_zero_to_ceiling() {
        assert_eq!(B.delay(3, 0.0), Duration::ZERO);
        assert_eq!(B.delay(3, 0.5), Duration::from_millis(200));
        assert!(B.delay(3, 0.999_999) < Duration::from_millis(400));
        assert_eq!(B.delay(3, f64::NAN), Duration::ZERO);
        assert_eq!(B.delay(3, 7.0), Duration::from_millis(400));
    }

    #[test]
    fn random_delays_stay_within_the_ceiling() {
        for n in 1..40 {
            assert!(B.random_delay(n) <= B.ceiling(n));
        }
    }
}
