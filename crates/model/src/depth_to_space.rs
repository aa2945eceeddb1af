//! Depth-to-space for the flex backend as one parallel copy forward and backward (a burn
//! backend extension op with its own backward): the rearrangement after the pointwise conv of
//! a kernel = stride transposed conv ([`crate::layers::ConvTransposeNd`]).
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
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use crate::fast_conv::{contiguous, fast_path_on};

#[backend_extension(Flex, Autodiff)]
pub trait DepthToSpaceBackend: Backend {
    /// `x` `[n, co * s0 * s1 * s2, d, h, w]` (channel index `((co * s0 + a) * s1 + b) * s2 + c`)
    /// to `[n, co, d * s0, h * s1, w * s2]` with
    /// `out[n, co, z s0 + a, y s1 + b, x s2 + c] = x[n, (co, a, b, c), z, y, x]`.
    fn depth_to_space(x: FloatTensor<Self>, block: [usize; 3]) -> FloatTensor<Self>;
}

/// Depth-to-space of `src` in the depth layout `shape` = `[n, co * s0 s1 s2, d, h, w]`.
fn to_space(src: &[f32], shape: [usize; 5], block: [usize; 3]) -> Vec<f32> {
    let [_, m, d, h, w] = shape;
    let [s0, s1, s2] = block;
    let co = m / (s0 * s1 * s2);
    let (ho, wo) = (h * s1, w * s2);
    if src.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<f32> = Vec::with_capacity(src.len());
    // one task per output depth plane (n, co, zo)
    out.spare_capacity_mut()[..src.len()]
        .par_chunks_mut(ho * wo)
        .enumerate()
        .for_each(|(t, plane)| {
            let zo = t % (d * s0);
            let c0 = (t / (d * s0)) % co;
            let n = t / (d * s0) / co;
            let (z, a) = (zo / s0, zo % s0);
            for yo in 0..ho {
                let (y, b) = (yo / s1, yo % s1);
                let row = &mut plane[yo * wo..(yo + 1) * wo];
                for c in 0..s2 {
                    let ch = ((c0 * s0 + a) * s1 + b) * s2 + c;
                    let src_row = &src[((n * m + ch) * d + z) * h * w + y * w..][..w];
                    for (x, &v) in src_row.iter().enumerate() {
                        row[x * s2 + c].write(v);
                    }
                }
            }
        });
    // SAFETY: each output plane writes all its ho * wo elements ((yo, x * s2 + c) once each).
    unsafe { out.set_len(src.len()) };
    out
}

/// The inverse (and adjoint: it is a permutation) of [`to_space`]: `src` in the space layout
/// `[n, co, d s0, h s1, w s2]`, the result in the depth layout `shape`.
fn to_depth(src: &[f32], shape: [usize; 5], block: [usize; 3]) -> Vec<f32> {
    let [_, m, d, h, w] = shape;
    let [s0, s1, s2] = block;
    let (ho, wo) = (h * s1, w * s2);
    if src.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<f32> = Vec::with_capacity(src.len());
    // one task per depth-layout plane (n, channel (co, a, b, c), z)
    out.spare_capacity_mut()[..src.len()]
        .par_chunks_mut(h * w)
        .enumerate()
        .for_each(|(t, plane)| {
            let z = t % d;
            let ch = (t / d) % m;
            let n = t / d / m;
            let c = ch % s2;
            let b = (ch / s2) % s1;
            let a = (ch / s2 / s1) % s0;
            let c0 = ch / (s0 * s1 * s2);
            let co = m / (s0 * s1 * s2);
            for y in 0..h {
                let src_row = ((n * co + c0) * d * s0 + z * s0 + a) * ho * wo + (y * s1 + b) * wo;
                for (x, o) in plane[y * w..(y + 1) * w].iter_mut().enumerate() {
                    o.write(src[src_row + x * s2 + c]);
                }
            }
        });
    // SAFETY: each depth-layout plane writes all its h * w elements.
    unsafe { out.set_len(src.len()) };
    out
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
        to_space(xc.storage::<f32>(), depth_shape, block)
    } else {
        to_depth(xc.storage::<f32>(), depth_shape, block)
    };
    FlexTensor::from_data(TensorData::new(data, out_shape))
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

/// Depth-to-space (see [`DepthToSpaceBackend::depth_to_space`]): the flex op when the fast path
/// is on and the tensor is f32 on flex, burn's reshape + permute otherwise.
pub fn depth_to_space(x: Tensor<5>, block: [usize; 3]) -> Tensor<5> {
    let [n, m, d, h, w] = x.dims();
    let [s0, s1, s2] = block;
    let co = m / (s0 * s1 * s2);
    let fast = fast_path_on(&x.device()) && x.dtype() == DType::F32;
    if fast {
        Tensor::from_dispatch(<Dispatch as DepthToSpaceBackend>::depth_to_space(
            x.into_dispatch(),
            block,
        ))
    } else {
        let y: Tensor<7> = x.reshape([n * co, s0, s1, s2, d, h, w]);
        y.permute([0, 4, 1, 5, 2, 6, 3])
            .reshape([n, co, d * s0, h * s1, w * s2])
    }
}
