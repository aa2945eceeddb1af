//! End to end through the binary: synth -> train (tiny, with resume) -> predict -> evaluate.

mod common;

use common::{medseg, ok};
use std::path::Path;

fn write_config(dir: &Path, name: &str, epochs: usize) -> std::path::PathBuf {
    let text = format!(
        r#"
[data]
dataset = "data"
folds = 3
fold = 0

[model]
dims = 3
features = [4, 8, 16]
deep_supervision = true

[train]
output = "{name}"
patch_size = [16, 16, 16]
batch_size = 2
epochs = {epochs}
iterations_per_epoch = 6
learning_rate = 0.01
schedule = "constant"
seed = 7
validation_interval = 1
threads = 2

[inference]
tta = false
"#
    );
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

fn log_losses(run: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(run.join("train_log.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect()
}

/// Runs `predict --model RUN --input DATA/imagesTs --output OUT` plus `extra` flags.
fn predict(run: &Path, data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let input = data.join("imagesTs");
    let mut args = vec![
        "predict",
        "--model",
        run.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ];
    args.extend(["--output", out.to_str().unwrap()]);
    args.extend_from_slice(extra);
    let output = medseg(&args);
    assert!(
        output.status.success(),
        "medseg {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Writes a synthetic dataset to `dir/data` through the binary.
fn synth_dataset(
    dir: &Path,
    cases: usize,
    test_cases: usize,
    size: usize,
    seed: u64,
) -> std::path::PathBuf {
    let data = dir.join("data");
    let (c, t, z, s) = (
        cases.to_string(),
        test_cases.to_string(),
        size.to_string(),
        seed.to_string(),
    );
    ok(&[
        "synth",
        "--output",
        data.to_str().unwrap(),
        "--cases",
        &c,
        "--test-cases",
        &t,
        "--size",
        &z,
        "--seed",
        &s,
    ]);
    data
}

#[test]
fn synth_train_resume_predict_evaluate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = synth_dataset(dir, 6, 2, 24, 3);

    // A full 4-epoch run.
    let full_cfg = write_config(dir, "full", 4);
    ok(&["train", "--config", full_cfg.to_str().unwrap()]);
    let full = dir.join("full");
    for f in [
        "config.toml",
        "plan.json",
        "splits.json",
        "network.json",
        "checkpoint_last/model.bpk",
        "checkpoint_last/optimizer.bpk",
        "checkpoint_last/training_state.json",
        "checkpoint_best.bpk",
        "model.safetensors",
        "train_log.csv",
        "curves.png",
        "summary.json",
    ] {
        assert!(full.join(f).is_file(), "run directory lacks {f}");
    }
    let losses = log_losses(&full);
    assert_eq!(losses.len(), 4);
    assert!(losses[3] < losses[0], "loss did not decrease: {losses:?}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(full.join("summary.json")).unwrap()).unwrap();
    assert!(
        summary["final_validation"]["foreground_mean_dice"].is_number(),
        "{summary}"
    );

    // The same experiment in two halves: 2 epochs, then --resume to 4.
    let half_cfg = write_config(dir, "half", 2);
    ok(&["train", "--config", half_cfg.to_str().unwrap()]);
    assert_eq!(log_losses(&dir.join("half")).len(), 2);
    ok(&[
        "train",
        "--config",
        half_cfg.to_str().unwrap(),
        "--resume",
        "--set",
        "train.epochs=4",
    ]);
    let resumed = log_losses(&dir.join("half"));
    assert_eq!(resumed.len(), 4);
    // Same seed, same machine: the same loss curve, interrupted or not. (The schedule is
    // constant, so the longer second half does not change the learning rates.)
    for (a, b) in losses.iter().zip(&resumed) {
        assert!(
            (a - b).abs() <= 1e-4 * a.abs(),
            "resume changed the curve: {losses:?} vs {resumed:?}"
        );
    }

    // Predict the held-out cases: outputs carry the input's exact geometry.
    let preds = dir.join("preds");
    predict(&full, &data, &preds, &["--probabilities"]);
    for case in ["case_006", "case_007"] {
        let input = data.join("imagesTs").join(format!("{case}_0000.nii.gz"));
        let pred = preds.join(format!("{case}.nii.gz"));
        let hi = medseg_volume::read_header(&input).unwrap();
        let hp = medseg_volume::read_header(&pred).unwrap();
        assert_eq!(hi.srow, hp.srow);
        assert_eq!(hi.quatern, hp.quatern);
        assert_eq!(hi.qoffset, hp.qoffset);
        assert_eq!(hi.pixdim[..4], hp.pixdim[..4]);
        assert_eq!(
            (hi.qform_code, hi.sform_code),
            (hp.qform_code, hp.sform_code)
        );
        assert_eq!(hi.shape(), hp.shape());
        assert!(
            preds
                .join("probabilities")
                .join(format!("{case}.nii.gz"))
                .is_file()
        );
    }
    // Without --probabilities, classes are restored one at a time (running argmax): same labels.
    let preds2 = dir.join("preds2");
    predict(&full, &data, &preds2, &[]);
    for case in ["case_006", "case_007"] {
        let a = medseg_volume::read_labels(&preds.join(format!("{case}.nii.gz"))).unwrap();
        let b = medseg_volume::read_labels(&preds2.join(format!("{case}.nii.gz"))).unwrap();
        assert_eq!(
            a.data, b.data,
            "{case}: running argmax differs from the full argmax"
        );
    }
    assert!(!preds2.join("probabilities").exists());
    // --skip-existing skips what exists; --resume is its hidden old spelling.
    for flag in ["--skip-existing", "--resume"] {
        let out = predict(&full, &data, &preds, &[flag]);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("2 skipped"),
            "{flag}"
        );
    }

    // Evaluate through the binary.
    let json = ok(&[
        "evaluate",
        "--pred",
        preds.to_str().unwrap(),
        "--gt",
        data.join("labelsTs").to_str().unwrap(),
        "--labels",
        data.join("dataset.json").to_str().unwrap(),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["cases"].as_array().unwrap().len(), 2);
    assert!(v["summary"]["1"]["dice"]["mean"].is_number());
}

#[test]
fn bad_configs_give_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("bad.toml");
    std::fs::write(&p, "[data]\ndataset = \"x\"\n[train]\nepochz = 3\n").unwrap();
    let out = medseg(&["train", "--config", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("epochz") && err.contains("bad.toml"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    std::fs::write(&p, "[data]\ndataset = \"missing\"\n").unwrap();
    let out = medseg(&["train", "--config", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("dataset.json"));

    let out = medseg(&[
        "predict",
        "--model",
        tmp.path().to_str().unwrap(),
        "--input",
        ".",
        "--output",
        "o",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("config.toml"));
}

#[test]
fn non_finite_loss_stops_training_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    synth_dataset(dir, 3, 0, 16, 1);
    let cfg = write_config(dir, "nan", 3);
    // An absurd learning rate makes the weights, then the loss, non-finite.
    let out = medseg(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--set",
        "train.learning_rate=1e30",
        "--set",
        "train.grad_clip=0",
        "--set",
        "train.optimizer=\"sgd\"",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the loss became") && err.contains("learning_rate"),
        "{err}"
    );
}
