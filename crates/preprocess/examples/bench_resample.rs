//! Timing of the benchmark resampling: a 512x512x300 CT-like volume (int16 values, held as
//! f32) from 0.7 x 0.7 x 2.5 mm to 1.5 mm isotropic.
//! `cargo run --release -p medseg-preprocess --example bench_resample [I J K]`
//!
//! With `MEDSEG_BENCH_OUT=DIR` the input is also written as `DIR/ct_resample.nii.gz` (int16,
//! same geometry) so a reference resampler can load exactly the same array.

use medseg_preprocess::{Grid, Interpolation, ResampleOptions, resample, separate_z_axis};
use medseg_volume::{Geometry, Volume, WriteOptions, write_volume};
use ndarray::Array3;
use std::time::Instant;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect();
    let (ni, nj, nk) = if args.len() == 3 {
        (args[0], args[1], args[2])
    } else {
        (512, 512, 300)
    };
    let t = Instant::now();
    // CT-like: air outside a body ellipse, soft tissue with texture, a bright "spine"
    let data = Array3::from_shape_fn((nk, nj, ni), |(k, j, i)| {
        let x = (i as f32 - ni as f32 / 2.0) / (ni as f32 * 0.4);
        let y = (j as f32 - nj as f32 / 2.0) / (nj as f32 * 0.3);
        if x * x + y * y > 1.0 {
            -1000.0
        } else if (x * x + (y - 0.6).powi(2)) < 0.01 {
            700.0
        } else {
            (40.0 + 30.0 * ((i * 7 + j * 3 + k * 11) % 17) as f32 / 17.0).round()
        }
    });
    println!(
        "input {ni}x{nj}x{nk} (i x j x k) built in {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let mut g = Geometry::with_spacing([0.7, 0.7, 2.5]);
    g.origin = [-180.0, -180.0, -400.0];
    if let Some(out) = std::env::var_os("MEDSEG_BENCH_OUT") {
        let out = std::path::Path::new(&out);
        std::fs::create_dir_all(out).expect("output folder");
        let v = Volume::new(data.mapv(|x| x as i16), g);
        write_volume(
            &out.join("ct_resample.nii.gz"),
            &v,
            &WriteOptions::default(),
        )
        .expect("write input");
    }
    let dst = Grid::new(g, [nk, nj, ni]).with_spacing([1.5; 3]);
    println!(
        "output {:?} (k, j, i), {} threads",
        dst.shape_kji,
        rayon::current_num_threads()
    );
    let runs: [(&str, Interpolation, Option<usize>); 4] = [
        ("linear", Interpolation::Linear, None),
        (
            "linear, separate z (nearest across slices)",
            Interpolation::Linear,
            separate_z_axis(g.spacing, [1.5; 3], 3.0),
        ),
        ("nearest", Interpolation::Nearest, None),
        ("cubic", Interpolation::Cubic, None),
    ];
    for (name, interp, nearest_axis) in runs {
        let opts = ResampleOptions {
            interpolation: interp,
            nearest_axis,
            ..Default::default()
        };
        let mut times = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let out = resample(data.view(), &g, &dst, &opts).expect("valid geometry");
            times.push(t.elapsed().as_secs_f64());
            std::hint::black_box(out);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "resample {name:<45} best of 3: {:8.1} ms, median {:8.1} ms",
            times[0] * 1e3,
            times[1] * 1e3
        );
    }
}
