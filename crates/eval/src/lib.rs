//! medseg-eval: segmentation and classification metrics that agree with MONAI, scikit-learn
//! and MedPy, with every convention written down.
//!
//! * [`evaluate_pair`] / [`evaluate_case`]: every metric of every label for one pair of label
//!   maps ([`metrics`] documents the definitions and empty-mask rules).
//! * [`edt`]: exact Euclidean distance transform with anisotropic spacing (Felzenszwalb &
//!   Huttenlocher), [`surface`]: surface voxels, [`distances`]: HD, HD95, ASSD, MASD, NSD.
//! * [`roc`]: rank-based ROC AUC with half credit for ties and the ROC curve.
//! * [`classification`]: case-level classification per label; [`summary`]: aggregation.
//! * [`cases`]: matching prediction and ground-truth folders, grid checks, parallel evaluation;
//!   [`report`]: JSON, CSV, Markdown; [`plots`]: box plots and ROC curves (PNG).
//!
//! This crate never depends on burn.

// deny, not forbid: ndarray's `s!` macro expands to an `#[allow(unsafe_code)]` block.
#![deny(unsafe_code)]

pub mod cases;
pub mod classification;
pub mod distances;
pub mod edt;
mod error;
pub mod metrics;
pub mod plots;
pub mod report;
pub mod roc;
pub mod summary;
pub mod surface;

pub use cases::{CaseInput, CaseList, Evaluation, MissingPolicy, evaluate_cases, find_cases};
pub use error::EvalError;
pub use metrics::{
    CaseMetrics, EmptyRule, EvalOptions, LabelMetrics, Probabilities, evaluate_case, evaluate_pair,
};
