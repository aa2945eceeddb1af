//! HD95 + ASSD + NSD for one 256x256x128 mask pair at 0.8x0.8x2.5 mm (the benchmark).
//!
//! `cargo run --release -p medseg-eval --example bench_surface [-- REPEATS]`
//! Prints one JSON line: `surface_only_median_ms` (HD95 + ASSD + NSD from binary masks, what
//! the MONAI reference times) and the best and median wall time of the whole `evaluate_pair` (MONAI's reference: its
//! HausdorffDistanceMetric + SurfaceDistanceMetric + SurfaceDiceMetric on the same pair).
//!
//! With `MEDSEG_BENCH_OUT=DIR` it also writes the pair as `DIR/pred.nii.gz` and `DIR/gt.nii.gz`
//! (uint8), and 20 cases with varied phases as `DIR/pred/case_NNN.nii.gz` and
//! `DIR/gt/case_NNN.nii.gz` for timing `medseg evaluate` against a Python loop on the same files.

use medseg_eval::{EvalOptions, evaluate_pair};
use medseg_volume::{Geometry, Volume, WriteOptions, write_volume};
use ndarray::Array3;
use std::time::Instant;

/// A smooth blob: an ellipsoid whose radius is modulated by low-frequency waves, so its
/// surface is irregular like an organ's.
fn blob(
    shape: (usize, usize, usize),
    centre: [f64; 3],
    radii: [f64; 3],
    phase: f64,
) -> Array3<u16> {
    Array3::from_shape_fn(shape, |(k, j, i)| {
        let d = [
            (k as f64 - centre[0]) / radii[0],
            (j as f64 - centre[1]) / radii[1],
            (i as f64 - centre[2]) / radii[2],
        ];
        let r = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
        let wobble = 0.08 * (3.0 * d[1] + phase).sin() * (2.0 * d[2] - phase).cos()
            + 0.05 * (5.0 * d[0] + 2.0 * phase).sin();
        u16::from(r < 1.0 + wobble)
    })
}

/// Writes the benchmark pair and 20 varied cases (uint8 label maps) under `out`.
fn write_inputs(
    out: &std::path::Path,
    shape: (usize, usize, usize),
    geometry: Geometry,
    pred: &Volume<u16>,
    gt: &Volume<u16>,
) {
    let opts = WriteOptions::default();
    let to_u8 = |v: &Volume<u16>| v.map(|&x| x as u8);
    for dir in ["pred", "gt"] {
        std::fs::create_dir_all(out.join(dir)).expect("output folder");
    }
    write_volume(&out.join("pred.nii.gz"), &to_u8(pred), &opts).expect("write pred");
    write_volume(&out.join("gt.nii.gz"), &to_u8(gt), &opts).expect("write gt");
    for c in 0..20 {
        let phase = 0.1 * c as f64;
        let g = blob(shape, [64.0, 128.0, 128.0], [30.0, 70.0, 80.0], phase);
        let p = blob(shape, [66.0, 125.0, 131.0], [29.0, 72.0, 78.0], phase + 0.4);
        let name = format!("case_{c:03}.nii.gz");
        write_volume(
            &out.join("gt").join(&name),
            &Volume::new(g.mapv(|x| x as u8), geometry),
            &opts,
        )
        .expect("write gt case");
        write_volume(
            &out.join("pred").join(&name),
            &Volume::new(p.mapv(|x| x as u8), geometry),
            &opts,
        )
        .expect("write pred case");
    }
}

fn main() {
    let repeats: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let shape = (128, 256, 256); // [k, j, i] = 256 x 256 x 128 (i, j, k)
    let geometry = Geometry::with_spacing([0.8, 0.8, 2.5]);
    let gt = Volume::new(
        blob(shape, [64.0, 128.0, 128.0], [30.0, 70.0, 80.0], 0.0),
        geometry,
    );
    let pred = Volume::new(
        blob(shape, [66.0, 125.0, 131.0], [29.0, 72.0, 78.0], 0.4),
        geometry,
    );
    if let Some(out) = std::env::var_os("MEDSEG_BENCH_OUT") {
        write_inputs(std::path::Path::new(&out), shape, geometry, &pred, &gt);
    }
    let opts = EvalOptions {
        surface_metrics: std::env::var_os("NO_SURFACE").is_none(),
        ..EvalOptions::default()
    };
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        let m = evaluate_pair(&pred, &gt, &[1], &opts).expect("same grid");
        times.push(t.elapsed().as_secs_f64() * 1e3);
        last = Some(m);
    }
    times.sort_by(f64::total_cmp);
    // The like-for-like part: HD95 + ASSD + NSD from binary masks built beforehand, as the
    // MONAI reference receives them (evaluate_pair above also counts every overlap metric).
    let (pm, gm) = (pred.data.mapv(|v| v == 1), gt.data.mapv(|v| v == 1));
    let sp = geometry.spacing;
    let mut surface_times = Vec::new();
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        let d = medseg_eval::distances::surface_distances(
            pm.view(),
            gm.view(),
            [sp[2], sp[1], sp[0]],
            false,
        )
        .expect("non-empty masks");
        let s = d.stats(1.0);
        surface_times.push(t.elapsed().as_secs_f64() * 1e3);
        assert!((s.hd95 - 8.5).abs() < 1e-9);
    }
    surface_times.sort_by(f64::total_cmp);
    let m = &last.expect("at least one run").labels[&1];
    println!(
        "{{\"bench\": \"surface_metrics_256x256x128\", \"threads\": {}, \"surface_only_median_ms\": {:.1}, \"best_ms\": {:.1}, \"median_ms\": {:.1}, \"repeats\": {}, \"dice\": {:.6}, \"hd95_mm\": {:.6}, \"assd_mm\": {:.6}, \"nsd\": {:.6}, \"n_surface_pred\": {}, \"n_surface_gt\": {}}}",
        rayon::current_num_threads(),
        surface_times[surface_times.len() / 2],
        times[0],
        times[times.len() / 2],
        times.len(),
        m.dice.unwrap_or(f64::NAN),
        m.hd95.unwrap_or(f64::NAN),
        m.assd.unwrap_or(f64::NAN),
        m.nsd.unwrap_or(f64::NAN),
        m.n_surface_pred.unwrap_or(0),
        m.n_surface_gt.unwrap_or(0),
    );
}
