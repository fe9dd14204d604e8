use std::path::{Path, PathBuf};

/// Why a model could not be loaded or an image could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid config: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("{0}: no weights found (looked for {1})")]
    MissingWeights(PathBuf, String),
    #[error("weights in {path}: {reason}")]
    Weights { path: PathBuf, reason: String },
    #[error("not supported: {0}")]
    Unsupported(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("model source {source_uri}: {reason}")]
    Source { source_uri: String, reason: String },
    #[error(transparent)]
    Hub(#[from] crate::source::HubError),
    #[error(transparent)]
    DoesNotFit(#[from] crate::memory::DoesNotFit),
    #[error(
        "the model's weights need about {} in memory, and {} is free ({})",
        crate::memory::plan::bytes(*needed),
        crate::memory::plan::bytes(room.bytes),
        room.limit
    )]
    WeightsDoNotFit { needed: u64, room: crate::memory::Budget },
    #[error("cancelled after {completed_steps} of {total_steps} steps")]
    Cancelled { completed_steps: usize, total_steps: usize },
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),
}

impl PipelineError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        PipelineError::Io { path: path.to_path_buf(), source }
    }
}
