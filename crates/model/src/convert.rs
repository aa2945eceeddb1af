//! The one place where ndarray arrays and burn tensors meet. Both are C order, so a volume's
//! `[k, j, i]` array maps to `[.., D, H, W]` with no axis shuffling.

use crate::error::ModelError;
use burn::tensor::{Device, Int, Tensor, TensorData};
use ndarray::{ArrayD, IxDyn};

/// Copies an f32 array of rank `D` onto `device` (one copy; a non-standard layout is read in
/// logical C order).
pub fn array_to_tensor<const D: usize>(
    a: &ArrayD<f32>,
    device: &Device,
) -> Result<Tensor<D>, ModelError> {
    check_rank::<D>(a.ndim())?;
    let v: Vec<f32> = match a.as_slice() {
        Some(s) => s.to_vec(),
        None => a.iter().copied().collect(),
    };
    Ok(Tensor::from_data(
        TensorData::new(v, a.shape().to_vec()),
        device,
    ))
}

/// Moves an owned f32 array onto `device` without an extra host copy when it is in standard
/// layout.
pub fn array_into_tensor<const D: usize>(
    a: ArrayD<f32>,
    device: &Device,
) -> Result<Tensor<D>, ModelError> {
    check_rank::<D>(a.ndim())?;
    let shape = a.shape().to_vec();
    let v = if a.is_standard_layout() {
        let (v, offset) = a.into_raw_vec_and_offset();
        match offset {
            Some(0) | None => v,
            Some(o) => v[o..].to_vec(),
        }
    } else {
        a.iter().copied().collect()
    };
    Ok(Tensor::from_data(TensorData::new(v, shape), device))
}

/// Label map (class ids) to an integer tensor of rank `D`.
pub fn labels_to_tensor<const D: usize>(
    a: &ArrayD<u16>,
    device: &Device,
) -> Result<Tensor<D, Int>, ModelError> {
    check_rank::<D>(a.ndim())?;
    let v: Vec<i64> = a.iter().map(|&x| x as i64).collect();
    Ok(Tensor::from_data(
        TensorData::new(v, a.shape().to_vec()),
        device,
    ))
}

/// Copies a float tensor back to the host as an f32 array of the same shape.
pub fn tensor_to_array<const D: usize>(t: Tensor<D>) -> Result<ArrayD<f32>, ModelError> {
    let shape = t.dims().to_vec();
    let v = t
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| ModelError::Shape(format!("tensor data: {e:?}")))?;
    ArrayD::from_shape_vec(IxDyn(&shape), v).map_err(|e| ModelError::Shape(e.to_string()))
}

fn check_rank<const D: usize>(ndim: usize) -> Result<(), ModelError> {
    if ndim == D {
        Ok(())
    } else {
        Err(ModelError::Shape(format!(
            "expected a rank-{D} array, got rank {ndim}"
        )))
    }
}
