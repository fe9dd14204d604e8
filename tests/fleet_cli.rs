//! `gameforge fleet` against the emulator, through the executor: the CLI acts with the template's OperatorPolicy
//! (enforced), its instructions travel the control queue to an executor acting with its own role, and what the
//! CLI reads back is what that executor kept in the ledger.

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use executor::aws::{AwsClock, AwsWorld, Resources};
use gameforge_contract::{ControlJob, Message};
use gameforge_engine::Executor;
use gameforge_localaws::{Deployment, Emulator, RoleCredentials};
use gameforge_planner::FleetConfig;
use serde_json::Value;
use support::binary;

mod support;

struct Rig {
    emulator: Emulator,
    deployment: Deployment,
    operator: RoleCredentials,
    feeder: tokio::task::JoinHandle<()>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.feeder.abort();
    }
}

async fn rig() -> Rig {
    let emulator = Emulator::start().unwrap();
    let config = emulator.sdk_config().await;
    let deployment = Deployment::deploy(&config, "gf").await.unwrap();
    let mut fleet: Value =
        serde_json::from_slice(&std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/fleet.json")).unwrap())
            .unwrap();
    fleet["regions"] = serde_json::json!([deployment.stamp]);
    fleet["home_region"] = deployment.stamp.region.clone().into();
    let fleet = FleetConfig::from_json(fleet.to_string().as_bytes()).unwrap();
    let executor_role = emulator.assume_role(&deployment.role_name("executor"), "executor").await.unwrap();
    let executor_config = emulator.sdk_config_as(&executor_role, &deployment.stamp.region).await;
    let resources = Resources {
        ledger_table: deployment.ledger_table.clone(),
        job_queue_url: deployment.job_queue_url.clone(),
        any_tier_queue_url: Some(deployment.any_tier_queue_url.clone()),
        retry_queue_url: deployment.control_retry_url.clone(),
        alert_bus: "default".into(),
    };
    let executor =
        Arc::new(Executor::new(fleet, AwsWorld::new(executor_config.clone(), resources, AwsClock::System), "test"));
    // The control queue's event source, as Lambda polls it with the executor's role.
    let sqs = aws_sdk_sqs::Client::new(&executor_config);
    let queue = deployment.control_queue_url.clone();
    let feeder = tokio::spawn(async move {
        loop {
            let Ok(received) = sqs.receive_message().queue_url(&queue).wait_time_seconds(1).send().await else {
                continue;
            };
            for message in received.messages() {
                let job = ControlJob::from_json(message.body().unwrap_or_default().as_bytes()).unwrap();
                executor.handle(&job).await.unwrap();
                let receipt = message.receipt_handle().unwrap_or_default();
                sqs.delete_message().queue_url(&queue).receipt_handle(receipt).send().await.unwrap();
            }
        }
    });
    let policy = deployment.outputs["OperatorPolicyArn"].clone();
    let operator = emulator.role_with_policies("operator", &[&policy]).await.unwrap();
    Rig { emulator, deployment, operator, feeder }
}

impl Rig {
    async fn fleet(&self, args: &[&str]) -> Output {
        let mut command = tokio::process::Command::new(binary("gameforge"));
        command
            .arg("fleet")
            .args(args)
            .envs(self.emulator.env_as(&self.operator))
            .env("GAMEFORGE_LEDGER_TABLE", &self.deployment.ledger_table)
            .env("GAMEFORGE_CONTROL_QUEUE_URL", &self.deployment.control_queue_url);
        tokio::time::timeout(Duration::from_secs(120), command.output()).await.unwrap().unwrap()
    }
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_the_fleet_pauses_it_pins_it_and_reads_the_decisions_back() {
    let rig = rig().await;
    let before = rig.fleet(&["status"]).await;
    assert!(before.status.success(), "{}", text(&before));
    assert!(text(&before).contains("the executor has not run for it yet"), "{}", text(&before));

    let pause = rig.fleet(&["pause", "--by", "alice", "--reason", "incident 42", "--timeout", "60"]).await;
    assert!(pause.status.success(), "{}", text(&pause));
    assert!(text(&pause).contains("operator alice: launching paused"), "{}", text(&pause));

    let status = rig.fleet(&["status"]).await;
    assert!(text(&status).contains("launching  PAUSED by alice"), "{}", text(&status));
    assert!(text(&status).contains("region     us-east-1 since"), "{}", text(&status));
    let json: Value = serde_json::from_slice(&rig.fleet(&["status", "--json"]).await.stdout).unwrap();
    assert_eq!(json["fleet_state"]["launching"]["launching"], "paused");
    assert_eq!(json["fleet_state"]["operator"]["paused"]["reason"], "incident 42");

    let refused = rig.fleet(&["pin", "eu-west-9", "--by", "bob"]).await;
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused));
    assert!(text(&refused).contains("refused: eu-west-9 is not one of the fleet's regions"), "{}", text(&refused));
    let pinned = rig.fleet(&["pin", "us-east-1", "--by", "bob"]).await;
    assert!(text(&pinned).contains("pinned to us-east-1, where the fleet is"), "{}", text(&pinned));

    // The stack's outputs name the table, the queue and the fleet: nothing copied by hand.
    let by_stack = tokio::process::Command::new(binary("gameforge"))
        .args(["fleet", "status", "--stack", "gf"])
        .envs(rig.emulator.env_as(&rig.operator))
        .env_remove("GAMEFORGE_LEDGER_TABLE")
        .env_remove("GAMEFORGE_CONTROL_QUEUE_URL")
        .output()
        .await
        .unwrap();
    assert!(text(&by_stack).contains("fleet sdxl, as the executor saw it"), "{}", text(&by_stack));

    let resume = rig.fleet(&["resume", "--by", "alice"]).await;
    assert!(text(&resume).contains("launching resumed (paused by alice"), "{}", text(&resume));

    let explain = rig.fleet(&["explain"]).await;
    let explained = text(&explain);
    for expected in ["operator alice: launching paused", "operator bob: pinned to us-east-1", "operate job operator-"] {
        assert!(explained.contains(expected), "{expected:?} not in\n{explained}");
    }
    let lines: Vec<Value> = String::from_utf8_lossy(&rig.fleet(&["explain", "--json", "--last", "2"]).await.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["entries"][1]["action"]["kind"], "resume", "newest first: {lines:?}");
}

#[tokio::test]
async fn instructions_need_both_settings_and_a_silent_executor_is_reported_not_waited_for_forever() {
    let rig = rig().await;
    rig.feeder.abort();
    let out = tokio::process::Command::new(binary("gameforge"))
        .args(["fleet", "pause", "--reason", "x"])
        .env_remove("GAMEFORGE_LEDGER_TABLE")
        .env_remove("GAMEFORGE_CONTROL_QUEUE_URL")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("GAMEFORGE_LEDGER_TABLE (--ledger-table) is missing; GAMEFORGE_CONTROL_QUEUE_URL"),
        "{}",
        text(&out)
    );
    let out = rig.fleet(&["unpin", "--timeout", "2"]).await;
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(text(&out).contains("not applied after 2s"), "{}", text(&out));
}
