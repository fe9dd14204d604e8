//! The executor against the emulator, with capacity and faults injected in front of it.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use gameforge_aws::invocation::Deadline;
use gameforge_capacity::{CapacityModel, regional_shortage};
use gameforge_contract::ControlCommand;
use gameforge_engine::Handled;
use gameforge_engine::journal::Event;
use gameforge_engine::ports::LedgerStore;
use gameforge_localaws::{AwsError, Rule};
use gameforge_planner::Span;
use gameforge_planner::ledger::BlockCause;
use gameforge_planner::placement::MigrationReason;
use support::{journal, rig};

mod support;

const EAST: (&str, &[&str], bool) = ("us-east-1", &["us-east-1a", "us-east-1b", "us-east-1c"], true);
const WEST: (&str, &[&str], bool) = ("us-west-2", &["us-west-2a", "us-west-2b"], true);
const OHIO: (&str, &[&str], bool) = ("us-east-2", &["us-east-2a", "us-east-2b"], true);

fn shortage_everywhere_in(region: &str) -> CapacityModel {
    CapacityModel::new(regional_shortage(region, &["g5.xlarge", "g4dn.xlarge"], Span::ZERO, None))
}

fn migrations(handled: &Handled) -> Vec<(String, String, MigrationReason)> {
    journal(handled)
        .events()
        .filter_map(|e| match e {
            Event::Migrate { from, to, reason } => Some((from.clone(), to.clone(), reason.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_shortage_on_the_first_choice_is_answered_by_the_next_offering_in_the_same_round() {
    let rig = rig(&[EAST]).await;
    rig.emulator.faults().set_capacity(
        serde_json::from_str(r#"[{"region": "us-east-1", "availability_zone": "us-east-1a", "instance_type": "g5.xlarge", "available": 0}]"#)
            .unwrap(),
    );
    let executor = rig.executor("a");
    rig.add_jobs(8).await;
    let handled = rig.reconcile(&executor, "r1").await;

    assert_eq!(rig.create_fleet_calls("us-east-1"), 1, "one call, one round");
    let instances = rig.instances("us-east-1").await;
    assert_eq!(instances.len(), 1);
    assert_eq!((instances[0].1.as_str(), instances[0].3.as_str()), ("g5.xlarge", "spot"));
    assert_ne!(instances[0].2, "us-east-1a");
    let blocked: Vec<_> = journal(&handled)
        .events()
        .filter_map(|e| match e {
            Event::Blocked { offering, .. } => Some(offering.key()),
            _ => None,
        })
        .collect();
    assert_eq!(blocked, vec!["us-east-1/us-east-1a/g5.xlarge/spot"]);
    let (ledger, _) = executor.world().load_ledger("sdxl").await.unwrap();
    assert_eq!(ledger.offerings.len(), 1, "the failure is in the durable ledger");
}

#[tokio::test]
async fn a_whole_region_short_moves_the_fleet_to_the_best_ready_region() {
    // Ohio comes before Oregon in the configuration, but its model was never uploaded.
    let rig = rig(&[EAST, ("us-east-2", &["us-east-2a"], false), WEST]).await;
    rig.emulator.faults().set_capacity(shortage_everywhere_in("us-east-1"));
    let executor = rig.executor("a");
    rig.add_jobs(16).await;
    let handled = rig.reconcile(&executor, "r1").await;

    assert_eq!(migrations(&handled), vec![("us-east-1".into(), "us-west-2".into(), MigrationReason::Exhausted)]);
    assert_eq!(rig.instances("us-west-2").await.len(), 2);
    assert!(rig.instances("us-east-1").await.is_empty());
    assert!(rig.instances("us-east-2").await.is_empty());
    // The ECS service of the new region is sized to its workers.
    let ecs = aws_sdk_ecs::Client::new(&rig.config.to_builder().region(aws_config::Region::new("us-west-2")).build());
    let west = &rig.stamps[2];
    let services = ecs.describe_services().cluster(&west.ecs_cluster).services(&west.ecs_service).send().await.unwrap();
    assert_eq!(services.services()[0].desired_count(), 2);
}

#[tokio::test]
async fn a_quota_error_is_not_retried_as_a_shortage_and_raises_an_alert() {
    let rig = rig(&[EAST, WEST]).await;
    // Capture alerts as an operator's rule would.
    let sqs = aws_sdk_sqs::Client::new(&rig.config);
    let alerts = sqs.create_queue().queue_name("alerts").send().await.unwrap().queue_url.unwrap();
    let events = aws_sdk_eventbridge::Client::new(&rig.config);
    events.put_rule().name("alerts").event_pattern(r#"{"source": ["gameforge.executor"]}"#).send().await.unwrap();
    events
        .put_targets()
        .rule("alerts")
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("q")
                .arn("arn:aws:sqs:us-east-1:123456789012:alerts")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    rig.emulator.faults().add(
        Rule::for_service("ec2")
            .action("CreateFleet")
            .region("us-east-1")
            .fail(AwsError::max_spot_instance_count_exceeded()),
    );
    let executor = rig.executor("a");
    rig.add_jobs(8).await;
    let first = rig.reconcile(&executor, "r1").await;
    assert!(
        journal(&first).events().any(
            |e| matches!(e, Event::QuotaBlocked { error_code, .. } if error_code == "MaxSpotInstanceCountExceeded")
        )
    );
    let (ledger, _) = executor.world().load_ledger("sdxl").await.unwrap();
    let quota = ledger.quotas.values().next().expect("a quota block");
    assert!(quota.until >= rig.start + chrono::Duration::hours(6), "a quota stays out for hours, not minutes");

    // Minutes later the quota still keeps spot out of us-east-1: no second call there.
    rig.at(&executor, 5);
    rig.reconcile(&executor, "r2").await;
    assert_eq!(rig.create_fleet_calls("us-east-1"), 1);
    let delivered = gameforge_localaws::drain_queue(&rig.config, &alerts).await.unwrap();
    assert_eq!(delivered.len(), 1, "one alert, not one a minute");
    let alert: serde_json::Value = serde_json::from_str(delivered[0].body().unwrap()).unwrap();
    assert_eq!(
        (alert["source"].as_str(), alert["detail"]["kind"].as_str()),
        (Some("gameforge.executor"), Some("quota"))
    );
}

#[tokio::test]
async fn throttling_backs_off_before_the_next_round() {
    let rig = rig(&[EAST]).await;
    let throttle = rig.emulator.faults().add(Rule::for_service("ec2").action("CreateFleet").throttle());
    let executor = rig.executor("a");
    rig.add_jobs(8).await;
    let handled = rig.reconcile(&executor, "r1").await;
    let attempts = throttle.hits();
    assert_eq!(attempts, gameforge_localaws::Emulator::settings().max_attempts, "the SDK retried with backoff first");
    let retry = journal(&handled).events().find_map(|e| match e {
        Event::Retry { round, delay_s } => Some((*round, *delay_s)),
        _ => None,
    });
    let (round, delay) = retry.expect("a retry round is scheduled");
    assert_eq!(round, 1);
    assert!((1.0..=2.0).contains(&delay), "within the policy's cap: {delay}");

    // A reconcile within the backoff does not launch.
    rig.reconcile(&executor, "r2").await;
    assert_eq!(throttle.hits(), attempts);

    // The retry arrives on the retry queue after its delay, and launches once throttling stops.
    rig.emulator.faults().clear();
    let sqs = aws_sdk_sqs::Client::new(&rig.config);
    let received =
        sqs.receive_message().queue_url(&rig.deployment.control_retry_url).wait_time_seconds(5).send().await.unwrap();
    let job = gameforge_contract::Message::from_json(received.messages()[0].body().unwrap().as_bytes()).unwrap();
    rig.at(&executor, 1);
    executor.handle(&job).await.unwrap();
    assert_eq!(rig.instances("us-east-1").await.len(), 1);
}

#[tokio::test]
async fn two_executors_racing_on_one_fleet_act_once() {
    let rig = rig(&[EAST]).await;
    let (a, b) = (rig.executor("a"), rig.executor("b"));
    rig.add_jobs(16).await;
    let slow = rig
        .emulator
        .faults()
        .add(Rule::for_service("ec2").action("CreateFleet").delay(Duration::from_millis(500)).times(1));
    let (first, second) = tokio::join!(rig.reconcile(&a, "r-a"), rig.reconcile(&b, "r-b"));
    let busy = [&first, &second].iter().filter(|h| matches!(h, Handled::Busy { .. })).count();
    assert_eq!(busy, 1, "{first:?} / {second:?}");
    assert_eq!(slow.hits(), 1);
    assert_eq!(rig.create_fleet_calls("us-east-1"), 1);
    assert_eq!(rig.instances("us-east-1").await.len(), 2);
}

#[tokio::test]
async fn a_duplicate_control_job_launches_nothing_more() {
    let rig = rig(&[EAST]).await;
    let executor = rig.executor("a");
    rig.add_jobs(8).await;
    let job =
        rig.job("acquire-1", ControlCommand::AcquireCapacity { round: 0, clear_errors: false, reason: "test".into() });
    rig.reconcile(&executor, "r1").await;
    // The same job id again, even from another executor instance: done once, never twice.
    rig.clear_jobs().await;
    let other = rig.executor("b");
    assert!(matches!(executor.handle(&job).await.unwrap(), Handled::Done(_)));
    assert_eq!(other.handle(&job).await.unwrap(), Handled::Duplicate);
    assert_eq!(rig.create_fleet_calls("us-east-1"), 1);
    assert_eq!(rig.instances("us-east-1").await.len(), 1);
}

#[tokio::test]
async fn the_region_just_left_is_excluded_from_the_next_placement() {
    let rig = rig(&[EAST, WEST, OHIO]).await;
    let east_short = shortage_everywhere_in("us-east-1");
    rig.emulator.faults().set_capacity(east_short.clone());
    let executor = rig.executor("a");
    rig.add_jobs(8).await;
    let first = rig.reconcile(&executor, "r1").await;
    assert_eq!(migrations(&first)[0].1, "us-west-2");

    // Five minutes on, Oregon runs dry and us-east-1's ledger entries have expired.
    let mut both = east_short.entries.clone();
    both.extend(shortage_everywhere_in("us-west-2").entries);
    rig.emulator.faults().set_capacity(CapacityModel::new(both));
    rig.at(&executor, 5);
    let west = rig.instances("us-west-2").await;
    let terminate =
        aws_sdk_ec2::Client::new(&rig.config.to_builder().region(aws_config::Region::new("us-west-2")).build());
    terminate.terminate_instances().instance_ids(&west[0].0).send().await.unwrap();
    let second = rig.reconcile(&executor, "r2").await;
    let moves = migrations(&second);
    assert_eq!(moves.len(), 1, "{moves:?}");
    assert_eq!(moves[0].1, "us-east-2", "not back to the region it just left");
    assert_eq!(rig.create_fleet_calls("us-east-1"), 1, "us-east-1 was not even tried");
}

#[tokio::test]
async fn the_fleet_moves_back_home_only_after_the_hysteresis_window() {
    let rig = rig(&[EAST, WEST]).await;
    rig.emulator.faults().set_capacity(shortage_everywhere_in("us-east-1"));
    let executor = rig.executor("a");
    rig.add_jobs(8).await;
    rig.reconcile(&executor, "r1").await;
    assert_eq!(rig.instances("us-west-2").await.len(), 1);

    // Capacity is back at home ten minutes later; the fleet stays put for now.
    rig.emulator.faults().set_capacity(CapacityModel::default());
    rig.at(&executor, 10);
    let early = rig.reconcile(&executor, "r2").await;
    assert!(migrations(&early).is_empty());
    assert!(!journal(&early).events().any(|e| matches!(e, Event::ReturnHomeProbe { .. })));
    assert_eq!(rig.create_fleet_calls("us-east-1"), 1);

    rig.at(&executor, 31);
    let late = rig.reconcile(&executor, "r3").await;
    assert_eq!(migrations(&late), vec![("us-west-2".into(), "us-east-1".into(), MigrationReason::ReturnHome)]);
    assert_eq!(rig.instances("us-east-1").await.len(), 1);
    assert!(!journal(&late).events().any(|e| matches!(e, Event::Drain { .. })), "home's worker is only launched yet");
    // Once home's worker serves, the worker left behind drains.
    rig.at(&executor, 32);
    let settled = rig.reconcile(&executor, "r4").await;
    assert!(journal(&settled).events().any(|e| matches!(e, Event::Drain { region, .. } if region == "us-west-2")));
}

#[tokio::test]
async fn the_backlog_is_both_queues_read_with_the_executors_own_role() {
    use gameforge_engine::ports::Backlog;
    let rig = rig(&[EAST]).await;
    let executor = rig.executor("a");
    rig.add_jobs(3).await;
    let sqs = aws_sdk_sqs::Client::new(&rig.config);
    for i in 0..5 {
        let url = &rig.deployment.any_tier_queue_url;
        sqs.send_message().queue_url(url).message_body(format!("small-{i}")).send().await.unwrap();
    }
    let backlogs = executor.world().demand().await.unwrap();
    assert_eq!((backlogs.gpu_only.queued, backlogs.any_tier.queued), (3, 5));
    assert_eq!(backlogs.total().queued, 8, "the GPU fleet scales for both: GPU workers serve both");
}

#[tokio::test]
async fn the_fleet_scales_to_zero_when_idle_and_back_up_on_backlog() {
    let rig = rig(&[EAST]).await;
    let executor = rig.executor("a");
    rig.add_jobs(16).await;
    rig.reconcile(&executor, "r1").await;
    assert_eq!(rig.instances("us-east-1").await.len(), 2);

    rig.clear_jobs().await;
    rig.at(&executor, 5);
    rig.reconcile(&executor, "r2").await;
    assert_eq!(rig.instances("us-east-1").await.len(), 2, "a lull is not idleness");

    rig.at(&executor, 16);
    let idle = rig.reconcile(&executor, "r3").await;
    assert_eq!(journal(&idle).events().filter(|e| matches!(e, Event::Drain { .. })).count(), 2);
    rig.at(&executor, 17);
    rig.reconcile(&executor, "r4").await;
    assert!(rig.instances("us-east-1").await.is_empty(), "drained workers with no task are terminated");

    rig.add_jobs(8).await;
    rig.at(&executor, 20);
    rig.reconcile(&executor, "r5").await;
    assert_eq!(rig.instances("us-east-1").await.len(), 1);
}

#[tokio::test]
async fn a_spot_warning_drains_the_instance_and_requests_its_replacement_in_one_invocation() {
    let rig = rig(&[EAST]).await;
    let executor = rig.executor("a");
    rig.add_jobs(8).await;
    rig.reconcile(&executor, "r1").await;
    let victim = rig.instances("us-east-1").await.remove(0).0;
    // The worker's ECS agent registered the instance with the cluster.
    let ecs = aws_sdk_ecs::Client::new(&rig.config);
    let registered = ecs
        .register_container_instance()
        .cluster(&rig.stamps[0].ecs_cluster)
        .instance_identity_document(serde_json::json!({"instanceId": victim, "region": "us-east-1"}).to_string())
        .send()
        .await
        .unwrap();
    // Its worker task runs there, in the middle of a job.
    ecs.start_task()
        .cluster(&rig.stamps[0].ecs_cluster)
        .task_definition(&rig.stamps[0].task_definition)
        .container_instances(registered.container_instance().unwrap().container_instance_arn().unwrap())
        .send()
        .await
        .unwrap();

    let handled = executor.handle(&rig.spot_warning(&victim, rig.start)).await.unwrap();
    let events: Vec<&Event> = journal(&handled).events().collect();
    let drained = events.iter().position(|e| matches!(e, Event::Drain { instance_id, .. } if *instance_id == victim));
    let launched = events.iter().position(|e| matches!(e, Event::Launched { instances, .. } if !instances.is_empty()));
    assert!(drained.is_some() && launched.is_some() && drained < launched, "{events:?}");
    let containers = ecs.list_container_instances().cluster(&rig.stamps[0].ecs_cluster).send().await.unwrap();
    let described = ecs
        .describe_container_instances()
        .cluster(&rig.stamps[0].ecs_cluster)
        .set_container_instances(Some(containers.container_instance_arns().to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(described.container_instances()[0].status(), Some("DRAINING"));
    // The interrupted offering is out of the next placement.
    assert!(events.iter().any(|e| matches!(e, Event::Blocked { cause: BlockCause::Interrupted, .. })));
    assert_eq!(rig.instances("us-east-1").await.len(), 2, "the victim runs out its notice beside its replacement");
}

#[tokio::test]
async fn a_configuration_error_stops_launching_with_an_alert_until_cleared() {
    let rig = rig(&[EAST]).await;
    rig.emulator.faults().add(Rule::for_service("ec2").action("CreateFleet").fail(AwsError::new(
        400,
        "InvalidLaunchTemplateName.NotFoundException",
        "The specified launch template, with template name gameforge-sdxl-worker, does not exist.",
    )));
    let executor = rig.executor("a");
    rig.add_jobs(8).await;
    let first = rig.reconcile(&executor, "r1").await;
    assert!(
        journal(&first)
            .events()
            .any(|e| matches!(e, Event::Alert { kind: gameforge_engine::ports::AlertKind::Configuration, .. }))
    );
    assert!(!journal(&first).events().any(|e| matches!(e, Event::Retry { .. })), "no retry loop");
    for (minute, id) in [(1, "r2"), (5, "r3")] {
        rig.at(&executor, minute);
        rig.reconcile(&executor, id).await;
    }
    assert_eq!(rig.create_fleet_calls("us-east-1"), 1, "never tried again on its own");

    rig.emulator.faults().clear();
    let clear = rig.job(
        "operator-1",
        ControlCommand::AcquireCapacity { round: 0, clear_errors: true, reason: "template fixed".into() },
    );
    executor.handle(&clear).await.unwrap();
    assert_eq!(rig.instances("us-east-1").await.len(), 1);
}

#[tokio::test]
async fn a_fleet_lock_its_invocation_could_not_release_lapses_when_the_invocation_would_have_ended() {
    let rig = rig(&[EAST]).await;
    let executor = rig.executor("a");
    // The release never lands, as when the invocation is killed before it.
    rig.emulator.faults().add(
        Rule::for_service("dynamodb")
            .action("DeleteItem")
            .body_contains(r#""S":"lock""#)
            .fail(AwsError::internal_error()),
    );
    let deadline = Deadline::at(std::time::SystemTime::now() + Duration::from_secs(6));
    executor.handle_until(&rig.job("r1", ControlCommand::Reconcile), deadline).await.unwrap();
    let held = aws_sdk_dynamodb::Client::new(&rig.config)
        .get_item()
        .table_name(&rig.deployment.ledger_table)
        .key("pk", AttributeValue::S("sdxl".into()))
        .key("sk", AttributeValue::S("lock".into()))
        .send()
        .await
        .unwrap();
    let until: i64 = held.item().unwrap()["lease_until"].as_n().unwrap().parse().unwrap();
    let lease_ms = until - rig.start.timestamp_millis();
    // Not the 90 s fallback: the time the invocation had left, and a second for the clocks.
    assert!((4_000..=7_000).contains(&lease_ms), "the lock was held for {lease_ms} ms");
}

#[tokio::test]
async fn an_interruption_notice_naming_no_instance_is_counted_and_the_fleet_checked_at_once() {
    let rig = rig(&[EAST]).await;
    let executor = rig.executor("a");
    rig.add_jobs(8).await;
    rig.reconcile(&executor, "r1").await;
    let before = rig.instances("us-east-1").await;
    // The instance the degraded notice was about is gone by the time it arrives.
    let ec2 = aws_sdk_ec2::Client::new(&rig.config);
    ec2.terminate_instances().instance_ids(&before[0].0).send().await.unwrap();

    let mut notice = rig.spot_warning("unused", rig.start);
    if let ControlCommand::HandleInterruption { notice } = &mut notice.command {
        notice.instance_id = None;
    }
    let handled = executor.handle(&notice).await.unwrap();
    let journal = journal(&handled);
    assert!(
        journal.events().any(|e| matches!(e, Event::UntiedInterruption { region, .. } if region == "us-east-1")),
        "{journal:?}"
    );
    assert_eq!(journal.tally().untied_interruptions, 1);
    // Not held for the next reconcile: the same invocation replaced what went away.
    assert!(journal.events().any(|e| matches!(e, Event::Launched { instances, .. } if !instances.is_empty())));
    assert_eq!(rig.instances("us-east-1").await.len(), before.len());
}
