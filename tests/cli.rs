//! One vocabulary across commands: the same option has the same name and help everywhere, and
//! the old spellings (`--out`, `predict --resume`) still work without being advertised.

use std::path::Path;
use std::process::{Command, Output};

fn medseg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medseg"))
        .args(args)
        .output()
        .unwrap()
}

fn help(command: &[&str]) -> String {
    let mut args = command.to_vec();
    args.push("--help");
    let out = medseg(&args);
    assert!(out.status.success(), "{args:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The option names a help text lists (`--name`, at the start of a line).
fn listed_options(help: &str) -> Vec<String> {
    help.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l.strip_prefix("-o, ").unwrap_or(l);
            l.strip_prefix("--")
                .map(|rest| rest.split([' ', ',', '=']).next().unwrap_or("").to_string())
        })
        .collect()
}

#[test]
fn every_output_folder_is_output_o_and_out_is_hidden() {
    for command in [vec!["synth"], vec!["predict"], vec!["evaluate"]] {
        let text = help(&command);
        let options = listed_options(&text);
        assert!(text.contains("-o, --output <DIR>"), "{command:?}:\n{text}");
        assert!(
            !options.iter().any(|o| o == "out"),
            "{command:?}: {options:?}"
        );
    }
}

#[test]
fn resume_continues_training_and_predict_says_skip_existing() {
    assert!(listed_options(&help(&["train"])).contains(&"resume".to_string()));
    let predict = listed_options(&help(&["predict"]));
    assert!(
        predict.contains(&"skip-existing".to_string()),
        "{predict:?}"
    );
    assert!(!predict.contains(&"resume".to_string()), "{predict:?}");
}

#[test]
fn shared_groups_appear_in_every_command_that_computes() {
    for command in [
        vec!["plan"],
        vec!["train"],
        vec!["predict"],
        vec!["evaluate"],
        vec!["demo"],
        vec!["bench", "train-step"],
    ] {
        let text = help(&command);
        let options = listed_options(&text);
        assert!(options.contains(&"threads".to_string()), "{command:?}");
        if command[0] != "plan" && command[0] != "evaluate" {
            assert!(options.contains(&"device".to_string()), "{command:?}");
            // The device values are listed; the LibTorch placeholder is not.
            assert!(
                text.contains("- flex:") && text.contains("- wgpu:") && !text.contains("- tch"),
                "{command:?}:\n{text}"
            );
        }
    }
    for command in [vec!["plan"], vec!["train"], vec!["inspect"]] {
        let options = listed_options(&help(&command));
        for o in ["config", "set"] {
            assert!(options.contains(&o.to_string()), "{command:?}: {o}");
        }
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["bench", "train-step", "--threads", "0"],
        vec!["train", "--set", "train.epochs=1"],
        vec!["predict", "--model", "run", "--input", "x"],
        vec!["synth"],
    ] {
        assert_eq!(medseg(&args).status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn demo_takes_set_without_config() {
    // Parsed (no usage error), then the override itself is rejected before any work.
    let out = medseg(&["demo", "--set", "nonsense"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid --set 'nonsense'"), "{err}");
}

#[test]
fn out_still_works_for_synth_and_evaluate() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_medseg"))
        .args(["synth", "--out"])
        .arg(&data)
        .args(["--cases", "1", "--test-cases", "0", "--size", "16"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(data.join("dataset.json").is_file());

    let metrics = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics");
    let report = tmp.path().join("report");
    let out = Command::new(env!("CARGO_BIN_EXE_medseg"))
        .args(["evaluate", "--no-surface", "--pred"])
        .arg(metrics.join("pred"))
        .arg("--gt")
        .arg(metrics.join("gt"))
        .arg("--out")
        .arg(&report)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.join("summary.json").is_file());
}

#[test]
fn threads_sizes_the_pool_and_overrides_rayon_num_threads() {
    let bench = |threads: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_medseg"));
        cmd.env("RAYON_NUM_THREADS", "3").args([
            "bench",
            "train-step",
            "--dims",
            "2",
            "--patch",
            "16",
            "--batch",
            "1",
            "--features",
            "4,8",
            "--steps",
            "1",
            "--json",
        ]);
        if let Some(n) = threads {
            cmd.args(["--threads", n]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["threads"].as_u64()
    };
    assert_eq!(bench(None), Some(3));
    assert_eq!(bench(Some("1")), Some(1));
}
