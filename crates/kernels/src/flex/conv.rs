//! The 3D "same" convolution as a burn backend extension op with its own backward pass: flex
//! runs the kernels of [`crate::cpu::conv3d`], autodiff records [`SameConv3dBackward`].
//!
//! Covered: 3D, odd kernels (any per-axis size, e.g. 3x3x3, 1x3x3, 1x1x1), padding
//! `dilation * (k - 1) / 2`, any stride, any dilation, one group; f32 (other dtypes fall back to
//! burn's conv inside the op). [`crate::ops`] decides when this op is used.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::{ConvOptions, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DType, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::Tensor;

use super::{contiguous, flex_tensor};
use crate::cpu::conv3d::{self, ConvShape};

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
        let out = conv3d::forward(
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
        let dx = conv3d::input_grad(g.storage::<f32>(), w.storage::<f32>(), &s);
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
        let dw = conv3d::weight_grad(xc.storage::<f32>(), g.storage::<f32>(), &s);
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
        let db = conv3d::bias_grad(g.storage::<f32>(), &s);
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

/// The padded conv on `Dispatch` tensors (padding `dilation * (k - 1) / 2`). Only for flex
/// devices: other devices have no route for the op and would panic in burn's dispatch.
pub(crate) fn same_conv3d(
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
