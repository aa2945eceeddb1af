//! Lost or inconsistent work, tried through the binary as a hostile user would: outputs cut
//! short, runs trained over, two processes in one folder, a lock left by a kill, one bad case
//! in a cohort. Each test is named after the contract it checks. Training is tiny (a few
//! iterations of a two-stage UNet on 16-voxel phantoms).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn medseg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medseg"))
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .expect("run medseg")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(args: &[&str]) -> Output {
    let out = medseg(args);
    assert!(
        out.status.success(),
        "medseg {args:?} failed:\n{}",
        stderr(&out)
    );
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A tiny experiment on `dir/data`, training into `dir/{run}`.
fn write_config(dir: &Path, run: &str, epochs: usize) -> PathBuf {
    let text = format!(
        r#"
[data]
dataset = "data"
folds = 3
fold = 0

[model]
dims = 3
features = [4, 8]
deep_supervision = true

[train]
output = "{run}"
patch_size = [16, 16, 16]
batch_size = 1
epochs = {epochs}
iterations_per_epoch = 2
learning_rate = 0.01
schedule = "constant"
seed = 7
validation_interval = 1
threads = 1

[inference]
tta = false
"#
    );
    let p = dir.join(format!("{run}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

/// Three training and two test phantoms of 16 voxels in `dir/data`.
fn synth(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    ok(&[
        "synth",
        "--output",
        s(&data),
        "--cases",
        "3",
        "--test-cases",
        "2",
        "--size",
        "16",
        "--seed",
        "1",
    ]);
    data
}

/// One trained run shared by the prediction tests: (dataset, run directory).
fn trained() -> &'static (PathBuf, PathBuf) {
    static RUN: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap()
            .keep();
        let data = synth(&dir);
        let cfg = write_config(&dir, "run", 1);
        ok(&["train", "--config", s(&cfg)]);
        (data, dir.join("run"))
    })
}

/// `predict` of the shared run over `input` into `out`, plus `extra` flags.
fn predict(input: &Path, out: &Path, extra: &[&str]) -> Output {
    let (_, run) = trained();
    let mut args = vec!["predict", "--model", s(run), "--input", s(input)];
    args.extend(["--output", s(out)]);
    args.extend_from_slice(extra);
    medseg(&args)
}

fn test_images() -> PathBuf {
    trained().0.join("imagesTs")
}

/// Holds `path` locked as another process would, with its holder line.
fn hold_lock(path: &Path, line: &str, shared: bool) -> File {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    if shared {
        f.try_lock_shared().unwrap();
    } else {
        f.try_lock().unwrap();
        f.write_all(line.as_bytes()).unwrap();
    }
    f
}

#[test]
fn skip_existing_redoes_a_label_map_that_is_empty_or_cut_short() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("preds");
    assert!(predict(&test_images(), &out, &[]).status.success());
    let (a, b) = (out.join("case_003.nii.gz"), out.join("case_004.nii.gz"));
    let whole = std::fs::read(&b).unwrap();
    std::fs::write(&a, b"").unwrap();
    std::fs::write(&b, &whole[..whole.len() / 2]).unwrap();
    for flag in ["--skip-existing", "--resume"] {
        let r = predict(&test_images(), &out, &[flag]);
        assert!(r.status.success(), "{}", stderr(&r));
        assert!(
            stderr(&r).contains("wrote 2 prediction"),
            "{flag}: {}",
            stderr(&r)
        );
        assert!(medseg_volume::read_labels(&a).is_ok() && medseg_volume::read_labels(&b).is_ok());
        // Complete now: the next pass skips both, and `--resume` is the same option.
        let r = predict(&test_images(), &out, &[flag]);
        assert!(stderr(&r).contains("2 skipped"), "{flag}: {}", stderr(&r));
        std::fs::write(&a, b"").unwrap();
        std::fs::write(&b, &whole[..10]).unwrap();
    }
}

#[test]
fn skip_existing_redoes_a_case_whose_probabilities_are_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("preds");
    assert!(
        predict(&test_images(), &out, &["--probabilities"])
            .status
            .success()
    );
    // What a full disk or a kill between the two writes of a case leaves.
    let prob = out.join("probabilities").join("case_003.nii.gz");
    std::fs::remove_file(&prob).unwrap();
    let r = predict(
        &test_images(),
        &out,
        &["--probabilities", "--skip-existing"],
    );
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(stderr(&r).contains("wrote 1 prediction") && stderr(&r).contains("1 skipped"));
    assert!(prob.is_file());
    // A folder predicted without probabilities is not complete for a run that wants them.
    let out2 = tmp.path().join("labels_only");
    assert!(predict(&test_images(), &out2, &[]).status.success());
    let r = predict(
        &test_images(),
        &out2,
        &["--probabilities", "--skip-existing"],
    );
    assert!(stderr(&r).contains("wrote 2 prediction"), "{}", stderr(&r));
    // Label maps from before done markers (or a kill before the marker) are redone.
    std::fs::remove_dir_all(out2.join(".medseg")).unwrap();
    let r = predict(&test_images(), &out2, &["--skip-existing"]);
    assert!(stderr(&r).contains("wrote 2 prediction"), "{}", stderr(&r));
}

/// An input folder with the test phantoms and an unreadable case that sorts first.
fn cohort_with_a_bad_case(dir: &Path) -> PathBuf {
    let input = dir.join("input");
    std::fs::create_dir_all(&input).unwrap();
    for e in std::fs::read_dir(test_images()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, input.join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(input.join("aaa_bad_0000.nii.gz"), b"not a NIfTI file").unwrap();
    input
}

#[test]
fn one_bad_case_does_not_stop_the_cohort_and_is_listed_in_failures_json() {
    let tmp = tempfile::tempdir().unwrap();
    let input = cohort_with_a_bad_case(tmp.path());
    let out = tmp.path().join("preds");
    let r = predict(&input, &out, &[]);
    assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
    let err = stderr(&r);
    assert!(
        err.contains("aaa_bad") && err.contains("failures.json"),
        "{err}"
    );
    assert!(out.join("case_003.nii.gz").is_file() && out.join("case_004.nii.gz").is_file());
    let failures: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("failures.json")).unwrap()).unwrap();
    let list = failures["failures"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{failures}");
    assert_eq!(list[0]["case"], "aaa_bad");
    assert!(
        list[0]["reason"]
            .as_str()
            .unwrap()
            .contains("aaa_bad_0000.nii.gz")
    );
    // --skip-existing tries the bad case again, skips the good ones, and fails again.
    let r = predict(&input, &out, &["--skip-existing"]);
    assert_eq!(r.status.code(), Some(1));
    assert!(stderr(&r).contains("2 skipped"), "{}", stderr(&r));
    // Fixed: the failure list goes.
    std::fs::remove_file(input.join("aaa_bad_0000.nii.gz")).unwrap();
    assert!(predict(&input, &out, &["--skip-existing"]).status.success());
    assert!(!out.join("failures.json").exists());
}

#[test]
fn fail_fast_stops_at_the_first_bad_case() {
    let tmp = tempfile::tempdir().unwrap();
    let input = cohort_with_a_bad_case(tmp.path());
    let out = tmp.path().join("preds");
    let r = predict(&input, &out, &["--fail-fast"]);
    assert_eq!(r.status.code(), Some(1));
    assert!(stderr(&r).contains("aaa_bad"), "{}", stderr(&r));
    assert!(!out.join("case_003.nii.gz").exists());
}

#[test]
fn a_second_predict_into_a_folder_being_written_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("preds");
    let line = "medseg predict (pid 4242 on host node7, since unix time 0)";
    let held = hold_lock(&out.join(".medseg").join("lock"), line, false);
    let r = predict(&test_images(), &out, &[]);
    assert_eq!(r.status.code(), Some(1));
    let err = stderr(&r);
    assert!(err.contains(line) && err.contains("--output"), "{err}");
    assert!(!out.join("case_003.nii.gz").exists());
    drop(held);
    assert!(predict(&test_images(), &out, &[]).status.success());
}

#[test]
fn shards_share_an_output_folder_but_a_shard_runs_once() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("preds");
    let state = out.join(".medseg");
    // Shard 1/2 running elsewhere.
    let _folder = hold_lock(&state.join("lock"), "", true);
    let line = "medseg predict --shard 1/2 (pid 4242 on host node7, since unix time 0)";
    let _shard = hold_lock(&state.join("shard-1-of-2.lock"), line, false);
    let r = predict(&test_images(), &out, &["--shard", "2/2"]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(out.join("case_004.nii.gz").is_file());
    let r = predict(&test_images(), &out, &["--shard", "1/2"]);
    assert_eq!(r.status.code(), Some(1));
    assert!(stderr(&r).contains(line), "{}", stderr(&r));
    // A run over the whole folder waits for the shards, and says which run.
    let r = predict(&test_images(), &out, &[]);
    assert_eq!(r.status.code(), Some(1));
    assert!(stderr(&r).contains(line), "{}", stderr(&r));
}

#[test]
fn train_into_a_finished_run_is_refused_without_resume_or_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    synth(tmp.path());
    let cfg = write_config(tmp.path(), "run", 1);
    ok(&["train", "--config", s(&cfg)]);
    let run = tmp.path().join("run");
    let log = std::fs::read(run.join("train_log.csv")).unwrap();
    let summary = std::fs::read(run.join("summary.json")).unwrap();
    let r = medseg(&["train", "--config", s(&cfg), "--set", "train.seed=8"]);
    assert_eq!(r.status.code(), Some(1));
    let err = stderr(&r);
    for hint in ["finished run", "--resume", "--overwrite", "train.output"] {
        assert!(err.contains(hint), "{hint}: {err}");
    }
    assert_eq!(std::fs::read(run.join("train_log.csv")).unwrap(), log);
    assert_eq!(std::fs::read(run.join("summary.json")).unwrap(), summary);
    let both = medseg(&["train", "--config", s(&cfg), "--resume", "--overwrite"]);
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
    ok(&[
        "train",
        "--config",
        s(&cfg),
        "--overwrite",
        "--set",
        "train.seed=8",
    ]);
    let text = std::fs::read_to_string(run.join("train_log.csv")).unwrap();
    assert_eq!(
        text.lines().count(),
        2,
        "one epoch, not two runs mixed: {text}"
    );
    assert_ne!(std::fs::read(run.join("summary.json")).unwrap(), summary);
}

/// A child process that is killed when the test ends, passed or not (a training of 100000
/// epochs must not outlive a failed assertion).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_second_train_into_a_run_in_progress_is_refused_and_a_killed_ones_lock_is_taken_over() {
    let tmp = tempfile::tempdir().unwrap();
    synth(tmp.path());
    let cfg = write_config(tmp.path(), "run", 100_000);
    let lock = tmp.path().join("run").join("medseg.lock");
    let first = Command::new(env!("CARGO_BIN_EXE_medseg"))
        .args(["train", "--config", s(&cfg)])
        .env("RAYON_NUM_THREADS", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first = KillOnDrop(first);
    let holder = format!("pid {}", first.0.id());
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(&lock).is_ok_and(|l| l.contains(&holder)) {
        assert!(
            started.elapsed().as_secs() < 120,
            "the first train never locked"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let r = medseg(&["train", "--config", s(&cfg), "--resume"]);
    let err = stderr(&r);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&holder) && err.contains("train.output"),
        "{err}"
    );
    // kill -9: the lock file keeps the dead holder's line, but the lock dies with it.
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let r = medseg(&[
        "train",
        "--config",
        s(&cfg),
        "--overwrite",
        "--set",
        "train.epochs=1",
    ]);
    let err = stderr(&r);
    assert!(r.status.success(), "{err}");
    assert!(
        err.contains("taking over the lock") && err.contains(&holder),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap(),
        "",
        "a clean release"
    );
}

#[test]
fn demo_reuses_a_finished_run_and_fresh_retrains() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "run", 1);
    let demo = |extra: &[&str]| {
        let mut args = vec!["demo", "--config", s(&cfg), "--cases", "3"];
        args.extend(["--test-cases", "1", "--size", "16"]);
        args.extend_from_slice(extra);
        stderr(&ok(&args))
    };
    assert!(demo(&[]).contains("trained 1 epochs"));
    let again = demo(&[]);
    assert!(again.contains("using the finished run"), "{again}");
    assert!(!again.contains("trained 1 epochs"), "{again}");
    assert!(demo(&["--fresh"]).contains("trained 1 epochs"));
}
