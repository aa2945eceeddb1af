//! Affine instance norm for the flex backend as a few parallel passes over each `(n, c)` row,
//! forward and backward (a burn backend extension op with its own backward).
//!
//! Why: burn 0.22 builds InstanceNorm as GroupNorm from ~9 tensor ops forward and ~15-20
//! backward, each a full pass over the activation, several of them serial. Same formula as
//! burn's (biased variance, `eps` inside the square root); statistics accumulate in f64.
//! Used on the flex device when the fast path is on (`MEDSEG_CONV` not `burn`, see
//! [`crate::fast_conv::conv_impl`]); burn's `InstanceNorm` otherwise.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, Backend, DType, Dispatch, DispatchDevice, Flex, TensorMetadata, backend_extension,
};
use burn::nn::InstanceNorm;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use crate::fast_conv::{ConvImpl, conv_impl};

#[backend_extension(Flex, Autodiff)]
pub trait InstanceNormBackend: Backend {
    /// `x` `[n, c, ...]`, `gamma`/`beta` `[c]`: `(x - mean) / sqrt(var + eps) * gamma + beta`
    /// with mean and (biased) variance over each `(n, c)` row.
    fn fused_instance_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self>;
}

fn contiguous(t: &FlexTensor) -> FlexTensor {
    if t.is_contiguous() && t.layout().start_offset() == 0 {
        t.clone()
    } else {
        t.to_contiguous()
    }
}

/// (rows = n * c, channels, row length)
fn dims(x: &FlexTensor) -> (usize, usize, usize) {
    let s = x.shape();
    let c = s[1];
    let len: usize = s[2..].iter().product();
    (s[0] * c, c, len)
}

/// (mean, 1 / sqrt(var + eps)) of one row, accumulated in f64.
fn row_stats(row: &[f32], eps: f64) -> (f32, f32) {
    let n = row.len().max(1) as f64;
    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = row
        .iter()
        .map(|&v| {
            let d = v as f64 - mean;
            d * d
        })
        .sum::<f64>()
        / n;
    (mean as f32, (1.0 / (var + eps).sqrt()) as f32)
}

fn check_f32(ts: &[&FlexTensor]) {
    // Only reached through `instance_norm`, which checks the dtype first.
    assert!(
        ts.iter().all(|t| t.dtype() == DType::F32),
        "fused instance norm takes f32 tensors"
    );
}

impl InstanceNormBackend for Flex {
    fn fused_instance_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        eps: f64,
    ) -> FlexTensor {
        check_f32(&[&x, &gamma, &beta]);
        let (rows, c, len) = dims(&x);
        let (xc, g, b) = (contiguous(&x), contiguous(&gamma), contiguous(&beta));
        let (xs, gs, bs) = (xc.storage::<f32>(), g.storage::<f32>(), b.storage::<f32>());
        let mut out = vec![0.0f32; rows * len];
        if len > 0 {
            out.par_chunks_mut(len)
                .zip(xs.par_chunks(len))
                .enumerate()
                .for_each(|(r, (o, xr))| {
                    let (mean, rstd) = row_stats(xr, eps);
                    let scale = rstd * gs[r % c];
                    let shift = bs[r % c] - mean * scale;
                    for (o, &v) in o.iter_mut().zip(xr) {
                        *o = v * scale + shift;
                    }
                });
        }
        FlexTensor::from_data(TensorData::new(out, x.shape().to_vec()))
    }
}

/// Input gradient: `rstd * gamma * (dy - mean(dy) - x_hat * mean(dy * x_hat))` per row.
fn x_backward(x: FlexTensor, gamma: FlexTensor, grad: FlexTensor, eps: f64) -> FlexTensor {
    {
        check_f32(&[&x, &gamma, &grad]);
        let (rows, c, len) = dims(&x);
        let (xc, g, dy) = (contiguous(&x), contiguous(&gamma), contiguous(&grad));
        let (xs, gs, dys) = (xc.storage::<f32>(), g.storage::<f32>(), dy.storage::<f32>());
        let mut out = vec![0.0f32; rows * len];
        if len > 0 {
            out.par_chunks_mut(len)
                .zip(xs.par_chunks(len).zip(dys.par_chunks(len)))
                .enumerate()
                .for_each(|(r, (o, (xr, gr)))| {
                    let (mean, rstd) = row_stats(xr, eps);
                    // a = mean(dy), b = mean(dy * x_hat)
                    let (mut a, mut b) = (0.0f64, 0.0f64);
                    for (&v, &d) in xr.iter().zip(gr) {
                        a += d as f64;
                        b += d as f64 * ((v - mean) * rstd) as f64;
                    }
                    let a = (a / len as f64) as f32;
                    let b = (b / len as f64) as f32;
                    let k = rstd * gs[r % c];
                    for ((o, &v), &d) in o.iter_mut().zip(xr).zip(gr) {
                        let xhat = (v - mean) * rstd;
                        *o = k * (d - a - xhat * b);
                    }
                });
        }
        FlexTensor::from_data(TensorData::new(out, x.shape().to_vec()))
    }
}

/// Gradient of gamma: `sum over n and space of dy * x_hat`.
fn gamma_backward(x: FlexTensor, grad: FlexTensor, eps: f64) -> FlexTensor {
    {
        check_f32(&[&x, &grad]);
        let (rows, c, len) = dims(&x);
        let (xc, dy) = (contiguous(&x), contiguous(&grad));
        let (xs, dys) = (xc.storage::<f32>(), dy.storage::<f32>());
        let per_row: Vec<f64> = if len == 0 {
            vec![0.0; rows]
        } else {
            xs.par_chunks(len)
                .zip(dys.par_chunks(len))
                .map(|(xr, gr)| {
                    let (mean, rstd) = row_stats(xr, eps);
                    xr.iter()
                        .zip(gr)
                        .map(|(&v, &d)| d as f64 * ((v - mean) * rstd) as f64)
                        .sum::<f64>()
                })
                .collect()
        };
        let mut out = vec![0.0f64; c];
        for (r, v) in per_row.into_iter().enumerate() {
            out[r % c] += v;
        }
        let out: Vec<f32> = out.into_iter().map(|v| v as f32).collect();
        FlexTensor::from_data(TensorData::new(out, vec![c]))
    }
}

/// Gradient of beta: `sum over n and space of dy`.
fn beta_backward(grad: FlexTensor) -> FlexTensor {
    {
        check_f32(&[&grad]);
        let (rows, c, len) = dims(&grad);
        let dy = contiguous(&grad);
        let dys = dy.storage::<f32>();
        let per_row: Vec<f64> = if len == 0 {
            vec![0.0; rows]
        } else {
            dys.par_chunks(len)
                .map(|gr| gr.iter().map(|&d| d as f64).sum::<f64>())
                .collect()
        };
        let mut out = vec![0.0f64; c];
        for (r, v) in per_row.into_iter().enumerate() {
            out[r % c] += v;
        }
        let out: Vec<f32> = out.into_iter().map(|v| v as f32).collect();
        FlexTensor::from_data(TensorData::new(out, vec![c]))
    }
}

#[derive(Debug)]
struct InstanceNormBackward;

impl Backward<Flex, 3> for InstanceNormBackward {
    /// (input, gamma checkpoints, eps)
    type State = (NodeId, NodeId, f64);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_g, node_b] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x_state, g_state, eps) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(x_state);
        let gamma = checkpointer.retrieve_node_output::<FlexTensor>(g_state);
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, x_backward(x.clone(), gamma, grad.clone(), eps));
        }
        if let Some(node) = node_g {
            grads.register::<Flex>(node.id, gamma_backward(x, grad.clone(), eps));
        }
        if let Some(node) = node_b {
            grads.register::<Flex>(node.id, beta_backward(grad));
        }
    }
}

impl<C: CheckpointStrategy> InstanceNormBackend for Autodiff<Flex, C> {
    fn fused_instance_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        match InstanceNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let xs = prep.checkpoint(&x);
                let gs = prep.checkpoint(&gamma);
                prep.finish(
                    (xs, gs, eps),
                    Flex::fused_instance_norm(
                        x.into_primitive(),
                        gamma.into_primitive(),
                        beta.into_primitive(),
                        eps,
                    ),
                )
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::fused_instance_norm(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                eps,
            )),
        }
    }
}

/// Affine instance norm: the fused flex op on flex f32 tensors when the fast path is on,
/// burn's `InstanceNorm::forward` otherwise (including `affine = false`).
pub fn instance_norm<const D: usize>(norm: &InstanceNorm, x: Tensor<D>) -> Tensor<D> {
    let fast = conv_impl() == ConvImpl::Fast
        && norm.affine
        && D >= 3
        && x.dtype() == DType::F32
        && matches!(
            x.device().without_autodiff().as_dispatch(),
            DispatchDevice::Flex(_)
        );
    match (&norm.gamma, &norm.beta) {
        (Some(g), Some(b)) if fast => {
            let (g, b) = (g.val(), b.val());
            if g.dtype() != DType::F32 || b.dtype() != DType::F32 {
                return norm.forward(x);
            }
            Tensor::from_dispatch(<Dispatch as InstanceNormBackend>::fused_instance_norm(
                x.into_dispatch(),
                g.into_dispatch(),
                b.into_dispatch(),
                norm.epsilon,
            ))
        }
        _ => norm.forward(x),
    }
}
