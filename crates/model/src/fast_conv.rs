//! A faster 3D "same" convolution for the flex backend, plugged into burn as a backend
//! extension op with its own backward pass (kernels in `conv3d_kernel`).
//!
//! Covered: 3D, odd kernels (any per-axis size, e.g. 3x3x3, 1x3x3, 1x1x1), padding
//! `dilation * (k - 1) / 2`, any stride (strided downsampling convs included), any dilation, one
//! group, f32, flex device (with or without autodiff). Everything else — other devices, other
//! dtypes — goes to burn's built-in ops (see [`use_fast_conv3d`]). 2D convs come here as 3D
//! convs of kernel depth 1 ([`crate::layers::ConvNd`]), and the UNet's transposed convs (kernel =
//! stride) as a pointwise conv plus depth-to-space ([`crate::layers::ConvTransposeNd`]).
//!
//! Switch: the environment variable `MEDSEG_CONV=burn` turns this path off — and with it the
//! fused LeakyReLU ([`crate::fast_act`]) and instance norm ([`crate::fast_norm`]) — so burn's
//! built-in ops run everywhere, for comparison and as an escape hatch; any other value or no
//! variable keeps it on. [`set_conv_impl`] overrides the variable inside a process.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::{ConvOptions, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, Backend, DType, Dispatch, DispatchDevice, Flex, TensorMetadata, backend_extension,
};
use burn::tensor::{Device, Tensor, TensorData};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::conv3d_kernel::{self, ConvShape};

/// burn's own conv options for the "same" conv with this weight shape.
fn same_options(weight_shape: &[usize], stride: [usize; 3], dilation: usize) -> ConvOptions<3> {
    let p = |a: usize| dilation * (weight_shape[2 + a] - 1) / 2;
    ConvOptions::new(stride, [p(0), p(1), p(2)], [dilation; 3], 1)
}

/// Backend extension: the padded conv and its three gradients. The default bodies are burn's
/// built-in ops. `Flex` overrides all four with the kernels of `conv3d_kernel`; the
/// autodiff backend overrides the forward (recording `SameConv3dBackward`, which calls the
/// inner backend's gradient methods) and keeps the defaults for the gradient methods, which only
/// a second-order use would reach.
#[backend_extension(Flex, Autodiff)]
pub trait SameConv3dBackend: Backend {
    /// `x` `[n, ci, d, h, w]`, `weight` `[co, ci, k0, k1, k2]` (odd sizes), `bias` `[co]`;
    /// padding `dilation * (k - 1) / 2` per axis.
    fn same_conv3d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: [usize; 3],
        dilation: usize,
    ) -> FloatTensor<Self> {
        let opts = same_options(&weight.shape(), stride, dilation);
        Self::conv3d(x, weight, Some(bias), opts)
    }

    /// Gradient of the input.
    fn same_conv3d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stride: [usize; 3],
        dilation: usize,
    ) -> FloatTensor<Self> {
        let opts = same_options(&weight.shape(), stride, dilation);
        Self::conv3d_x_backward(x, weight, grad, opts)
    }

    /// Gradient of the weight.
    fn same_conv3d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stride: [usize; 3],
        dilation: usize,
    ) -> FloatTensor<Self> {
        let opts = same_options(&weight.shape(), stride, dilation);
        Self::conv3d_weight_backward(x, weight, grad, opts)
    }

    /// Gradient of the bias.
    fn same_conv3d_bias_backward(
        x: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::conv3d_bias_backward(x, bias, grad)
    }
}

/// Contiguous view of a flex tensor (copies only when strided or offset), as the raw-slice
/// kernels of the fast ops need.
pub(crate) fn contiguous(t: &FlexTensor) -> FlexTensor {
    if t.is_contiguous() && t.layout().start_offset() == 0 {
        t.clone()
    } else {
        t.to_contiguous()
    }
}

fn flex_tensor(data: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}

fn conv_shape(x: &FlexTensor, w: &FlexTensor, stride: [usize; 3], dilation: usize) -> ConvShape {
    let xs = x.shape();
    let ws = w.shape();
    ConvShape {
        n: xs[0],
        ci: xs[1],
        co: ws[0],
        spatial: [xs[2], xs[3], xs[4]],
        kernel: [ws[2], ws[3], ws[4]],
        stride,
        dilation,
    }
}

fn all_f32(ts: &[&FlexTensor]) -> bool {
    ts.iter().all(|t| t.dtype() == DType::F32)
}

impl SameConv3dBackend for Flex {
    fn same_conv3d(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        stride: [usize; 3],
        dilation: usize,
    ) -> FlexTensor {
        if !all_f32(&[&x, &weight, &bias]) {
            let opts = same_options(&weight.shape(), stride, dilation);
            return Self::conv3d(x, weight, Some(bias), opts);
        }
        let s = conv_shape(&x, &weight, stride, dilation);
        let (x, w, b) = (contiguous(&x), contiguous(&weight), contiguous(&bias));
        let out = conv3d_kernel::forward(
            x.storage::<f32>(),
            w.storage::<f32>(),
            Some(b.storage::<f32>()),
            &s,
        );
        let [d, h, wd] = s.out();
        flex_tensor(out, vec![s.n, s.co, d, h, wd])
    }

    fn same_conv3d_x_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        stride: [usize; 3],
        dilation: usize,
    ) -> FlexTensor {
        if !all_f32(&[&x, &weight, &grad]) {
            let opts = same_options(&weight.shape(), stride, dilation);
            return Self::conv3d_x_backward(x, weight, grad, opts);
        }
        let s = conv_shape(&x, &weight, stride, dilation);
        let (w, g) = (contiguous(&weight), contiguous(&grad));
        let dx = conv3d_kernel::input_grad(g.storage::<f32>(), w.storage::<f32>(), &s);
        flex_tensor(dx, x.shape().to_vec())
    }

    fn same_conv3d_weight_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        stride: [usize; 3],
        dilation: usize,
    ) -> FlexTensor {
        if !all_f32(&[&x, &weight, &grad]) {
            let opts = same_options(&weight.shape(), stride, dilation);
            return Self::conv3d_weight_backward(x, weight, grad, opts);
        }
        let s = conv_shape(&x, &weight, stride, dilation);
        let (xc, g) = (contiguous(&x), contiguous(&grad));
        let dw = conv3d_kernel::weight_grad(xc.storage::<f32>(), g.storage::<f32>(), &s);
        flex_tensor(dw, weight.shape().to_vec())
    }

    fn same_conv3d_bias_backward(x: FlexTensor, bias: FlexTensor, grad: FlexTensor) -> FlexTensor {
        if !all_f32(&[&bias, &grad]) {
            return Self::conv3d_bias_backward(x, bias, grad);
        }
        let gs = grad.shape();
        let s = ConvShape {
            n: gs[0],
            ci: 0,
            co: gs[1],
            spatial: [gs[2], gs[3], gs[4]],
            kernel: [1; 3],
            stride: [1; 3],
            dilation: 1,
        };
        let g = contiguous(&grad);
        let db = conv3d_kernel::bias_grad(g.storage::<f32>(), &s);
        flex_tensor(db, bias.shape().to_vec())
    }
}

#[derive(Debug)]
struct SameConv3dBackward;

impl<B: Backend + SameConv3dBackend> Backward<B, 3> for SameConv3dBackward {
    /// (input, weight, bias checkpoints, stride, dilation)
    type State = (NodeId, NodeId, NodeId, [usize; 3], usize);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, w_state, b_state, stride, dilation) = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        let w = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(w_state);
        let b = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(b_state);
        if let Some(node) = node_x {
            let g = B::same_conv3d_x_backward(x.clone(), w.clone(), grad.clone(), stride, dilation);
            grads.register::<B>(node.id, g);
        }
        if let Some(node) = node_w {
            let g = B::same_conv3d_weight_backward(x.clone(), w, grad.clone(), stride, dilation);
            grads.register::<B>(node.id, g);
        }
        if let Some(node) = node_b {
            let g = B::same_conv3d_bias_backward(x, b, grad);
            grads.register::<B>(node.id, g);
        }
    }
}

impl<B: Backend + SameConv3dBackend, C: CheckpointStrategy> SameConv3dBackend for Autodiff<B, C> {
    fn same_conv3d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: [usize; 3],
        dilation: usize,
    ) -> FloatTensor<Self> {
        match SameConv3dBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let xs = prep.checkpoint(&x);
                let ws = prep.checkpoint(&weight);
                let bs = prep.checkpoint(&bias);
                prep.finish(
                    (xs, ws, bs, stride, dilation),
                    B::same_conv3d(
                        x.into_primitive(),
                        weight.into_primitive(),
                        bias.into_primitive(),
                        stride,
                        dilation,
                    ),
                )
            }
            OpsKind::UnTracked(prep) => prep.finish(B::same_conv3d(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                stride,
                dilation,
            )),
        }
    }
}

/// Which implementation the model's 3D convs, LeakyReLU and instance norm use on flex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvImpl {
    /// This module's kernels (the default).
    Fast,
    /// burn's built-in ops (`MEDSEG_CONV=burn`).
    Burn,
}

/// 0: not overridden (use the environment), 1: fast, 2: burn.
static OVERRIDE: AtomicU8 = AtomicU8::new(0);

/// Overrides the `MEDSEG_CONV` choice for this process (`None`: back to the environment).
/// For tests and benchmarks that compare both paths in one process; it is a global switch, so
/// callers running in parallel threads see each other's choice.
pub fn set_conv_impl(choice: Option<ConvImpl>) {
    let v = match choice {
        None => 0,
        Some(ConvImpl::Fast) => 1,
        Some(ConvImpl::Burn) => 2,
    };
    OVERRIDE.store(v, Ordering::SeqCst);
}

/// The implementation in use: the [`set_conv_impl`] override if any, else `Burn` when the
/// environment variable `MEDSEG_CONV` is `burn` (case-insensitive; read once per process),
/// else `Fast`.
pub fn conv_impl() -> ConvImpl {
    static FROM_ENV: OnceLock<ConvImpl> = OnceLock::new();
    match OVERRIDE.load(Ordering::SeqCst) {
        1 => ConvImpl::Fast,
        2 => ConvImpl::Burn,
        _ => *FROM_ENV.get_or_init(|| {
            let burn = std::env::var("MEDSEG_CONV")
                .map(|v| v.trim().eq_ignore_ascii_case("burn"))
                .unwrap_or(false);
            if burn { ConvImpl::Burn } else { ConvImpl::Fast }
        }),
    }
}

/// Whether the fast path handles a conv with this kernel on this device: flex (plain or
/// autodiff), odd kernel sizes, and the switch not set to `burn` (any stride).
pub fn use_fast_conv3d(device: &Device, kernel: [usize; 3]) -> bool {
    fast_path_on(device) && kernel.iter().all(|k| k % 2 == 1)
}

/// Whether medseg's own flex ops (convs, norm, activation, depth-to-space) run on `device`:
/// the fast path is on ([`conv_impl`]) and the device is flex (with or without autodiff).
pub fn fast_path_on(device: &Device) -> bool {
    conv_impl() == ConvImpl::Fast
        && matches!(
            device.clone().without_autodiff().as_dispatch(),
            DispatchDevice::Flex(_)
        )
}

/// The padded conv through the fast path (padding `dilation * (k - 1) / 2`). The caller checks [`use_fast_conv3d`] first (other
/// devices have no route and would panic in burn's dispatch).
pub fn same_conv3d(
    x: Tensor<5>,
    weight: Tensor<5>,
    bias: Tensor<1>,
    stride: [usize; 3],
    dilation: usize,
) -> Tensor<5> {
    let out = <Dispatch as SameConv3dBackend>::same_conv3d(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        stride,
        dilation,
    );
    Tensor::from_dispatch(out)
}
