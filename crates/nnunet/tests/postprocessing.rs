//! nnU-Net's postprocessing files against nnU-Net itself: every pipeline of
//! tests/fixtures/nnunet/postprocessing (hand-written pickles of nnU-Net's own function, and
//! what `nnUNetv2_determine_postprocessing` chose), applied by medseg to the label maps in
//! `predictions/`, equals `nnUNetv2_apply_postprocessing`'s output voxel for voxel.

use medseg_nnunet::NnUnetPostprocessing;
use medseg_volume::read_labels;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/nnunet/postprocessing")
}

fn manifest() -> Value {
    serde_json::from_str(&std::fs::read_to_string(root().join("manifest.json")).unwrap()).unwrap()
}

/// Applies `pp` to every case and compares with nnU-Net's output of pipeline `name`.
fn check(name: &str, pp: &NnUnetPostprocessing, changed: &Value) {
    for (case, n_changed) in changed.as_object().unwrap() {
        let mut labels = read_labels(&root().join(format!("predictions/{case}.nii.gz")))
            .unwrap()
            .data;
        let before = labels.clone();
        pp.apply(&mut labels);
        let want = read_labels(&root().join(format!("expected/{name}/{case}.nii.gz")))
            .unwrap()
            .data;
        let differ = labels.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(
            differ, 0,
            "{name}/{case}: {differ} voxels differ from nnU-Net's"
        );
        let ours = before.iter().zip(&labels).filter(|(a, b)| a != b).count();
        assert_eq!(ours as u64, n_changed.as_u64().unwrap(), "{name}/{case}");
    }
}

#[test]
fn every_pipeline_matches_nnunet_apply_postprocessing() {
    let m = manifest();
    let changed = m["voxels_changed"].as_object().unwrap();
    let mut total = 0;
    for (name, per_case) in changed {
        let pkl = if name == "determined" {
            root().join("determined/postprocessing.pkl")
        } else {
            root().join(format!("{name}.pkl"))
        };
        let pp = NnUnetPostprocessing::read(&pkl).unwrap();
        check(name, &pp, per_case);
        total += per_case
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>();
    }
    assert!(
        total > 0,
        "the fixtures must change voxels to test anything"
    );
}

#[test]
fn a_determined_pickle_takes_its_numpy_label_values_from_the_json_beside_it() {
    let pkl_path = root().join("determined/postprocessing.pkl");
    let json_path = root().join("determined/postprocessing.json");
    let pkl = NnUnetPostprocessing::read(&pkl_path).unwrap();
    let json = NnUnetPostprocessing::read(&json_path).unwrap();
    assert_eq!(pkl, json);
    assert_eq!(pkl.read_from, json_path);
    assert!(!pkl.steps.is_empty(), "nnU-Net chose some postprocessing");
    // the hand-written pickles hold Python ints: read from the pickle itself
    let own = NnUnetPostprocessing::read(&root().join("per_label.pkl")).unwrap();
    assert_eq!(own.read_from, root().join("per_label.pkl"));
    // without the json, the error says which file to give
    let dir = tempfile::tempdir().unwrap();
    let alone = dir.path().join("postprocessing.pkl");
    std::fs::copy(&pkl_path, &alone).unwrap();
    let e = NnUnetPostprocessing::read(&alone).unwrap_err().to_string();
    assert!(
        e.contains("numpy") && e.contains("postprocessing.json"),
        "{e}"
    );
}

#[test]
fn files_that_are_not_postprocessing_are_refused_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], &str); 4] = [
        ("garbage.pkl", b"not a pickle at all", "garbage.pkl"),
        ("empty.pkl", b"", "empty.pkl"),
        (
            "bad.json",
            b"{\"postprocessing_fns\": 3}",
            "postprocessing_fns",
        ),
        (
            "other.json",
            b"{\"postprocessing_fns\": [\"fill_holes\"], \"postprocessing_kwargs\": [{}]}",
            "unsupported postprocessing function",
        ),
    ];
    for (file, bytes, says) in cases {
        let p = dir.path().join(file);
        std::fs::write(&p, bytes).unwrap();
        let e = NnUnetPostprocessing::read(&p).unwrap_err().to_string();
        assert!(e.contains(file), "{e}");
        assert!(e.contains(says), "{e}");
    }
    // the checkpoint is a pickle too, but not this one
    let ckpt = Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../../tests/fixtures/nnunet/models/Dataset901_FixtureMR/nnUNetTrainer_MedsegFixture__nnUNetPlans__3d_fullres/fold_0/checkpoint_final.pth",
    );
    let e = NnUnetPostprocessing::read(&ckpt).unwrap_err().to_string();
    assert!(e.contains("checkpoint_final.pth"), "{e}");
}
