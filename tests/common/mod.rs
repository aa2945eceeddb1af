//! Helpers the binary's integration tests share: running `medseg`, and small datasets in the
//! nnU-Net v2 layout.

#![allow(dead_code)] // each test binary uses its own subset

use medseg_volume::{Geometry, Volume, WriteOptions, write_volume};
use ndarray::Array3;
use std::ffi::OsStr;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn medseg<S: AsRef<OsStr> + Debug>(args: &[S]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_medseg"))
        .args(args)
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .expect("run medseg")
}

/// Runs `medseg args`, fails the test with its output unless it succeeds; returns stdout.
pub fn ok<S: AsRef<OsStr> + Debug>(args: &[S]) -> String {
    let out = medseg(args);
    assert!(
        out.status.success(),
        "medseg {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `cases` images of `shape` voxels `(i, j, k)` at `spacing` mm: a bright ellipsoid (label 1)
/// in a dim, noisy body, in the nnU-Net v2 layout.
pub fn write_dataset(dir: &Path, channel: &str, spacing: [f64; 3], shape: [usize; 3]) -> PathBuf {
    let data = dir.join("data");
    for sub in ["imagesTr", "labelsTr"] {
        std::fs::create_dir_all(data.join(sub)).unwrap();
    }
    let cases = 5;
    for c in 0..cases {
        let centre = shape.map(|n| n as f64 / 2.0 + c as f64 * 0.3);
        let inside = |k: usize, j: usize, i: usize| {
            let p = [i, j, k];
            (0..3)
                .map(|a| {
                    let half = (shape[a] as f64 / 4.0).max(0.5);
                    ((p[a] as f64 - centre[a]) / half).powi(2)
                })
                .sum::<f64>()
                <= 1.0
        };
        let dims = (shape[2], shape[1], shape[0]);
        let label = Array3::from_shape_fn(dims, |(k, j, i)| inside(k, j, i) as u8);
        let image = Array3::from_shape_fn(dims, |(k, j, i)| {
            let noise = ((i * 31 + j * 17 + k * 7 + c * 13) % 23) as i16;
            if inside(k, j, i) {
                200 + noise
            } else {
                40 + noise
            }
        });
        let geometry = Geometry {
            spacing,
            origin: [0.0; 3],
            direction: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        };
        let opts = WriteOptions::default();
        let name = format!("case_{c:03}");
        let img = Volume::new(image, geometry);
        write_volume(
            &data.join(format!("imagesTr/{name}_0000.nii.gz")),
            &img,
            &opts,
        )
        .unwrap();
        let lab = Volume::new(label, geometry);
        write_volume(&data.join(format!("labelsTr/{name}.nii.gz")), &lab, &opts).unwrap();
    }
    let json = serde_json::json!({
        "name": "PlanNetwork",
        "channel_names": {"0": channel},
        "labels": {"background": 0, "target": 1},
        "numTraining": cases,
        "file_ending": ".nii.gz",
    });
    std::fs::write(data.join("dataset.json"), json.to_string()).unwrap();
    data
}
