//! Read speed of a DICOM series folder (the medseg side of `benches/dicom_read.py`).
//!
//! `cargo run --release -p medseg-volume --example bench_dicom -- DIR [REPEATS]` reads the one
//! series in DIR REPEATS times (default 1) with `read_dicom_series` and prints one JSON line:
//! each read's wall time in seconds, the shape `[k, j, i]` and the sum of the voxels (so the
//! script can check that SimpleITK read the same values).

use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: bench_dicom DIR [REPEATS]");
        std::process::exit(2);
    };
    let repeats: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(1);
    let mut seconds = Vec::new();
    let mut last = None;
    for _ in 0..repeats {
        let t = Instant::now();
        let v = match medseg_volume::read_dicom_series(std::path::Path::new(&dir)) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        };
        seconds.push(t.elapsed().as_secs_f64());
        last = Some(v);
    }
    let Some(v) = last else { return };
    let sum: f64 = v.data.iter().map(|&x| f64::from(x)).sum();
    println!(
        "{}",
        serde_json::json!({
            "seconds": seconds,
            "shape_kji": v.data.shape(),
            "sum": sum,
            "spacing": v.geometry.spacing,
            "threads": rayon::current_num_threads(),
        })
    );
}
