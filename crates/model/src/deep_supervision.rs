//! Deep supervision: nnU-Net's loss weights and the wrapper that applies a [`SegLoss`] to
//! every decoder output against a correspondingly downsampled label map.

use crate::error::ModelError;
use crate::loss::SegLoss;
use burn::tensor::{Int, Slice, Tensor};

/// nnU-Net v2's weights for `n` outputs (full resolution first): `w_i = 1/2^i`, the last
/// (lowest-resolution) weight set to 0, normalized to sum 1. `n = 1` gives `[1]`;
/// n = 4 gives [4/7, 2/7, 1/7, 0].
pub fn deep_supervision_weights(n: usize) -> Vec<f64> {
    if n <= 1 {
        return vec![1.0; n];
    }
    let mut w: Vec<f64> = (0..n).map(|i| 1.0 / (1u64 << i.min(62)) as f64).collect();
    w[n - 1] = 0.0;
    let sum: f64 = w.iter().sum();
    w.iter().map(|v| v / sum).collect()
}

/// Nearest-neighbour downsampling of labels `[B, D, H, W]` to `size` by strided slicing
/// (keeps voxel `f * i` along each axis; every axis must be divisible, which a validated
/// patch size guarantees for every decoder output).
pub fn downsample_labels(
    labels: Tensor<4, Int>,
    size: [usize; 3],
) -> Result<Tensor<4, Int>, ModelError> {
    let [b, d, h, w] = labels.dims();
    let full = [d, h, w];
    if full == size {
        return Ok(labels);
    }
    let mut sl = [Slice {
        start: 0,
        end: Some(b as isize),
        step: 1,
    }; 4];
    for a in 0..3 {
        if size[a] == 0 || full[a] % size[a] != 0 {
            return Err(ModelError::Shape(format!(
                "labels {full:?} cannot be downsampled to {size:?}"
            )));
        }
        sl[a + 1] = Slice {
            start: 0,
            end: Some(full[a] as isize),
            step: (full[a] / size[a]) as isize,
        };
    }
    Ok(labels.slice(sl))
}

/// Applies a loss to deep-supervision outputs with nnU-Net's weights; terms with weight 0 are
/// not computed.
#[derive(Debug, Clone)]
pub struct DeepSupervisionLoss {
    pub loss: SegLoss,
    /// One per output, full resolution first.
    pub weights: Vec<f64>,
}

impl DeepSupervisionLoss {
    /// nnU-Net's weights for `outputs` outputs (see [`deep_supervision_weights`]).
    pub fn new(loss: SegLoss, outputs: usize) -> Self {
        Self {
            loss,
            weights: deep_supervision_weights(outputs),
        }
    }

    /// `Σ_i w_i loss(outputs[i], labels downsampled to outputs[i])`; labels `[B, D, H, W]`
    /// (2D: D = 1), outputs `[B, C, d, h, w]`.
    pub fn forward(
        &self,
        outputs: Vec<Tensor<5>>,
        labels: Tensor<4, Int>,
    ) -> Result<Tensor<1>, ModelError> {
        if outputs.len() != self.weights.len() {
            return Err(ModelError::Shape(format!(
                "{} deep-supervision outputs but {} weights",
                outputs.len(),
                self.weights.len()
            )));
        }
        let mut total: Option<Tensor<1>> = None;
        for (out, &w) in outputs.into_iter().zip(&self.weights) {
            if w == 0.0 {
                continue;
            }
            let [_, _, d, h, wd] = out.dims();
            let target = downsample_labels(labels.clone(), [d, h, wd])?;
            let term = self.loss.forward(out, target).mul_scalar(w);
            total = Some(match total {
                Some(t) => t + term,
                None => term,
            });
        }
        total.ok_or_else(|| {
            ModelError::Shape("no deep-supervision output has a positive weight".into())
        })
    }
}
