//! Exponential backoff with full jitter: after the n-th consecutive failure
//! the next attempt waits a uniformly random time in `[0, min(cap, base·2ⁿ)]`.
//! The jitter spreads the hosts of a fleet that all lost the appliance at
//! the same moment, so they do not all come back at the same second.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// The delays between retries of one failing operation.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    /// Consecutive failures so far (delays handed out since the last reset).
    failures: u32,
    rng: u64,
}

impl Default for Backoff {
    /// 1 s doubling to a 5 min cap.
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(300))
    }
}

impl Backoff {
    /// Starts at `base`, doubles per failure, never above `cap` (a `cap`
    /// below `base` is raised to it). Seeded from the process's random keys.
    pub fn new(base: Duration, cap: Duration) -> Self {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        Self::with_seed(base, cap, h.finish())
    }

    /// Like [`Backoff::new`] with a fixed seed (reproducible sequences in tests).
    pub fn with_seed(base: Duration, cap: Duration, seed: u64) -> Self {
        Self {
            base,
            cap: cap.max(base),
            failures: 0,
            // xorshift must not start at 0.
            rng: seed | 1,
        }
    }

    /// The upper bound of the next delay: `min(cap, base·2^failures)`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .map_or(self.cap, |d| d.min(self.cap))
    }

    /// Consecutive failures counted since the last [`Backoff::reset`].
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The delay before the next attempt, after one more failure: uniform
    /// in `[0, ceiling]`, then the ceiling doubles (up to the cap).
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        // Uniform in [0, nanos] by a 128-bit multiply (no modulo bias worth naming).
        let r = self.next_u64();
        let pick = ((u128::from(r) * (u128::from(nanos) + 1)) >> 64) as u64;
        Duration::from_nanos(pick)
    }

    /// Back to the first delay, after a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// xorshift64*: enough randomness for jitter, no dependency.
    fn next_u64(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn every_delay_is_within_its_ceiling_and_the_cap() {
        for seed in 0..200 {
            let mut b = Backoff::with_seed(S, Duration::from_secs(300), seed);
            for n in 0..40u32 {
                let ceiling = b.ceiling();
                let expected = Duration::from_secs(1u64 << n.min(20)).min(Duration::from_secs(300));
                assert_eq!(ceiling, expected, "ceiling after {n} failures");
                let d = b.next_delay();
                assert!(
                    d <= ceiling,
                    "seed {seed}, failure {n}: {d:?} > {ceiling:?}"
                );
            }
        }
    }

    #[test]
    fn delays_grow_on_average_until_the_cap() {
        // Mean over many seeds of the n-th delay ≈ ceiling/2.
        let cap = Duration::from_secs(300);
        let mut means = Vec::new();
        for n in 0..12 {
            let mut total = 0.0;
            for seed in 0..2000u64 {
                let mut b = Backoff::with_seed(S, cap, seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                for _ in 0..n {
                    b.next_delay();
                }
                total += b.next_delay().as_secs_f64();
            }
            means.push(total / 2000.0);
        }
        for (n, mean) in means.iter().enumerate().take(9) {
            let half = f64::from(1u32 << n) / 2.0;
            assert!(
                (mean - half).abs() < half * 0.1,
                "mean of delay {n} is {mean} (expected about {half})"
            );
        }
        for (n, w) in means.windows(2).enumerate().take(8) {
            assert!(w[1] > w[0] * 1.6, "no growth at {n}: {means:?}");
        }
        // 2^9 = 512 s is past the cap: means stay at cap/2 from there on.
        for m in &means[9..] {
            assert!(
                (m - 150.0).abs() < 15.0,
                "capped mean {m} (expected about 150)"
            );
        }
    }

    #[test]
    fn the_cap_holds_forever_and_reset_starts_over() {
        let cap = Duration::from_secs(300);
        let mut b = Backoff::with_seed(S, cap, 7);
        let mut max = Duration::ZERO;
        for _ in 0..10_000 {
            let d = b.next_delay();
            assert!(d <= cap);
            max = max.max(d);
        }
        assert_eq!(b.ceiling(), cap);
        assert!(
            max > Duration::from_secs(290),
            "jitter never got near the cap: {max:?}"
        );
        assert_eq!(b.failures(), 10_000);
        b.reset();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.ceiling(), S);
        assert!(b.next_delay() <= S);
    }

    #[test]
    fn seeds_give_different_sequences_and_new_is_jittered() {
        let a: Vec<_> = {
            let mut b = Backoff::with_seed(S, S * 300, 1);
            (0..8).map(|_| b.next_delay()).collect()
        };
        let c: Vec<_> = {
            let mut b = Backoff::with_seed(S, S * 300, 2);
            (0..8).map(|_| b.next_delay()).collect()
        };
        assert_ne!(a, c);
        let firsts: std::collections::BTreeSet<_> =
            (0..20).map(|_| Backoff::default().next_delay()).collect();
        assert!(
            firsts.len() > 10,
            "Backoff::new is not randomly seeded: {firsts:?}"
        );
        assert_eq!(
            Backoff::new(S * 10, S).ceiling(),
            S * 10,
            "cap raised to base"
        );
    }
}
