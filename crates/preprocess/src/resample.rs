//! Resampling in physical space (ITK's rules), separable when the grids are axis-aligned.
//!
//! For an output voxel `o`, its world point is `p = O_out + D_out S_out o`, and the continuous
//! input index is `c = (D_in S_in)^-1 (p - O_in)` (all in `(i, j, k)` order, f64). As ITK's
//! `ResampleImageFilter`:
//! * a point is **inside** iff `-0.5 <= c < n - 0.5` on every axis; outside gives 0
//!   ([`Boundary::Zero`]) — or, with [`Boundary::Clamp`], the nearest edge value (used to map
//!   predictions back, where a zero rim would be wrong);
//! * linear: `b = floor(c)`, neighbours clamped to `[0, n-1]`;
//! * nearest: `floor(c + 0.5)` clamped;
//! * cubic: cubic B-spline with mirror boundary (prefilter and evaluation), as
//!   `sitkBSpline` / `scipy.ndimage.map_coordinates(order=3, mode='mirror')`.
//!
//! When `(D_in S_in)^-1 D_out S_out` is diagonal (same direction up to flips, any spacing and
//! origin) the 3D interpolation factorizes into three 1D passes (exact for all three kernels),
//! run in parallel over slices with precomputed taps: this is the fast path used by the
//! pipeline. Otherwise (oblique to axis-aligned) each output voxel is interpolated directly.

use crate::PreprocessError;
use medseg_volume::{Geometry, invert3};
use ndarray::{Array3, ArrayView3, ArrayViewMut1, Axis, Zip, s};
use rayon::prelude::*;

/// Image interpolation kernel.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    Nearest,
    #[default]
    Linear,
    /// Cubic B-spline (order 3); overshoots the input range.
    Cubic,
}

impl std::str::FromStr for Interpolation {
    type Err = PreprocessError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "nearest" => Ok(Self::Nearest),
            "linear" => Ok(Self::Linear),
            "cubic" | "bspline" => Ok(Self::Cubic),
            other => Err(PreprocessError::setting(
                "interpolation",
                other,
                "expected \"nearest\", \"linear\" or \"cubic\"",
            )),
        }
    }
}

/// Label-map interpolation.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum LabelInterpolation {
    /// Nearest neighbour (ITK's rule).
    #[default]
    Nearest,
    /// Each class as a 0/1 image resampled linearly, then the argmax (smoother borders; what
    /// nnU-Net does with order 1). Ties go to the lower label.
    LinearOneHot,
}

/// What a point outside the input's field of view gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Boundary {
    /// 0 (ITK's default pixel value).
    #[default]
    Zero,
    /// The interpolated value at the clamped position (edge extension).
    Clamp,
}

/// An output grid: geometry plus extents in array order `[k, j, i]`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Grid {
    pub geometry: Geometry,
    pub shape_kji: [usize; 3],
}

impl Grid {
    /// The grid of an array with this geometry.
    pub fn new(geometry: Geometry, shape_kji: [usize; 3]) -> Self {
        Self {
            geometry,
            shape_kji,
        }
    }

    /// The same field of view at `new_spacing` (`(i, j, k)` mm): same origin and direction,
    /// size `round(n * spacing / new_spacing)` per axis (half away from zero, at least 1).
    pub fn with_spacing(&self, new_spacing: [f64; 3]) -> Self {
        let mut g = self.geometry;
        let mut shape = [0usize; 3];
        for a in 0..3 {
            let n = self.shape_kji[2 - a] as f64 * self.geometry.spacing[a] / new_spacing[a];
            shape[2 - a] = (n.round() as usize).max(1);
            g.spacing[a] = new_spacing[a];
        }
        Self {
            geometry: g,
            shape_kji: shape,
        }
    }
}

/// Settings of one resampling.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ResampleOptions {
    pub interpolation: Interpolation,
    pub boundary: Boundary,
    /// `(i, j, k)` axis interpolated with nearest neighbour whatever `interpolation` says:
    /// nnU-Net's "separate z" for anisotropic data (in-plane interpolation, nearest
    /// across slices). Only honoured on the separable (axis-aligned) path.
    pub nearest_axis: Option<usize>,
}

/// nnU-Net's anisotropy test: when the coarsest axis of `spacing` (or, failing that, of
/// `target`) is more than `threshold` times the finest, that `(i, j, k)` axis is resampled
/// separately (nearest). `None` for isotropic-enough data. nnU-Net's threshold is 3.
pub fn separate_z_axis(spacing: [f64; 3], target: [f64; 3], threshold: f64) -> Option<usize> {
    let pick = |s: [f64; 3]| {
        let (lo, hi) = finest_and_coarsest_axis(s);
        (s[hi] / s[lo] > threshold).then_some(hi)
    };
    pick(spacing).or_else(|| pick(target))
}

/// The `(i, j, k)` axes of the smallest and of the largest spacing (the first one on ties).
pub(crate) fn finest_and_coarsest_axis(spacing: [f64; 3]) -> (usize, usize) {
    let (mut lo, mut hi) = (0, 0);
    for a in 1..3 {
        if spacing[a] < spacing[lo] {
            lo = a;
        }
        if spacing[a] > spacing[hi] {
            hi = a;
        }
    }
    (lo, hi)
}

/// 1D interpolation taps of one output line: `n` (index, weight) pairs per output sample.
struct Taps {
    n: usize,
    idx: Vec<u32>,
    w: Vec<f32>,
}

fn mirror(i: i64, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as i64 - 1);
    let mut m = i.rem_euclid(period);
    if m >= n as i64 {
        m = period - m;
    }
    m as usize
}

fn cubic_weights(t: f64) -> [f64; 4] {
    let t2 = t * t;
    let t3 = t2 * t;
    let u = 1.0 - t;
    [
        u * u * u / 6.0,
        (4.0 - 6.0 * t2 + 3.0 * t3) / 6.0,
        (1.0 + 3.0 * t + 3.0 * t2 - 3.0 * t3) / 6.0,
        t3 / 6.0,
    ]
}

/// Taps for continuous coordinates `coord(o)`, o in 0..n_out, over an input line of `n_in`.
fn taps(
    n_in: usize,
    n_out: usize,
    coord: impl Fn(usize) -> f64,
    interp: Interpolation,
    boundary: Boundary,
) -> Taps {
    let n = match interp {
        Interpolation::Nearest => 1,
        Interpolation::Linear => 2,
        Interpolation::Cubic => 4,
    };
    let mut idx = vec![0u32; n * n_out];
    let mut w = vec![0f32; n * n_out];
    let last = n_in as i64 - 1;
    for o in 0..n_out {
        let mut c = coord(o);
        let inside = c >= -0.5 && c < n_in as f64 - 0.5;
        if !inside {
            match boundary {
                Boundary::Zero => continue, // all weights stay 0
                Boundary::Clamp => c = c.clamp(0.0, last as f64),
            }
        }
        let t = &mut idx[o * n..(o + 1) * n];
        let wt = &mut w[o * n..(o + 1) * n];
        match interp {
            Interpolation::Nearest => {
                t[0] = ((c + 0.5).floor() as i64).clamp(0, last) as u32;
                wt[0] = 1.0;
            }
            Interpolation::Linear => {
                let b = c.floor();
                let f = c - b;
                let b = b as i64;
                t[0] = b.clamp(0, last) as u32;
                t[1] = (b + 1).clamp(0, last) as u32;
                wt[0] = (1.0 - f) as f32;
                wt[1] = f as f32;
            }
            Interpolation::Cubic => {
                let b = c.floor();
                let ws = cubic_weights(c - b);
                for q in 0..4 {
                    t[q] = mirror(b as i64 - 1 + q as i64, n_in) as u32;
                    wt[q] = ws[q] as f32;
                }
            }
        }
    }
    Taps { n, idx, w }
}

/// In-place cubic B-spline prefilter of one line, mirror boundary (Thevenaz/Unser).
fn prefilter_line(mut line: ArrayViewMut1<f32>, buf: &mut Vec<f64>) {
    let n = line.len();
    if n < 2 {
        return;
    }
    let z: f64 = 3f64.sqrt() - 2.0;
    let lambda = (1.0 - z) * (1.0 - 1.0 / z);
    buf.clear();
    buf.extend(line.iter().map(|&v| v as f64 * lambda));
    let c = buf.as_mut_slice();
    // causal initialisation, mirror boundary (exact sum over the symmetric extension)
    let mut zn = z;
    let iz = 1.0 / z;
    let mut z2n = z.powi(n as i32 - 1);
    let mut sum = c[0] + z2n * c[n - 1];
    #[allow(clippy::misrefactored_assign_op)] // Thevenaz: z2n = z2n^2 / z, on purpose
    {
        z2n = z2n * z2n * iz;
    }
    for v in c.iter().take(n - 1).skip(1) {
        sum += (zn + z2n) * v;
        zn *= z;
        z2n *= iz;
    }
    c[0] = sum / (1.0 - zn * zn);
    for k in 1..n {
        c[k] += z * c[k - 1];
    }
    c[n - 1] = (z / (z * z - 1.0)) * (z * c[n - 2] + c[n - 1]);
    for k in (0..n - 1).rev() {
        c[k] = z * (c[k + 1] - c[k]);
    }
    for (dst, &v) in line.iter_mut().zip(c.iter()) {
        *dst = v as f32;
    }
}

/// Cubic B-spline coefficients along array axis `axis` (in place). Along `i` each row is
/// filtered on its own; along `j` and `k` the recursion runs over whole rows / planes at once
/// (contiguous, vectorizable) instead of strided lanes.
fn prefilter_axis(data: &mut Array3<f32>, axis: usize) {
    if data.shape()[axis] < 2 {
        return;
    }
    match axis {
        2 => {
            data.axis_iter_mut(Axis(0))
                .into_par_iter()
                .for_each_init(Vec::new, |buf, mut slab| {
                    for lane in slab.lanes_mut(Axis(1)) {
                        prefilter_line(lane, buf);
                    }
                });
        }
        1 => {
            data.axis_iter_mut(Axis(0))
                .into_par_iter()
                .for_each(|slab| prefilter_rows(slab));
        }
        _ => {
            let (nk, nj, ni) = data.dim();
            if !data.is_standard_layout() {
                *data = data.as_standard_layout().into_owned();
            }
            if let Ok(mut flat) = data.view_mut().into_shape_with_order((nk, nj * ni)) {
                let chunk = (nj * ni)
                    .div_ceil(rayon::current_num_threads().max(1) * 4)
                    .max(256);
                flat.axis_chunks_iter_mut(Axis(1), chunk)
                    .into_par_iter()
                    .for_each(|c| prefilter_rows(c));
            }
        }
    }
}

/// The prefilter of [`prefilter_line`] applied down the rows of `a` (axis 0), every column at
/// once.
fn prefilter_rows(mut a: ndarray::ArrayViewMut2<f32>) {
    let n = a.nrows();
    if n < 2 {
        return;
    }
    let z: f64 = 3f64.sqrt() - 2.0;
    let lambda = (1.0 - z) * (1.0 - 1.0 / z);
    a.mapv_inplace(|v| (v as f64 * lambda) as f32);
    // causal initialisation (mirror), accumulated in f64
    let mut sum: Vec<f64> = a.row(0).iter().map(|&v| v as f64).collect();
    let mut zn = z;
    let iz = 1.0 / z;
    let mut z2n = z.powi(n as i32 - 1);
    for (s, &v) in sum.iter_mut().zip(a.row(n - 1).iter()) {
        *s += z2n * v as f64;
    }
    z2n = z2n * z2n * iz;
    for k in 1..n - 1 {
        let w = zn + z2n;
        for (s, &v) in sum.iter_mut().zip(a.row(k).iter()) {
            *s += w * v as f64;
        }
        zn *= z;
        z2n *= iz;
    }
    let norm = 1.0 / (1.0 - zn * zn);
    for (d, s) in a.row_mut(0).iter_mut().zip(sum.iter()) {
        *d = (s * norm) as f32;
    }
    let zf = z as f32;
    for k in 1..n {
        let (prev, mut cur) = a.multi_slice_mut((ndarray::s![k - 1, ..], ndarray::s![k, ..]));
        cur.zip_mut_with(&prev, |c, &p| *c += zf * p);
    }
    let g = (z / (z * z - 1.0)) as f32;
    {
        let (prev, mut last) = a.multi_slice_mut((ndarray::s![n - 2, ..], ndarray::s![n - 1, ..]));
        last.zip_mut_with(&prev, |l, &p| *l = g * (zf * p + *l));
    }
    for k in (0..n - 1).rev() {
        let (mut cur, next) = a.multi_slice_mut((ndarray::s![k, ..], ndarray::s![k + 1, ..]));
        cur.zip_mut_with(&next, |c, &nx| *c = zf * (nx - *c));
    }
}

/// Cubic B-spline coefficients of a whole volume (mirror boundary).
fn prefilter(data: ArrayView3<f32>) -> Array3<f32> {
    let mut c = data.to_owned();
    for ax in 0..3 {
        prefilter_axis(&mut c, ax);
    }
    c
}

/// One 1D pass along array axis `axis`, output length `taps.len`.
fn pass(src: ArrayView3<f32>, axis: usize, taps: &Taps, n_out: usize) -> Array3<f32> {
    let (nk, nj, ni) = src.dim();
    let mut shape = [nk, nj, ni];
    shape[axis] = n_out;
    let mut out = Array3::<f32>::zeros(shape);
    let n = taps.n;
    match axis {
        2 => {
            // along i: per row
            out.axis_iter_mut(Axis(0))
                .into_par_iter()
                .enumerate()
                .for_each(|(k, mut slab)| {
                    for j in 0..nj {
                        let row = src.slice(s![k, j, ..]);
                        let row = row.as_slice();
                        let mut orow = slab.row_mut(j);
                        for o in 0..n_out {
                            let mut acc = 0f32;
                            for q in 0..n {
                                let t = o * n + q;
                                let v = match row {
                                    Some(r) => r[taps.idx[t] as usize],
                                    None => src[[k, j, taps.idx[t] as usize]],
                                };
                                acc += taps.w[t] * v;
                            }
                            orow[o] = acc;
                        }
                    }
                });
        }
        1 => {
            out.axis_iter_mut(Axis(0))
                .into_par_iter()
                .enumerate()
                .for_each(|(k, mut slab)| {
                    let plane = src.index_axis(Axis(0), k);
                    for o in 0..n_out {
                        let mut orow = slab.row_mut(o);
                        for q in 0..n {
                            let t = o * n + q;
                            let w = taps.w[t];
                            if w == 0.0 {
                                continue;
                            }
                            orow.scaled_add(w, &plane.row(taps.idx[t] as usize));
                        }
                    }
                });
        }
        _ => {
            out.axis_iter_mut(Axis(0))
                .into_par_iter()
                .enumerate()
                .for_each(|(o, mut slab)| {
                    if n == 2 {
                        // Linear: one pass writing w0·a + w1·b (same sum order as below).
                        let (w0, w1) = (taps.w[2 * o], taps.w[2 * o + 1]);
                        let a = src.index_axis(Axis(0), taps.idx[2 * o] as usize);
                        let b = src.index_axis(Axis(0), taps.idx[2 * o + 1] as usize);
                        Zip::from(&mut slab).and(&a).and(&b).for_each(|d, &x, &y| {
                            *d = if w1 == 0.0 {
                                w0 * x
                            } else if w0 == 0.0 {
                                w1 * y
                            } else {
                                w0 * x + w1 * y
                            };
                        });
                        return;
                    }
                    if n == 1 {
                        // Nearest: a copy of one slab (or zeros outside the input).
                        let w = taps.w[o];
                        if w != 0.0 {
                            let a = src.index_axis(Axis(0), taps.idx[o] as usize);
                            Zip::from(&mut slab).and(&a).for_each(|d, &x| *d = w * x);
                        }
                        return;
                    }
                    for q in 0..n {
                        let t = o * n + q;
                        let w = taps.w[t];
                        if w == 0.0 {
                            continue;
                        }
                        slab.scaled_add(w, &src.index_axis(Axis(0), taps.idx[t] as usize));
                    }
                });
        }
    }
    out
}

/// The j pass then the i pass, fused per k slab: `[k, j, i]` -> `[k, nj_out, ni_out]`. The j
/// pass adds whole rows (vectorized) and shrinks the slab before the scalar i pass gathers; one
/// small per-thread buffer replaces a whole-volume intermediate.
fn pass_ij(
    src: ArrayView3<f32>,
    ti: &Taps,
    tj: &Taps,
    ni_out: usize,
    nj_out: usize,
) -> Array3<f32> {
    let (nk, _nj, ni) = src.dim();
    let mut out = Array3::<f32>::zeros((nk, nj_out, ni_out));
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each_init(
            || ndarray::Array1::<f32>::zeros(ni),
            |tmp, (k, mut slab)| {
                let plane = src.index_axis(Axis(0), k);
                for o in 0..nj_out {
                    tmp.fill(0.0);
                    for q in 0..tj.n {
                        let t = o * tj.n + q;
                        let w = tj.w[t];
                        if w == 0.0 {
                            continue;
                        }
                        tmp.scaled_add(w, &plane.row(tj.idx[t] as usize));
                    }
                    let row = tmp.as_slice().unwrap_or(&[]);
                    let mut orow = slab.row_mut(o);
                    let taps = ti.idx.chunks_exact(ti.n).zip(ti.w.chunks_exact(ti.n));
                    for (dst, (idx, w)) in orow.iter_mut().zip(taps) {
                        let mut acc = 0f32;
                        for (&i, &w) in idx.iter().zip(w) {
                            acc += w * row.get(i as usize).copied().unwrap_or(0.0);
                        }
                        *dst = acc;
                    }
                }
            },
        );
    out
}

/// `(D S)^-1` of a geometry.
fn index_matrix(g: &Geometry) -> Result<[[f64; 3]; 3], PreprocessError> {
    invert3(&g.index_to_world())
        .ok_or_else(|| PreprocessError::Geometry("singular direction/spacing matrix".into()))
}

/// The affine map output index -> input continuous index: `c = t + M o` (`(i, j, k)`).
fn index_map(src: &Geometry, dst: &Geometry) -> Result<([[f64; 3]; 3], [f64; 3]), PreprocessError> {
    for g in [src, dst] {
        if g.spacing.iter().any(|&s| !(s > 0.0) || !s.is_finite()) {
            return Err(PreprocessError::Geometry(format!(
                "spacing {:?} must be positive",
                g.spacing
            )));
        }
    }
    let inv = index_matrix(src)?;
    let mut m = [[0.0; 3]; 3];
    for r in 0..3 {
        for c in 0..3 {
            m[r][c] = (0..3)
                .map(|q| inv[r][q] * dst.direction[q][c] * dst.spacing[c])
                .sum();
        }
    }
    let d = [0, 1, 2].map(|q| dst.origin[q] - src.origin[q]);
    let t = [0, 1, 2].map(|r| (0..3).map(|q| inv[r][q] * d[q]).sum());
    Ok((m, t))
}

fn is_diagonal(m: &[[f64; 3]; 3]) -> bool {
    let scale = (0..3).map(|a| m[a][a].abs()).fold(0.0, f64::max);
    (0..3).all(|r| (0..3).all(|c| r == c || m[r][c].abs() <= 1e-9 * scale.max(1e-12)))
}

/// Resamples `src` (on `src_geom`) onto `dst`. See the module doc for the rules. Memory: the
/// output plus at most two intermediate volumes (separable path) or one prefiltered copy of
/// the input (cubic, oblique path).
pub fn resample(
    src: ArrayView3<f32>,
    src_geom: &Geometry,
    dst: &Grid,
    opts: &ResampleOptions,
) -> Result<Array3<f32>, PreprocessError> {
    let (m, t) = index_map(src_geom, &dst.geometry)?;
    let src_shape = [src.dim().0, src.dim().1, src.dim().2];
    if src.is_empty() || dst.shape_kji.contains(&0) {
        return Ok(Array3::zeros(dst.shape_kji));
    }
    if is_diagonal(&m) {
        let interp_of = |a: usize| {
            if opts.nearest_axis == Some(a) {
                Interpolation::Nearest
            } else {
                opts.interpolation
            }
        };
        // Without cubic prefiltering, the i and j passes run fused per k slab (one small
        // per-slab buffer instead of a whole-volume intermediate), then the k pass.
        if (0..3).all(|a| interp_of(a) != Interpolation::Cubic) {
            let tp = |a: usize| {
                let ax = 2 - a;
                taps(
                    src_shape[ax],
                    dst.shape_kji[ax],
                    |o| t[a] + m[a][a] * o as f64,
                    interp_of(a),
                    opts.boundary,
                )
            };
            let ij = pass_ij(src, &tp(0), &tp(1), dst.shape_kji[2], dst.shape_kji[1]);
            return Ok(pass(ij.view(), 0, &tp(2), dst.shape_kji[0]));
        }
        // passes along i, then j, then k (ijk axis a = array axis 2 - a)
        let mut cur: Option<Array3<f32>> = None;
        for a in 0..3 {
            let ax = 2 - a;
            let interp = if opts.nearest_axis == Some(a) {
                Interpolation::Nearest
            } else {
                opts.interpolation
            };
            let n_in = src_shape[ax];
            let n_out = dst.shape_kji[ax];
            let tp = taps(
                n_in,
                n_out,
                |o| t[a] + m[a][a] * o as f64,
                interp,
                opts.boundary,
            );
            let next = match (&mut cur, interp) {
                (Some(c), Interpolation::Cubic) => {
                    prefilter_axis(c, ax);
                    pass(c.view(), ax, &tp, n_out)
                }
                (Some(c), _) => pass(c.view(), ax, &tp, n_out),
                (None, Interpolation::Cubic) => {
                    let mut c = src.to_owned();
                    prefilter_axis(&mut c, ax);
                    pass(c.view(), ax, &tp, n_out)
                }
                (None, _) => pass(src, ax, &tp, n_out),
            };
            cur = Some(next);
        }
        return Ok(cur.unwrap_or_else(|| Array3::zeros(dst.shape_kji)));
    }
    Ok(resample_general(src, &m, &t, dst.shape_kji, opts))
}

pub(crate) fn resample_general(
    src: ArrayView3<f32>,
    m: &[[f64; 3]; 3],
    t: &[f64; 3],
    shape: [usize; 3],
    opts: &ResampleOptions,
) -> Array3<f32> {
    let coef;
    let data = if opts.interpolation == Interpolation::Cubic {
        coef = prefilter(src);
        coef.view()
    } else {
        src
    };
    let n = [src.dim().2, src.dim().1, src.dim().0]; // (i, j, k)
    let mut out = Array3::<f32>::zeros(shape);
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(ok, mut slab)| {
            for oj in 0..shape[1] {
                for oi in 0..shape[2] {
                    let o = [oi as f64, oj as f64, ok as f64];
                    let mut c = [0.0; 3];
                    let mut inside = true;
                    for a in 0..3 {
                        c[a] = t[a] + m[a][0] * o[0] + m[a][1] * o[1] + m[a][2] * o[2];
                        if !(c[a] >= -0.5 && c[a] < n[a] as f64 - 0.5) {
                            inside = false;
                        }
                    }
                    if !inside {
                        match opts.boundary {
                            Boundary::Zero => continue,
                            Boundary::Clamp => {
                                for a in 0..3 {
                                    c[a] = c[a].clamp(0.0, n[a] as f64 - 1.0);
                                }
                            }
                        }
                    }
                    slab[[oj, oi]] = sample(data, &c, &n, opts.interpolation);
                }
            }
        });
    out
}

/// Interpolates at one continuous `(i, j, k)` index (inside the field).
fn sample(data: ArrayView3<f32>, c: &[f64; 3], n: &[usize; 3], interp: Interpolation) -> f32 {
    match interp {
        Interpolation::Nearest => {
            let q =
                [0, 1, 2].map(|a| ((c[a] + 0.5).floor() as i64).clamp(0, n[a] as i64 - 1) as usize);
            data[[q[2], q[1], q[0]]]
        }
        Interpolation::Linear => {
            let mut idx = [[0usize; 2]; 3];
            let mut w = [[0f64; 2]; 3];
            for a in 0..3 {
                let b = c[a].floor();
                let f = c[a] - b;
                let last = n[a] as i64 - 1;
                idx[a] = [
                    (b as i64).clamp(0, last) as usize,
                    (b as i64 + 1).clamp(0, last) as usize,
                ];
                w[a] = [1.0 - f, f];
            }
            let mut acc = 0.0;
            for dk in 0..2 {
                for dj in 0..2 {
                    for di in 0..2 {
                        acc += w[2][dk]
                            * w[1][dj]
                            * w[0][di]
                            * data[[idx[2][dk], idx[1][dj], idx[0][di]]] as f64;
                    }
                }
            }
            acc as f32
        }
        Interpolation::Cubic => {
            let mut idx = [[0usize; 4]; 3];
            let mut w = [[0f64; 4]; 3];
            for a in 0..3 {
                let b = c[a].floor();
                w[a] = cubic_weights(c[a] - b);
                for q in 0..4 {
                    idx[a][q] = mirror(b as i64 - 1 + q as i64, n[a]);
                }
            }
            let mut acc = 0.0;
            for dk in 0..4 {
                for dj in 0..4 {
                    let wkj = w[2][dk] * w[1][dj];
                    for di in 0..4 {
                        acc += wkj * w[0][di] * data[[idx[2][dk], idx[1][dj], idx[0][di]]] as f64;
                    }
                }
            }
            acc as f32
        }
    }
}

/// Convenience: a volume resampled to `new_spacing` (`(i, j, k)` mm) on the same field of
/// view ([`Grid::with_spacing`]: same origin and direction, `round(n * s / new_s)` voxels).
pub fn resample_volume(
    v: &medseg_volume::Volume<f32>,
    new_spacing: [f64; 3],
    opts: &ResampleOptions,
) -> Result<medseg_volume::Volume<f32>, PreprocessError> {
    let d = v.data.dim();
    let grid = Grid::new(v.geometry, [d.0, d.1, d.2]).with_spacing(new_spacing);
    let data = resample(v.data.view(), &v.geometry, &grid, opts)?;
    Ok(medseg_volume::Volume::new(data, grid.geometry))
}

/// Resamples a label map: [`LabelInterpolation::Nearest`] picks the nearest voxel (ITK);
/// [`LabelInterpolation::LinearOneHot`] resamples each class present as a 0/1 image (linear,
/// or nearest along `nearest_axis`) and takes the argmax (ties to the lower label, so
/// background wins a tie). Outside the field: 0.
pub fn resample_labels(
    src: ArrayView3<u16>,
    src_geom: &Geometry,
    dst: &Grid,
    interp: LabelInterpolation,
    nearest_axis: Option<usize>,
) -> Result<Array3<u16>, PreprocessError> {
    match interp {
        LabelInterpolation::Nearest => {
            // nearest on integer ids through f32 is exact for ids < 2^24 (u16 always is)
            let f = src.mapv(|v| v as f32);
            let opts = ResampleOptions {
                interpolation: Interpolation::Nearest,
                boundary: Boundary::Zero,
                nearest_axis: None,
            };
            Ok(resample(f.view(), src_geom, dst, &opts)?.mapv(|v| v as u16))
        }
        LabelInterpolation::LinearOneHot => {
            let mut present = vec![false; u16::MAX as usize + 1];
            src.iter().for_each(|&l| present[l as usize] = true);
            let opts = ResampleOptions {
                interpolation: Interpolation::Linear,
                boundary: Boundary::Zero,
                nearest_axis,
            };
            let mut best = Array3::<f32>::zeros(dst.shape_kji);
            let mut out = Array3::<u16>::zeros(dst.shape_kji);
            // background score: resampled "label == 0" (outside the field it is 0, and so is
            // every class: the argmax then gives 0)
            for c in 0..=u16::MAX {
                if !present[c as usize] {
                    continue;
                }
                let onehot = src.mapv(|v| (v == c) as u8 as f32);
                let r = resample(onehot.view(), src_geom, dst, &opts)?;
                ndarray::Zip::from(&mut out)
                    .and(&mut best)
                    .and(&r)
                    .par_for_each(|o, b, &v| {
                        if v > *b {
                            *b = v;
                            *o = c;
                        }
                    });
            }
            Ok(out)
        }
    }
}

/// `scipy.ndimage.zoom(x, factors, order, grid_mode=False)` to an explicit output shape:
/// output index `o` samples input coordinate `o (n_in - 1) / (n_out - 1)` (corner voxel
/// centres aligned), nearest = `floor(c + 0.5)`, cubic with mirror boundary. Used for the
/// simulated low-resolution augmentation and tested against scipy.
pub fn resize(src: ArrayView3<f32>, shape_kji: [usize; 3], interp: Interpolation) -> Array3<f32> {
    let mut cur = src.to_owned();
    for ax in [2usize, 1, 0] {
        let n_in = cur.shape()[ax];
        let n_out = shape_kji[ax];
        if n_in == n_out {
            continue;
        }
        let scale = if n_out > 1 {
            (n_in as f64 - 1.0) / (n_out as f64 - 1.0)
        } else {
            0.0
        };
        let tp = taps(n_in, n_out, |o| o as f64 * scale, interp, Boundary::Clamp);
        if interp == Interpolation::Cubic {
            prefilter_axis(&mut cur, ax);
        }
        cur = pass(cur.view(), ax, &tp, n_out);
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused separable path (axis-aligned grids) agrees with the general per-voxel path
    /// (which has no nearest-across-slices mode, so that mode is not compared here).
    #[test]
    fn separable_linear_matches_general_path() {
        let src = Array3::from_shape_fn((13, 29, 31), |(k, j, i)| {
            ((k * 7 + j * 3 + i) % 17) as f32 * 0.37 - (j as f32).sin()
        });
        let g = Geometry::with_spacing([0.7, 0.9, 2.5]);
        let grid = Grid::new(g, [13, 29, 31]).with_spacing([1.1, 0.6, 1.7]);
        for boundary in [Boundary::Zero, Boundary::Clamp] {
            for nearest_axis in [None] {
                let opts = ResampleOptions {
                    interpolation: Interpolation::Linear,
                    boundary,
                    nearest_axis,
                };
                let fast = resample(src.view(), &g, &grid, &opts).unwrap();
                let (m, t) = index_map(&g, &grid.geometry).unwrap();
                let general = resample_general(src.view(), &m, &t, grid.shape_kji, &opts);
                assert_eq!(fast.shape(), general.shape());
                for (a, b) in fast.iter().zip(general.iter()) {
                    assert!(
                        (a - b).abs() < 1e-4,
                        "{a} vs {b} ({boundary:?}, {nearest_axis:?})"
                    );
                }
            }
        }
    }

    #[test]
    fn identity_grid_is_exact_for_every_kernel() {
        let data = Array3::from_shape_fn((4, 5, 6), |(k, j, i)| (k * 31 + j * 7 + i * i) as f32);
        let g = Geometry::with_spacing([0.7, 1.1, 2.0]);
        let grid = Grid::new(g, [4, 5, 6]);
        for interp in [
            Interpolation::Nearest,
            Interpolation::Linear,
            Interpolation::Cubic,
        ] {
            let opts = ResampleOptions {
                interpolation: interp,
                ..Default::default()
            };
            let r = resample(data.view(), &g, &grid, &opts).unwrap();
            let d = r
                .iter()
                .zip(data.iter())
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(d < 1e-3, "{interp:?}: {d}");
        }
    }

    #[test]
    fn size_rule_and_separate_z() {
        let g = Geometry::with_spacing([0.9, 1.1, 2.5]);
        let grid = Grid::new(g, [17, 29, 37]).with_spacing([1.5; 3]);
        assert_eq!(grid.shape_kji, [28, 21, 22]);
        assert_eq!(separate_z_axis([0.7, 0.7, 5.0], [1.0; 3], 3.0), Some(2));
        assert_eq!(separate_z_axis([1.0, 1.0, 2.0], [1.0; 3], 3.0), None);
        assert_eq!(
            separate_z_axis([1.0, 1.0, 1.0], [1.0, 4.0, 1.0], 3.0),
            Some(1)
        );
    }

    #[test]
    fn one_hot_keeps_labels_on_identity() {
        let l = Array3::from_shape_fn((3, 4, 5), |(k, j, i)| ((k + j + i) % 3) as u16);
        let g = Geometry::default();
        let grid = Grid::new(g, [3, 4, 5]);
        let r =
            resample_labels(l.view(), &g, &grid, LabelInterpolation::LinearOneHot, None).unwrap();
        assert_eq!(r, l);
    }
}
