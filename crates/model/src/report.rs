//! What `medseg inspect --config` shows: per-stage feature-map shapes for the configured patch,
//! parameter count, receptive field and a training-memory estimate.

use crate::config::{Bottleneck, Downsample, UNetConfig};
use crate::error::ModelError;
use crate::shapes::{self, LayerKind, LayerShape};
use serde::Serialize;
use std::fmt::Write;

/// One encoder or decoder stage's output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageReport {
    pub stage: usize,
    /// `[channels, *spatial]` per sample (2D: `[C, H, W]`).
    pub shape: Vec<usize>,
    pub kernel: Vec<usize>,
    /// Downsampling factor into this stage (encoder) or upsampling factor (decoder).
    pub stride: Vec<usize>,
}

/// The network for one config and patch size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkReport {
    pub dims: usize,
    pub in_channels: usize,
    pub num_classes: usize,
    pub patch_size: Vec<usize>,
    pub batch_size: usize,
    pub norm: String,
    pub downsample: String,
    pub bottleneck: String,
    pub residual: bool,
    pub attention_gates: bool,
    pub deep_supervision: bool,
    pub encoder: Vec<StageReport>,
    /// Deepest decoder stage first.
    pub decoder: Vec<StageReport>,
    /// Shapes of the training outputs, full resolution first.
    pub outputs: Vec<Vec<usize>>,
    pub parameters: usize,
    /// Per axis, in input voxels; `None` = global (transformer bottleneck).
    pub receptive_field: Option<Vec<usize>>,
    /// Rough estimate, see [`shapes::train_memory_bytes`].
    pub train_memory_mb: f64,
    pub layers: Vec<LayerShape>,
}

impl NetworkReport {
    /// Walks `cfg` at its patch size; `batch_size` scales the memory estimate.
    pub fn new(cfg: &UNetConfig, batch_size: usize) -> Result<Self, ModelError> {
        cfg.validate_patch(&cfg.patch_size)?;
        let layers = shapes::plan_layers(cfg, &cfg.patch_size)?;
        let strip = |s: &[usize]| {
            if cfg.dims == 2 {
                s[1..].to_vec()
            } else {
                s.to_vec()
            }
        };
        let shape = |o: &[usize; 4]| {
            let mut v = vec![o[0]];
            v.extend(strip(&o[1..]));
            v
        };
        let n = cfg.num_stages();
        let last_of = |prefix: &str, kinds: &[LayerKind]| {
            layers
                .iter()
                .rev()
                .find(|l| l.name.starts_with(prefix) && kinds.contains(&l.kind))
                .map(|l| shape(&l.out))
        };
        let encoder = (0..n)
            .map(|s| StageReport {
                stage: s,
                shape: last_of(&format!("encoder.{s}."), &[LayerKind::Conv]).unwrap_or_default(),
                kernel: strip(&cfg.kernel_sizes[s]),
                stride: strip(&cfg.strides[s]),
            })
            .collect();
        let decoder = (0..n - 1)
            .rev()
            .map(|s| StageReport {
                stage: s,
                shape: last_of(&format!("decoder.{s}."), &[LayerKind::Conv]).unwrap_or_default(),
                kernel: strip(&cfg.kernel_sizes[s]),
                stride: strip(&cfg.strides[s + 1]),
            })
            .collect();
        let mut outputs: Vec<Vec<usize>> = layers
            .iter()
            .filter(|l| l.kind == LayerKind::Head)
            .map(|l| shape(&l.out))
            .collect();
        outputs.reverse();
        let parameters = cfg.num_params();
        let receptive_field = shapes::receptive_field(cfg, &layers).map(|r| strip(&r));
        let mem = shapes::train_memory_bytes(
            &layers,
            batch_size,
            parameters,
            &cfg.patch_size,
            cfg.in_channels,
            match &cfg.bottleneck {
                Bottleneck::Transformer { heads, .. } => *heads,
                _ => 0,
            },
        );
        Ok(Self {
            dims: cfg.dims,
            in_channels: cfg.in_channels,
            num_classes: cfg.num_classes,
            patch_size: cfg.patch_spatial(),
            batch_size,
            norm: format!("{:?}", cfg.norm).to_lowercase(),
            downsample: match cfg.downsample {
                Downsample::Conv => "conv".into(),
                Downsample::MaxPool => "maxpool".into(),
            },
            bottleneck: match &cfg.bottleneck {
                Bottleneck::Conv => "conv".into(),
                Bottleneck::Dilated { rates } => format!("dilated {rates:?}"),
                Bottleneck::Transformer { heads, layers } => {
                    format!("transformer ({layers} layer(s), {heads} heads)")
                }
            },
            residual: cfg.residual,
            attention_gates: cfg.attention_gates,
            deep_supervision: cfg.deep_supervision,
            encoder,
            decoder,
            outputs,
            parameters,
            receptive_field,
            train_memory_mb: mem as f64 / (1024.0 * 1024.0),
            layers,
        })
    }

    /// Human-readable table.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "UNet {}D: {} input channel(s), {} classes, patch {:?}, batch {}",
            self.dims, self.in_channels, self.num_classes, self.patch_size, self.batch_size
        );
        let _ = writeln!(
            s,
            "norm {}, downsampling {}, bottleneck {}, residual {}, attention gates {}, deep supervision {}",
            self.norm,
            self.downsample,
            self.bottleneck,
            self.residual,
            self.attention_gates,
            self.deep_supervision
        );
        let _ = writeln!(
            s,
            "\n{:<10} {:>5} {:<14} {:<12} output [C, spatial]",
            "stage", "", "kernel", "stride"
        );
        for st in &self.encoder {
            let _ = writeln!(
                s,
                "{:<10} {:>5} {:<14} {:<12} {:?}",
                "encoder",
                st.stage,
                fmt(&st.kernel),
                fmt(&st.stride),
                st.shape
            );
        }
        for st in &self.decoder {
            let _ = writeln!(
                s,
                "{:<10} {:>5} {:<14} {:<12} {:?}",
                "decoder",
                st.stage,
                fmt(&st.kernel),
                fmt(&st.stride),
                st.shape
            );
        }
        let _ = writeln!(s, "\noutputs (full resolution first): {:?}", self.outputs);
        let _ = writeln!(s, "parameters: {}", self.parameters);
        match &self.receptive_field {
            Some(r) => {
                let _ = writeln!(s, "receptive field: {} voxels", fmt(r));
            }
            None => {
                let _ = writeln!(s, "receptive field: global (transformer bottleneck)");
            }
        }
        let _ = writeln!(
            s,
            "training memory (estimate, batch {}): {:.0} MB",
            self.batch_size, self.train_memory_mb
        );
        s
    }
}

fn fmt(v: &[usize]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join("x")
}
