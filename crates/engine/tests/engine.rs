//! The engine's own decisions against an in-memory world: no emulator, no simulator, every call recorded.

mod support;

use gameforge_contract::{CapacityType, ControlJob, Message};
use gameforge_engine::journal::Event;
use gameforge_engine::{Executor, Handled};
use gameforge_planner::Offering;
use gameforge_planner::ledger::BlockCause;
use gameforge_planner::scaling::Demand;
use serde_json::json;
use support::{Memory, at, fleet};

fn job(id: &str, command: serde_json::Value) -> ControlJob {
    ControlJob::from_value(json!({
        "version": 1, "control_id": id, "fleet": fleet().fleet, "emitted_at": "2026-11-27T10:00:00Z", "command": command
    }))
    .unwrap()
}

fn executor() -> Executor<Memory> {
    Executor::new(fleet(), Memory::at(at(0)), "test")
}

async fn handle(executor: &Executor<Memory>, job: &ControlJob) -> Vec<Event> {
    match executor.handle(job).await.unwrap() {
        Handled::Done(journal) => journal.entries.into_iter().map(|e| e.event).collect(),
        other => panic!("not handled: {other:?}"),
    }
}

fn spot(zone: &str) -> Offering {
    Offering::new("us-east-1", zone, "g5.xlarge", CapacityType::Spot)
}

#[tokio::test]
async fn a_spot_warning_drains_blocks_and_replaces_in_one_invocation() {
    let executor = executor();
    executor.world().state().demand = Some(Demand { queued: 0, in_flight: 2 });
    handle(&executor, &job("reconcile-1", json!({"type": "reconcile"}))).await;
    let workers = executor.world().state().workers.clone();
    assert_eq!(workers.len(), 2, "{workers:?}");
    let victim = workers[0].clone();

    let events = handle(
        &executor,
        &job(
            "sig-1",
            json!({"type": "handle_interruption", "notice": {
                "event_id": "e1", "region": "us-east-1", "instance_id": victim.instance_id,
                "notice": "spot_interruption", "deadline": "2026-11-27T10:02:00Z"
            }}),
        ),
    )
    .await;
    let world = executor.world().state();
    assert_eq!(world.drained, vec![victim.instance_id.clone()], "the worker gets SIGTERM through ECS");
    assert!(
        events.iter().any(|e| matches!(e, Event::Blocked { offering, cause: BlockCause::Interrupted, .. }
            if *offering == victim.offering)),
        "{events:?}"
    );
    let replacement = world.launch_calls.last().unwrap();
    assert!(
        !replacement.overrides.iter().any(|o| o.availability_zone == victim.offering.availability_zone
            && o.instance_type == victim.offering.instance_type),
        "the interrupted pool is not asked again: {replacement:?}"
    );
    assert_eq!(world.workers.iter().filter(|w| w.is_active()).count(), 2, "replaced at once");
}

#[tokio::test]
async fn a_pool_without_capacity_is_blocked_and_the_call_goes_on_to_the_next() {
    let executor = executor();
    {
        let mut world = executor.world().state();
        world.capacity.insert(spot("us-east-1a").key(), 0);
        world.demand = Some(Demand { queued: 8, in_flight: 0 });
    }
    let events = handle(&executor, &job("reconcile-1", json!({"type": "reconcile"}))).await;
    let world = executor.world().state();
    assert_eq!(world.workers.len(), 1, "{events:?}");
    assert_ne!(world.workers[0].offering, spot("us-east-1a"));
    assert!(!world.ledger.view.is_available(&spot("us-east-1a"), at(0)), "the failed pool is in the ledger");
    assert_eq!(world.launch_calls.len(), 1, "one call covered the other pools");
}

#[tokio::test]
async fn short_everywhere_the_operator_is_told_once_an_hour_not_once_a_minute() {
    let executor = executor();
    {
        let mut world = executor.world().state();
        for stamp in &fleet().regions {
            for offering in fleet().offerings(&stamp.region) {
                world.capacity.insert(offering.key(), 0);
            }
        }
        world.demand = Some(Demand { queued: 1, in_flight: 0 });
    }
    for minute in 0..90 {
        executor.world().state().now = at(minute);
        handle(&executor, &job(&format!("reconcile-{minute}"), json!({"type": "reconcile"}))).await;
    }
    let world = executor.world().state();
    let times: Vec<i64> = world
        .alerts
        .iter()
        .filter(|a| a.kind == gameforge_engine::ports::AlertKind::NoRegion)
        .map(|a| (a.at - at(0)).num_minutes())
        .collect();
    assert_eq!(times.len(), 2, "{times:?}");
    assert!(times[1] - times[0] >= 60, "{times:?}");
}

#[tokio::test]
async fn scale_in_drains_the_on_demand_worker_first() {
    let executor = executor();
    let spot_worker = executor.world().add_worker(&spot("us-east-1a"));
    let on_demand =
        executor.world().add_worker(&Offering::new("us-east-1", "us-east-1b", "g5.xlarge", CapacityType::OnDemand));
    let mut state = gameforge_engine::state::FleetState::new(&fleet(), at(0));
    state.desired = 2;
    state.version = 1;
    executor.world().state().ledger.fleet_state = Some(state);
    // Nothing to do for longer than idle_before_zero: down to zero, but the two go in order.
    executor.world().state().demand = Some(Demand { queued: 0, in_flight: 1 });
    handle(&executor, &job("reconcile-1", json!({"type": "reconcile"}))).await;
    executor.world().state().demand = Some(Demand { queued: 0, in_flight: 0 });
    for minute in 1..=11 {
        executor.world().state().now = at(minute);
        handle(&executor, &job(&format!("reconcile-{}", minute + 1), json!({"type": "reconcile"}))).await;
    }
    let world = executor.world().state();
    assert_eq!(world.drained.first(), Some(&on_demand), "on-demand first: {:?}", world.drained);
    assert!(!world.drained.contains(&spot_worker), "one warm worker stays until idle_before_zero");
}

fn operate(id: &str, action: serde_json::Value) -> ControlJob {
    job(id, json!({"type": "operate", "by": "alice", "action": action}))
}

fn launches(executor: &Executor<Memory>) -> usize {
    executor.world().state().launch_calls.len()
}

#[tokio::test]
async fn a_paused_fleet_launches_nothing_until_resumed_and_says_why() {
    let executor = executor();
    executor.world().state().demand = Some(Demand { queued: 8, in_flight: 0 });
    let events = handle(&executor, &operate("op-1", json!({"kind": "pause", "reason": "incident 42"}))).await;
    assert!(
        events.iter().any(|e| matches!(e, Event::Operator { outcome, .. } if outcome.starts_with("launching paused")))
    );
    for minute in 1..5 {
        executor.world().state().now = at(minute);
        let events = handle(&executor, &job(&format!("reconcile-{minute}"), json!({"type": "reconcile"}))).await;
        assert!(
            events.iter().any(|e| matches!(e, Event::Waiting { why, .. } if why.contains("paused by alice"))),
            "{events:?}"
        );
    }
    assert_eq!(launches(&executor), 0, "nothing launched while paused");
    let events = handle(&executor, &operate("op-2", json!({"kind": "resume"}))).await;
    assert!(
        events.iter().any(|e| matches!(e, Event::Launched { instances, .. } if !instances.is_empty())),
        "{events:?}"
    );
    // The decisions operators read back: the pause, the resume and its launch; not the routine waiting.
    let kept = executor.world().state().ledger.recent_decisions(10);
    let ids: Vec<&str> = kept.iter().map(|d| d.control_id.as_str()).collect();
    assert!(ids.starts_with(&["op-2"]) && ids.contains(&"op-1"), "{ids:?}");
    // The first reconcile scaled the fleet (kept); the paused ones after it only waited.
    assert!(!ids.iter().any(|id| ["reconcile-2", "reconcile-3", "reconcile-4"].contains(id)), "{ids:?}");
}

#[tokio::test]
async fn a_pinned_fleet_stays_short_in_its_region_instead_of_moving_and_moves_on_when_unpinned() {
    let executor = executor();
    let away = fleet().regions[1].region.clone();
    let events = handle(&executor, &operate("op-1", json!({"kind": "pin", "region": away}))).await;
    assert!(
        events.iter().any(|e| matches!(e, Event::Migrate { to, .. } if *to == away)),
        "pinning moves the fleet at once: {events:?}"
    );
    {
        let mut world = executor.world().state();
        for offering in fleet().offerings(&away) {
            world.capacity.insert(offering.key(), 0);
        }
        world.demand = Some(Demand { queued: 8, in_flight: 0 });
    }
    for minute in 1..40 {
        executor.world().state().now = at(minute);
        handle(&executor, &job(&format!("reconcile-{minute}"), json!({"type": "reconcile"}))).await;
    }
    let state = executor.world().state().ledger.fleet_state.clone().unwrap();
    assert_eq!(state.placement.active_region, away, "pinned: it neither leaves nor returns home");
    let kept = executor.world().state().ledger.recent_decisions(100);
    assert!(kept.iter().flat_map(|d| &d.entries).any(|e| matches!(&e.event, Event::Pinned { .. })));

    executor.world().state().now = at(41);
    let events = handle(&executor, &operate("op-2", json!({"kind": "unpin"}))).await;
    assert!(events.iter().any(|e| matches!(e, Event::Migrate { to, .. } if *to != away)), "{events:?}");
    let refused = handle(&executor, &operate("op-3", json!({"kind": "pin", "region": "eu-west-9"}))).await;
    assert!(
        refused
            .iter()
            .any(|e| matches!(e, Event::Operator { applied: false, outcome, .. } if outcome.starts_with("refused"))),
        "{refused:?}"
    );
    assert_ne!(executor.world().state().ledger.fleet_state.clone().unwrap().placement.active_region, "eu-west-9");
}

#[tokio::test]
async fn unblocking_puts_matching_offerings_back_at_once_and_a_new_failure_starts_a_short_block() {
    let executor = executor();
    {
        let mut world = executor.world().state();
        world.capacity.insert(spot("us-east-1a").key(), 0);
        world.demand = Some(Demand { queued: 8, in_flight: 0 });
    }
    handle(&executor, &job("reconcile-1", json!({"type": "reconcile"}))).await;
    assert!(executor.world().state().ledger.view.blocked(&spot("us-east-1a"), at(0)).is_some());
    executor.world().state().capacity.remove(&spot("us-east-1a").key());
    let events =
        handle(&executor, &operate("op-1", json!({"kind": "unblock", "pattern": "us-east-1/us-east-1a"}))).await;
    assert!(
        events.iter().any(|e| matches!(e, Event::Operator { outcome, .. }
            if outcome == "unblocked 1 matching us-east-1/us-east-1a: us-east-1/us-east-1a/g5.xlarge/spot")),
        "{events:?}"
    );
    let view = executor.world().state().ledger.view.clone();
    assert!(view.blocked(&spot("us-east-1a"), at(0)).is_none());
    assert_eq!(view.offering(&spot("us-east-1a")).unwrap().failures, 0);
    let nothing = handle(&executor, &operate("op-2", json!({"kind": "unblock", "pattern": "eu-west-9"}))).await;
    assert!(
        nothing.iter().any(|e| matches!(e, Event::Operator { outcome, .. } if outcome.starts_with("nothing blocked")))
    );
}

/// The example fleet with a CPU tier that takes a worker per four eligible jobs.
fn fleet_with_cpu_tier() -> gameforge_planner::FleetConfig {
    let mut fleet = serde_json::to_value(fleet()).unwrap();
    fleet["cpu_tier"] = json!({
        "ecs_service": "gameforge-sdxl-cpu-worker", "vcpus": 16, "memory_gib": 60, "price_per_hour": 0.91,
        "pace": {"step_seconds_per_megapixel": 8.0, "decode_seconds_per_megapixel": 22.0, "job_seconds": 2.0},
        "budget": {"max_megapixel_evaluations": 2.2, "max_megapixels": 0.27},
        "enter": {"oldest_job_waited": "10m", "leave_after": "5m"},
        "max_workers": 10, "target_backlog_per_worker": 4
    });
    gameforge_planner::FleetConfig::from_json(fleet.to_string().as_bytes()).unwrap()
}

fn no_gpu_anywhere(world: &Memory, config: &gameforge_planner::FleetConfig) {
    let mut state = world.state();
    for region in &config.regions {
        for offering in config.offerings(&region.region) {
            state.capacity.insert(offering.key(), 0);
        }
    }
}

#[tokio::test]
async fn with_no_gpu_anywhere_the_cpu_tier_starts_where_the_fleet_is_and_stays_there_when_the_fleet_moves() {
    let config = fleet_with_cpu_tier();
    let executor = Executor::new(config.clone(), Memory::at(at(0)), "test");
    no_gpu_anywhere(executor.world(), &config);
    executor.world().state().demand = Some(Demand { queued: 4, in_flight: 0 });
    executor.world().state().eligible = Demand { queued: 9, in_flight: 0 };

    let events = handle(&executor, &job("reconcile-1", json!({"type": "reconcile"}))).await;
    let tier = events.iter().find(|e| matches!(e, Event::CpuTier { .. })).expect("the tier decided");
    assert!(
        matches!(tier, Event::CpuTier { current: 0, desired: 2, entered: Some(_), .. }),
        "on for 9 eligible jobs, a worker per full 4: {tier:?}"
    );
    let tier_region = {
        let state = executor.world().state();
        let (region, count) = state.cpu_service_sizes.iter().next().map(|(r, c)| (r.clone(), *c)).unwrap();
        assert_eq!((state.cpu_service_sizes.len(), count), (1, 2), "{:?}", state.cpu_service_sizes);
        region
    };
    let described = tier.describe();
    assert!(described.starts_with("CPU tier on: no GPU offering left in any region"), "{described}");

    // Capacity comes back at home only; the fleet goes back there once the hysteresis window allows. The tier
    // keeps serving where it started until GPU workers have served for five minutes, then goes off.
    assert_ne!(tier_region, "us-east-1", "the tour ended away from home");
    executor.world().state().capacity.retain(|key, _| !key.starts_with("us-east-1/"));
    let mut moved = false;
    for minute in 1..=20 {
        executor.world().state().now = at(minute * 3);
        handle(&executor, &job(&format!("reconcile-{}", minute + 1), json!({"type": "reconcile"}))).await;
        let mut state = executor.world().state();
        for worker in state.workers.iter_mut() {
            worker.state = gameforge_planner::fleet::WorkerState::Running;
        }
        let sizes = &state.cpu_service_sizes;
        assert!(sizes.keys().all(|r| *r == tier_region), "the tier never moves: {sizes:?}");
        moved |= state.ledger.fleet_state.as_ref().unwrap().placement.active_region == "us-east-1"
            && sizes[&tier_region] > 0;
    }
    assert!(moved, "the fleet went home while the tier served elsewhere");
    assert_eq!(executor.world().state().cpu_service_sizes[&tier_region], 0, "off once GPUs served");
    let state = executor.world().state();
    let saved = state.ledger.fleet_state.as_ref().unwrap();
    assert_eq!((saved.cpu.desired, saved.cpu.region.as_deref()), (0, None));
}

#[tokio::test]
async fn a_pause_holds_the_cpu_tier_at_its_size() {
    let config = fleet_with_cpu_tier();
    let executor = Executor::new(config.clone(), Memory::at(at(0)), "test");
    no_gpu_anywhere(executor.world(), &config);
    executor.world().state().eligible = Demand { queued: 4, in_flight: 0 };
    handle(&executor, &job("reconcile-1", json!({"type": "reconcile"}))).await;
    handle(&executor, &operate("op-1", json!({"kind": "pause", "reason": "incident 42"}))).await;
    executor.world().state().eligible = Demand { queued: 40, in_flight: 0 };
    executor.world().state().now = at(1);
    let events = handle(&executor, &job("reconcile-2", json!({"type": "reconcile"}))).await;
    assert!(!events.iter().any(|e| matches!(e, Event::CpuTier { .. })), "{events:?}");
    assert_eq!(executor.world().state().cpu_service_sizes.values().copied().collect::<Vec<_>>(), vec![1]);
    handle(&executor, &operate("op-2", json!({"kind": "resume"}))).await;
    executor.world().state().now = at(2);
    handle(&executor, &job("reconcile-3", json!({"type": "reconcile"}))).await;
    assert_eq!(executor.world().state().cpu_service_sizes.values().copied().collect::<Vec<_>>(), vec![10]);
}
