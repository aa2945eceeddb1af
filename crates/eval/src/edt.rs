//! Exact Euclidean distance transform with anisotropic spacing.
//!
//! Felzenszwalb & Huttenlocher (2012), "Distance Transforms of Sampled Functions": the squared
//! EDT separates into one 1D lower-envelope-of-parabolas pass per axis, each `O(n)` per line.
//! Lines of one pass are independent, so every pass runs over lines in parallel (rayon).
//!
//! The result is exact: every output is `Σ_a (Δ_a · s_a)²` for the nearest feature voxel, with
//! `Δ_a` the integer index difference along axis `a` and `s_a` the spacing in mm.

use ndarray::{Array3, ArrayView3, ArrayViewMut1, Axis, Zip};
use rayon::prelude::*;

/// Squared distance (mm²) from every voxel to the nearest voxel where `features` is true.
///
/// `spacing_kji` is the voxel size in array-axis order `[k, j, i]` (mm). A pass along an axis of
/// extent 1 is skipped, so a single-slice array is transformed in 2D. Without any feature voxel
/// every output is `f64::INFINITY`.
pub fn squared_edt(features: ArrayView3<bool>, spacing_kji: [f64; 3]) -> Array3<f64> {
    edt_passes(features, None, spacing_kji)
}

/// [`squared_edt`] where only the voxels set in `query` (same shape) are needed: the last pass
/// skips every line holding no query voxel, so other voxels of those lines keep intermediate
/// values. Exact at every query voxel.
pub fn squared_edt_at(
    features: ArrayView3<bool>,
    query: ArrayView3<bool>,
    spacing_kji: [f64; 3],
) -> Array3<f64> {
    edt_passes(features, Some(query), spacing_kji)
}

/// The separable passes. The fastest axis goes first: its lines are contiguous, and after it
/// most lines of the later passes already hold finite values. The first pass sees only 0/inf
/// values, so it is a plain nearest-feature sweep in both directions (the same values the
/// parabola envelope would give, far cheaper); the others are Felzenszwalb–Huttenlocher
/// envelopes. With `query`, the last pass skips lines that hold no query voxel.
fn edt_passes(
    features: ArrayView3<bool>,
    query: Option<ArrayView3<bool>>,
    spacing_kji: [f64; 3],
) -> Array3<f64> {
    let axes: Vec<usize> = [2usize, 1, 0]
        .into_iter()
        .filter(|&a| features.len_of(Axis(a)) > 1)
        .collect();
    let Some(&first) = axes.first() else {
        return features.map(|&f| if f { 0.0 } else { f64::INFINITY });
    };
    let mut out = Array3::from_elem(features.raw_dim(), f64::INFINITY);
    let s = spacing_kji[first];
    Zip::from(out.lanes_mut(Axis(first)))
        .and(features.lanes(Axis(first)))
        .into_par_iter()
        .for_each(|(mut o, f)| {
            let n = f.len();
            let mut last: Option<usize> = None;
            for q in 0..n {
                if f[q] {
                    last = Some(q);
                }
                if let Some(p) = last {
                    let d = (q as f64 - p as f64) * s;
                    o[q] = d * d;
                }
            }
            let mut next: Option<usize> = None;
            for q in (0..n).rev() {
                if f[q] {
                    next = Some(q);
                }
                if let Some(p) = next {
                    let d = (q as f64 - p as f64) * s;
                    if d * d < o[q] {
                        o[q] = d * d;
                    }
                }
            }
        });
    for (n, &axis) in axes.iter().enumerate().skip(1) {
        match query {
            Some(q) if n + 1 == axes.len() => {
                transform_axis_where(&mut out, q, axis, spacing_kji[axis])
            }
            _ => transform_axis(&mut out, axis, spacing_kji[axis]),
        }
    }
    out
}

fn transform_axis_where(out: &mut Array3<f64>, query: ArrayView3<bool>, axis: usize, spacing: f64) {
    Zip::from(out.lanes_mut(Axis(axis)))
        .and(query.lanes(Axis(axis)))
        .into_par_iter()
        .for_each_init(Scratch::default, |s, (lane, q)| {
            if q.iter().any(|&x| x) {
                s.transform_lane(lane, spacing);
            }
        });
}

/// Distance (mm) from every voxel to the nearest feature voxel; see [`squared_edt`].
pub fn edt(features: ArrayView3<bool>, spacing_kji: [f64; 3]) -> Array3<f64> {
    let mut d = squared_edt(features, spacing_kji);
    d.par_mapv_inplace(f64::sqrt);
    d
}

/// Scratch buffers of one worker, reused across the lines it processes.
#[derive(Default)]
struct Scratch {
    f: Vec<f64>,
    d: Vec<f64>,
    v: Vec<usize>,
    z: Vec<f64>,
}

impl Scratch {
    /// One 1D pass over `lane` in place (see [`lower_envelope_1d`]). A line without any finite
    /// value stays infinite: the envelope is skipped entirely.
    fn transform_lane(&mut self, mut lane: ArrayViewMut1<f64>, spacing: f64) {
        if lane.iter().all(|x| x.is_infinite()) {
            return;
        }
        self.f.clear();
        self.f.extend(lane.iter().copied());
        self.d.resize(self.f.len(), 0.0);
        lower_envelope_1d(&self.f, spacing, &mut self.d, &mut self.v, &mut self.z);
        for (o, &d) in lane.iter_mut().zip(self.d.iter()) {
            *o = d;
        }
    }
}

fn transform_axis(out: &mut Array3<f64>, axis: usize, spacing: f64) {
    Zip::from(out.lanes_mut(Axis(axis)))
        .into_par_iter()
        .for_each_init(Scratch::default, |s, (lane,)| {
            s.transform_lane(lane, spacing)
        });
}

/// One 1D pass: `d[q] = min_p ((q - p)·s)² + f[p]` over the finite `f[p]`.
///
/// `v` holds the parabolas of the lower envelope, `z[j]` the position (in mm) where parabola
/// `v[j]` starts to be the lowest.
pub(crate) fn lower_envelope_1d(
    f: &[f64],
    s: f64,
    d: &mut [f64],
    v: &mut Vec<usize>,
    z: &mut Vec<f64>,
) {
    v.clear();
    z.clear();
    for (q, &fq) in f.iter().enumerate() {
        if !fq.is_finite() {
            continue;
        }
        let xq = q as f64 * s;
        loop {
            let Some(&p) = v.last() else {
                v.push(q);
                z.push(f64::NEG_INFINITY);
                break;
            };
            let xp = p as f64 * s;
            // Intersection of the parabolas rooted at p and q.
            let sct = ((fq + xq * xq) - (f[p] + xp * xp)) / (2.0 * (xq - xp));
            if sct <= *z.last().unwrap_or(&f64::NEG_INFINITY) {
                v.pop();
                z.pop();
            } else {
                v.push(q);
                z.push(sct);
                break;
            }
        }
    }
    if v.is_empty() {
        d.iter_mut().for_each(|x| *x = f64::INFINITY);
        return;
    }
    let mut j = 0usize;
    for (q, dq) in d.iter_mut().enumerate() {
        let xq = q as f64 * s;
        while j + 1 < v.len() && z[j + 1] < xq {
            j += 1;
        }
        // Computed from the integer offset, so the value is exactly (Δ·s)² + f.
        let dx = (q as f64 - v[j] as f64) * s;
        *dq = dx * dx + f[v[j]];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    /// Tiny deterministic generator (SplitMix64) so the test needs no RNG crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn brute_force(features: &Array3<bool>, sp: [f64; 3]) -> Array3<f64> {
        let pts: Vec<_> = features
            .indexed_iter()
            .filter(|(_, f)| **f)
            .map(|(ix, _)| ix)
            .collect();
        Array3::from_shape_fn(features.dim(), |(k, j, i)| {
            pts.iter()
                .map(|&(a, b, c)| {
                    let dk = (k as f64 - a as f64) * sp[0];
                    let dj = (j as f64 - b as f64) * sp[1];
                    let di = (i as f64 - c as f64) * sp[2];
                    dk * dk + dj * dj + di * di
                })
                .fold(f64::INFINITY, f64::min)
        })
    }

    #[test]
    fn matches_brute_force_on_random_masks_2d_and_3d() {
        let mut rng = Rng(42);
        let shapes = [(1, 17, 23), (1, 1, 9), (7, 11, 13), (9, 5, 16), (12, 12, 3)];
        let spacings = [
            [1.0, 1.0, 1.0],
            [2.5, 0.8, 0.8],
            [1.75, 1.25, 0.75],
            [0.3, 3.0, 1.1],
        ];
        let mut n = 0;
        for &shape in &shapes {
            for sp in spacings {
                for density in [0.002, 0.02, 0.2, 0.7] {
                    let f = Array3::from_shape_fn(shape, |_| rng.unit() < density);
                    let got = squared_edt(f.view(), sp);
                    let want = brute_force(&f, sp);
                    for (g, w) in got.iter().zip(want.iter()) {
                        if w.is_infinite() {
                            assert!(g.is_infinite());
                        } else {
                            assert!((g - w).abs() <= 1e-9 * w.max(1.0), "{g} vs {w}");
                        }
                    }
                    n += 1;
                }
            }
        }
        assert_eq!(n, 80);
    }

    #[test]
    fn no_features_gives_infinity_and_single_feature_is_exact() {
        let f = Array3::from_elem((3, 4, 5), false);
        assert!(edt(f.view(), [1.0; 3]).iter().all(|x| x.is_infinite()));
        let mut f = Array3::from_elem((3, 4, 5), false);
        f[[0, 0, 0]] = true;
        let d = edt(f.view(), [2.0, 1.5, 0.5]);
        assert_eq!(d[[2, 3, 4]], (16.0f64 + 20.25 + 4.0).sqrt());
        assert_eq!(d[[0, 0, 2]], 1.0);
    }
}
