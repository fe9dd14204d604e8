use std::collections::VecDeque;
use std::sync::Mutex;

use super::*;

/// A queue that records what is done to it and hands out the messages it was given.
#[derive(Debug, Default)]
struct Fake {
    waiting: Mutex<VecDeque<Delivery>>,
    calls: Mutex<Vec<String>>,
    waits: Mutex<Vec<Duration>>,
}

impl Fake {
    fn with(ids: &[&str]) -> Self {
        let fake = Fake::default();
        for id in ids {
            fake.waiting.lock().unwrap().push_back(delivery(id));
        }
        fake
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

fn delivery(id: &str) -> Delivery {
    Delivery {
        message_id: id.into(),
        receipt: format!("r-{id}"),
        body: format!("{{\"job_id\": \"{id}\"}}"),
        receive_count: 1,
        owner: Some("arn:aws:iam::123456789012:role/backend".into()),
    }
}

impl JobQueue for Fake {
    async fn receive(&self, wait: Duration) -> Result<Option<Delivery>, PortError> {
        self.waits.lock().unwrap().push(wait);
        Ok(self.waiting.lock().unwrap().pop_front())
    }
    async fn set_visibility(&self, receipt: &str, visibility: Duration) -> Result<(), PortError> {
        self.calls.lock().unwrap().push(format!("visibility {receipt} {}", visibility.as_secs()));
        Ok(())
    }
    async fn delete(&self, receipt: &str) -> Result<(), PortError> {
        self.calls.lock().unwrap().push(format!("delete {receipt}"));
        Ok(())
    }
    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), PortError> {
        self.calls.lock().unwrap().push(format!("dead_letter {} {reason}", delivery.receipt));
        Ok(())
    }
    async fn send(&self, delivery: &Delivery) -> Result<(), PortError> {
        let owner = delivery.owner.clone().unwrap_or_default();
        self.calls.lock().unwrap().push(format!("send {} as {owner}", delivery.body));
        Ok(())
    }
}

#[tokio::test]
async fn a_gpu_worker_takes_the_two_queues_in_turn_and_settles_each_message_on_its_own_queue() {
    let lanes = Lanes::gpu(Fake::with(&["g1", "g2", "g3"]), Some(Fake::with(&["a1"])));
    let wait = Duration::from_secs(20);
    let mut got = Vec::new();
    for _ in 0..5 {
        if let Some(d) = lanes.receive(wait).await.unwrap() {
            got.push(d);
        }
    }
    let ids: Vec<&str> = got.iter().map(|d| d.message_id.as_str()).collect();
    assert_eq!(ids, ["g1", "a1", "g2", "g3"], "in turn while both have jobs, then the one that has");
    let any = lanes.any_tier.as_ref().unwrap();
    let zero = Duration::ZERO;
    assert_eq!(
        *any.waits.lock().unwrap(),
        [zero, zero, zero],
        "never a long poll on an empty queue while the other has jobs"
    );
    assert_eq!(
        *lanes.gpu_only.waits.lock().unwrap(),
        [zero, zero, zero, zero, Duration::from_secs(10)],
        "both empty: a long poll on one, half the wait"
    );
    assert!(lanes.receive(wait).await.unwrap().is_none());
    assert_eq!(any.waits.lock().unwrap().last(), Some(&Duration::from_secs(10)), "then on the other");

    lanes.set_visibility(&got[1].receipt, Duration::from_secs(60)).await.unwrap();
    lanes.delete(&got[1].receipt).await.unwrap();
    lanes.dead_letter(&got[0], "poison").await.unwrap();
    assert_eq!(any.calls(), ["visibility r-a1 60", "delete r-a1"]);
    assert_eq!(lanes.gpu_only.calls(), ["dead_letter r-g1 poison"]);
    assert!(lanes.delete("r-a1").await.is_err(), "a receipt from neither queue is refused, not guessed");
}

#[tokio::test]
async fn without_an_any_tier_queue_a_gpu_worker_long_polls_its_one_queue_for_the_whole_wait() {
    let lanes = Lanes::gpu(Fake::with(&["g1"]), None);
    let d = lanes.receive(Duration::from_secs(20)).await.unwrap().unwrap();
    assert_eq!(*lanes.gpu_only.waits.lock().unwrap(), [Duration::from_secs(20)]);
    lanes.delete(&d.receipt).await.unwrap();
    assert_eq!(lanes.gpu_only.calls(), ["delete r-g1"]);
}

#[tokio::test]
async fn a_cpu_worker_reads_only_the_any_tier_queue_and_moves_a_job_to_the_gpu_only_queue_once() {
    let lanes = Lanes::cpu(Fake::with(&["g1"]), Fake::with(&["a1"]));
    let d = lanes.receive(Duration::from_secs(20)).await.unwrap().unwrap();
    assert_eq!(d.message_id, "a1");
    assert!(lanes.receive(Duration::from_secs(20)).await.unwrap().is_none(), "never the GPU-only queue");
    assert_eq!(lanes.tier(), Tier::Cpu);

    lanes.move_to_gpu_only(&d).await.unwrap();
    assert_eq!(
        lanes.gpu_only.calls(),
        ["send {\"job_id\": \"a1\"} as arn:aws:iam::123456789012:role/backend"],
        "the same job, still its owner's"
    );
    assert_eq!(lanes.any_tier.as_ref().unwrap().calls(), ["delete r-a1"], "sent first, then deleted");
    let gpu = Delivery { receipt: format!("{GPU_ONLY}r-g1"), ..delivery("g1") };
    assert!(lanes.move_to_gpu_only(&gpu).await.is_err(), "a GPU-only job does not move");
}
