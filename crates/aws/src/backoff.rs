//! Exponential backoff with full jitter (a uniform delay between zero and the capped exponential), for the
//! retries the SDK does not make: a message released back to its queue, a round of a control job.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    pub const fn new(base: Duration, cap: Duration) -> Self {
        Self { base, cap }
    }

    /// The ceiling for the `attempt`-th retry (0 is the first): `min(cap, base * 2^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.checked_pow(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.checked_mul(factor).unwrap_or(self.cap).min(self.cap)
    }

    /// A delay drawn uniformly from `[0, ceiling(attempt)]`.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        Duration::from_secs_f64(rng.random_range(0.0..=ceiling.as_secs_f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn the_ceiling_doubles_up_to_the_cap() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let ceilings: Vec<u64> = (0..7).map(|a| backoff.ceiling(a).as_secs()).collect();
        assert_eq!(ceilings, vec![1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn delays_are_spread_over_the_whole_range() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let mut rng = StdRng::seed_from_u64(7);
        let delays: Vec<Duration> = (0..2000).map(|_| backoff.delay(3, &mut rng)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(8)));
        // Full jitter: both ends of [0, 8 s] are reached, not just a band around the ceiling.
        assert!(delays.iter().any(|d| *d < Duration::from_millis(500)));
        assert!(delays.iter().any(|d| *d > Duration::from_millis(7500)));
    }
}
