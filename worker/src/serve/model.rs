//! The model on a thread of its own: one job at a time, the async side never blocks on tensor work, and a job
//! can be stopped between steps.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use tokio::sync::{mpsc as tmpsc, oneshot};

use crate::error::PipelineError;
use crate::pipeline::{GenerateRequest, Generated, Progress, SdxlPipeline};

struct Work {
    request: GenerateRequest,
    stop: Arc<AtomicBool>,
    progress: tmpsc::UnboundedSender<Progress>,
    done: oneshot::Sender<Result<Generated, PipelineError>>,
}

/// A handle to the model thread.
#[derive(Debug, Clone)]
pub struct ModelThread {
    work: mpsc::Sender<Work>,
}

impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Work").field("prompt", &self.request.prompt).finish()
    }
}

impl ModelThread {
    /// Loads the model on a new thread and waits until it is loaded.
    pub fn start(
        load: impl FnOnce() -> Result<SdxlPipeline, PipelineError> + Send + 'static,
    ) -> Result<Self, PipelineError> {
        let (work_tx, work_rx) = mpsc::channel::<Work>();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("model".into())
            .spawn(move || {
                let pipeline = match load() {
                    Ok(p) => {
                        let _ = ready_tx.send(Ok(()));
                        p
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                // Ends when every handle is dropped.
                for work in work_rx {
                    let Work { request, stop, progress, done } = work;
                    let result = pipeline.generate(&request, &mut |p| {
                        let _ = progress.send(p);
                        if stop.load(Ordering::SeqCst) { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
                    });
                    let _ = done.send(result);
                }
            })
            .map_err(|e| PipelineError::Source { source_uri: "model thread".into(), reason: e.to_string() })?;
        ready_rx.recv().map_err(|_| PipelineError::Source {
            source_uri: "model thread".into(),
            reason: "died while loading".into(),
        })??;
        Ok(Self { work: work_tx })
    }

    /// Runs one generation; `stop` set by anyone ends it after the current step with `Cancelled`.
    pub async fn generate(
        &self,
        request: GenerateRequest,
        stop: Arc<AtomicBool>,
        progress: tmpsc::UnboundedSender<Progress>,
    ) -> Result<Generated, PipelineError> {
        let (done, answer) = oneshot::channel();
        self.work
            .send(Work { request, stop, progress, done })
            .map_err(|_| PipelineError::Source { source_uri: "model thread".into(), reason: "has stopped".into() })?;
        answer.await.map_err(|_| PipelineError::Source {
            source_uri: "model thread".into(),
            reason: "dropped the job".into(),
        })?
    }
}
