//! `medseg predict --model NNUNET_MODEL_FOLDER`: the binary recognizes an nnU-Net v2 model
//! folder, says what it found, writes nnUNetv2_predict's segmentation with the input's
//! geometry, and refuses what it cannot run with the file and the reason.

mod common;

use common::{medseg, ok};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nnunet")
}

fn aniso_model() -> PathBuf {
    fixtures().join(
        "models/Dataset902_FixtureAnisoCT/nnUNetTrainer_MedsegFixture__nnUNetPlans__3d_fullres",
    )
}

#[test]
fn predicts_what_nnunet_predicts_with_the_input_geometry() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("pred");
    let input = fixtures().join("inputs/Dataset902_FixtureAnisoCT/imagesTs");
    let model = aniso_model();
    let args = [
        "predict".as_ref(),
        "--model".as_ref(),
        model.as_os_str(),
        "--input".as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--no-tta".as_ref(),
    ];
    let run = medseg(&args);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("configuration 3d_fullres") && stderr.contains("fold_0"),
        "{stderr}"
    );
    for case in ["ct_100", "ct_101"] {
        let got = medseg_volume::read_labels(&out.join(format!("{case}.nii.gz"))).unwrap();
        let expected = fixtures().join(format!("expected/aniso_3d_plain__f0__notta/{case}.nii.gz"));
        let want = medseg_volume::read_labels(&expected).unwrap();
        assert_eq!(
            got.data, want.data,
            "{case}: labels differ from nnUNetv2_predict's"
        );
        let header = medseg_volume::read_header(&out.join(format!("{case}.nii.gz"))).unwrap();
        let input_header =
            medseg_volume::read_header(&input.join(format!("{case}_0000.nii.gz"))).unwrap();
        assert_eq!(
            header.geometry(),
            input_header.geometry(),
            "{case}: geometry"
        );
    }
}

#[test]
fn a_missing_fold_and_a_cascade_are_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let input = fixtures().join("inputs/Dataset902_FixtureAnisoCT/imagesTs");
    let base = |model: &Path, extra: &[&str]| {
        let mut a: Vec<String> = vec![
            "predict".into(),
            "--model".into(),
            model.display().to_string(),
        ];
        a.extend(["--input".into(), input.display().to_string(), "-o".into()]);
        a.push(tmp.path().join("out").display().to_string());
        a.extend(extra.iter().map(|s| s.to_string()));
        medseg(&a)
    };
    let run = base(&aniso_model(), &["--folds", "3"]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        err.contains("fold 3 is not in the model folder") && err.contains("fold_0"),
        "{err}"
    );

    // a cascade configuration: the same folder renamed, with 3d_cascade_fullres in the plans
    let cascade = tmp
        .path()
        .join("nnUNetTrainer__nnUNetPlans__3d_cascade_fullres");
    std::fs::create_dir_all(cascade.join("fold_0")).unwrap();
    let plans = std::fs::read_to_string(aniso_model().join("plans.json")).unwrap();
    let mut plans: serde_json::Value = serde_json::from_str(&plans).unwrap();
    plans["configurations"]["3d_cascade_fullres"] =
        serde_json::json!({"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"});
    std::fs::write(cascade.join("plans.json"), plans.to_string()).unwrap();
    std::fs::copy(
        aniso_model().join("dataset.json"),
        cascade.join("dataset.json"),
    )
    .unwrap();
    let run = base(&cascade, &[]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        err.contains("cascade") && err.contains("plans.json"),
        "{err}"
    );
}

#[test]
fn help_names_nnunet_model_folders() {
    let help = ok(&["predict", "--help"]);
    assert!(
        help.contains("nnU-Net") && help.contains("--folds") && help.contains("--checkpoint"),
        "{help}"
    );
}

#[test]
fn metaimage_and_nrrd_inputs_give_outputs_in_their_format() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixtures().join("inputs/Dataset902_FixtureAnisoCT/imagesTs");
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    // ct_100 as MetaImage, ct_101 as NRRD (same voxels and geometry as the NIfTI files)
    for (case, ext) in [("ct_100", "mha"), ("ct_101", "nrrd")] {
        for c in 0..2 {
            let v = medseg_volume::read_volume(&src.join(format!("{case}_{c:04}.nii.gz"))).unwrap();
            medseg_volume::write_image(&input.join(format!("{case}_{c:04}.{ext}")), &v).unwrap();
        }
    }
    let out = tmp.path().join("pred");
    let model = aniso_model();
    let args = [
        "predict".as_ref(),
        "--model".as_ref(),
        model.as_os_str(),
        "--input".as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--no-tta".as_ref(),
    ];
    ok(&args);
    for (case, ext) in [("ct_100", "mha"), ("ct_101", "nrrd")] {
        let got = medseg_volume::read_image(&out.join(format!("{case}.{ext}"))).unwrap();
        let expected = fixtures().join(format!("expected/aniso_3d_plain__f0__notta/{case}.nii.gz"));
        let want = medseg_volume::read_volume(&expected).unwrap();
        assert_eq!(got.data, want.data, "{case}.{ext}: labels");
        assert!(
            got.geometry.difference(&want.geometry, 1e-5).is_none(),
            "{case}.{ext}: geometry"
        );
    }
}
