//! medseg's kernels registered as burn backend extension ops (`#[backend_extension]`): each op
//! has a default body (burn's own ops), a `Flex` body that runs the [`crate::cpu`] kernels, and
//! an `Autodiff` body that records a hand-written backward pass. Only [`crate::ops`] calls
//! them, after checking that the device is flex and the dtype f32.

pub(crate) mod conv;
pub(crate) mod depth_to_space;
pub(crate) mod instance_norm;
pub(crate) mod leaky_relu;

use burn::backend::flex::FlexTensor;
use burn::tensor::TensorData;

/// Contiguous view of a flex tensor (copies only when strided or offset), as the raw-slice
/// kernels need.
fn contiguous(t: &FlexTensor) -> FlexTensor {
    if t.is_contiguous() && t.layout().start_offset() == 0 {
        t.clone()
    } else {
        t.to_contiguous()
    }
}

/// A flex tensor owning `data`.
fn flex_tensor(data: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}
