use std::path::PathBuf;

/// Errors of training. Each names the case, file or key involved.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid config: {0}")]
    Config(String),
    #[error(transparent)]
    Volume(#[from] medseg_volume::VolumeError),
    #[error(transparent)]
    Preprocess(#[from] medseg_preprocess::PreprocessError),
    #[error(transparent)]
    Model(#[from] medseg_model::ModelError),
    #[error(transparent)]
    Infer(#[from] medseg_infer::InferError),
    #[error(transparent)]
    Eval(#[from] medseg_eval::EvalError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    #[error("data loading failed on case {case}: {reason}")]
    Case { case: String, reason: String },
    #[error(
        "the loss became {value} at epoch {epoch}, iteration {iteration}; training stopped and the last good checkpoint is kept (lower train.learning_rate, or check the data for NaNs with `medseg inspect`)"
    )]
    NonFinite {
        epoch: usize,
        iteration: usize,
        value: f32,
    },
}

impl TrainError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
