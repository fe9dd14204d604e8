//! A token bucket per caller: `rate` requests a second on average, `burst` at once. The arithmetic is pure; the
//! bucket lives in DynamoDB (`aws.rs`) so that every concurrent instance of the function shares it.

use std::future::Future;
use std::time::Duration;

use gameforge_aws::PortError;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    pub rate: f64,
    pub burst: f64,
}

/// A bucket's contents at an instant (milliseconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketState {
    pub tokens: f64,
    pub at_ms: i64,
}

impl TokenBucket {
    /// Takes one token: the bucket after it, or how long until one is there.
    pub fn take(&self, state: Option<BucketState>, now_ms: i64) -> Result<BucketState, Duration> {
        let tokens = match state {
            None => self.burst,
            Some(s) => (s.tokens + now_ms.saturating_sub(s.at_ms).max(0) as f64 / 1000.0 * self.rate).min(self.burst),
        };
        if tokens >= 1.0 {
            Ok(BucketState { tokens: tokens - 1.0, at_ms: now_ms })
        } else {
            Err(Duration::try_from_secs_f64((1.0 - tokens) / self.rate).unwrap_or(Duration::MAX))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    Limited { retry_after: Duration },
}

pub trait RateLimiter: Send + Sync + 'static {
    fn admit(&self, caller: &str) -> impl Future<Output = Result<Admission, PortError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let bucket = TokenBucket { rate: 2.0, burst: 3.0 };
        let mut state = None;
        for _ in 0..3 {
            state = Some(bucket.take(state, 0).unwrap());
        }
        let wait = bucket.take(state, 0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Half a second later one token has come back, and only one.
        let state = Some(bucket.take(state, 500).unwrap());
        assert!(bucket.take(state, 500).is_err());
        // A long pause refills to the burst, not beyond.
        let full = bucket.take(state, 60_000).unwrap();
        assert_eq!(full.tokens, 2.0);
    }

    #[test]
    fn a_clock_going_backwards_adds_nothing() {
        let bucket = TokenBucket { rate: 1.0, burst: 1.0 };
        let state = bucket.take(None, 10_000).unwrap();
        assert!(bucket.take(Some(state), 5_000).is_err());
    }
}
