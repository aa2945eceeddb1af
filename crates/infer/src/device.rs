//! Picking the compute device by name (`--device flex|wgpu`): medseg-model's
//! [`medseg_model::select_device`] with this crate's error type.

use crate::InferError;
use burn::tensor::Device;

pub use medseg_model::DEVICE_NAMES;

/// The device for `name` (see [`medseg_model::select_device`]).
pub fn select_device(name: &str) -> Result<Device, InferError> {
    Ok(medseg_model::select_device(name)?)
}
