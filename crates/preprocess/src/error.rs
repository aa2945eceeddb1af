use std::path::PathBuf;
use thiserror::Error;

/// Errors of medseg-preprocess. Each names what was expected and, where there is one, the
/// case or file.
#[derive(Debug, Error)]
pub enum PreprocessError {
    #[error(transparent)]
    Volume(#[from] medseg_volume::VolumeError),
    /// Arrays that must agree in shape do not.
    #[error("shape mismatch: {what}: expected {expected:?}, got {got:?}")]
    Shape {
        what: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// A geometry that cannot be used (singular direction, non-positive spacing).
    #[error("geometry: {0}")]
    Geometry(String),
    /// A setting out of range or unknown.
    #[error("invalid setting {key} = {value}: {reason}")]
    Setting {
        key: String,
        value: String,
        reason: String,
    },
    /// The dataset cannot be planned (no cases, no labels, ...).
    #[error("dataset {path}: {reason}")]
    Dataset { path: PathBuf, reason: String },
    /// A case failed; the inner error says why.
    #[error("case {case}: {source}")]
    Case {
        case: String,
        #[source]
        source: Box<PreprocessError>,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `plan.json` cannot be parsed (`what` = "not a medseg plan") or serialized.
    #[error("{path}: {what}: {source}")]
    Json {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl PreprocessError {
    pub(crate) fn setting(key: &str, value: impl ToString, reason: &str) -> Self {
        PreprocessError::Setting {
            key: key.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// Wraps an error with the case it happened in.
    pub fn in_case(self, case: &str) -> Self {
        PreprocessError::Case {
            case: case.into(),
            source: Box::new(self),
        }
    }
}
