//! What EC2 capacity exists where and when. A model is a list of entries; an offering not covered by any entry
//! has unlimited capacity; where entries overlap, the later one wins. `available` is how many instances of the
//! offering can run at once.
//!
//! ```json
//! {"region": "us-east-1", "availability_zone": "*", "instance_type": "g5.xlarge",
//!  "capacity_type": "*", "available": 0, "from": "0s", "until": "90m"}
//! ```

use std::time::Duration;

use gameforge_contract::CapacityType;
use gameforge_planner::{Offering, Span};
use serde::{Deserialize, Serialize};

/// One line of a capacity model. `*` (or an absent field) matches anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityEntry {
    #[serde(default = "any")]
    pub region: String,
    #[serde(default = "any")]
    pub availability_zone: String,
    #[serde(default = "any")]
    pub instance_type: String,
    /// `spot`, `on_demand` or `*`.
    #[serde(default = "any")]
    pub capacity_type: String,
    pub available: u32,
    /// A shortage of new launches only: instances already running on the offering are not taken back.
    #[serde(default)]
    pub launch_only: bool,
    /// The error code a launch on the offering answers instead of capacity (`VcpuLimitExceeded`,
    /// `MaxSpotInstanceCountExceeded`, `InvalidParameterValue`…); running instances are not taken back.
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub from: Span,
    /// Absent means for ever.
    #[serde(default)]
    pub until: Option<Span>,
}

fn any() -> String {
    "*".to_owned()
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CapacityModel {
    pub entries: Vec<CapacityEntry>,
}

impl CapacityEntry {
    fn covers(&self, offering: &Offering, elapsed: Duration) -> bool {
        let matches = |pattern: &str, value: &str| pattern == "*" || pattern == value;
        let capacity = match offering.capacity_type {
            CapacityType::Spot => "spot",
            CapacityType::OnDemand => "on_demand",
        };
        matches(&self.region, &offering.region)
            && matches(&self.availability_zone, &offering.availability_zone)
            && matches(&self.instance_type, &offering.instance_type)
            && (matches(&self.capacity_type, capacity)
                || (self.capacity_type == "on-demand" && capacity == "on_demand"))
            && elapsed >= self.from.0
            && self.until.is_none_or(|until| elapsed < until.0)
    }
}

impl CapacityModel {
    pub fn new(entries: Vec<CapacityEntry>) -> Self {
        Self { entries }
    }

    /// How many instances of `offering` may run at `elapsed` into the model's timeline for a launch to succeed;
    /// `None` is unlimited.
    pub fn limit(&self, offering: &Offering, elapsed: Duration) -> Option<u32> {
        self.launch_entry(offering, elapsed).map(|e| if e.error.is_some() { 0 } else { e.available })
    }

    /// The error a launch on `offering` answers instead of capacity, if the model says so.
    pub fn launch_error(&self, offering: &Offering, elapsed: Duration) -> Option<&str> {
        self.launch_entry(offering, elapsed).and_then(|e| e.error.as_deref())
    }

    /// How many running instances of `offering` EC2 keeps at `elapsed`; beyond that spot instances are taken
    /// back. Launch-only shortages and launch errors take nothing back. `None` is unlimited.
    pub fn reclaim_limit(&self, offering: &Offering, elapsed: Duration) -> Option<u32> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.covers(offering, elapsed) && !e.launch_only && e.error.is_none())
            .map(|e| e.available)
    }

    fn launch_entry(&self, offering: &Offering, elapsed: Duration) -> Option<&CapacityEntry> {
        self.entries.iter().rev().find(|e| e.covers(offering, elapsed))
    }

    /// The order in which EC2 fills the pools of one instant fleet call, as indices into `pools` (each with its
    /// launch priority, 0 first): on-demand is `prioritized` (priority order); spot is `price-capacity-optimized`,
    /// deepest pool first as far as the model knows (an unlimited pool is the deepest), priority between equals.
    pub fn fill_order(
        &self,
        pools: &[(Offering, u32)],
        occupied: impl Fn(&Offering) -> u32,
        elapsed: Duration,
    ) -> Vec<usize> {
        let mut order: Vec<usize> = (0..pools.len()).collect();
        let room = |(offering, _): &(Offering, u32)| {
            self.limit(offering, elapsed).map_or(u32::MAX, |limit| limit.saturating_sub(occupied(offering)))
        };
        order.sort_by(|a, b| {
            let (pa, pb) = (&pools[*a], &pools[*b]);
            let by_priority = pa.1.cmp(&pb.1);
            if pa.0.capacity_type == CapacityType::Spot {
                room(pb).cmp(&room(pa)).then(by_priority)
            } else {
                by_priority
            }
        });
        order
    }

    /// Whether one more instance fits beside `running` ones.
    pub fn has_room(&self, offering: &Offering, running: u32, elapsed: Duration) -> bool {
        self.limit(offering, elapsed).is_none_or(|limit| running < limit)
    }

    /// The moments at which the model changes, for a simulator that wants to wake up then.
    pub fn changes(&self) -> Vec<Duration> {
        let mut times: Vec<Duration> =
            self.entries.iter().flat_map(|e| std::iter::once(e.from.0).chain(e.until.map(|u| u.0))).collect();
        times.sort();
        times.dedup();
        times
    }
}

/// A shortage everywhere in `region` for the listed instance types, on both capacity types, from `from` until
/// `until` (the story this product was born from).
pub fn regional_shortage(region: &str, instance_types: &[&str], from: Span, until: Option<Span>) -> Vec<CapacityEntry> {
    instance_types
        .iter()
        .map(|instance_type| CapacityEntry {
            region: region.to_owned(),
            availability_zone: any(),
            instance_type: (*instance_type).to_owned(),
            capacity_type: any(),
            available: 0,
            launch_only: false,
            error: None,
            from,
            until,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offering(zone: &str, instance_type: &str, capacity_type: CapacityType) -> Offering {
        Offering::new("us-east-1", zone, instance_type, capacity_type)
    }

    fn minutes(n: u64) -> Duration {
        Duration::from_secs(n * 60)
    }

    #[test]
    fn uncovered_offerings_are_unlimited_and_later_entries_win() {
        let model: CapacityModel = serde_json::from_str(
            r#"[
                {"region": "us-east-1", "instance_type": "g5.xlarge", "available": 0, "until": "90m"},
                {"region": "us-east-1", "availability_zone": "us-east-1c", "instance_type": "g5.xlarge",
                 "capacity_type": "spot", "available": 2}
            ]"#,
        )
        .unwrap();
        let g5a = offering("us-east-1a", "g5.xlarge", CapacityType::Spot);
        let g5c = offering("us-east-1c", "g5.xlarge", CapacityType::Spot);
        let g4a = offering("us-east-1a", "g4dn.xlarge", CapacityType::Spot);
        assert_eq!(model.limit(&g5a, minutes(10)), Some(0));
        assert_eq!(model.limit(&g5c, minutes(10)), Some(2));
        assert_eq!(model.limit(&g4a, minutes(10)), None);
        assert_eq!(model.limit(&g5a, minutes(90)), None, "the shortage ends at 90 minutes");
        assert!(model.has_room(&g5c, 1, minutes(10)));
        assert!(!model.has_room(&g5c, 2, minutes(10)));
        assert_eq!(model.changes(), vec![minutes(0), minutes(90)]);
    }

    #[test]
    fn launch_only_shortages_and_launch_errors_take_nothing_back() {
        let model: CapacityModel = serde_json::from_str(
            r#"[
                {"region": "us-east-1", "instance_type": "g5.xlarge", "available": 1},
                {"region": "us-east-1", "availability_zone": "us-east-1a", "available": 0, "launch_only": true},
                {"region": "us-east-1", "availability_zone": "us-east-1b", "capacity_type": "on_demand",
                 "available": 0, "error": "VcpuLimitExceeded"}
            ]"#,
        )
        .unwrap();
        let g5a = offering("us-east-1a", "g5.xlarge", CapacityType::Spot);
        let od_b = offering("us-east-1b", "g5.xlarge", CapacityType::OnDemand);
        let spot_b = offering("us-east-1b", "g5.xlarge", CapacityType::Spot);
        assert_eq!(model.limit(&g5a, minutes(1)), Some(0), "no new launch");
        assert_eq!(model.reclaim_limit(&g5a, minutes(1)), Some(1), "the one running stays");
        assert_eq!(
            (model.limit(&od_b, minutes(1)), model.launch_error(&od_b, minutes(1))),
            (Some(0), Some("VcpuLimitExceeded"))
        );
        assert_eq!(model.reclaim_limit(&od_b, minutes(1)), Some(1));
        assert_eq!((model.limit(&spot_b, minutes(1)), model.launch_error(&spot_b, minutes(1))), (Some(1), None));
    }

    #[test]
    fn spot_fills_the_deepest_pool_first_and_on_demand_follows_priority() {
        let model: CapacityModel = serde_json::from_str(
            r#"[
                {"region": "us-east-1", "availability_zone": "us-east-1a", "available": 1},
                {"region": "us-east-1", "availability_zone": "us-east-1b", "available": 5},
                {"region": "us-east-1", "availability_zone": "us-east-1c", "available": 5}
            ]"#,
        )
        .unwrap();
        let pools = |capacity_type| -> Vec<(Offering, u32)> {
            ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"]
                .iter()
                .enumerate()
                .map(|(i, zone)| (offering(zone, "g5.xlarge", capacity_type), i as u32))
                .collect()
        };
        let occupied = |o: &Offering| u32::from(o.availability_zone == "us-east-1c") * 2;
        // 1d is unlimited, 1b has 5 free, 1c 3, 1a 1.
        assert_eq!(model.fill_order(&pools(CapacityType::Spot), occupied, minutes(1)), vec![3, 1, 2, 0]);
        assert_eq!(model.fill_order(&pools(CapacityType::OnDemand), occupied, minutes(1)), vec![0, 1, 2, 3]);
    }

    #[test]
    fn the_story_shortage_covers_every_zone_and_capacity_type() {
        let model = CapacityModel::new(regional_shortage("us-east-1", &["g5.xlarge", "g4dn.xlarge"], Span::ZERO, None));
        for capacity in [CapacityType::Spot, CapacityType::OnDemand] {
            assert_eq!(model.limit(&offering("us-east-1f", "g4dn.xlarge", capacity), minutes(1)), Some(0));
        }
        let west = Offering::new("us-west-2", "us-west-2a", "g5.xlarge", CapacityType::Spot);
        assert_eq!(model.limit(&west, minutes(1)), None);
    }
}
