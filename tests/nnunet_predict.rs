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

/// Copies a model folder (plans, dataset.json, fold_0's checkpoint) to `dst`.
fn copy_model(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst.join("fold_0")).unwrap();
    for f in ["plans.json", "dataset.json", "fold_0/checkpoint_final.pth"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
}

#[test]
fn nnunet_postprocessing_is_applied_when_asked_and_pointed_at_otherwise() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp
        .path()
        .join("nnUNetTrainer_MedsegFixture__nnUNetPlans__3d_fullres");
    copy_model(
        &fixtures().join(
            "models/Dataset901_FixtureMR/nnUNetTrainer_MedsegFixture__nnUNetPlans__3d_fullres",
        ),
        &model,
    );
    // where nnUNetv2_find_best_configuration leaves it
    let pkl = model.join("crossval_results_folds_0/postprocessing.pkl");
    std::fs::create_dir_all(pkl.parent().unwrap()).unwrap();
    std::fs::copy(fixtures().join("postprocessing/per_label.pkl"), &pkl).unwrap();
    let input = fixtures().join("inputs/Dataset901_FixtureMR/imagesTs");
    let run = |out: &Path, extra: &[&Path]| {
        let mut a: Vec<&std::ffi::OsStr> = vec!["predict".as_ref(), "--model".as_ref()];
        a.extend([model.as_os_str(), "--input".as_ref(), input.as_os_str()]);
        a.extend(["-o".as_ref(), out.as_os_str(), "--no-tta".as_ref()]);
        a.extend(extra.iter().map(|p| p.as_os_str()));
        let r = medseg(&a);
        let stderr = String::from_utf8_lossy(&r.stderr).to_string();
        assert!(r.status.success(), "{stderr}");
        stderr
    };
    let plain = tmp.path().join("plain");
    let said = run(&plain, &[]);
    assert!(
        said.contains("not applied") && said.contains("--postprocessing"),
        "{said}"
    );
    let applied = tmp.path().join("pp");
    let said = run(&applied, &[Path::new("--postprocessing"), &pkl]);
    assert!(said.contains("keep the largest component"), "{said}");

    let pp = medseg_nnunet::NnUnetPostprocessing::read(&pkl).unwrap();
    let mut changed = 0;
    for case in ["mr_100", "mr_101"] {
        let nnunet = fixtures().join(format!("expected/iso_3d_plain__f0__notta/{case}.nii.gz"));
        let raw = medseg_volume::read_labels(&nnunet).unwrap().data;
        let got = medseg_volume::read_labels(&plain.join(format!("{case}.nii.gz"))).unwrap();
        assert_eq!(
            got.data, raw,
            "{case}: without --postprocessing, nnUNetv2_predict's"
        );
        let mut want = raw.clone();
        pp.apply(&mut want);
        let got = medseg_volume::read_labels(&applied.join(format!("{case}.nii.gz"))).unwrap();
        assert_eq!(got.data, want, "{case}: with --postprocessing");
        changed += raw.iter().zip(&want).filter(|(a, b)| a != b).count();
    }
    assert!(
        changed > 0,
        "the postprocessing must change a case to test anything"
    );
}

#[test]
fn postprocessing_is_refused_for_medseg_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let run = medseg(&[
        "predict".as_ref(),
        "--model".as_ref(),
        tmp.path().as_os_str(),
        "--input".as_ref(),
        tmp.path().as_os_str(),
        "-o".as_ref(),
        tmp.path().join("o").as_os_str(),
        "--postprocessing".as_ref(),
        tmp.path().join("pp.pkl").as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        err.contains("--postprocessing applies to nnU-Net model folders"),
        "{err}"
    );
}

#[test]
fn several_model_folders_are_ensembled_as_nnunet_ensemble_does() {
    let tmp = tempfile::tempdir().unwrap();
    let models = fixtures().join("models/Dataset901_FixtureMR");
    let (m3d, m2d) = (
        models.join("nnUNetTrainer_MedsegFixture__nnUNetPlans__3d_fullres"),
        models.join("nnUNetTrainer_MedsegFixture__nnUNetPlans__2d"),
    );
    let input = fixtures().join("inputs/Dataset901_FixtureMR/imagesTs");
    let out = tmp.path().join("pred");
    let args = [
        "predict".as_ref(),
        "--model".as_ref(),
        m3d.as_os_str(),
        "--model".as_ref(),
        m2d.as_os_str(),
        "--folds".as_ref(),
        "0".as_ref(),
        "--input".as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--no-tta".as_ref(),
    ];
    ok(&args);
    for case in ["mr_100", "mr_101"] {
        let got = medseg_volume::read_labels(&out.join(format!("{case}.nii.gz"))).unwrap();
        let expected = fixtures().join(format!(
            "expected/ensemble_iso_3d_2d__f0__notta/{case}.nii.gz"
        ));
        let want = medseg_volume::read_labels(&expected).unwrap();
        let same = got
            .data
            .iter()
            .zip(&want.data)
            .filter(|(a, b)| a == b)
            .count();
        assert!(
            same as f64 >= 0.999 * want.data.len() as f64,
            "{case}: {same}/{} voxels equal to nnUNetv2_ensemble's",
            want.data.len()
        );
    }

    // an nnU-Net folder and something else
    let run = medseg(&[
        "predict".as_ref(),
        "--model".as_ref(),
        m3d.as_os_str(),
        "--model".as_ref(),
        tmp.path().as_os_str(),
        "--input".as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(err.contains("not an nnU-Net model folder"), "{err}");
}

#[test]
fn overlap_outside_zero_to_one_is_refused_for_nnunet_models() {
    let tmp = tempfile::tempdir().unwrap();
    let input = fixtures().join("inputs/Dataset902_FixtureAnisoCT/imagesTs");
    let model = aniso_model();
    let run = medseg(&[
        "predict".as_ref(),
        "--model".as_ref(),
        model.as_os_str(),
        "--input".as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        tmp.path().as_os_str(),
        "--overlap".as_ref(),
        "1.5".as_ref(),
    ]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        err.contains("--overlap 1.5") && err.contains("step_size"),
        "{err}"
    );
}
