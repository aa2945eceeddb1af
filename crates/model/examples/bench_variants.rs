//! Times the train step and forward pass of every network variant (the numbers in the model
//! crate's report). Usage: `cargo run --release -p medseg-model --example bench_variants --
//! [dims] [patch] [batch] [steps] [variants,...] [features,...]` (defaults: 3 64 2 3 all
//! 8,16,32,64).

use medseg_config::{BottleneckKind, ModelConfig};
use medseg_model::bench::{BenchOptions, run_train_step};

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: usize| a.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (dims, patch, batch, steps) = (arg(0, 3), arg(1, 64), arg(2, 2), arg(3, 3));
    let which: Vec<String> = a
        .get(4)
        .map(|s| s.split(',').map(String::from).collect())
        .unwrap_or_default();
    let features: Vec<usize> = a
        .get(5)
        .map(|s| s.split(',').filter_map(|v| v.parse().ok()).collect())
        .unwrap_or_else(|| vec![8, 16, 32, 64]);
    let base = ModelConfig {
        deep_supervision: false,
        ..ModelConfig::default()
    };
    let variants = [
        ("plain", base.clone()),
        (
            "maxpool",
            ModelConfig {
                downsample: "maxpool".into(),
                ..base.clone()
            },
        ),
        (
            "residual",
            ModelConfig {
                residual: true,
                ..base.clone()
            },
        ),
        (
            "attention",
            ModelConfig {
                attention_gates: true,
                ..base.clone()
            },
        ),
        (
            "dilated",
            ModelConfig {
                bottleneck: BottleneckKind::Dilated,
                ..base.clone()
            },
        ),
        (
            "transformer",
            ModelConfig {
                bottleneck: BottleneckKind::Transformer,
                ..base.clone()
            },
        ),
        (
            "deep_supervision",
            ModelConfig {
                deep_supervision: true,
                ..base.clone()
            },
        ),
    ];
    for (name, model) in variants {
        if !which.is_empty() && !which.iter().any(|w| w == name) {
            continue;
        }
        let o = BenchOptions {
            dims,
            patch,
            batch,
            steps,
            model,
            features: features.clone(),
            ..BenchOptions::default()
        };
        match run_train_step(&o) {
            Ok(r) => println!(
                "{{\"variant\": \"{name}\", \"train_step_ms\": {:.1}, \"forward_ms\": {:.1}, \"train_cpu_ms\": {:.0}, \"forward_cpu_ms\": {:.0}, \"peak_rss_mb\": {:.0}, \"parameters\": {}, \"phases_fwd_loss_bwd_opt_ms\": {:.0?}, \"train_times\": {:.0?}}}",
                r.train_step_ms,
                r.forward_ms,
                r.train_step_cpu_ms,
                r.forward_cpu_ms,
                r.peak_rss_mb,
                r.parameters,
                r.train_phases_ms,
                r.train_step_times_ms
            ),
            Err(e) => println!("{{\"variant\": \"{name}\", \"error\": \"{e}\"}}"),
        }
    }
}
