//! Errors of the evaluation crate. Each names the case or file and what was expected.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Reading a prediction, ground truth or probability map failed.
    #[error(transparent)]
    Volume(#[from] medseg_volume::VolumeError),
    /// Prediction and ground truth (or probability map) are not on the same grid.
    #[error("case {case}: {what} is not on the ground truth's grid: {difference}")]
    GridMismatch {
        case: String,
        what: String,
        difference: String,
    },
    /// A ground truth has no prediction (and missing cases are not scored as worst case).
    #[error(
        "{} ground truth case(s) have no prediction: {}; pass `--missing worst` to score them as empty predictions",
        cases.len(), cases.join(", ")
    )]
    MissingPredictions { cases: Vec<String> },
    /// A probability map is missing, has the wrong shape or channel count, or holds NaN.
    #[error("case {case}: probability map: {reason}")]
    Probabilities { case: String, reason: String },
    /// Bad inputs: empty folders, unreadable dataset.json, duplicate case names, bad options.
    #[error("{}: {reason}", path.display())]
    Input { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A JSON file that cannot be parsed (`what` = "not valid JSON") or serialized.
    #[error("{}: {what}: {source}", path.display())]
    Json {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// Rendering a plot failed.
    #[error("{}: plot: {source}", path.display())]
    Plot {
        path: PathBuf,
        #[source]
        source: medseg_volume::BoxedError,
    },
}
