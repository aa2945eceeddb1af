//! `medseg evaluate` end to end on tests/fixtures/metrics: `--json` must reproduce every value of
//! expected.json under the README's tolerances; missing predictions and grid mismatches are
//! clear errors.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/metrics");

fn medseg() -> Command {
    Command::new(env!("CARGO_BIN_EXE_medseg"))
}

fn fixture(p: &str) -> PathBuf {
    Path::new(FIXTURES).join(p)
}

fn close(key: &str, want: &Value, got: &Value, tol: &Value) -> bool {
    let class = |c: &str| {
        tol[c]["keys"]
            .as_array()
            .is_some_and(|ks| ks.iter().any(|k| k == key))
    };
    match (want, got) {
        (Value::Null, Value::Null) => true,
        (Value::Null, _) | (_, Value::Null) => false,
        _ => {
            let (w, g) = (want.as_f64().unwrap(), got.as_f64().unwrap());
            let d = (w - g).abs();
            let rel_abs = |c: &str| {
                tol[c]["abs"].as_f64().unwrap() + tol[c]["rel"].as_f64().unwrap() * w.abs()
            };
            if class("ratios") {
                d <= rel_abs("ratios")
            } else if class("distances_mm") {
                d <= rel_abs("distances_mm")
            } else if key == "auc" {
                d <= tol["auc"]["abs"].as_f64().unwrap()
            } else {
                d == 0.0
            }
        }
    }
}

#[test]
fn json_matches_expected() {
    let out = medseg()
        .args(["evaluate", "--json", "--pred"])
        .arg(fixture("pred"))
        .arg("--gt")
        .arg(fixture("gt"))
        .arg("--prob")
        .arg(fixture("prob"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON object");
    let exp: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap();
    let tol = &exp["tolerances"];
    let mut bad = Vec::new();
    let mut n = 0;
    for (name, case) in exp["cases"].as_object().unwrap() {
        let g = got["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["case"] == name.as_str())
            .unwrap_or_else(|| panic!("case {name} missing"));
        for (label, want) in case["labels"].as_object().unwrap() {
            for (k, w) in want.as_object().unwrap() {
                n += 1;
                if !close(k, w, &g["labels"][label][k], tol) {
                    bad.push(format!(
                        "{name}/{label}/{k}: {w} vs {}",
                        g["labels"][label][k]
                    ));
                }
            }
        }
    }
    for (label, want) in exp["case_level"].as_object().unwrap() {
        for (k, w) in want.as_object().unwrap() {
            n += 1;
            if !close(k, w, &got["case_level"][label][k], tol) {
                bad.push(format!(
                    "case_level/{label}/{k}: {w} vs {}",
                    got["case_level"][label][k]
                ));
            }
        }
    }
    assert!(n > 600);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    // The summary has the documented shape.
    let dice = &got["summary"]["1"]["dice"];
    for k in ["mean", "std", "median", "min", "max", "n", "n_null"] {
        assert!(dice.get(k).is_some(), "summary.1.dice.{k}");
    }
    assert!(got["summary"]["foreground_mean"]["dice"]["mean"].is_number());
}

/// Copies the named ground truths and predictions into a fresh folder pair.
fn subset(dir: &Path, gts: &[&str], preds: &[&str]) -> (PathBuf, PathBuf) {
    let (g, p) = (dir.join("gt"), dir.join("pred"));
    std::fs::create_dir_all(&g).unwrap();
    std::fs::create_dir_all(&p).unwrap();
    for c in gts {
        std::fs::copy(
            fixture(&format!("gt/{c}.nii.gz")),
            g.join(format!("{c}.nii.gz")),
        )
        .unwrap();
    }
    for c in preds {
        std::fs::copy(
            fixture(&format!("pred/{c}.nii.gz")),
            p.join(format!("{c}.nii.gz")),
        )
        .unwrap();
    }
    (p, g)
}

#[test]
fn missing_prediction_is_an_error_or_worst_case() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, g) = subset(tmp.path(), &["aniso3d", "hole"], &["aniso3d"]);
    let labels = fixture("dataset.json");
    let out = medseg()
        .args(["evaluate", "--json", "--pred"])
        .arg(&p)
        .arg("--gt")
        .arg(&g)
        .arg("--labels")
        .arg(&labels)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("hole") && err.contains("no prediction"),
        "{err}"
    );

    let out = medseg()
        .args(["evaluate", "--json", "--missing", "worst", "--pred"])
        .arg(&p)
        .arg("--gt")
        .arg(&g)
        .arg("--labels")
        .arg(&labels)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["n_missing"], 1);
    let hole = got["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["case"] == "hole")
        .unwrap();
    assert_eq!(hole["missing_prediction"], true);
    assert_eq!(hole["labels"]["1"]["dice"], 0.0);
    assert_eq!(hole["labels"]["1"]["hd95"], hole["image_diagonal_mm"]);
}

#[test]
fn grid_mismatch_names_the_case() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, g) = subset(tmp.path(), &["aniso3d"], &[]);
    // A prediction with another case's grid under this case's name.
    std::fs::copy(fixture("pred/hole.nii.gz"), p.join("aniso3d.nii.gz")).unwrap();
    let out = medseg()
        .args(["evaluate", "--pred"])
        .arg(&p)
        .arg("--gt")
        .arg(&g)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("aniso3d") && err.contains("shape"), "{err}");
}

#[test]
fn output_dir_gets_every_report_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("report");
    let out = medseg()
        .args(["evaluate", "--pred"])
        .arg(fixture("pred"))
        .arg("--gt")
        .arg(fixture("gt"))
        .arg("--prob")
        .arg(fixture("prob"))
        .arg("--output")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "metrics.csv",
        "summary.json",
        "report.md",
        "boxplots.png",
        "roc.png",
    ] {
        let len = std::fs::metadata(out_dir.join(f))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 100, "{f} missing or empty");
    }
    let csv = std::fs::read_to_string(out_dir.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 10 * 3);
}
