//! Affine instance norm for the flex backend as a few parallel passes over each `(n, c)` row,
//! forward and backward (a burn backend extension op with its own backward), optionally fused
//! with the LeakyReLU that follows it in every conv block: the forward keeps each row's
//! statistics, so the backward pass is two passes over the input and the gradient.
//!
//! Why: burn 0.22 builds InstanceNorm as GroupNorm from ~9 tensor ops forward and ~15-20
//! backward, each a full pass over the activation, several of them serial. Same formula as
//! burn's (biased variance, `eps` inside the square root); statistics sum in f32 lanes over
//! blocks of 256 elements and in f64 across blocks.
//! Used on the flex device when the fast path is on (`MEDSEG_CONV` not `burn`, see
//! [`crate::fast_conv::conv_impl`]); burn's `InstanceNorm` otherwise.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DType, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::nn::InstanceNorm;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use crate::fast_conv::{contiguous, fast_path_on};

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

/// (rows = n * c, channels, row length)
fn dims(x: &FlexTensor) -> (usize, usize, usize) {
    let s = x.shape();
    let c = s[1];
    let len: usize = s[2..].iter().product();
    (s[0] * c, c, len)
}

/// Lanes of the partial sums below: independent accumulators, so the adds vectorize instead
/// of waiting on one another (a single running sum costs an add latency per element).
const LANES: usize = 16;
/// Elements summed in f32 before a block's total is added to the f64 sum.
const BLOCK: usize = 256;

/// `(sum f(x), sum g(x))` over a row of `(x, y)` pairs: f32 lanes within blocks of
/// [`BLOCK`] elements, f64 across blocks.
#[inline(always)]
fn pair_sums(xs: &[f32], ys: &[f32], f: impl Fn(f32, f32) -> (f32, f32)) -> (f64, f64) {
    let (mut a, mut b) = (0.0f64, 0.0f64);
    for (xb, yb) in xs.chunks(BLOCK).zip(ys.chunks(BLOCK)) {
        let (mut la, mut lb) = ([0.0f32; LANES], [0.0f32; LANES]);
        let mut xc = xb.chunks_exact(LANES);
        let mut yc = yb.chunks_exact(LANES);
        for (x, y) in (&mut xc).zip(&mut yc) {
            for i in 0..LANES {
                let (u, v) = f(x[i], y[i]);
                la[i] += u;
                lb[i] += v;
            }
        }
        for (&x, &y) in xc.remainder().iter().zip(yc.remainder()) {
            let (u, v) = f(x, y);
            la[0] += u;
            lb[0] += v;
        }
        a += la.iter().map(|&v| v as f64).sum::<f64>();
        b += lb.iter().map(|&v| v as f64).sum::<f64>();
    }
    (a, b)
}

/// (mean, 1 / sqrt(var + eps)) of one row: two passes (mean, then squared deviations), f32
/// partial sums added in f64.
fn row_stats(row: &[f32], eps: f64) -> (f32, f32) {
    let n = row.len().max(1) as f64;
    let mean = pair_sums(row, row, |v, _| (v, 0.0)).0 / n;
    let m = mean as f32;
    let var = pair_sums(row, row, |v, _| ((v - m) * (v - m), 0.0)).0 / n;
    (m, (1.0 / (var + eps).sqrt()) as f32)
}

fn check_f32(ts: &[&FlexTensor]) {
    // Only reached through `instance_norm`, which checks the dtype first.
    assert!(
        ts.iter().all(|t| t.dtype() == DType::F32),
        "fused instance norm takes f32 tensors"
    );
}

/// What the backward pass needs of one row: the forward's `z = x * scale + shift` (so the
/// activation's sign test sees bit-identical values), and `mean`, `rstd` for `x_hat`.
#[derive(Debug, Clone, Copy)]
struct RowAffine {
    mean: f32,
    rstd: f32,
    scale: f32,
    shift: f32,
}

/// The activation's derivative at pre-activation `z`: `slope` below zero, 1 above (no
/// activation: `slope` = 1).
#[inline(always)]
fn act_factor(z: f32, slope: f32) -> f32 {
    if z < 0.0 { slope } else { 1.0 }
}

/// Forward pass; also returns each row's statistics for the backward pass.
fn norm_act_forward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    eps: f64,
    slope: Option<f64>,
) -> (FlexTensor, Vec<RowAffine>) {
    check_f32(&[x, gamma, beta]);
    let (rows, c, len) = dims(x);
    let (xc, g, b) = (contiguous(x), contiguous(gamma), contiguous(beta));
    let (xs, gs, bs) = (xc.storage::<f32>(), g.storage::<f32>(), b.storage::<f32>());
    let slope = slope.map(|s| s as f32);
    // every element is written below (rows of length len cover rows * len)
    let mut out: Vec<f32> = Vec::with_capacity(rows * len);
    let mut stats = vec![
        RowAffine {
            mean: 0.0,
            rstd: 0.0,
            scale: 0.0,
            shift: 0.0
        };
        rows
    ];
    if len > 0 {
        out.spare_capacity_mut()[..rows * len]
            .par_chunks_mut(len)
            .zip(xs.par_chunks(len))
            .zip(stats.par_iter_mut())
            .enumerate()
            .for_each(|(r, ((o, xr), st))| {
                let (mean, rstd) = row_stats(xr, eps);
                let scale = rstd * gs[r % c];
                let shift = bs[r % c] - mean * scale;
                *st = RowAffine {
                    mean,
                    rstd,
                    scale,
                    shift,
                };
                match slope {
                    Some(s) => {
                        for (o, &v) in o.iter_mut().zip(xr) {
                            let z = v * scale + shift;
                            o.write(if z < 0.0 { z * s } else { z });
                        }
                    }
                    None => {
                        for (o, &v) in o.iter_mut().zip(xr) {
                            o.write(v * scale + shift);
                        }
                    }
                }
            });
    }
    // SAFETY: the loop above wrote all rows * len elements
    unsafe { out.set_len(rows * len) };
    let y = FlexTensor::from_data(TensorData::new(out, x.shape().to_vec()));
    (y, stats)
}

/// Gradients of input, gamma and beta from the output gradient `grad`, in two passes per row.
/// With `dz` the gradient before the activation and `x_hat = (x - mean) * rstd`:
/// `dbeta = sum(dz)`, `dgamma = sum(dz * x_hat)` (over n and space), and
/// `dx = rstd * gamma * (dz - mean(dz) - x_hat * mean(dz * x_hat))`.
fn norm_act_backward(
    x: &FlexTensor,
    grad: &FlexTensor,
    stats: &[RowAffine],
    slope: Option<f64>,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    check_f32(&[x, grad]);
    let (rows, c, len) = dims(x);
    let (xc, dy) = (contiguous(x), contiguous(grad));
    let (xs, dys) = (xc.storage::<f32>(), dy.storage::<f32>());
    let slope = slope.map_or(1.0, |s| s as f32);
    // every element is written below (rows of length len cover rows * len)
    let mut out: Vec<f32> = Vec::with_capacity(rows * len);
    let mut sums = vec![(0.0f64, 0.0f64); rows];
    if len > 0 {
        out.spare_capacity_mut()[..rows * len]
            .par_chunks_mut(len)
            .zip(xs.par_chunks(len).zip(dys.par_chunks(len)))
            .zip(sums.par_iter_mut())
            .enumerate()
            .for_each(|(r, ((o, (xr, gr)), sum))| {
                let RowAffine {
                    mean,
                    rstd,
                    scale,
                    shift,
                } = stats[r];
                let (a, b) = pair_sums(xr, gr, |v, d| {
                    let dz = d * act_factor(v * scale + shift, slope);
                    (dz, dz * ((v - mean) * rstd))
                });
                *sum = (a, b);
                let ma = (a / len as f64) as f32;
                let mb = (b / len as f64) as f32;
                for ((o, &v), &d) in o.iter_mut().zip(xr).zip(gr) {
                    let dz = d * act_factor(v * scale + shift, slope);
                    let xhat = (v - mean) * rstd;
                    o.write(scale * (dz - ma - xhat * mb));
                }
            });
    }
    let (mut dgamma, mut dbeta) = (vec![0.0f64; c], vec![0.0f64; c]);
    for (r, &(a, b)) in sums.iter().enumerate() {
        dbeta[r % c] += a;
        dgamma[r % c] += b;
    }
    let to_tensor = |v: Vec<f64>| {
        let v: Vec<f32> = v.into_iter().map(|v| v as f32).collect();
        FlexTensor::from_data(TensorData::new(v, vec![c]))
    };
    // SAFETY: the loop above wrote all rows * len elements
    unsafe { out.set_len(rows * len) };
    let dx = FlexTensor::from_data(TensorData::new(out, x.shape().to_vec()));
    (dx, to_tensor(dgamma), to_tensor(dbeta))
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

/// Affine instance norm: the fused flex op on flex f32 tensors when the fast path is on,
/// burn's `InstanceNorm::forward` otherwise (including `affine = false`).
pub fn instance_norm<const D: usize>(norm: &InstanceNorm, x: Tensor<D>) -> Tensor<D> {
    fused(norm, x, None).unwrap_or_else(|x| norm.forward(x))
}

/// Affine instance norm followed by LeakyReLU(`slope`) as one fused flex op (one write of the
/// activation instead of two; the backward pass reads `x` and the gradient twice) when the
/// fast path is on, burn's `InstanceNorm` and [`crate::fast_act::leaky_relu`] otherwise.
pub fn instance_norm_leaky_relu<const D: usize>(
    norm: &InstanceNorm,
    x: Tensor<D>,
    slope: f64,
) -> Tensor<D> {
    fused(norm, x, Some(slope))
        .unwrap_or_else(|x| crate::fast_act::leaky_relu(norm.forward(x), slope))
}

/// The fused op, or `Err(x)` back when it does not apply.
fn fused<const D: usize>(
    norm: &InstanceNorm,
    x: Tensor<D>,
    slope: Option<f64>,
) -> Result<Tensor<D>, Tensor<D>> {
    let fast = fast_path_on(&x.device()) && norm.affine && D >= 3 && x.dtype() == DType::F32;
    match (&norm.gamma, &norm.beta) {
        (Some(g), Some(b)) if fast => {
            let (g, b) = (g.val(), b.val());
            if g.dtype() != DType::F32 || b.dtype() != DType::F32 {
                return Err(x);
            }
            Ok(Tensor::from_dispatch(
                <Dispatch as InstanceNormBackend>::fused_instance_norm(
                    x.into_dispatch(),
                    g.into_dispatch(),
                    b.into_dispatch(),
                    norm.epsilon,
                    slope,
                ),
            ))
        }
        _ => Err(x),
    }
}
