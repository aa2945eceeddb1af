//! Read/write speed of 256³ float32 `.nii.gz` volumes (CT-like and noisy MR-like contents).
//!
//! `cargo run --release -p medseg-volume --example bench_nifti -- [OUT_DIR] [REPEATS]`
//! writes `ct_like.nii.gz` and `mr_like.nii.gz` to OUT_DIR (default /tmp/medseg-bench) and
//! prints the median write and read times as JSON. Compare with nibabel on the same files:
//! `python -c "import nibabel as nib,time; t=time.perf_counter(); nib.load(P).get_fdata(dtype='float32'); print(time.perf_counter()-t)"`.

use medseg_volume::{Geometry, Volume, WriteOptions, read_volume, write_volume};
use ndarray::Array3;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let out = std::path::PathBuf::from(args.next().unwrap_or_else(|| "/tmp/medseg-bench".into()));
    let repeats: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(3);
    std::fs::create_dir_all(&out).expect("output folder");
    let n = 256;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    // CT-like: air -1000 outside a body ellipsoid of soft tissue (~40 HU) with bone, in integer
    // HU steps (what a CT stored as float looks like); MR-like: smooth signal plus noise.
    let ct = Array3::from_shape_fn((n, n, n), |(k, j, i)| {
        let (x, y, z) = (
            (i as f32 - 128.0) / 110.0,
            (j as f32 - 128.0) / 90.0,
            (k as f32 - 128.0) / 120.0,
        );
        let r = x * x + y * y + z * z;
        if r > 1.0 {
            -1000.0
        } else if r < 0.05 {
            700.0
        } else {
            40.0 + ((i * 7 + j * 3 + k) % 11) as f32
        }
    });
    let mr = Array3::from_shape_fn((n, n, n), |(k, j, i)| {
        let s = ((i as f32) * 0.05).sin() * ((j as f32) * 0.03).cos() * 300.0 + 500.0 + k as f32;
        s + rng.random_range(-40.0f32..40.0)
    });
    let g = Geometry::with_spacing([0.8, 0.8, 1.0]);
    let mut results = serde_json::Map::new();
    for (name, data) in [("ct_like", ct), ("mr_like", mr)] {
        let vol = Volume::new(data, g);
        let path = out.join(format!("{name}.nii.gz"));
        let mut w = Vec::new();
        let mut r = Vec::new();
        for _ in 0..repeats {
            let t = Instant::now();
            write_volume(&path, &vol, &WriteOptions::default()).expect("write");
            w.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            let back = read_volume(&path).expect("read");
            r.push(t.elapsed().as_secs_f64());
            assert_eq!(back.data.len(), vol.data.len());
        }
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        results.insert(
            name.into(),
            serde_json::json!({"write_s": median(w), "read_s": median(r), "file_mb": size as f64 / 1e6, "path": path}),
        );
    }
    println!("{}", serde_json::Value::Object(results));
}
