//! An HTTP proxy in front of the emulator that answers chosen requests with real AWS error bodies, after an
//! optional delay, and forwards everything else untouched (the `Host` header included, so that the URLs the
//! emulator hands out point back through the proxy).

mod ec2_capacity;
mod protocol;
mod request;
mod rules;
mod s3_region;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use ec2_capacity::{Ec2Capacity, FleetRequest};
use gameforge_capacity::CapacityModel;
use gameforge_contract::CapacityType;
use gameforge_planner::Offering;
pub use protocol::AwsError;
pub use request::{Protocol, RequestInfo, S3Target};
use rules::RuleSet;
pub use rules::{Answer, Rule, RuleHandle};

use crate::Error;
use crate::http_server::LoopbackServer;
use crate::iam::Iam;

/// One request as the proxy saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub service: Option<String>,
    pub action: Option<String>,
    pub region: Option<String>,
    pub status: u16,
    /// Answered by a rule rather than by the emulator.
    pub injected: bool,
    /// When the request arrived.
    pub received_at: std::time::Instant,
}

/// A launch call the capacity emulation answered: what CloudTrail records of it (and, for calls with errors,
/// what AWS publishes to EventBridge as an `AWS API Call via CloudTrail` event).
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchCall {
    /// `CreateFleet` or `RunInstances`.
    pub action: String,
    pub region: String,
    pub capacity_type: CapacityType,
    pub at: std::time::SystemTime,
    /// Offerings that launched, with their subnet and instance ids.
    pub launched: Vec<(Offering, Option<String>, Vec<String>)>,
    /// Offerings that failed, with their subnet and EC2's error.
    pub failed: Vec<(Offering, Option<String>, AwsError)>,
}

/// A handle on the injector's launch calls.
#[derive(Debug, Clone)]
pub struct LaunchLog(Arc<Shared>);

impl LaunchLog {
    /// Every launch call answered so far, from the `from`th on (a reader keeps its place).
    pub fn since(&self, from: usize) -> Vec<LaunchCall> {
        let launches = self.0.launches.lock().unwrap_or_else(|p| p.into_inner());
        launches.get(from..).map(<[LaunchCall]>::to_vec).unwrap_or_default()
    }
}

#[derive(Debug)]
struct Shared {
    iam: Iam,
    buckets: s3_region::BucketRegions,
    rules: Mutex<RuleSet>,
    log: Mutex<Vec<RequestRecord>>,
    capacity: Mutex<Option<Ec2Capacity>>,
    launches: Mutex<Vec<LaunchCall>>,
    /// Applied Service Quotas values by `(region, service code, quota code)`; the emulator has none of its own.
    quotas: Mutex<std::collections::BTreeMap<(String, String, String), f64>>,
}

/// The running proxy. Dropping it stops it.
#[derive(Debug)]
pub struct FaultInjector {
    server: LoopbackServer,
    shared: Arc<Shared>,
}

const LOG_LIMIT: usize = 100_000;

impl FaultInjector {
    /// Starts a proxy on an ephemeral loopback port that forwards to `upstream_port`.
    pub fn start(upstream_port: u16) -> Result<Self, Error> {
        let shared = Arc::new(Shared {
            iam: Iam::new(upstream_port),
            buckets: s3_region::BucketRegions::new(upstream_port),
            rules: Mutex::default(),
            log: Mutex::default(),
            capacity: Mutex::default(),
            launches: Mutex::default(),
            quotas: Mutex::default(),
        });
        let state = shared.clone();
        let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let server = LoopbackServer::start("fault-injector", move |request| {
            handle(state.clone(), client.clone(), upstream_port, request)
        })
        .map_err(|e| Error::Emulator(format!("fault injector: {e}")))?;
        Ok(Self { server, shared })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The IAM enforcement in front of the emulator.
    pub fn iam(&self) -> &Iam {
        &self.shared.iam
    }

    /// Installs a rule after the existing ones; the first matching rule that is not used up decides.
    pub fn add(&self, rule: Rule) -> RuleHandle {
        self.shared.rules.lock().unwrap_or_else(|p| p.into_inner()).add(rule)
    }

    /// Sets what Service Quotas answers for a quota in a region (`ec2`, `L-DB2E81BA`: on-demand G and VT vCPUs).
    /// A quota never set is answered as AWS answers one it does not know (`NoSuchResourceException`).
    pub fn set_service_quota(&self, region: &str, service: &str, quota: &str, value: f64) {
        let mut quotas = self.shared.quotas.lock().unwrap_or_else(|p| p.into_inner());
        quotas.insert((region.to_owned(), service.to_owned(), quota.to_owned()), value);
    }

    /// Removes every rule and the capacity model, and forgets the request log.
    pub fn clear(&self) {
        self.shared.rules.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.shared.log.lock().unwrap_or_else(|p| p.into_inner()).clear();
        *self.shared.capacity.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.shared.buckets.forget();
    }

    /// Makes EC2 answer launches as the model says capacity allows: `RunInstances` fails with
    /// `InsufficientInstanceCapacity` where there is no room, and an instant `CreateFleet` launches what fits
    /// and reports an error for each override without room. The model's timeline starts now; instances launched
    /// before keep counting. Installing a new model keeps what runs.
    pub fn set_capacity(&self, model: CapacityModel) {
        let mut capacity = self.shared.capacity.lock().unwrap_or_else(|p| p.into_inner());
        match capacity.as_mut() {
            Some(existing) => {
                existing.model = model;
                existing.epoch = std::time::Instant::now();
            }
            None => *capacity = Some(Ec2Capacity::new(model)),
        }
    }

    /// Every request so far (the latest 100,000), in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The launch calls the capacity emulation answers, readable from anywhere (a CloudTrail feed runs on a task
    /// of its own).
    pub fn launch_log(&self) -> LaunchLog {
        LaunchLog(self.shared.clone())
    }

    /// How many requests for `service` / `action` arrived, injected or not.
    pub fn count(&self, service: &str, action: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.service.as_deref() == Some(service) && r.action.as_deref() == Some(action))
            .count()
    }
}

async fn handle(
    shared: Arc<Shared>,
    client: Client<HttpConnector, Full<Bytes>>,
    upstream_port: u16,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let received_at = std::time::Instant::now();
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let info = request::RequestInfo::read(&parts, body.clone());
    // IAM comes first: AWS refuses a call its caller may not make before anything else can happen to it.
    if let Err(denial) = shared.iam.authorize(&info).await {
        let response = render(&denial.aws_error(info.service.as_deref()), info.protocol, info.service.as_deref());
        record(&shared, &info, response.status().as_u16(), true, received_at);
        return response;
    }
    if let (Some(target), Some(region)) = (&info.s3_target, &info.region)
        && let Some((error, bucket_region)) = shared.buckets.misdirected(&target.bucket, region).await
    {
        let mut response = render(&error, info.protocol, info.service.as_deref());
        if let Ok(value) = hyper::header::HeaderValue::from_str(&bucket_region) {
            response.headers_mut().insert("x-amz-bucket-region", value);
        }
        record(&shared, &info, response.status().as_u16(), true, received_at);
        return response;
    }
    let effect = shared.rules.lock().unwrap_or_else(|p| p.into_inner()).decide(&info);

    if let Some(delay) = effect.as_ref().and_then(|e| e.delay) {
        tokio::time::sleep(delay).await;
    }
    let (response, injected) = match effect.map(|e| e.answer) {
        Some(Answer::Fail(error)) => (render(&error, info.protocol, info.service.as_deref()), true),
        Some(Answer::Forward) => (forward(&client, upstream_port, parts, body).await, false),
        None => match emulate_ec2(&shared, &client, upstream_port, &parts, &info).await {
            Some(response) => response,
            None => match service_quota(&shared, &info) {
                Some(response) => (response, true),
                None => (forward(&client, upstream_port, parts, body).await, false),
            },
        },
    };
    record(&shared, &info, response.status().as_u16(), injected, received_at);
    response
}

fn render(error: &AwsError, protocol: Protocol, service: Option<&str>) -> Response<Full<Bytes>> {
    let (status, headers, text) = error.render(protocol, service);
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    builder.body(Full::new(Bytes::from(text))).unwrap_or_default()
}

fn record(shared: &Shared, info: &request::RequestInfo, status: u16, injected: bool, received_at: std::time::Instant) {
    let mut log = shared.log.lock().unwrap_or_else(|p| p.into_inner());
    if log.len() >= LOG_LIMIT {
        log.drain(..LOG_LIMIT / 10);
    }
    log.push(RequestRecord {
        service: info.service.clone(),
        action: info.action.clone(),
        region: info.region.clone(),
        status,
        injected,
        received_at,
    });
}

async fn forward(
    client: &Client<HttpConnector, Full<Bytes>>,
    upstream_port: u16,
    parts: hyper::http::request::Parts,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut upstream = Request::builder().method(parts.method).uri(format!("http://127.0.0.1:{upstream_port}{path}"));
    for (name, value) in &parts.headers {
        if name != hyper::header::TRANSFER_ENCODING && name != hyper::header::CONTENT_LENGTH {
            upstream = upstream.header(name, value);
        }
    }
    let Ok(upstream) = upstream.body(Full::new(body)) else {
        return bad_gateway("could not build the upstream request");
    };
    match client.request(upstream).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            parts.headers.remove(hyper::header::TRANSFER_ENCODING);
            parts.headers.remove(hyper::header::CONTENT_LENGTH);
            Response::from_parts(parts, Full::new(body))
        }
        Err(e) => bad_gateway(&format!("emulator unreachable: {e}")),
    }
}

fn bad_gateway(reason: &str) -> Response<Full<Bytes>> {
    Response::builder().status(502).body(Full::new(Bytes::from(reason.to_owned()))).unwrap_or_default()
}

/// `GetServiceQuota`, which the emulator does not serve, answered from the quotas a test set.
fn service_quota(shared: &Shared, info: &request::RequestInfo) -> Option<Response<Full<Bytes>>> {
    if info.service.as_deref() != Some("servicequotas") || info.action.as_deref() != Some("GetServiceQuota") {
        return None;
    }
    let param = |name: &str| info.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let (service, quota) = (param("ServiceCode"), param("QuotaCode"));
    let region = info.region.clone().unwrap_or_else(|| "us-east-1".into());
    let value = shared
        .quotas
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&(region.clone(), service.clone(), quota.clone()))
        .copied();
    let (status, body) = match value {
        Some(value) => (
            200,
            serde_json::json!({"Quota": {
                "ServiceCode": service,
                "QuotaCode": quota,
                "QuotaArn": format!("arn:aws:servicequotas:{region}:{}:{service}/{quota}", crate::iam::calls::ACCOUNT),
                "Value": value,
                "Unit": "None",
                "Adjustable": true,
                "GlobalQuota": false,
            }}),
        ),
        None => (
            400,
            serde_json::json!({"__type": "NoSuchResourceException", "message": format!("The request failed because the specified quota {service}/{quota} does not exist.")}),
        ),
    };
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .body(Full::new(Bytes::from(body.to_string())))
        .ok()
}

/// Launch and terminate calls while a capacity model is installed. `None` lets the request through unchanged.
async fn emulate_ec2(
    shared: &Shared,
    client: &Client<HttpConnector, Full<Bytes>>,
    port: u16,
    parts: &hyper::http::request::Parts,
    info: &request::RequestInfo,
) -> Option<(Response<Full<Bytes>>, bool)> {
    if info.service.as_deref() != Some("ec2") || shared.capacity.lock().unwrap_or_else(|p| p.into_inner()).is_none() {
        return None;
    }
    let moto = Moto { client, port, parts, region: info.region.clone().unwrap_or_else(|| "us-east-1".into()) };
    match info.action.as_deref() {
        Some("RunInstances") => run_instances(shared, &moto, &info.params).await,
        Some("CreateFleet") => create_fleet(shared, &moto, &info.params).await,
        Some("TerminateInstances") => {
            let ids: Vec<String> =
                info.params.iter().filter(|(k, _)| k.starts_with("InstanceId.")).map(|(_, v)| v.clone()).collect();
            if let Some(capacity) = shared.capacity.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                capacity.terminated(&ids);
            }
            None
        }
        _ => None,
    }
}

/// Calls the emulator on behalf of an intercepted request, with its credentials.
struct Moto<'a> {
    client: &'a Client<HttpConnector, Full<Bytes>>,
    port: u16,
    parts: &'a hyper::http::request::Parts,
    region: String,
}

impl Moto<'_> {
    async fn call(&self, params: &[(String, String)]) -> Result<String, String> {
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        let mut request = Request::builder()
            .method("POST")
            .uri(format!("http://127.0.0.1:{}/", self.port))
            .header("content-type", "application/x-www-form-urlencoded; charset=utf-8");
        for name in ["authorization", "host", "x-amz-date", "user-agent"] {
            if let Some(value) = self.parts.headers.get(name) {
                request = request.header(name, value);
            }
        }
        let request = request.body(Full::new(Bytes::from(body))).map_err(|e| e.to_string())?;
        let response = self.client.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let text = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let text = String::from_utf8_lossy(&text).into_owned();
        if status.is_success() { Ok(text) } else { Err(text) }
    }

    async fn zone_of(&self, shared: &Shared, subnet: &str) -> Option<String> {
        if let Some(zone) = shared
            .capacity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|c| c.zones.get(subnet).cloned())
        {
            return Some(zone);
        }
        let params = [("Action", "DescribeSubnets"), ("Version", "2016-11-15"), ("SubnetId.1", subnet)]
            .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let zone = ec2_capacity::xml_values(&self.call(&params).await.ok()?, "availabilityZone").into_iter().next()?;
        if let Some(capacity) = shared.capacity.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            capacity.zones.insert(subnet.to_owned(), zone.clone());
        }
        Some(zone)
    }

    fn ec2_error(&self, error: &AwsError) -> (Response<Full<Bytes>>, bool) {
        (render(error, Protocol::Ec2Query, Some("ec2")), true)
    }
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Why a launch on `offering` got nothing: the error the capacity model names for it, or a shortage.
fn refusal(shared: &Shared, offering: &Offering) -> AwsError {
    let capacity = shared.capacity.lock().unwrap_or_else(|p| p.into_inner());
    capacity.as_ref().map_or_else(|| ec2_capacity::shortage(offering), |c| c.refusal(offering))
}

fn reserve(shared: &Shared, offering: &Offering, wanted: u32) -> u32 {
    shared.capacity.lock().unwrap_or_else(|p| p.into_inner()).as_mut().map_or(wanted, |c| c.reserve(offering, wanted))
}

fn settle(shared: &Shared, offering: &Offering, reserved: u32, ids: &[String]) {
    if let Some(capacity) = shared.capacity.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
        capacity.settle(offering, reserved, ids);
    }
}

async fn run_instances(
    shared: &Shared,
    moto: &Moto<'_>,
    params: &[(String, String)],
) -> Option<(Response<Full<Bytes>>, bool)> {
    let instance_type = param(params, "InstanceType")?;
    let zone = match param(params, "Placement.AvailabilityZone") {
        Some(zone) => zone.to_owned(),
        None => moto.zone_of(shared, param(params, "SubnetId")?).await?,
    };
    let capacity_type = if param(params, "InstanceMarketOptions.MarketType") == Some("spot") {
        CapacityType::Spot
    } else {
        CapacityType::OnDemand
    };
    let offering = Offering::new(&moto.region, &zone, instance_type, capacity_type);
    let min: u32 = param(params, "MinCount").and_then(|v| v.parse().ok()).unwrap_or(1);
    let max: u32 = param(params, "MaxCount").and_then(|v| v.parse().ok()).unwrap_or(min);
    let room = reserve(shared, &offering, max);
    let subnet = param(params, "SubnetId").map(str::to_owned);
    let mut call = LaunchCall {
        action: "RunInstances".into(),
        region: moto.region.clone(),
        capacity_type,
        at: std::time::SystemTime::now(),
        launched: Vec::new(),
        failed: Vec::new(),
    };
    if room < min.max(1) {
        settle(shared, &offering, room, &[]);
        let error = refusal(shared, &offering);
        call.failed.push((offering, subnet, error.clone()));
        record_launch(shared, call);
        return Some(moto.ec2_error(&error));
    }
    let mut rewritten: Vec<(String, String)> =
        params.iter().filter(|(k, _)| k != "MaxCount" && k != "MinCount").cloned().collect();
    rewritten.push(("MinCount".into(), min.min(room).to_string()));
    rewritten.push(("MaxCount".into(), room.to_string()));
    match moto.call(&rewritten).await {
        Ok(text) => {
            let ids = ec2_capacity::xml_values(&text, "instanceId");
            settle(shared, &offering, room, &ids);
            call.launched.push((offering, subnet, ids));
            record_launch(shared, call);
            Some((ok_xml(text), false))
        }
        Err(text) => {
            settle(shared, &offering, room, &[]);
            Some((Response::builder().status(400).body(Full::new(Bytes::from(text))).unwrap_or_default(), false))
        }
    }
}

async fn create_fleet(
    shared: &Shared,
    moto: &Moto<'_>,
    params: &[(String, String)],
) -> Option<(Response<Full<Bytes>>, bool)> {
    let fleet = FleetRequest::parse(params)?;
    let mut call = LaunchCall {
        action: "CreateFleet".into(),
        region: moto.region.clone(),
        capacity_type: fleet.capacity_type,
        at: std::time::SystemTime::now(),
        launched: Vec::new(),
        failed: Vec::new(),
    };
    let mut remaining = fleet.total;
    let mut errors = String::new();
    let mut instances = String::new();
    let no_template = Vec::new();
    for over in &fleet.overrides {
        if remaining == 0 {
            break;
        }
        let template = fleet.templates.get(&over.config_index).unwrap_or(&no_template);
        let zone = match (&over.availability_zone, &over.subnet_id) {
            (Some(zone), _) => Some(zone.clone()),
            (None, Some(subnet)) => moto.zone_of(shared, subnet).await,
            (None, None) => None,
        };
        let Some(zone) = zone else { continue };
        let offering = Offering::new(&moto.region, &zone, &over.instance_type, fleet.capacity_type);
        let got = reserve(shared, &offering, remaining);
        if got == 0 {
            let error = refusal(shared, &offering);
            errors.push_str(&ec2_capacity::error_item(template, &offering, over, &error));
            call.failed.push((offering, over.subnet_id.clone(), error));
            continue;
        }
        let mut run: Vec<(String, String)> = vec![
            ("Action".into(), "RunInstances".into()),
            ("Version".into(), "2016-11-15".into()),
            ("MinCount".into(), got.to_string()),
            ("MaxCount".into(), got.to_string()),
            ("InstanceType".into(), over.instance_type.clone()),
        ];
        match &over.subnet_id {
            Some(subnet) => run.push(("SubnetId".into(), subnet.clone())),
            None => run.push(("Placement.AvailabilityZone".into(), zone.clone())),
        }
        run.extend(template.iter().map(|(k, v)| (format!("LaunchTemplate.{k}"), v.clone())));
        if fleet.capacity_type == CapacityType::Spot {
            run.push(("InstanceMarketOptions.MarketType".into(), "spot".into()));
        }
        run.extend(fleet.instance_tags.iter().cloned());
        match moto.call(&run).await {
            Ok(text) => {
                let ids = ec2_capacity::xml_values(&text, "instanceId");
                settle(shared, &offering, got, &ids);
                remaining = remaining.saturating_sub(ids.len() as u32);
                instances.push_str(&ec2_capacity::instance_item(template, &offering, over, &ids));
                call.launched.push((offering, over.subnet_id.clone(), ids));
            }
            Err(text) => {
                settle(shared, &offering, got, &[]);
                let code = ec2_capacity::xml_values(&text, "Code")
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| "InternalError".into());
                let message = ec2_capacity::xml_values(&text, "Message").into_iter().next().unwrap_or_default();
                let error = AwsError::new(400, code, message);
                errors.push_str(&ec2_capacity::error_item(template, &offering, over, &error));
                call.failed.push((offering, over.subnet_id.clone(), error));
            }
        }
    }
    record_launch(shared, call);
    let fleet_id =
        format!("fleet-{:08x}-{:04x}", std::process::id(), shared.log.lock().unwrap_or_else(|p| p.into_inner()).len());
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CreateFleetResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
         <requestId>{fleet_id}-request</requestId><fleetId>{fleet_id}</fleetId><errorSet>{errors}</errorSet>\
         <fleetInstanceSet>{instances}</fleetInstanceSet></CreateFleetResponse>"
    );
    Some((ok_xml(xml), !errors.is_empty()))
}

fn record_launch(shared: &Shared, call: LaunchCall) {
    let mut launches = shared.launches.lock().unwrap_or_else(|p| p.into_inner());
    if launches.len() < LOG_LIMIT {
        launches.push(call);
    }
}

fn ok_xml(text: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(200)
        .header("content-type", "text/xml;charset=UTF-8")
        .body(Full::new(Bytes::from(text)))
        .unwrap_or_default()
}
