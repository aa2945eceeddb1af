//! The shipped template (`configs/msd-template.toml`) on the shapes users bring, with no
//! topology override: `plan` chooses the network by nnU-Net's rules, `inspect --config` shows
//! that network, and `train` builds it (a couple of iterations) and records it in
//! `network.json`. Only the dataset, the output and the schedule length are set.

mod common;

use common::{ok, write_dataset};
use serde_json::Value;
use std::path::Path;

const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/msd-template.toml");

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
