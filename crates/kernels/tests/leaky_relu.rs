//! medseg's LeakyReLU (`ops::leaky_relu`) against burn's `leaky_relu`: values and
//! gradients, including exact zeros and a non-contiguous (transposed) input.

use burn::tensor::activation::leaky_relu as burn_leaky_relu;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use medseg_kernels::ops::leaky_relu;
use medseg_kernels::trace::KernelPath;

mod common;
use common::{assert_ran, values};

#[test]
fn matches_burn_leaky_relu_and_its_gradient() {
    let device = Device::flex().autodiff();
    device.seed(2);
    for (shape, slope) in [
        ([3usize, 5, 7], 0.01),
        ([2, 70, 600], 0.2),
        ([1, 1, 1], 0.0),
    ] {
        let x = Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        // exact zeros and a transposed (strided) view
        let x = x.clone().mask_fill(x.clone().abs().lower_elem(0.05), 0.0);
        let x = x.swap_dims(1, 2);
        let r = Tensor::<3>::random(x.dims(), Distribution::Normal(0.0, 1.0), &device);
        let run = |fused: bool| {
            let xg = x.clone().require_grad();
            let y = if fused {
                leaky_relu(xg.clone(), slope)
            } else {
                burn_leaky_relu(xg.clone(), slope)
            };
            let grads = (y.clone() * r.clone()).sum().backward();
            (values(y.inner()), values(xg.grad(&grads).unwrap()))
        };
        let (yf, gf) = assert_ran(&[KernelPath::LeakyRelu], || run(true));
        let (yb, gb) = run(false);
        assert_eq!(yf, yb, "{shape:?} forward");
        assert_eq!(gf, gb, "{shape:?} gradient");
    }
}

#[test]
fn inference_device_matches_burn() {
    let device = Device::flex();
    let x = Tensor::<2>::from_data(
        TensorData::new(vec![-2.0f32, -0.0, 0.0, 3.0, -1e-30, 1e30], [2, 3]),
        &device,
    );
    assert_eq!(
        values(assert_ran(&[KernelPath::LeakyRelu], || leaky_relu(
            x.clone(),
            0.1
        ))),
        values(burn_leaky_relu(x, 0.1))
    );
}
