//! Runs the binary's command module (`src/cmd/model.rs`) in-process: `inspect --config` on a
//! temporary config (valid and invalid patch) and a tiny `bench train-step`.

#[path = "../../../src/cmd/model.rs"]
#[allow(dead_code)]
mod model_cmd;

use model_cmd::*;

fn write_config(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("[data]\ndataset = \"nowhere\"\n{body}")).unwrap();
    p
}

#[test]
fn inspect_config_valid_and_invalid_patch() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "small.toml",
        "[model]\ndims = 3\nfeatures = [4, 8, 16]\nattention_gates = true\nbottleneck = \"transformer\"\nheads = 2\nin_channels = 1\nnum_classes = 3\n[train]\npatch_size = [16, 16, 16]\nbatch_size = 2\n",
    );
    let args = InspectConfigArgs {
        config: cfg.clone(),
        set: vec![],
        json: true,
    };
    run_inspect_config(&args).unwrap();
    // without a plan or [model] features: nnU-Net's network for the patch, as a table; an
    // odd patch is padded to the pooling as the planner pads it
    let default = write_config(
        dir.path(),
        "default.toml",
        "[train]\npatch_size = [96, 160, 160]\n",
    );
    for patch in ["[96,160,160]", "[96,100,160]"] {
        run_inspect_config(&InspectConfigArgs {
            config: default.clone(),
            set: vec![format!("train.patch_size={patch}")],
            json: false,
        })
        .unwrap();
    }
    // the network [model] writes (5 stages, stride 2) needs a divisible patch
    let err = run_inspect_config(&InspectConfigArgs {
        config: default,
        set: vec![
            "train.patch_size=[96,100,160]".into(),
            "model.features=[32,64,128,256,320]".into(),
        ],
        json: false,
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("patch 100 is not divisible by 16 at stage 4; nearest valid sizes: 96 or 112"),
        "{err}"
    );
    let bad = InspectConfigArgs {
        config: cfg.clone(),
        set: vec!["train.patch_size=[16, 18, 16]".into()],
        json: false,
    };
    let err = run_inspect_config(&bad).unwrap_err().to_string();
    assert!(
        err.contains("patch 18 is not divisible by 4 at stage 2; nearest valid sizes: 16 or 20"),
        "{err}"
    );
    let unknown = write_config(dir.path(), "unknown.toml", "[model]\nfeaturez = [4]\n");
    assert!(
        run_inspect_config(&InspectConfigArgs {
            config: unknown,
            set: vec![],
            json: false
        })
        .is_err()
    );
}

#[test]
fn bench_train_step_tiny() {
    let args = BenchArgs {
        what: BenchWhat::TrainStep(TrainStepArgs {
            dims: 2,
            patch: 16,
            batch: 1,
            features: vec![4, 8],
            steps: 1,
            variant: "residual".into(),
            deep_supervision: true,
            device: "flex".into(),
            json: true,
        }),
    };
    run_bench(&args).unwrap();
    let bad = BenchArgs {
        what: BenchWhat::TrainStep(TrainStepArgs {
            dims: 2,
            patch: 15,
            batch: 1,
            features: vec![4, 8],
            steps: 1,
            variant: "conv".into(),
            deep_supervision: false,
            device: "flex".into(),
            json: true,
        }),
    };
    assert!(run_bench(&bad).is_err());
}
