//! The ledger of what capacity could not be had: offerings out for a while after a shortage or an
//! interruption, quota buckets out after a quota error, and the interruption history of each region. This
//! module decides what an entry says; storing it (DynamoDB, or memory in the simulator) is the caller's.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::LedgerPolicy;
use crate::offering::{Offering, QuotaBucket};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockCause {
    /// EC2 had no capacity for the offering.
    Shortage,
    /// An instance on the offering was interrupted (spot reclaimed it, or its host is going).
    Interrupted,
}

/// An offering kept out of placement until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferingBlock {
    pub offering: Offering,
    pub cause: BlockCause,
    /// Consecutive failures; each one doubles the time out, up to the policy's maximum.
    pub failures: u32,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

/// A quota bucket (region, capacity type, family) kept out after a quota error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaBlock {
    pub bucket: QuotaBucket,
    pub error_code: String,
    pub failures: u32,
    pub last_at: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

/// Why an offering is out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "blocked_by", rename_all = "snake_case")]
pub enum Blocked {
    Offering { cause: BlockCause, until: DateTime<Utc> },
    Quota { error_code: String, until: DateTime<Utc> },
}

/// Whether a ledger key (`region/zone/type/capacity`, `region/capacity/family`) is one an operator's pattern
/// names: the pattern's parts match the key's first parts, `*` any one part. An empty pattern names nothing.
pub fn key_matches(pattern: &str, key: &str) -> bool {
    let wanted: Vec<&str> = pattern.split('/').collect();
    let parts: Vec<&str> = key.split('/').collect();
    !pattern.is_empty()
        && wanted.len() <= parts.len()
        && wanted.iter().zip(&parts).all(|(want, part)| *want == "*" || want == part)
}

impl OfferingBlock {
    /// The block lifted by an operator at `now`: over, and its streak forgotten, so that the next failure starts a
    /// short block again.
    pub fn lifted(&self, now: DateTime<Utc>) -> Self {
        Self { failures: 0, until: now.min(self.until), ..self.clone() }
    }
}

impl QuotaBlock {
    /// The block lifted by an operator at `now` (a quota raised).
    pub fn lifted(&self, now: DateTime<Utc>) -> Self {
        Self { failures: 0, until: now.min(self.until), ..self.clone() }
    }
}

impl LedgerPolicy {
    /// The entry after one more failure of `offering`. A streak restarts when the previous block ended more than
    /// `shortage_ttl_max` ago: capacity came back in between.
    pub fn block(
        &self,
        previous: Option<&OfferingBlock>,
        offering: &Offering,
        cause: BlockCause,
        now: DateTime<Utc>,
    ) -> OfferingBlock {
        let streak = previous.filter(|p| p.until + self.shortage_ttl_max.as_chrono() >= now);
        let failures = streak.map_or(1, |p| p.failures.saturating_add(1));
        let doubling = 2u32.checked_pow(failures.saturating_sub(1).min(20)).unwrap_or(u32::MAX);
        let ttl =
            self.shortage_ttl.0.checked_mul(doubling).unwrap_or(self.shortage_ttl_max.0).min(self.shortage_ttl_max.0);
        OfferingBlock {
            offering: offering.clone(),
            cause,
            failures,
            first_at: streak.map_or(now, |p| p.first_at),
            last_at: now,
            until: now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX),
        }
    }

    /// The entry after a quota error in `bucket`: out for `quota_ttl`, renewed on every repeat.
    pub fn block_quota(
        &self,
        previous: Option<&QuotaBlock>,
        bucket: &QuotaBucket,
        error_code: &str,
        now: DateTime<Utc>,
    ) -> QuotaBlock {
        QuotaBlock {
            bucket: bucket.clone(),
            error_code: error_code.to_owned(),
            failures: previous.filter(|p| p.until >= now).map_or(1, |p| p.failures.saturating_add(1)),
            last_at: now,
            until: now + self.quota_ttl.as_chrono(),
        }
    }
}

/// One interruption of a worker of the fleet, and the offering (capacity pool) it ran on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredInterruption")]
pub struct Interruption {
    pub at: DateTime<Utc>,
    /// The offering's key; `None` for an interruption recorded before offerings were (it counts as a pool of its
    /// own).
    pub offering: Option<String>,
}

/// What the ledger may hold: an interruption with its offering, or a bare time as saved before offerings were.
#[derive(Deserialize)]
#[serde(untagged)]
enum StoredInterruption {
    Full { at: DateTime<Utc>, offering: Option<String> },
    Bare(DateTime<Utc>),
}

impl From<StoredInterruption> for Interruption {
    fn from(stored: StoredInterruption) -> Self {
        match stored {
            StoredInterruption::Full { at, offering } => Interruption { at, offering },
            StoredInterruption::Bare(at) => Interruption { at, offering: None },
        }
    }
}

/// How often one capacity pool's interruptions count towards its region's pressure.
pub const POOL_COUNT_CAP: usize = 2;

/// The interruptions of a region within a window, and how many of them count against the region as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pressure {
    pub interruptions: usize,
    pub counted: usize,
    pub zones: usize,
}

/// Everything the ledger holds for one fleet, as read at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerView {
    pub offerings: HashMap<String, OfferingBlock>,
    pub quotas: HashMap<String, QuotaBlock>,
    /// Interruptions per region, oldest first.
    pub interruptions: HashMap<String, Vec<Interruption>>,
}

impl LedgerView {
    pub fn blocked(&self, offering: &Offering, now: DateTime<Utc>) -> Option<Blocked> {
        if let Some(quota) = self.quotas.get(&offering.quota_bucket().key()).filter(|q| q.until > now) {
            return Some(Blocked::Quota { error_code: quota.error_code.clone(), until: quota.until });
        }
        self.offerings
            .get(&offering.key())
            .filter(|b| b.until > now)
            .map(|b| Blocked::Offering { cause: b.cause, until: b.until })
    }

    pub fn is_available(&self, offering: &Offering, now: DateTime<Utc>) -> bool {
        self.blocked(offering, now).is_none()
    }

    pub fn offering(&self, offering: &Offering) -> Option<&OfferingBlock> {
        self.offerings.get(&offering.key())
    }

    pub fn quota(&self, bucket: &QuotaBucket) -> Option<&QuotaBlock> {
        self.quotas.get(&bucket.key())
    }

    pub fn apply_block(&mut self, block: OfferingBlock) {
        self.offerings.insert(block.offering.key(), block);
    }

    pub fn apply_quota(&mut self, block: QuotaBlock) {
        self.quotas.insert(block.bucket.key(), block);
    }

    /// Records an interruption on `offering` and forgets its region's interruptions older than `window`.
    pub fn apply_interruption(&mut self, offering: &Offering, at: DateTime<Utc>, window: chrono::Duration) {
        let list = self.interruptions.entry(offering.region.clone()).or_default();
        list.push(Interruption { at, offering: Some(offering.key()) });
        list.sort_by_key(|i| i.at);
        let horizon = at - window;
        list.retain(|i| i.at >= horizon);
    }

    /// The blocks in force at `now` whose keys `pattern` names (see [`key_matches`]), ordered by key.
    pub fn matching(&self, pattern: &str, now: DateTime<Utc>) -> (Vec<&OfferingBlock>, Vec<&QuotaBlock>) {
        let mut offerings: Vec<&OfferingBlock> =
            self.offerings.values().filter(|b| b.until > now && key_matches(pattern, &b.offering.key())).collect();
        let mut quotas: Vec<&QuotaBlock> =
            self.quotas.values().filter(|q| q.until > now && key_matches(pattern, &q.bucket.key())).collect();
        offerings.sort_by_key(|b| b.offering.key());
        quotas.sort_by_key(|q| q.bucket.key());
        (offerings, quotas)
    }

    /// The last time any offering or quota bucket of `region` failed (a shortage, an interruption, a quota
    /// error), as far as the ledger still remembers (a day after each entry's block ends).
    pub fn last_failure_in(&self, region: &str) -> Option<DateTime<Utc>> {
        let offerings = self.offerings.values().filter(|b| b.offering.region == region).map(|b| b.last_at);
        let quotas = self.quotas.values().filter(|q| q.bucket.region == region).map(|q| q.last_at);
        offerings.chain(quotas).max()
    }

    pub fn interruptions_since(&self, region: &str, since: DateTime<Utc>) -> usize {
        self.recent(region, since).count()
    }

    /// The interruptions of `region` since `since` that speak against the region as a whole. A capacity pool
    /// reclaimed again and again is that pool's trouble, which the ledger's doubling block already answers: it
    /// counts at most [`POOL_COUNT_CAP`] times. Interruptions all in one zone are that zone's trouble and count for
    /// nothing region-wide.
    pub fn interruption_pressure(&self, region: &str, since: DateTime<Utc>) -> Pressure {
        let mut per_pool: HashMap<String, usize> = HashMap::new();
        let mut unknown = 0;
        for interruption in self.recent(region, since) {
            match &interruption.offering {
                Some(key) => *per_pool.entry(key.clone()).or_default() += 1,
                None => unknown += 1,
            }
        }
        let mut zones: Vec<&str> = per_pool.keys().filter_map(|key| key.split('/').nth(1)).collect();
        zones.sort_unstable();
        zones.dedup();
        // An interruption saved without its offering could have been anywhere: a zone of its own.
        let zones = zones.len() + unknown;
        let counted = per_pool.values().map(|n| (*n).min(POOL_COUNT_CAP)).sum::<usize>() + unknown;
        Pressure {
            interruptions: self.interruptions_since(region, since),
            counted: if zones >= 2 { counted } else { 0 },
            zones,
        }
    }

    fn recent(&self, region: &str, since: DateTime<Utc>) -> impl Iterator<Item = &Interruption> {
        self.interruptions.get(region).into_iter().flatten().filter(move |i| i.at >= since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::Span;
    use gameforge_contract::CapacityType;

    fn policy() -> LedgerPolicy {
        LedgerPolicy {
            shortage_ttl: Span::minutes(3),
            shortage_ttl_max: Span::minutes(30),
            quota_ttl: Span::hours(6),
            interruption_window: Span::hours(1),
        }
    }

    fn at(minutes: i64) -> DateTime<Utc> {
        "2026-11-27T10:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::minutes(minutes)
    }

    fn g5a() -> Offering {
        Offering::new("us-east-1", "us-east-1a", "g5.xlarge", CapacityType::Spot)
    }

    #[test]
    fn an_operators_pattern_names_a_region_a_zone_a_type_or_a_quota_bucket() {
        let key = "us-east-1/us-east-1a/g5.xlarge/spot";
        for pattern in ["us-east-1", "us-east-1/us-east-1a", "*/*/g5.xlarge", "*/*/*/spot", key] {
            assert!(key_matches(pattern, key), "{pattern}");
        }
        for pattern in ["", "us-east", "us-west-2", "*/us-east-1b", "*/*/g4dn.xlarge", "*/*/*/on_demand", "a/b/c/d/e"] {
            assert!(!key_matches(pattern, key), "{pattern}");
        }
        assert!(key_matches("us-east-1/spot/g", "us-east-1/spot/g"));
        assert!(key_matches("us-east-1", "us-east-1/spot/g"), "a region's pattern lifts its quota blocks too");
    }

    #[test]
    fn a_lifted_block_is_over_and_its_streak_forgotten() {
        let policy = policy();
        let mut view = LedgerView::default();
        let first = policy.block(None, &g5a(), BlockCause::Shortage, at(0));
        let second = policy.block(Some(&first), &g5a(), BlockCause::Shortage, first.until);
        view.apply_block(second.clone());
        let other = Offering::new("us-west-2", "us-west-2a", "g5.xlarge", CapacityType::Spot);
        view.apply_block(policy.block(None, &other, BlockCause::Shortage, at(4)));
        let (offerings, quotas) = view.matching("us-east-1", at(4));
        assert_eq!((offerings.len(), quotas.len()), (1, 0));
        let lifted = offerings[0].lifted(at(4));
        view.apply_block(lifted.clone());
        assert!(view.is_available(&g5a(), at(4)));
        assert!(view.matching("us-east-1", at(4)).0.is_empty());
        let next = policy.block(Some(&lifted), &g5a(), BlockCause::Shortage, at(5));
        assert_eq!((next.failures, (next.until - at(5)).num_minutes()), (1, 3), "a fresh streak");
    }

    #[test]
    fn the_time_out_doubles_on_repeated_failure_up_to_the_maximum() {
        let policy = policy();
        let mut previous: Option<OfferingBlock> = None;
        let mut ttls = Vec::new();
        let mut now = at(0);
        for _ in 0..6 {
            let block = policy.block(previous.as_ref(), &g5a(), BlockCause::Shortage, now);
            ttls.push((block.until - now).num_minutes());
            now = block.until;
            previous = Some(block);
        }
        assert_eq!(ttls, vec![3, 6, 12, 24, 30, 30]);
        assert_eq!(previous.unwrap().first_at, at(0));
    }

    #[test]
    fn a_streak_restarts_after_a_quiet_spell() {
        let policy = policy();
        let first = policy.block(None, &g5a(), BlockCause::Shortage, at(0));
        let second = policy.block(Some(&first), &g5a(), BlockCause::Shortage, at(10));
        assert_eq!(second.failures, 2);
        // Its block ended at 16 min; capacity held for more than the 30-minute maximum afterwards.
        let fresh = policy.block(Some(&second), &g5a(), BlockCause::Shortage, at(50));
        assert_eq!((fresh.failures, (fresh.until - at(50)).num_minutes()), (1, 3));
    }

    #[test]
    fn a_quota_blocks_the_whole_bucket_in_the_region() {
        let policy = policy();
        let mut ledger = LedgerView::default();
        let on_demand = Offering::new("us-east-1", "us-east-1a", "g5.xlarge", CapacityType::OnDemand);
        ledger.apply_quota(policy.block_quota(None, &on_demand.quota_bucket(), "VcpuLimitExceeded", at(0)));
        let other_zone_and_type = Offering::new("us-east-1", "us-east-1c", "g4dn.xlarge", CapacityType::OnDemand);
        let spot = Offering::new("us-east-1", "us-east-1a", "g5.xlarge", CapacityType::Spot);
        let other_region = Offering::new("us-west-2", "us-west-2a", "g5.xlarge", CapacityType::OnDemand);
        assert!(matches!(ledger.blocked(&other_zone_and_type, at(1)), Some(Blocked::Quota { .. })));
        assert!(ledger.is_available(&spot, at(1)));
        assert!(ledger.is_available(&other_region, at(1)));
        assert!(ledger.is_available(&other_zone_and_type, at(6 * 60 + 1)), "quota blocks expire too");
    }

    #[test]
    fn blocks_expire() {
        let mut ledger = LedgerView::default();
        ledger.apply_block(policy().block(None, &g5a(), BlockCause::Shortage, at(0)));
        assert!(!ledger.is_available(&g5a(), at(2)));
        assert!(ledger.is_available(&g5a(), at(3)));
    }

    #[test]
    fn interruptions_outside_the_window_are_forgotten() {
        let mut ledger = LedgerView::default();
        for minute in [0, 30, 50, 95] {
            ledger.apply_interruption(&g5a(), at(minute), chrono::Duration::hours(1));
        }
        // At 95 minutes the window reaches back to 35: only 50 and 95 remain.
        let times: Vec<DateTime<Utc>> = ledger.interruptions["us-east-1"].iter().map(|i| i.at).collect();
        assert_eq!(times, vec![at(50), at(95)]);
        assert_eq!(ledger.interruptions_since("us-east-1", at(60)), 1);
        assert_eq!(ledger.interruptions_since("us-west-2", at(0)), 0);
    }

    #[test]
    fn one_zones_trouble_is_not_the_regions_and_a_pool_counts_at_most_twice() {
        let mut ledger = LedgerView::default();
        let hour = chrono::Duration::hours(1);
        let g4a = Offering::new("us-east-1", "us-east-1a", "g4dn.xlarge", CapacityType::Spot);
        let g5b = Offering::new("us-east-1", "us-east-1b", "g5.xlarge", CapacityType::Spot);
        for minute in [1, 2, 3, 4] {
            ledger.apply_interruption(&g5a(), at(minute), hour);
        }
        ledger.apply_interruption(&g4a, at(5), hour);
        let one_zone = ledger.interruption_pressure("us-east-1", at(0));
        assert_eq!((one_zone.interruptions, one_zone.counted, one_zone.zones), (5, 0, 1));
        ledger.apply_interruption(&g5b, at(6), hour);
        let spread = ledger.interruption_pressure("us-east-1", at(0));
        assert_eq!((spread.interruptions, spread.counted, spread.zones), (6, 2 + 1 + 1, 2));
    }

    #[test]
    fn interruptions_saved_as_bare_times_still_read_each_as_a_pool_of_its_own() {
        let saved = r#"["2026-11-27T10:01:00Z", {"at": "2026-11-27T10:02:00Z", "offering": "us-east-1/us-east-1a/g5.xlarge/spot"}]"#;
        let read: Vec<Interruption> = serde_json::from_str(saved).unwrap();
        assert_eq!(read[0], Interruption { at: at(1), offering: None });
        assert_eq!(read[1].offering.as_deref(), Some("us-east-1/us-east-1a/g5.xlarge/spot"));
        let ledger =
            LedgerView { interruptions: HashMap::from([("us-east-1".to_owned(), read)]), ..LedgerView::default() };
        assert_eq!(ledger.interruption_pressure("us-east-1", at(0)).zones, 2);
    }
}
