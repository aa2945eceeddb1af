//! `medseg inspect --config` and `medseg bench train-step` through the binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn medseg() -> Command {
    Command::new(env!("CARGO_BIN_EXE_medseg"))
}

/// A config whose dataset does not exist (so `[model]` or the defaults give the channels).
fn write_config(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("[data]\ndataset = \"nowhere\"\n{body}")).unwrap();
    p
}

/// `medseg inspect --config CFG` plus `extra`.
fn inspect_config(cfg: &Path, extra: &[&str]) -> Output {
    medseg()
        .args(["inspect", "--config"])
        .arg(cfg)
        .args(extra)
        .output()
        .unwrap()
}

fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn inspect_config_json_and_invalid_patch() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("exp.toml");
    std::fs::write(
        &cfg,
        "[data]\ndataset = \"nowhere\"\n[model]\ndims = 2\nfeatures = [8, 16, 32]\nresidual = true\nin_channels = 2\nnum_classes = 4\n[train]\npatch_size = [48, 64]\nbatch_size = 4\n",
    )
    .unwrap();
    let out = medseg()
        .args(["inspect", "--config"])
        .arg(&cfg)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    assert_eq!(v["encoder"][2]["shape"], serde_json::json!([32, 16, 12]));
    assert_eq!(v["outputs"][0], serde_json::json!([4, 64, 48]));
    assert!(v["parameters"].as_u64().unwrap() > 0);
    assert!(v["train_memory_mb"].as_f64().unwrap() > 0.0);
    assert_eq!(v["receptive_field"].as_array().unwrap().len(), 2);

    let out = medseg()
        .args(["inspect", "--config"])
        .arg(&cfg)
        .args(["--set", "train.patch_size=[64,50]"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("patch 50 is not divisible by 4 at stage 2; nearest valid sizes: 48 or 52"),
        "{err}"
    );
}

#[test]
fn inspect_config_3d_gates_transformer_and_default_network() {
    let dir = tempfile::tempdir().unwrap();
    let small = write_config(
        dir.path(),
        "small.toml",
        "[model]\ndims = 3\nfeatures = [4, 8, 16]\nattention_gates = true\nbottleneck = \"transformer\"\nheads = 2\nin_channels = 1\nnum_classes = 3\n[train]\npatch_size = [16, 16, 16]\nbatch_size = 2\n",
    );
    let out = inspect_config(&small, &["--json"]);
    assert_success(&out);
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    assert_eq!(v["outputs"][0], serde_json::json!([3, 16, 16, 16]));
    let out = inspect_config(&small, &["--set", "train.patch_size=[16, 18, 16]"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("patch 18 is not divisible by 4 at stage 2; nearest valid sizes: 16 or 20"),
        "{err}"
    );

    // Without a plan or [model] features: nnU-Net's network for the patch, as a table; an odd
    // patch is padded to the pooling as the planner pads it.
    let default = write_config(
        dir.path(),
        "default.toml",
        "[train]\npatch_size = [96, 160, 160]\n",
    );
    for patch in ["[96,160,160]", "[96,100,160]"] {
        let out = inspect_config(&default, &["--set", &format!("train.patch_size={patch}")]);
        assert_success(&out);
        assert!(!out.stdout.is_empty());
    }
    // the network [model] writes (5 stages, stride 2) needs a divisible patch
    let out = inspect_config(
        &default,
        &[
            "--set",
            "train.patch_size=[96,100,160]",
            "--set",
            "model.features=[32,64,128,256,320]",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("patch 100 is not divisible by 16 at stage 4; nearest valid sizes: 96 or 112"),
        "{err}"
    );

    let unknown = write_config(dir.path(), "unknown.toml", "[model]\nfeaturez = [4]\n");
    let out = inspect_config(&unknown, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("featurez"));
}

#[test]
fn inspect_needs_exactly_one_of_file_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "c.toml", "");
    for args in [
        vec!["inspect"],
        vec!["inspect", "--set", "train.epochs=1"],
        vec!["inspect", "x.nii.gz", "--config", cfg.to_str().unwrap()],
    ] {
        let out = medseg().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?} is a usage error");
    }
}

#[test]
fn bench_train_step_json() {
    let out = medseg()
        .args([
            "bench",
            "train-step",
            "--dims",
            "2",
            "--patch",
            "16",
            "--batch",
            "1",
            "--features",
            "4,8",
            "--steps",
            "1",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    for key in ["train_step_ms", "forward_ms", "peak_rss_mb"] {
        assert!(v[key].as_f64().unwrap() > 0.0, "{key}: {v}");
    }
    assert_eq!(v["conv"], "fast", "{v}");
}

#[test]
fn bench_residual_deep_supervision_and_invalid_patch() {
    let tiny = [
        "bench",
        "train-step",
        "--dims",
        "2",
        "--batch",
        "1",
        "--features",
        "4,8",
        "--steps",
        "1",
        "--json",
    ];
    let out = medseg()
        .args(tiny)
        .args([
            "--patch",
            "16",
            "--variant",
            "residual",
            "--deep-supervision",
        ])
        .output()
        .unwrap();
    assert_success(&out);
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    assert!(v["train_step_ms"].as_f64().unwrap() > 0.0, "{v}");
    let out = medseg()
        .args(tiny)
        .args(["--patch", "15"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "patch 15 is not divisible by 2");
}

#[test]
fn unknown_device_is_a_usage_error_and_libtorch_says_why() {
    let out = medseg()
        .args(["bench", "train-step", "--device", "tpu"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tpu") && err.contains("flex, wgpu"), "{err}");

    let out = medseg()
        .args(["bench", "train-step", "--device", "tch"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("LibTorch"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
