//! Affine instance norm over the `(n, c)` rows of a contiguous f32 tensor, optionally fused
//! with the LeakyReLU that follows it in every conv block: the forward keeps each row's
//! statistics, so the backward pass is two passes over the input and the gradient.
//!
//! Same formula as burn's `InstanceNorm` (biased variance, `eps` inside the square root);
//! statistics sum in f32 lanes over blocks of 256 elements and in f64 across blocks.

use rayon::prelude::*;

use crate::trace::{self, KernelPath};

/// Lanes of the partial sums below: independent accumulators, so the adds vectorize instead
/// of waiting on one another (a single running sum costs an add latency per element).
const LANES: usize = 16;
/// Elements summed in f32 before a block's total is added to the f64 sum.
const BLOCK: usize = 256;

/// Layout of the normalized tensor: `rows = n * channels` rows of `row_len` elements
/// (`[n, c, spatial...]` in C order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NormShape {
    pub rows: usize,
    pub channels: usize,
    pub row_len: usize,
}

impl NormShape {
    /// The layout of a `[n, c, spatial...]` tensor.
    pub fn of(shape: &[usize]) -> Self {
        let channels = shape.get(1).copied().unwrap_or(1);
        Self {
            rows: shape.first().copied().unwrap_or(1) * channels,
            channels,
            row_len: shape.iter().skip(2).product(),
        }
    }
    fn len(&self) -> usize {
        self.rows * self.row_len
    }
}

/// What the backward pass needs of one row: the forward's `z = x * scale + shift` (so the
/// activation's sign test sees bit-identical values), and `mean`, `rstd` for `x_hat`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RowAffine {
    mean: f32,
    rstd: f32,
    scale: f32,
    shift: f32,
}

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

/// The activation's derivative at pre-activation `z`: `slope` below zero, 1 above (no
/// activation: `slope` = 1).
#[inline(always)]
fn act_factor(z: f32, slope: f32) -> f32 {
    if z < 0.0 { slope } else { 1.0 }
}

/// `(x - mean) / sqrt(var + eps) * gamma + beta` per row (`gamma`, `beta`: one value per
/// channel), followed by LeakyReLU(`slope`) when one is given. Returns the output and each
/// row's statistics for [`backward`].
pub fn forward(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    s: NormShape,
    eps: f64,
    slope: Option<f32>,
) -> (Vec<f32>, Vec<RowAffine>) {
    assert_eq!(x.len(), s.len(), "instance norm input size");
    assert!(
        gamma.len() == s.channels && beta.len() == s.channels,
        "instance norm affine size"
    );
    trace::hit(KernelPath::InstanceNorm);
    let len = s.row_len;
    // every element is written below (rows of length len cover rows * len)
    let mut out: Vec<f32> = Vec::with_capacity(s.len());
    let mut stats = vec![RowAffine::default(); s.rows];
    if len > 0 {
        out.spare_capacity_mut()[..s.len()]
            .par_chunks_mut(len)
            .zip(x.par_chunks(len))
            .zip(stats.par_iter_mut())
            .enumerate()
            .for_each(|(r, ((o, xr), st))| {
                let (mean, rstd) = row_stats(xr, eps);
                let scale = rstd * gamma[r % s.channels];
                let shift = beta[r % s.channels] - mean * scale;
                *st = RowAffine {
                    mean,
                    rstd,
                    scale,
                    shift,
                };
                match slope {
                    Some(sl) => {
                        for (o, &v) in o.iter_mut().zip(xr) {
                            let z = v * scale + shift;
                            o.write(if z < 0.0 { z * sl } else { z });
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
    unsafe { out.set_len(s.len()) };
    (out, stats)
}

/// Gradients `(dx, dgamma, dbeta)` from the output gradient `grad`, in two passes per row.
/// With `dz` the gradient before the activation and `x_hat = (x - mean) * rstd`:
/// `dbeta = sum(dz)`, `dgamma = sum(dz * x_hat)` (over n and space), and
/// `dx = rstd * gamma * (dz - mean(dz) - x_hat * mean(dz * x_hat))`.
pub fn backward(
    x: &[f32],
    grad: &[f32],
    stats: &[RowAffine],
    s: NormShape,
    slope: Option<f32>,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert!(
        x.len() == s.len() && grad.len() == s.len(),
        "instance norm gradient size"
    );
    assert_eq!(stats.len(), s.rows, "instance norm statistics");
    trace::hit(KernelPath::InstanceNorm);
    let len = s.row_len;
    let slope = slope.unwrap_or(1.0);
    // every element is written below (rows of length len cover rows * len)
    let mut out: Vec<f32> = Vec::with_capacity(s.len());
    let mut sums = vec![(0.0f64, 0.0f64); s.rows];
    if len > 0 {
        out.spare_capacity_mut()[..s.len()]
            .par_chunks_mut(len)
            .zip(x.par_chunks(len).zip(grad.par_chunks(len)))
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
    // SAFETY: the loop above wrote all rows * len elements
    unsafe { out.set_len(s.len()) };
    let (mut dgamma, mut dbeta) = (vec![0.0f64; s.channels], vec![0.0f64; s.channels]);
    for (r, &(a, b)) in sums.iter().enumerate() {
        dbeta[r % s.channels] += a;
        dgamma[r % s.channels] += b;
    }
    let to_f32 = |v: Vec<f64>| v.into_iter().map(|v| v as f32).collect::<Vec<f32>>();
    (out, to_f32(dgamma), to_f32(dbeta))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain two-pass f64 reference of the forward pass.
    fn reference(x: &[f32], g: &[f32], b: &[f32], s: NormShape, slope: Option<f32>) -> Vec<f32> {
        let mut out = Vec::with_capacity(x.len());
        for (r, row) in x.chunks(s.row_len).enumerate() {
            let n = row.len() as f64;
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
            let rstd = 1.0 / (var + 1e-5).sqrt();
            for &v in row {
                let z =
                    (v as f64 - mean) * rstd * g[r % s.channels] as f64 + b[r % s.channels] as f64;
                let z = match slope {
                    Some(sl) if z < 0.0 => z * sl as f64,
                    _ => z,
                };
                out.push(z as f32);
            }
        }
        out
    }

    #[test]
    fn forward_matches_a_two_pass_reference() {
        let s = NormShape::of(&[2, 3, 5, 7, 11]);
        let x: Vec<f32> = (0..s.rows * s.row_len)
            .map(|i| ((i * 7919 % 1000) as f32 / 100.0 - 5.0) * (1 + i % 3) as f32)
            .collect();
        let (g, b) = (vec![0.5, 1.0, 2.0], vec![-0.1, 0.0, 0.3]);
        for slope in [None, Some(0.01)] {
            let (got, _) = forward(&x, &g, &b, s, 1e-5, slope);
            let want = reference(&x, &g, &b, s, slope);
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(worst < 1e-5, "slope {slope:?}: max |diff| {worst}");
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        let s = NormShape::of(&[1, 2, 3, 4]);
        let x: Vec<f32> = (0..s.rows * s.row_len)
            .map(|i| ((i * 37 % 17) as f32) / 4.0)
            .collect();
        let r: Vec<f32> = (0..x.len())
            .map(|i| ((i * 11 % 7) as f32) / 3.0 - 1.0)
            .collect();
        let (g, b) = (vec![1.5, 0.7], vec![0.2, -0.4]);
        let loss = |x: &[f32]| -> f64 {
            let (y, _) = forward(x, &g, &b, s, 1e-5, Some(0.1));
            y.iter().zip(&r).map(|(&y, &r)| (y * r) as f64).sum()
        };
        let (_, stats) = forward(&x, &g, &b, s, 1e-5, Some(0.1));
        let (dx, _, _) = backward(&x, &r, &stats, s, Some(0.1));
        for i in [0, 5, 13, 22] {
            let h = 1e-2f32;
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[i] += h;
            xm[i] -= h;
            let fd = (loss(&xp) - loss(&xm)) / (2.0 * h as f64);
            assert!(
                (fd - dx[i] as f64).abs() < 2e-2,
                "dx[{i}] {} vs fd {fd}",
                dx[i]
            );
        }
    }
}
