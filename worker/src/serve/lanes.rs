//! The two job queues as the runner's one [`JobQueue`]. Submission sends a job the CPU tier could serve to the
//! any-tier queue and every other job to the job queue proper (GPU only). A GPU worker reads both, in turn, so
//! that neither queue waits behind the other, and long-polls only when both are empty; a CPU worker reads only the any-tier queue, and moves a job it can
//! no longer finish by its deadline to the GPU-only queue, which no CPU worker reads: a job moves at most once.
//!
//! Each receipt handed to the runner carries its queue, so that heartbeats, deletes and dead letters reach the
//! queue the message came from; the prefix never leaves this module.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gameforge_contract::Tier;

use super::decide::Delivery;
use super::ports::{JobQueue, PortError};

const GPU_ONLY: &str = "gpu-only:";
const ANY_TIER: &str = "any-tier:";

#[derive(Debug)]
pub struct Lanes<Q> {
    tier: Tier,
    gpu_only: Q,
    any_tier: Option<Q>,
    any_tier_next: AtomicBool,
}

impl<Q: JobQueue> Lanes<Q> {
    /// A GPU worker's queues: the job queue, and the any-tier queue where the fleet has a CPU tier.
    pub fn gpu(gpu_only: Q, any_tier: Option<Q>) -> Self {
        Self { tier: Tier::Gpu, gpu_only, any_tier, any_tier_next: AtomicBool::new(false) }
    }

    /// A CPU worker's: it receives from `any_tier` only; `gpu_only` takes the jobs it cannot finish in time.
    pub fn cpu(gpu_only: Q, any_tier: Q) -> Self {
        Self { tier: Tier::Cpu, gpu_only, any_tier: Some(any_tier), any_tier_next: AtomicBool::new(true) }
    }

    pub fn tier(&self) -> Tier {
        self.tier
    }

    fn lane<'r>(&self, receipt: &'r str) -> Result<(&Q, &'r str), PortError> {
        if let Some(rest) = receipt.strip_prefix(GPU_ONLY) {
            return Ok((&self.gpu_only, rest));
        }
        match (receipt.strip_prefix(ANY_TIER), &self.any_tier) {
            (Some(rest), Some(queue)) => Ok((queue, rest)),
            _ => Err(PortError::new("job queue", "a receipt from neither of this worker's queues")),
        }
    }

    fn unwrapped(&self, delivery: &Delivery) -> Result<(&Q, Delivery), PortError> {
        let (queue, receipt) = self.lane(&delivery.receipt)?;
        Ok((queue, Delivery { receipt: receipt.to_owned(), ..delivery.clone() }))
    }

    /// Moves an any-tier job to the GPU-only queue: sent there first, then deleted here, so that a failure in
    /// between leaves two copies (the job store's claim runs it once), never none.
    pub async fn move_to_gpu_only(&self, delivery: &Delivery) -> Result<(), PortError> {
        let (queue, delivery) = self.unwrapped(delivery)?;
        if std::ptr::eq(queue, &self.gpu_only) {
            return Err(PortError::new("job queue", "the job is on the GPU-only queue already"));
        }
        self.gpu_only.send(&delivery).await?;
        queue.delete(&delivery.receipt).await
    }
}

impl<Q: JobQueue> JobQueue for Lanes<Q> {
    async fn receive(&self, wait: Duration) -> Result<Option<Delivery>, PortError> {
        let tagged = |prefix: &str, d: Delivery| Delivery { receipt: format!("{prefix}{}", d.receipt), ..d };
        let (first, second) = match (&self.any_tier, self.tier) {
            (None, _) => return Ok(self.gpu_only.receive(wait).await?.map(|d| tagged(GPU_ONLY, d))),
            (Some(any), Tier::Cpu) => return Ok(any.receive(wait).await?.map(|d| tagged(ANY_TIER, d))),
            (Some(any), Tier::Gpu) => {
                // The queue looked at first alternates, so that neither waits behind the other's backlog.
                if self.any_tier_next.fetch_xor(true, Ordering::Relaxed) {
                    ((any, ANY_TIER), (&self.gpu_only, GPU_ONLY))
                } else {
                    ((&self.gpu_only, GPU_ONLY), (any, ANY_TIER))
                }
            }
        };
        // A look at both without waiting first: a worker with jobs on one queue must never sit out a long poll on
        // the other, empty one (that halved a busy worker's throughput).
        for (queue, prefix) in [first, second] {
            if let Some(d) = queue.receive(Duration::ZERO).await? {
                return Ok(Some(tagged(prefix, d)));
            }
        }
        // Both empty: a long poll on one, half the wait, so that a job arriving on the other waits at most that
        // (the next call long-polls the other).
        let (queue, prefix) = first;
        Ok(queue.receive(wait / 2).await?.map(|d| tagged(prefix, d)))
    }

    async fn set_visibility(&self, receipt: &str, visibility: Duration) -> Result<(), PortError> {
        let (queue, receipt) = self.lane(receipt)?;
        queue.set_visibility(receipt, visibility).await
    }

    async fn delete(&self, receipt: &str) -> Result<(), PortError> {
        let (queue, receipt) = self.lane(receipt)?;
        queue.delete(receipt).await
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), PortError> {
        let (queue, delivery) = self.unwrapped(delivery)?;
        queue.dead_letter(&delivery, reason).await
    }

    /// A new message goes to the job queue proper: only what submission routed is any-tier.
    async fn send(&self, delivery: &Delivery) -> Result<(), PortError> {
        self.gpu_only.send(delivery).await
    }
}

#[cfg(test)]
mod tests;
