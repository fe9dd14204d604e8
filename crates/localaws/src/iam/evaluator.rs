//! The policy evaluator: `tools/iam-sim/evaluate.mjs` (AWS's evaluation logic, from the npm package
//! `@cloud-copilot/iam-simulate`) as a child process that answers one JSON line per question.
//!
//! The process is served by a thread of its own, so that callers on any runtime (or none) only wait for their
//! answer; it exits when its stdin closes, which happens when this process drops it or dies.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, tools};

/// One question: may `principal`, holding `identity_policies`, do `action` on `resource` in `context`?
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Question {
    pub principal: String,
    pub action: String,
    pub resource: String,
    pub account: String,
    pub context: serde_json::Map<String, Value>,
    pub identity_policies: Vec<NamedPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_policy: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NamedPolicy {
    pub name: String,
    pub policy: Value,
}

/// AWS's answer, with the evaluator's account of why when it is not an allow.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Verdict {
    pub decision: Decision,
    #[serde(default)]
    pub explain: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Decision {
    Allowed,
    ImplicitlyDenied,
    ExplicitlyDenied,
    /// The evaluator refused the question (an unknown action, a resource of the wrong type, a malformed
    /// policy): a defect in the emulator's model of a call or in a policy, never an allow.
    Invalid,
}

type Pending = (String, tokio::sync::oneshot::Sender<Verdict>);

#[derive(Debug)]
pub struct Evaluator {
    requests: mpsc::Sender<Pending>,
}

impl Evaluator {
    /// Starts the evaluator (installing it with the Python tools when missing).
    pub fn start() -> Result<Self, Error> {
        tools::venv_python()?;
        let root = tools::repo_root();
        let node = root.join(".venv/bin/node");
        let script = root.join("tools/iam-sim/evaluate.mjs");
        if !root.join("tools/iam-sim/node_modules/@cloud-copilot/iam-simulate").is_dir() {
            return Err(Error::Tools("the IAM evaluator is not installed (tools/ensure-venv.sh installs it)".into()));
        }
        let child = Command::new(&node)
            .arg(&script)
            .current_dir(root.join("tools/iam-sim"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| Error::Tools(format!("cannot start {}: {e}", node.display())))?;
        let (requests, queue) = mpsc::channel::<Pending>();
        std::thread::Builder::new()
            .name("iam-evaluator".into())
            .spawn(move || serve(child, script, queue))
            .map_err(|e| Error::Tools(format!("evaluator thread: {e}")))?;
        Ok(Self { requests })
    }

    pub async fn ask(&self, question: &Question) -> Verdict {
        let line = serde_json::to_string(question).unwrap_or_default();
        let (answer, answered) = tokio::sync::oneshot::channel();
        if self.requests.send((line, answer)).is_err() {
            return invalid("the IAM evaluator has stopped");
        }
        answered.await.unwrap_or_else(|_| invalid("the IAM evaluator stopped before answering"))
    }
}

fn invalid(why: &str) -> Verdict {
    Verdict { decision: Decision::Invalid, explain: why.to_owned() }
}

/// Answers questions in order; the process answers each line before reading the next.
fn serve(mut child: Child, script: PathBuf, queue: mpsc::Receiver<Pending>) {
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else { return };
    let mut stdout = BufReader::new(stdout);
    for (line, answer) in queue {
        let mut reply = String::new();
        let verdict =
            match writeln!(stdin, "{line}").and_then(|()| stdin.flush()).and_then(|()| stdout.read_line(&mut reply)) {
                Ok(n) if n > 0 => serde_json::from_str(&reply)
                    .unwrap_or_else(|e| invalid(&format!("unreadable answer from {}: {e}: {reply}", script.display()))),
                Ok(_) => invalid(&format!("{} exited", script.display())),
                Err(e) => invalid(&format!("{}: {e}", script.display())),
            };
        let _ = answer.send(verdict);
    }
    drop(stdin);
    let _ = child.wait();
}
