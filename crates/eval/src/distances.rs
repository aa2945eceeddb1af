//! Surface distances between two non-empty masks and the statistics built on them.
//!
//! Distances are exact Euclidean distances in mm between voxel centres (index × spacing), from
//! each surface voxel of one mask to the nearest surface voxel of the other (see
//! [`crate::surface`]). They come from one [`crate::edt`] per direction, restricted to the
//! bounding box of both masks: the surfaces lie inside it and the squared EDT separates over a
//! box, so the cropped transform is exact for every voxel in it.

use crate::edt::squared_edt_at;
use crate::surface::surface;
use ndarray::{Array3, ArrayView3, Zip};

/// Directed surface distances (mm): `pred_to_gt[n]` for the n-th pred surface voxel, and back.
#[derive(Debug, Clone, PartialEq)]
pub struct SurfaceDistances {
    pub pred_to_gt: Vec<f64>,
    pub gt_to_pred: Vec<f64>,
}

/// The surface-distance metrics of one mask pair (all in mm except `nsd`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SurfaceStats {
    /// max(max d_pg, max d_gp)
    pub hd: f64,
    /// max(q95(d_pg), q95(d_gp)), linear-interpolation percentile (MONAI, Metrics Reloaded).
    pub hd95: f64,
    /// q95 of both directions pooled (MedPy's `hd95`), for comparison with older papers.
    pub hd95_pooled: f64,
    /// Mean of both directions pooled (MONAI `SurfaceDistanceMetric(symmetric=True)`, MedPy 0.5 `assd`).
    pub assd: f64,
    /// Mean of the two directed means.
    pub masd: f64,
    /// Fraction of surface voxels (both directions) within `tolerance_mm`, inclusive.
    pub nsd: f64,
    pub n_surface_pred: usize,
    pub n_surface_gt: usize,
}

/// Surface distances of `pred` and `gt` (same shape, `[k, j, i]`), or `None` when either mask
/// is empty (the empty-mask conventions are applied by the caller).
pub fn surface_distances(
    pred: ArrayView3<bool>,
    gt: ArrayView3<bool>,
    spacing_kji: [f64; 3],
    two_d: bool,
) -> Option<SurfaceDistances> {
    let bbox = union_bbox(pred, gt)?;
    let crop = |m: ArrayView3<bool>| -> Array3<bool> {
        m.slice(ndarray::s![
            bbox[0]..bbox[1],
            bbox[2]..bbox[3],
            bbox[4]..bbox[5]
        ])
        .to_owned()
    };
    let full = bbox == [0, pred.dim().0, 0, pred.dim().1, 0, pred.dim().2];
    let (p, g) = if full {
        (pred.to_owned(), gt.to_owned())
    } else {
        (crop(pred), crop(gt))
    };
    if !p.iter().any(|&x| x) || !g.iter().any(|&x| x) {
        return None;
    }
    let (sp, sg) = rayon::join(|| surface(p.view(), two_d), || surface(g.view(), two_d));
    let (dist_to_g, dist_to_p) = rayon::join(
        || squared_edt_at(sg.view(), sp.view(), spacing_kji),
        || squared_edt_at(sp.view(), sg.view(), spacing_kji),
    );
    // Plane by plane in parallel, concatenated in order: the same list as a sequential scan.
    let sample = |surf: &Array3<bool>, d2: &Array3<f64>| -> Vec<f64> {
        use rayon::prelude::*;
        let planes: Vec<Vec<f64>> = surf
            .axis_iter(ndarray::Axis(0))
            .into_par_iter()
            .zip(d2.axis_iter(ndarray::Axis(0)).into_par_iter())
            .map(|(s, d)| {
                let mut out = Vec::new();
                Zip::from(s).and(d).for_each(|&s, &d| {
                    if s {
                        out.push(d.sqrt());
                    }
                });
                out
            })
            .collect();
        planes.concat()
    };
    Some(SurfaceDistances {
        pred_to_gt: sample(&sp, &dist_to_g),
        gt_to_pred: sample(&sg, &dist_to_p),
    })
}

/// A half-open bounding box `[k0, k1, j0, j1, i0, i1]` that holds no voxel yet.
pub(crate) const EMPTY_BBOX: [usize; 6] = [usize::MAX, 0, usize::MAX, 0, usize::MAX, 0];

/// Grows the half-open bounding box `bb` to hold voxel `(k, j, i)`.
pub(crate) fn include_voxel(bb: &mut [usize; 6], k: usize, j: usize, i: usize) {
    bb[0] = bb[0].min(k);
    bb[1] = bb[1].max(k + 1);
    bb[2] = bb[2].min(j);
    bb[3] = bb[3].max(j + 1);
    bb[4] = bb[4].min(i);
    bb[5] = bb[5].max(i + 1);
}

/// Half-open bounding box `[k0, k1, j0, j1, i0, i1]` of `a | b`, or `None` when both are empty.
fn union_bbox(a: ArrayView3<bool>, b: ArrayView3<bool>) -> Option<[usize; 6]> {
    let mut bb = EMPTY_BBOX;
    Zip::indexed(a).and(b).for_each(|(k, j, i), &x, &y| {
        if x || y {
            include_voxel(&mut bb, k, j, i);
        }
    });
    (bb != EMPTY_BBOX).then_some(bb)
}

impl SurfaceDistances {
    /// The statistics; `tolerance_mm` is the NSD tolerance (inclusive). Both lists are non-empty
    /// by construction.
    pub fn stats(&self, tolerance_mm: f64) -> SurfaceStats {
        let (a, b) = (&self.pred_to_gt, &self.gt_to_pred);
        let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        let sum = |v: &[f64]| v.iter().sum::<f64>();
        let within = |v: &[f64]| v.iter().filter(|&&d| d <= tolerance_mm).count();
        let mut pooled: Vec<f64> = a.iter().chain(b.iter()).copied().collect();
        let n = pooled.len() as f64;
        SurfaceStats {
            hd: max(a).max(max(b)),
            hd95: percentile(&mut a.clone(), 95.0).max(percentile(&mut b.clone(), 95.0)),
            hd95_pooled: percentile(&mut pooled, 95.0),
            assd: (sum(a) + sum(b)) / n,
            masd: 0.5 * (sum(a) / a.len() as f64 + sum(b) / b.len() as f64),
            nsd: (within(a) + within(b)) as f64 / n,
            n_surface_pred: a.len(),
            n_surface_gt: b.len(),
        }
    }
}

/// The `q`-th percentile (0..=100) with linear interpolation between the two closest ranks:
/// numpy's default `method="linear"`, identical to `torch.quantile`. Reorders `v`; `O(n)`.
/// NaN for an empty slice.
pub fn percentile(v: &mut [f64], q: f64) -> f64 {
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    let h = (q / 100.0) * (n - 1) as f64;
    let lo = (h.floor() as usize).min(n - 1);
    let t = h - lo as f64;
    let (_, &mut a, rest) = v.select_nth_unstable_by(lo, f64::total_cmp);
    if lo + 1 >= n || t == 0.0 {
        return a;
    }
    let b = rest.iter().copied().fold(f64::INFINITY, f64::min);
    // numpy's `_lerp`: interpolate from the nearer end for t >= 0.5 (monotone, bit-compatible).
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn percentile_matches_numpy_linear() {
        // np.percentile([1, 2, 3, 4, 10], 95) == 8.8 ; np.percentile([0, 1], 95) == 0.95
        assert!((percentile(&mut [10.0, 2.0, 3.0, 1.0, 4.0], 95.0) - 8.8).abs() < 1e-12);
        assert!((percentile(&mut [1.0, 0.0], 95.0) - 0.95).abs() < 1e-15);
        assert_eq!(percentile(&mut [3.0], 95.0), 3.0);
        assert_eq!(percentile(&mut [5.0, 1.0, 3.0], 50.0), 3.0);
    }

    #[test]
    fn shifted_cube_distances_by_hand() {
        // Two 3x3x3 cubes shifted by one voxel along i with spacing 2 mm along i.
        let mut p = Array3::from_elem((5, 5, 7), false);
        let mut g = p.clone();
        p.slice_mut(ndarray::s![1..4, 1..4, 1..4]).fill(true);
        g.slice_mut(ndarray::s![1..4, 1..4, 2..5]).fill(true);
        let d = surface_distances(p.view(), g.view(), [1.0, 1.0, 2.0], false).unwrap();
        // 26 surface voxels each; the pred face at i=1 is 2 mm from gt; the pred voxel at gt's
        // core (2,2,3) is 1 mm (along k) from gt's surface; the other 16 lie on gt's surface.
        assert_eq!(d.pred_to_gt.len(), 26);
        assert_eq!(d.pred_to_gt.iter().filter(|&&x| x == 2.0).count(), 9);
        assert_eq!(d.pred_to_gt.iter().filter(|&&x| x == 1.0).count(), 1);
        assert_eq!(d.pred_to_gt.iter().filter(|&&x| x == 0.0).count(), 16);
        let s = d.stats(1.0);
        assert_eq!(s.hd, 2.0);
        assert!((s.assd - 38.0 / 52.0).abs() < 1e-12);
        assert!((s.nsd - 34.0 / 52.0).abs() < 1e-12);
    }

    #[test]
    fn empty_mask_gives_none() {
        let p = Array3::from_elem((2, 3, 4), false);
        let mut g = p.clone();
        assert!(surface_distances(p.view(), g.view(), [1.0; 3], false).is_none());
        g[[0, 0, 0]] = true;
        assert!(surface_distances(p.view(), g.view(), [1.0; 3], false).is_none());
    }
}
