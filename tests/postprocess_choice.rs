//! Postprocessing chosen by validation, end to end through the binary: training writes
//! `RUN/postprocessing.json` and its Dice before/after into summary.json; `medseg predict`
//! applies the file on top of `[postprocess]`; `train.choose_postprocessing = false` writes
//! none.

use medseg_postprocess::{Connectivity, PostprocessChoice, label_components};
use std::path::Path;
use std::process::Command;

fn ok(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_medseg"))
        .args(args)
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .expect("run medseg");
    assert!(
        out.status.success(),
        "medseg {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A tiny run (3 short epochs, about a second).
fn write_config(dir: &Path, name: &str, choose: bool) -> std::path::PathBuf {
    let text = format!(
        r#"
[data]
dataset = "data"
folds = 3
fold = 0

[model]
dims = 3
features = [4, 8, 16]
deep_supervision = false

[train]
output = "{name}"
patch_size = [16, 16, 16]
batch_size = 2
epochs = 3
iterations_per_epoch = 6
learning_rate = 0.01
schedule = "constant"
seed = 7
threads = 2
choose_postprocessing = {choose}

[inference]
tta = false
"#
    );
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A test image holding the held-out case twice, side by side along `i`: whatever the
/// network finds in it, it finds twice, so the prediction has at least two components.
fn write_twins(data: &Path, dir: &Path) -> std::path::PathBuf {
    let v =
        medseg_volume::read_volume(&data.join("imagesTs").join("case_006_0000.nii.gz")).unwrap();
    let twins = ndarray::concatenate(ndarray::Axis(2), &[v.data.view(), v.data.view()]).unwrap();
    let out = dir.join("twins");
    std::fs::create_dir_all(&out).unwrap();
    let twins = medseg_volume::Volume::new(twins, v.geometry);
    let opts = medseg_volume::WriteOptions::default();
    medseg_volume::write_volume(&out.join("case_006_0000.nii.gz"), &twins, &opts).unwrap();
    out
}

fn predict_case(run: &Path, input: &Path, out: &Path) -> ndarray::Array3<u16> {
    ok(&[
        "predict",
        "--model",
        run.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    medseg_volume::read_labels(&out.join("case_006.nii.gz"))
        .unwrap()
        .data
}

#[test]
fn training_chooses_the_postprocessing_and_predict_applies_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("data");
    ok(&[
        "synth",
        "--output",
        data.to_str().unwrap(),
        "--cases",
        "6",
        "--test-cases",
        "1",
        "--size",
        "24",
        "--seed",
        "3",
    ]);
    let cfg = write_config(dir, "run", true);
    let log = ok(&["train", "--config", cfg.to_str().unwrap()]);
    assert!(
        log.contains("postprocessing chosen on 2 validation case(s)"),
        "{log}"
    );
    let run = dir.join("run");

    // The file holds a choice made on the fold's validation cases, and summary.json reports
    // the Dice after it (and before it, inside "postprocessing").
    let file = run.join("postprocessing.json");
    let choice: PostprocessChoice =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(choice.cases, 2);
    assert!(choice.foreground_mean_after >= choice.foreground_mean_before);
    let summary = read_json(&run.join("summary.json"));
    let fv = &summary["final_validation"];
    assert_eq!(
        fv["foreground_mean_dice"].as_f64(),
        Some(choice.foreground_mean_after)
    );
    assert_eq!(
        fv["postprocessing"]["foreground_mean_before"].as_f64(),
        Some(choice.foreground_mean_before)
    );

    // predict without any chosen step: the raw prediction, with (at least) two components
    let twins = write_twins(&data, dir);
    let mut none = choice.clone();
    none.largest_foreground = false;
    none.largest_component_labels.clear();
    std::fs::write(&file, serde_json::to_string(&none).unwrap()).unwrap();
    let raw = predict_case(&run, &twins, &dir.join("raw"));
    let fg = label_components(raw.mapv(|l| l > 0).view(), Connectivity::Corners);
    assert!(
        fg.count() > 1,
        "the twins image should give two components ({} found)",
        fg.count()
    );

    // a choice of the foreground's largest component: the stray blobs are gone
    let mut lcc = none.clone();
    lcc.largest_foreground = true;
    std::fs::write(&file, serde_json::to_string(&lcc).unwrap()).unwrap();
    let cleaned = predict_case(&run, &twins, &dir.join("lcc"));
    let after = label_components(cleaned.mapv(|l| l > 0).view(), Connectivity::Corners);
    assert_eq!(
        after.count(),
        1,
        "predict did not apply postprocessing.json"
    );
    let mut expected = raw.clone();
    lcc.apply(&mut expected);
    assert_eq!(cleaned, expected);

    // a run without the file predicts as before (raw)
    std::fs::remove_file(&file).unwrap();
    assert_eq!(predict_case(&run, &twins, &dir.join("nofile")), raw);

    // a broken file is a one-line error naming it and the fix
    std::fs::write(&file, "{not json").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_medseg"))
        .args(["predict", "--model", run.to_str().unwrap()])
        .args(["--input", data.join("imagesTs").to_str().unwrap()])
        .args(["--output", dir.join("bad").to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("postprocessing.json") && err.contains("delete it"),
        "{err}"
    );
}

#[test]
fn choose_postprocessing_false_writes_no_choice() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("data");
    ok(&[
        "synth",
        "--output",
        data.to_str().unwrap(),
        "--cases",
        "6",
        "--test-cases",
        "1",
        "--size",
        "24",
        "--seed",
        "3",
    ]);
    let cfg = write_config(dir, "off", false);
    // a stale choice from an earlier training of this run must not survive it
    let run = dir.join("off");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("postprocessing.json"), "{}").unwrap();
    ok(&["train", "--config", cfg.to_str().unwrap()]);
    assert!(!run.join("postprocessing.json").exists());
    let summary = read_json(&run.join("summary.json"));
    assert!(summary["final_validation"]["postprocessing"].is_null());
    assert!(summary["final_validation"]["foreground_mean_dice"].is_number());
}
