//! An invocation's deadline, and what is derived from it: a Lambda killed at its timeout cannot release what it
//! holds, so a lease it takes lasts exactly as long as it could still be running (AWS Lambda Powertools'
//! idempotency records expire the same way), never a fixed guess that outlives it.

use std::time::{Duration, SystemTime};

/// Extra time on a lease, for the clocks of the function and of whoever checks the lease.
pub const LEASE_MARGIN: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Deadline(Option<SystemTime>);

impl Deadline {
    /// No deadline: a direct call outside Lambda (a test, the CLI).
    pub const NONE: Self = Self(None);

    pub fn at(at: SystemTime) -> Self {
        Self(Some(at))
    }

    /// The runtime's `Lambda-Runtime-Deadline-Ms`: milliseconds since the epoch (0 when unknown).
    pub fn from_epoch_millis(millis: u64) -> Self {
        if millis == 0 {
            return Self::NONE;
        }
        Self(SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(millis)))
    }

    /// Time left before the invocation is stopped, if it has a deadline.
    pub fn remaining(&self, now: SystemTime) -> Option<Duration> {
        self.0.map(|at| at.duration_since(now).unwrap_or_default())
    }

    /// How long a lease taken now must last: until the invocation can no longer be running, plus
    /// [`LEASE_MARGIN`]; `fallback` without a deadline.
    pub fn lease(&self, now: SystemTime, fallback: Duration) -> Duration {
        self.remaining(now).map_or(fallback, |left| left + LEASE_MARGIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_lasts_as_long_as_the_invocation_can() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let deadline = Deadline::from_epoch_millis(1_007_500);
        assert_eq!(deadline.remaining(now), Some(Duration::from_millis(7_500)));
        assert_eq!(deadline.lease(now, Duration::from_secs(90)), Duration::from_millis(8_500));
        // Past the deadline (a slow clock): only the margin.
        assert_eq!(deadline.lease(now + Duration::from_secs(60), Duration::from_secs(90)), LEASE_MARGIN);
    }

    #[test]
    fn without_a_deadline_the_fallback_applies() {
        let now = SystemTime::now();
        assert_eq!(Deadline::from_epoch_millis(0), Deadline::NONE);
        assert_eq!(Deadline::NONE.lease(now, Duration::from_secs(30)), Duration::from_secs(30));
        assert_eq!(Deadline::NONE.remaining(now), None);
    }
}
