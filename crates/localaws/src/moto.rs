//! The moto server as a child process that cannot outlive its parent.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use crate::Error;

/// Binds an ephemeral port itself (no race for a free port), reports it on stdout, and exits when its stdin
/// reaches end of file: that happens when the parent drops the pipe or dies for any reason, a panic or a
/// SIGKILL included, so no emulator is ever left behind.
const LAUNCHER: &str = r#"
import logging, os, sys
logging.getLogger("werkzeug").setLevel(logging.ERROR)
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print("moto-ready %d" % server.get_host_and_port()[1], flush=True)
sys.stdin.read()
os._exit(0)
"#;

#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    stdin: Option<ChildStdin>,
    port: u16,
}

impl MotoServer {
    pub fn start(python: &Path, log: &Path) -> Result<Self, Error> {
        let log_file =
            std::fs::File::create(log).map_err(|e| Error::Emulator(format!("log {}: {e}", log.display())))?;
        let mut child = Command::new(python)
            .args(["-c", LAUNCHER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .map_err(|e| Error::Emulator(format!("cannot start moto with {}: {e}", python.display())))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or_else(|| Error::Emulator("no stdout".into()))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so that nothing moto prints can ever block it on a full pipe.
            let _ = std::io::copy(&mut reader.take(u64::MAX), &mut std::io::sink());
        });
        let mut server = Self { child, stdin, port: 0 };
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        let port = line.trim().strip_prefix("moto-ready ").and_then(|p| p.parse().ok());
        match port {
            Some(port) => {
                server.port = port;
                Ok(server)
            }
            None => {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                let tail: String =
                    log.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
                Err(Error::Emulator(format!("moto did not start: {tail}")))
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SDK configuration that reaches moto directly, with the emulator's own key: for what the emulator itself
/// needs to know (a resource's tags, a bucket's region), neither faulted nor authorized by the injector.
pub fn direct_config(moto_port: u16) -> aws_config::SdkConfig {
    use aws_sdk_sqs::config::{Credentials, SharedCredentialsProvider};
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .endpoint_url(format!("http://127.0.0.1:{moto_port}"))
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "test",
            "test",
            None,
            None,
            "localaws-direct",
        )))
        .build()
}
