//! medseg-postprocess: turning network outputs into clean label maps.
//!
//! * [`argmax`] / [`threshold`]: probabilities to labels.
//! * [`label_components`]: connected components (6/18/26-connectivity in 3D, 4/8 in 2D) with
//!   scipy's label order, [`keep_largest_component`], [`remove_small_components`].
//! * [`fill_holes`]: scipy's `binary_fill_holes` rule (background flood from the border).
//! * [`erode`], [`dilate`], [`open`], [`close`]: binary morphology with `border_value = 0`.
//! * [`Postprocessor`]: the `[postprocess]` config section applied to a label map.
//! * [`LccCandidates`] -> [`PostprocessChoice`]: largest-component steps kept only where they
//!   raise the validation Dice (nnU-Net's `determine_postprocessing`).
//!
//! Everything works on `ndarray::Array3` indexed `[k, j, i]`. **A volume with one slice
//! (`k` extent 1) is treated as a 2D image**: neighbourhoods lie in the slice, so fill holes
//! and erosion do not see the (meaningless) `k` border. That is what makes 2D images fill as 2D.

// deny, not forbid: ndarray's `s!` macro expands to an `#[allow(unsafe_code)]` block.
#![deny(unsafe_code)]

mod argmax;
mod choice;
mod components;
mod connectivity;
mod error;
mod fill;
mod labelmap;
mod morphology;
mod pipeline;

pub use argmax::{argmax, threshold};
pub use choice::{LccCandidates, PostprocessChoice};
pub use components::{
    Components, keep_largest_component, label_components, remove_small_components,
};
pub use connectivity::Connectivity;
pub use error::PostprocessError;
pub use fill::fill_holes;
pub use labelmap::{
    classes_present, fill_holes_per_class, keep_largest_foreground, keep_largest_of_classes,
    keep_largest_per_class, remove_small_per_class,
};
pub use morphology::{Structure, close, dilate, erode, open};
pub use pipeline::Postprocessor;
