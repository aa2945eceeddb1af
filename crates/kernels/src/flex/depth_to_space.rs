//! Depth-to-space as a burn backend extension op with its own backward: flex runs
//! [`crate::cpu::depth_to_space`]; the rearrangement after the pointwise conv of a kernel =
//! stride transposed conv ([`crate::ops::conv_transpose3d`]).
//!
//! Why: the same rearrangement through burn's ops is a rank-7 permute whose copy runs on one
//! thread element by element (`StridedIter`), about 5 % of a 3D UNet training step.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DType, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::Tensor;

use super::{contiguous, flex_tensor};
use crate::cpu::depth_to_space::{depth_to_space, space_to_depth};

#[backend_extension(Flex, Autodiff)]
pub trait DepthToSpaceBackend: Backend {
    /// `x` `[n, co * s0 * s1 * s2, d, h, w]` (channel index `((co * s0 + a) * s1 + b) * s2 + c`)
    /// to `[n, co, d * s0, h * s1, w * s2]` with
    /// `out[n, co, z s0 + a, y s1 + b, x s2 + c] = x[n, (co, a, b, c), z, y, x]`.
    fn depth_to_space(x: FloatTensor<Self>, block: [usize; 3]) -> FloatTensor<Self>;
}

fn flex_rearrange(x: &FlexTensor, block: [usize; 3], space: bool) -> FlexTensor {
    assert_eq!(x.dtype(), DType::F32, "depth_to_space takes f32 tensors");
    let s = x.shape();
    let [s0, s1, s2] = block;
    let (depth_shape, out_shape) = if space {
        let ds = [s[0], s[1], s[2], s[3], s[4]];
        let co = s[1] / (s0 * s1 * s2);
        (ds, vec![s[0], co, s[2] * s0, s[3] * s1, s[4] * s2])
    } else {
        let ds = [s[0], s[1] * s0 * s1 * s2, s[2] / s0, s[3] / s1, s[4] / s2];
        (ds, ds.to_vec())
    };
    let xc = contiguous(x);
    let data = if space {
        depth_to_space(xc.storage::<f32>(), depth_shape, block)
    } else {
        space_to_depth(xc.storage::<f32>(), depth_shape, block)
    };
    flex_tensor(data, out_shape)
}

impl DepthToSpaceBackend for Flex {
    fn depth_to_space(x: FlexTensor, block: [usize; 3]) -> FlexTensor {
        flex_rearrange(&x, block, true)
    }
}

#[derive(Debug)]
struct DepthToSpaceBackward;

impl Backward<Flex, 1> for DepthToSpaceBackward {
    type State = [usize; 3];

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, flex_rearrange(&grad, ops.state, false));
        }
    }
}

impl<C: CheckpointStrategy> DepthToSpaceBackend for Autodiff<Flex, C> {
    fn depth_to_space(x: FloatTensor<Self>, block: [usize; 3]) -> FloatTensor<Self> {
        match DepthToSpaceBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                prep.finish(block, Flex::depth_to_space(x.into_primitive(), block))
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(Flex::depth_to_space(x.into_primitive(), block))
            }
        }
    }
}

/// The op on `Dispatch` tensors (flex devices, f32 only: [`crate::ops`] checks).
pub(crate) fn flex_depth_to_space(x: Tensor<5>, block: [usize; 3]) -> Tensor<5> {
    Tensor::from_dispatch(<Dispatch as DepthToSpaceBackend>::depth_to_space(
        x.into_dispatch(),
        block,
    ))
}
