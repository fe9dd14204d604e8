//! Metrics as CloudWatch Embedded Metric Format: one JSON line on stdout per unit of work, which CloudWatch
//! Logs turns into metrics without an API call on the hot path.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    CountPerSecond,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::CountPerSecond => "Count/Second",
        }
    }
}

/// One EMF record: metrics under one namespace and one set of dimensions.
#[derive(Debug, Clone)]
pub struct Metrics {
    namespace: String,
    dimensions: BTreeMap<String, String>,
    values: BTreeMap<String, (f64, Unit)>,
}

impl Metrics {
    pub fn new(namespace: impl Into<String>) -> Self {
        Self { namespace: namespace.into(), dimensions: BTreeMap::new(), values: BTreeMap::new() }
    }

    pub fn dimension(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.dimensions.insert(name.into(), value.into());
        self
    }

    /// Adds to a count (counts of the same name in one record add up).
    pub fn count(&mut self, name: &str, n: u64) {
        let entry = self.values.entry(name.to_owned()).or_insert((0.0, Unit::Count));
        entry.0 += n as f64;
    }

    pub fn duration(&mut self, name: &str, value: Duration) {
        self.values.insert(name.to_owned(), (value.as_secs_f64() * 1000.0, Unit::Milliseconds));
    }

    /// A rate, such as denoising steps per second.
    pub fn rate(&mut self, name: &str, per_second: f64) {
        self.values.insert(name.to_owned(), (per_second, Unit::CountPerSecond));
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.get(name).map(|(v, _)| *v)
    }

    pub fn to_emf(&self, timestamp: SystemTime) -> Value {
        let millis = timestamp.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        let mut record = Map::new();
        record.insert(
            "_aws".into(),
            json!({
                "Timestamp": millis,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [self.dimensions.keys().collect::<Vec<_>>()],
                    "Metrics": self.values.iter().map(|(name, (_, unit))| json!({"Name": name, "Unit": unit.name()})).collect::<Vec<_>>(),
                }],
            }),
        );
        for (name, value) in &self.dimensions {
            record.insert(name.clone(), json!(value));
        }
        for (name, (value, _)) in &self.values {
            record.insert(name.clone(), json!(value));
        }
        Value::Object(record)
    }

    /// Writes the record as one line on stdout, where the Lambda and ECS log drivers pick it up.
    pub fn emit(&self) {
        println!("{}", self.to_emf(SystemTime::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_embedded_metric_format() {
        let mut metrics = Metrics::new("gameforge").dimension("function", "on-signal");
        metrics.count("records", 3);
        metrics.count("records", 2);
        metrics.duration("batch_latency", Duration::from_millis(12));
        let emf = metrics.to_emf(UNIX_EPOCH + Duration::from_millis(1_700_000_000_000));
        assert_eq!(emf["_aws"]["Timestamp"], 1_700_000_000_000_u64);
        assert_eq!(emf["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["function"]]));
        assert_eq!(emf["function"], "on-signal");
        assert_eq!(emf["records"], 5.0);
        assert_eq!(emf["batch_latency"], 12.0);
        let names: Vec<_> = emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].clone())
            .collect();
        assert_eq!(names, vec![json!("batch_latency"), json!("records")]);
    }
}
