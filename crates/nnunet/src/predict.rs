//! nnU-Net's sliding-window predictor (`predict_sliding_window_return_logits`), float16 where
//! nnU-Net is float16: centred zero padding to the patch, tiles at step 0.5 of the patch, the
//! Gaussian importance map (sigma 1/8, scaled to 10, cast to float16), mirroring TTA averaged in
//! float32, the logit and weight sums rounded to float16 after every tile, float16 division,
//! folds averaged as float16 logits. Values are held in f32 arrays but every one that nnU-Net
//! keeps in float16 is rounded to a float16 value.

use crate::network::NnUnetNetwork;
use burn::tensor::{Device, Tensor, TensorData};
use half::f16;
use ndarray::{Array3, Array4, ArrayView4, Axis, s};

/// Rounds to the nearest float16 value (as torch's float32 -> float16 cast).
#[inline]
fn r16(v: f32) -> f32 {
    f16::from_f32(v).to_f32()
}

/// The largest number of tiles (TTA variants) run as one batch; fewer for big patches so that
/// activations stay small.
fn batch_for(patch_voxels: usize) -> usize {
    (2_000_000 / patch_voxels.max(1)).clamp(1, 8)
}

/// `compute_steps_for_sliding_window(image_size, tile_size, 0.5)` for one axis.
pub fn tile_origins(size: usize, tile: usize, step: f64) -> Vec<usize> {
    if size <= tile {
        return vec![0];
    }
    let n = ((size - tile) as f64 / (tile as f64 * step)).ceil() as usize + 1;
    let stride = (size - tile) as f64 / (n - 1) as f64;
    (0..n)
        .map(|t| (stride * t as f64).round_ties_even() as usize)
        .collect()
}

/// `compute_gaussian(patch, 1/8, 10)` as float16 values, underflowed zeros replaced by the
/// smallest nonzero value; `[d, h, w]` (2D: d = 1).
pub fn gaussian_f16(patch: [usize; 3], dims: usize) -> Array3<f32> {
    let axis_weights = |k: usize, active: bool| -> Vec<f64> {
        let sigma = k as f64 / 8.0;
        (0..k)
            .map(|i| {
                if !active {
                    return 1.0;
                }
                let t = i as f64 - (k / 2) as f64;
                (-t * t / (2.0 * sigma * sigma)).exp()
            })
            .collect()
    };
    let w: Vec<Vec<f64>> = (0..3)
        .map(|a| axis_weights(patch[a], dims == 3 || a > 0))
        .collect();
    let mut g = Array3::from_shape_fn((patch[0], patch[1], patch[2]), |(i, j, k)| {
        r16((w[0][i] * w[1][j] * w[2][k] * 10.0) as f32)
    });
    let min = g
        .iter()
        .copied()
        .filter(|&v| v > 0.0)
        .fold(f32::MAX, f32::min);
    g.mapv_inplace(|v| if v == 0.0 { min } else { v });
    g
}

/// How to run the predictor.
#[derive(Debug, Clone)]
pub struct SlidingWindowSettings {
    /// `[d, h, w]`; 2D configurations: d = 1 (tiles are single slices along axis 0).
    pub patch: [usize; 3],
    pub dims: usize,
    pub step: f64,
    /// Mirrored spatial axes (network order; 2D: 0, 1 = the slice's axes), empty = no TTA.
    pub mirror_axes: Vec<usize>,
}

/// The float16 logits `(classes, a0, a1, a2)` of `data` `(C, a0, a1, a2)`, averaged over
/// `networks` (folds). `on_tile(done, total)` reports progress.
pub fn predict_logits(
    data: ArrayView4<f32>,
    networks: &[NnUnetNetwork],
    num_classes: usize,
    settings: &SlidingWindowSettings,
    device: &Device,
    on_tile: &mut dyn FnMut(usize, usize),
) -> Array4<f32> {
    let (padded, lo) = pad_to_patch(data, settings);
    let tiles = tiles(&padded, settings);
    let g = gaussian_f16(settings.patch, settings.dims);
    let shape = padded.shape()[1..].to_vec();
    let mut total: Option<Array4<f32>> = None;
    let steps = tiles.len() * networks.len();
    let mut done = 0;
    for net in networks {
        let mut acc = Array4::<f32>::zeros((num_classes, shape[0], shape[1], shape[2]));
        let mut wsum = Array3::<f32>::zeros((shape[0], shape[1], shape[2]));
        for origin in &tiles {
            let pred = predict_tile(net, padded.view(), *origin, settings, num_classes, device);
            add_tile(&mut acc, &mut wsum, &pred, &g, *origin);
            done += 1;
            on_tile(done, steps);
        }
        ndarray::Zip::from(acc.lanes_mut(Axis(0)))
            .and(&wsum)
            .for_each(|mut lane, &w| lane.mapv_inplace(|v| r16(v / w)));
        total = Some(match total {
            None => acc,
            Some(mut t) => {
                ndarray::Zip::from(&mut t)
                    .and(&acc)
                    .for_each(|t, &a| *t = r16(*t + a));
                t
            }
        });
    }
    let mut total = total.expect("at least one network");
    if networks.len() > 1 {
        let n = networks.len() as f32;
        total.mapv_inplace(|v| r16(v / n));
    }
    if total.shape()[1..] == data.shape()[1..] {
        // nothing was padded: no copy (this array is the largest of the prediction)
        return total;
    }
    let [s0, s1, s2] = [data.shape()[1], data.shape()[2], data.shape()[3]];
    total
        .slice(s![
            ..,
            lo[0]..lo[0] + s0,
            lo[1]..lo[1] + s1,
            lo[2]..lo[2] + s2
        ])
        .to_owned()
}

/// `pad_nd_image(x, patch, 'constant', 0)`: axes shorter than the patch padded to it, centred
/// (`d // 2` below). 2D configurations pad only the slice's axes.
fn pad_to_patch(data: ArrayView4<f32>, s: &SlidingWindowSettings) -> (Array4<f32>, [usize; 3]) {
    let shape = [data.shape()[1], data.shape()[2], data.shape()[3]];
    let mut new = shape;
    let mut lo = [0; 3];
    for a in 0..3 {
        if s.dims == 2 && a == 0 {
            continue;
        }
        if shape[a] < s.patch[a] {
            new[a] = s.patch[a];
            lo[a] = (s.patch[a] - shape[a]) / 2;
        }
    }
    if new == shape {
        return (data.to_owned(), lo);
    }
    let mut out = Array4::<f32>::zeros((data.shape()[0], new[0], new[1], new[2]));
    out.slice_mut(s![
        ..,
        lo[0]..lo[0] + shape[0],
        lo[1]..lo[1] + shape[1],
        lo[2]..lo[2] + shape[2]
    ])
    .assign(&data);
    (out, lo)
}

/// Tile origins in nnU-Net's order (last axis innermost; 2D: slice index outermost).
fn tiles(padded: &Array4<f32>, s: &SlidingWindowSettings) -> Vec<[usize; 3]> {
    let shape = [padded.shape()[1], padded.shape()[2], padded.shape()[3]];
    let per_axis: Vec<Vec<usize>> = (0..3)
        .map(|a| {
            if s.dims == 2 && a == 0 {
                (0..shape[0]).collect()
            } else {
                tile_origins(shape[a], s.patch[a], s.step)
            }
        })
        .collect();
    let mut out = Vec::new();
    for &a in &per_axis[0] {
        for &b in &per_axis[1] {
            for &c in &per_axis[2] {
                out.push([a, b, c]);
            }
        }
    }
    out
}

/// The network's float32 logits `(classes, d, h, w)` for the tile at `origin`, averaged over
/// the mirrored variants as nnU-Net does (`pred += flip(net(flip(x)))`, then `/ n`).
fn predict_tile(
    net: &NnUnetNetwork,
    padded: ArrayView4<f32>,
    origin: [usize; 3],
    s: &SlidingWindowSettings,
    num_classes: usize,
    device: &Device,
) -> Array4<f32> {
    let p = s.patch;
    let tile = padded
        .slice(s![
            ..,
            origin[0]..origin[0] + p[0],
            origin[1]..origin[1] + p[1],
            origin[2]..origin[2] + p[2]
        ])
        .as_standard_layout()
        .into_owned();
    let c = tile.shape()[0];
    let x: Tensor<5> = Tensor::from_data(
        TensorData::new(tile.into_raw_vec_and_offset().0, [1, c, p[0], p[1], p[2]]),
        device,
    );
    // tensor dims of the mirrored axes: 3D axis a -> a + 2; 2D slice axis a -> a + 3
    let to_dim = |a: usize| if s.dims == 3 { a + 2 } else { a + 3 };
    let mut variants: Vec<Vec<usize>> = vec![vec![]];
    for size in 1..=s.mirror_axes.len() {
        for combo in combinations(&s.mirror_axes, size) {
            variants.push(combo.into_iter().map(to_dim).collect());
        }
    }
    let batch = batch_for(p.iter().product());
    let mut outputs: Vec<Tensor<5>> = Vec::with_capacity(variants.len());
    for chunk in variants.chunks(batch) {
        let inputs: Vec<Tensor<5>> = chunk.iter().map(|d| flip(x.clone(), d)).collect();
        let y = net.forward(Tensor::cat(inputs, 0));
        for (i, d) in chunk.iter().enumerate() {
            outputs.push(flip(y.clone().narrow(0, i, 1), d));
        }
    }
    let mut sum = outputs.remove(0);
    for o in outputs {
        sum = sum + o;
    }
    let sum = sum / variants.len() as f32;
    let v = sum
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("float logits");
    Array4::from_shape_vec((num_classes, p[0], p[1], p[2]), v)
        .expect("network output has the tile's shape")
}

fn flip(x: Tensor<5>, dims: &[usize]) -> Tensor<5> {
    let d: Vec<isize> = dims.iter().map(|&d| d as isize).collect();
    match d.as_slice() {
        [] => x,
        [a] => x.flip([*a]),
        [a, b] => x.flip([*a, *b]),
        [a, b, c] => x.flip([*a, *b, *c]),
        _ => unreachable!("at most three spatial axes are mirrored"),
    }
}

/// `itertools.combinations(items, k)` order.
fn combinations(items: &[usize], k: usize) -> Vec<Vec<usize>> {
    if k == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for (i, &first) in items.iter().enumerate() {
        for rest in combinations(&items[i + 1..], k - 1) {
            let mut c = vec![first];
            c.extend(rest);
            out.push(c);
        }
    }
    out
}

/// `logits_sum[:, tile] += pred * g` and `weight_sum[tile] += g`, rounded to float16.
fn add_tile(
    acc: &mut Array4<f32>,
    wsum: &mut Array3<f32>,
    pred: &Array4<f32>,
    g: &Array3<f32>,
    o: [usize; 3],
) {
    let (p0, p1, p2) = g.dim();
    let region = s![o[0]..o[0] + p0, o[1]..o[1] + p1, o[2]..o[2] + p2];
    for (c, pc) in pred.outer_iter().enumerate() {
        let mut a = acc.index_axis_mut(Axis(0), c);
        ndarray::Zip::from(a.slice_mut(region))
            .and(&pc)
            .and(g)
            .for_each(|a, &p, &w| *a = r16(*a + p * w));
    }
    ndarray::Zip::from(wsum.slice_mut(region))
        .and(g)
        .for_each(|a, &w| *a = r16(*a + w));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_nnunet() {
        // fixture notes: 34 x 40 x 35 with patch 32 x 28 x 32 -> 0/2, 0/12, 0/3
        assert_eq!(tile_origins(34, 32, 0.5), vec![0, 2]);
        assert_eq!(tile_origins(40, 28, 0.5), vec![0, 12]);
        assert_eq!(tile_origins(35, 32, 0.5), vec![0, 3]);
        assert_eq!(tile_origins(32, 32, 0.5), vec![0]);
        // 100 / 32: n = ceil(68 / 16) + 1 = 6, stride 13.6 -> 0, 14, 27, 41, 54, 68
        assert_eq!(tile_origins(100, 32, 0.5), vec![0, 14, 27, 41, 54, 68]);
    }

    #[test]
    fn combinations_in_itertools_order() {
        assert_eq!(
            combinations(&[0, 1, 2], 2),
            vec![vec![0, 1], vec![0, 2], vec![1, 2]]
        );
    }

    #[test]
    fn gaussian_is_ten_at_the_centre_and_never_zero() {
        let g = gaussian_f16([8, 8, 8], 3);
        assert_eq!(g[[4, 4, 4]], 10.0);
        assert!(g.iter().all(|&v| v > 0.0));
    }
}
