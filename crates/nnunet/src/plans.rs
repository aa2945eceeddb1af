//! `plans.json`: nnU-Net's experiment plans (nnunetv2 `PlansManager` / `ConfigurationManager`).
//! Only what inference reads is typed; unknown keys are ignored, as nnU-Net ignores them.

use crate::error::NnUnetError;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The plans of one model folder.
#[derive(Debug, Clone)]
pub struct Plans {
    pub path: PathBuf,
    pub plans_name: String,
    /// Array axis order of the network: `network = input.transpose(transpose_forward)`.
    pub transpose_forward: [usize; 3],
    pub transpose_backward: [usize; 3],
    /// Per input channel (`"0"`, `"1"`, ...): foreground intensity statistics of the training
    /// set (CT normalization reads them).
    pub intensity_properties: BTreeMap<String, IntensityProperties>,
    raw_configurations: Map<String, Value>,
}

/// `foreground_intensity_properties_per_channel[c]`.
#[derive(Debug, Clone, Deserialize)]
pub struct IntensityProperties {
    pub mean: f64,
    pub std: f64,
    pub percentile_00_5: f64,
    pub percentile_99_5: f64,
}

/// One resolved configuration (`3d_fullres`, `2d`, ...), inheritance applied.
#[derive(Debug, Clone, Deserialize)]
pub struct Configuration {
    #[serde(skip)]
    pub name: String,
    /// 2 or 3 entries, in network (transposed) axis order.
    pub patch_size: Vec<usize>,
    /// Target spacing, network axis order (2D: the in-plane pair).
    pub spacing: Vec<f64>,
    pub normalization_schemes: Vec<String>,
    pub use_mask_for_norm: Vec<bool>,
    #[serde(default)]
    pub resampling_fn_data: Option<String>,
    #[serde(default)]
    pub resampling_fn_data_kwargs: Option<ResamplingKwargs>,
    #[serde(default)]
    pub resampling_fn_probabilities: Option<String>,
    #[serde(default)]
    pub resampling_fn_probabilities_kwargs: Option<ResamplingKwargs>,
    pub architecture: Architecture,
    #[serde(default)]
    pub previous_stage: Option<String>,
    #[serde(default)]
    pub preprocessor_name: Option<String>,
}

/// `resampling_fn_*_kwargs` of `resample_data_or_seg_to_shape`.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct ResamplingKwargs {
    pub is_seg: bool,
    pub order: usize,
    pub order_z: usize,
    pub force_separate_z: Option<bool>,
}

/// `architecture`: the network class and its constructor arguments.
#[derive(Debug, Clone, Deserialize)]
pub struct Architecture {
    pub network_class_name: String,
    pub arch_kwargs: ArchKwargs,
}

/// `architecture.arch_kwargs` (dynamic_network_architectures' constructor arguments).
#[derive(Debug, Clone, Deserialize)]
pub struct ArchKwargs {
    pub n_stages: usize,
    pub features_per_stage: Vec<usize>,
    pub conv_op: String,
    pub kernel_sizes: Vec<Vec<usize>>,
    pub strides: Vec<Vec<usize>>,
    /// PlainConvUNet.
    #[serde(default)]
    pub n_conv_per_stage: Option<Vec<usize>>,
    /// ResidualEncoderUNet.
    #[serde(default)]
    pub n_blocks_per_stage: Option<Vec<usize>>,
    pub n_conv_per_stage_decoder: Vec<usize>,
    pub conv_bias: bool,
    pub norm_op: Option<String>,
    #[serde(default)]
    pub norm_op_kwargs: Option<Map<String, Value>>,
    #[serde(default)]
    pub dropout_op: Option<String>,
    pub nonlin: Option<String>,
    #[serde(default)]
    pub nonlin_kwargs: Option<Map<String, Value>>,
    /// ResidualEncoderUNet's stem width (default: `features_per_stage[0]`).
    #[serde(default)]
    pub stem_channels: Option<usize>,
    #[serde(default)]
    pub block: Option<String>,
    #[serde(default)]
    pub bottleneck_channels: Option<Value>,
    #[serde(default)]
    pub squeeze_excitation: Option<bool>,
    #[serde(default)]
    pub stochastic_depth_p: Option<f64>,
}

#[derive(Deserialize)]
struct RawPlans {
    plans_name: String,
    transpose_forward: Vec<usize>,
    transpose_backward: Vec<usize>,
    configurations: Map<String, Value>,
    #[serde(default)]
    foreground_intensity_properties_per_channel: BTreeMap<String, IntensityProperties>,
}

impl Plans {
    pub fn read(path: &Path) -> Result<Self, NnUnetError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| NnUnetError::file(path, format!("cannot read: {e}")))?;
        let raw: RawPlans = serde_json::from_str(&text)
            .map_err(|e| NnUnetError::file(path, format!("not an nnU-Net v2 plans file: {e}")))?;
        let axes = |v: &[usize], key: &str| -> Result<[usize; 3], NnUnetError> {
            let mut sorted = v.to_vec();
            sorted.sort_unstable();
            if sorted != [0, 1, 2] {
                return Err(NnUnetError::file(
                    path,
                    format!("{key} {v:?} is not a permutation of [0, 1, 2]"),
                ));
            }
            Ok([v[0], v[1], v[2]])
        };
        Ok(Plans {
            path: path.to_path_buf(),
            plans_name: raw.plans_name,
            transpose_forward: axes(&raw.transpose_forward, "transpose_forward")?,
            transpose_backward: axes(&raw.transpose_backward, "transpose_backward")?,
            intensity_properties: raw.foreground_intensity_properties_per_channel,
            raw_configurations: raw.configurations,
        })
    }

    /// The configuration names the plans define.
    pub fn configuration_names(&self) -> Vec<String> {
        self.raw_configurations.keys().cloned().collect()
    }

    /// `name` with `inherits_from` resolved (the child's keys overwrite the parent's), as
    /// nnunetv2's `PlansManager._internal_resolve_configuration_inheritance`.
    pub fn configuration(&self, name: &str) -> Result<Configuration, NnUnetError> {
        let resolved = self.resolve(name, 0)?;
        let mut c: Configuration = serde_json::from_value(Value::Object(resolved))
            .map_err(|e| NnUnetError::file(&self.path, format!("configuration {name}: {e}")))?;
        c.name = name.to_string();
        Ok(c)
    }

    fn resolve(&self, name: &str, depth: usize) -> Result<Map<String, Value>, NnUnetError> {
        let Some(Value::Object(own)) = self.raw_configurations.get(name) else {
            return Err(NnUnetError::file(
                &self.path,
                format!(
                    "no configuration {name:?} (the plans have {})",
                    self.configuration_names().join(", ")
                ),
            ));
        };
        let parent = match own.get("inherits_from") {
            Some(Value::String(p)) if depth < 8 => Some(self.resolve(p, depth + 1)?),
            Some(Value::String(_)) => {
                return Err(NnUnetError::file(
                    &self.path,
                    format!("configuration {name}: inherits_from forms a cycle"),
                ));
            }
            _ => None,
        };
        let mut merged = parent.unwrap_or_default();
        for (k, v) in own {
            merged.insert(k.clone(), v.clone());
        }
        Ok(merged)
    }
}

impl Configuration {
    /// 2 for a `2d` configuration (slice-wise along network axis 0), else 3.
    pub fn dims(&self) -> usize {
        self.patch_size.len()
    }
}
