//! nnU-Net's `resample_data_or_seg_to_shape` for images and logits (is_seg = false), exactly:
//! `skimage.transform.resize(order, mode='edge', anti_aliasing=False)` = `scipy.ndimage.zoom`
//! with `grid_mode=True`, mode 'nearest', then clipped to the input's range; the separate-z
//! variant resizes each slice in-plane (clipped per slice) and picks slices with order 0.
//!
//! Sampling position of output index `o` along an axis of `n_in -> n_out` voxels:
//! `x = (o + 0.5) n_in / n_out - 0.5`. Order 3 pads 12 edge samples on every side, runs the
//! cubic B-spline prefilter with mirror initialization (scipy's `ni_splines.c`), and evaluates
//! the spline at `x + 12` with knot indices clamped to the padded array. Everything in f64;
//! separable passes, parallel over lanes.

use ndarray::{Array3, ArrayView3, Axis, Zip};

/// scipy's padding for order > 1 with mode 'nearest' (`_prepad_for_spline_filter`).
const SPLINE_PAD: usize = 12;
/// nnunetv2 `ANISO_THRESHOLD`.
const ANISO_THRESHOLD: f64 = 3.0;

/// `determine_do_sep_z_and_axis` with `force_separate_z`: the axis to treat separately, if any.
pub fn separate_z_axis(current: [f64; 3], new: [f64; 3], force: Option<bool>) -> Option<usize> {
    let lowres = |sp: [f64; 3]| {
        let max = sp.iter().cloned().fold(f64::MIN, f64::max);
        let axes: Vec<usize> = (0..3).filter(|&a| max / sp[a] == 1.0).collect();
        (axes.len() == 1).then(|| axes[0])
    };
    let ratio = |sp: [f64; 3]| {
        let max = sp.iter().cloned().fold(f64::MIN, f64::max);
        let min = sp.iter().cloned().fold(f64::MAX, f64::min);
        max / min
    };
    match force {
        Some(true) => lowres(current),
        Some(false) => None,
        None if ratio(current) > ANISO_THRESHOLD => lowres(current),
        None if ratio(new) > ANISO_THRESHOLD => lowres(new),
        None => None,
    }
}

/// `resample_data_or_seg_to_shape` for one channel: `x` (f64) to `new_shape`.
pub fn resample_channel(
    x: ArrayView3<f64>,
    new_shape: [usize; 3],
    current: [f64; 3],
    new: [f64; 3],
    order: usize,
    order_z: usize,
    force_separate_z: Option<bool>,
) -> Array3<f64> {
    if x.dim() == (new_shape[0], new_shape[1], new_shape[2]) {
        return x.to_owned();
    }
    match separate_z_axis(current, new, force_separate_z) {
        None => resize(x, new_shape, order),
        Some(axis) => resize_separate_z(x, new_shape, axis, order, order_z),
    }
}

/// `skimage.transform.resize(x, new_shape, order, mode='edge', anti_aliasing=False)`.
pub fn resize(x: ArrayView3<f64>, new_shape: [usize; 3], order: usize) -> Array3<f64> {
    let (lo, hi) = min_max(x);
    let mut y = interpolate(x, new_shape, order, &[0, 1, 2]);
    y.par_mapv_inplace(|v| v.clamp(lo, hi));
    y
}

/// In-plane resize of every slice along `axis` (each clipped to its own range), then slices
/// picked along `axis` by order 0 (`map_coordinates(order=0, mode='nearest')`: `floor(x + 0.5)`).
fn resize_separate_z(
    x: ArrayView3<f64>,
    new_shape: [usize; 3],
    axis: usize,
    order: usize,
    order_z: usize,
) -> Array3<f64> {
    let mut plane_shape = new_shape;
    plane_shape[axis] = x.len_of(Axis(axis));
    let inplane: Vec<usize> = (0..3).filter(|&a| a != axis).collect();
    let mut y = interpolate(x, plane_shape, order, &inplane);
    Zip::from(y.axis_iter_mut(Axis(axis)))
        .and(x.axis_iter(Axis(axis)))
        .par_for_each(|mut out, inp| {
            let (lo, hi) = inp
                .iter()
                .fold((f64::MAX, f64::MIN), |(l, h), &v| (l.min(v), h.max(v)));
            out.mapv_inplace(|v| v.clamp(lo, hi));
        });
    let (n_in, n_out) = (x.len_of(Axis(axis)), new_shape[axis]);
    if n_in == n_out {
        return y;
    }
    // nnU-Net resamples the slice axis with order_z (0 in every plan it writes); other orders
    // would need scipy's per-axis spline here.
    debug_assert_eq!(order_z, 0, "only order_z = 0 is implemented");
    let picks: Vec<usize> = (0..n_out)
        .map(|o| {
            let c = (n_in as f64 / n_out as f64) * (o as f64 + 0.5) - 0.5;
            ((c + 0.5).floor().max(0.0) as usize).min(n_in - 1)
        })
        .collect();
    y.select(Axis(axis), &picks)
}

fn min_max(x: ArrayView3<f64>) -> (f64, f64) {
    x.iter()
        .fold((f64::MAX, f64::MIN), |(l, h), &v| (l.min(v), h.max(v)))
}

/// Separable zoom of the listed axes to `new_shape` (others must keep their size).
fn interpolate(
    x: ArrayView3<f64>,
    new_shape: [usize; 3],
    order: usize,
    axes: &[usize],
) -> Array3<f64> {
    let mut y = match order {
        3 => {
            let mut p = pad_edge(x, axes, SPLINE_PAD);
            for &a in axes {
                prefilter_axis(&mut p, a);
            }
            p
        }
        _ => x.to_owned(),
    };
    for &a in axes {
        let n_in = x.len_of(Axis(a));
        y = match order {
            0 => nearest_axis(y.view(), a, n_in, new_shape[a]),
            1 => linear_axis(y.view(), a, n_in, new_shape[a]),
            _ => cubic_axis(y.view(), a, n_in, new_shape[a], SPLINE_PAD),
        };
    }
    y
}

/// `np.pad(x, pad, mode='edge')` on the listed axes.
fn pad_edge(x: ArrayView3<f64>, axes: &[usize], pad: usize) -> Array3<f64> {
    let mut shape = [x.dim().0, x.dim().1, x.dim().2];
    for &a in axes {
        shape[a] += 2 * pad;
    }
    let offset = |a: usize| if axes.contains(&a) { pad } else { 0 };
    let n = [x.dim().0, x.dim().1, x.dim().2];
    Array3::from_shape_fn(shape, |(i, j, k)| {
        let idx = [i, j, k];
        let src: [usize; 3] = std::array::from_fn(|a| {
            (idx[a] as i64 - offset(a) as i64).clamp(0, n[a] as i64 - 1) as usize
        });
        x[src]
    })
}

/// scipy's cubic B-spline prefilter along `axis` (one pole, mirror initialization).
fn prefilter_axis(y: &mut Array3<f64>, axis: usize) {
    let n = y.len_of(Axis(axis));
    if n < 2 {
        return;
    }
    Zip::from(y.lanes_mut(Axis(axis))).par_for_each(|mut lane| {
        let mut c: Vec<f64> = lane.iter().copied().collect();
        prefilter_line(&mut c);
        for (o, v) in lane.iter_mut().zip(c) {
            *o = v;
        }
    });
}

// Index loops on purpose: they mirror scipy's C loops line for line.
#[allow(clippy::needless_range_loop)]
/// `apply_filter` of scipy/ndimage/src/ni_splines.c for order 3 (pole sqrt(3) - 2), with
/// `_init_causal_mirror` / `_init_anticausal_mirror`.
fn prefilter_line(c: &mut [f64]) {
    let z = 3f64.sqrt() - 2.0;
    let n = c.len();
    let gain = (1.0 - z) * (1.0 - 1.0 / z);
    for v in c.iter_mut() {
        *v *= gain;
    }
    let z_n_1 = z.powi(n as i32 - 1);
    let mut c0 = c[0] + z_n_1 * c[n - 1];
    let mut z_i = z;
    for i in 1..n - 1 {
        c0 += z_i * (c[i] + z_n_1 * c[n - 1 - i]);
        z_i *= z;
    }
    c[0] = c0 / (1.0 - z_n_1 * z_n_1);
    for i in 1..n {
        c[i] += z * c[i - 1];
    }
    c[n - 1] = (z * c[n - 2] + c[n - 1]) * z / (z * z - 1.0);
    for i in (0..n - 1).rev() {
        c[i] = z * (c[i + 1] - c[i]);
    }
}

/// Sampling position of every output index (grid mode, pixel-area alignment).
fn coords(n_in: usize, n_out: usize) -> impl Iterator<Item = f64> {
    let scale = n_in as f64 / n_out as f64;
    (0..n_out).map(move |o| (o as f64 + 0.5) * scale - 0.5)
}

/// Applies `taps[o] = [(index, weight)...]` along `axis`.
fn apply_taps(y: ArrayView3<f64>, axis: usize, taps: &[Vec<(usize, f64)>]) -> Array3<f64> {
    let mut shape = [y.dim().0, y.dim().1, y.dim().2];
    shape[axis] = taps.len();
    let mut out = Array3::<f64>::zeros(shape);
    Zip::from(out.lanes_mut(Axis(axis)))
        .and(y.lanes(Axis(axis)))
        .par_for_each(|mut o, i| {
            for (dst, t) in o.iter_mut().zip(taps) {
                let mut acc = 0.0;
                for &(k, w) in t {
                    acc += i[k] * w;
                }
                *dst = acc;
            }
        });
    out
}

fn linear_axis(y: ArrayView3<f64>, axis: usize, n_in: usize, n_out: usize) -> Array3<f64> {
    let last = n_in as i64 - 1;
    let taps: Vec<Vec<(usize, f64)>> = coords(n_in, n_out)
        .map(|c| {
            let f = c.floor();
            let t = c - f;
            let i0 = (f as i64).clamp(0, last) as usize;
            let i1 = (f as i64 + 1).clamp(0, last) as usize;
            vec![(i0, 1.0 - t), (i1, t)]
        })
        .collect();
    apply_taps(y, axis, &taps)
}

fn nearest_axis(y: ArrayView3<f64>, axis: usize, n_in: usize, n_out: usize) -> Array3<f64> {
    let taps: Vec<Vec<(usize, f64)>> = coords(n_in, n_out)
        .map(|c| vec![(((c + 0.5).floor().max(0.0) as usize).min(n_in - 1), 1.0)])
        .collect();
    apply_taps(y, axis, &taps)
}

/// Cubic B-spline evaluation along `axis` of a prefiltered array padded by `pad`.
fn cubic_axis(
    y: ArrayView3<f64>,
    axis: usize,
    n_in: usize,
    n_out: usize,
    pad: usize,
) -> Array3<f64> {
    let last = y.len_of(Axis(axis)) as i64 - 1;
    let taps: Vec<Vec<(usize, f64)>> = coords(n_in, n_out)
        .map(|c| {
            let x = c + pad as f64;
            let f = x.floor();
            let t = x - f;
            let z = 1.0 - t;
            let w0 = z * z * z / 6.0;
            let w1 = (t * t * (t - 2.0) * 3.0 + 4.0) / 6.0;
            let w2 = (z * z * (z - 2.0) * 3.0 + 4.0) / 6.0;
            let w3 = 1.0 - w0 - w1 - w2;
            let start = f as i64 - 1;
            [w0, w1, w2, w3]
                .into_iter()
                .enumerate()
                .map(|(k, w)| ((start + k as i64).clamp(0, last) as usize, w))
                .collect()
        })
        .collect();
    apply_taps(y, axis, &taps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn same_shape_is_untouched() {
        let x = Array3::from_shape_fn((3, 4, 5), |(i, j, k)| (i * 20 + j * 5 + k) as f64);
        let y = resample_channel(x.view(), [3, 4, 5], [1.0; 3], [2.0; 3], 3, 0, None);
        assert_eq!(x, y);
    }

    #[test]
    fn cubic_reproduces_a_linear_ramp_inside_and_clips() {
        // B-splines reproduce linear functions away from the (edge-padded) border.
        let x = Array3::from_shape_fn((1, 1, 40), |(_, _, k)| k as f64);
        let y = resize(x.view(), [1, 1, 80], 3);
        for o in 30..50 {
            let expect = (o as f64 + 0.5) * 0.5 - 0.5;
            assert!(
                (y[[0, 0, o]] - expect).abs() < 1e-6,
                "{o}: {}",
                y[[0, 0, o]]
            );
        }
        assert!(y.iter().all(|&v| (0.0..=39.0).contains(&v)));
    }

    #[test]
    fn separate_z_rule_follows_nnunet() {
        assert_eq!(
            separate_z_axis([4.4, 0.7, 0.9], [3.5, 0.79, 0.82], None),
            Some(0)
        );
        assert_eq!(
            separate_z_axis([1.0, 1.0, 1.0], [1.0, 1.0, 1.0], None),
            None
        );
        // the largest spacing tied on two axes: not separate
        assert_eq!(separate_z_axis([4.0, 4.0, 1.0], [1.0; 3], None), None);
        // strict >: a ratio of exactly 3 is not anisotropic
        assert_eq!(
            separate_z_axis([3.0, 1.0, 1.0], [3.0, 1.0, 1.0], None),
            None
        );
    }
}
