use serde::{Deserialize, Serialize};

/// `[inference]`: sliding-window prediction (validation and `medseg predict`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InferenceConfig {
    /// Fraction of the patch by which neighbouring windows overlap, in [0, 1). Default 0.5.
    #[serde(default = "default_overlap")]
    pub overlap: f64,
    /// Gaussian importance weighting (sigma = patch/8). Default true.
    #[serde(default = "yes")]
    pub gaussian: bool,
    /// Mirroring test-time augmentation. Default true.
    #[serde(default = "yes")]
    pub tta: bool,
    /// Windows per forward pass. Default 2.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

fn default_overlap() -> f64 {
    0.5
}
fn yes() -> bool {
    true
}
fn default_batch() -> usize {
    2
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self {
            overlap: default_overlap(),
            gaussian: true,
            tta: true,
            batch_size: default_batch(),
        }
    }
}
