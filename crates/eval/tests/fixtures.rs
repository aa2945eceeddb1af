//! Every value of `tests/fixtures/metrics/expected.json` (MONAI 1.6.1, scikit-learn, MedPy,
//! DeepMind surface-distance; see its README) under the README's tolerances.

use medseg_eval::cases::read_label_names;
use medseg_eval::{EvalOptions, MissingPolicy, evaluate_cases, find_cases};
use serde_json::Value;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/metrics");

fn expected() -> Value {
    let text = std::fs::read_to_string(Path::new(FIXTURES).join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Compares `got` against `want` for every key of `want`, by the tolerance class of the key.
fn compare(ctx: &str, want: &Value, got: &Value, tol: &Value, failures: &mut Vec<String>) {
    let keys_of = |class: &str| -> Vec<String> {
        tol[class]["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect()
    };
    let ratios = keys_of("ratios");
    let distances = keys_of("distances_mm");
    for (k, w) in want.as_object().unwrap() {
        let Some(g) = got.get(k) else {
            failures.push(format!("{ctx} {k}: missing"));
            continue;
        };
        let ok = match (w, g) {
            (Value::Null, Value::Null) => true,
            (Value::Null, _) | (_, Value::Null) => false,
            _ => {
                let (w, g) = (w.as_f64().unwrap(), g.as_f64().unwrap());
                let d = (w - g).abs();
                if ratios.contains(k) {
                    d <= tol["ratios"]["abs"].as_f64().unwrap()
                        + tol["ratios"]["rel"].as_f64().unwrap() * w.abs()
                } else if distances.contains(k) {
                    d <= tol["distances_mm"]["abs"].as_f64().unwrap()
                        + tol["distances_mm"]["rel"].as_f64().unwrap() * w.abs()
                } else if k == "auc" {
                    d <= tol["auc"]["abs"].as_f64().unwrap()
                } else {
                    // Counts (tp, fp, fn, tn, n_cases, n_positive): exact.
                    d == 0.0
                }
            }
        };
        if !ok {
            failures.push(format!("{ctx} {k}: expected {w}, got {g}"));
        }
    }
}

#[test]
fn every_expected_value_matches() {
    let exp = expected();
    let root = Path::new(FIXTURES);
    let list = find_cases(
        &root.join("pred"),
        &root.join("gt"),
        Some(&root.join("prob")),
    )
    .unwrap();
    let names = read_label_names(&root.join("dataset.json")).unwrap();
    let labels: Vec<u16> = names.keys().copied().collect();
    assert_eq!(labels, vec![1, 2, 3]);
    let done = AtomicUsize::new(0);
    let ev = evaluate_cases(
        &list,
        &labels,
        &names,
        &EvalOptions::default(),
        MissingPolicy::Error,
        &|| {
            done.fetch_add(1, Ordering::Relaxed);
        },
    )
    .unwrap();
    assert_eq!(done.load(Ordering::Relaxed), 10);
    let got = ev.to_json();
    check_against_expected(&exp, &got);
}

/// Shared with the binary test in spirit: checks a report object against expected.json.
fn check_against_expected(exp: &Value, got: &Value) {
    let tol = &exp["tolerances"];
    let mut failures = Vec::new();
    let cases = got["cases"].as_array().unwrap();
    let mut n = 0;
    for (name, case) in exp["cases"].as_object().unwrap() {
        let g = cases
            .iter()
            .find(|c| c["case"] == name.as_str())
            .unwrap_or_else(|| panic!("case {name} missing"));
        let diag = case["image_diagonal_mm"].as_f64().unwrap();
        assert!(
            (g["image_diagonal_mm"].as_f64().unwrap() - diag).abs() < 1e-9,
            "{name} diagonal"
        );
        for (label, want) in case["labels"].as_object().unwrap() {
            compare(
                &format!("{name}/{label}"),
                want,
                &g["labels"][label],
                tol,
                &mut failures,
            );
            n += want.as_object().unwrap().len();
        }
    }
    for (label, want) in exp["case_level"].as_object().unwrap() {
        compare(
            &format!("case_level/{label}"),
            want,
            &got["case_level"][label],
            tol,
            &mut failures,
        );
        n += want.as_object().unwrap().len();
    }
    assert!(n > 600, "only {n} values compared");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
