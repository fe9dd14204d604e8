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

    /// How long a message that failed for a reason outside it (AWS unavailable, the fleet busy) stays hidden
    /// before its `attempt`-th redelivery: drawn from `[ceiling / 2, ceiling]`. Half the jitter of
    /// [`Backoff::delay`], so that deliveries still spread out but the time a message survives grows with
    /// every receive: a queue's `maxReceiveCount` then bounds an outage it rides out
    /// ([`Backoff::least_time_to`]), not a number of unlucky draws near zero.
    pub fn redelivery(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt).as_secs_f64();
        Duration::from_secs_f64(rng.random_range(ceiling / 2.0..=ceiling))
    }

    /// The least time over which a message can be received `receives` times when each redelivery waits
    /// [`Backoff::redelivery`]: the outage it survives before its queue dead-letters it.
    pub fn least_time_to(&self, receives: u32) -> Duration {
        (0..receives.saturating_sub(1)).map(|attempt| self.ceiling(attempt) / 2).sum()
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
    fn redeliveries_wait_at_least_half_the_ceiling_so_the_receive_count_bounds_an_outage() {
        let backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(120));
        let mut rng = StdRng::seed_from_u64(3);
        for attempt in 0..10 {
            let ceiling = backoff.ceiling(attempt);
            for _ in 0..200 {
                let delay = backoff.redelivery(attempt, &mut rng);
                assert!(delay >= ceiling / 2 && delay <= ceiling, "{attempt}: {delay:?} of {ceiling:?}");
            }
        }
        // 1, 2, 4, 8, 16, 32, then 60 s each.
        assert_eq!(backoff.least_time_to(1), Duration::ZERO);
        assert_eq!(backoff.least_time_to(7), Duration::from_secs(63));
        assert_eq!(backoff.least_time_to(20), Duration::from_secs(63 + 13 * 60));
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
