//! `medseg bench train-step`: how fast one training step and one forward pass run.

use super::args::{DeviceArgs, ThreadArgs};
use anyhow::{Result, bail};
use clap::ValueEnum;
use medseg_config::{BottleneckKind, ModelConfig};
use medseg_model::bench::{BenchOptions, run_train_step};

/// Measure speed (e.g. `medseg bench train-step`).
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum BenchWhat {
    /// Time one training step and one forward pass of a UNet on random data.
    ///
    /// A step is forward + Dice+CE + backward + Adam; the times are medians after one warm-up
    /// step. Plain UNet (no deep supervision unless asked),
    /// 1 input channel, 2 classes, instance norm, strided-conv downsampling, Adam lr 1e-3.
    /// Default device: CPU (flex backend with medseg's conv kernels; threads: --threads or
    /// RAYON_NUM_THREADS); `--device wgpu` on a GPU build.
    TrainStep(TrainStepArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct TrainStepArgs {
    /// 2 or 3 spatial dimensions.
    #[arg(long, default_value_t = 3, value_name = "2|3")]
    pub dims: usize,
    /// Patch size per axis in voxels (must be divisible by 2^(stages-1)).
    #[arg(long, default_value_t = 64, value_name = "VOXELS")]
    pub patch: usize,
    /// Patches per batch.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub batch: usize,
    /// Features per stage, comma-separated.
    #[arg(
        long,
        default_value = "8,16,32,64",
        value_delimiter = ',',
        value_name = "N,N,..."
    )]
    pub features: Vec<usize>,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub steps: usize,
    /// Network variant.
    #[arg(long, value_enum, default_value_t = Variant::Conv, value_name = "VARIANT")]
    pub variant: Variant,
    /// Train with deep-supervision heads and nnU-Net's weighted loss over them.
    #[arg(long)]
    pub deep_supervision: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub threads: ThreadArgs,
    /// Print `{"train_step_ms", "forward_ms", "peak_rss_mb", "threads", ...}` as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The network variants `bench train-step` can time.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Plain UNet (the default `[model]`).
    #[value(alias = "plain")]
    Conv,
    /// Residual blocks.
    Residual,
    /// Attention gates on the skip connections.
    Attention,
    /// Dilated-convolution bottleneck.
    Dilated,
    /// Transformer bottleneck.
    Transformer,
    /// Max-pooling instead of strided-convolution downsampling.
    Maxpool,
}

impl Variant {
    /// The model config of this variant, on top of `base`.
    fn model_config(self, base: ModelConfig) -> ModelConfig {
        match self {
            Variant::Conv => base,
            Variant::Residual => ModelConfig {
                residual: true,
                ..base
            },
            Variant::Attention => ModelConfig {
                attention_gates: true,
                ..base
            },
            Variant::Dilated => ModelConfig {
                bottleneck: BottleneckKind::Dilated,
                ..base
            },
            Variant::Transformer => ModelConfig {
                bottleneck: BottleneckKind::Transformer,
                ..base
            },
            Variant::Maxpool => ModelConfig {
                downsample: "maxpool".into(),
                ..base
            },
        }
    }
}

/// Runs `bench ...`.
pub fn run_bench(args: &BenchArgs) -> Result<()> {
    match &args.what {
        BenchWhat::TrainStep(a) => run_train_step_bench(a),
    }
}

fn run_train_step_bench(a: &TrainStepArgs) -> Result<()> {
    a.threads.apply()?;
    if a.dims != 2 && a.dims != 3 {
        bail!("--dims must be 2 or 3, got {}", a.dims);
    }
    let model = a.variant.model_config(ModelConfig {
        deep_supervision: a.deep_supervision,
        ..ModelConfig::default()
    });
    a.device.device.announce()?;
    let device = medseg_model::select_device(&a.device.device.name())?;
    let opts = BenchOptions {
        device,
        dims: a.dims,
        patch: a.patch,
        batch: a.batch,
        features: a.features.clone(),
        steps: a.steps,
        model,
        ..BenchOptions::default()
    };
    let r = run_train_step(&opts)?;
    let variant = a
        .variant
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default();
    let threads = rayon::current_num_threads();
    if a.json {
        let mut json = serde_json::to_value(&r)?;
        json["threads"] = threads.into();
        println!("{json}");
    } else {
        println!(
            "{}D train step {:?} features {:?} ({} parameters, variant {}, device {}, {} threads): {:.1} ms; forward {:.1} ms; peak RSS {:.0} MB",
            a.dims,
            r.input_shape,
            r.features,
            r.parameters,
            variant,
            r.device,
            threads,
            r.train_step_ms,
            r.forward_ms,
            r.peak_rss_mb
        );
    }
    Ok(())
}
