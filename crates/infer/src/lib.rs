//! medseg-infer: segmenting new volumes with a trained run directory.
//!
//! * [`SlidingWindow`]: nnU-Net's sliding window (overlap, Gaussian importance weights, batched
//!   windows, mirroring TTA, padding) over a preprocessed volume, on ndarray with any forward
//!   function; [`NetworkForward`] plugs a burn [`medseg_model::UNet`] into it.
//! * [`RunDir`]: what a training run left behind (config, plan, network, weights).
//! * [`Predictor`]: one case end to end — the plan's preprocessing, sliding window (several
//!   models ensembled by averaging probabilities), back onto the input grid, argmax,
//!   postprocessing — and [`write_prediction`], which writes the label map with the input's
//!   exact header geometry.

mod device;
mod error;
mod gaussian;
mod network;
mod predictor;
mod run_dir;
mod sliding_window;

pub use device::{DEVICE_NAMES, select_device};
pub use error::InferError;
pub use gaussian::{gaussian_importance_map, uniform_map};
pub use network::NetworkForward;
pub use predictor::{
    CasePrediction, Predictor, ensemble_probabilities, window_for, write_prediction,
};
pub use run_dir::{NETWORK_JSON, RunDir, WEIGHTS_BEST, WEIGHTS_LAST};
pub use sliding_window::{SlidingWindow, softmax_channels};
