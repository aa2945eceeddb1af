//! Predictions land exactly on their inputs: oblique and flipped grids (negative qfac),
//! anisotropic spacing, odd sizes and volumes smaller than the patch. The "network" is known
//! (class 1 where the raw intensity exceeds a threshold), so the expected label map is the
//! threshold of the input itself.

use medseg_config::ExperimentConfig;
use medseg_infer::{SlidingWindow, write_prediction};
use medseg_postprocess::argmax;
use medseg_preprocess::pipeline::{preprocess_case, restore_to_original};
use medseg_preprocess::{FingerprintOptions, Plan, PlanOptions, fingerprint_dataset};
use medseg_volume::dataset::Dataset;
use medseg_volume::{
    Geometry, Volume, WriteOptions, read_channels, read_header, read_labels, write_volume,
};
use ndarray::{Array3, Array5, Axis};
use std::path::Path;

const THRESHOLD: f32 = 50.0;

fn write_case(dir: &Path, shape_kji: (usize, usize, usize), g: Geometry) {
    std::fs::create_dir_all(dir.join("imagesTr")).unwrap();
    std::fs::create_dir_all(dir.join("labelsTr")).unwrap();
    // A blob in world coordinates plus a ramp, so orientation mistakes show.
    let img = Array3::from_shape_fn(shape_kji, |(k, j, i)| {
        let w = g.voxel_to_world([i as f64, j as f64, k as f64]);
        let c = g.voxel_to_world([
            shape_kji.2 as f64 / 3.0,
            shape_kji.1 as f64 / 2.0,
            shape_kji.0 as f64 / 2.0,
        ]);
        let r2: f64 = (0..3).map(|a| (w[a] - c[a]).powi(2)).sum();
        (100.0 * (-r2 / 60.0).exp() + i as f64 * 0.5 + 1.0) as f32
    });
    let lab = img.mapv(|v| (v > THRESHOLD) as u8);
    write_volume(
        &dir.join("imagesTr/c_0000.nii.gz"),
        &Volume::new(img, g),
        &WriteOptions::default(),
    )
    .unwrap();
    write_volume(
        &dir.join("labelsTr/c.nii.gz"),
        &Volume::new(lab, g),
        &WriteOptions::default(),
    )
    .unwrap();
    std::fs::write(
        dir.join("dataset.json"),
        r#"{"channel_names": {"0": "MR"}, "labels": {"background": 0, "blob": 1}, "numTraining": 1, "file_ending": ".nii.gz"}"#,
    )
    .unwrap();
}

fn check(shape_kji: (usize, usize, usize), g: Geometry) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_case(dir, shape_kji, g);
    let ds = Dataset::open(dir).unwrap();
    let sp = g.spacing;
    let toml = format!(
        "[data]\ndataset = \".\"\n[preprocess]\nnormalization = [\"none\"]\nspacing = [{}, {}, {}]\n[model]\nfeatures = [4, 8]\n[train]\npatch_size = [16, 16, 8]\n",
        sp[0], sp[1], sp[2]
    );
    let cfg = ExperimentConfig::from_toml_str(&toml, &[], Path::new("t.toml"), dir.to_path_buf())
        .unwrap();
    let fp = fingerprint_dataset(&ds, &FingerprintOptions::default(), &|_| {}).unwrap();
    let plan = Plan::create(&fp, &PlanOptions::from_config(&cfg).unwrap()).unwrap();
    let input = dir.join("imagesTr/c_0000.nii.gz");
    let images = read_channels(std::slice::from_ref(&input)).unwrap();
    let pre = preprocess_case(&images, None, &plan).unwrap();
    let mut sw = SlidingWindow::new(plan.patch_size_kji());
    sw.batch_size = 3;
    let mut threshold_net = |x: Array5<f32>| {
        let (b, _, d, h, w) = x.dim();
        let mut y = Array5::<f32>::zeros((b, 2, d, h, w));
        let shifted = x.index_axis(Axis(1), 0).mapv(|v| v - THRESHOLD);
        y.index_axis_mut(Axis(1), 1).assign(&shifted);
        Ok(y)
    };
    let probs = sw
        .predict(pre.image.view(), &mut threshold_net, &mut |_, _| {})
        .unwrap();
    let back = restore_to_original(probs.view(), &pre.props).unwrap();
    let labels = argmax(back.view());
    let out = dir.join("pred.nii.gz");
    let reference = read_header(&input).unwrap();
    write_prediction(&out, &labels, &reference, 2).unwrap();
    let h = read_header(&out).unwrap();
    assert_eq!(h.affine(), reference.affine(), "affine");
    assert_eq!(
        (h.srow, h.quatern, h.qoffset),
        (reference.srow, reference.quatern, reference.qoffset)
    );
    assert_eq!(h.pixdim[..4], reference.pixdim[..4], "pixdim incl. qfac");
    let pred = read_labels(&out).unwrap();
    let expected = read_labels(&dir.join("labelsTr/c.nii.gz")).unwrap();
    assert_eq!(
        pred.data, expected.data,
        "label map does not line up with the input"
    );
}

#[test]
fn oblique_anisotropic_odd_sizes() {
    let t: f64 = 0.3;
    let g = Geometry {
        spacing: [0.9, 1.3, 2.7],
        origin: [-30.0, 12.0, 5.0],
        direction: [
            [t.cos(), -t.sin(), 0.0],
            [t.sin(), t.cos(), 0.0],
            [0.0, 0.0, 1.0],
        ],
    };
    check((11, 27, 33), g);
}

#[test]
fn flipped_axes_negative_qfac_and_smaller_than_patch() {
    // det(direction) < 0: written with qfac = -1.
    let g = Geometry {
        spacing: [1.5, 1.1, 3.0],
        origin: [20.0, -4.0, -9.0],
        direction: [[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
    };
    check((5, 13, 9), g);
    let lps = Geometry {
        spacing: [1.0, 1.0, 2.0],
        origin: [0.0; 3],
        direction: [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
    };
    check((7, 19, 23), lps);
}
