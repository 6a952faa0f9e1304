//! Retries of transient transfer failures: exponential backoff with jitter.

use std::{
    hash::{BuildHasher, Hasher},
    time::Duration,
};

/// How transient failures are retried: attempt `n` (counting from 1) waits
/// `min(initial × 2^(n-1), max)`, spread by ±`jitter_percent` so that movers failing together do not
/// retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0: no retry).
    pub max_retries: u32,
    /// Delay before the first retry.
    pub initial_delay: Duration,
    /// Longest delay.
    pub max_delay: Duration,
    /// Spread of each delay, in percent (0–100).
    pub jitter_percent: u8,
}

impl Default for RetryPolicy {
    /// The Go project's data-sync defaults: 5 retries, 5 s doubling to at most 5 min, ±15 %.
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            initial_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(300),
            jitter_percent: 15,
        }
    }
}

impl RetryPolicy {
    /// No retries.
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            ..Default::default()
        }
    }

    /// The delay before retry number `retry` (1 for the first retry), without jitter.
    pub fn base_delay(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(32);
        self.initial_delay
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.max_delay)
    }

    /// The delay before retry number `retry`, with jitter drawn from `unit` (a number in `[0, 1)`).
    pub fn delay_with(&self, retry: u32, unit: f64) -> Duration {
        let base = self.base_delay(retry).as_secs_f64();
        let spread = f64::from(self.jitter_percent.min(100)) / 100.0;
        let factor = 1.0 + spread * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        Duration::from_secs_f64((base * factor).max(0.0))
    }

    /// The delay before retry number `retry`, with random jitter.
    pub fn delay(&self, retry: u32) -> Duration {
        self.delay_with(retry, random_unit())
    }
}

/// A random number in `[0, 1)` (std's randomly keyed hasher: enough for jitter and sampling).
pub(crate) fn random_unit() -> f64 {
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A random 64-bit number.
pub(crate) fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_limit_and_jitter_stays_in_bounds() {
        let p = RetryPolicy::default();
        let secs: Vec<u64> = (1..=8).map(|n| p.base_delay(n).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(p.base_delay(1000), Duration::from_secs(300));
        assert_eq!(p.delay_with(1, 0.0), Duration::from_secs_f64(4.25));
        assert_eq!(p.delay_with(1, 0.5), Duration::from_secs(5));
        assert_eq!(p.delay_with(1, 1.0), Duration::from_secs_f64(5.75));
        for _ in 0..100 {
            let d = p.delay(2).as_secs_f64();
            assert!((8.5..=11.5).contains(&d), "{d}");
        }
        let draws: std::collections::BTreeSet<u64> = (0..20).map(|_| random_u64()).collect();
        assert!(draws.len() > 15, "random draws repeat: {draws:?}");
        assert_eq!(RetryPolicy::none().max_retries, 0);
    }
}
