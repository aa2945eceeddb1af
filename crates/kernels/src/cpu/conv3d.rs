//! Raw-slice kernels of the "same" 3D convolution (stride 1, odd kernel, padding
//! `dilation * (k - 1) / 2` per axis) used by [`crate::ops::conv3d`] (through the flex extension op in `flex::conv`).
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
//!
//! The forward pass (and so the stride-1 input gradient) of 3x3x3 and 1x3x3 stride-1 convs
//! with enough channels and tiles goes to the Winograd F(2,3) kernel (`cpu/winograd.rs`)
//! instead (3.4x / 2.25x fewer multiply-adds); narrow ones (<= 16 output channels) to the
//! direct AVX-512 kernel.

use gemm::{Parallelism, gemm};

use crate::trace::{self, KernelPath};
use rayon::prelude::*;

/// Shape of one convolution. Input `[n, ci, d, h, w]`, weight `[co, ci, k0, k1, k2]`, output
/// `[n, co, d, h, w]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    pub n: usize,
    pub ci: usize,
    pub co: usize,
    /// Input size `[d, h, w]`.
    pub spatial: [usize; 3],
    pub kernel: [usize; 3],
    pub stride: [usize; 3],
    pub dilation: usize,
}

impl ConvShape {
    fn k(&self) -> usize {
        self.ci * self.kernel.iter().product::<usize>()
    }
    fn vol(&self) -> usize {
        self.spatial.iter().product()
    }
    /// Output size: `(i + 2p - dil (k - 1) - 1) / s + 1` per axis.
    pub fn out(&self) -> [usize; 3] {
        std::array::from_fn(|a| {
            let span = self.spatial[a] as isize + 2 * self.pad(a)
                - (self.dilation * (self.kernel[a] - 1)) as isize
                - 1;
            if span < 0 {
                0
            } else {
                span as usize / self.stride[a] + 1
            }
        })
    }
    fn out_vol(&self) -> usize {
        self.out().iter().product()
    }
    fn pad(&self, axis: usize) -> isize {
        (self.dilation * (self.kernel[axis] - 1) / 2) as isize
    }
    /// Rows per task: about 256 output positions per gemm column block. On the
    /// [`RowShift`] path a multiple of the rows that make the padded block a multiple of 16
    /// floats long (gemm then reads the tile in place rather than copying it).
    fn rows_per_block(&self, rs: Option<RowShift>) -> usize {
        let [_, h, w] = self.out();
        match rs {
            Some(rs) => {
                let unit = 16 / gcd(rs.wp, 16);
                (256usize.div_ceil(rs.wp).div_ceil(unit) * unit).clamp(1, h.max(1))
            }
            None => 256usize.div_ceil(w.max(1)).clamp(1, h.max(1)),
        }
    }
    /// (task count, row blocks per plane) for the tile layout `rs`.
    fn tasks(&self, rs: Option<RowShift>) -> (usize, usize) {
        let rb = self.rows_per_block(rs);
        let [d, h, _] = self.out();
        let blocks = h.div_ceil(rb);
        (self.n * d * blocks, blocks)
    }
    /// (batch, depth plane, first row, row count) of task `t`.
    fn task(&self, t: usize, blocks: usize, rs: Option<RowShift>) -> (usize, usize, usize, usize) {
        let rb = self.rows_per_block(rs);
        let [d, h, _] = self.out();
        let b = t % blocks;
        let z = (t / blocks) % d;
        let n = t / blocks / d;
        let y0 = b * rb;
        (n, z, y0, rb.min(h - y0))
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

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The im2col variant for convs with stride 1 along x and "same" x padding (every 3x3x3 and
/// 1x3x3 stride-1 conv, and the input gradients computed as such convs).
///
/// The plain tile holds one row per tap, `K = Ci * k0 * k1 * k2` rows, but the `k2` taps along
/// x of one `(ci, dz, dy)` read the same input row shifted by one column each. Here the tile
/// holds only the `Q = Ci * k0 * k1` input rows, each output row padded with `pad` zeros on both
/// sides (`wp = w + 2 pad` floats), and the conv runs as `k2` gemms, one per x tap, over the same
/// tile shifted by that tap's column offset: a third of the copying for 3-wide kernels. The
/// output is computed at every padded position and its valid columns copied out.
#[derive(Debug, Clone, Copy)]
struct RowShift {
    /// x padding `dil * (k2 - 1) / 2`.
    pad: usize,
    /// Padded row length, at least `w + 2 pad`: rounded up to a multiple of 16 floats for wide
    /// rows, so that blocks of any row count keep gemm's in-place read.
    wp: usize,
}

impl RowShift {
    fn of(s: &ConvShape) -> Option<Self> {
        let pad = s.pad(2) as usize;
        let applies = s.kernel[2] > 1 && s.stride[2] == 1 && s.out()[2] == s.spatial[2];
        let tight = s.spatial[2] + 2 * pad;
        // narrow rows: a block of 16 / gcd(tight, 16) rows is a multiple of 16 long (at most
        // 8 x 66 floats at w = 64); wide rows: pad each row instead (258 -> 272 at w = 256)
        let wp = if tight * (16 / gcd(tight, 16)) <= 1024 {
            tight
        } else {
            tight.next_multiple_of(16)
        };
        applies.then_some(Self { pad, wp })
    }
    /// The forward pass takes this path for up to 8 output channels, where copying the tile
    /// costs about as much as the gemm; with more, the single deeper gemm of the plain tile
    /// wins (measured per shape with `examples/bench_conv_kernel.rs`, BENCHMARKS.md).
    fn for_forward(s: &ConvShape) -> Option<Self> {
        Self::of(s).filter(|_| s.co <= 8)
    }
    /// The weight gradient takes it for up to 16 output channels and at least as many tile rows
    /// (`ci k0 k1`) as stacked gradient rows (`co k2`) (same measurements).
    fn for_weight_grad(s: &ConvShape) -> Option<Self> {
        let q = s.ci * s.kernel[0] * s.kernel[1];
        Self::of(s).filter(|_| s.co <= 16 && q >= s.co * s.kernel[2])
    }
    /// Length of one tile row for `rows` output rows: the padded rows plus `pad` slack floats
    /// at each end, so the most shifted views stay inside the row.
    fn row_len(&self, rows: usize) -> usize {
        rows * self.wp + 2 * self.pad
    }
    /// Column offset (into a tile row) of the view for x tap `dx`.
    fn view_offset(&self, s: &ConvShape, dx: usize) -> usize {
        dx * s.dilation
    }
}

/// Fills `tile[Q, row_len]` ([`RowShift`]) for output rows `y0 .. y0 + rows` of output plane
/// `z` of batch item `n`: each padded segment holds one input row (zeros outside the volume).
#[allow(clippy::too_many_arguments)]
fn fill_tile_rows(
    x: &[f32],
    s: &ConvShape,
    rs: RowShift,
    n: usize,
    z: usize,
    y0: usize,
    rows: usize,
    tile: &mut [f32],
) {
    let [d, h, w] = s.spatial;
    let [k0, k1, _] = s.kernel;
    let dil = s.dilation as isize;
    let (p0, p1) = (s.pad(0), s.pad(1));
    let lq = rs.row_len(rows);
    let mut q = 0;
    for ci in 0..s.ci {
        let chan = (n * s.ci + ci) * d * h * w;
        for dz in 0..k0 {
            let iz = (z * s.stride[0]) as isize + dz as isize * dil - p0;
            let plane_ok = iz >= 0 && iz < d as isize;
            for dy in 0..k1 {
                let row = &mut tile[q * lq..(q + 1) * lq];
                q += 1;
                if !plane_ok {
                    row.fill(0.0);
                    continue;
                }
                let plane = chan + iz as usize * h * w;
                zero_small(&mut row[..rs.pad]);
                for r in 0..rows {
                    let iy = ((y0 + r) * s.stride[1]) as isize + dy as isize * dil - p1;
                    // segment r: [pad zeros][w values][zeros up to wp]
                    let seg = &mut row[rs.pad + r * rs.wp..][..rs.wp];
                    let (left, rest) = seg.split_at_mut(rs.pad);
                    let (vals, right) = rest.split_at_mut(w);
                    zero_small(left);
                    if iy < 0 || iy >= h as isize {
                        vals.fill(0.0);
                    } else {
                        let src = plane + iy as usize * w;
                        vals.copy_from_slice(&x[src..src + w]);
                    }
                    zero_small(right);
                }
                zero_small(&mut row[rs.pad + rows * rs.wp..]);
            }
        }
    }
}

/// A raw pointer that tasks writing disjoint regions may share.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(pub(crate) *mut f32);

impl SharedMut {
    /// The pointer. Closures call this instead of reading `.0`, so they capture the whole
    /// (`Send`) wrapper rather than the bare pointer field.
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}
// SAFETY: every task writes a region no other task touches (see the callers).
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

/// Output columns `[lo, hi)` whose input column `xo * stride + off` lies in `[0, wi)`.
fn x_range(wo: usize, wi: usize, stride: usize, off: isize) -> (usize, usize) {
    let lo = if off >= 0 {
        0
    } else {
        ((-off) as usize).div_ceil(stride)
    };
    let last = wi as isize - 1 - off;
    let hi = if last < 0 {
        0
    } else {
        (last as usize / stride + 1).min(wo)
    };
    (lo.min(hi), hi)
}

/// Per kernel column `dx`: the column offset `dx * dil - p2` and the valid output columns.
fn column_taps(s: &ConvShape) -> Vec<(isize, usize, usize)> {
    let wi = s.spatial[2];
    let wo = s.out()[2];
    (0..s.kernel[2])
        .map(|dx| {
            let off = (dx * s.dilation) as isize - s.pad(2);
            let (lo, hi) = x_range(wo, wi, s.stride[2], off);
            (off, lo, hi)
        })
        .collect()
}

/// Calls `f(kidx, r, input_row_offset, tap)` for every (tap, output row) whose input row is
/// inside the volume (`input_row_offset` indexes `x`'s `[n, ci, iz, iy, 0]`, `tap` is the
/// [`column_taps`] entry), and `zero(kidx, r)` for the others. Taps are numbered in weight
/// order `((ci * k0 + dz) * k1 + dy) * k2 + dx`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn for_each_tap_row(
    s: &ConvShape,
    taps: &[(isize, usize, usize)],
    n: usize,
    z: usize,
    y0: usize,
    rows: usize,
    mut f: impl FnMut(usize, usize, usize, (isize, usize, usize)),
    mut zero: impl FnMut(usize, usize),
) {
    let [d, h, w] = s.spatial;
    let [k0, k1, k2] = s.kernel;
    let dil = s.dilation as isize;
    let (p0, p1) = (s.pad(0), s.pad(1));
    let mut kidx = 0;
    for ci in 0..s.ci {
        let chan = (n * s.ci + ci) * d * h * w;
        for dz in 0..k0 {
            let iz = (z * s.stride[0]) as isize + dz as isize * dil - p0;
            let plane_ok = iz >= 0 && iz < d as isize;
            for dy in 0..k1 {
                for &tap in &taps[..k2] {
                    for r in 0..rows {
                        let iy = ((y0 + r) * s.stride[1]) as isize + dy as isize * dil - p1;
                        if !plane_ok || iy < 0 || iy >= h as isize {
                            zero(kidx, r);
                        } else {
                            f(kidx, r, chan + (iz as usize * h + iy as usize) * w, tap);
                        }
                    }
                    kidx += 1;
                }
            }
        }
    }
}

/// im2col of the output rows `y0 .. y0 + rows` of output plane `z` of batch item `n` into
/// `tile[K, rows * Wo]`. Out-of-volume taps are zero.
#[allow(clippy::too_many_arguments)]
fn fill_tile(
    x: &[f32],
    s: &ConvShape,
    taps: &[(isize, usize, usize)],
    n: usize,
    z: usize,
    y0: usize,
    rows: usize,
    tile: &mut [f32],
) {
    if s.stride[1] == 1 && s.stride[2] == 1 && s.out()[2] == s.spatial[2] {
        fill_tile_unit_stride(x, s, taps, n, z, y0, rows, tile);
        return;
    }
    let wo = s.out()[2];
    let st = s.stride[2];
    let l = rows * wo;
    let tile_ptr = tile.as_mut_ptr();
    let tile_len = tile.len();
    let seg_of = |kidx: usize, r: usize| {
        let start = kidx * l + r * wo;
        assert!(start + wo <= tile_len);
        // SAFETY: in bounds (checked above); the two closures never run at the same time.
        unsafe { std::slice::from_raw_parts_mut(tile_ptr.add(start), wo) }
    };
    for_each_tap_row(
        s,
        taps,
        n,
        z,
        y0,
        rows,
        |kidx, r, src, (off, lo, hi)| {
            let seg = seg_of(kidx, r);
            seg[..lo].fill(0.0);
            seg[hi..].fill(0.0);
            if lo < hi {
                let first = (src as isize + (lo * st) as isize + off) as usize;
                if st == 1 {
                    seg[lo..hi].copy_from_slice(&x[first..first + (hi - lo)]);
                } else {
                    for (j, v) in seg[lo..hi].iter_mut().enumerate() {
                        *v = x[first + j * st];
                    }
                }
            }
        },
        |kidx, r| seg_of(kidx, r).fill(0.0),
    );
}

/// Zeroes `seg[range]`; the ranges are the 0-2 border columns of a padded row, where a
/// `memset` call would cost more than the stores.
#[inline(always)]
fn zero_small(seg: &mut [f32]) {
    match seg.len() {
        0 => {}
        1 => seg[0] = 0.0,
        2 => {
            seg[0] = 0.0;
            seg[1] = 0.0;
        }
        _ => seg.fill(0.0),
    }
}

/// [`fill_tile`] when rows and columns have stride 1 and the output row is as wide as the
/// input row: the output rows of one tap then read consecutive input rows, so all of them come
/// from one contiguous copy (shifted by the tap's column offset), after which only the
/// border columns that the shift pulled in from the neighbouring row are zeroed.
#[allow(clippy::too_many_arguments)]
fn fill_tile_unit_stride(
    x: &[f32],
    s: &ConvShape,
    taps: &[(isize, usize, usize)],
    n: usize,
    z: usize,
    y0: usize,
    rows: usize,
    tile: &mut [f32],
) {
    let [d, h, w] = s.spatial;
    let [k0, k1, _] = s.kernel;
    let dil = s.dilation as isize;
    let (p0, p1) = (s.pad(0), s.pad(1));
    let l = rows * w;
    let mut kidx = 0;
    for ci in 0..s.ci {
        let chan = (n * s.ci + ci) * d * h * w;
        for dz in 0..k0 {
            let iz = (z * s.stride[0]) as isize + dz as isize * dil - p0;
            let plane_ok = iz >= 0 && iz < d as isize;
            for dy in 0..k1 {
                // output rows r whose input row y0 + r + dy*dil - p1 lies in [0, h)
                let shift = y0 as isize + dy as isize * dil - p1;
                let r_lo = (-shift).clamp(0, rows as isize) as usize;
                let r_hi = (h as isize - shift).clamp(r_lo as isize, rows as isize) as usize;
                for &(off, lo, hi) in taps {
                    let row = &mut tile[kidx * l..(kidx + 1) * l];
                    kidx += 1;
                    if !plane_ok || r_lo >= r_hi || lo >= hi {
                        row.fill(0.0);
                        continue;
                    }
                    row[..r_lo * w].fill(0.0);
                    row[r_hi * w..].fill(0.0);
                    // tile positions [r_lo*w + lo, (r_hi-1)*w + hi) read input positions
                    // shifted by a constant: one copy
                    let t0 = r_lo * w + lo;
                    let t1 = (r_hi - 1) * w + hi;
                    let plane = chan + iz as usize * h * w;
                    let src0 =
                        plane as isize + (shift + r_lo as isize) * w as isize + lo as isize + off;
                    let src0 = src0 as usize;
                    row[t0..t1].copy_from_slice(&x[src0..src0 + (t1 - t0)]);
                    for r in r_lo..r_hi {
                        let seg = &mut row[r * w..(r + 1) * w];
                        zero_small(&mut seg[..lo]);
                        zero_small(&mut seg[hi..]);
                    }
                }
            }
        }
    }
}

/// The adjoint of [`fill_tile`]: adds `tile[K, rows * Wo]` into `dx` at the input positions
/// the taps read.
#[allow(clippy::too_many_arguments)]
fn scatter_tile(
    dx: *mut f32,
    s: &ConvShape,
    taps: &[(isize, usize, usize)],
    n: usize,
    z: usize,
    y0: usize,
    rows: usize,
    tile: &[f32],
) {
    let wo = s.out()[2];
    let st = s.stride[2];
    let l = rows * wo;
    for_each_tap_row(
        s,
        taps,
        n,
        z,
        y0,
        rows,
        |kidx, r, dst, (off, lo, hi)| {
            let seg = &tile[kidx * l + r * wo..][..wo];
            let first = dst as isize + (lo * st) as isize + off;
            for (j, &v) in seg[lo..hi].iter().enumerate() {
                // SAFETY: the index is an in-volume input position (x_range / for_each_tap_row);
                // the caller guarantees no concurrent task writes the same input plane.
                unsafe { *dx.offset(first + (j * st) as isize) += v };
            }
        },
        |_, _| {},
    );
}

/// Whether the direct AVX-512 kernels ([`super::direct_conv`]) take this shape: measured
/// faster for <= 16 output channels on rows of >= 16 columns (narrower rows leave most vector
/// lanes idle), slower from 32 output channels on 16-wide rows
/// (`examples/bench_conv_kernel.rs`, BENCHMARKS.md).
fn use_direct(s: &ConvShape) -> bool {
    s.co <= 16
        && s.spatial[2] >= 16
        && super::direct_conv::available()
        && super::direct_conv::supports(s)
}

/// Forward convolution: `x` `[n, ci, d, h, w]`, `weight` `[co, K]` (the `[co, ci, k0, k1, k2]`
/// tensor's memory), optional `bias` `[co]`. Returns `[n, co, out...]` ([`ConvShape::out`]).
pub fn forward(x: &[f32], weight: &[f32], bias: Option<&[f32]>, s: &ConvShape) -> Vec<f32> {
    forward_paths(x, weight, bias, s, true)
}

/// [`forward`]; `allow_direct = false` takes the im2col paths even where the direct kernel
/// applies (the tests run both, so CPUs without AVX-512 run tested code too).
fn forward_paths(
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    s: &ConvShape,
    allow_direct: bool,
) -> Vec<f32> {
    let k = s.k();
    let ovol = s.out_vol();
    assert_eq!(x.len(), s.n * s.ci * s.vol(), "conv3d input size");
    assert_eq!(weight.len(), s.co * k, "conv3d weight size");
    let len = s.n * s.co * ovol;
    // Each path below writes every output element before `set_len`: skipping the zero fill
    // saves a pass over the output (the heap memory is reused, not fresh zero pages).
    let mut out: Vec<f32> = Vec::with_capacity(len);
    if len == 0 {
        return out;
    }
    let out_ptr = out.spare_capacity_mut().as_mut_ptr() as *mut f32;
    if allow_direct && use_direct(s) {
        trace::hit(KernelPath::ConvDirect);
        // SAFETY: out_ptr is valid for len writes; forward_into writes all of them.
        unsafe {
            super::direct_conv::forward_into(x, weight, bias, s, out_ptr);
            out.set_len(len);
        }
        return out;
    }
    if super::winograd::applies(s) {
        trace::hit(KernelPath::ConvWinograd);
        // SAFETY: out_ptr is valid for len writes; forward_into writes all of them.
        unsafe {
            super::winograd::forward_into(x, weight, bias, s, out_ptr);
            out.set_len(len);
        }
        return out;
    }
    if let Some(rs) = RowShift::for_forward(s) {
        trace::hit(KernelPath::ConvRowShift);
        // SAFETY: as above; every task copies all columns of its rows for every channel.
        unsafe {
            forward_row_shift(x, weight, bias, s, rs, out_ptr);
            out.set_len(len);
        }
        return out;
    }
    trace::hit(KernelPath::ConvIm2col);
    let (ntasks, blocks) = s.tasks(None);
    let [_, ho, wo] = s.out();
    let lmax = s.rows_per_block(None) * wo;
    let taps = column_taps(s);
    let dst = SharedMut(out_ptr);
    (0..ntasks).into_par_iter().for_each_init(
        || vec![0.0f32; k * lmax],
        |tile, t| {
            let (n, z, y0, rows) = s.task(t, blocks, None);
            let l = rows * wo;
            fill_tile(x, s, &taps, n, z, y0, rows, tile);
            let off = n * s.co * ovol + (z * ho + y0) * wo;
            // SAFETY: task t writes out[n, :, z, y0..y0+rows, :] only, disjoint across tasks;
            // the strides below stay inside `out` (off + (co-1)*ovol + l <= out.len()).
            unsafe {
                let p = dst.get().add(off);
                gemm(
                    s.co,
                    l,
                    k,
                    p,
                    1,
                    ovol as isize,
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
                        let row = std::slice::from_raw_parts_mut(p.add(co * ovol), l);
                        row.iter_mut().for_each(|v| *v += bv);
                    }
                }
            }
        },
    );
    // SAFETY: the tasks cover every (n, z, row) and the gemm (read_dst = false) writes all
    // Co x L entries of each.
    unsafe { out.set_len(len) };
    out
}

/// [`forward`] on the [`RowShift`] path: per task, `k2` gemms over shifted views of the row
/// tile into a padded output block, whose valid columns (plus bias) go to `out`.
///
/// # Safety
/// `out` must be valid for writes of `n * co * out_vol` floats (all of which get written).
unsafe fn forward_row_shift(
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    s: &ConvShape,
    rs: RowShift,
    out: *mut f32,
) {
    let k = s.k();
    let k2 = s.kernel[2];
    let q = s.ci * s.kernel[0] * s.kernel[1];
    let ovol = s.out_vol();
    let (ntasks, blocks) = s.tasks(Some(rs));
    let [_, ho, wo] = s.out();
    let rmax = s.rows_per_block(Some(rs));
    let dst = SharedMut(out);
    (0..ntasks).into_par_iter().for_each_init(
        || {
            (
                vec![0.0f32; q * rs.row_len(rmax)],
                vec![0.0f32; s.co * rmax * rs.wp],
            )
        },
        |(tile, block), t| {
            let (n, z, y0, rows) = s.task(t, blocks, Some(rs));
            fill_tile_rows(x, s, rs, n, z, y0, rows, tile);
            let (lq, lp) = (rs.row_len(rows), rows * rs.wp);
            for dx in 0..k2 {
                // SAFETY: block[Co, lp] (private), weight[co, q * k2 + dx] (< co * k) and
                // tile[q, view_offset + p] for p < lp (view_offset + lp <= lq) are in bounds.
                unsafe {
                    gemm(
                        s.co,
                        lp,
                        q,
                        block.as_mut_ptr(),
                        1,
                        lp as isize,
                        dx > 0,
                        weight.as_ptr().add(dx),
                        k2 as isize,
                        k as isize,
                        tile.as_ptr().add(rs.view_offset(s, dx)),
                        1,
                        lq as isize,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        Parallelism::None,
                    );
                }
            }
            for co in 0..s.co {
                let bv = bias.map_or(0.0, |b| b[co]);
                for r in 0..rows {
                    let src = &block[co * lp + r * rs.wp + rs.pad..][..wo];
                    let off = (n * s.co + co) * ovol + (z * ho + y0 + r) * wo;
                    // SAFETY: task t writes out[n, :, z, y0..y0+rows, :] only, disjoint
                    // across tasks, and in bounds.
                    let row = unsafe { std::slice::from_raw_parts_mut(dst.get().add(off), wo) };
                    for (o, &v) in row.iter_mut().zip(src) {
                        *o = v + bv;
                    }
                }
            }
        },
    );
}

/// Input gradient from the output gradient `grad` `[n, co, out...]` and `weight`
/// `[co, ci, k0, k1, k2]`. Returns `[n, ci, d, h, w]`.
pub fn input_grad(grad: &[f32], weight: &[f32], s: &ConvShape) -> Vec<f32> {
    assert_eq!(
        grad.len(),
        s.n * s.co * s.out_vol(),
        "conv3d output gradient size"
    );
    if s.stride == [1; 3] && s.out() == s.spatial {
        // stride 1, "same" padding: a forward conv with flipped, transposed weights
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
        return forward(grad, &wt, None, &s.transposed());
    }
    col2im_input_grad(grad, weight, s)
}

/// Strided (or otherwise not size-preserving) input gradient: per block of output rows,
/// `dcol[K, L] = Wᵀ · G[Co, L]` scattered into the input rows it reads. Blocks whose input rows
/// overlap run in different phases (plane index and block index modulo the overlap), so no two
/// concurrent tasks write the same input row.
fn col2im_input_grad(grad: &[f32], weight: &[f32], s: &ConvShape) -> Vec<f32> {
    trace::hit(KernelPath::ConvCol2im);
    let k = s.k();
    let ovol = s.out_vol();
    let mut dx = vec![0.0f32; s.n * s.ci * s.vol()];
    let [dout, ho, wo] = s.out();
    if dx.is_empty() || ovol == 0 {
        return dx;
    }
    // about 512 output positions per block: the K x L tile stays in cache
    let rows = 512usize.div_ceil(wo).clamp(1, ho);
    let blocks = ho.div_ceil(rows);
    // blocks b and b + P touch disjoint input rows when P exceeds the span a block reads
    // beyond its own stride (same along depth with one plane per block)
    let phases = |rows: usize, axis: usize| {
        let reach = s.dilation * (s.kernel[axis] - 1) + 1;
        let st = s.stride[axis];
        ((rows - 1) * st + reach - 1) / (rows * st) + 1
    };
    let (pz, py) = (phases(1, 0), phases(rows, 1));
    let taps = column_taps(s);
    let ptr = SharedMut(dx.as_mut_ptr());
    for phase in 0..pz * py {
        let (fz, fy) = (phase / py, phase % py);
        let jobs: Vec<(usize, usize, usize)> = (0..s.n)
            .flat_map(|n| {
                (fz..dout)
                    .step_by(pz)
                    .flat_map(move |z| (fy..blocks).step_by(py).map(move |b| (n, z, b)))
            })
            .collect();
        jobs.into_par_iter().for_each_init(
            || vec![0.0f32; k * rows * wo],
            |tile, (n, z, b)| {
                let y0 = b * rows;
                let r = rows.min(ho - y0);
                let l = r * wo;
                // SAFETY: reads grad[n, :, z, y0..y0+r, :] (in bounds), writes the private
                // tile; then scatters into input rows that no other task of this phase touches.
                unsafe {
                    gemm(
                        k,
                        l,
                        s.co,
                        tile.as_mut_ptr(),
                        1,
                        l as isize,
                        false,
                        weight.as_ptr(),
                        k as isize,
                        1,
                        grad.as_ptr().add(n * s.co * ovol + (z * ho + y0) * wo),
                        1,
                        ovol as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        Parallelism::None,
                    );
                }
                scatter_tile(ptr.get(), s, &taps, n, z, y0, r, tile);
            },
        );
    }
    dx
}

/// Weight gradient `[co, ci, k0, k1, k2]` from the input `x` and the output gradient `grad`.
pub fn weight_grad(x: &[f32], grad: &[f32], s: &ConvShape) -> Vec<f32> {
    let ovol = s.out_vol();
    let k = s.k();
    assert_eq!(x.len(), s.n * s.ci * s.vol(), "conv3d input size");
    assert_eq!(grad.len(), s.n * s.co * ovol, "conv3d output gradient size");
    let rowshift = RowShift::for_weight_grad(s);
    trace::hit(match rowshift {
        Some(_) => KernelPath::WeightGradRowShift,
        None => KernelPath::WeightGradIm2col,
    });
    let (ntasks, blocks) = s.tasks(rowshift);
    if ntasks == 0 || ovol == 0 {
        return vec![0.0; s.co * k];
    }
    let [_, ho, wo] = s.out();
    let rmax = s.rows_per_block(rowshift);
    let (q, k2) = (s.ci * s.kernel[0] * s.kernel[1], s.kernel[2]);
    let m = s.co * k2;
    // Both layouts put Co (times k2) along gemm's micro-kernel rows, so gemm packs only the
    // small output-gradient operand and reads the large im2col tile in place:
    // * RowShift: acc[qq * (Co k2) + co * k2 + dx] from ONE gemm per task whose left operand
    //   stacks the k2 shifted copies of the gradient rows (the shift moves from the tile to
    //   the gradient), `dW[co, qq * k2 + dx]` after the final permutation;
    // * plain tile: acc = dWᵀ [K, Co].
    let tile_len = match rowshift {
        Some(rs) => q * rs.row_len(rmax),
        None => k * rmax * wo,
    };
    // A fixed chunk count (not the thread count) keeps the summation order, hence the result,
    // independent of the machine.
    let nchunks = ntasks.min(32);
    let taps = column_taps(s);
    let partial: Vec<Vec<f32>> = (0..nchunks)
        .into_par_iter()
        .map(|c| {
            let mut tile = vec![0.0f32; tile_len];
            let mut acc = vec![0.0f32; k * s.co];
            let mut gstack = match rowshift {
                Some(rs) => vec![0.0f32; m * rs.row_len(rmax)],
                None => Vec::new(),
            };
            let (t0, t1) = (c * ntasks / nchunks, (c + 1) * ntasks / nchunks);
            for t in t0..t1 {
                let (n, z, y0, rows) = s.task(t, blocks, rowshift);
                let off = n * s.co * ovol + (z * ho + y0) * wo;
                if let Some(rs) = rowshift {
                    fill_tile_rows(x, s, rs, n, z, y0, rows, &mut tile);
                    let lq = rs.row_len(rows);
                    // gstack[(co, dx), p'] = G at padded position p' - dx * dil (0 elsewhere)
                    for co in 0..s.co {
                        for dx in 0..k2 {
                            let row = &mut gstack[(co * k2 + dx) * lq..][..lq];
                            row.fill(0.0);
                            let shift = rs.view_offset(s, dx) + rs.pad;
                            for r in 0..rows {
                                let src = &grad[off + co * ovol + r * wo..][..wo];
                                row[shift + r * rs.wp..][..wo].copy_from_slice(src);
                            }
                        }
                    }
                    // SAFETY: acc[m, q] (private), gstack[m, lq] and tile[q, lq] in bounds.
                    unsafe {
                        gemm(
                            m,
                            q,
                            lq,
                            acc.as_mut_ptr(),
                            m as isize,
                            1,
                            true,
                            gstack.as_ptr(),
                            1,
                            lq as isize,
                            tile.as_ptr(),
                            lq as isize,
                            1,
                            1.0,
                            1.0,
                            false,
                            false,
                            false,
                            Parallelism::None,
                        );
                    }
                    continue;
                }
                let l = rows * wo;
                fill_tile(x, s, &taps, n, z, y0, rows, &mut tile);
                // SAFETY: reads grad[n, :, z, y0..y0+rows, :] (in bounds, as in `forward`),
                // the first k*l entries of `tile`, and writes the private `acc`.
                unsafe {
                    gemm(
                        s.co,
                        k,
                        l,
                        acc.as_mut_ptr(),
                        s.co as isize,
                        1,
                        true,
                        grad.as_ptr().add(off),
                        1,
                        ovol as isize,
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
    let mut sum = it.next().unwrap_or_else(|| vec![0.0; s.co * k]);
    for p in it {
        sum.iter_mut().zip(&p).for_each(|(a, b)| *a += b);
    }
    let mut total = vec![0.0f32; s.co * k];
    if rowshift.is_some() {
        for (qq, block) in sum.chunks_exact(m).enumerate() {
            for co in 0..s.co {
                for dx in 0..k2 {
                    total[co * k + qq * k2 + dx] = block[co * k2 + dx];
                }
            }
        }
    } else {
        for (kk, row) in sum.chunks_exact(s.co).enumerate() {
            for (co, &v) in row.iter().enumerate() {
                total[co * k + kk] = v;
            }
        }
    }
    total
}

/// Bias gradient `[co]`: the output gradient summed over batch and space (f64 accumulation).
pub fn bias_grad(grad: &[f32], s: &ConvShape) -> Vec<f32> {
    let vol = s.out_vol();
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
        let [od, oh, ow] = s.out();
        let [k0, k1, k2] = s.kernel;
        let dil = s.dilation as isize;
        let mut out = vec![0.0f32; s.n * s.co * od * oh * ow];
        for n in 0..s.n {
            for co in 0..s.co {
                for z in 0..od {
                    for y in 0..oh {
                        for xo in 0..ow {
                            let mut acc = 0.0f64;
                            for ci in 0..s.ci {
                                for a in 0..k0 {
                                    for b in 0..k1 {
                                        for c in 0..k2 {
                                            let iz = (z * s.stride[0]) as isize + a as isize * dil
                                                - s.pad(0);
                                            let iy = (y * s.stride[1]) as isize + b as isize * dil
                                                - s.pad(1);
                                            let ix = (xo * s.stride[2]) as isize + c as isize * dil
                                                - s.pad(2);
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
                            out[(((n * s.co + co) * od + z) * oh + y) * ow + xo] = acc as f32;
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

    fn shapes() -> Vec<ConvShape> {
        let c = |n, ci, co, spatial, kernel, stride, dilation| ConvShape {
            n,
            ci,
            co,
            spatial,
            kernel,
            stride,
            dilation,
        };
        vec![
            c(2, 3, 5, [5, 7, 6], [3, 3, 3], [1, 1, 1], 1),
            c(1, 2, 3, [4, 9, 70], [1, 3, 5], [1, 1, 1], 1),
            c(1, 2, 2, [6, 5, 5], [3, 3, 3], [1, 1, 1], 2),
            c(2, 4, 3, [3, 4, 5], [1, 1, 1], [1, 1, 1], 1),
            c(2, 3, 4, [8, 7, 9], [3, 3, 3], [2, 2, 2], 1),
            c(1, 2, 3, [5, 8, 6], [3, 3, 3], [1, 2, 2], 1),
            c(1, 3, 2, [6, 6, 7], [1, 1, 1], [2, 2, 2], 1),
            c(1, 2, 2, [9, 9, 9], [3, 3, 3], [3, 2, 2], 2),
            // row blocks of unequal height (16, 16, 5) on the row-shift path
            c(2, 3, 2, [2, 37, 20], [3, 3, 3], [1, 1, 1], 1),
            c(1, 2, 3, [1, 40, 9], [1, 3, 5], [1, 1, 1], 2),
            // direct AVX-512 kernel: two channel groups (one partial), column tails of 1 and
            // 15, dilation 2 with a 5-wide kernel
            c(1, 3, 12, [3, 5, 33], [3, 3, 3], [1, 1, 1], 1),
            c(2, 2, 9, [2, 4, 47], [3, 3, 5], [1, 1, 1], 2),
            // wide rows: padded to a multiple of 16 floats
            c(1, 2, 2, [2, 5, 200], [3, 3, 3], [1, 1, 1], 1),
            c(2, 1, 2, [1, 3, 300], [1, 3, 3], [1, 1, 1], 2),
            // stride 2 along y only: still the row-shift path
            c(1, 2, 2, [3, 11, 10], [3, 3, 3], [1, 2, 1], 1),
        ]
    }

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
    }

    #[test]
    fn forward_matches_direct_convolution() {
        for (i, s) in shapes().into_iter().enumerate() {
            let seed = i as u64;
            let x = lcg(s.n * s.ci * s.vol(), seed);
            let wt = lcg(s.co * s.k(), seed + 10);
            let bias = lcg(s.co, seed + 20);
            let mut want = naive(&x, &wt, &s);
            let ovol = s.out_vol();
            for (i, v) in want.iter_mut().enumerate() {
                *v += bias[(i / ovol) % s.co];
            }
            for allow_direct in [true, false] {
                let got = forward_paths(&x, &wt, Some(&bias), &s, allow_direct);
                assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                        "{s:?} (direct allowed: {allow_direct}): {g} vs {w}"
                    );
                }
            }
        }
    }

    /// The Winograd kernel on its own (whatever `applies` would choose): odd sizes (partial
    /// tiles), 1x3x3 and 3x1x3 kernels, blocks of one tile row, bias.
    #[test]
    fn winograd_matches_direct_convolution() {
        use super::super::winograd;
        let c = |n, ci, co, spatial, kernel| ConvShape {
            n,
            ci,
            co,
            spatial,
            kernel,
            stride: [1; 3],
            dilation: 1,
        };
        let cases = [
            c(2, 3, 5, [5, 7, 6], [3, 3, 3]),
            c(1, 4, 3, [4, 4, 4], [3, 3, 3]),
            c(1, 2, 3, [1, 9, 13], [1, 3, 3]),
            c(2, 5, 2, [3, 6, 5], [1, 3, 3]),
            c(1, 3, 4, [7, 2, 9], [3, 1, 3]),
            c(1, 2, 2, [1, 1, 1], [3, 3, 3]),
            c(1, 40, 24, [6, 5, 41], [3, 3, 3]),
            // rows of exactly 32 and of 34 columns: the vector groups' edges
            c(1, 2, 3, [2, 3, 32], [3, 3, 3]),
            c(1, 3, 2, [3, 2, 34], [1, 3, 3]),
        ];
        for (i, s) in cases.into_iter().enumerate() {
            let seed = 300 + i as u64;
            let x = lcg(s.n * s.ci * s.vol(), seed);
            let wt = lcg(s.co * s.k(), seed + 1);
            let bias = lcg(s.co, seed + 2);
            let mut want = naive(&x, &wt, &s);
            let ovol = s.out_vol();
            for (i, v) in want.iter_mut().enumerate() {
                *v += bias[(i / ovol) % s.co];
            }
            for isa in winograd::Isa::available() {
                let mut got = vec![f32::NAN; want.len()];
                // SAFETY: got holds the whole output; the ISA is this CPU's or narrower.
                unsafe { winograd::forward_with(isa, &x, &wt, Some(&bias), &s, got.as_mut_ptr()) };
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                        "{s:?} {isa:?}: {g} vs {w}"
                    );
                }
            }
        }
    }

    /// The gradients are the adjoints of the (bilinear) forward map:
    /// `<conv(x, w), g> = <x, dX(g, w)> = <w, dW(x, g)>`.
    #[test]
    fn gradients_are_adjoints_of_the_forward() {
        for (i, s) in shapes().into_iter().enumerate() {
            let seed = 100 + i as u64;
            let x = lcg(s.n * s.ci * s.vol(), seed);
            let wt = lcg(s.co * s.k(), seed + 1);
            let g = lcg(s.n * s.co * s.out_vol(), seed + 2);
            let y = naive(&x, &wt, &s);
            let lhs = dot(&y, &g);
            let via_dx = dot(&x, &input_grad(&g, &wt, &s));
            let via_dw = dot(&wt, &weight_grad(&x, &g, &s));
            let tol = 1e-4 * (1.0 + lhs.abs());
            assert!((lhs - via_dx).abs() <= tol, "{s:?}: dX {lhs} vs {via_dx}");
            assert!((lhs - via_dw).abs() <= tol, "{s:?}: dW {lhs} vs {via_dw}");
        }
    }
}
