//! A burn UNet as a sliding-window forward function.

use crate::InferError;
use burn::tensor::Device;
use medseg_model::UNet;
use medseg_model::convert::{array_into_tensor, tensor_to_array};
use ndarray::{Array5, Ix5};

/// Runs a network on batches of windows: ndarray in, ndarray logits out.
pub struct NetworkForward<'a> {
    pub model: &'a UNet,
    pub device: Device,
}

impl NetworkForward<'_> {
    /// Logits `[b, classes, d, h, w]` for windows `[b, channels, d, h, w]`.
    pub fn forward(&self, x: Array5<f32>) -> Result<Array5<f32>, InferError> {
        let t = array_into_tensor::<5>(x.into_dyn(), &self.device)?;
        let y = self.model.forward_logits(t);
        let a = tensor_to_array::<5>(y)?;
        a.into_dimensionality::<Ix5>()
            .map_err(|e| InferError::Shape(e.to_string()))
    }
}
