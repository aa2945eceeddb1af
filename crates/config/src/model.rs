use serde::{Deserialize, Serialize};

/// `[model]`: the network. Defaults give nnU-Net's plain UNet, its topology (stages, kernel
/// sizes, strides, features per stage) from the plan; every topology key here overrides the
/// plan's choice and is checked against it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// 2 or 3. Default 3.
    #[serde(default = "default_dims")]
    pub dims: usize,
    /// Feature maps per stage, shallowest first; the list's length caps the plan's stages.
    /// Default: from the plan (`base_features` doubling per stage up to `max_features`).
    #[serde(default)]
    pub features: Option<Vec<usize>>,
    /// Features of the first stage when `features` is not set. Default 32 (nnU-Net).
    #[serde(default)]
    pub base_features: Option<usize>,
    /// Cap of the features per stage when `features` is not set. Default 320 in 3D, 512 in 2D.
    #[serde(default)]
    pub max_features: Option<usize>,
    /// Normalization: instance | group | batch. Default instance.
    #[serde(default)]
    pub norm: NormKind,
    /// Extra loss heads at decoder stages (nnU-Net's weights). Default true.
    #[serde(default = "yes")]
    pub deep_supervision: bool,
    /// Attention gates on the skip connections (Attention U-Net). Default false.
    #[serde(default)]
    pub attention_gates: bool,
    /// Residual encoder blocks. Default false.
    #[serde(default)]
    pub residual: bool,
    /// Bottleneck: conv | dilated | transformer. Default conv.
    #[serde(default)]
    pub bottleneck: BottleneckKind,
    /// Dilation rate per bottleneck layer when `bottleneck = "dilated"`. Default [1, 2, 4].
    #[serde(default = "default_dilations")]
    pub dilations: Vec<usize>,
    /// Attention heads of the transformer bottleneck. Default 4.
    #[serde(default = "default_heads")]
    pub heads: usize,
    /// Transformer layers in the bottleneck. Default 1.
    #[serde(default = "default_layers")]
    pub transformer_layers: usize,
    /// Kernel size per stage and per axis (`[[1, 3, 3], [3, 3, 3], ...]` in 3D, `[[3, 3], ...]`
    /// in 2D; axes in tensor order, depth first). One entry per stage.
    /// Default: from the plan (nnU-Net's rule: 1 on a coarse axis until its spacing evens out).
    #[serde(default)]
    pub kernel_sizes: Option<Vec<Vec<usize>>>,
    /// Downsampling factor per stage and per axis, same layout as `kernel_sizes`; the first
    /// stage's entry must be all 1 (nnU-Net's anisotropic plans, e.g. `[1, 2, 2]`).
    /// Default: from the plan (nnU-Net's rule: 2 while an axis can pool, else 1).
    #[serde(default)]
    pub strides: Option<Vec<Vec<usize>>>,
    /// Negative slope of the LeakyReLU after every norm. Default 0.01 (nnU-Net).
    #[serde(default = "default_negative_slope")]
    pub negative_slope: f64,
    /// Downsampling: "conv" (strided convolution, nnU-Net) or "maxpool". Default conv.
    #[serde(default = "default_downsample")]
    pub downsample: String,
    /// Dropout probability after each conv block (0 = off). Default 0.
    #[serde(default)]
    pub dropout: f64,
    /// Input channels. Default: from the dataset's `channel_names`.
    #[serde(default)]
    pub in_channels: Option<usize>,
    /// Output classes including background. Default: from the dataset's `labels`.
    #[serde(default)]
    pub num_classes: Option<usize>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum NormKind {
    #[default]
    Instance,
    Group,
    Batch,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum BottleneckKind {
    #[default]
    Conv,
    Dilated,
    Transformer,
}

fn default_dims() -> usize {
    3
}
fn yes() -> bool {
    true
}
fn default_dilations() -> Vec<usize> {
    vec![1, 2, 4]
}
fn default_heads() -> usize {
    4
}
fn default_layers() -> usize {
    1
}
fn default_negative_slope() -> f64 {
    0.01
}
fn default_downsample() -> String {
    "conv".into()
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            dims: default_dims(),
            features: None,
            base_features: None,
            max_features: None,
            norm: NormKind::default(),
            deep_supervision: true,
            attention_gates: false,
            residual: false,
            bottleneck: BottleneckKind::default(),
            dilations: default_dilations(),
            heads: default_heads(),
            transformer_layers: default_layers(),
            kernel_sizes: None,
            strides: None,
            negative_slope: default_negative_slope(),
            downsample: default_downsample(),
            dropout: 0.0,
            in_channels: None,
            num_classes: None,
        }
    }
}
