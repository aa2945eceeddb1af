//! medseg against nnU-Net itself on the fixtures of tests/fixtures/nnunet (made by
//! generate.py with nnunetv2 2.8.1): preprocessing, float16 logits, and the whole
//! `nnUNetv2_predict` chain (segmentations and probabilities) for every model folder, fold
//! set and TTA setting in manifest.json.

use burn::tensor::Device;
use half::f16;
use medseg_nnunet::{CheckpointChoice, ExportedCase, ModelFolder, NnUnetPredictor, ensemble_cases};
use ndarray::{Array4, ArrayD, IxDyn};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/nnunet")
}

fn manifest() -> Value {
    serde_json::from_str(&std::fs::read_to_string(root().join("manifest.json")).unwrap()).unwrap()
}

/// An `.npz` array as f32 (float32 or float16 on disk).
fn npz(path: &Path, key: &str) -> ArrayD<f32> {
    let mut z = npyz::npz::NpzArchive::open(path).unwrap();
    let a = z.by_name(key).unwrap().unwrap();
    let shape: Vec<usize> = a.shape().iter().map(|&d| d as usize).collect();
    let half = a.dtype().descr().contains("f2");
    let v: Vec<f32> = if half {
        a.into_vec::<f16>()
            .unwrap()
            .into_iter()
            .map(f32::from)
            .collect()
    } else {
        a.into_vec::<f32>().unwrap()
    };
    ArrayD::from_shape_vec(IxDyn(&shape), v).unwrap()
}

fn max_abs_diff(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b.iter())
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// The channel files of `case` in the dataset of a model folder.
fn case_files(dataset: &str, case: &str, channels: usize) -> Vec<PathBuf> {
    (0..channels)
        .map(|c| root().join(format!("inputs/{dataset}/imagesTs/{case}_{c:04}.nii.gz")))
        .collect()
}

fn read_case(files: &[PathBuf]) -> (Array4<f32>, [f64; 3]) {
    let mc = medseg_volume::read_channels(files).unwrap();
    let s = mc.geometry.spacing;
    (mc.data, [s[2], s[1], s[0]])
}

fn predictor(model: &Value, folds: &[String], tta: bool) -> NnUnetPredictor {
    let dir = root().join(model["folder"].as_str().unwrap());
    let folder = ModelFolder::open(&dir).unwrap();
    let folds = folder.select_folds(folds).unwrap();
    NnUnetPredictor::load(folder, folds, CheckpointChoice::Final, tta, &Device::flex()).unwrap()
}

#[test]
fn preprocessing_matches_nnunet() {
    let m = manifest();
    for (key, entry) in m["intermediates"].as_object().unwrap() {
        if !key.starts_with("Dataset") {
            continue;
        }
        let (dataset, rest) = key.split_once("__").unwrap();
        let (plans_cfg, case) = rest.rsplit_once("__").unwrap();
        let configuration = plans_cfg.strip_prefix("nnUNetPlans_").unwrap();
        let model = m["models"]
            .as_object()
            .unwrap()
            .values()
            .find(|v| {
                v["dataset"] == dataset
                    && v["configuration"] == configuration
                    && v["plans"] == "nnUNetPlans"
            })
            .unwrap();
        let p = predictor(model, &[], false);
        let (data, spacing) = read_case(&case_files(dataset, case, p.num_channels()));
        let pre = p.preprocess(case, data.view(), spacing).unwrap();
        let expected = npz(&root().join(entry["file"].as_str().unwrap()), "data");
        let worst = max_abs_diff(&pre.data.into_dyn(), &expected);
        assert!(
            worst <= 1e-4,
            "{key}: preprocessed data differs from nnU-Net's by {worst}"
        );
        let props = &entry["properties"];
        let bbox: Vec<Vec<usize>> =
            serde_json::from_value(props["bbox_used_for_cropping"].clone()).unwrap();
        assert_eq!(
            pre.bbox.start_kji.to_vec(),
            bbox.iter().map(|b| b[0]).collect::<Vec<_>>(),
            "{key}: bbox"
        );
        assert_eq!(
            pre.bbox.end_kji.to_vec(),
            bbox.iter().map(|b| b[1]).collect::<Vec<_>>(),
            "{key}: bbox"
        );
    }
}

#[test]
fn logits_match_nnunet() {
    let m = manifest();
    for (key, entry) in m["intermediates"].as_object().unwrap() {
        let Some(input) = entry.get("input").and_then(Value::as_str) else {
            continue;
        };
        let run_name = key.rsplit_once("__").unwrap().0;
        let run = &m["runs"][run_name];
        let model = &m["models"][run["model"].as_str().unwrap()];
        let folds: Vec<String> = run["folds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.to_string())
            .collect();
        let p = predictor(model, &folds, run["tta"].as_bool().unwrap());
        let data = npz(&root().join(input), "data");
        let data = data.into_dimensionality::<ndarray::Ix4>().unwrap();
        let pre = medseg_nnunet::PreprocessedCase {
            shape_before_cropping: [0; 3],
            bbox: medseg_preprocess::BoundingBox::full([0; 3]),
            shape_after_cropping: [0; 3],
            original_spacing: [1.0; 3],
            target_spacing: [1.0; 3],
            data,
        };
        let got = p.logits(&pre, &mut |_, _| {}).into_dyn();
        let expected = npz(&root().join(entry["file"].as_str().unwrap()), "logits");
        let worst = max_abs_diff(&got, &expected);
        let equal = got
            .iter()
            .zip(expected.iter())
            .filter(|(a, b)| a == b)
            .count();
        eprintln!(
            "{key}: max |logit diff| {worst}, {equal}/{} float16 values identical",
            got.len()
        );
        assert!(
            worst <= 0.1,
            "{key}: logits differ from nnU-Net's by up to {worst}"
        );
    }
}

#[test]
fn predictions_match_nnunet_predict() {
    let m = manifest();
    for (run_name, run) in m["runs"].as_object().unwrap() {
        let model = &m["models"][run["model"].as_str().unwrap()];
        let folds: Vec<String> = run["folds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.to_string())
            .collect();
        let p = predictor(model, &folds, run["tta"].as_bool().unwrap());
        let dataset = model["dataset"].as_str().unwrap();
        for (case, expect) in run["cases"].as_object().unwrap() {
            let seg = expect["segmentation"].as_str().unwrap();
            let probs = expect["probabilities"].as_str().unwrap();
            compare_with_nnunet(&p, dataset, run_name, case, seg, probs);
        }
    }
}

/// medseg's prediction of `case` against `expected/RUN/SEG` and `expected/RUN/PROBS`.
fn compare_with_nnunet(
    p: &NnUnetPredictor,
    dataset: &str,
    run_name: &str,
    case: &str,
    seg_file: &str,
    probs_file: &str,
) {
    let out = predict_case(p, dataset, case);
    // the segmentation-only export (no probabilities asked for) is nnU-Net's too
    let (data, spacing) = read_case(&case_files(dataset, case, p.num_channels()));
    let seg_only = p
        .predict_segmentation(case, data.view(), spacing, &mut |_, _| {})
        .unwrap();
    let expected = root().join("expected").join(run_name).join(seg_file);
    let want = medseg_volume::read_labels(&expected).unwrap().data;
    let differ = seg_only.iter().zip(&want).filter(|(a, b)| a != b).count();
    assert!(
        differ as f64 <= 1e-3 * want.len() as f64,
        "{run_name}/{case}: the segmentation-only export differs from nnU-Net's on {differ} voxels"
    );
    let files = (seg_file, probs_file);
    compare_outputs(out, p.num_classes(), run_name, case, files);
}

fn predict_case(p: &NnUnetPredictor, dataset: &str, case: &str) -> ExportedCase {
    let (data, spacing) = read_case(&case_files(dataset, case, p.num_channels()));
    p.predict(case, data.view(), spacing, &mut |_, _| {})
        .unwrap()
}

/// `out` against `expected/RUN/SEG` and `expected/RUN/PROBS`: >= 99.9 % of voxels equal,
/// Dice >= 0.999 per label, probabilities within 2e-3 (float16 storage).
fn compare_outputs(
    out: ExportedCase,
    num_classes: usize,
    run_name: &str,
    case: &str,
    (seg_file, probs_file): (&str, &str),
) {
    let dir = root().join("expected").join(run_name);
    let seg = medseg_volume::read_labels(&dir.join(seg_file)).unwrap();
    assert_eq!(
        seg.data.shape(),
        out.segmentation.shape(),
        "{run_name}/{case}: shape"
    );
    let n = seg.data.len();
    let same = seg
        .data
        .iter()
        .zip(out.segmentation.iter())
        .filter(|(a, b)| a == b)
        .count();
    assert!(
        same as f64 >= 0.999 * n as f64,
        "{run_name}/{case}: {same}/{n} voxels equal"
    );
    for label in 1..num_classes as u16 {
        let (mut both, mut a, mut b) = (0usize, 0usize, 0usize);
        for (&x, &y) in seg.data.iter().zip(out.segmentation.iter()) {
            both += usize::from(x == label && y == label);
            a += usize::from(x == label);
            b += usize::from(y == label);
        }
        let dice = if a + b == 0 {
            1.0
        } else {
            2.0 * both as f64 / (a + b) as f64
        };
        assert!(
            dice >= 0.999,
            "{run_name}/{case}: Dice of label {label} vs nnU-Net {dice}"
        );
    }
    let probs = npz(&dir.join(probs_file), "probabilities");
    let worst = max_abs_diff(&out.probabilities.into_dyn(), &probs);
    eprintln!("{run_name}/{case}: {same}/{n} voxels equal, max |p diff| {worst}");
    assert!(
        worst <= 2e-3,
        "{run_name}/{case}: probabilities differ by {worst}"
    );
}

/// The region-based model of regions/generate.py (sigmoid outputs, regions_class_order).
#[test]
fn region_based_predictions_match_nnunet_predict() {
    let m: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("regions/manifest.json")).unwrap(),
    )
    .unwrap();
    let dataset = m["dataset"].as_str().unwrap();
    let model = serde_json::json!({"folder": m["model"]});
    for (run_name, run) in m["runs"].as_object().unwrap() {
        let p = predictor(&model, &["0".to_string()], run["tta"].as_bool().unwrap());
        assert!(p.folder.dataset.regions.is_some());
        for case in run["cases"].as_object().unwrap().keys() {
            let (seg, probs) = (format!("{case}.nii.gz"), format!("{case}.npz"));
            compare_with_nnunet(&p, dataset, run_name, case, &seg, &probs);
        }
    }
}

/// `nnUNetv2_ensemble` of two configurations (ensemble/generate.py): the exported
/// probabilities averaged, then the argmax.
#[test]
fn ensembles_match_nnunet_ensemble() {
    let m: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("ensemble/manifest.json")).unwrap(),
    )
    .unwrap();
    let dataset = m["dataset"].as_str().unwrap();
    for (run_name, run) in m["runs"].as_object().unwrap() {
        let tta = run["tta"].as_bool().unwrap();
        let members: Vec<NnUnetPredictor> = m["models"]
            .as_object()
            .unwrap()
            .values()
            .map(|folder| predictor(&serde_json::json!({"folder": folder}), &["0".into()], tta))
            .collect();
        for case in run["cases"].as_object().unwrap().keys() {
            let outs = members
                .iter()
                .map(|p| predict_case(p, dataset, case))
                .collect();
            let out = ensemble_cases(outs, None).unwrap();
            let (seg, probs) = (format!("{case}.nii.gz"), format!("{case}.npz"));
            let files = (seg.as_str(), probs.as_str());
            compare_outputs(out, members[0].num_classes(), run_name, case, files);
        }
    }
}

/// `nnUNetv2_predict -step_size 0.25` (step_size/generate.py): more, denser tiles.
#[test]
fn a_smaller_step_size_matches_nnunet_predict() {
    let m: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("step_size/manifest.json")).unwrap(),
    )
    .unwrap();
    let dataset = m["dataset"].as_str().unwrap();
    let run_name = m["run"].as_str().unwrap();
    let p = predictor(
        &serde_json::json!({"folder": m["model"]}),
        &["0".into()],
        false,
    )
    .with_step_size(m["step_size"].as_f64().unwrap())
    .unwrap();
    for case in m["cases"].as_object().unwrap().keys() {
        let (seg, probs) = (format!("{case}.nii.gz"), format!("{case}.npz"));
        compare_with_nnunet(&p, dataset, run_name, case, &seg, &probs);
    }
    let p = predictor(
        &serde_json::json!({"folder": m["model"]}),
        &["0".into()],
        false,
    );
    for bad in [0.0, 1.5, f64::NAN] {
        let p = NnUnetPredictor::load(
            p.folder.clone(),
            vec!["fold_0".into()],
            CheckpointChoice::Final,
            false,
            &Device::flex(),
        )
        .unwrap();
        let e = p.with_step_size(bad).unwrap_err().to_string();
        assert!(e.contains("step size") && e.contains("plans.json"), "{e}");
    }
}
