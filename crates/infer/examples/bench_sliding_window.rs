//! Sliding-window inference timing (issue 7): an untrained 3D UNet (features 8-16-32-64, two
//! classes) over a random 256x192x48 (i x j x k) volume, ROI 64³, overlap 0.5, Gaussian
//! weighting, no TTA, one window per forward call, on `Device::flex()`.
//!
//! `RAYON_NUM_THREADS=2 cargo run --release -p medseg-infer --example bench_sliding_window [-- REPEATS]`
//!
//! Prints one JSON line: the median wall time of REPEATS (default 3) timed runs after one
//! warm-up, the number of windows, and the fraction of the time spent outside the network's
//! forward (window extraction, padding, Gaussian weighting, accumulation, softmax).
//! MONAI's side of the comparison, and the command that runs it: BENCHMARKS.md.

use burn::tensor::Device;
use medseg_infer::{NetworkForward, SlidingWindow};
use medseg_model::UNetConfig;
use ndarray::Array4;
use std::time::{Duration, Instant};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // as in the medseg binary
    medseg_kernels::alloc::keep_freed_memory();
    let repeats: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let device = Device::flex();
    let config = UNetConfig::plain(3, 1, 2, &[8, 16, 32, 64], &[64, 64, 64]).expect("valid config");
    let model = config.init(&device);
    let net = NetworkForward {
        model: &model,
        device: device.clone(),
    };
    // Random standard-normal-like values (uniform with unit variance): the network is untrained,
    // so only the shape matters for timing.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut uniform = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let shape = (1, 48, 192, 256); // [c, k, j, i]
    let image = Array4::from_shape_simple_fn(shape, || (uniform() - 0.5) * 3.464);
    let window = SlidingWindow {
        overlap: 0.5,
        gaussian: true,
        tta: false,
        batch_size: 1,
        ..SlidingWindow::new([64, 64, 64])
    };
    let n_windows = window.windows([64, 192, 256]).len();

    let mut totals = Vec::new();
    let mut overheads = Vec::new();
    let mut forwards = Vec::new();
    for run in 0..=repeats {
        let mut in_forward = Duration::ZERO;
        let mut calls = 0usize;
        let mut forward = |x| {
            let t = Instant::now();
            let y = net.forward(x);
            in_forward += t.elapsed();
            calls += 1;
            y
        };
        let t = Instant::now();
        let probs = window
            .predict(image.view(), &mut forward, &mut |_, _| {})
            .expect("sliding window");
        let total = t.elapsed().as_secs_f64();
        std::hint::black_box(probs);
        assert_eq!(calls, n_windows, "one forward call per window");
        if run == 0 {
            continue; // warm-up
        }
        let fwd = in_forward.as_secs_f64();
        totals.push(total);
        forwards.push(fwd);
        overheads.push((total - fwd) / total);
    }
    println!(
        "{{\"bench\": \"sliding_window_256x192x48_roi64\", \"threads\": {}, \"n_windows\": {}, \"repeats\": {}, \"times_s\": {:?}, \"median_s\": {:.4}, \"forward_median_s\": {:.4}, \"overhead_fraction_median\": {:.4}, \"windows_per_s\": {:.3}}}",
        rayon::current_num_threads(),
        n_windows,
        repeats,
        totals,
        median(totals.clone()),
        median(forwards),
        median(overheads),
        n_windows as f64 / median(totals.clone()),
    );
}
