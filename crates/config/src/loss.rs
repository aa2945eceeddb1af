use serde::{Deserialize, Serialize};

/// `[loss]`: a weighted sum of terms. Default: Dice + CE with weight 1 each (nnU-Net).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LossConfig {
    /// Weight of soft Dice. Default 1.
    #[serde(default = "one")]
    pub dice: f64,
    /// Weight of cross-entropy. Default 1.
    #[serde(default = "one")]
    pub ce: f64,
    /// Weight of focal loss. Default 0.
    #[serde(default)]
    pub focal: f64,
    /// Weight of soft IoU (Jaccard). Default 0.
    #[serde(default)]
    pub iou: f64,
    /// Weight of Tversky. Default 0.
    #[serde(default)]
    pub tversky: f64,
    /// Dice/IoU/Tversky include the background class. Default false.
    #[serde(default)]
    pub include_background: bool,
    /// Batch Dice (sum over the batch before the ratio). Default false.
    #[serde(default)]
    pub batch_dice: bool,
    /// Squared denominator in soft Dice. Default false.
    #[serde(default)]
    pub squared_pred: bool,
    /// Smoothing term of Dice/IoU/Tversky. Default 1e-5.
    #[serde(default = "default_smooth")]
    pub smooth: f64,
    /// Focal gamma. Default 2.
    #[serde(default = "two")]
    pub focal_gamma: f64,
    /// Focal form: "softmax" (multi-class, MONAI `FocalLoss(use_softmax=True)`: averaged over
    /// voxels *and* classes, every class) or "sigmoid" (per-channel binary focal on the raw
    /// logits, the foreground channels unless `include_background`, as in MONAI's
    /// `DiceFocalLoss`). Default softmax.
    #[serde(default = "default_focal_mode")]
    pub focal_mode: String,
    /// Focal alpha (None = no class balancing). Softmax form: class 0 gets 1 - alpha, every
    /// other class alpha. Sigmoid form: alpha on positives, 1 - alpha on negatives. Default none.
    #[serde(default)]
    pub focal_alpha: Option<f64>,
    /// Tversky alpha (weight of false positives). Default 0.5.
    #[serde(default = "half")]
    pub tversky_alpha: f64,
    /// Tversky beta (weight of false negatives). Default 0.5.
    #[serde(default = "half")]
    pub tversky_beta: f64,
    /// Cross-entropy class weights (one per class). Default none.
    #[serde(default)]
    pub class_weights: Option<Vec<f64>>,
    /// Label value ignored by the loss. Default none.
    #[serde(default)]
    pub ignore_label: Option<i64>,
}

fn one() -> f64 {
    1.0
}
fn two() -> f64 {
    2.0
}
fn half() -> f64 {
    0.5
}
fn default_focal_mode() -> String {
    "softmax".into()
}
fn default_smooth() -> f64 {
    1e-5
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            dice: 1.0,
            ce: 1.0,
            focal: 0.0,
            iou: 0.0,
            tversky: 0.0,
            include_background: false,
            batch_dice: false,
            squared_pred: false,
            smooth: default_smooth(),
            focal_gamma: 2.0,
            focal_mode: default_focal_mode(),
            focal_alpha: None,
            tversky_alpha: 0.5,
            tversky_beta: 0.5,
            class_weights: None,
            ignore_label: None,
        }
    }
}
