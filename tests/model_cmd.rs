//! `medseg inspect --config` and `medseg bench train-step` through the binary.

use std::process::Command;

fn medseg() -> Command {
    Command::new(env!("CARGO_BIN_EXE_medseg"))
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
fn bench_unknown_or_unbuilt_device_is_a_one_line_error() {
    for (device, says) in [("tpu", "unknown device"), ("tch", "LibTorch")] {
        let out = medseg()
            .args(["bench", "train-step", "--device", device])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "--device {device}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "--device {device}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "--device {device}: {err}");
    }
}
