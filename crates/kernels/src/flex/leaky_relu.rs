//! LeakyReLU as a burn backend extension op with its own backward: flex runs
//! [`crate::cpu::leaky_relu`] (one parallel pass each way).
//!
//! Why: burn 0.22 builds LeakyReLU from three tensor ops (compare, scale, `mask_where`), and on
//! an autodiff device its backward runs a serial `mask_where` per op — about a tenth of a flex
//! UNet training step.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::{ActivationOps, FloatTensorOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DType, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::Tensor;

use super::{contiguous, flex_tensor};
use crate::cpu::leaky_relu;

#[backend_extension(Flex, Autodiff)]
pub trait LeakyReluBackend: Backend {
    /// `x` where `x >= 0`, `slope * x` elsewhere.
    fn fused_leaky_relu(x: FloatTensor<Self>, slope: f64) -> FloatTensor<Self> {
        Self::leaky_relu(x, slope.into())
    }

    /// `grad` where `x >= 0`, `slope * grad` elsewhere.
    fn fused_leaky_relu_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        slope: f64,
    ) -> FloatTensor<Self>;
}

impl LeakyReluBackend for Flex {
    fn fused_leaky_relu(x: FlexTensor, slope: f64) -> FlexTensor {
        if x.dtype() != DType::F32 {
            return Self::leaky_relu(x, slope.into());
        }
        let xc = contiguous(&x);
        let out = leaky_relu::forward(xc.storage::<f32>(), slope as f32);
        flex_tensor(out, x.shape().to_vec())
    }

    fn fused_leaky_relu_backward(x: FlexTensor, grad: FlexTensor, slope: f64) -> FlexTensor {
        let (xc, gc) = (contiguous(&x), contiguous(&grad));
        let s = slope as f32;
        if x.dtype() != DType::F32 || grad.dtype() != DType::F32 {
            // other dtypes: the same formula through burn's ops
            let bool_dtype =
                burn::backend::get_or_init_device_settings::<Flex>(&x.device()).bool_dtype;
            let mask = Self::float_lower_elem(x, 0f32.into(), bool_dtype);
            let scaled = Self::float_mul_scalar(grad.clone(), slope.into());
            return Self::float_mask_where(grad, mask, scaled);
        }
        let out = leaky_relu::backward(xc.storage::<f32>(), gc.storage::<f32>(), s);
        flex_tensor(out, grad.shape().to_vec())
    }
}

#[derive(Debug)]
struct LeakyReluBackward;

impl<B: Backend + LeakyReluBackend> Backward<B, 1> for LeakyReluBackward {
    /// (input checkpoint, slope)
    type State = (NodeId, f64);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, slope) = ops.state;
        if let Some(node) = node_x {
            let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
            grads.register::<B>(node.id, B::fused_leaky_relu_backward(x, grad, slope));
        }
    }
}

impl<B: Backend + LeakyReluBackend, C: CheckpointStrategy> LeakyReluBackend for Autodiff<B, C> {
    fn fused_leaky_relu(x: FloatTensor<Self>, slope: f64) -> FloatTensor<Self> {
        match LeakyReluBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let xs = prep.checkpoint(&x);
                prep.finish((xs, slope), B::fused_leaky_relu(x.into_primitive(), slope))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_leaky_relu(x.into_primitive(), slope)),
        }
    }

    fn fused_leaky_relu_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        slope: f64,
    ) -> FloatTensor<Self> {
        // Only reached for a second-order use; composed from differentiable ops.
        let bool_dtype = burn::backend::get_or_init_device_settings::<Self>(&x.device()).bool_dtype;
        let mask = Self::float_lower_elem(x, 0f32.into(), bool_dtype);
        let scaled = Self::float_mul_scalar(grad.clone(), slope.into());
        Self::float_mask_where(grad, mask, scaled)
    }
}

/// The op on `Dispatch` tensors (flex devices only: [`crate::ops`] checks).
pub(crate) fn fused_leaky_relu<const D: usize>(x: Tensor<D>, slope: f64) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as LeakyReluBackend>::fused_leaky_relu(
        x.into_dispatch(),
        slope,
    ))
}
