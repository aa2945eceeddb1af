//! NaN and Inf voxels are replaced before normalization (and counted), so one bad voxel
//! neither poisons the statistics nor the network input.

use medseg_preprocess::{
    FingerprintOptions, Plan, PlanOptions, fingerprint_case, non_finite_warning, preprocess_case,
    replace_non_finite,
};
use medseg_volume::synth::{SynthConfig, write_dataset};
use ndarray::{Array3, Axis};
use std::path::PathBuf;

#[test]
fn replace_non_finite_uses_the_finite_minimum_and_maximum() {
    let mut a = Array3::from_shape_fn((2, 2, 2), |(k, j, i)| (k * 4 + j * 2 + i) as f32);
    a[[0, 0, 0]] = f32::NAN;
    a[[0, 0, 1]] = f32::INFINITY;
    a[[1, 1, 1]] = f32::NEG_INFINITY;
    assert_eq!(replace_non_finite(a.view_mut()), 3);
    assert_eq!(a[[0, 0, 0]], 2.0, "NaN -> finite minimum");
    assert_eq!(a[[0, 0, 1]], 6.0, "+Inf -> finite maximum");
    assert_eq!(a[[1, 1, 1]], 2.0, "-Inf -> finite minimum");
    assert_eq!(replace_non_finite(a.view_mut()), 0);
    let mut all_nan = Array3::from_elem((2, 2, 2), f32::NAN);
    assert_eq!(replace_non_finite(all_nan.view_mut()), 8);
    assert!(all_nan.iter().all(|&x| x == 0.0));
}

#[test]
fn preprocessing_and_fingerprint_replace_nan_and_inf_before_normalization() {
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
    let case = &ds.cases[0];
    let mut images = medseg_volume::read_channels(&case.images).unwrap();
    let label = medseg_volume::read_labels(case.label.as_ref().unwrap()).unwrap();
    {
        let mut ch = images.data.index_axis_mut(Axis(0), 0);
        for (n, v) in ch
            .iter_mut()
            .enumerate()
            .filter(|(n, _)| n % 53 == 0)
            .take(75)
        {
            *v = if n % 2 == 0 { f32::NAN } else { f32::INFINITY };
        }
    }
    let direct = medseg_preprocess::count_non_finite(images.data.index_axis(Axis(0), 0));
    assert_eq!(direct, 75, "shape {:?}", images.data.shape());
    let fp_opts = FingerprintOptions::default();
    let fpc = fingerprint_case(&case.name, &images, Some(&label), &fp_opts, 0).unwrap();
    assert_eq!(fpc.non_finite, vec![75]);
    let st = fpc.intensity[0].as_ref().unwrap();
    assert!(
        st.mean.is_finite() && st.std.is_finite() && st.max.is_finite(),
        "{st:?}"
    );

    let fp = medseg_preprocess::DatasetFingerprint::from_cases(
        ds.name.clone(),
        ds.channel_names.clone(),
        ds.labels.clone(),
        vec![fpc],
    );
    let mut cfg = medseg_config::ExperimentConfig::from_toml_str(
        "[data]\ndataset = \"x\"\n",
        &[],
        std::path::Path::new("test.toml"),
        Default::default(),
    )
    .unwrap();
    cfg.preprocess.patch_budget_voxels = Some(16 * 16 * 16);
    let plan = Plan::create(&fp, &PlanOptions::from_config(&cfg).unwrap()).unwrap();
    let pre = preprocess_case(&images, Some(&label), &plan).unwrap();
    assert_eq!(pre.non_finite, vec![75]);
    assert!(
        pre.image.iter().all(|x| x.is_finite()),
        "the network input is finite"
    );

    let files: Vec<PathBuf> = case.images.clone();
    let w = non_finite_warning(&case.name, &files, &pre.non_finite).unwrap();
    assert!(w.contains(&case.name) && w.contains("75"), "{w}");
    assert!(non_finite_warning(&case.name, &files, &[0]).is_none());
}
