//! The shipped template (`configs/msd-template.toml`) on the shapes users bring, with no
//! topology override: `plan` chooses the network by nnU-Net's rules, `inspect --config` shows
//! that network, and `train` builds it (a couple of iterations) and records it in
//! `network.json`. Only the dataset, the output and the schedule length are set.

use medseg_volume::{Geometry, Volume, WriteOptions, write_volume};
use ndarray::Array3;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/msd-template.toml");

fn medseg(args: &[String]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_medseg"))
        .args(args)
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .expect("run medseg")
}

fn ok(args: &[String]) -> String {
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
fn write_dataset(dir: &Path, channel: &str, spacing: [f64; 3], shape: [usize; 3]) -> PathBuf {
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

/// `--set`s for the dataset, the run directory and a two-iteration schedule, plus `extra`.
fn sets(data: &Path, run: &Path, extra: &[&str]) -> Vec<String> {
    let mut v = vec![
        format!("data.dataset={}", data.display()),
        format!("train.output={}", run.display()),
        "train.epochs=1".into(),
        "train.iterations_per_epoch=2".into(),
        "train.validation_interval=1".into(),
        "train.threads=1".into(),
        "inference.tta=false".into(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v.into_iter()
        .flat_map(|s| ["--set".to_string(), s])
        .collect()
}

fn command(name: &str, set: &[String], tail: &[&str]) -> Vec<String> {
    let mut v = vec![name.to_string(), "--config".into(), TEMPLATE.into()];
    v.extend(set.iter().cloned());
    v.extend(tail.iter().map(|s| s.to_string()));
    v
}

/// plan -> inspect --config -> train with the template; returns the plan's `network` after
/// checking that inspect and the trained run (network.json) have exactly that network.
fn plan_inspect_train(data: &Path, run: &Path, extra: &[&str]) -> Value {
    let set = sets(data, run, extra);
    let summary: Value = serde_json::from_str(&ok(&command("plan", &set, &["--json"]))).unwrap();
    let network = summary["network"].clone();
    let stages = network["kernel_sizes"].as_array().unwrap().len();
    assert_eq!(summary["num_stages"].as_u64().unwrap() as usize, stages);

    let inspect: Value = serde_json::from_str(&ok(&command("inspect", &set, &["--json"]))).unwrap();
    assert_eq!(
        inspect["encoder"].as_array().unwrap().len(),
        stages,
        "{inspect}"
    );

    ok(&command("train", &set, &[]));
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("network.json")).unwrap()).unwrap();
    assert_eq!(saved["features"], network["features_per_stage"]);
    // network.json is in tensor order (z first), the plan in (x, y, z)
    let reversed = |v: &Value| -> Vec<Vec<u64>> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let mut a: Vec<u64> = s
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap())
                    .collect();
                a.reverse();
                a
            })
            .collect()
    };
    let saved_list = |key: &str| -> Vec<Vec<u64>> {
        saved[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                s.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap())
                    .collect()
            })
            .collect()
    };
    let dims = saved["dims"].as_u64().unwrap();
    let drop_depth = |v: Vec<Vec<u64>>| -> Vec<Vec<u64>> {
        if dims == 2 {
            v.into_iter().map(|s| s[1..].to_vec()).collect()
        } else {
            v
        }
    };
    let planned_k = drop_depth(reversed(&network["kernel_sizes"]));
    let planned_s = drop_depth(reversed(&network["strides"]));
    assert_eq!(drop_depth(saved_list("kernel_sizes")), planned_k);
    assert_eq!(drop_depth(saved_list("strides")), planned_s);
    network
}

fn strides(network: &Value) -> Vec<Vec<u64>> {
    network["strides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .collect()
        })
        .collect()
}

#[test]
fn hippocampus_like_isotropic_crops_3d_and_2d() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), "MRI", [1.0; 3], [20, 24, 20]);
    // nnU-Net: 20 -> 10 -> 5 and 24 -> 12 -> 6: three stages, stride 2 everywhere
    let net = plan_inspect_train(&data, &tmp.path().join("run3d"), &[]);
    assert_eq!(net["features_per_stage"], serde_json::json!([32, 64, 128]));
    assert_eq!(
        strides(&net),
        vec![vec![1, 1, 1], vec![2, 2, 2], vec![2, 2, 2]]
    );
    let net2d = plan_inspect_train(&data, &tmp.path().join("run2d"), &["model.dims=2"]);
    assert_eq!(
        strides(&net2d),
        vec![vec![1, 1, 1], vec![2, 2, 1], vec![2, 2, 1]]
    );
}

#[test]
fn prostate_like_anisotropic_mr() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), "T2", [0.6, 0.6, 3.6], [64, 64, 12]);
    let net = plan_inspect_train(&data, &tmp.path().join("run"), &[]);
    let k = &net["kernel_sizes"];
    // 1-wide kernels and stride 1 across slices until the in-plane spacing catches up
    assert_eq!(k[0], serde_json::json!([3, 3, 1]));
    assert_eq!(k[1], serde_json::json!([3, 3, 1]));
    assert_eq!(k[2], serde_json::json!([3, 3, 3]));
    assert_eq!(
        strides(&net),
        vec![
            vec![1, 1, 1],
            vec![2, 2, 1],
            vec![2, 2, 1],
            vec![2, 2, 2],
            vec![2, 2, 1]
        ]
    );
}

#[test]
fn ct_like_anisotropic_volumes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), "CT", [0.8, 0.8, 2.5], [64, 64, 16]);
    let net = plan_inspect_train(&data, &tmp.path().join("run"), &[]);
    assert_eq!(net["kernel_sizes"][0], serde_json::json!([3, 3, 1]));
    assert_eq!(net["kernel_sizes"][1], serde_json::json!([3, 3, 3]));
    assert_eq!(
        strides(&net),
        vec![
            vec![1, 1, 1],
            vec![2, 2, 1],
            vec![2, 2, 2],
            vec![2, 2, 2],
            vec![2, 2, 1]
        ]
    );
    assert_eq!(
        net["features_per_stage"],
        serde_json::json!([32, 64, 128, 256, 320])
    );
}

#[test]
fn single_slice_images_get_a_2d_network() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), "MRI", [0.8, 0.8, 1.0], [64, 64, 1]);
    let net = plan_inspect_train(&data, &tmp.path().join("run"), &[]);
    // 2D: pools down to 4 voxels, widths capped at 512, never across the (single) slice
    assert_eq!(
        net["features_per_stage"],
        serde_json::json!([32, 64, 128, 256, 512])
    );
    assert!(strides(&net).iter().all(|s| s[2] == 1));
}
