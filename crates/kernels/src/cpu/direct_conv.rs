//! Direct (no im2col) stride-1 "same" convolution with AVX-512, for few output channels.
//!
//! Why: with 8-16 output channels an im2col gemm spends as long copying its tile (27 Ci rows
//! per output position) as multiplying it, which kept the 64³ x 8-channel convs of a 3D UNet
//! near 100 GFLOP/s. Here each task keeps one output row of 8 channels x 32 columns in 16
//! vector registers and runs over the taps: per tap, two (masked) loads of the shifted input
//! row, eight broadcast weights, sixteen FMAs — no copies at all. Columns outside the volume
//! are masked off, rows and planes outside it skipped, so the padding costs nothing.
//!
//! Covered: stride 1, odd kernels, padding `dilation * (k - 1) / 2`, any channel counts (output
//! channels in groups of 8), f32, CPUs with AVX-512F (checked at run time). The caller
//! ([`super::conv3d::forward`]) picks it for up to 16 output channels.

use super::conv3d::ConvShape;

/// Output channels per register block.
const GROUP: usize = 8;
/// Output columns per register block (two 16-lane vectors).
const COLS: usize = 32;

/// Whether this CPU runs the kernel.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether `s` is a shape this kernel handles (stride 1, size-preserving).
pub fn supports(s: &ConvShape) -> bool {
    s.stride == [1; 3]
        && s.out() == s.spatial
        && s.kernel.iter().all(|k| k % 2 == 1)
        && s.kernel[2] <= 31
}

/// Weights rearranged to `[group][tap][8]` (taps in `(ci, dz, dy, dx)` order, output channels
/// of a group contiguous, zero-padded to 8) so one tap's 8 broadcasts read one cache line.
fn grouped_weights(weight: &[f32], s: &ConvShape) -> Vec<f32> {
    let k = s.ci * s.kernel.iter().product::<usize>();
    let groups = s.co.div_ceil(GROUP);
    let mut wg = vec![0.0f32; groups * k * GROUP];
    for co in 0..s.co {
        let (g, j) = (co / GROUP, co % GROUP);
        for t in 0..k {
            wg[(g * k + t) * GROUP + j] = weight[co * k + t];
        }
    }
    wg
}

/// Forward convolution into `out` (`[n, co, d, h, w]`, every element written), `x`
/// `[n, ci, d, h, w]`, `weight` `[co, ci, k0, k1, k2]`. Requires [`available`] and
/// [`supports`] (asserted).
///
/// # Safety
/// `out` must be valid for writes of `n * co * d * h * w` floats (it may be uninitialized).
pub unsafe fn forward_into(
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    s: &ConvShape,
    out: *mut f32,
) {
    assert!(
        available() && supports(s),
        "direct conv: unsupported CPU or shape"
    );
    let [d, h, w] = s.spatial;
    assert_eq!(x.len(), s.n * s.ci * d * h * w, "conv3d input size");
    let k = s.ci * s.kernel.iter().product::<usize>();
    assert_eq!(weight.len(), s.co * k, "conv3d weight size");
    let wg = grouped_weights(weight, s);
    let groups = s.co.div_ceil(GROUP);
    let rows_per_task = 4usize.min(h);
    let blocks = h.div_ceil(rows_per_task);
    let ntasks = s.n * d * blocks * groups;
    let dst = super::conv3d::SharedMut(out);
    use rayon::prelude::*;
    (0..ntasks).into_par_iter().for_each(|t| {
        let g = t % groups;
        let b = (t / groups) % blocks;
        let z = (t / groups / blocks) % d;
        let n = t / groups / blocks / d;
        for y in b * rows_per_task..((b + 1) * rows_per_task).min(h) {
            // SAFETY: AVX-512F is available (asserted); the task writes output rows
            // out[n, g*8 .. g*8+8, z, y, :] only, disjoint across tasks; all loads and stores
            // are masked to the row (see `row`).
            #[cfg(target_arch = "x86_64")]
            unsafe {
                row(x, &wg, bias, s, n, z, y, g, dst.get());
            }
        }
    });
}

/// One output row `(n, z, y)` for output channel group `g`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
// Index loops on purpose: `dx` and `j` index several register arrays and pointer offsets at
// once, and the fixed trip counts let the compiler unroll them into straight FMA sequences.
#[allow(clippy::needless_range_loop)]
unsafe fn row(
    x: &[f32],
    wg: &[f32],
    bias: Option<&[f32]>,
    s: &ConvShape,
    n: usize,
    z: usize,
    y: usize,
    g: usize,
    out: *mut f32,
) {
    use std::arch::x86_64::*;
    let [d, h, w] = s.spatial;
    let [k0, k1, k2] = s.kernel;
    let dil = s.dilation as isize;
    let pad = |a: usize| (s.dilation * (s.kernel[a] - 1) / 2) as isize;
    let (p0, p1, p2) = (pad(0), pad(1), pad(2));
    let ktaps = s.ci * k0 * k1 * k2;
    let vol = d * h * w;
    let nco = (s.co - g * GROUP).min(GROUP);
    // lanes of a 16-wide vector starting at column c that lie in [0, w)
    let lanes = |c: isize| -> __mmask16 {
        let lo = (-c).clamp(0, 16) as u32;
        let hi = (w as isize - c).clamp(0, 16) as u32;
        if hi <= lo {
            0
        } else {
            (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as __mmask16
        }
    };
    // SAFETY: the caller guarantees AVX-512F; input loads are masked to the lanes inside the
    // row (masked lanes are neither read nor faulted on), so only in-volume columns are read;
    // weight reads stay below groups * ktaps * 8; stores are masked to the output row.
    unsafe {
        let mut x0 = 0usize;
        while x0 < w {
            let mut acc = [[_mm512_setzero_ps(); 2]; GROUP];
            // masks per x tap for the two vectors
            let mut m = [[0 as __mmask16; 2]; 32];
            for dx in 0..k2 {
                let off = dx as isize * dil - p2;
                m[dx][0] = lanes(x0 as isize + off);
                m[dx][1] = lanes(x0 as isize + 16 + off);
            }
            let mut tap = 0usize;
            for ci in 0..s.ci {
                let chan = (n * s.ci + ci) * vol;
                for dz in 0..k0 {
                    let iz = z as isize + dz as isize * dil - p0;
                    for dy in 0..k1 {
                        let iy = y as isize + dy as isize * dil - p1;
                        if iz < 0 || iz >= d as isize || iy < 0 || iy >= h as isize {
                            tap += k2;
                            continue;
                        }
                        let base = x.as_ptr().add(chan + (iz as usize * h + iy as usize) * w);
                        for dx in 0..k2 {
                            let off = x0 as isize + dx as isize * dil - p2;
                            // masked lanes are not read (no fault), so the pointer may point
                            // outside the row; wrapping_offset keeps the arithmetic defined
                            let v0 = _mm512_maskz_loadu_ps(m[dx][0], base.wrapping_offset(off));
                            let v1 =
                                _mm512_maskz_loadu_ps(m[dx][1], base.wrapping_offset(off + 16));
                            let wt = wg.as_ptr().add((g * ktaps + tap) * GROUP);
                            for j in 0..GROUP {
                                let b = _mm512_set1_ps(*wt.add(j));
                                acc[j][0] = _mm512_fmadd_ps(v0, b, acc[j][0]);
                                acc[j][1] = _mm512_fmadd_ps(v1, b, acc[j][1]);
                            }
                            tap += 1;
                        }
                    }
                }
            }
            let st0 = lanes(x0 as isize);
            let st1 = lanes(x0 as isize + 16);
            for (j, a) in acc.iter().enumerate().take(nco) {
                let co = g * GROUP + j;
                let bv = _mm512_set1_ps(bias.map_or(0.0, |b| b[co]));
                let o = out.add(((n * s.co + co) * d + z) * h * w + y * w + x0);
                _mm512_mask_storeu_ps(o, st0, _mm512_add_ps(a[0], bv));
                if st1 != 0 {
                    _mm512_mask_storeu_ps(o.add(16), st1, _mm512_add_ps(a[1], bv));
                }
            }
            x0 += COLS;
        }
    }
}
