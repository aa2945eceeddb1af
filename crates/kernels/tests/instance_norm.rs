//! The fused instance norm (`ops::instance_norm`) against burn's `InstanceNorm`, alone and
//! fused with the LeakyReLU after it (against burn's `leaky_relu`): values and the gradients of
//! input, gamma and beta, for 5D and 4D inputs.

use burn::module::Param;
use burn::nn::{InstanceNorm, InstanceNormConfig};
use burn::tensor::activation::leaky_relu;
use burn::tensor::{Device, Distribution, Tensor};
use medseg_kernels::ops::{instance_norm, instance_norm_leaky_relu};
use medseg_kernels::trace::KernelPath;

mod common;
use common::{assert_close, assert_ran, values};

/// `slope`: also the LeakyReLU after the norm.
fn check<const D: usize>(shape: [usize; D], slope: Option<f64>, device: &Device) {
    let c = shape[1];
    let dist = Distribution::Normal(0.0, 1.0);
    let mut norm: InstanceNorm = InstanceNormConfig::new(c).init(device);
    norm.gamma = Some(Param::from_tensor(Tensor::<1>::random([c], dist, device)));
    norm.beta = Some(Param::from_tensor(Tensor::<1>::random([c], dist, device)));
    // an offset and scale per element, so the statistics are not trivial
    let x = Tensor::<D>::random(shape, dist, device) * 3.0 + 1.5;
    let r = Tensor::<D>::random(shape, dist, device);
    let run = |fused: bool| {
        let xg = x.clone().require_grad();
        let y = match (fused, slope) {
            (true, None) => instance_norm(&norm, xg.clone()),
            (true, Some(s)) => instance_norm_leaky_relu(&norm, xg.clone(), s),
            (false, None) => norm.forward(xg.clone()),
            (false, Some(s)) => leaky_relu(norm.forward(xg.clone()), s),
        };
        let grads = (y.clone() * r.clone()).sum().backward();
        let gamma = norm.gamma.as_ref().unwrap().val();
        let beta = norm.beta.as_ref().unwrap().val();
        (
            values(y.inner()),
            values(xg.grad(&grads).unwrap()),
            values(gamma.grad(&grads).unwrap()),
            values(beta.grad(&grads).unwrap()),
        )
    };
    let f = assert_ran(&[KernelPath::InstanceNorm], || run(true));
    let b = run(false);
    let what = format!("{shape:?} slope {slope:?}");
    assert_close(&format!("{what} forward"), &f.0, &b.0, 1e-4);
    assert_close(&format!("{what} dX"), &f.1, &b.1, 1e-4);
    assert_close(&format!("{what} dGamma"), &f.2, &b.2, 1e-4);
    assert_close(&format!("{what} dBeta"), &f.3, &b.3, 1e-4);
}

#[test]
fn matches_burn_instance_norm_and_its_gradients() {
    let device = Device::flex().autodiff();
    device.seed(9);
    for slope in [None, Some(0.01), Some(0.1)] {
        check([2, 8, 5, 6, 7], slope, &device);
        check([1, 3, 17, 9, 4], slope, &device);
        check([2, 16, 3, 3, 3], slope, &device);
        check([3, 4, 11, 13], slope, &device);
    }
}

#[test]
fn inference_device_matches_burn() {
    let device = Device::flex();
    device.seed(4);
    let norm: InstanceNorm = InstanceNormConfig::new(5).init(&device);
    let x = Tensor::<5>::random([2, 5, 4, 6, 3], Distribution::Normal(2.0, 3.0), &device);
    assert_close(
        "inference",
        &values(assert_ran(&[KernelPath::InstanceNorm], || {
            instance_norm(&norm, x.clone())
        })),
        &values(norm.forward(x.clone())),
        1e-4,
    );
    assert_close(
        "inference with LeakyReLU",
        &values(instance_norm_leaky_relu(&norm, x.clone(), 0.1)),
        &values(leaky_relu(norm.forward(x), 0.1)),
        1e-4,
    );
}
