use std::path::PathBuf;

/// Errors of inference. Each names the case, file or setting involved.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error(transparent)]
    Volume(#[from] medseg_volume::VolumeError),
    #[error(transparent)]
    Preprocess(#[from] medseg_preprocess::PreprocessError),
    #[error(transparent)]
    Model(#[from] medseg_model::ModelError),
    /// Display leaves the cause to the error chain (the binary joins it into one line).
    #[error("invalid inference setting")]
    Postprocess(#[from] medseg_postprocess::PostprocessError),
    #[error("{}: {reason}", path.display())]
    RunDir { path: PathBuf, reason: String },
    #[error("case {case}: {reason}")]
    Case { case: String, reason: String },
    #[error("invalid inference setting: {0}")]
    Config(String),
    #[error("shape error: {0}")]
    Shape(String),
}
