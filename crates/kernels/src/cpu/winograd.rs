//! Winograd F(2, 3) forward convolution for the stride-1, "same", 3-wide convs that carry most
//! of a wide UNet's multiply-adds (nnU-Net's 3x3x3 convs at 32-320 channels).
//!
//! Per axis with a 3-wide kernel, F(2, 3) computes 2 outputs from 4 inputs with 4 products
//! instead of 6 (Lavin & Gray 2016); axes with a 1-wide kernel (the `1x3x3` convs of 2D and
//! anisotropic networks) pass through. A 3x3x3 conv thus takes `4³ = 64` products per
//! `2³ = 8` outputs and input-output channel pair instead of `27 * 8`: 3.4x fewer multiply-adds,
//! spent as 64 independent gemms `M_p[Co, T] = U_p[Co, Ci] · V_p[Ci, T]` over a block of `T`
//! output tiles, where `U = G w Gᵀ` (filters), `V = Bᵀ d B` (input tiles) and the output tile is
//! `Aᵀ M A`, each transform applied separably along the axes. The block is a run of whole tile
//! rows of one batch item, so the per-thread buffers stay small (`64 (Ci + Co) T` floats) and
//! the transforms run vectorized across the tiles of the block.
//!
//! F(2, 3)'s transforms have coefficients 0, ±1/2 and ±1, so in f32 the result differs from a
//! direct convolution by a few ulps of the accumulated sums (the tests bound it).

use gemm::{Parallelism, gemm};
use rayon::prelude::*;

use super::conv3d::{ConvShape, SharedMut};

/// A small row-major matrix applied along one axis.
struct Mat {
    rows: usize,
    cols: usize,
    c: &'static [f32],
}

/// G: filter (3) -> transformed (4).
const G: Mat = Mat {
    rows: 4,
    cols: 3,
    c: &[
        1.0, 0.0, 0.0, //
        0.5, 0.5, 0.5, //
        0.5, -0.5, 0.5, //
        0.0, 0.0, 1.0,
    ],
};
/// Tiles per block (the gemms' row count) aimed at; fewer when the channel counts would make
/// the block's buffers (`64 (ci + co)` floats per tile) larger than about 6 MB. Measured on the
/// nnU-Net Hippocampus network's convs (`examples/bench_conv_kernel.rs hippo`): 96 beat 192
/// (whose buffers leave L2) at 32 and 64 channels and matched it at 128.
const TARGET_TILES: usize = 96;

/// Fewer tiles per batch item than this and the im2col path is faster (the 64 gemms get too
/// short): 256 channels on 8³ (64 tiles) took 1.4x im2col's time, 128 channels on 10x14x10
/// (175 tiles) matched it, 32-128 channels on 16³ and more won 1.4-1.6x.
const MIN_TILES: usize = 128;

/// Tiles per transform chunk: a chunk's 64-row buffers (`64 * 64 * 4` bytes, twice) stay in L1.
const CHUNK_TILES: usize = 64;

/// Whether the Winograd path computes `s`: stride 1, dilation 1, every kernel axis 1 or 3
/// wide with at least two 3-wide axes, enough channels for the 64 gemms to pay for the
/// transforms, and enough tiles per batch item to fill a gemm.
pub(crate) fn applies(s: &ConvShape) -> bool {
    let threes = s.kernel.iter().filter(|&&k| k == 3).count();
    let shape_ok = s.stride == [1; 3]
        && s.dilation == 1
        && s.kernel.iter().all(|&k| k == 1 || k == 3)
        && threes >= 2;
    shape_ok && s.ci >= 16 && s.co >= 16 && Plan::new(s).tiles_per_item() >= MIN_TILES
}

/// The tiling of one convolution.
struct Plan {
    /// Output positions per tile along each axis (2 or 1).
    m: [usize; 3],
    /// Input positions per tile (4 or 1).
    t: [usize; 3],
    /// Tiles along each axis.
    nt: [usize; 3],
    /// Tile rows (one `(tile z, tile y)` each) per block.
    rows_per_block: usize,
    /// A block's tile count is padded to a multiple of this in V and M.
    pad_to: usize,
}

impl Plan {
    fn new(s: &ConvShape) -> Self {
        let m = s.kernel.map(|k| if k == 3 { 2 } else { 1 });
        let t = s.kernel.map(|k| if k == 3 { 4 } else { 1 });
        let nt = std::array::from_fn(|a| s.spatial[a].div_ceil(m[a]));
        let budget = (1_500_000 / (64 * (s.ci + s.co))).clamp(16, TARGET_TILES);
        let (rows_per_block, pad_to) = Self::block_rows(nt, s.n, budget);
        Self {
            m,
            t,
            nt,
            rows_per_block,
            pad_to,
        }
    }
    /// Tile rows per block and the multiple its tile count is padded to (the V and M rows, so
    /// the gemm's row count). The gemm's full micro-kernel covers 64 rows and its remainder
    /// kernels are slower, so the block takes the row count (tiles up to `budget` rounded down
    /// to 64, at least 64) that best fills whole 64s, times how evenly the rows split into
    /// blocks and the
    /// blocks over the threads (few-tile layers have only a handful of blocks); when that
    /// reaches no 85 % of the ideal (very long rows) it takes the most rows under the budget
    /// and pads to 16 (one vector).
    fn block_rows(nt: [usize; 3], n: usize, budget: usize) -> (usize, usize) {
        let (ntx, rows) = (nt[2].max(1), (nt[0] * nt[1]).max(1));
        let threads = rayon::current_num_threads().max(1);
        let cap = (budget / 64 * 64).max(64);
        let score = |r: usize| {
            let fill = (r * ntx) as f64 / (r * ntx).next_multiple_of(64) as f64;
            let blocks = rows.div_ceil(r);
            let even_blocks = rows as f64 / (blocks * r) as f64;
            let tasks = n * blocks;
            let even_threads = tasks as f64 / tasks.next_multiple_of(threads) as f64;
            fill * even_blocks * even_threads
        };
        let best = (1..=rows.min(cap / ntx).max(1))
            .max_by(|&a, &b| score(a).total_cmp(&score(b)).then(a.cmp(&b)))
            .unwrap_or(1);
        if score(best) >= 0.85 {
            (best, 64)
        } else {
            ((budget / ntx).clamp(1, rows), 16)
        }
    }
    /// Products per tile and channel pair (64 for 3x3x3, 16 for 1x3x3).
    fn p(&self) -> usize {
        self.t.iter().product()
    }
    fn tiles_per_item(&self) -> usize {
        self.nt.iter().product()
    }
    fn tile_rows(&self) -> usize {
        self.nt[0] * self.nt[1]
    }
    fn blocks_per_item(&self) -> usize {
        self.tile_rows().div_ceil(self.rows_per_block)
    }
    fn axis_mat(&self, axis: usize, mat: &'static Mat) -> Option<&'static Mat> {
        (self.t[axis] == 4).then_some(mat)
    }
}

/// Applies `mat` along `axis` of `src` (`dims[0] x dims[1] x dims[2]` elements of `lanes`
/// floats each) into `dst`; returns the new dims. `dims[axis]` must equal `mat.cols`.
fn apply_axis(
    src: &[f32],
    dims: [usize; 3],
    lanes: usize,
    axis: usize,
    mat: &Mat,
    dst: &mut Vec<f32>,
) -> [usize; 3] {
    debug_assert_eq!(dims[axis], mat.cols);
    let outer: usize = dims[..axis].iter().product();
    let inner = dims[axis + 1..].iter().product::<usize>() * lanes;
    dst.clear();
    dst.resize(outer * mat.rows * inner, 0.0);
    for o in 0..outer {
        let src_o = &src[o * mat.cols * inner..][..mat.cols * inner];
        let dst_o = &mut dst[o * mat.rows * inner..][..mat.rows * inner];
        for (r, dst_r) in dst_o.chunks_exact_mut(inner).enumerate() {
            for (c, src_c) in src_o.chunks_exact(inner).enumerate() {
                let k = mat.c[r * mat.cols + c];
                if k != 0.0 {
                    dst_r.iter_mut().zip(src_c).for_each(|(d, &v)| *d += k * v);
                }
            }
        }
    }
    let mut out = dims;
    out[axis] = mat.rows;
    out
}

/// Applies the per-axis matrices (`None`: that axis passes through) to `buf`, using `tmp` as
/// scratch; the result is left in `buf`.
fn separable(
    buf: &mut Vec<f32>,
    tmp: &mut Vec<f32>,
    mut dims: [usize; 3],
    lanes: usize,
    mats: [Option<&Mat>; 3],
) {
    for (axis, mat) in mats.iter().enumerate() {
        if let Some(mat) = mat {
            dims = apply_axis(buf, dims, lanes, axis, mat, tmp);
            std::mem::swap(buf, tmp);
        }
    }
}

/// `U[p][co][ci]`: the filters transformed by G per 3-wide axis.
fn transform_weights(weight: &[f32], s: &ConvShape, plan: &Plan) -> Vec<f32> {
    let kv: usize = s.kernel.iter().product();
    let p = plan.p();
    let mats = std::array::from_fn(|a| plan.axis_mat(a, &G));
    let per_co: Vec<Vec<f32>> = (0..s.co)
        .into_par_iter()
        .map_init(
            || (Vec::new(), Vec::new()),
            |(buf, tmp), co| {
                // [k0][k1][k2][ci] so that the transform runs across input channels
                buf.clear();
                buf.resize(kv * s.ci, 0.0);
                for ci in 0..s.ci {
                    let w = &weight[(co * s.ci + ci) * kv..][..kv];
                    for (tap, &v) in w.iter().enumerate() {
                        buf[tap * s.ci + ci] = v;
                    }
                }
                separable(buf, tmp, s.kernel, s.ci, mats);
                buf[..p * s.ci].to_vec()
            },
        )
        .collect();
    let mut u = vec![0.0f32; p * s.co * s.ci];
    for (co, uc) in per_co.iter().enumerate() {
        for pi in 0..p {
            u[(pi * s.co + co) * s.ci..][..s.ci].copy_from_slice(&uc[pi * s.ci..][..s.ci]);
        }
    }
    u
}

/// One 4-point transform along an axis, on rows of `lanes` floats.
#[derive(Clone, Copy)]
enum Transform {
    /// Bᵀ: 4 inputs -> 4.
    Input,
    /// Aᵀ: 4 -> 2 outputs.
    Output,
}

impl Transform {
    fn outputs(self) -> usize {
        match self {
            Self::Input => 4,
            Self::Output => 2,
        }
    }
}

/// Rows `base + r * stride` (each `lanes` floats) of a buffer.
#[derive(Clone, Copy)]
struct Rows {
    base: usize,
    stride: usize,
}

impl Rows {
    fn dense(lanes: usize) -> Self {
        Self {
            base: 0,
            stride: lanes,
        }
    }
    fn at(self, row: usize) -> usize {
        self.base + row * self.stride
    }
}

/// Applies `tf` along the middle axis of `src` seen as `[outer][4][inner]` rows of `lanes`
/// floats into `dst` `[outer][tf.outputs()][inner]`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn transform_axis(
    tf: Transform,
    src: &[f32],
    src_rows: Rows,
    dst: &mut [f32],
    dst_rows: Rows,
    outer: usize,
    inner: usize,
    lanes: usize,
) {
    let r_out = tf.outputs();
    for o in 0..outer {
        for i in 0..inner {
            let row = |c: usize| &src[src_rows.at((o * 4 + c) * inner + i)..][..lanes];
            let (d0, d1, d2, d3) = (row(0), row(1), row(2), row(3));
            let at = |r: usize| {
                let start = dst_rows.at((o * r_out + r) * inner + i);
                start..start + lanes
            };
            match tf {
                Transform::Input => {
                    let [y0, y1, y2, y3] = dst
                        .get_disjoint_mut([at(0), at(1), at(2), at(3)])
                        .expect("distinct rows of the transform buffer");
                    for l in 0..lanes {
                        let (a, b, c, d) = (d0[l], d1[l], d2[l], d3[l]);
                        y0[l] = a - c;
                        y1[l] = b + c;
                        y2[l] = c - b;
                        y3[l] = b - d;
                    }
                }
                Transform::Output => {
                    let [y0, y1] = dst
                        .get_disjoint_mut([at(0), at(1)])
                        .expect("distinct rows of the transform buffer");
                    for l in 0..lanes {
                        let (a, b, c, d) = (d0[l], d1[l], d2[l], d3[l]);
                        y0[l] = a + b + c;
                        y1[l] = b - c - d;
                    }
                }
            }
        }
    }
}

/// Per-thread buffers of one block, kept between calls (their sizes only grow).
#[derive(Default)]
struct Scratch {
    /// `V[p][ci][T]`.
    v: Vec<f32>,
    /// `M[p][co][T]`.
    m: Vec<f32>,
    /// One channel's tiles and the transform's ping-pong buffer.
    a: Vec<f32>,
    b: Vec<f32>,
    /// One padded input row.
    row: Vec<f32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

fn grow(v: &mut Vec<f32>, len: usize) {
    if v.len() < len {
        v.resize(len, 0.0);
    }
}

/// Forward convolution by F(2, 3) (see the module doc); `s` must satisfy [`applies`].
/// `weight` is `[co, ci, k0, k1, k2]`, `x` `[n, ci, d, h, w]`; writes `[n, co, d, h, w]`.
///
/// # Safety
/// `out` must be valid for writes of `n * co * d * h * w` floats (all of which get written).
pub(crate) unsafe fn forward_into(
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    s: &ConvShape,
    out: *mut f32,
) {
    // SAFETY: forwarded; the ISA is this CPU's.
    unsafe { forward_with(Isa::detect(), x, weight, bias, s, out) }
}

/// [`forward_into`] with the transforms compiled for `isa` (the tests run every ISA this CPU
/// has, so the portable code is tested on AVX-512 machines too).
///
/// # Safety
/// As [`forward_into`]; `isa` must be [`Isa::detect`]'s or a narrower one.
pub(crate) unsafe fn forward_with(
    isa: Isa,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    s: &ConvShape,
    out: *mut f32,
) {
    let plan = Plan::new(s);
    let u = transform_weights(weight, s, &plan);
    let blocks = plan.blocks_per_item();
    let dst = SharedMut(out);
    (0..s.n * blocks).into_par_iter().for_each(|task| {
        SCRATCH.with_borrow_mut(|sc| {
            let (n, b) = (task / blocks, task % blocks);
            let r0 = b * plan.rows_per_block;
            let rows = plan.rows_per_block.min(plan.tile_rows() - r0);
            let job = Block {
                isa,
                x,
                u: &u,
                bias,
                s,
                plan: &plan,
                n,
                r0,
                rows,
            };
            // SAFETY: this task writes only the output rows of its own tile rows of item n;
            // the ISA was detected on this CPU.
            unsafe { isa.run(&job, sc, dst) };
        })
    });
}

/// The widest vector ISA of this CPU the transforms are compiled for (the gemm dispatches on
/// its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    Avx512,
    Avx2,
    Baseline,
}

impl Isa {
    /// This CPU's ISA and every narrower one.
    #[cfg(test)]
    pub(crate) fn available() -> Vec<Self> {
        let all = [Self::Avx512, Self::Avx2, Self::Baseline];
        let best = all.iter().position(|&i| i == Self::detect()).unwrap_or(2);
        all[best..].to_vec()
    }

    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Self::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Self::Avx2;
            }
        }
        Self::Baseline
    }

    /// # Safety
    /// As [`Block::run`]; `self` must come from [`Isa::detect`].
    unsafe fn run(self, job: &Block, sc: &mut Scratch, out: SharedMut) {
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has AVX-512F (detected).
            Self::Avx512 => unsafe { block_avx512(job, sc, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has AVX2 and FMA (detected).
            Self::Avx2 => unsafe { block_avx2(job, sc, out) },
            // SAFETY: forwarded.
            _ => unsafe { job.run(sc, out) },
        }
    }
}

/// # Safety
/// The CPU must have AVX-512F; as [`Block::run`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block_avx512(job: &Block, sc: &mut Scratch, out: SharedMut) {
    // SAFETY: forwarded.
    unsafe { job.run(sc, out) }
}

/// # Safety
/// The CPU must have AVX2 and FMA; as [`Block::run`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx2(job: &Block, sc: &mut Scratch, out: SharedMut) {
    // SAFETY: forwarded.
    unsafe { job.run(sc, out) }
}

/// One block of tile rows `r0 .. r0 + rows` of batch item `n`.
struct Block<'a> {
    isa: Isa,
    x: &'a [f32],
    u: &'a [f32],
    bias: Option<&'a [f32]>,
    s: &'a ConvShape,
    plan: &'a Plan,
    n: usize,
    r0: usize,
    rows: usize,
}

impl Block<'_> {
    /// Tiles in the block.
    fn tiles(&self) -> usize {
        self.rows * self.plan.nt[2]
    }

    /// The tiles padded ([`Plan::block_rows`]): the length of a V or M row. The padding
    /// lanes hold stale values; each gemm row (tile) depends on its own V row only, so they
    /// never reach a real tile's output.
    fn stride(&self) -> usize {
        self.tiles().next_multiple_of(self.plan.pad_to)
    }

    /// `(tile z, tile y)` of the block's `r`-th tile row.
    fn tile_row(&self, r: usize) -> (usize, usize) {
        let row = self.r0 + r;
        (row / self.plan.nt[1], row % self.plan.nt[1])
    }

    /// Input transforms of every input channel, the P gemms, output transforms.
    ///
    /// # Safety
    /// `out` is the `[n, co, d, h, w]` output and this block's rows are written by no other
    /// task. (Inlined into the `target_feature` wrappers, so it is compiled once per ISA.)
    #[inline(always)]
    unsafe fn run(&self, sc: &mut Scratch, out: SharedMut) {
        let (s, p, nt) = (self.s, self.plan.p(), self.stride());
        grow(&mut sc.v, p * s.ci * nt);
        grow(&mut sc.m, p * s.co * nt);
        grow(&mut sc.a, p * nt);
        grow(&mut sc.b, p * nt);
        // the transforms run over chunks of tile rows, so their buffers stay in L1
        let per_chunk = (CHUNK_TILES / self.plan.nt[2]).max(1);
        for c0 in (0..self.rows).step_by(per_chunk) {
            let chunk = c0..(c0 + per_chunk).min(self.rows);
            for ci in 0..s.ci {
                self.transform_input(ci, chunk.clone(), sc);
            }
        }
        for pi in 0..p {
            // M_p[tile, co] = V_p[tile, ci] · U_p[ci, co] with tiles as gemm rows (the long
            // dimension, which the micro-kernels vectorize), all three stored channel-major.
            // SAFETY: M_p [co][nt], V_p [ci][nt] and U_p [co][ci] lie inside their buffers.
            unsafe {
                gemm(
                    nt,
                    s.co,
                    s.ci,
                    sc.m.as_mut_ptr().add(pi * s.co * nt),
                    nt as isize,
                    1,
                    false,
                    sc.v.as_ptr().add(pi * s.ci * nt),
                    nt as isize,
                    1,
                    self.u.as_ptr().add(pi * s.co * s.ci),
                    s.ci as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    Parallelism::None,
                );
            }
        }
        for c0 in (0..self.rows).step_by(per_chunk) {
            let chunk = c0..(c0 + per_chunk).min(self.rows);
            for co in 0..s.co {
                // SAFETY: forwarded.
                unsafe { self.write_output(co, chunk.clone(), sc, out) };
            }
        }
    }

    /// Writes into `sc.v` (rows `V[p][ci]`) the transformed input tiles of channel `ci` in
    /// the block's tile rows `chunk`.
    #[inline(always)]
    fn transform_input(&self, ci: usize, chunk: std::ops::Range<usize>, sc: &mut Scratch) {
        let (s, plan) = (self.s, self.plan);
        let [d, h, w] = s.spatial;
        let [t0, t1, t2] = plan.t;
        let [m0, m1, _] = plan.m;
        let pad = plan.t.map(|t| if t == 4 { 1isize } else { 0 });
        let (ntx, nt) = (plan.nt[2], self.stride());
        let lanes = chunk.len() * ntx;
        let plane = &self.x[(self.n * s.ci + ci) * d * h * w..][..d * h * w];
        // the next channel's rows are far away in memory (a plane apart) and short, so the
        // hardware prefetchers miss them: each row read here prefetches its twin there
        let next_plane = (self.n * s.ci + ci + 1) * d * h * w;
        let next = (ci + 1 < s.ci).then(|| &self.x[next_plane..][..d * h * w]);
        for (rr, r) in chunk.clone().enumerate() {
            let (tz, ty) = self.tile_row(r);
            for a in 0..t0 {
                let iz = (tz * m0) as isize + a as isize - pad[0];
                for b in 0..t1 {
                    let iy = (ty * m1) as isize + b as isize - pad[1];
                    let first = ((a * t1 + b) * t2) * lanes + rr * ntx;
                    if iz < 0 || iy < 0 || iz >= d as isize || iy >= h as isize {
                        for c in 0..t2 {
                            sc.a[first + c * lanes..][..ntx].fill(0.0);
                        }
                        continue;
                    }
                    let row = (iz as usize * h + iy as usize) * w;
                    let src = &plane[row..][..w];
                    if let Some(next) = next {
                        prefetch(&next[row..][..w]);
                    }
                    if t2 == 4 && self.isa == Isa::Avx512 {
                        // SAFETY: the CPU has AVX-512F (this block runs on Isa::Avx512).
                        #[cfg(target_arch = "x86_64")]
                        unsafe {
                            x_input_transform_avx512(src, &mut sc.a, first, lanes, ntx)
                        };
                    } else if t2 == 4 {
                        x_input_transform(src, &mut sc.row, &mut sc.a, first, lanes, ntx);
                    } else {
                        sc.a[first..][..ntx].copy_from_slice(src);
                    }
                }
            }
        }
        let to_v = Rows {
            base: ci * nt + chunk.start * ntx,
            stride: s.ci * nt,
        };
        if t0 == 4 && t1 == 4 && self.isa == Isa::Avx512 {
            // SAFETY: the CPU has AVX-512F (this block runs on Isa::Avx512).
            #[cfg(target_arch = "x86_64")]
            unsafe {
                zy_input_transform_avx512(&sc.a, &mut sc.v, to_v, t2, lanes)
            };
            return;
        }
        // then y and z (the 3-wide ones); the last pass writes V[p][ci] rows
        let axes: Vec<usize> = [1, 0].into_iter().filter(|&a| plan.t[a] == 4).collect();
        for (i, &axis) in axes.iter().enumerate() {
            let outer: usize = plan.t[..axis].iter().product();
            let inner: usize = plan.t[axis + 1..].iter().product();
            let dense = Rows::dense(lanes);
            if i + 1 == axes.len() {
                transform_axis(
                    Transform::Input,
                    &sc.a,
                    dense,
                    &mut sc.v,
                    to_v,
                    outer,
                    inner,
                    lanes,
                );
            } else {
                transform_axis(
                    Transform::Input,
                    &sc.a,
                    dense,
                    &mut sc.b,
                    dense,
                    outer,
                    inner,
                    lanes,
                );
                std::mem::swap(&mut sc.a, &mut sc.b);
            }
        }
    }

    /// Transforms output channel `co` of the block back (Aᵀ M A) and writes its valid
    /// positions (plus the bias) into `out`.
    ///
    /// # Safety
    /// As [`Block::run`].
    #[inline(always)]
    unsafe fn write_output(
        &self,
        co: usize,
        chunk: std::ops::Range<usize>,
        sc: &mut Scratch,
        out: SharedMut,
    ) {
        let (s, plan) = (self.s, self.plan);
        let [d, h, w] = s.spatial;
        let (ntx, nt) = (plan.nt[2], self.stride());
        let lanes = chunk.len() * ntx;
        // z, then y (the 3-wide ones); the first pass reads M[p][co] rows
        let mut dims = plan.t;
        let mut src = Rows {
            base: co * nt + chunk.start * ntx,
            stride: s.co * nt,
        };
        if plan.t[0] == 4 && plan.t[1] == 4 && self.isa == Isa::Avx512 {
            // SAFETY: the CPU has AVX-512F (this block runs on Isa::Avx512).
            #[cfg(target_arch = "x86_64")]
            unsafe {
                zy_output_transform_avx512(&sc.m, src, &mut sc.a, plan.t[2], lanes)
            };
        } else {
            let mut from_m = true;
            for axis in [0, 1] {
                if plan.t[axis] != 4 {
                    continue;
                }
                let outer: usize = dims[..axis].iter().product();
                let inner: usize = dims[axis + 1..].iter().product();
                let dense = Rows::dense(lanes);
                let input: &[f32] = if from_m { &sc.m } else { &sc.a };
                transform_axis(
                    Transform::Output,
                    input,
                    src,
                    &mut sc.b,
                    dense,
                    outer,
                    inner,
                    lanes,
                );
                std::mem::swap(&mut sc.a, &mut sc.b);
                (src, from_m, dims[axis]) = (dense, false, 2);
            }
        }
        let bias = self.bias.map_or(0.0, |b| b[co]);
        let [m0, m1, _] = plan.m;
        let t2 = plan.t[2];
        let base = (self.n * s.co + co) * d * h * w;
        for (rr, r) in chunk.enumerate() {
            let (tz, ty) = self.tile_row(r);
            for a in 0..m0 {
                for b in 0..m1 {
                    let (z, y) = (tz * m0 + a, ty * m1 + b);
                    if z >= d || y >= h {
                        continue;
                    }
                    // SAFETY: row (z, y) of channel co of item n lies inside the output and
                    // belongs to this block (the caller's guarantee).
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(out.get().add(base + (z * h + y) * w), w)
                    };
                    let first = ((a * m1 + b) * t2) * lanes + rr * ntx;
                    if t2 == 4 {
                        x_output_transform(&sc.a, first, lanes, ntx, bias, dst);
                    } else {
                        let src = &sc.a[first..][..ntx];
                        dst.iter_mut().zip(src).for_each(|(o, &v)| *o = v + bias);
                    }
                }
            }
        }
    }
}

/// Prefetches `row` into L1, one request per cache line.
#[inline(always)]
fn prefetch(row: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in row.chunks(16) {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch of an address inside `row`; prefetches never fault.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

/// Bᵀ along x fused with the gather: from one input row, the 4 transformed rows of the
/// `ntx` tiles along it (`dst[first + c * nt ..][.. ntx]`, c = 0..4). With the row split into
/// its even (`e`) and odd (`o`) columns of the zero-padded row, tile `j` reads
/// `e[j], o[j], e[j+1], o[j+1]`.
#[inline(always)]
fn x_input_transform(
    src: &[f32],
    row: &mut Vec<f32>,
    dst: &mut [f32],
    first: usize,
    nt: usize,
    ntx: usize,
) {
    // padded column q = input column q - 1: even[j] = in[2j - 1], odd[j] = in[2j]
    row.clear();
    row.resize(2 * (ntx + 1), 0.0);
    let (even, odd) = row.split_at_mut(ntx + 1);
    let pairs = src.chunks_exact(2);
    if let [v] = pairs.remainder() {
        odd[src.len() / 2] = *v;
    }
    for ((pair, o), e) in pairs.zip(odd.iter_mut()).zip(&mut even[1..]) {
        (*o, *e) = (pair[0], pair[1]);
    }
    let [y0, y1, y2, y3] = dst
        .get_disjoint_mut([0, 1, 2, 3].map(|c| first + c * nt..first + c * nt + ntx))
        .expect("distinct rows of the transform buffer");
    for j in 0..ntx {
        let (a, b, c, d) = (even[j], odd[j], even[j + 1], odd[j + 1]);
        y0[j] = a - c;
        y1[j] = b + c;
        y2[j] = c - b;
        y3[j] = b - d;
    }
}

/// [`x_input_transform`] with AVX-512: per 16 tiles, the even and odd columns of the padded
/// row (and those one tile further) by masked loads straight from the input row and
/// two-source permutes, instead of a padded copy and a scalar split.
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn x_input_transform_avx512(src: &[f32], dst: &mut [f32], first: usize, nt: usize, ntx: usize) {
    use std::arch::x86_64::*;
    assert!(
        first + 3 * nt + ntx <= dst.len(),
        "x transform rows inside the buffer"
    );
    let w = src.len() as isize;
    // the 16 lanes from input column `o` on, with the lanes outside [0, w) masked off (masked
    // lanes are not read, so the loads never leave `src`): the zero padding for free
    let load = |o: isize| {
        let lo = (-o).clamp(0, 16);
        let hi = (w - o).clamp(0, 16);
        let mask = if hi > lo {
            (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as __mmask16
        } else {
            0
        };
        // SAFETY: only the lanes in the mask, columns [0, w) of src, are read.
        unsafe { _mm512_maskz_loadu_ps(mask, src.as_ptr().wrapping_offset(o)) }
    };
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for j0 in (0..ntx).step_by(16) {
        let n = (ntx - j0).min(16);
        let mask: __mmask16 = if n == 16 { !0 } else { (1u16 << n) - 1 };
        // padded column q = input column q - 1; tile j reads padded 2j .. 2j + 4
        let o = 2 * j0 as isize - 1;
        let (p0, p1, q0, q1) = (load(o), load(o + 16), load(o + 2), load(o + 18));
        let e = _mm512_permutex2var_ps(p0, even, p1);
        let od = _mm512_permutex2var_ps(p0, odd, p1);
        let e1 = _mm512_permutex2var_ps(q0, even, q1);
        let o1 = _mm512_permutex2var_ps(q0, odd, q1);
        // SAFETY: the masked stores write dst[first + c nt + j0 ..][.. n] (asserted above,
        // j0 + n <= ntx).
        unsafe {
            let out = dst.as_mut_ptr().add(first + j0);
            _mm512_mask_storeu_ps(out, mask, _mm512_sub_ps(e, e1));
            _mm512_mask_storeu_ps(out.add(nt), mask, _mm512_add_ps(od, e1));
            _mm512_mask_storeu_ps(out.add(2 * nt), mask, _mm512_sub_ps(e1, od));
            _mm512_mask_storeu_ps(out.add(3 * nt), mask, _mm512_sub_ps(od, o1));
        }
    }
}

/// Bᵀ along y and then z in registers, 16 tiles at a time, for every x row `c < t2` of
/// `src` (`[4][4][t2][lanes]`, x already transformed) into the rows `p = (a 4 + b) t2 + c` of
/// `dst` (`V[p][ci]`).
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
// the column loops index 4x4 register arrays by column: clearer than iterators
#[allow(clippy::needless_range_loop)]
fn zy_input_transform_avx512(src: &[f32], dst: &mut [f32], to: Rows, t2: usize, lanes: usize) {
    use std::arch::x86_64::*;
    assert!(
        16 * t2 * lanes <= src.len(),
        "transform rows inside the buffer"
    );
    assert!(
        to.at(16 * t2 - 1) + lanes <= dst.len(),
        "V rows inside the buffer"
    );
    for c in 0..t2 {
        for l0 in (0..lanes).step_by(16) {
            let n = (lanes - l0).min(16);
            let mask: __mmask16 = if n == 16 { !0 } else { (1u16 << n) - 1 };
            // SAFETY: rows ((a 4 + b) t2 + c) of src and to.at(p) of dst, lanes l0 .. l0 + n,
            // are inside the buffers (asserted above).
            unsafe {
                let ld = |a: usize, b: usize| {
                    _mm512_maskz_loadu_ps(
                        mask,
                        src.as_ptr().add(((a * 4 + b) * t2 + c) * lanes + l0),
                    )
                };
                let mut y = [[_mm512_setzero_ps(); 4]; 4];
                for (a, ya) in y.iter_mut().enumerate() {
                    let (x0, x1, x2, x3) = (ld(a, 0), ld(a, 1), ld(a, 2), ld(a, 3));
                    *ya = [
                        _mm512_sub_ps(x0, x2),
                        _mm512_add_ps(x1, x2),
                        _mm512_sub_ps(x2, x1),
                        _mm512_sub_ps(x1, x3),
                    ];
                }
                let out = dst.as_mut_ptr();
                for b in 0..4 {
                    let z = [
                        _mm512_sub_ps(y[0][b], y[2][b]),
                        _mm512_add_ps(y[1][b], y[2][b]),
                        _mm512_sub_ps(y[2][b], y[1][b]),
                        _mm512_sub_ps(y[1][b], y[3][b]),
                    ];
                    for (a, &za) in z.iter().enumerate() {
                        let row = to.at((a * 4 + b) * t2 + c);
                        _mm512_mask_storeu_ps(out.add(row + l0), mask, za);
                    }
                }
            }
        }
    }
}

/// Aᵀ along z and then y in registers, 16 tiles at a time, for every x row `c < t2`: from the
/// rows `p = (a 4 + b) t2 + c` of `src` (`M[p][co]`) into `dst` `[2][2][t2][lanes]`.
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
// the column loops index 4x4 register arrays by column: clearer than iterators
#[allow(clippy::needless_range_loop)]
fn zy_output_transform_avx512(
    src: &[f32],
    from: Rows,
    dst: &mut Vec<f32>,
    t2: usize,
    lanes: usize,
) {
    use std::arch::x86_64::*;
    assert!(
        from.at(16 * t2 - 1) + lanes <= src.len(),
        "M rows inside the buffer"
    );
    if dst.len() < 4 * t2 * lanes {
        dst.resize(4 * t2 * lanes, 0.0);
    }
    for c in 0..t2 {
        for l0 in (0..lanes).step_by(16) {
            let n = (lanes - l0).min(16);
            let mask: __mmask16 = if n == 16 { !0 } else { (1u16 << n) - 1 };
            // SAFETY: rows from.at(p) of src and ((a 2 + b) t2 + c) of dst, lanes l0 .. l0 + n,
            // are inside the buffers (asserted / resized above).
            unsafe {
                let ld = |a: usize, b: usize| {
                    _mm512_maskz_loadu_ps(
                        mask,
                        src.as_ptr().add(from.at((a * 4 + b) * t2 + c) + l0),
                    )
                };
                let mut z = [[_mm512_setzero_ps(); 4]; 2];
                for b in 0..4 {
                    let (m0, m1, m2, m3) = (ld(0, b), ld(1, b), ld(2, b), ld(3, b));
                    z[0][b] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
                    z[1][b] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
                }
                let out = dst.as_mut_ptr();
                for (a, za) in z.iter().enumerate() {
                    let y0 = _mm512_add_ps(_mm512_add_ps(za[0], za[1]), za[2]);
                    let y1 = _mm512_sub_ps(_mm512_sub_ps(za[1], za[2]), za[3]);
                    for (b, yb) in [y0, y1].into_iter().enumerate() {
                        let row = ((a * 2 + b) * t2 + c) * lanes;
                        _mm512_mask_storeu_ps(out.add(row + l0), mask, yb);
                    }
                }
            }
        }
    }
}

/// Aᵀ along x fused with the scatter: from the 4 rows `src[first + c * nt ..][.. ntx]`, output
/// columns `2j` and `2j + 1` of tile `j` (plus `bias`) into `dst` (one output row, `w` long).
#[inline(always)]
fn x_output_transform(
    src: &[f32],
    first: usize,
    nt: usize,
    ntx: usize,
    bias: f32,
    dst: &mut [f32],
) {
    let row = |c: usize| &src[first + c * nt..][..ntx];
    let (m0, m1, m2, m3) = (row(0), row(1), row(2), row(3));
    let mut pairs = dst.chunks_exact_mut(2);
    let rows = m0.iter().zip(m1).zip(m2).zip(m3);
    for (pair, (((&a, &b), &c), &d)) in (&mut pairs).zip(rows) {
        pair[0] = a + b + c + bias;
        pair[1] = b - c - d + bias;
    }
    if let [last] = pairs.into_remainder() {
        let j = ntx - 1;
        *last = m0[j] + m1[j] + m2[j] + bias;
    }
}
