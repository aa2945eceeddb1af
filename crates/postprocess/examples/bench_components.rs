//! Timings of connected components and hole filling on a 256³ mask of random blobs.
//! `cargo run --release -p medseg-postprocess --example bench_components [SIZE]`
//!
//! With `MEDSEG_BENCH_OUT=DIR` the mask is also written as `DIR/components_mask.nii.gz` (uint8)
//! so scipy.ndimage.label / binary_fill_holes can run on exactly the same array.

use medseg_postprocess::{Connectivity, fill_holes, label_components};
use medseg_volume::{Geometry, Volume, WriteOptions, write_volume};
use ndarray::Array3;
use std::time::Instant;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    // Deterministic blobs: spheres on a jittered lattice plus hollow shells (holes to fill).
    let mut mask = Array3::from_elem((n, n, n), false);
    let mut state = 0x9E3779B97F4A7C15u64;
    let mut rnd = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let count = (n / 16).pow(3);
    for _ in 0..count {
        let c = [rnd() * n as f64, rnd() * n as f64, rnd() * n as f64];
        let r = 2.0 + rnd() * 8.0;
        let hollow = rnd() < 0.3;
        let lo = |x: f64| (x - r).floor().max(0.0) as usize;
        let hi = |x: f64| ((x + r).ceil() as usize + 1).min(n);
        for k in lo(c[0])..hi(c[0]) {
            for j in lo(c[1])..hi(c[1]) {
                for i in lo(c[2])..hi(c[2]) {
                    let d = ((k as f64 - c[0]).powi(2)
                        + (j as f64 - c[1]).powi(2)
                        + (i as f64 - c[2]).powi(2))
                    .sqrt();
                    if d <= r && (!hollow || d >= r - 1.5) {
                        mask[[k, j, i]] = true;
                    }
                }
            }
        }
    }
    let fg = mask.iter().filter(|&&v| v).count();
    println!(
        "mask {n}^3, {fg} foreground voxels ({:.1}%)",
        100.0 * fg as f64 / mask.len() as f64
    );
    if let Some(out) = std::env::var_os("MEDSEG_BENCH_OUT") {
        let out = std::path::Path::new(&out);
        std::fs::create_dir_all(out).expect("output folder");
        let v = Volume::new(mask.mapv(u8::from), Geometry::with_spacing([1.0; 3]));
        write_volume(
            &out.join("components_mask.nii.gz"),
            &v,
            &WriteOptions::default(),
        )
        .expect("write mask");
    }
    for (name, conn) in [
        ("6", Connectivity::Faces),
        ("18", Connectivity::Edges),
        ("26", Connectivity::Corners),
    ] {
        let t = Instant::now();
        let cc = label_components(mask.view(), conn);
        println!(
            "connected components {name:>2}-conn: {:8.1} ms ({} components)",
            t.elapsed().as_secs_f64() * 1e3,
            cc.count()
        );
    }
    for (name, conn) in [("6", Connectivity::Faces), ("26", Connectivity::Corners)] {
        let t = Instant::now();
        let f = fill_holes(mask.view(), conn);
        let added = f.iter().filter(|&&v| v).count() - fg;
        println!(
            "fill holes {name:>2}-conn background: {:8.1} ms ({added} voxels filled)",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
}
