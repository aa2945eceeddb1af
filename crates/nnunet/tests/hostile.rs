//! Damaged or mismatched nnU-Net model folders: one error naming the file and the reason,
//! never a panic.

use burn::tensor::Device;
use medseg_nnunet::{CheckpointChoice, ModelFolder, NnUnetCheckpoint, NnUnetPredictor};
use std::path::{Path, PathBuf};

fn model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/nnunet/models/Dataset901_FixtureMR/nnUNetTrainer_MedsegFixture__nnUNetPlans__2d")
}

/// A copy of the 2D fixture model folder (its checkpoint is the smallest).
fn copy_model(dir: &Path) -> PathBuf {
    let dst = dir.join("nnUNetTrainer__nnUNetPlans__2d");
    std::fs::create_dir_all(dst.join("fold_0")).unwrap();
    for f in ["plans.json", "dataset.json", "fold_0/checkpoint_final.pth"] {
        std::fs::copy(model().join(f), dst.join(f)).unwrap();
    }
    dst
}

fn load(dir: &Path) -> Result<NnUnetPredictor, String> {
    let folder = ModelFolder::open(dir).map_err(|e| e.to_string())?;
    let folds = folder.select_folds(&[]).map_err(|e| e.to_string())?;
    NnUnetPredictor::load(
        folder,
        folds,
        CheckpointChoice::Final,
        true,
        &Device::flex(),
    )
    .map_err(|e| e.to_string())
}

#[test]
fn truncated_checkpoint_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_model(tmp.path());
    let ckpt = dir.join("fold_0/checkpoint_final.pth");
    let bytes = std::fs::read(&ckpt).unwrap();
    for keep in [0, 10, bytes.len() / 2, bytes.len() - 30] {
        std::fs::write(&ckpt, &bytes[..keep]).unwrap();
        let err = NnUnetCheckpoint::read(&ckpt).unwrap_err().to_string();
        assert!(err.contains("checkpoint_final.pth"), "{keep} bytes: {err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
}

#[test]
fn not_a_checkpoint_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("checkpoint_final.pth");
    std::fs::write(&p, b"hello, this is no torch file").unwrap();
    let err = NnUnetCheckpoint::read(&p).unwrap_err().to_string();
    assert!(err.contains("checkpoint_final.pth"), "{err}");
}

#[test]
fn plans_that_do_not_match_the_weights_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_model(tmp.path());
    let plans_path = dir.join("plans.json");
    let mut plans: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plans_path).unwrap()).unwrap();
    plans["configurations"]["2d"]["architecture"]["arch_kwargs"]["features_per_stage"] =
        serde_json::json!([8, 16, 48]);
    std::fs::write(&plans_path, plans.to_string()).unwrap();
    let err = load(&dir).unwrap_err();
    assert!(
        err.contains("checkpoint_final.pth") && err.contains("shape"),
        "{err}"
    );
}

#[test]
fn unsupported_architectures_and_broken_json_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_model(tmp.path());
    let plans_path = dir.join("plans.json");
    let text = std::fs::read_to_string(&plans_path).unwrap();
    let mut plans: serde_json::Value = serde_json::from_str(&text).unwrap();
    plans["configurations"]["2d"]["architecture"]["network_class_name"] = "my.lab.SwinUNETR".into();
    std::fs::write(&plans_path, plans.to_string()).unwrap();
    let err = load(&dir).unwrap_err();
    assert!(
        err.contains("plans.json") && err.contains("SwinUNETR") && err.contains("PlainConvUNet"),
        "{err}"
    );

    std::fs::write(&plans_path, &text[..text.len() / 2]).unwrap();
    let err = load(&dir).unwrap_err();
    assert!(err.contains("plans.json"), "{err}");

    std::fs::write(&plans_path, &text).unwrap();
    let ds = dir.join("dataset.json");
    let regions = |extra: &str| {
        format!(
            r#"{{"channel_names": {{"0": "T1", "1": "T2"}}, "labels": {{"background": 0, "whole": [1, 2], "box": 2}}, "file_ending": ".nii.gz"{extra}}}"#
        )
    };
    for (extra, says) in [
        ("", "regions_class_order is missing"),
        (
            r#", "regions_class_order": [1]"#,
            "2 foreground regions but regions_class_order has 1",
        ),
        (
            r#", "regions_class_order": [1, -2]"#,
            "-2 is not a label value",
        ),
    ] {
        std::fs::write(&ds, regions(extra)).unwrap();
        let err = load(&dir).unwrap_err();
        assert!(err.contains("dataset.json") && err.contains(says), "{err}");
    }
    let no_background = r#"{"channel_names": {"0": "T1", "1": "T2"}, "labels": {"sphere": 1, "box": 2}, "file_ending": ".nii.gz"}"#;
    std::fs::write(&ds, no_background).unwrap();
    let err = load(&dir).unwrap_err();
    assert!(
        err.contains("dataset.json") && err.contains("background"),
        "{err}"
    );
}

#[test]
fn the_ignore_label_is_not_a_network_output() {
    // nnU-Net's LabelManager leaves `ignore` out of the labels (and so of the outputs)
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_model(tmp.path());
    let ds = dir.join("dataset.json");
    let mut d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ds).unwrap()).unwrap();
    d["labels"]["ignore"] = 3.into();
    std::fs::write(&ds, d.to_string()).unwrap();
    let folder = ModelFolder::open(&dir).unwrap();
    assert_eq!(folder.dataset.num_outputs(), 3);
    assert!(load(&dir).is_ok());
}

#[test]
fn a_folder_without_folds_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_model(tmp.path());
    std::fs::remove_dir_all(dir.join("fold_0")).unwrap();
    let err = load(&dir).unwrap_err();
    assert!(err.contains("no fold_N"), "{err}");
}
