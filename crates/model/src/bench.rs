//! `medseg bench train-step`: times forward + Dice+CE + backward + Adam step on random data
//! (median after warm-up) and a forward-only pass, like nnU-Net's benchmark trainer and
//! the PyTorch reference whose command BENCHMARKS.md gives (no deep supervision, 2 classes,
//! Adam lr 1e-3 — same workload).

use crate::config::UNetConfig;
use crate::error::ModelError;
use crate::loss::SegLoss;
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Int, Tensor};
use serde::Serialize;
use std::time::Instant;

/// What to time. Defaults: 3D, 64 per axis, batch 2, features 8-16-32-64, 5 timed steps after
/// 1 warm-up step, 2 classes, 1 input channel.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub dims: usize,
    pub patch: usize,
    pub batch: usize,
    pub features: Vec<usize>,
    pub steps: usize,
    pub warmup: usize,
    pub classes: usize,
    pub seed: u64,
    /// Network variant switches as in `[model]` (default: plain UNet).
    pub model: medseg_config::ModelConfig,
    /// Patch size per axis (`dims` entries, e.g. `[48, 48, 32]`); overrides `patch` when set.
    /// Default `None`.
    pub patch_shape: Option<Vec<usize>>,
    /// Device to run on (training on its autodiff form). Default `Device::flex()`.
    pub device: Device,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            dims: 3,
            patch: 64,
            batch: 2,
            features: vec![8, 16, 32, 64],
            steps: 5,
            warmup: 1,
            classes: 2,
            seed: 0,
            model: medseg_config::ModelConfig {
                deep_supervision: false,
                ..Default::default()
            },
            patch_shape: None,
            device: Device::flex(),
        }
    }
}

/// Medians in milliseconds; peak RSS = VmHWM of this process (MB).
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub train_step_ms: f64,
    pub forward_ms: f64,
    pub peak_rss_mb: f64,
    /// Median CPU time (user + system, all threads) per train step: less sensitive to other
    /// load on the machine than wall time.
    pub train_step_cpu_ms: f64,
    pub forward_cpu_ms: f64,
    /// Median wall time of the train step's phases: `[forward, loss, backward, optimizer]`
    /// (flex runs eagerly, so each phase's work is done when it returns).
    pub train_phases_ms: [f64; 4],
    pub train_step_times_ms: Vec<f64>,
    pub forward_times_ms: Vec<f64>,
    pub input_shape: Vec<usize>,
    pub features: Vec<usize>,
    pub parameters: usize,
    pub first_loss: f32,
    pub last_loss: f32,
    /// Conv implementation used: "fast" (flex with the fast kernels) or "burn" (burn's own
    /// ops: other devices, or `MEDSEG_CONV=burn`).
    pub conv: String,
    /// The device, as burn prints it.
    pub device: String,
}

/// Runs the benchmark on `o.device` (its autodiff form for training). Steps end with a
/// device sync, so GPU timings include the queued work.
pub fn run_train_step(o: &BenchOptions) -> Result<BenchResult, ModelError> {
    if o.steps == 0 || o.batch == 0 {
        return Err(ModelError::Config(
            "steps and batch must be at least 1".into(),
        ));
    }
    let mut model_cfg = o.model.clone();
    model_cfg.dims = o.dims;
    model_cfg.features = Some(o.features.clone());
    let patch = match &o.patch_shape {
        Some(p) if p.len() == o.dims => p.clone(),
        Some(p) => {
            return Err(ModelError::Config(format!(
                "patch_shape {p:?} must have {} entries",
                o.dims
            )));
        }
        None => vec![o.patch; o.dims],
    };
    let cfg = UNetConfig::from_model_config(&model_cfg, 1, o.classes, &patch)?;
    let device = o.device.clone().autodiff();
    device.seed(o.seed);
    let mut model = cfg.init(&device);
    let parameters = model.num_params();
    let loss_fn = SegLoss::dice_ce(o.classes);
    let mut optim = AdamConfig::new().init();
    let shape = [
        o.batch,
        1,
        cfg.patch_size[0],
        cfg.patch_size[1],
        cfg.patch_size[2],
    ];
    let x = Tensor::<5>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let labels: Tensor<4, Int> = Tensor::<4>::random(
        [o.batch, shape[2], shape[3], shape[4]],
        Distribution::Uniform(0.0, o.classes as f64),
        &device,
    )
    .floor()
    .clamp(0.0, (o.classes - 1) as f64)
    .int();
    let ds = crate::DeepSupervisionLoss::new(loss_fn, cfg.num_outputs());
    let mut times = Vec::new();
    let mut cpu = Vec::new();
    let mut phases: [Vec<f64>; 4] = Default::default();
    let mut losses = Vec::new();
    for i in 0..o.warmup + o.steps {
        let t = Instant::now();
        let c = cpu_time_ms();
        let outs = model.forward_train(x.clone());
        let t_fwd = t.elapsed();
        let loss = ds.forward(outs, labels.clone())?;
        let t_loss = t.elapsed();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let t_bwd = t.elapsed();
        model = optim.step(1e-3, model, grads);
        losses.push(loss.into_scalar::<f32>());
        let _ = device.sync();
        let t_all = t.elapsed();
        if i >= o.warmup {
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
            for (k, v) in [
                ms(t_fwd),
                ms(t_loss - t_fwd),
                ms(t_bwd - t_loss),
                ms(t_all - t_bwd),
            ]
            .into_iter()
            .enumerate()
            {
                phases[k].push(v);
            }
            times.push(t.elapsed().as_secs_f64() * 1e3);
            cpu.push(cpu_time_ms() - c);
        }
    }
    let infer = model.valid();
    let xi = x.inner();
    let mut ftimes = Vec::new();
    let mut fcpu = Vec::new();
    for i in 0..o.warmup + o.steps {
        let t = Instant::now();
        let c = cpu_time_ms();
        let y = infer.forward_logits(xi.clone());
        let _ = y.sum().into_scalar::<f32>();
        if i >= o.warmup {
            ftimes.push(t.elapsed().as_secs_f64() * 1e3);
            fcpu.push(cpu_time_ms() - c);
        }
    }
    Ok(BenchResult {
        train_step_ms: median(&times),
        forward_ms: median(&ftimes),
        peak_rss_mb: peak_rss_mb().unwrap_or(f64::NAN),
        train_step_cpu_ms: median(&cpu),
        forward_cpu_ms: median(&fcpu),
        train_phases_ms: [
            median(&phases[0]),
            median(&phases[1]),
            median(&phases[2]),
            median(&phases[3]),
        ],
        train_step_times_ms: times,
        forward_times_ms: ftimes,
        input_shape: shape.to_vec(),
        features: o.features.clone(),
        parameters,
        first_loss: losses.first().copied().unwrap_or(f32::NAN),
        last_loss: losses.last().copied().unwrap_or(f32::NAN),
        conv: if medseg_kernels::ops::medseg_kernels_on(&device) {
            "fast".into()
        } else {
            "burn".into()
        },
        device: format!("{:?}", o.device),
    })
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// CPU time (user + system) of this process in ms, from /proc/self/stat (Linux; NaN elsewhere).
/// Assumes the usual 100 clock ticks per second.
pub fn cpu_time_ms() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // fields after the parenthesized command name: state is field 3, utime 14, stime 15
    let Some(rest) = s.rsplit_once(')').map(|(_, r)| r) else {
        return f64::NAN;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (tick(11) + tick(12)) * 10.0
}

/// Peak resident set size (VmHWM) of this process in MB (Linux; `None` elsewhere).
pub fn peak_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
