//! The fallback ladder within a region. One launch request covers every zone and instance type of one capacity
//! type (the instant fleet walks zones and types itself, and reports each offering that failed); capacity
//! types follow in order of preference, on-demand within its guardrails. Leaving the region is the next rung,
//! decided in `placement`.

use chrono::{DateTime, Utc};
use gameforge_contract::CapacityType;
use serde::{Deserialize, Serialize};

use crate::config::FleetConfig;
use crate::fleet::{Worker, Workers};
use crate::ledger::LedgerView;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LaunchOverride {
    pub instance_type: String,
    pub availability_zone: String,
    pub subnet_id: String,
    /// 0 is the most preferred instance type.
    pub priority: u32,
}

/// One synchronous launch call: `count` workers of one capacity type over `overrides`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LaunchRequest {
    pub region: String,
    pub launch_template: String,
    pub capacity_type: CapacityType,
    pub count: u32,
    pub overrides: Vec<LaunchOverride>,
}

/// Why a capacity type was not tried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "skipped", rename_all = "snake_case")]
pub enum Skip {
    /// Already tried in this round.
    Tried,
    /// Every offering of it is in the ledger.
    AllBlocked,
    /// The on-demand guardrail allows no more.
    Guardrail { limit: Limit },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    MaxShare,
    MaxHourlySpend,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NextLaunch {
    pub request: Option<LaunchRequest>,
    /// The capacity types passed over before it, and why.
    pub skipped: Vec<(CapacityType, Skip)>,
}

/// How many more on-demand workers the guardrails allow if `need` more workers are added in `region`, and which
/// limit binds. The share is of the fleet that will run in `region` (during a migration, the workers left behind
/// are about to go); the spend counts every on-demand worker still running anywhere.
pub fn on_demand_allowance(
    config: &FleetConfig,
    workers: &[Worker],
    region: &str,
    need: u32,
    instance_types: &[&str],
) -> (u32, Option<Limit>) {
    let there: Vec<&Worker> = workers.iter().filter(|w| w.is_active() && w.offering.region == region).collect();
    let on_demand_there = there.iter().filter(|w| w.offering.capacity_type == CapacityType::OnDemand).count() as u32;
    let total_after = u32::try_from(there.len()).unwrap_or(u32::MAX).saturating_add(need);
    let share_cap = (config.on_demand.max_share * f64::from(total_after) + 1e-9).floor() as u32;
    let by_share = share_cap.saturating_sub(on_demand_there);

    let price = |name: &str| config.instance_type(name).map_or(0.0, |t| t.on_demand_price_per_hour);
    let by_spend = config.on_demand.max_hourly_spend.map(|cap| {
        let spent: f64 = workers
            .active()
            .iter()
            .filter(|w| w.offering.capacity_type == CapacityType::OnDemand)
            .map(|w| price(&w.offering.instance_type))
            .sum();
        // Budget for the dearest candidate, so that whatever the fleet picks stays within the cap.
        let dearest = instance_types.iter().map(|t| price(t)).fold(0.0, f64::max);
        if dearest <= 0.0 { u32::MAX } else { ((cap - spent).max(0.0) / dearest + 1e-9).floor() as u32 }
    });

    let mut allowance = need;
    let mut limit = None;
    if by_share < allowance {
        allowance = by_share;
        limit = Some(Limit::MaxShare);
    }
    if let Some(by_spend) = by_spend
        && by_spend < allowance
    {
        allowance = by_spend;
        limit = Some(Limit::MaxHourlySpend);
    }
    (allowance, limit)
}

/// The next launch call for `need` workers in `region`, given the capacity types already `tried` this round.
pub fn next_launch(
    config: &FleetConfig,
    ledger: &LedgerView,
    workers: &[Worker],
    region: &str,
    need: u32,
    tried: &[CapacityType],
    now: DateTime<Utc>,
) -> NextLaunch {
    let mut skipped = Vec::new();
    let Some(stamp) = config.stamp(region) else { return NextLaunch { request: None, skipped } };
    if need == 0 {
        return NextLaunch { request: None, skipped };
    }
    for &capacity_type in &config.capacity_types {
        if tried.contains(&capacity_type) {
            skipped.push((capacity_type, Skip::Tried));
            continue;
        }
        let candidates: Vec<_> = config
            .offerings(region)
            .into_iter()
            .filter(|o| o.capacity_type == capacity_type && ledger.is_available(o, now))
            .collect();
        if candidates.is_empty() {
            skipped.push((capacity_type, Skip::AllBlocked));
            continue;
        }
        let mut count = need;
        if capacity_type == CapacityType::OnDemand {
            let types: Vec<&str> = candidates.iter().map(|o| o.instance_type.as_str()).collect();
            let (allowance, limit) = on_demand_allowance(config, workers, region, need, &types);
            if allowance == 0 {
                skipped.push((capacity_type, Skip::Guardrail { limit: limit.unwrap_or(Limit::MaxShare) }));
                continue;
            }
            count = allowance;
        }
        let overrides = candidates
            .iter()
            .map(|o| LaunchOverride {
                instance_type: o.instance_type.clone(),
                availability_zone: o.availability_zone.clone(),
                subnet_id: stamp.subnets[&o.availability_zone].clone(),
                priority: config.instance_types.iter().position(|t| t.name == o.instance_type).unwrap_or(0) as u32,
            })
            .collect();
        let request = LaunchRequest {
            region: region.to_owned(),
            launch_template: stamp.launch_template.clone(),
            capacity_type,
            count,
            overrides,
        };
        return NextLaunch { request: Some(request), skipped };
    }
    NextLaunch { request: None, skipped }
}
