//! DICOM through the binary: `inspect DICOM_DIR`, `predict --input DICOM_DIR` (one case named
//! after the folder, NIfTI out with the series' geometry, the same labels as the same volume
//! given as NIfTI), a folder of series folders, `--series`, and `--output-format`.

mod common;

use common::{medseg, ok};
use medseg_volume::{ImageFormat, read_image, read_labels, write_image};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn dicom_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dicom")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// One tiny 3D run (1 channel, 1 epoch) trained on a synthetic dataset, shared by the tests.
fn trained() -> &'static PathBuf {
    static RUN: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        ok(&[
            "synth",
            "-o",
            s(&root.join("data")),
            "--cases",
            "4",
            "--test-cases",
            "1",
            "--size",
            "20",
        ]);
        let cfg = root.join("exp.toml");
        std::fs::write(
            &cfg,
            r#"
[data]
dataset = "data"
folds = 2
fold = 0

[model]
dims = 3
features = [4, 8]

[train]
output = "run"
patch_size = [16, 16, 16]
batch_size = 2
epochs = 1
iterations_per_epoch = 2
learning_rate = 0.01
seed = 7
validation_interval = 1
threads = 1

[inference]
tta = false
"#,
        )
        .unwrap();
        ok(&["train", "--config", s(&cfg)]);
        let run = root.join("run");
        (dir, run)
    })
    .1
}

fn predict(input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "predict",
        "--model",
        s(trained()),
        "--input",
        s(input),
        "-o",
        s(out),
    ];
    args.extend_from_slice(extra);
    medseg(&args)
}

fn assert_success(o: &std::process::Output) {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn inspect_shows_a_dicom_series() {
    let dir = dicom_fixtures().join("ct_int16_sitk");
    let d: serde_json::Value = serde_json::from_str(&ok(&["inspect", "--json", s(&dir)])).unwrap();
    assert_eq!(d["format"], "dicom");
    assert_eq!(d["shape"], serde_json::json!([16, 12, 5]));
    assert_eq!(d["slices"], 5);
    assert_eq!(d["modality"], "CT");
    assert_eq!(d["datatype"], "int16");
    assert_eq!(d["rescale_intercept"], -1024.0);
    assert_eq!(d["finite_count"], 16 * 12 * 5);
    let v = read_image(&dir).unwrap();
    let mean = v.data.iter().map(|&x| f64::from(x)).sum::<f64>() / v.data.len() as f64;
    assert!((d["mean"].as_f64().unwrap() - mean).abs() < 1e-6);
    for (a, want) in v.geometry.spacing.iter().enumerate() {
        assert!((d["spacing"][a].as_f64().unwrap() - want).abs() < 1e-9);
    }
    let table = ok(&["inspect", s(&dir)]);
    assert!(
        table.contains("dicom") && table.contains("series") && table.contains("rescale"),
        "{table}"
    );

    // several series: listed, exit 1, one line; --series picks one
    let two = dicom_fixtures().join("two_series");
    let out = medseg(&["inspect", s(&two)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("2 DICOM series")
            && err.contains("--series")
            && err.trim().lines().count() == 1,
        "{err}"
    );
    let uid = "2.25.170000000000000000000000000000000410";
    let d: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", "--json", "--series", uid, s(&two)])).unwrap();
    assert_eq!(d["series_uid"], uid);
    assert_eq!(d["series_description"], "second series");
    assert_eq!(d["other_series"].as_array().unwrap().len(), 1);
}

#[test]
fn predict_segments_a_dicom_series_into_nifti_with_its_geometry() {
    let tmp = tempfile::tempdir().unwrap();
    let series = dicom_fixtures().join("mr_oblique_uint16");
    let out = tmp.path().join("pred");
    let run = predict(&series, &out, &["--probabilities"]);
    assert_success(&run);
    // one case, named after the folder, written as NIfTI
    let pred = out.join("mr_oblique_uint16.nii.gz");
    let labels = read_labels(&pred).unwrap();
    let volume = read_image(&series).unwrap();
    assert_eq!(labels.data.shape(), volume.data.shape());
    assert!(
        labels.geometry.difference(&volume.geometry, 1e-5).is_none(),
        "{:?} vs {:?}",
        labels.geometry,
        volume.geometry
    );
    // the same volume given as NIfTI gets the same labels
    let nifti_in = tmp.path().join("nifti");
    std::fs::create_dir_all(&nifti_in).unwrap();
    write_image(&nifti_in.join("mr_oblique_uint16.nii.gz"), &volume).unwrap();
    let out2 = tmp.path().join("pred_nifti");
    assert_success(&predict(&nifti_in, &out2, &["--probabilities"]));
    let from_nifti = read_labels(&out2.join("mr_oblique_uint16.nii.gz")).unwrap();
    assert_eq!(labels.data, from_nifti.data);
    // the same network input: the probabilities agree (up to the float32 rounding of the
    // geometry in the NIfTI header, which moves the resampling by about 1e-7)
    let probs = |dir: &Path| {
        medseg_volume::read_nifti(&dir.join("probabilities/mr_oblique_uint16.nii.gz"))
            .unwrap()
            .data
    };
    let (a, b) = (probs(&out), probs(&out2));
    assert!(a.len() > labels.data.len(), "{} probabilities", a.len());
    assert_eq!(a.shape(), b.shape());
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "probabilities differ by up to {worst}");

    // --output-format mha for the DICOM case
    let out3 = tmp.path().join("pred_mha");
    assert_success(&predict(&series, &out3, &["--output-format", "mha"]));
    let mha = read_image(&out3.join("mr_oblique_uint16.mha")).unwrap();
    assert_eq!(mha.data, labels.data.mapv(f32::from));
    assert!(mha.geometry.difference(&volume.geometry, 1e-5).is_none());
    assert!(!out3.join("mr_oblique_uint16.nii.gz").exists());

    // --output-format nrrd for a NIfTI input (default would be NIfTI)
    let out4 = tmp.path().join("pred_nrrd");
    assert_success(&predict(&nifti_in, &out4, &["--output-format", "nrrd"]));
    let nrrd = read_image(&out4.join("mr_oblique_uint16.nrrd")).unwrap();
    assert_eq!(nrrd.data, labels.data.mapv(f32::from));
    assert_eq!(
        ImageFormat::detect(&out4.join("mr_oblique_uint16.nrrd")),
        Some(ImageFormat::Nrrd)
    );
}

#[test]
fn a_folder_of_series_folders_is_one_case_per_series() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("patients");
    for (case, src) in [("patient_a", "rle_int16"), ("patient_b", "jpeg_lossless")] {
        let dst = input.join(case);
        std::fs::create_dir_all(&dst).unwrap();
        for e in std::fs::read_dir(dicom_fixtures().join(src)).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
        }
    }
    // a NIfTI case beside them is a case too
    let nifti = read_image(&dicom_fixtures().join("ct_int16_sitk")).unwrap();
    write_image(&input.join("patient_c.nii.gz"), &nifti).unwrap();
    let out = tmp.path().join("pred");
    assert_success(&predict(&input, &out, &[]));
    for case in ["patient_a", "patient_b", "patient_c"] {
        let labels = read_labels(&out.join(format!("{case}.nii.gz"))).unwrap();
        let src = if case == "patient_c" {
            "patient_c.nii.gz"
        } else {
            case
        };
        let v = read_image(&input.join(src)).unwrap();
        assert_eq!(labels.data.shape(), v.data.shape(), "{case}");
        assert!(
            labels.geometry.difference(&v.geometry, 1e-5).is_none(),
            "{case}"
        );
    }
}

#[test]
fn several_series_fail_the_case_until_one_is_chosen() {
    let tmp = tempfile::tempdir().unwrap();
    let two = dicom_fixtures().join("two_series");
    let out = tmp.path().join("pred");
    let run = predict(&two, &out, &[]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(
        err.contains("2 DICOM series") && err.contains("--series UID"),
        "{err}"
    );
    let failures = std::fs::read_to_string(out.join("failures.json")).unwrap();
    assert!(failures.contains("two_series"), "{failures}");
    let uid = "2.25.170000000000000000000000000000000400";
    assert_success(&predict(&two, &out, &["--series", uid]));
    let labels = read_labels(&out.join("two_series.nii.gz")).unwrap();
    assert_eq!(labels.data.shape(), &[3, 12, 16]);
    assert!(!out.join("failures.json").exists());
    // a refused series names the file and the transfer syntax
    let run = predict(&dicom_fixtures().join("jpeg2000"), &out, &[]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        err.contains("JPEG 2000") && err.contains("slice.dcm"),
        "{err}"
    );
}

#[test]
fn predict_help_names_dicom_and_output_format() {
    let help = ok(&["predict", "--help"]);
    assert!(
        help.contains("DICOM-SEG") && help.contains("--output-format") && help.contains("--series"),
        "{help}"
    );
}
