//! One forward pass of every fixture network against torch's output (nnU-Net's own network
//! class, eval mode, float32; tests/fixtures/nnunet/forward_check, made by generate.py).

use burn::tensor::{Device, Tensor, TensorData};
use medseg_nnunet::{DatasetJson, NetworkSpec, NnUnetCheckpoint, Plans, WeightMap};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/nnunet")
}

/// `(shape, values)` of the float32 array `key` in an `.npz`.
fn npz_f32(path: &Path, key: &str) -> (Vec<usize>, Vec<f32>) {
    let mut z = npyz::npz::NpzArchive::open(path).unwrap();
    let a = z.by_name(key).unwrap().unwrap();
    let shape = a.shape().iter().map(|&d| d as usize).collect();
    (shape, a.into_vec::<f32>().unwrap())
}

fn check(model: &str, folder: &str, configuration: &str) {
    let root = fixtures();
    let dir = root.join("models").join(folder);
    let plans = Plans::read(&dir.join("plans.json")).unwrap();
    let dataset = DatasetJson::read(&dir.join("dataset.json")).unwrap();
    let cfg = plans.configuration(configuration).unwrap();
    let spec = NetworkSpec::from_plans(
        &plans.path,
        &cfg.architecture.network_class_name,
        &cfg.architecture.arch_kwargs,
        dataset.num_channels(),
        dataset.num_outputs(),
    )
    .unwrap();
    let ckpt = NnUnetCheckpoint::read(&dir.join("fold_0/checkpoint_final.pth")).unwrap();
    let device = Device::flex();
    let net = spec
        .load(WeightMap::new(ckpt.path.clone(), ckpt.weights, &device))
        .unwrap();
    let file = root.join(format!("forward_check/{model}__fold0.npz"));
    let (xs, x) = npz_f32(&file, "x");
    let (ys, y) = npz_f32(&file, "y");
    let x5 = if xs.len() == 4 {
        vec![xs[0], xs[1], 1, xs[2], xs[3]]
    } else {
        xs.clone()
    };
    let x: Tensor<5> = Tensor::from_data(TensorData::new(x, x5), &device);
    let got: Vec<f32> = net.forward(x).into_data().try_into_vec::<f32>().unwrap();
    assert_eq!(
        got.len(),
        y.len(),
        "{model}: output size (expected shape {ys:?})"
    );
    let scale = y.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(&y)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        worst <= 1e-4 * scale.max(1.0),
        "{model}: max |medseg - torch| = {worst} (max |y| = {scale})"
    );
}

#[test]
fn plain_3d_isotropic() {
    check(
        "iso_3d_plain",
        "Dataset901_FixtureMR/nnUNetTrainer_MedsegFixture__nnUNetPlans__3d_fullres",
        "3d_fullres",
    );
}

#[test]
fn residual_encoder_3d() {
    check(
        "iso_3d_resenc",
        "Dataset901_FixtureMR/nnUNetTrainer_MedsegFixture__nnUNetResEncUNetMPlans__3d_fullres",
        "3d_fullres",
    );
}

#[test]
fn plain_2d_isotropic() {
    check(
        "iso_2d",
        "Dataset901_FixtureMR/nnUNetTrainer_MedsegFixture__nnUNetPlans__2d",
        "2d",
    );
}

#[test]
fn plain_3d_anisotropic_kernels() {
    check(
        "aniso_3d_plain",
        "Dataset902_FixtureAnisoCT/nnUNetTrainer_MedsegFixture__nnUNetPlans__3d_fullres",
        "3d_fullres",
    );
}

#[test]
fn plain_2d_anisotropic_dataset() {
    check(
        "aniso_2d",
        "Dataset902_FixtureAnisoCT/nnUNetTrainer_MedsegFixture__nnUNetPlans__2d",
        "2d",
    );
}
