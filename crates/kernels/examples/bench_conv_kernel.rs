//! Times the raw conv kernels (`cpu::conv3d::{forward, input_grad, weight_grad}`) on the conv
//! shapes of the benchmark UNets, to see where a train step's conv time goes. Usage:
//! `cargo run --release -p medseg-kernels --example bench_conv_kernel -- [3|2|wide] [reps]`
//! (3D: batch 2, 64³, features 8-16-32-64; 2D: batch 8, 256², features 16-32-64-128;
//! wide: nnU-Net's 3D widths 32-64-128-256-320, batch 2, 64³; hippo: the nnU-Net Hippocampus
//! network, 32-64-128-256, batch 1, 40x56x40).
//! Prints one line per shape and phase: milliseconds per call (median) and GFLOP/s.

use medseg_kernels::cpu::conv3d::{ConvShape, forward, input_grad, weight_grad};
use std::time::Instant;

fn median_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn main() {
    // as in the medseg binary
    medseg_kernels::alloc::keep_freed_memory();
    let a: Vec<String> = std::env::args().skip(1).collect();
    let mode = a.first().map_or("3", String::as_str);
    let reps: usize = a.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let dims = if mode == "2" { 2 } else { 3 };
    let (n, size, feats): (usize, [usize; 3], &[usize]) = match mode {
        "2" => (8, [1, 256, 256], &[16, 32, 64, 128]),
        "wide" => (2, [64, 64, 64], &[32, 64, 128, 256, 320]),
        "hippo" => (1, [40, 56, 40], &[32, 64, 128, 256]),
        _ => (2, [64, 64, 64], &[8, 16, 32, 64]),
    };
    let k = if dims == 3 { [3, 3, 3] } else { [1, 3, 3] };
    let down = if dims == 3 { [2, 2, 2] } else { [1, 2, 2] };
    // (ci, co, spatial, stride): encoder convs, decoder convs (after the skip concat)
    let mut shapes = Vec::new();
    let mut sp = size;
    let mut ci = 1;
    for (i, &f) in feats.iter().enumerate() {
        let stride = if i == 0 { [1; 3] } else { down };
        shapes.push((ci, f, sp, stride));
        sp = std::array::from_fn(|a| sp[a] / stride[a]);
        shapes.push((f, f, sp, [1; 3]));
        ci = f;
    }
    let mut total = [0.0f64; 3];
    // optional third argument: only the shapes with this many input channels
    let only: Option<usize> = a.get(2).and_then(|s| s.parse().ok());
    for &(ci, co, spatial, stride) in &shapes {
        if only.is_some_and(|c| c != ci) {
            continue;
        }
        let s = ConvShape {
            n,
            ci,
            co,
            spatial,
            kernel: k,
            stride,
            dilation: 1,
        };
        let out: usize = s.out().iter().product();
        let x = vec![0.5f32; n * ci * spatial.iter().product::<usize>()];
        let w = vec![0.01f32; co * ci * k.iter().product::<usize>()];
        let g = vec![0.1f32; n * co * out];
        let flop = 2.0 * (n * co * out * ci * k.iter().product::<usize>()) as f64;
        let times = [
            median_ms(reps, || drop(forward(&x, &w, None, &s))),
            median_ms(reps, || drop(input_grad(&g, &w, &s))),
            median_ms(reps, || drop(weight_grad(&x, &g, &s))),
        ];
        for (t, v) in total.iter_mut().zip(&times) {
            *t += v;
        }
        println!(
            "ci {ci:>3} co {co:>3} in {spatial:?} stride {stride:?}: fwd {:.2} ms ({:.0} GFLOP/s), dX {:.2} ms ({:.0}), dW {:.2} ms ({:.0})",
            times[0],
            flop / times[0] / 1e6,
            times[1],
            flop / times[1] / 1e6,
            times[2],
            flop / times[2] / 1e6
        );
    }
    println!(
        "total: fwd {:.1} ms, dX {:.1} ms, dW {:.1} ms",
        total[0], total[1], total[2]
    );
}
