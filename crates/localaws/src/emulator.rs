use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::config::Credentials;
use gameforge_aws::config::AwsSettings;

use crate::injector::FaultInjector;
use crate::moto::MotoServer;
use crate::{Error, tools};

/// The region the emulator's clients use unless told otherwise.
pub const DEFAULT_REGION: &str = "us-east-1";

/// The moto server with the fault injector in front of it. Every client and child process is pointed at the
/// injector, so every request can be faulted.
#[derive(Debug)]
pub struct Emulator {
    // Field order is drop order: stop taking requests before the emulator goes.
    injector: FaultInjector,
    moto: MotoServer,
}

impl Emulator {
    /// Installs the emulator when missing, starts it and waits until it answers.
    pub fn start() -> Result<Self, Error> {
        let python = tools::venv_python()?;
        let log = tools::scratch_dir().join(format!("moto-{}-{}.log", std::process::id(), unique()));
        let moto = MotoServer::start(&python, &log)?;
        let injector = FaultInjector::start(moto.port())?;
        let emulator = Self { injector, moto };
        emulator.wait_until_ready()?;
        Ok(emulator)
    }

    /// `http://127.0.0.1:PORT` of the fault injector: what `AWS_ENDPOINT_URL` should be.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.injector.addr())
    }

    pub fn faults(&self) -> &FaultInjector {
        &self.injector
    }

    /// IAM enforcement for the roles assumed with [`Emulator::assume_role`].
    pub fn iam(&self) -> &crate::Iam {
        self.injector.iam()
    }

    pub fn moto_pid(&self) -> u32 {
        self.moto.pid()
    }

    /// Retries and timeouts of the tests' own clients: the binaries' defaults, which are what a deployment
    /// runs with (the emulator is no place to learn whether shorter waits would do).
    pub fn settings() -> AwsSettings {
        AwsSettings::default()
    }

    /// SDK configuration for `us-east-1` against the injector.
    pub async fn sdk_config(&self) -> SdkConfig {
        self.sdk_config_with(DEFAULT_REGION, &Self::settings()).await
    }

    pub async fn sdk_config_with(&self, region: &str, settings: &AwsSettings) -> SdkConfig {
        settings
            .apply(aws_config::defaults(BehaviorVersion::latest()))
            .endpoint_url(self.endpoint())
            .region(Region::new(region.to_owned()))
            .credentials_provider(Credentials::new("test", "test", None, None, "localaws"))
            .load()
            .await
    }

    /// The environment a child process needs to reach the emulator through the injector; its retry and timeout
    /// settings are its own defaults or what its deployment sets.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.endpoint()),
            ("AWS_REGION".into(), DEFAULT_REGION.into()),
            ("AWS_DEFAULT_REGION".into(), DEFAULT_REGION.into()),
            ("AWS_ACCESS_KEY_ID".into(), "test".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ]
    }

    /// Wipes every resource in the emulator, every fault rule and the request log.
    pub fn reset(&self) -> Result<(), Error> {
        self.injector.clear();
        let status = post(self.moto.port(), "/moto-api/reset")?;
        if status != 200 {
            return Err(Error::Emulator(format!("reset answered {status}")));
        }
        Ok(())
    }

    fn wait_until_ready(&self) -> Result<(), Error> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match get(self.injector.addr().port(), "/moto-api/data.json") {
                Ok(200) => return Ok(()),
                _ if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                other => return Err(Error::Emulator(format!("not ready after 30 s: {other:?}"))),
            }
        }
    }
}

/// A call IAM would deny is a defect of the template or of the code, whatever else the test checked: the
/// emulator fails its owner when it goes with denials nobody took (a test that expects some takes them).
impl Drop for Emulator {
    fn drop(&mut self) {
        let denials = self.injector.iam().take_denials();
        if denials.is_empty() || std::thread::panicking() {
            return;
        }
        let list: Vec<String> = denials.iter().map(|d| format!("  - {d}")).collect();
        panic!("IAM would have denied {} call(s):\n{}", denials.len(), list.join("\n"));
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn get(port: u16, path: &str) -> Result<u16, Error> {
    request(port, "GET", path)
}

fn post(port: u16, path: &str) -> Result<u16, Error> {
    request(port, "POST", path)
}

/// A bare HTTP/1.1 exchange, so that control calls work without an async runtime.
fn request(port: u16, method: &str, path: &str) -> Result<u16, Error> {
    let io = |e: std::io::Error| Error::Emulator(format!("{method} {path}: {e}"));
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(io)?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(io)?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(io)?;
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| Error::Emulator(format!("{method} {path}: unreadable answer")))
}
