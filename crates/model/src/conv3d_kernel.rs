//! Raw-slice kernels of the "same" 3D convolution (stride 1, odd kernel, padding
//! `dilation * (k - 1) / 2` per axis) used by [`crate::fast_conv`].
//!
//! Why not burn-flex's conv: it im2cols the whole input into a freshly allocated (and
//! page-faulted) buffer with a bounds check per element, and computes the weight gradient as a
//! convolution whose "kernel" is the output gradient (a skinny gemm over a huge zero-filled
//! tile). Here the work is split into tasks of (batch, output depth plane, block of output
//! rows); each task im2cols its rows into a small tile reused by its thread (only row copies
//! plus border zeros) and runs one gemm:
//!
//! * forward: `out[:, rows] = W[Co, K] · tile[K, L]`, written straight into the NCDHW output;
//! * weight gradient: `dW[Co, K] += G[Co, L] · tile[K, L]ᵀ`, accumulated per chunk of tasks and
//!   summed in a fixed order (deterministic for a given shape, whatever the thread count);
//! * input gradient: the forward kernel applied to the output gradient with the weights
//!   transposed (`Ci <-> Co`) and flipped, which is exact for stride 1 and "same" padding.
//!
//! `K = Ci * kd * kh * kw`, `L = rows * W`. All tensors are contiguous f32.

use gemm::{Parallelism, gemm};
use rayon::prelude::*;

/// Shape of one convolution. Input `[n, ci, d, h, w]`, weight `[co, ci, k0, k1, k2]`, output
/// `[n, co, d, h, w]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    pub n: usize,
    pub ci: usize,
    pub co: usize,
    pub spatial: [usize; 3],
    pub kernel: [usize; 3],
    pub dilation: usize,
}

impl ConvShape {
    fn k(&self) -> usize {
        self.ci * self.kernel.iter().product::<usize>()
    }
    fn vol(&self) -> usize {
        self.spatial.iter().product()
    }
    fn pad(&self, axis: usize) -> isize {
        (self.dilation * (self.kernel[axis] - 1) / 2) as isize
    }
    /// Rows per task: about 256 output positions per gemm column block.
    fn rows_per_block(&self) -> usize {
        let [_, h, w] = self.spatial;
        256usize.div_ceil(w.max(1)).clamp(1, h.max(1))
    }
    fn tasks(&self) -> (usize, usize) {
        let rb = self.rows_per_block();
        let blocks = self.spatial[1].div_ceil(rb);
        (self.n * self.spatial[0] * blocks, blocks)
    }
    /// (batch, depth plane, first row, row count) of task `t`.
    fn task(&self, t: usize, blocks: usize) -> (usize, usize, usize, usize) {
        let rb = self.rows_per_block();
        let b = t % blocks;
        let z = (t / blocks) % self.spatial[0];
        let n = t / blocks / self.spatial[0];
        let y0 = b * rb;
        (n, z, y0, rb.min(self.spatial[1] - y0))
    }
    /// The same convolution seen from the output gradient (input and output channels swapped).
    fn transposed(&self) -> Self {
        Self {
            ci: self.co,
            co: self.ci,
            ..*self
        }
    }
}

/// A raw pointer that tasks writing disjoint regions may share.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
// SAFETY: every task writes a region no other task touches (see the callers).
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

/// im2col of the output rows `y0 .. y0 + rows` of plane `z` of batch item `n` into
/// `tile[K, rows * W]`. Out-of-volume taps are zero.
fn fill_tile(
    x: &[f32],
    s: &ConvShape,
    n: usize,
    z: usize,
    y0: usize,
    rows: usize,
    tile: &mut [f32],
) {
    let [d, h, w] = s.spatial;
    let [k0, k1, k2] = s.kernel;
    let dil = s.dilation as isize;
    let (p0, p1, p2) = (s.pad(0), s.pad(1), s.pad(2));
    let l = rows * w;
    let wi = w as isize;
    let mut kidx = 0;
    for ci in 0..s.ci {
        let chan = &x[(n * s.ci + ci) * d * h * w..][..d * h * w];
        for dz in 0..k0 {
            let iz = z as isize + dz as isize * dil - p0;
            for dy in 0..k1 {
                for dx in 0..k2 {
                    let row = &mut tile[kidx * l..(kidx + 1) * l];
                    kidx += 1;
                    if iz < 0 || iz >= d as isize {
                        row.fill(0.0);
                        continue;
                    }
                    let plane = &chan[iz as usize * h * w..][..h * w];
                    let shift = dx as isize * dil - p2;
                    for r in 0..rows {
                        let seg = &mut row[r * w..(r + 1) * w];
                        let iy = (y0 + r) as isize + dy as isize * dil - p1;
                        if iy < 0 || iy >= h as isize || shift.abs() >= wi {
                            seg.fill(0.0);
                            continue;
                        }
                        let src = &plane[iy as usize * w..][..w];
                        // seg[xo] = src[xo + shift]
                        if shift >= 0 {
                            let s = shift as usize;
                            seg[..w - s].copy_from_slice(&src[s..]);
                            seg[w - s..].fill(0.0);
                        } else {
                            let s = (-shift) as usize;
                            seg[..s].fill(0.0);
                            seg[s..].copy_from_slice(&src[..w - s]);
                        }
                    }
                }
            }
        }
    }
}

/// Forward convolution: `x` `[n, ci, d, h, w]`, `weight` `[co, K]` (the `[co, ci, k0, k1, k2]`
/// tensor's memory), optional `bias` `[co]`. Returns `[n, co, d, h, w]`.
pub fn forward(x: &[f32], weight: &[f32], bias: Option<&[f32]>, s: &ConvShape) -> Vec<f32> {
    let vol = s.vol();
    let k = s.k();
    assert_eq!(x.len(), s.n * s.ci * vol, "conv3d input size");
    assert_eq!(weight.len(), s.co * k, "conv3d weight size");
    let mut out = vec![0.0f32; s.n * s.co * vol];
    if out.is_empty() {
        return out;
    }
    let (ntasks, blocks) = s.tasks();
    let [_, h, w] = s.spatial;
    let lmax = s.rows_per_block() * w;
    let dst = SharedMut(out.as_mut_ptr());
    (0..ntasks).into_par_iter().for_each_init(
        || vec![0.0f32; k * lmax],
        |tile, t| {
            let (n, z, y0, rows) = s.task(t, blocks);
            let l = rows * w;
            fill_tile(x, s, n, z, y0, rows, tile);
            let off = n * s.co * vol + z * h * w + y0 * w;
            let dst = dst;
            // SAFETY: task t writes out[n, :, z, y0..y0+rows, :] only, disjoint across tasks;
            // the strides below stay inside `out` (off + (co-1)*vol + l <= out.len()).
            unsafe {
                let p = dst.0.add(off);
                gemm(
                    s.co,
                    l,
                    k,
                    p,
                    1,
                    vol as isize,
                    false,
                    weight.as_ptr(),
                    1,
                    k as isize,
                    tile.as_ptr(),
                    1,
                    l as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    Parallelism::None,
                );
                if let Some(b) = bias {
                    for (co, &bv) in b.iter().enumerate() {
                        let row = std::slice::from_raw_parts_mut(p.add(co * vol), l);
                        row.iter_mut().for_each(|v| *v += bv);
                    }
                }
            }
        },
    );
    out
}

/// Input gradient from the output gradient `grad` `[n, co, d, h, w]` and `weight`
/// `[co, ci, k0, k1, k2]`. Returns `[n, ci, d, h, w]`.
pub fn input_grad(grad: &[f32], weight: &[f32], s: &ConvShape) -> Vec<f32> {
    let [k0, k1, k2] = s.kernel;
    let kv = k0 * k1 * k2;
    // wt[ci, co, k0-1-a, k1-1-b, k2-1-c] = w[co, ci, a, b, c]
    let mut wt = vec![0.0f32; weight.len()];
    for co in 0..s.co {
        for ci in 0..s.ci {
            let src = &weight[(co * s.ci + ci) * kv..][..kv];
            let dst = &mut wt[(ci * s.co + co) * kv..][..kv];
            for (i, &v) in src.iter().enumerate() {
                dst[kv - 1 - i] = v;
            }
        }
    }
    forward(grad, &wt, None, &s.transposed())
}

/// Weight gradient `[co, ci, k0, k1, k2]` from the input `x` and the output gradient `grad`.
pub fn weight_grad(x: &[f32], grad: &[f32], s: &ConvShape) -> Vec<f32> {
    let vol = s.vol();
    let k = s.k();
    assert_eq!(x.len(), s.n * s.ci * vol, "conv3d input size");
    assert_eq!(grad.len(), s.n * s.co * vol, "conv3d output gradient size");
    let (ntasks, blocks) = s.tasks();
    if ntasks == 0 || vol == 0 {
        return vec![0.0; s.co * k];
    }
    let [_, h, w] = s.spatial;
    let lmax = s.rows_per_block() * w;
    // A fixed chunk count (not the thread count) keeps the summation order, hence the result,
    // independent of the machine.
    let nchunks = ntasks.min(32);
    let partial: Vec<Vec<f32>> = (0..nchunks)
        .into_par_iter()
        .map(|c| {
            let mut tile = vec![0.0f32; k * lmax];
            let mut acc = vec![0.0f32; s.co * k];
            let (t0, t1) = (c * ntasks / nchunks, (c + 1) * ntasks / nchunks);
            for t in t0..t1 {
                let (n, z, y0, rows) = s.task(t, blocks);
                let l = rows * w;
                fill_tile(x, s, n, z, y0, rows, &mut tile);
                let off = n * s.co * vol + z * h * w + y0 * w;
                // SAFETY: reads grad[n, :, z, y0..y0+rows, :] (in bounds, as in `forward`),
                // the first k*l entries of `tile`, and writes the private `acc`.
                unsafe {
                    gemm(
                        s.co,
                        k,
                        l,
                        acc.as_mut_ptr(),
                        1,
                        k as isize,
                        true,
                        grad.as_ptr().add(off),
                        1,
                        vol as isize,
                        tile.as_ptr(),
                        l as isize,
                        1,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        Parallelism::None,
                    );
                }
            }
            acc
        })
        .collect();
    let mut it = partial.into_iter();
    let mut total = it.next().unwrap_or_else(|| vec![0.0; s.co * k]);
    for p in it {
        total.iter_mut().zip(&p).for_each(|(a, b)| *a += b);
    }
    total
}

/// Bias gradient `[co]`: the output gradient summed over batch and space (f64 accumulation).
pub fn bias_grad(grad: &[f32], s: &ConvShape) -> Vec<f32> {
    let vol = s.vol();
    (0..s.co)
        .into_par_iter()
        .map(|co| {
            let mut sum = 0.0f64;
            for n in 0..s.n {
                let row = &grad[(n * s.co + co) * vol..][..vol];
                sum += row.iter().map(|&v| v as f64).sum::<f64>();
            }
            sum as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct (6-loop) convolution, the reference for the kernels.
    fn naive(x: &[f32], wt: &[f32], s: &ConvShape) -> Vec<f32> {
        let [d, h, w] = s.spatial;
        let [k0, k1, k2] = s.kernel;
        let dil = s.dilation as isize;
        let mut out = vec![0.0f32; s.n * s.co * d * h * w];
        for n in 0..s.n {
            for co in 0..s.co {
                for z in 0..d {
                    for y in 0..h {
                        for xo in 0..w {
                            let mut acc = 0.0f64;
                            for ci in 0..s.ci {
                                for a in 0..k0 {
                                    for b in 0..k1 {
                                        for c in 0..k2 {
                                            let iz = z as isize + a as isize * dil - s.pad(0);
                                            let iy = y as isize + b as isize * dil - s.pad(1);
                                            let ix = xo as isize + c as isize * dil - s.pad(2);
                                            if iz < 0
                                                || iy < 0
                                                || ix < 0
                                                || iz >= d as isize
                                                || iy >= h as isize
                                                || ix >= w as isize
                                            {
                                                continue;
                                            }
                                            let xi = (((n * s.ci + ci) * d + iz as usize) * h
                                                + iy as usize)
                                                * w
                                                + ix as usize;
                                            let wi =
                                                (((co * s.ci + ci) * k0 + a) * k1 + b) * k2 + c;
                                            acc += x[xi] as f64 * wt[wi] as f64;
                                        }
                                    }
                                }
                            }
                            out[(((n * s.co + co) * d + z) * h + y) * w + xo] = acc as f32;
                        }
                    }
                }
            }
        }
        out
    }

    fn lcg(n: usize, seed: u64) -> Vec<f32> {
        let mut st = seed;
        (0..n)
            .map(|_| {
                st = st
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((st >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    #[test]
    fn forward_matches_direct_convolution() {
        for (s, seed) in [
            (
                ConvShape {
                    n: 2,
                    ci: 3,
                    co: 5,
                    spatial: [5, 7, 6],
                    kernel: [3, 3, 3],
                    dilation: 1,
                },
                1,
            ),
            (
                ConvShape {
                    n: 1,
                    ci: 2,
                    co: 3,
                    spatial: [4, 9, 70],
                    kernel: [1, 3, 5],
                    dilation: 1,
                },
                2,
            ),
            (
                ConvShape {
                    n: 1,
                    ci: 2,
                    co: 2,
                    spatial: [6, 5, 5],
                    kernel: [3, 3, 3],
                    dilation: 2,
                },
                3,
            ),
            (
                ConvShape {
                    n: 2,
                    ci: 4,
                    co: 3,
                    spatial: [3, 4, 5],
                    kernel: [1, 1, 1],
                    dilation: 1,
                },
                4,
            ),
        ] {
            let x = lcg(s.n * s.ci * s.vol(), seed);
            let wt = lcg(s.co * s.k(), seed + 10);
            let got = forward(&x, &wt, None, &s);
            let want = naive(&x, &wt, &s);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{s:?}: {g} vs {w}");
            }
        }
    }
}
