//! `medseg train --time-budget`: with no config file (the shipped template), the plan times
//! candidate networks on this machine, records them and the choice in `plan.json` and
//! `summary.json`, and the whole run (planning, caching, timing, training, validation, final
//! checkpoint) ends within the budget. A budget too short to train is refused with the fix.

mod common;

use common::{medseg, ok, write_dataset};
use serde_json::Value;
use std::path::Path;

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn train_args(data: &Path, run: &Path, budget: &str) -> Vec<String> {
    [
        "train",
        "--dataset",
        data.to_str().unwrap(),
        "--output",
        run.to_str().unwrap(),
        "--time-budget",
        budget,
        "--set",
        "train.threads=1",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn a_budgeted_run_without_config_ends_within_its_budget_and_records_the_choice() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), "MRI", [1.0; 3], [20, 24, 20]);
    let run = tmp.path().join("run");
    let budget = 20.0;
    let started = std::time::Instant::now();
    let out = medseg(&train_args(&data, &run, "20s"));
    let wall = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("time budget 20s"), "{stderr}");

    let summary = read_json(&run.join("summary.json"));
    let used = summary["seconds"].as_f64().unwrap();
    assert!(
        used <= budget,
        "the run took {used:.1} s of a {budget} s budget"
    );
    assert!(wall <= budget + 5.0, "the process took {wall:.1} s");
    let tb = &summary["time_budget"];
    assert_eq!(tb["within_budget"], Value::Bool(true), "{tb}");
    assert!(tb["chosen"]["step_seconds"].as_f64().unwrap() > 0.0, "{tb}");
    assert!(summary["iterations_done"].as_u64().unwrap() >= 1);

    let plan = read_json(&run.join("plan.json"));
    let choice = &plan["time_budget"];
    assert_eq!(choice["budget_seconds"].as_f64(), Some(budget));
    let candidates = choice["candidates"].as_array().unwrap();
    let chosen = &candidates[choice["chosen"].as_u64().unwrap() as usize];
    assert!(chosen["step_seconds"].as_f64().unwrap() > 0.0, "{chosen}");
    // The plan's network is the chosen one; nnU-Net's stays on record.
    assert_eq!(
        plan["network"]["features_per_stage"],
        chosen["features_per_stage"]
    );
    assert_eq!(plan["patch_size"], chosen["patch_size"]);
    assert_eq!(
        choice["without_budget"]["network"]["features_per_stage"],
        serde_json::json!([32, 64, 128])
    );
    // network.json (what predict rebuilds) has the chosen widths.
    let network = read_json(&run.join("network.json"));
    assert_eq!(network["features"], chosen["features_per_stage"]);
    // The schedule is the budget's, not the template's 1000 x 250.
    let epochs = summary["epochs_done"].as_u64().unwrap();
    assert!(epochs < 1000, "{epochs} epochs");
}

#[test]
fn a_budget_too_short_to_train_is_refused_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), "MRI", [1.0; 3], [20, 24, 20]);
    let run = tmp.path().join("run");
    let out = medseg(&train_args(&data, &run, "2s"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().last().unwrap_or("");
    assert!(
        line.contains("time_budget") && line.contains("longer budget"),
        "{stderr}"
    );
    assert!(!run.join("checkpoint_last").exists());
}

#[test]
fn a_budget_without_a_unit_names_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let out = medseg(&train_args(tmp.path(), &tmp.path().join("run"), "20"));
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\"20m\""), "{stderr}");
}

#[test]
fn train_without_config_or_dataset_says_what_it_needs() {
    let out = medseg(&["train".to_string()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--dataset") || stderr.contains("--config"),
        "{stderr}"
    );
    // `--help` shows the budget workflow's flags.
    let help = ok(&["train".to_string(), "--help".to_string()]);
    assert!(
        help.contains("--time-budget") && help.contains("--dataset"),
        "{help}"
    );
}
