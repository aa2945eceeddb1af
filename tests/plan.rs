//! `medseg plan` end to end: synth -> plan -> plan.json.

use std::process::Command;

fn medseg() -> Command {
    Command::new(env!("CARGO_BIN_EXE_medseg"))
}

#[test]
fn plan_writes_plan_json_and_prints_one_json_object() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    let st = medseg()
        .args(["synth", "--output"])
        .arg(&ds)
        .args(["--cases", "4", "--test-cases", "0", "--size", "32"])
        .status()
        .unwrap();
    assert!(st.success());
    let cfg = tmp.path().join("exp.toml");
    std::fs::write(
        &cfg,
        "[data]\ndataset = \"ds\"\n[train]\noutput = \"run\"\n",
    )
    .unwrap();
    let out = medseg()
        .args(["plan", "--json", "--config"])
        .arg(&cfg)
        .args(["--set", "preprocess.patch_budget_voxels=32768"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["cases"], 4);
    let patch: Vec<u64> = serde_json::from_value(summary["patch_size"].clone()).unwrap();
    assert!(patch.iter().product::<u64>() <= 32768);
    let plan = medseg_preprocess::Plan::load(&tmp.path().join("run/plan.json")).unwrap();
    assert_eq!(plan.num_cases, 4);
    assert_eq!(
        plan.patch_size.to_vec(),
        patch.iter().map(|&p| p as usize).collect::<Vec<_>>()
    );

    // a broken dataset fails the integrity check with a message naming the case
    let first_label = std::fs::read_dir(ds.join("labelsTr"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(&first_label).unwrap();
    let out = medseg()
        .args(["plan", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("case"));
}
