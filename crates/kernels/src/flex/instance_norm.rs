//! Affine instance norm (optionally fused with the LeakyReLU after it) as a burn backend
//! extension op with its own backward: flex runs [`crate::cpu::instance_norm`], autodiff keeps
//! the forward's row statistics in its state, so the backward is two passes over the input and
//! the gradient.
//!
//! Why: burn 0.22 builds InstanceNorm as GroupNorm from ~9 tensor ops forward and ~15-20
//! backward, each a full pass over the activation, several of them serial.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::Tensor;

use super::{contiguous, flex_tensor};
use crate::cpu::instance_norm::{self, NormShape, RowAffine};

#[backend_extension(Flex, Autodiff)]
pub trait InstanceNormBackend: Backend {
    /// `x` `[n, c, ...]`, `gamma`/`beta` `[c]`: `(x - mean) / sqrt(var + eps) * gamma + beta`
    /// with mean and (biased) variance over each `(n, c)` row, followed by a LeakyReLU of
    /// negative slope `slope` when one is given.
    fn fused_instance_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
        slope: Option<f64>,
    ) -> FloatTensor<Self>;
}

/// Forward pass on flex tensors; also returns each row's statistics for the backward pass.
fn norm_act_forward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    eps: f64,
    slope: Option<f64>,
) -> (FlexTensor, Vec<RowAffine>) {
    let (xc, g, b) = (contiguous(x), contiguous(gamma), contiguous(beta));
    let (y, stats) = instance_norm::forward(
        xc.storage::<f32>(),
        g.storage::<f32>(),
        b.storage::<f32>(),
        NormShape::of(&x.shape()),
        eps,
        slope.map(|s| s as f32),
    );
    (flex_tensor(y, x.shape().to_vec()), stats)
}

/// Gradients of input, gamma and beta from the output gradient `grad`.
fn norm_act_backward(
    x: &FlexTensor,
    grad: &FlexTensor,
    stats: &[RowAffine],
    slope: Option<f64>,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let (xc, dy) = (contiguous(x), contiguous(grad));
    let s = NormShape::of(&x.shape());
    let (dx, dgamma, dbeta) = instance_norm::backward(
        xc.storage::<f32>(),
        dy.storage::<f32>(),
        stats,
        s,
        slope.map(|s| s as f32),
    );
    (
        flex_tensor(dx, x.shape().to_vec()),
        flex_tensor(dgamma, vec![s.channels]),
        flex_tensor(dbeta, vec![s.channels]),
    )
}

impl InstanceNormBackend for Flex {
    fn fused_instance_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        eps: f64,
        slope: Option<f64>,
    ) -> FlexTensor {
        norm_act_forward(&x, &gamma, &beta, eps, slope).0
    }
}

#[derive(Debug)]
struct InstanceNormBackward;

impl Backward<Flex, 3> for InstanceNormBackward {
    /// (input checkpoint, slope, per-row statistics of the forward pass)
    type State = (NodeId, Option<f64>, Vec<RowAffine>);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_g, node_b] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x_state, slope, stats) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(x_state);
        let (dx, dgamma, dbeta) = norm_act_backward(&x, &grad, &stats, slope);
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, dx);
        }
        if let Some(node) = node_g {
            grads.register::<Flex>(node.id, dgamma);
        }
        if let Some(node) = node_b {
            grads.register::<Flex>(node.id, dbeta);
        }
    }
}

impl<C: CheckpointStrategy> InstanceNormBackend for Autodiff<Flex, C> {
    fn fused_instance_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
        slope: Option<f64>,
    ) -> FloatTensor<Self> {
        match InstanceNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let xs = prep.checkpoint(&x);
                let (y, stats) = norm_act_forward(
                    &x.into_primitive(),
                    &gamma.into_primitive(),
                    &beta.into_primitive(),
                    eps,
                    slope,
                );
                prep.finish((xs, slope, stats), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::fused_instance_norm(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                eps,
                slope,
            )),
        }
    }
}

/// The fused op on `Dispatch` tensors (flex devices, f32 only: [`crate::ops`] checks).
pub(crate) fn fused_instance_norm<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    eps: f64,
    slope: Option<f64>,
) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as InstanceNormBackend>::fused_instance_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        eps,
        slope,
    ))
}
