use chrono::TimeZone;
use gameforge_contract::S3Uri;

use super::*;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap()
}

fn tier() -> CpuTier {
    serde_json::from_value(serde_json::json!({
        "ecs_service": "gameforge-sdxl-cpu-worker",
        "vcpus": 16,
        "memory_gib": 64,
        "pace": {"step_seconds_per_megapixel": 9.0, "decode_seconds_per_megapixel": 30.0, "job_seconds": 3.0},
        "price_per_hour": 0.93,
        "budget": {"max_megapixel_evaluations": 2.2, "max_megapixels": 0.3, "models": ["sdxl-turbo"]},
        "enter": {"oldest_job_waited": "10m", "leave_after": "5m"},
        "max_workers": 6,
        "target_backlog_per_worker": 4
    }))
    .unwrap()
}

/// A few-step 512² job, the kind the tier exists for: 0.262 megapixels × 4 guided steps = 2.1.
fn small_job() -> GenerationJob {
    let mut job =
        GenerationJob::new("j-1", "a lantern", "sdxl-turbo", S3Uri::parse("s3://gameforge-images/out/").unwrap());
    job.width = 512;
    job.height = 512;
    job.steps = 4;
    job.submitted_at = now();
    job
}

#[test]
fn a_job_within_the_budget_goes_to_any_tier_and_one_outside_it_waits_for_a_gpu_with_the_reason() {
    let tier = tier();
    assert_eq!(route(Some(&tier), &small_job(), now()), Route::AnyTier);

    let mut big = small_job();
    (big.width, big.height) = (1024, 1024);
    assert!(matches!(route(Some(&tier), &big, now()), Route::GpuOnly(GpuOnly::Size { .. })));

    let mut long = small_job();
    long.steps = 30;
    let Route::GpuOnly(GpuOnly::Work { work, max }) = route(Some(&tier), &long, now()) else { panic!() };
    assert!((work - 0.262_144 * 60.0).abs() < 1e-9 && max == 2.2);

    let mut other_model = small_job();
    other_model.model_id = "sdxl-base".into();
    assert_eq!(route(Some(&tier), &other_model, now()), Route::GpuOnly(GpuOnly::Model { model: "sdxl-base".into() }));
    assert_eq!(route(None, &small_job(), now()), Route::GpuOnly(GpuOnly::NoCpuTier));
}

#[test]
fn guidance_off_halves_the_work_so_more_steps_fit() {
    let mut job = small_job();
    job.steps = 8;
    assert!(matches!(route(Some(&tier()), &job, now()), Route::GpuOnly(GpuOnly::Work { .. })));
    job.guidance = 1.0;
    assert_eq!(route(Some(&tier()), &job, now()), Route::AnyTier);
}

#[test]
fn the_deadline_is_judged_at_submission_and_again_when_a_cpu_worker_receives_the_job() {
    let tier = tier();
    let job = small_job();
    // 3 + 30 × 0.262 + 9 × 2.097 = 29.8 s, rounded up.
    assert_eq!(tier.pace.estimate(&job), Span::seconds(30));

    let mut tight = job.clone();
    tight.deadline = Some(now() + chrono::Duration::seconds(35));
    assert_eq!(route(Some(&tier), &tight, now()), Route::AnyTier);
    assert!(cpu_can_finish(&tier, &tight, now()).is_ok());
    // Ten seconds later a CPU worker cannot make it: it moves the job to the GPU-only queue.
    let later = now() + chrono::Duration::seconds(10);
    assert_eq!(
        cpu_can_finish(&tier, &tight, later),
        Err(GpuOnly::Deadline { needs: Span::seconds(30), left: Span::seconds(25) })
    );
    assert_eq!(
        route(Some(&tier), &tight, later),
        Route::GpuOnly(GpuOnly::Deadline { needs: Span::seconds(30), left: Span::seconds(25) })
    );
    // A deadline already past leaves zero time, never a negative span.
    assert_eq!(
        cpu_can_finish(&tier, &tight, now() + chrono::Duration::hours(1)),
        Err(GpuOnly::Deadline { needs: Span::seconds(30), left: Span::ZERO })
    );
}

#[test]
fn estimates_of_absurd_paces_stay_within_the_calendar() {
    let mut pace = tier().pace;
    pace.step_seconds_per_megapixel = f64::MAX;
    assert_eq!(pace.estimate(&small_job()), crate::config::MAX_SPAN);
    pace.step_seconds_per_megapixel = f64::NAN;
    assert_eq!(pace.estimate(&small_job()), Span::ZERO);
    assert!(!tier_with(|t| t.pace.step_seconds_per_megapixel = f64::NAN).violations().is_empty());
}

fn tier_with(change: impl FnOnce(&mut CpuTier)) -> CpuTier {
    let mut tier = tier();
    change(&mut tier);
    tier
}

#[test]
fn every_broken_rule_is_named_by_field() {
    assert!(tier().violations().is_empty());
    let broken = tier_with(|t| {
        t.vcpus = 32;
        t.price_per_hour = -1.0;
        t.budget.max_megapixels = 0.0;
        t.max_workers = 0;
        t.enter.leave_after = Span::days(400);
    });
    let fields: Vec<_> = broken.violations().into_iter().map(|v| v.field).collect();
    for field in [
        "cpu_tier.vcpus",
        "cpu_tier.price_per_hour",
        "cpu_tier.budget.max_megapixels",
        "cpu_tier.max_workers",
        "cpu_tier.enter.leave_after",
    ] {
        assert!(fields.iter().any(|f| f == field), "{field} missing from {fields:?}");
    }
}

fn inputs(gpu_offering_available: bool, gpu_workers: u32, queued: u64) -> TierInputs {
    TierInputs { gpu_offering_available, gpu_workers, eligible: Demand { queued, in_flight: 0 }, current: 0 }
}

fn at(minutes: i64) -> DateTime<Utc> {
    now() + chrono::Duration::minutes(minutes)
}

fn fleet_limits() -> WorkerLimits {
    serde_json::from_value(serde_json::json!({
        "min": 0, "max": 20, "target_backlog_per_worker": 8, "idle_before_zero": "15m", "scale_in_delay": "10m"
    }))
    .unwrap()
}

/// One reconcile after `previous`, with the tier's size carried over as the engine carries it.
fn next(previous: &TierDecision, mut inputs: TierInputs, minute: i64) -> TierDecision {
    inputs.current = previous.desired;
    decide(&tier(), &tier().limits(&fleet_limits()), inputs, &previous.memory, at(minute))
}

fn first(inputs: TierInputs) -> TierDecision {
    decide(&tier(), &tier().limits(&fleet_limits()), inputs, &TierMemory::default(), now())
}

#[test]
fn the_tier_enters_only_for_eligible_work_that_no_gpu_can_take() {
    // Every GPU offering blocked and eligible jobs waiting: on at once, sized by the backlog.
    let d = first(inputs(false, 0, 9));
    assert_eq!((d.desired, d.entered), (2, Some(EnterReason::NoGpuAnywhere)));
    assert_eq!(d.memory.active.as_ref().unwrap().since, now());
    // Nothing eligible: GPUs gone or not, no CPU worker.
    assert_eq!(first(inputs(false, 0, 0)).desired, 0);
    // A GPU worker is running: it takes the eligible jobs too.
    assert_eq!(first(inputs(false, 1, 9)).entered, None);
}

#[test]
fn with_gpu_offerings_left_to_try_the_tier_waits_until_eligible_jobs_have_waited_without_a_break() {
    let d = first(inputs(true, 0, 9));
    assert_eq!((d.entered, d.memory.waiting_since), (None, Some(now())));
    let d = next(&d, inputs(true, 0, 9), 9);
    assert_eq!((d.entered, d.memory.waiting_since), (None, Some(now())));
    // The queue emptied at minute 9: the wait starts again at minute 12.
    let d = next(&d, inputs(true, 0, 0), 9);
    let d = next(&d, inputs(true, 0, 4), 12);
    assert_eq!(next(&d, inputs(true, 0, 4), 21).entered, None);
    let d = next(&d, inputs(true, 0, 4), 22);
    assert_eq!((d.desired, d.entered), (1, Some(EnterReason::EligibleJobsWaiting)));
}

#[test]
fn the_tier_leaves_after_gpu_workers_have_served_for_leave_after_and_never_for_a_gpu_that_comes_and_goes() {
    let on = first(inputs(false, 0, 20));
    assert_eq!(on.desired, 5);

    // A GPU worker appears at minute 1 and is reclaimed at minute 3: the tier stays, and the clock restarts.
    let d = next(&on, inputs(true, 1, 20), 1);
    assert_eq!((d.desired, d.left), (5, None));
    let d = next(&d, inputs(true, 0, 20), 3);
    assert_eq!((d.desired, d.left, d.memory.gpu_back_since), (5, None, None));

    // GPUs back for good from minute 4: still serving at minute 8, off at minute 9 with jobs still queued (the
    // GPU workers take them).
    let d = next(&d, inputs(true, 2, 20), 4);
    let d = next(&d, inputs(true, 3, 20), 8);
    assert_eq!((d.desired, d.left), (5, None));
    let d = next(&d, inputs(true, 3, 16), 9);
    assert_eq!((d.desired, d.left), (0, Some(LeaveReason::GpuBack)));
    assert_eq!(d.memory, TierMemory::default());
}

#[test]
fn once_on_the_tier_scales_in_slowly_and_goes_off_after_idle_before_zero_without_eligible_work() {
    let running = |in_flight| TierInputs {
        gpu_offering_available: false,
        gpu_workers: 0,
        eligible: Demand { queued: 0, in_flight },
        current: 0,
    };
    let on = first(inputs(false, 0, 1_000));
    assert_eq!(on.desired, 6, "never beyond max_workers");
    // The queue drained at minute 1 with two jobs still running: the tier keeps its size through the scale-in
    // delay, then shrinks to the most it needed meanwhile.
    let d = next(&on, running(2), 1);
    assert_eq!(d.desired, 6);
    let d = next(&d, running(1), 10);
    assert_eq!(d.desired, 6);
    let d = next(&d, running(1), 11);
    assert_eq!(d.desired, 2);
    // Nothing eligible from minute 12: a warm worker stays until fifteen idle minutes have passed, then off.
    let d = next(&d, running(0), 12);
    let d = next(&d, running(0), 25);
    assert_eq!((d.desired, d.left), (1, None));
    let d = next(&d, running(0), 26);
    assert_eq!((d.desired, d.left), (0, Some(LeaveReason::NoEligibleWork)));
}

#[test]
fn the_fleet_file_carries_the_tier_and_checks_it() {
    let mut fleet: serde_json::Value = serde_json::from_slice(include_bytes!("../../../../infra/fleet.json")).unwrap();
    fleet["cpu_tier"] = serde_json::to_value(tier()).unwrap();
    let parsed = crate::FleetConfig::from_json(fleet.to_string().as_bytes()).unwrap();
    assert_eq!(parsed.cpu_tier, Some(tier()));
    fleet["cpu_tier"]["max_workers"] = 0.into();
    let err = crate::FleetConfig::from_json(fleet.to_string().as_bytes()).unwrap_err().to_string();
    assert!(err.contains("cpu_tier.max_workers"), "{err}");
}
