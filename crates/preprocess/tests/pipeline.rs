//! Fingerprint -> plan -> preprocess -> restore on a synthetic dataset.

use medseg_preprocess::{
    FingerprintOptions, Plan, PlanOptions, fingerprint_dataset, preprocess_case,
    restore_labels_to_original, restore_to_original,
};
use medseg_volume::synth::{SynthConfig, write_dataset};
use ndarray::{Array4, Axis};

fn options(dims: usize) -> PlanOptions {
    let mut cfg = medseg_config::ExperimentConfig::from_toml_str(
        "[data]\ndataset = \"x\"\n",
        &[format!("model.dims={dims}")],
        std::path::Path::new("test.toml"),
        Default::default(),
    )
    .unwrap();
    cfg.preprocess.patch_budget_voxels = Some(32 * 32 * 32);
    PlanOptions::from_config(&cfg).unwrap()
}

#[test]
fn plan_preprocess_and_restore_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        cases: 4,
        test_cases: 0,
        dims: 3,
        size: 32,
        seed: 3,
    };
    write_dataset(tmp.path(), &cfg, &|_| {}).unwrap();
    let ds = medseg_volume::dataset::Dataset::open(tmp.path()).unwrap();
    let fp = fingerprint_dataset(&ds, &FingerprintOptions::default(), &|_| {}).unwrap();
    assert_eq!(fp.cases.len(), 4);
    for c in &fp.cases {
        let voxels: usize = c.shape_kji.iter().product();
        assert_eq!(c.label_voxels.values().sum::<usize>(), voxels);
        let st = c.intensity[0]
            .as_ref()
            .expect("synthetic cases have foreground");
        assert!(st.samples > 0 && st.samples <= 10_000);
        assert!(
            st.percentile_00_5 <= st.percentile_50_0 && st.percentile_50_0 <= st.percentile_99_5
        );
    }
    assert!(fp.channels[0].is_some());
    let plan = Plan::create(&fp, &options(3)).unwrap();
    // patch: divisible by 2^pools, within the budget, at least one downsampling
    for a in 0..3 {
        assert_eq!(
            plan.patch_size[a] % (1 << plan.pools_per_axis[a]),
            0,
            "{plan:?}"
        );
    }
    assert!(plan.patch_size.iter().product::<usize>() <= 32 * 32 * 32);
    assert!(plan.num_stages >= 2 && plan.batch_size >= 2);
    assert_eq!(plan.normalization.len(), ds.channel_names.len());
    let path = tmp.path().join("plan.json");
    plan.save(&path).unwrap();
    let loaded = Plan::load(&path).unwrap();
    // (serde_json's float parsing may differ from the written value in the last bit)
    assert_eq!(
        (loaded.patch_size, loaded.batch_size, loaded.num_stages),
        (plan.patch_size, plan.batch_size, plan.num_stages)
    );
    assert_eq!(loaded.normalization.len(), plan.normalization.len());
    for a in 0..3 {
        assert!((loaded.target_spacing[a] - plan.target_spacing[a]).abs() < 1e-12);
    }

    let case = &ds.cases[0];
    let images = medseg_volume::read_channels(&case.images).unwrap();
    let label = medseg_volume::read_labels(case.label.as_ref().unwrap()).unwrap();
    let pre = preprocess_case(&images, Some(&label), &plan).unwrap();
    let l = pre.label.as_ref().unwrap();
    assert_eq!(&pre.image.shape()[1..], l.shape());
    assert_eq!(pre.props.preprocessed.geometry.orientation_code(), "RAS");
    for a in 0..3 {
        let want = plan.target_spacing_for(
            pre.props.cropped.geometry.spacing,
            pre.props.cropped.shape_kji[0],
        )[a];
        assert!((pre.props.preprocessed.geometry.spacing[a] - want).abs() < 1e-12);
    }
    // restoring a one-hot of the preprocessed label gives back (nearly) the original label
    let nc = plan.num_classes;
    let mut onehot = Array4::<f32>::zeros((nc, l.dim().0, l.dim().1, l.dim().2));
    for ((k, j, i), &v) in l.indexed_iter() {
        onehot[[v as usize, k, j, i]] = 1.0;
    }
    let back = restore_to_original(onehot.view(), &pre.props).unwrap();
    assert_eq!(&back.shape()[1..], label.data.shape());
    let am = medseg_postprocess::argmax(back.view());
    let agree = am
        .iter()
        .zip(label.data.iter())
        .filter(|(a, b)| a == b)
        .count() as f64
        / am.len() as f64;
    assert!(agree > 0.97, "agreement {agree}");
    let back_l = restore_labels_to_original(l.view(), &pre.props).unwrap();
    let agree2 = back_l
        .iter()
        .zip(label.data.iter())
        .filter(|(a, b)| a == b)
        .count() as f64
        / am.len() as f64;
    assert!(agree2 > 0.97, "agreement {agree2}");
    // probabilities still sum to one everywhere
    let sums = back.sum_axis(Axis(0));
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-4));
}

#[test]
fn identity_plan_is_lossless() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        cases: 2,
        test_cases: 0,
        dims: 3,
        size: 24,
        seed: 5,
    };
    write_dataset(tmp.path(), &cfg, &|_| {}).unwrap();
    let ds = medseg_volume::dataset::Dataset::open(tmp.path()).unwrap();
    let fp = fingerprint_dataset(&ds, &FingerprintOptions::default(), &|_| {}).unwrap();
    let case = &ds.cases[1];
    let images = medseg_volume::read_channels(&case.images).unwrap();
    let label = medseg_volume::read_labels(case.label.as_ref().unwrap()).unwrap();
    let mut opts = options(3);
    opts.spacing = Some(fp.cases[1].spacing);
    let plan = Plan::create(&fp, &opts).unwrap();
    let pre = preprocess_case(&images, Some(&label), &plan).unwrap();
    let back = restore_labels_to_original(pre.label.as_ref().unwrap().view(), &pre.props).unwrap();
    assert_eq!(
        back, label.data,
        "reorient + crop + uncrop + un-reorient must be exact"
    );
}

#[test]
fn two_d_plan() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        cases: 3,
        test_cases: 0,
        dims: 2,
        size: 48,
        seed: 1,
    };
    write_dataset(tmp.path(), &cfg, &|_| {}).unwrap();
    let ds = medseg_volume::dataset::Dataset::open(tmp.path()).unwrap();
    let fp = fingerprint_dataset(&ds, &FingerprintOptions::default(), &|_| {}).unwrap();
    let plan = Plan::create(&fp, &options(2)).unwrap();
    assert_eq!(plan.dims, 2);
    assert_eq!(plan.patch_size[2], 1);
    assert_eq!(plan.pools_per_axis[2], 0);
    let case = &ds.cases[0];
    let images = medseg_volume::read_channels(&case.images).unwrap();
    let pre = preprocess_case(&images, None, &plan).unwrap();
    assert_eq!(pre.image.shape()[1], 1);
}
