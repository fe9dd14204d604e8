use std::fmt;

use gameforge_contract::CapacityType;
use serde::{Deserialize, Serialize};

/// Something EC2 sells: an instance type in a zone, on spot or on demand.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Offering {
    pub region: String,
    pub availability_zone: String,
    pub instance_type: String,
    pub capacity_type: CapacityType,
}

impl Offering {
    pub fn new(region: &str, zone: &str, instance_type: &str, capacity_type: CapacityType) -> Self {
        Self {
            region: region.to_owned(),
            availability_zone: zone.to_owned(),
            instance_type: instance_type.to_owned(),
            capacity_type,
        }
    }

    /// `region/zone/type/capacity`: the ledger key.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.region,
            self.availability_zone,
            self.instance_type,
            capacity_name(self.capacity_type)
        )
    }

    /// The quota bucket of this offering: quotas are per region, capacity type and instance family group
    /// (`g` covers g4dn, g5, g6…), not per zone or size.
    pub fn quota_bucket(&self) -> QuotaBucket {
        QuotaBucket {
            region: self.region.clone(),
            capacity_type: self.capacity_type,
            family: family_group(&self.instance_type),
        }
    }
}

impl fmt::Display for Offering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// Where a quota applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QuotaBucket {
    pub region: String,
    pub capacity_type: CapacityType,
    pub family: String,
}

impl QuotaBucket {
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.region, capacity_name(self.capacity_type), self.family)
    }
}

pub fn capacity_name(capacity_type: CapacityType) -> &'static str {
    match capacity_type {
        CapacityType::Spot => "spot",
        CapacityType::OnDemand => "on_demand",
    }
}

/// The letters before the generation digit: `g5.xlarge` → `g`, `inf2.xlarge` → `inf`, `p4d.24xlarge` → `p`.
fn family_group(instance_type: &str) -> String {
    instance_type.chars().take_while(|c| c.is_ascii_alphabetic()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_buckets_group_families() {
        let g5 = Offering::new("us-east-1", "us-east-1a", "g5.xlarge", CapacityType::OnDemand);
        let g4 = Offering::new("us-east-1", "us-east-1b", "g4dn.xlarge", CapacityType::OnDemand);
        let spot = Offering::new("us-east-1", "us-east-1a", "g5.xlarge", CapacityType::Spot);
        assert_eq!(g5.quota_bucket(), g4.quota_bucket());
        assert_ne!(g5.quota_bucket(), spot.quota_bucket());
        assert_eq!(g5.quota_bucket().key(), "us-east-1/on_demand/g");
        assert_eq!(g5.key(), "us-east-1/us-east-1a/g5.xlarge/on_demand");
    }
}
