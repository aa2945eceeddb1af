//! medseg-infer: segmenting new volumes with a trained run directory.
//!
//! A case goes through three stages, each a named piece of this crate:
//!
//! ```text
//! file grid --preprocess_case (the run's plan)--> network grid
//!   --Segmenter::probabilities (SlidingWindow x models)--> probabilities, network grid
//!   --Segmenter::labels (restore, argmax, postprocess)--> label map, file grid
//!   --write_prediction--> CASE.nii.gz with the input's exact header geometry
//! ```
//!
//! * [`RunLayout`]: every file of a run directory (the layout `medseg train` writes and
//!   everything else reads); [`RunDir`] opens a run (config, plan, network, weights);
//!   [`DirLock`] keeps a second writer out of a run or prediction folder.
//! * [`SlidingWindow`]: nnU-Net's sliding window (overlap, Gaussian importance weights, batched
//!   windows, mirroring TTA, padding) over a preprocessed volume, on ndarray with any forward
//!   function; [`NetworkForward`] plugs a burn [`medseg_model::UNet`] into it.
//! * [`Segmenter`]: the one implementation of sliding window -> restore -> argmax ->
//!   postprocess, shared by `medseg predict` and medseg-train's whole-volume validation.
//! * [`Predictor`]: one case end to end — the plan's preprocessing, then the [`Segmenter`]
//!   over one run or an ensemble of folds — and [`write_prediction`].

// deny, not forbid: ndarray's `s!` macro expands to an `#[allow(unsafe_code)]` block.
#![deny(unsafe_code)]

mod device;
mod error;
mod gaussian;
mod lock;
mod network;
mod predictor;
mod run_dir;
mod segment;
mod sliding_window;

pub use device::{DEVICE_NAMES, select_device};
pub use error::InferError;
pub use gaussian::{gaussian_importance_map, uniform_map};
pub use lock::{DirLock, LockError, LockMode};
pub use network::NetworkForward;
pub use predictor::{Predictor, window_for, write_prediction};
pub use run_dir::{Checkpoint, PredictionLayout, RunDir, RunLayout};
pub use segment::{CasePrediction, Segmenter, ensemble_probabilities};
pub use sliding_window::{SlidingWindow, softmax_channels};
