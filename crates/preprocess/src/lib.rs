//! medseg-preprocess: everything between a NIfTI case and a network input, and back.
//!
//! * [`resample`](fn@resample) / [`resample_labels`] (physical space, ITK's rules, nnU-Net's
//!   separate z),
//! * [`normalize`](fn@normalize) (CT clip + z-score, z-score, z-score inside the nonzero mask),
//! * [`crop`] (crop to nonzero, exact uncrop, padding), [`orientation`] (lossless RAS),
//! * [`fingerprint`] and [`plan`] (nnU-Net's rules, `plan.json`), [`topology`] (the network's
//!   stages, kernels, strides and widths by nnU-Net's `get_pool_and_conv_props`),
//! * [`pipeline`] ([`preprocess_case`] and its inverse [`restore_to_original`]),
//! * [`sampler`] (patches with foreground oversampling) and [`augment`].
//!
//! Arrays are `[k, j, i]` (`[c, k, j, i]` with channels); geometry is `(i, j, k)`.

// deny, not forbid: ndarray's `s!` macro expands to an `#[allow(unsafe_code)]` block.
#![deny(unsafe_code)]
// Index loops over the three axes are clearer than iterator chains here, and `!(x >= y)`
// comparisons are deliberate: they also reject NaN.
#![allow(clippy::needless_range_loop, clippy::neg_cmp_op_on_partial_ord)]

pub mod augment;
pub mod budget;
pub mod crop;
mod error;
pub mod fingerprint;
pub mod normalize;
pub mod orientation;
pub mod pipeline;
pub mod plan;
pub mod resample;
pub mod sampler;
mod stats;
pub mod topology;

pub use augment::{AugmentationConfig, Augmenter};
pub use crop::{BoundingBox, crop_to_nonzero, nonzero_mask, pad_to_shape, uncrop};
pub use error::PreprocessError;
pub use fingerprint::{
    CaseFingerprint, ChannelIntensity, DatasetFingerprint, FingerprintOptions, fingerprint_case,
    fingerprint_dataset,
};
pub use normalize::{
    Normalization, count_non_finite, non_finite_warning, normalize, replace_non_finite,
};
pub use orientation::Reorientation;
pub use pipeline::{
    CaseProperties, PreprocessedCase, preprocess_case, restore_channel_to_original,
    restore_labels_to_original, restore_to_original,
};
pub use plan::{Plan, PlanOptions};
pub use resample::{
    Boundary, Grid, Interpolation, LabelInterpolation, ResampleOptions, resample, resample_labels,
    resample_volume, resize, separate_z_axis,
};
pub use sampler::{ClassLocations, PatchSampler};
pub use stats::percentile;
pub use topology::NetworkTopology;
