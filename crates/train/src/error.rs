use std::path::PathBuf;

/// Errors of training. Each names the case, file or key involved. Interruption and early
/// stopping are not errors: they are [`crate::TrainOutcome`]s.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid config: {0}")]
    Config(String),
    #[error(transparent)]
    ConfigFile(#[from] medseg_config::ConfigError),
    #[error(transparent)]
    Volume(#[from] medseg_volume::VolumeError),
    #[error(transparent)]
    Preprocess(#[from] medseg_preprocess::PreprocessError),
    /// Display leaves the cause to the error chain (the binary joins it into one line).
    #[error("invalid config")]
    Postprocess(#[from] medseg_postprocess::PostprocessError),
    #[error(transparent)]
    Model(#[from] medseg_model::ModelError),
    #[error(transparent)]
    Infer(#[from] medseg_infer::InferError),
    #[error(transparent)]
    Eval(#[from] medseg_eval::EvalError),
    #[error(transparent)]
    Lock(#[from] medseg_infer::LockError),
    #[error(
        "{}: already holds {what} ({epochs_done} epochs done); use --resume to continue it, --overwrite to start again, or set another train.output",
        path.display()
    )]
    RunExists {
        path: PathBuf,
        /// "a finished run" or "an interrupted run".
        what: &'static str,
        epochs_done: usize,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: cannot encode as JSON", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    #[error("validation case {case}: its prediction cannot be scored")]
    ValidationCase {
        case: String,
        #[source]
        source: medseg_postprocess::PostprocessError,
    },
    #[error("data loading failed on case {case}: {reason}")]
    Case { case: String, reason: String },
    #[error(
        "the loss became {value} at epoch {epoch}, iteration {iteration}; training stopped and the last good checkpoint is kept (lower train.learning_rate, or check the data for NaNs with `medseg inspect`)"
    )]
    NonFiniteLoss {
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

/// Writes `value` as pretty JSON to `path` through a temporary file renamed into place.
pub(crate) fn write_json<T: serde::Serialize + ?Sized>(
    path: &std::path::Path,
    value: &T,
) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(value).map_err(|source| TrainError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    medseg_volume::write_atomically(path, |w| std::io::Write::write_all(w, text.as_bytes()))?;
    Ok(())
}
