//! EC2 capacity, emulated in front of the emulator. moto launches whatever it is asked to; with a
//! [`CapacityModel`] installed, launches answer as EC2 does when capacity is short: `RunInstances` fails with
//! `InsufficientInstanceCapacity`, and an instant `CreateFleet` succeeds as a whole, launching what fits on the
//! overrides that have room and reporting one error per override that has none.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use gameforge_capacity::CapacityModel;
use gameforge_contract::CapacityType;
use gameforge_planner::Offering;

use super::protocol::AwsError;

/// What the emulated EC2 knows: the model, when its timeline started, which zone each subnet is in, and which
/// instances run on which offering.
#[derive(Debug)]
pub(super) struct Ec2Capacity {
    pub model: CapacityModel,
    pub epoch: Instant,
    pub zones: HashMap<String, String>,
    running: HashMap<String, HashSet<String>>,
    offering_of: HashMap<String, String>,
    /// Launches promised to requests still in flight, per offering.
    reserved: HashMap<String, u32>,
}

impl Ec2Capacity {
    pub fn new(model: CapacityModel) -> Self {
        Self {
            model,
            epoch: Instant::now(),
            zones: HashMap::new(),
            running: HashMap::new(),
            offering_of: HashMap::new(),
            reserved: HashMap::new(),
        }
    }

    /// Room for `wanted` more instances of `offering` (at most), after what runs and what is promised.
    pub fn reserve(&mut self, offering: &Offering, wanted: u32) -> u32 {
        let key = offering.key();
        let running =
            self.running.get(&key).map_or(0, |s| s.len() as u32) + self.reserved.get(&key).copied().unwrap_or(0);
        let room = match self.model.limit(offering, self.epoch.elapsed()) {
            None => wanted,
            Some(limit) => limit.saturating_sub(running).min(wanted),
        };
        if room > 0 {
            *self.reserved.entry(key).or_default() += room;
        }
        room
    }

    /// What a launch on `offering` that got nothing answers: the model's error for it (a quota, a configuration
    /// error), or EC2's shortage answer.
    pub fn refusal(&self, offering: &Offering) -> AwsError {
        match self.model.launch_error(offering, self.epoch.elapsed()) {
            Some(code) => AwsError::new(
                400,
                code,
                format!(
                    "{code}: the launch of {} in {} was refused",
                    offering.instance_type, offering.availability_zone
                ),
            ),
            None => shortage(offering),
        }
    }

    /// Turns a reservation into running instances (or releases it when the launch failed).
    pub fn settle(&mut self, offering: &Offering, reserved: u32, instance_ids: &[String]) {
        let key = offering.key();
        if let Some(r) = self.reserved.get_mut(&key) {
            *r = r.saturating_sub(reserved);
        }
        for id in instance_ids {
            self.running.entry(key.clone()).or_default().insert(id.clone());
            self.offering_of.insert(id.clone(), key.clone());
        }
    }

    pub fn terminated(&mut self, instance_ids: &[String]) {
        for id in instance_ids {
            if let Some(key) = self.offering_of.remove(id)
                && let Some(set) = self.running.get_mut(&key)
            {
                set.remove(id);
            }
        }
    }
}

/// One override of a `CreateFleet` request, as sent.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FleetOverride {
    pub config_index: String,
    pub instance_type: String,
    pub subnet_id: Option<String>,
    pub availability_zone: Option<String>,
    pub priority: f64,
}

/// The parts of an instant `CreateFleet` request the emulation needs.
#[derive(Debug, Clone)]
pub(super) struct FleetRequest {
    pub total: u32,
    pub capacity_type: CapacityType,
    pub overrides: Vec<FleetOverride>,
    /// `LaunchTemplateConfigs.N.LaunchTemplateSpecification.*` by config index.
    pub templates: BTreeMap<String, Vec<(String, String)>>,
    /// `TagSpecification.N.*` for instances, renumbered from 1.
    pub instance_tags: Vec<(String, String)>,
}

impl FleetRequest {
    pub fn parse(params: &[(String, String)]) -> Option<Self> {
        let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        if get("Type") != Some("instant") {
            return None;
        }
        let total = get("TargetCapacitySpecification.TotalTargetCapacity")?.parse().ok()?;
        let capacity_type = match get("TargetCapacitySpecification.DefaultTargetCapacityType") {
            Some("spot") => CapacityType::Spot,
            _ => CapacityType::OnDemand,
        };
        let mut overrides: BTreeMap<(String, u32), FleetOverride> = BTreeMap::new();
        let mut templates: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for (key, value) in params {
            let Some(rest) = key.strip_prefix("LaunchTemplateConfigs.") else { continue };
            let mut parts = rest.splitn(2, '.');
            let (Some(config), Some(field)) = (parts.next(), parts.next()) else { continue };
            if let Some(spec) = field.strip_prefix("LaunchTemplateSpecification.") {
                templates.entry(config.to_owned()).or_default().push((spec.to_owned(), value.clone()));
            } else if let Some(over) = field.strip_prefix("Overrides.") {
                let mut parts = over.splitn(2, '.');
                let (Some(index), Some(name)) = (parts.next(), parts.next()) else { continue };
                let index: u32 = index.parse().unwrap_or(0);
                let entry = overrides.entry((config.to_owned(), index)).or_insert_with(|| FleetOverride {
                    config_index: config.to_owned(),
                    instance_type: String::new(),
                    subnet_id: None,
                    availability_zone: None,
                    priority: f64::from(index),
                });
                match name {
                    "InstanceType" => entry.instance_type = value.clone(),
                    "SubnetId" => entry.subnet_id = Some(value.clone()),
                    "AvailabilityZone" => entry.availability_zone = Some(value.clone()),
                    "Priority" => entry.priority = value.parse().unwrap_or(entry.priority),
                    _ => {}
                }
            }
        }
        let mut overrides: Vec<FleetOverride> =
            overrides.into_values().filter(|o| !o.instance_type.is_empty()).collect();
        // EC2 tries prioritized overrides in priority order; the stable sort keeps request order among equals.
        overrides.sort_by(|a, b| a.priority.total_cmp(&b.priority));
        Some(Self { total, capacity_type, overrides, templates, instance_tags: instance_tags(params) })
    }
}

/// The `TagSpecification` entries for instances, renumbered, so that launched instances carry them.
pub(super) fn instance_tags(params: &[(String, String)]) -> Vec<(String, String)> {
    let mut by_index: BTreeMap<u32, Vec<(String, String)>> = BTreeMap::new();
    for (key, value) in params {
        let Some(rest) = key.strip_prefix("TagSpecification.") else { continue };
        let mut parts = rest.splitn(2, '.');
        let (Some(index), Some(field)) = (parts.next().and_then(|i| i.parse().ok()), parts.next()) else { continue };
        by_index.entry(index).or_default().push((field.to_owned(), value.clone()));
    }
    by_index
        .into_values()
        .filter(|fields| fields.iter().any(|(k, v)| k == "ResourceType" && v == "instance"))
        .enumerate()
        .flat_map(|(i, fields)| fields.into_iter().map(move |(k, v)| (format!("TagSpecification.{}.{k}", i + 1), v)))
        .collect()
}

/// The shortage answer for one offering, in EC2's words.
pub(super) fn shortage(offering: &Offering) -> AwsError {
    match offering.capacity_type {
        CapacityType::Spot => AwsError::no_spot_capacity(),
        CapacityType::OnDemand => {
            AwsError::insufficient_instance_capacity(&offering.instance_type, &offering.availability_zone, &[])
        }
    }
}

/// Every `<tag>value</tag>` in an XML text, in order.
pub(super) fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(after[..end].to_owned());
        rest = &after[end + close.len()..];
    }
    out
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// One `launchTemplateAndOverrides` element.
pub(super) fn template_and_overrides(
    template: &[(String, String)],
    offering: &Offering,
    over: &FleetOverride,
) -> String {
    let spec: String = template
        .iter()
        .filter_map(|(k, v)| {
            let tag = match k.as_str() {
                "LaunchTemplateName" => "launchTemplateName",
                "LaunchTemplateId" => "launchTemplateId",
                "Version" => "version",
                _ => return None,
            };
            Some(format!("<{tag}>{}</{tag}>", xml_escape(v)))
        })
        .collect();
    let subnet = over.subnet_id.as_ref().map(|s| format!("<subnetId>{}</subnetId>", xml_escape(s))).unwrap_or_default();
    format!(
        "<launchTemplateAndOverrides><launchTemplateSpecification>{spec}</launchTemplateSpecification><overrides>\
         <instanceType>{}</instanceType>{subnet}<availabilityZone>{}</availabilityZone><priority>{}</priority>\
         </overrides></launchTemplateAndOverrides>",
        xml_escape(&offering.instance_type),
        xml_escape(&offering.availability_zone),
        over.priority
    )
}

pub(super) fn lifecycle(capacity_type: CapacityType) -> &'static str {
    match capacity_type {
        CapacityType::Spot => "spot",
        CapacityType::OnDemand => "on-demand",
    }
}

pub(super) fn error_item(
    template: &[(String, String)],
    offering: &Offering,
    over: &FleetOverride,
    error: &AwsError,
) -> String {
    format!(
        "<item>{}<lifecycle>{}</lifecycle><errorCode>{}</errorCode><errorMessage>{}</errorMessage></item>",
        template_and_overrides(template, offering, over),
        lifecycle(offering.capacity_type),
        xml_escape(&error.code),
        xml_escape(&error.message)
    )
}

pub(super) fn instance_item(
    template: &[(String, String)],
    offering: &Offering,
    over: &FleetOverride,
    ids: &[String],
) -> String {
    let ids: String = ids.iter().map(|id| format!("<item>{}</item>", xml_escape(id))).collect();
    format!(
        "<item>{}<lifecycle>{}</lifecycle><instanceIds>{ids}</instanceIds><instanceType>{}</instanceType></item>",
        template_and_overrides(template, offering, over),
        lifecycle(offering.capacity_type),
        xml_escape(&offering.instance_type)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn reads_an_instant_fleet_request_in_priority_order() {
        let request = FleetRequest::parse(&params(&[
            ("Action", "CreateFleet"),
            ("Type", "instant"),
            ("TargetCapacitySpecification.TotalTargetCapacity", "3"),
            ("TargetCapacitySpecification.DefaultTargetCapacityType", "on-demand"),
            ("LaunchTemplateConfigs.1.LaunchTemplateSpecification.LaunchTemplateName", "worker"),
            ("LaunchTemplateConfigs.1.LaunchTemplateSpecification.Version", "$Latest"),
            ("LaunchTemplateConfigs.1.Overrides.1.InstanceType", "g4dn.xlarge"),
            ("LaunchTemplateConfigs.1.Overrides.1.SubnetId", "subnet-a"),
            ("LaunchTemplateConfigs.1.Overrides.1.Priority", "1"),
            ("LaunchTemplateConfigs.1.Overrides.2.InstanceType", "g5.xlarge"),
            ("LaunchTemplateConfigs.1.Overrides.2.SubnetId", "subnet-b"),
            ("LaunchTemplateConfigs.1.Overrides.2.Priority", "0"),
            ("TagSpecification.1.ResourceType", "fleet"),
            ("TagSpecification.1.Tag.1.Key", "ignored"),
            ("TagSpecification.2.ResourceType", "instance"),
            ("TagSpecification.2.Tag.1.Key", "gameforge:fleet"),
            ("TagSpecification.2.Tag.1.Value", "sdxl"),
        ]))
        .unwrap();
        assert_eq!((request.total, request.capacity_type), (3, CapacityType::OnDemand));
        let types: Vec<_> = request.overrides.iter().map(|o| o.instance_type.as_str()).collect();
        assert_eq!(types, vec!["g5.xlarge", "g4dn.xlarge"]);
        assert_eq!(request.templates["1"].len(), 2);
        assert_eq!(
            request.instance_tags,
            params(&[
                ("TagSpecification.1.ResourceType", "instance"),
                ("TagSpecification.1.Tag.1.Key", "gameforge:fleet"),
                ("TagSpecification.1.Tag.1.Value", "sdxl"),
            ])
        );
        assert!(FleetRequest::parse(&params(&[("Type", "maintain")])).is_none());
    }

    #[test]
    fn a_launch_the_model_refuses_answers_the_models_error_or_a_shortage() {
        let model: CapacityModel = serde_json::from_str(
            r#"[{"capacity_type": "on_demand", "available": 0, "error": "VcpuLimitExceeded"},
                {"capacity_type": "spot", "available": 0}]"#,
        )
        .unwrap();
        let capacity = Ec2Capacity::new(model);
        let od = Offering::new("us-east-1", "us-east-1a", "g5.xlarge", CapacityType::OnDemand);
        let spot = Offering::new("us-east-1", "us-east-1a", "g5.xlarge", CapacityType::Spot);
        assert_eq!(capacity.refusal(&od).code, "VcpuLimitExceeded");
        assert_eq!(capacity.refusal(&spot).code, "InsufficientInstanceCapacity");
    }

    #[test]
    fn reservations_respect_the_model_and_what_runs() {
        let model: CapacityModel = serde_json::from_str(
            r#"[{"instance_type": "g5.xlarge", "availability_zone": "us-east-1a", "available": 2}]"#,
        )
        .unwrap();
        let mut capacity = Ec2Capacity::new(model);
        let g5a = Offering::new("us-east-1", "us-east-1a", "g5.xlarge", CapacityType::Spot);
        assert_eq!(capacity.reserve(&g5a, 5), 2);
        assert_eq!(capacity.reserve(&g5a, 1), 0, "both slots are promised");
        capacity.settle(&g5a, 2, &["i-1".into(), "i-2".into()]);
        assert_eq!(capacity.reserve(&g5a, 1), 0);
        capacity.terminated(&["i-1".into()]);
        assert_eq!(capacity.reserve(&g5a, 1), 1);
    }

    #[test]
    fn finds_values_in_xml() {
        let xml = "<a><instanceId>i-1</instanceId><x/><instanceId>i-2</instanceId></a>";
        assert_eq!(xml_values(xml, "instanceId"), vec!["i-1", "i-2"]);
    }
}
