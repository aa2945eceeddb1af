//! The contract with a hostile user, through the built binary: bad voxels, damaged files,
//! degenerate headers and bad settings give a warning or a one-line error naming the file or
//! the key, never a silent wrong result. Each test is named after what it checks; RELIABILITY.md
//! lists them as a table.

mod common;

use common::medseg;
use medseg_volume::dataset::Dataset;
use medseg_volume::{WriteOptions, read_header, read_volume, write_volume};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(o)
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A synthetic dataset (3D, `cases` + `test` cases of `size`³) in `dir/data`.
fn synth(dir: &Path, cases: usize, test: usize, size: usize) -> PathBuf {
    let data = dir.join("data");
    let (c, t, z) = (cases.to_string(), test.to_string(), size.to_string());
    let args = [
        "synth",
        "-o",
        s(&data),
        "--cases",
        &c,
        "--test-cases",
        &t,
        "--size",
        &z,
    ];
    assert_ok(&medseg(&args), "synth");
    data
}

fn write_config(dir: &Path) -> PathBuf {
    let text = r#"
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
"#;
    let p = dir.join("exp.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Sets every `step`-th voxel of an image file to NaN, alternately +Inf (`n` in all), in place
/// (the file is the test's own copy). Returns the number of voxels changed.
fn poison(path: &Path, step: usize, n: usize) -> usize {
    let reference = read_header(path).unwrap();
    let mut v = read_volume(path).unwrap();
    let mut changed = 0;
    for (k, x) in v.data.iter_mut().enumerate() {
        if k % step == 0 && changed < n {
            *x = if changed % 2 == 0 {
                f32::NAN
            } else {
                f32::INFINITY
            };
            changed += 1;
        }
    }
    write_volume(path, &v, &WriteOptions::with_reference(reference)).unwrap();
    changed
}

/// One tiny run trained on a dataset whose every training image holds NaN and Inf voxels
/// (so both a training and a validation case do), shared by the tests that need a model.
struct Trained {
    _dir: tempfile::TempDir,
    root: PathBuf,
    train: Output,
}

fn trained() -> &'static Trained {
    static RUN: OnceLock<Trained> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let data = synth(&root, 4, 2, 20);
        let ds = Dataset::open(&data).unwrap();
        for c in &ds.cases {
            assert_eq!(poison(&c.images[0], 29, 75), 75);
        }
        let cfg = write_config(&root);
        let train = medseg(&["train", "--config", s(&cfg)]);
        Trained {
            _dir: dir,
            root,
            train,
        }
    })
}

#[test]
fn nan_voxels_in_training_and_validation_cases_train_with_a_warning_naming_each_case() {
    let t = trained();
    assert_ok(&t.train, "train on images with NaN voxels");
    let err = stderr(&t.train);
    let ds = Dataset::open(&t.root.join("data")).unwrap();
    for c in &ds.cases {
        assert!(
            err.contains(&format!("case {}: non-finite voxels", c.name)) && err.contains("75 in"),
            "no warning for {}: {err}",
            c.name
        );
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.root.join("run/summary.json")).unwrap())
            .unwrap();
    let v = &summary["final_validation"];
    assert!(
        v["foreground_mean_dice"]
            .as_f64()
            .is_some_and(f64::is_finite),
        "{summary}"
    );
    assert_eq!(
        v["cases"].as_array().unwrap().len(),
        2,
        "every validation case is scored"
    );
}

#[test]
fn predict_with_nan_and_inf_voxels_warns_and_segments_the_repaired_image() {
    let t = trained();
    assert_ok(&t.train, "train");
    let dir = tempfile::tempdir().unwrap();
    let ts = t.root.join("data/imagesTs");
    let name = std::fs::read_dir(&ts)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .min()
        .unwrap();
    let (bad_dir, fixed_dir) = (dir.path().join("bad"), dir.path().join("fixed"));
    std::fs::create_dir_all(&bad_dir).unwrap();
    std::fs::create_dir_all(&fixed_dir).unwrap();
    let bad = bad_dir.join(&name);
    std::fs::copy(ts.join(&name), &bad).unwrap();
    assert_eq!(poison(&bad, 37, 75), 75);
    // The same image with the bad voxels replaced as medseg documents it (finite minimum,
    // +Inf: finite maximum).
    let reference = read_header(&bad).unwrap();
    let mut v = read_volume(&bad).unwrap();
    let finite = || v.data.iter().copied().filter(|x| x.is_finite());
    let (lo, hi) = (
        finite().fold(f32::MAX, f32::min),
        finite().fold(f32::MIN, f32::max),
    );
    v.data.mapv_inplace(|x| match x {
        x if x.is_finite() => x,
        f32::INFINITY => hi,
        _ => lo,
    });
    write_volume(
        &fixed_dir.join(&name),
        &v,
        &WriteOptions::with_reference(reference),
    )
    .unwrap();

    let run = t.root.join("run");
    let (out_bad, out_fixed) = (dir.path().join("pred_bad"), dir.path().join("pred_fixed"));
    let o = medseg(&[
        "predict",
        "--model",
        s(&run),
        "--input",
        s(&bad_dir),
        "-o",
        s(&out_bad),
    ]);
    assert_ok(&o, "predict on NaN input");
    let err = stderr(&o);
    let case = name.trim_end_matches(".nii.gz").trim_end_matches("_0000");
    assert!(
        err.contains(&format!("case {case}: non-finite voxels")) && err.contains("75 in"),
        "{err}"
    );
    let args = [
        "predict",
        "--model",
        s(&run),
        "--input",
        s(&fixed_dir),
        "-o",
        s(&out_fixed),
    ];
    assert_ok(&medseg(&args), "predict on the repaired input");
    let file = format!("{case}.nii.gz");
    let a = read_volume(&out_bad.join(&file)).unwrap();
    let b = read_volume(&out_fixed.join(&file)).unwrap();
    assert_eq!(a.data, b.data, "NaN input segments like the repaired image");
}

#[test]
fn plan_reports_nan_voxels_with_case_and_count() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), 2, 0, 16);
    let ds = Dataset::open(&data).unwrap();
    assert_eq!(poison(&ds.cases[1].images[0], 13, 40), 40);
    let cfg = write_config(dir.path());
    let o = medseg(&["plan", "--config", s(&cfg)]);
    assert_ok(&o, "plan");
    let err = stderr(&o);
    let want = format!(
        "case {}: non-finite voxels (NaN or Inf): 40 in",
        ds.cases[1].name
    );
    assert!(err.contains(&want), "{err}");
    assert!(
        !err.contains(&format!("case {}:", ds.cases[0].name)),
        "{err}"
    );
}

#[test]
fn model_safetensors_has_the_mode_of_the_other_run_files() {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let t = trained();
        assert_ok(&t.train, "train");
        let mode = |f: &str| {
            let m = std::fs::metadata(t.root.join("run").join(f)).unwrap();
            m.permissions().mode() & 0o777
        };
        assert_eq!(mode("model.safetensors"), mode("summary.json"));
        assert_eq!(mode("model.safetensors"), mode("checkpoint_best.bpk"));
    }
}

/// The middle slice of a 3D file as a 2D NIfTI file (dim[0] = 2, shape (x, y)).
fn two_d_file(src: &Path, dst: &Path) {
    let v = read_volume(src).unwrap();
    let mid = v.data.shape()[0] / 2;
    let slice = v.data.slice(ndarray::s![mid..mid + 1, .., ..]).to_owned();
    let flat = medseg_volume::Volume::new(slice, v.geometry);
    let tmp = dst.with_extension("tmp.nii");
    write_volume(&tmp, &flat, &WriteOptions::default()).unwrap();
    let mut b = std::fs::read(&tmp).unwrap();
    std::fs::remove_file(&tmp).unwrap();
    b[40..42].copy_from_slice(&2i16.to_le_bytes());
    std::fs::write(dst, b).unwrap();
}

fn first_file(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap()
}

#[test]
fn two_d_input_into_a_3d_model_keeps_its_two_dimensions_and_evaluates_against_its_gt() {
    let t = trained();
    assert_ok(&t.train, "train");
    let dir = tempfile::tempdir().unwrap();
    let (input, gt) = (dir.path().join("in"), dir.path().join("gt"));
    std::fs::create_dir_all(&input).unwrap();
    std::fs::create_dir_all(&gt).unwrap();
    let data = t.root.join("data");
    two_d_file(
        &first_file(&data.join("imagesTs")),
        &input.join("flat_0000.nii"),
    );
    two_d_file(&first_file(&data.join("labelsTs")), &gt.join("flat.nii"));
    let out = dir.path().join("pred");
    let run = t.root.join("run");
    let o = medseg(&[
        "predict",
        "--model",
        s(&run),
        "--input",
        s(&input),
        "-o",
        s(&out),
    ]);
    assert_ok(&o, "predict 2D");
    let pred = out.join("flat.nii.gz");
    let h = read_header(&pred).unwrap();
    assert_eq!(h.dim[0], 2, "shape {:?}", h.shape());
    let dj = data.join("dataset.json");
    let o = medseg(&[
        "evaluate",
        "--pred",
        s(&out),
        "--gt",
        s(&gt),
        "--labels",
        s(&dj),
        "--json",
    ]);
    assert_ok(&o, "evaluate the 2D prediction against its 2D ground truth");
}

fn gz_of_a_test_image(dir: &Path) -> (Vec<u8>, PathBuf) {
    let data = synth(dir, 1, 1, 16);
    let img = std::fs::read_dir(data.join("imagesTs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .unwrap();
    (std::fs::read(&img).unwrap(), img)
}

#[test]
fn corrupt_gzip_is_a_one_line_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (gz, _) = gz_of_a_test_image(dir.path());
    let n = gz.len();
    for (name, at) in [("flipped", n / 2), ("crc", n - 8), ("isize", n - 3)] {
        let mut b = gz.clone();
        b[at] ^= 0x08;
        let p = dir.path().join(format!("{name}.nii.gz"));
        std::fs::write(&p, &b).unwrap();
        let out = dir.path().join(format!("ev_{name}"));
        let o = medseg(&["evaluate", "--pred", s(&p), "--gt", s(&p), "-o", s(&out)]);
        assert_eq!(o.status.code(), Some(1), "{name}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains(&format!("{name}.nii.gz")) && err.contains("corrupt gzip"),
            "{err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    let p = dir.path().join("cut.nii.gz");
    std::fs::write(&p, &gz[..n - 20]).unwrap();
    let o = medseg(&["evaluate", "--pred", s(&p), "--gt", s(&p)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("truncated gzip"), "{}", stderr(&o));
}

#[test]
fn zero_pixdim_with_qform_only_warns_and_uses_spacing_one() {
    let dir = tempfile::tempdir().unwrap();
    let (gz, img) = gz_of_a_test_image(dir.path());
    drop(gz);
    let mut v = read_volume(&img).unwrap();
    v.geometry = medseg_volume::Geometry::with_spacing([2.0, 3.0, 4.0]);
    let p = dir.path().join("zero.nii");
    write_volume(&p, &v, &WriteOptions::default()).unwrap();
    let mut b = std::fs::read(&p).unwrap();
    b[254..256].copy_from_slice(&0i16.to_le_bytes()); // sform_code 0: qform only
    b[80..84].copy_from_slice(&0f32.to_le_bytes()); // pixdim[1] = 0
    std::fs::write(&p, &b).unwrap();
    let o = medseg(&["inspect", s(&p), "--json"]);
    assert_ok(&o, "inspect");
    assert!(stderr(&o).contains("pixdim[1] = 0"), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let spacing = j.to_string();
    assert!(!spacing.contains("\"spacing\":[0.0"), "{spacing}");
}

#[test]
fn folds_below_two_are_refused_naming_the_key_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), 2, 0, 16);
    let cfg = write_config(dir.path());
    for folds in ["0", "1"] {
        let set = format!("data.folds={folds}");
        let o = medseg(&["plan", "--config", s(&cfg), "--set", &set]);
        assert_eq!(o.status.code(), Some(1));
        let err = stderr(&o);
        assert!(
            err.contains(&format!("--set {set}")) && err.contains("data.fold = \"all\""),
            "{err}"
        );
    }
    let o = medseg(&[
        "plan",
        "--config",
        s(&cfg),
        "--set",
        "data.folds=1",
        "--set",
        "data.fold=\"all\"",
    ]);
    assert_ok(&o, "folds = 1 with fold = \"all\"");
}

#[test]
fn evaluate_reports_undeclared_labels_and_strict_fails() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth(dir.path(), 1, 1, 16);
    let gt_dir = data.join("labelsTs");
    let gt = std::fs::read_dir(&gt_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .unwrap();
    let reference = read_header(&gt).unwrap();
    let mut lab = medseg_volume::read_labels(&gt).unwrap();
    for x in lab.data.iter_mut().take(12) {
        *x = 7;
    }
    let pred_dir = dir.path().join("pred");
    std::fs::create_dir_all(&pred_dir).unwrap();
    let pred = pred_dir.join(gt.file_name().unwrap());
    write_volume(&pred, &lab, &WriteOptions::with_reference(reference)).unwrap();
    let dj = data.join("dataset.json");
    let base = [
        "evaluate",
        "--pred",
        s(&pred_dir),
        "--gt",
        s(&gt_dir),
        "--labels",
        s(&dj),
    ];
    let o = medseg(&base);
    assert_ok(&o, "evaluate");
    let err = stderr(&o);
    assert!(
        err.contains("label 7 (12 voxels in the prediction)"),
        "{err}"
    );
    let mut strict = base.to_vec();
    strict.push("--strict");
    let o = medseg(&strict);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("--strict"), "{}", stderr(&o));
}

#[test]
fn os_errors_are_printed_once() {
    // A folder where a file belongs (`inspect DIR` reads a DICOM series, so a config here).
    let dir = tempfile::tempdir().unwrap();
    let o = medseg(&["plan", "--config", s(dir.path())]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).matches("os error 21").count(),
        1,
        "{}",
        stderr(&o)
    );
    let o = medseg(&["inspect", s(&dir.path().join("missing.nii"))]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).matches("os error 2)").count(),
        1,
        "{}",
        stderr(&o)
    );
}

#[test]
fn corrupt_dim0_is_reported_as_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (_, img) = gz_of_a_test_image(dir.path());
    let v = read_volume(&img).unwrap();
    let p = dir.path().join("dim0.nii");
    write_volume(&p, &v, &WriteOptions::default()).unwrap();
    let mut b = std::fs::read(&p).unwrap();
    b[40..42].copy_from_slice(&9i16.to_le_bytes());
    std::fs::write(&p, &b).unwrap();
    let o = medseg(&["inspect", s(&p)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("dim[0] = 9 "), "{}", stderr(&o));
}

#[test]
fn bad_shard_values_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    for shard in ["0/3", "4/3", "x", "1/0", "2-8"] {
        let o = medseg(&[
            "predict",
            "--model",
            s(dir.path()),
            "--input",
            s(dir.path()),
            "-o",
            s(dir.path()),
            "--shard",
            shard,
        ]);
        assert_eq!(o.status.code(), Some(2), "--shard {shard}: {}", stderr(&o));
        assert!(stderr(&o).contains("--shard"), "{}", stderr(&o));
    }
}

#[test]
fn a_bad_set_value_names_the_set_not_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let o = medseg(&["plan", "--config", s(&cfg), "--set", "train.epochs=abc"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("--set train.epochs=abc"), "{err}");
    assert!(!err.contains("exp.toml"), "{err}");
}
