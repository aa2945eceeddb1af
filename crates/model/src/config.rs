//! [`UNetConfig`]: everything needed to build one network, resolved from `[model]` and the
//! patch size. Axes are in tensor order (depth, height, width); a 2D network is described
//! with depth 1 (kernel 1, stride 1, patch 1 on that axis), so one set of shape rules serves both.

use crate::error::ModelError;
use crate::shapes;
use medseg_config::{BottleneckKind, ModelConfig, NormKind};
use serde::{Deserialize, Serialize};

/// Largest token count of a transformer bottleneck (its attention maps grow with the square).
pub const MAX_TRANSFORMER_TOKENS: usize = 16384;

/// How an encoder stage halves (or otherwise shrinks) its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Downsample {
    /// The stage's first convolution has the stage stride (nnU-Net).
    Conv,
    /// Max pooling with kernel = stride, then stride-1 convolutions.
    MaxPool,
}

/// What sits at the bottom of the U.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bottleneck {
    /// The deepest stage is a plain two-conv stage.
    Conv,
    /// The deepest stage has one conv block per dilation rate (the first one downsamples).
    Dilated { rates: Vec<usize> },
    /// A plain deepest stage followed by `layers` transformer layers over its voxels as tokens.
    Transformer { heads: usize, layers: usize },
}

/// A resolved network description: `UNetConfig -> init(&device) -> UNet`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UNetConfig {
    /// 2 or 3.
    pub dims: usize,
    pub in_channels: usize,
    /// Output classes including background.
    pub num_classes: usize,
    /// Feature maps per stage, shallowest first (the last stage is the bottleneck).
    pub features: Vec<usize>,
    /// Kernel per stage, `[d, h, w]` (2D: d = 1). All odd.
    pub kernel_sizes: Vec<[usize; 3]>,
    /// Downsampling per stage, `[d, h, w]`; stage 0 is `[1, 1, 1]`.
    pub strides: Vec<[usize; 3]>,
    pub norm: NormKind,
    pub downsample: Downsample,
    pub deep_supervision: bool,
    pub attention_gates: bool,
    pub residual: bool,
    pub bottleneck: Bottleneck,
    /// Dropout after every convolution (0 = off).
    pub dropout: f64,
    /// LeakyReLU negative slope.
    pub negative_slope: f64,
    /// Training patch `[d, h, w]` (2D: d = 1). Fixes the token count of a transformer
    /// bottleneck; every other layer works on any size that passes [`UNetConfig::validate_patch`].
    pub patch_size: [usize; 3],
}

impl UNetConfig {
    /// A plain nnU-Net-style UNet: kernel 3, stride 2 per stage, instance norm, strided-conv
    /// downsampling, no deep supervision, no variants. `patch` is `[h, w]` or `[d, h, w]`.
    pub fn plain(
        dims: usize,
        in_channels: usize,
        num_classes: usize,
        features: &[usize],
        patch: &[usize],
    ) -> Result<Self, ModelError> {
        let model = ModelConfig {
            dims,
            features: Some(features.to_vec()),
            deep_supervision: false,
            ..ModelConfig::default()
        };
        Self::from_model_config(&model, in_channels, num_classes, patch)
    }

    /// Resolves `[model]` for a dataset with `in_channels` inputs and `num_classes` classes and
    /// a `patch_size` given per spatial axis (2 values in 2D, 3 in 3D, tensor order).
    /// `model.in_channels`/`model.num_classes`, when set, must agree with the arguments.
    /// Checks everything a build would trip over, including the patch size.
    pub fn from_model_config(
        model: &ModelConfig,
        in_channels: usize,
        num_classes: usize,
        patch_size: &[usize],
    ) -> Result<Self, ModelError> {
        let bad = |m: String| Err(ModelError::Config(m));
        let dims = model.dims;
        if dims != 2 && dims != 3 {
            return bad(format!("dims must be 2 or 3, got {dims}"));
        }
        if let Some(c) = model.in_channels
            && c != in_channels
        {
            return bad(format!(
                "model.in_channels = {c} but the data has {in_channels}"
            ));
        }
        if let Some(c) = model.num_classes
            && c != num_classes
        {
            return bad(format!(
                "model.num_classes = {c} but the data has {num_classes}"
            ));
        }
        if in_channels == 0 {
            return bad("in_channels must be at least 1".into());
        }
        if num_classes < 2 {
            return bad(format!(
                "num_classes must be at least 2 (background + one class), got {num_classes}"
            ));
        }
        let Some(features) = model.features.as_ref() else {
            return bad(
                "model.features is not set: the plan decides the network (run `medseg plan`), or set model.features"
                    .into(),
            );
        };
        let n = features.len();
        if n < 2 {
            return bad(format!(
                "features needs at least 2 stages, got {features:?}"
            ));
        }
        if features.contains(&0) {
            return bad(format!("features must be positive, got {features:?}"));
        }
        let kernel_sizes = per_stage_axes(
            "kernel_sizes",
            model.kernel_sizes.as_deref(),
            dims,
            n,
            |_| 3,
        )?;
        if kernel_sizes.iter().flatten().any(|k| k % 2 == 0) {
            return bad(format!(
                "kernel sizes must be odd (same padding), got {:?}",
                model.kernel_sizes
            ));
        }
        let strides = per_stage_axes("strides", model.strides.as_deref(), dims, n, |s| {
            if s == 0 { 1 } else { 2 }
        })?;
        if strides[0] != [1, 1, 1] {
            return bad(format!(
                "the first stage's stride must be 1 on every axis, got {:?}",
                strides[0]
            ));
        }
        if strides.iter().flatten().any(|&s| s == 0) {
            return bad("strides must be at least 1".into());
        }
        let downsample = match model.downsample.as_str() {
            "conv" => Downsample::Conv,
            "maxpool" | "max_pool" | "pool" => Downsample::MaxPool,
            other => {
                return bad(format!(
                    "downsample must be \"conv\" or \"maxpool\", got {other:?}"
                ));
            }
        };
        let bottleneck = match model.bottleneck {
            BottleneckKind::Conv => Bottleneck::Conv,
            BottleneckKind::Dilated => {
                if model.dilations.is_empty() || model.dilations.contains(&0) {
                    return bad(format!(
                        "dilations must be non-empty and positive, got {:?}",
                        model.dilations
                    ));
                }
                Bottleneck::Dilated {
                    rates: model.dilations.clone(),
                }
            }
            BottleneckKind::Transformer => {
                let c = features[n - 1];
                if model.heads == 0 || !c.is_multiple_of(model.heads) {
                    return bad(format!(
                        "transformer heads ({}) must divide the bottleneck features ({c})",
                        model.heads
                    ));
                }
                if model.transformer_layers == 0 {
                    return bad("transformer_layers must be at least 1".into());
                }
                Bottleneck::Transformer {
                    heads: model.heads,
                    layers: model.transformer_layers,
                }
            }
        };
        if !(0.0..1.0).contains(&model.dropout) {
            return bad(format!("dropout must be in [0, 1), got {}", model.dropout));
        }
        if !model.negative_slope.is_finite() || model.negative_slope < 0.0 {
            return bad(format!(
                "negative_slope must be >= 0, got {}",
                model.negative_slope
            ));
        }
        if patch_size.len() != dims {
            return Err(ModelError::Patch(format!(
                "patch size {patch_size:?} has {} axes but the network is {dims}D",
                patch_size.len()
            )));
        }
        let patch = if dims == 2 {
            [1, patch_size[0], patch_size[1]]
        } else {
            [patch_size[0], patch_size[1], patch_size[2]]
        };
        let cfg = Self {
            dims,
            in_channels,
            num_classes,
            features: features.clone(),
            kernel_sizes,
            strides,
            norm: model.norm,
            downsample,
            deep_supervision: model.deep_supervision,
            attention_gates: model.attention_gates,
            residual: model.residual,
            bottleneck,
            dropout: model.dropout,
            negative_slope: model.negative_slope,
            patch_size: patch,
        };
        cfg.validate_patch(&cfg.patch_size)?;
        if matches!(cfg.bottleneck, Bottleneck::Transformer { .. }) {
            let b = cfg.bottleneck_size();
            let tokens: usize = b.iter().product();
            if tokens > MAX_TRANSFORMER_TOKENS {
                return Err(ModelError::Config(format!(
                    "the transformer bottleneck would attend over {tokens} tokens (bottleneck {:?}); at most {MAX_TRANSFORMER_TOKENS}: add stages or use a smaller patch",
                    shapes::strip(&cfg, &b)
                )));
            }
        }
        Ok(cfg)
    }

    /// Number of stages (encoder levels including the bottleneck).
    pub fn num_stages(&self) -> usize {
        self.features.len()
    }

    /// Number of outputs of [`crate::UNet::forward_train`]: one per decoder stage with deep
    /// supervision, else 1.
    pub fn num_outputs(&self) -> usize {
        if self.deep_supervision {
            self.num_stages() - 1
        } else {
            1
        }
    }

    /// Checks that a `[d, h, w]` input (2D: d = 1) passes through every layer and comes back to
    /// its own size (see [`shapes::validate_patch`]).
    pub fn validate_patch(&self, patch: &[usize; 3]) -> Result<(), ModelError> {
        shapes::validate_patch(self, patch)
    }

    /// The patch in the caller's axes (`[h, w]` in 2D).
    pub fn patch_spatial(&self) -> Vec<usize> {
        if self.dims == 2 {
            self.patch_size[1..].to_vec()
        } else {
            self.patch_size.to_vec()
        }
    }
}

/// Expands an optional per-stage, per-axis list to `[d, h, w]` triples (2D gets d = 1).
fn per_stage_axes(
    key: &str,
    given: Option<&[Vec<usize>]>,
    dims: usize,
    stages: usize,
    default: impl Fn(usize) -> usize,
) -> Result<Vec<[usize; 3]>, ModelError> {
    let Some(given) = given else {
        return Ok((0..stages)
            .map(|s| {
                let v = default(s);
                if dims == 2 { [1, v, v] } else { [v, v, v] }
            })
            .collect());
    };
    if given.len() != stages {
        return Err(ModelError::Config(format!(
            "{key} has {} entries but features has {stages} stages",
            given.len()
        )));
    }
    given
        .iter()
        .enumerate()
        .map(|(s, v)| match (dims, v.as_slice()) {
            (2, [h, w]) => Ok([1, *h, *w]),
            (3, [d, h, w]) => Ok([*d, *h, *w]),
            _ => Err(ModelError::Config(format!(
                "{key}[{s}] = {v:?} must have {dims} values (one per axis)"
            ))),
        })
        .collect()
}
