use std::path::PathBuf;

/// Errors of reading and running an nnU-Net model folder. Each names the file (or the
/// plans/dataset key) involved and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum NnUnetError {
    #[error("{}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Unsupported { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Checkpoint { path: PathBuf, reason: String },
    #[error("case {case}: {reason}")]
    Case { case: String, reason: String },
    #[error(transparent)]
    Model(#[from] medseg_model::ModelError),
}

impl NnUnetError {
    pub(crate) fn file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        NnUnetError::File {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn unsupported(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        NnUnetError::Unsupported {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn checkpoint(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        NnUnetError::Checkpoint {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
