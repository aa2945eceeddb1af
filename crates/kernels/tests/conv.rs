//! medseg's 3D conv (`ops::conv3d` on flex) against burn's built-in `conv3d`: forward, input,
//! weight and bias gradients on random inputs of several shapes, and a numerical gradient
//! check on a tiny case; its depth-1 form (how 2D networks run) against `conv2d`; transposed
//! convs against burn's. Each comparison proves, through the kernels' call counters, that
//! medseg's kernels ran (never burn against burn), and the tests print which conv paths this
//! CPU exercised.

use burn::tensor::module::{conv2d, conv3d};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use medseg_kernels::ops;
use medseg_kernels::trace::KernelPath;

mod common;
use common::{assert_close, assert_ran, report_paths, values};

/// medseg's "same" conv through the public API (padding `dil (k - 1) / 2`).
fn same_conv3d(
    x: Tensor<5>,
    w: Tensor<5>,
    b: Tensor<1>,
    stride: [usize; 3],
    dilation: usize,
) -> Tensor<5> {
    let [_, _, k0, k1, k2] = w.dims();
    let p = |k: usize| dilation * (k - 1) / 2;
    let options = ConvOptions::new(stride, [p(k0), p(k1), p(k2)], [dilation; 3], 1);
    ops::conv3d(x, w, Some(b), options)
}

const CONV_PATHS: [KernelPath; 4] = [
    KernelPath::ConvDirect,
    KernelPath::ConvWinograd,
    KernelPath::ConvRowShift,
    KernelPath::ConvIm2col,
];

struct Grads {
    y: Vec<f32>,
    dx: Vec<f32>,
    dw: Vec<f32>,
    db: Vec<f32>,
}

/// Output and gradients of `sum(conv(x, w, b) * r)` by either implementation.
fn run(
    fast: bool,
    x: &Tensor<5>,
    w: &Tensor<5>,
    b: &Tensor<1>,
    r: &Tensor<5>,
    stride: [usize; 3],
    dilation: usize,
) -> Grads {
    let x = x.clone().require_grad();
    let w = w.clone().require_grad();
    let b = b.clone().require_grad();
    let [_, _, k0, k1, k2] = w.dims();
    let y = if fast {
        same_conv3d(x.clone(), w.clone(), b.clone(), stride, dilation)
    } else {
        let p = |k: usize| dilation * (k - 1) / 2;
        conv3d(
            x.clone(),
            w.clone(),
            Some(b.clone()),
            ConvOptions::new(stride, [p(k0), p(k1), p(k2)], [dilation; 3], 1),
        )
    };
    let loss = (y.clone() * r.clone()).sum();
    let grads = loss.backward();
    Grads {
        y: values(y.inner()),
        dx: values(x.grad(&grads).unwrap()),
        dw: values(w.grad(&grads).unwrap()),
        db: values(b.grad(&grads).unwrap()),
    }
}

#[test]
fn matches_burn_conv3d_forward_and_gradients() {
    let device = Device::flex().autodiff();
    device.seed(11);
    // (batch, ci, co, [d, h, w], kernel, stride, dilation)
    type Case = (
        usize,
        usize,
        usize,
        [usize; 3],
        [usize; 3],
        [usize; 3],
        usize,
    );
    let cases: &[Case] = &[
        (1, 1, 8, [7, 9, 11], [3, 3, 3], [1, 1, 1], 1),
        (2, 8, 8, [9, 10, 13], [3, 3, 3], [1, 1, 1], 1),
        (2, 16, 32, [5, 6, 7], [3, 3, 3], [1, 1, 1], 1),
        (1, 64, 64, [4, 5, 6], [3, 3, 3], [1, 1, 1], 1),
        (2, 32, 64, [3, 3, 3], [3, 3, 3], [1, 1, 1], 1),
        (1, 3, 5, [6, 9, 70], [1, 3, 3], [1, 1, 1], 1),
        (2, 16, 2, [5, 7, 6], [1, 1, 1], [1, 1, 1], 1),
        (1, 4, 6, [7, 7, 9], [3, 3, 3], [1, 1, 1], 2),
        (1, 2, 3, [1, 1, 1], [3, 3, 3], [1, 1, 1], 1),
        (2, 8, 16, [16, 15, 17], [3, 3, 3], [2, 2, 2], 1),
        (1, 32, 64, [8, 8, 8], [3, 3, 3], [2, 2, 2], 1),
        (1, 4, 8, [5, 12, 12], [1, 3, 3], [1, 2, 2], 1),
        (2, 8, 16, [9, 8, 7], [1, 1, 1], [2, 2, 2], 1),
        (1, 3, 4, [2, 3, 1], [3, 3, 3], [2, 2, 2], 1),
        // Winograd F(2, 3): >= 128 tiles of 2x2x2 per item, partial tiles along y and x
        (1, 32, 24, [12, 9, 15], [3, 3, 3], [1, 1, 1], 1),
    ];
    for &(n, ci, co, [d, h, w], k, stride, dil) in cases {
        let dist = Distribution::Normal(0.0, 1.0);
        let x = Tensor::<5>::random([n, ci, d, h, w], dist, &device);
        let wt = Tensor::<5>::random([co, ci, k[0], k[1], k[2]], dist, &device);
        let b = Tensor::<1>::random([co], dist, &device);
        let p = |a: usize| dil * (k[a] - 1) / 2;
        let o = |a: usize, i: usize| (i + 2 * p(a) - dil * (k[a] - 1) - 1) / stride[a] + 1;
        let r = Tensor::<5>::random([n, co, o(0, d), o(1, h), o(2, w)], dist, &device);
        let fast = assert_ran(&CONV_PATHS, || run(true, &x, &wt, &b, &r, stride, dil));
        let reference = run(false, &x, &wt, &b, &r, stride, dil);
        let what = format!("n{n} ci{ci} co{co} {d}x{h}x{w} k{k:?} s{stride:?} dil{dil}");
        assert_close(&format!("{what} forward"), &fast.y, &reference.y, 1e-4);
        assert_close(&format!("{what} dX"), &fast.dx, &reference.dx, 1e-4);
        assert_close(&format!("{what} dW"), &fast.dw, &reference.dw, 1e-4);
        assert_close(&format!("{what} dB"), &fast.db, &reference.db, 1e-4);
    }
    assert!(
        medseg_kernels::trace::count(KernelPath::ConvWinograd) > 0,
        "the Winograd case did not take the Winograd path"
    );
    report_paths("conv3d vs burn");
}

/// 2D networks run their convs as 3D convs of kernel depth 1 on `[B, C, 1, H, W]` tensors.
#[test]
fn depth_one_kernels_match_burn_conv2d() {
    let device = Device::flex().autodiff();
    device.seed(12);
    let dist = Distribution::Normal(0.0, 1.0);
    // (batch, ci, co, [h, w], [kh, kw], [sh, sw], dilation)
    type Case = (
        usize,
        usize,
        usize,
        [usize; 2],
        [usize; 2],
        [usize; 2],
        usize,
    );
    let cases: &[Case] = &[
        (4, 1, 16, [32, 24], [3, 3], [1, 1], 1),
        (2, 16, 32, [20, 18], [3, 3], [2, 2], 1),
        (3, 32, 32, [9, 8], [3, 3], [1, 1], 1),
        // Winograd F(2, 3) on 1x3x3 (>= 128 tiles of 2x2)
        (2, 32, 40, [27, 20], [3, 3], [1, 1], 1),
        (2, 8, 4, [13, 11], [3, 3], [1, 1], 2),
        (2, 6, 3, [7, 10], [1, 1], [1, 1], 1),
        (1, 4, 8, [9, 9], [3, 5], [2, 1], 1),
    ];
    for &(n, ci, co, [h, w], [kh, kw], [sh, sw], dil) in cases {
        let x = Tensor::<4>::random([n, ci, h, w], dist, &device).require_grad();
        let wt = Tensor::<4>::random([co, ci, kh, kw], dist, &device).require_grad();
        let b = Tensor::<1>::random([co], dist, &device).require_grad();
        let (ph, pw) = (dil * (kh - 1) / 2, dil * (kw - 1) / 2);
        let reference = conv2d(
            x.clone(),
            wt.clone(),
            Some(b.clone()),
            ConvOptions::new([sh, sw], [ph, pw], [dil; 2], 1),
        );
        let [_, _, ho, wo] = reference.dims();
        let r = Tensor::<4>::random([n, co, ho, wo], dist, &device);
        let options = ConvOptions::new([sh, sw], [ph, pw], [dil; 2], 1);
        let fast = assert_ran(&CONV_PATHS, || {
            ops::conv2d(x.clone(), wt.clone(), Some(b.clone()), options.clone())
        });
        let what = format!("n{n} ci{ci} co{co} {h}x{w} k{kh}x{kw} s{sh}x{sw} dil{dil}");
        let grads_of = |y: Tensor<4>| {
            let g = (y.clone() * r.clone()).sum().backward();
            (
                values(y.inner()),
                values(x.grad(&g).unwrap()),
                values(wt.grad(&g).unwrap()),
                values(b.grad(&g).unwrap()),
            )
        };
        let (fy, fdx, fdw, fdb) = grads_of(fast);
        let (ry, rdx, rdw, rdb) = grads_of(reference);
        assert_close(&format!("{what} forward"), &fy, &ry, 1e-4);
        assert_close(&format!("{what} dX"), &fdx, &rdx, 1e-4);
        assert_close(&format!("{what} dW"), &fdw, &rdw, 1e-4);
        assert_close(&format!("{what} dB"), &fdb, &rdb, 1e-4);
    }
}

#[test]
fn inference_device_matches_burn_conv3d() {
    let device = Device::flex();
    device.seed(5);
    let dist = Distribution::Normal(0.0, 1.0);
    let x = Tensor::<5>::random([2, 4, 6, 7, 5], dist, &device);
    let w = Tensor::<5>::random([3, 4, 3, 3, 3], dist, &device);
    let b = Tensor::<1>::random([3], dist, &device);
    let fast = assert_ran(&CONV_PATHS, || {
        same_conv3d(x.clone(), w.clone(), b.clone(), [1; 3], 1)
    });
    let reference = conv3d(x, w, Some(b), ConvOptions::new([1; 3], [1; 3], [1; 3], 1));
    assert_close("inference", &values(fast), &values(reference), 1e-4);
}

/// Central differences of `L = sum(conv(x, w, b) * r)`. L is linear in each of x, w, b
/// separately, so the central difference is exact up to f32 rounding for any step; a large
/// step keeps that rounding small.
#[test]
fn gradients_match_central_differences() {
    let device = Device::flex().autodiff();
    let (n, ci, co, s) = (1, 2, 3, [3, 4, 5]);
    let seq = |len: usize, a: f32| -> Vec<f32> {
        (0..len)
            .map(|i| ((i as f32 * a).sin() * 0.8) + 0.1)
            .collect()
    };
    let vol = s[0] * s[1] * s[2];
    let xv = seq(n * ci * vol, 0.37);
    let wv = seq(co * ci * 27, 0.91);
    let bv = seq(co, 1.7);
    let rv = seq(n * co * vol, 0.53);
    let t5 = |v: &[f32], shape: [usize; 5]| {
        Tensor::<5>::from_data(TensorData::new(v.to_vec(), shape), &device)
    };
    let x = t5(&xv, [n, ci, s[0], s[1], s[2]]);
    let w = t5(&wv, [co, ci, 3, 3, 3]);
    let b = Tensor::<1>::from_data(TensorData::new(bv.clone(), [co]), &device);
    let r = t5(&rv, [n, co, s[0], s[1], s[2]]);
    let g = run(true, &x, &w, &b, &r, [1; 3], 1);

    let plain = Device::flex();
    let loss = |xv: &[f32], wv: &[f32], bv: &[f32]| -> f64 {
        let t = |v: &[f32], shape: [usize; 5]| {
            Tensor::<5>::from_data(TensorData::new(v.to_vec(), shape), &plain)
        };
        let y = same_conv3d(
            t(xv, [n, ci, s[0], s[1], s[2]]),
            t(wv, [co, ci, 3, 3, 3]),
            Tensor::<1>::from_data(TensorData::new(bv.to_vec(), [co]), &plain),
            [1; 3],
            1,
        );
        values(y)
            .iter()
            .zip(&rv)
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum()
    };
    let h = 0.5f32;
    let check = |name: &str, analytic: &[f32], which: usize| {
        let len = analytic.len();
        for i in (0..len).step_by((len / 17).max(1)) {
            let (mut xp, mut wp, mut bp) = (xv.clone(), wv.clone(), bv.clone());
            let (mut xm, mut wm, mut bm) = (xv.clone(), wv.clone(), bv.clone());
            match which {
                0 => {
                    xp[i] += h;
                    xm[i] -= h;
                }
                1 => {
                    wp[i] += h;
                    wm[i] -= h;
                }
                _ => {
                    bp[i] += h;
                    bm[i] -= h;
                }
            }
            let numeric = (loss(&xp, &wp, &bp) - loss(&xm, &wm, &bm)) / (2.0 * h as f64);
            let a = analytic[i] as f64;
            assert!(
                (numeric - a).abs() <= 1e-3 * (1.0 + a.abs()),
                "{name}[{i}]: analytic {a} vs numeric {numeric}"
            );
        }
    };
    check("dX", &g.dx, 0);
    check("dW", &g.dw, 1);
    check("dB", &g.db, 2);
}

/// Transposed convs with kernel = stride run as a pointwise conv + depth-to-space on flex
/// (`ops::conv_transpose3d` / `conv_transpose2d`): values and gradients against burn's own.
#[test]
fn kernel_stride_transposed_conv_matches_burn() {
    use burn::tensor::module::{conv_transpose2d, conv_transpose3d};
    use burn::tensor::ops::ConvTransposeOptions;
    let device = Device::flex().autodiff();
    device.seed(21);
    let dist = Distribution::Normal(0.0, 1.0);
    // (dims, batch, ci, co, [d, h, w], stride)
    type Case = (usize, usize, usize, usize, [usize; 3], [usize; 3]);
    let cases: &[Case] = &[
        (3, 2, 6, 4, [3, 4, 5], [2, 2, 2]),
        (3, 1, 16, 8, [4, 4, 2], [1, 2, 2]),
        (2, 3, 5, 3, [1, 6, 7], [1, 2, 2]),
    ];
    for &(dims, n, ci, co, [d, h, w], s) in cases {
        let x = Tensor::<5>::random([n, ci, d, h, w], dist, &device).require_grad();
        let weight = Tensor::<5>::random([ci, co, s[0], s[1], s[2]], dist, &device).require_grad();
        let bias = Tensor::<1>::random([co], dist, &device).require_grad();
        // (medseg's, burn's) output as [n, co, d', h', w']
        let outputs = |medseg: bool| {
            let b = Some(bias.clone());
            if dims == 3 {
                let o = ConvTransposeOptions::new(s, [0; 3], [0; 3], [1; 3], 1);
                let f = if medseg {
                    ops::conv_transpose3d
                } else {
                    conv_transpose3d
                };
                f(x.clone(), weight.clone(), b, o)
            } else {
                let o = ConvTransposeOptions::new([s[1], s[2]], [0; 2], [0; 2], [1; 2], 1);
                let f = if medseg {
                    ops::conv_transpose2d
                } else {
                    conv_transpose2d
                };
                let x4 = x.clone().reshape([n, ci, h, w]);
                let y = f(x4, weight.clone().reshape([ci, co, s[1], s[2]]), b, o);
                let [_, _, ho, wo] = y.dims();
                y.reshape([n, co, 1, ho, wo])
            }
        };
        let paths = [KernelPath::DepthToSpace];
        let fast = assert_ran(&paths, || outputs(true));
        let reference = outputs(false);
        let r = Tensor::<5>::random(fast.dims(), dist, &device);
        let what = format!("{dims}D n{n} ci{ci} co{co} {d}x{h}x{w} s{s:?}");
        let grads_of = |y: Tensor<5>| {
            let g = (y.clone() * r.clone()).sum().backward();
            (
                values(y.inner()),
                values(x.grad(&g).unwrap()),
                values(weight.grad(&g).unwrap()),
                values(bias.grad(&g).unwrap()),
            )
        };
        let (fy, fdx, fdw, fdb) = grads_of(fast);
        let (ry, rdx, rdw, rdb) = grads_of(reference);
        assert_close(&format!("{what} forward"), &fy, &ry, 1e-4);
        assert_close(&format!("{what} dX"), &fdx, &rdx, 1e-4);
        assert_close(&format!("{what} dW"), &fdw, &rdw, 1e-4);
        assert_close(&format!("{what} dB"), &fdb, &rdb, 1e-4);
    }
}
