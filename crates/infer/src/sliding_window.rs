//! Sliding-window prediction over a whole (preprocessed) volume, nnU-Net style: windows placed
//! with a given overlap (the last window flush with the border), Gaussian importance weights,
//! windows batched, optional mirroring test-time augmentation, and zero padding where the
//! volume is smaller than the patch. Works on ndarray with any per-batch forward function, so
//! it is tested with known "networks" and shared by training validation and `medseg predict`.

use crate::InferError;
use crate::gaussian::{gaussian_importance_map, uniform_map};
use ndarray::{Array3, Array4, Array5, ArrayView4, Axis, s};

/// How windows are placed and combined.
#[derive(Debug, Clone, PartialEq)]
pub struct SlidingWindow {
    /// Window extents `[d, h, w]` (array order; 2D networks have d = 1).
    pub patch: [usize; 3],
    /// Fraction of a window shared with the next one, in [0, 1). Default 0.5.
    pub overlap: f64,
    /// Gaussian importance weighting (sigma = patch / 8). Default true.
    pub gaussian: bool,
    /// Mirroring test-time augmentation over `mirror_axes`. Default true.
    pub tta: bool,
    /// Spatial axes (0 = d, 1 = h, 2 = w) mirrored by TTA: all three in 3D, h and w in 2D.
    pub mirror_axes: Vec<usize>,
    /// Windows per forward call. Default 2.
    pub batch_size: usize,
}

impl SlidingWindow {
    /// Defaults for a patch: overlap 0.5, Gaussian, TTA over every axis longer than one voxel.
    pub fn new(patch: [usize; 3]) -> Self {
        let mirror_axes = (0..3).filter(|&a| patch[a] > 1).collect();
        Self {
            patch,
            overlap: 0.5,
            gaussian: true,
            tta: true,
            mirror_axes,
            batch_size: 2,
        }
    }

    /// Window start positions along one axis of `size` voxels (nnU-Net's
    /// `compute_steps_for_sliding_window`): the fewest windows with step <= patch * (1 -
    /// overlap), spread evenly from 0 to `size - patch`.
    pub fn starts(size: usize, patch: usize, overlap: f64) -> Vec<usize> {
        if size <= patch {
            return vec![0];
        }
        let target = (patch as f64 * (1.0 - overlap)).max(1.0);
        let n = ((size - patch) as f64 / target).ceil() as usize + 1;
        let step = (size - patch) as f64 / (n - 1) as f64;
        (0..n).map(|i| (step * i as f64).round() as usize).collect()
    }

    /// Every window's corner `[d, h, w]` for a volume of `shape` (already padded to >= patch).
    pub fn windows(&self, shape: [usize; 3]) -> Vec<[usize; 3]> {
        let st: Vec<Vec<usize>> = (0..3)
            .map(|a| Self::starts(shape[a], self.patch[a], self.overlap))
            .collect();
        let mut out = Vec::with_capacity(st[0].len() * st[1].len() * st[2].len());
        for &z in &st[0] {
            for &y in &st[1] {
                for &x in &st[2] {
                    out.push([z, y, x]);
                }
            }
        }
        out
    }

    /// Runs `forward` over the volume `image` (`[channels, d, h, w]`) and returns per-class
    /// probabilities `[classes, d, h, w]` (softmax of the weighted mean of window logits).
    /// `forward` maps a batch `[b, channels, pd, ph, pw]` to logits `[b, classes, pd, ph, pw]`.
    /// `on_window(done, total)` reports progress.
    pub fn predict(
        &self,
        image: ArrayView4<f32>,
        forward: &mut dyn FnMut(Array5<f32>) -> Result<Array5<f32>, InferError>,
        on_window: &mut dyn FnMut(usize, usize),
    ) -> Result<Array4<f32>, InferError> {
        let mut logits = self.predict_logits(image, forward, on_window)?;
        softmax_channels(&mut logits);
        Ok(logits)
    }

    /// As [`SlidingWindow::predict`], returning the weighted mean logits (no softmax).
    pub fn predict_logits(
        &self,
        image: ArrayView4<f32>,
        forward: &mut dyn FnMut(Array5<f32>) -> Result<Array5<f32>, InferError>,
        on_window: &mut dyn FnMut(usize, usize),
    ) -> Result<Array4<f32>, InferError> {
        self.check_settings()?;
        // Pad (centred, zeros = the normalized mean) where the volume is smaller than the patch.
        let (_, d, h, w) = image.dim();
        let shape = [d, h, w];
        let padded_shape = [0, 1, 2].map(|a| shape[a].max(self.patch[a]));
        let pad_lo = [0, 1, 2].map(|a| (padded_shape[a] - shape[a]) / 2);
        let padded = (padded_shape != shape).then(|| pad(image, padded_shape, pad_lo));
        let img = padded.as_ref().map_or(image, |p| p.view());
        let weights = if self.gaussian {
            gaussian_importance_map(self.patch, 1.0 / 8.0)
        } else {
            uniform_map(self.patch)
        };
        let mut sum = WeightedSum::new(weights, padded_shape);
        let windows = self.windows(padded_shape);
        let mut done = 0;
        for chunk in windows.chunks(self.batch_size.max(1)) {
            let out = self.forward_tta(self.gather(img, chunk), forward)?;
            self.check_output(&out, chunk.len())?;
            sum.add(&out, chunk)?;
            done += chunk.len();
            on_window(done, windows.len());
        }
        let logits = sum.mean()?;
        if padded_shape == shape {
            return Ok(logits);
        }
        let [z, y, x] = pad_lo;
        Ok(logits
            .slice(s![.., z..z + d, y..y + h, x..x + w])
            .to_owned())
    }

    fn check_settings(&self) -> Result<(), InferError> {
        if self.patch.contains(&0) {
            return Err(InferError::Config(format!(
                "patch size {:?} has a zero extent",
                self.patch
            )));
        }
        if !(0.0..1.0).contains(&self.overlap) {
            return Err(InferError::Config(format!(
                "overlap {} must be in [0, 1)",
                self.overlap
            )));
        }
        Ok(())
    }

    /// The windows at `corners` as one batch `[b, channels, pd, ph, pw]`.
    fn gather(&self, img: ArrayView4<f32>, corners: &[[usize; 3]]) -> Array5<f32> {
        let [pd, ph, pw] = self.patch;
        let mut x = Array5::<f32>::zeros((corners.len(), img.shape()[0], pd, ph, pw));
        for (b, &[z, y, xx]) in corners.iter().enumerate() {
            x.index_axis_mut(Axis(0), b).assign(&img.slice(s![
                ..,
                z..z + pd,
                y..y + ph,
                xx..xx + pw
            ]));
        }
        x
    }

    /// The network must return one logit map per window, of the window's extents.
    fn check_output(&self, out: &Array5<f32>, windows: usize) -> Result<(), InferError> {
        let [pd, ph, pw] = self.patch;
        if out.shape() != [windows, out.shape()[1], pd, ph, pw] {
            return Err(InferError::Shape(format!(
                "the network returned {:?} for a batch of {} windows of {:?}",
                out.shape(),
                windows,
                self.patch
            )));
        }
        Ok(())
    }

    /// Forward with mirroring TTA: the mean of the logits of every combination of flips over
    /// `mirror_axes` (each flipped back before averaging).
    fn forward_tta(
        &self,
        x: Array5<f32>,
        forward: &mut dyn FnMut(Array5<f32>) -> Result<Array5<f32>, InferError>,
    ) -> Result<Array5<f32>, InferError> {
        if !self.tta || self.mirror_axes.is_empty() {
            return forward(x);
        }
        let axes = &self.mirror_axes;
        let n = 1usize << axes.len();
        let mut sum: Option<Array5<f32>> = None;
        for mask in 0..n {
            let flips: Vec<usize> = axes
                .iter()
                .enumerate()
                .filter(|(b, _)| mask >> b & 1 == 1)
                .map(|(_, &a)| a + 2)
                .collect();
            let xi = if flips.is_empty() {
                x.clone()
            } else {
                flip(&x, &flips)
            };
            let yi = forward(xi)?;
            let yi = if flips.is_empty() {
                yi
            } else {
                flip(&yi, &flips)
            };
            match &mut sum {
                None => sum = Some(yi),
                Some(s) => *s += &yi,
            }
        }
        let mut s = sum.ok_or_else(|| InferError::Shape("no TTA pass".into()))?;
        s.mapv_inplace(|v| v / n as f32);
        Ok(s)
    }
}

/// `image` centred in zeros of `padded_shape`, `pad_lo` voxels before it on each axis.
fn pad(image: ArrayView4<f32>, padded_shape: [usize; 3], pad_lo: [usize; 3]) -> Array4<f32> {
    let (nc, d, h, w) = image.dim();
    let [pz, py, px] = padded_shape;
    let [z, y, x] = pad_lo;
    let mut p = Array4::<f32>::zeros((nc, pz, py, px));
    p.slice_mut(s![.., z..z + d, y..y + h, x..x + w])
        .assign(&image);
    p
}

/// Importance-weighted sum of window logits over the (padded) volume, and the sum of the
/// weights, for the weighted mean.
struct WeightedSum {
    weights: Array3<f32>,
    shape: [usize; 3],
    logits: Option<Array4<f32>>,
    weight_sum: Array3<f32>,
}

impl WeightedSum {
    fn new(weights: Array3<f32>, shape: [usize; 3]) -> Self {
        Self {
            weights,
            shape,
            logits: None,
            weight_sum: Array3::zeros((shape[0], shape[1], shape[2])),
        }
    }

    /// Adds the logits `out` `[b, classes, pd, ph, pw]` of the windows at `corners`.
    fn add(&mut self, out: &Array5<f32>, corners: &[[usize; 3]]) -> Result<(), InferError> {
        let nk = out.shape()[1];
        let [pd, ph, pw] = [2, 3, 4].map(|a| out.shape()[a]);
        let [d, h, w] = self.shape;
        let acc = self
            .logits
            .get_or_insert_with(|| Array4::<f32>::zeros((nk, d, h, w)));
        if acc.shape()[0] != nk {
            return Err(InferError::Shape(
                "the number of classes changed between windows".into(),
            ));
        }
        for (b, &[z, y, xx]) in corners.iter().enumerate() {
            let o = out.index_axis(Axis(0), b);
            for k in 0..nk {
                let mut dst = acc.slice_mut(s![k, z..z + pd, y..y + ph, xx..xx + pw]);
                ndarray::Zip::from(&mut dst)
                    .and(&o.index_axis(Axis(0), k))
                    .and(&self.weights)
                    .for_each(|a, &v, &g| {
                        *a += v * g;
                    });
            }
            let mut ws = self
                .weight_sum
                .slice_mut(s![z..z + pd, y..y + ph, xx..xx + pw]);
            ws += &self.weights;
        }
        Ok(())
    }

    /// The weighted mean logits `[classes, d, h, w]`.
    fn mean(self) -> Result<Array4<f32>, InferError> {
        let mut acc = self
            .logits
            .ok_or_else(|| InferError::Shape("no windows".into()))?;
        for mut k in acc.outer_iter_mut() {
            ndarray::Zip::from(&mut k)
                .and(&self.weight_sum)
                .for_each(|a, &ws| *a /= ws);
        }
        Ok(acc)
    }
}

/// Copy of `a` reversed along `axes`.
fn flip(a: &Array5<f32>, axes: &[usize]) -> Array5<f32> {
    let mut v = a.view();
    for &ax in axes {
        v.invert_axis(Axis(ax));
    }
    v.as_standard_layout().into_owned()
}

/// In-place softmax over axis 0 (classes), numerically stable; voxels in parallel (each
/// class lane is `n` floats apart, the voxel's own values only).
pub fn softmax_channels(logits: &mut Array4<f32>) {
    ndarray::Zip::from(logits.lanes_mut(Axis(0))).par_for_each(|mut lane| {
        let m = lane.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let mut s = 0.0;
        for v in lane.iter_mut() {
            *v = (*v - m).exp();
            s += *v;
        }
        lane.mapv_inplace(|v| v / s);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_cover_the_axis_evenly() {
        assert_eq!(SlidingWindow::starts(64, 64, 0.5), vec![0]);
        assert_eq!(SlidingWindow::starts(30, 64, 0.5), vec![0]);
        assert_eq!(SlidingWindow::starts(128, 64, 0.5), vec![0, 32, 64]);
        let s = SlidingWindow::starts(100, 64, 0.5);
        assert_eq!(*s.last().unwrap(), 36);
        assert!(s.windows(2).all(|w| w[1] - w[0] <= 32));
        assert_eq!(SlidingWindow::starts(200, 64, 0.0), vec![0, 45, 91, 136]);
    }

    /// A network returning the same logits everywhere yields the same probabilities
    /// everywhere, borders and padding included; weights normalise exactly.
    #[test]
    fn constant_network_gives_constant_output() {
        let image = Array4::<f32>::from_elem((1, 13, 37, 50), 0.3);
        for (tta, gaussian) in [(false, true), (true, true), (false, false)] {
            let mut sw = SlidingWindow::new([8, 16, 16]);
            sw.tta = tta;
            sw.gaussian = gaussian;
            sw.batch_size = 3;
            let mut f = |x: Array5<f32>| -> Result<Array5<f32>, InferError> {
                let (b, _, d, h, w) = x.dim();
                let mut y = Array5::<f32>::zeros((b, 3, d, h, w));
                y.index_axis_mut(Axis(1), 0).fill(1.0);
                y.index_axis_mut(Axis(1), 2).fill(-0.5);
                Ok(y)
            };
            let logits = sw
                .predict_logits(image.view(), &mut f, &mut |_, _| {})
                .unwrap();
            assert_eq!(logits.shape(), &[3, 13, 37, 50]);
            for (k, expect) in [(0, 1.0f32), (1, 0.0), (2, -0.5)] {
                assert!(
                    logits
                        .index_axis(Axis(0), k)
                        .iter()
                        .all(|&v| (v - expect).abs() < 1e-6)
                );
            }
        }
    }

    /// An identity "network" (logit = input) reproduces the input exactly through windows,
    /// weights and mirroring.
    #[test]
    fn identity_network_reproduces_the_input() {
        let image = Array4::from_shape_fn((1, 11, 29, 31), |(_, z, y, x)| {
            (z * 1000 + y * 37 + x) as f32 * 0.001
        });
        let mut sw = SlidingWindow::new([4, 16, 8]);
        sw.batch_size = 4;
        let mut f = |x: Array5<f32>| Ok(x);
        let out = sw
            .predict_logits(image.view(), &mut f, &mut |_, _| {})
            .unwrap();
        for (a, b) in out.iter().zip(image.iter()) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut a = Array4::from_shape_fn((3, 2, 5, 7), |(k, z, y, x)| {
            (k as f32 - 1.0) * (z + y + x) as f32 * 0.3
        });
        softmax_channels(&mut a);
        for z in 0..2 {
            for y in 0..5 {
                for x in 0..7 {
                    let s: f32 = (0..3).map(|k| a[[k, z, y, x]]).sum();
                    assert!((s - 1.0).abs() < 1e-5);
                }
            }
        }
    }
}
