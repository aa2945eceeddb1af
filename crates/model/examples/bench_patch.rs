//! Times the plain 3D UNet train step and forward pass at any patch shape (the binary's
//! `medseg bench train-step` takes one size for all axes), printing the `BenchResult` as one
//! JSON object. Usage: `cargo run --release -p medseg-model --example bench_patch --
//! [d,h,w] [batch] [steps] [features]` (defaults: 48,48,32 2 5 8,16,32,64). As in the binary,
//! `MEDSEG_CONV=burn` runs burn's built-in ops instead of medseg's kernels.

use medseg_kernels::ops::{Kernels, set_kernels};
use medseg_model::bench::{BenchOptions, run_train_step};

fn list(s: Option<&String>, default: &[usize]) -> Vec<usize> {
    s.map(|s| s.split(',').filter_map(|v| v.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

fn main() {
    // as in the medseg binary
    medseg_kernels::alloc::keep_freed_memory();
    if let Some(k) = std::env::var("MEDSEG_CONV")
        .ok()
        .and_then(|v| Kernels::parse(&v))
    {
        set_kernels(k);
    }
    let a: Vec<String> = std::env::args().skip(1).collect();
    let patch = list(a.first(), &[48, 48, 32]);
    let batch = a.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let steps = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let features = list(a.get(3), &[8, 16, 32, 64]);
    let o = BenchOptions {
        dims: patch.len(),
        patch_shape: Some(patch),
        batch,
        steps,
        features,
        ..BenchOptions::default()
    };
    match run_train_step(&o) {
        Ok(r) => match serde_json_line(&r) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("error: {e}"),
        },
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

fn serde_json_line(r: &medseg_model::bench::BenchResult) -> Result<String, String> {
    serde_json::to_string(r).map_err(|e| e.to_string())
}
