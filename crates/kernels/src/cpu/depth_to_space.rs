//! Depth-to-space and its inverse as one parallel copy: the rearrangement after the pointwise
//! conv of a kernel = stride transposed conv. Both are permutations, so each is the other's
//! adjoint (the backward pass of one is the other).

use rayon::prelude::*;

use crate::trace::{self, KernelPath};

/// `src` in the depth layout `shape` = `[n, co * s0 s1 s2, d, h, w]` (channel index
/// `((co * s0 + a) * s1 + b) * s2 + c`) to the space layout `[n, co, d s0, h s1, w s2]` with
/// `out[n, co, z s0 + a, y s1 + b, x s2 + c] = src[n, (co, a, b, c), z, y, x]`.
pub fn depth_to_space(src: &[f32], shape: [usize; 5], block: [usize; 3]) -> Vec<f32> {
    let [_, m, d, h, w] = shape;
    let [s0, s1, s2] = block;
    assert_eq!(
        src.len(),
        shape.iter().product::<usize>(),
        "depth_to_space input size"
    );
    trace::hit(KernelPath::DepthToSpace);
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

/// The inverse (and adjoint) of [`depth_to_space`]: `src` in the space layout
/// `[n, co, d s0, h s1, w s2]`, the result in the depth layout `shape`.
pub fn space_to_depth(src: &[f32], shape: [usize; 5], block: [usize; 3]) -> Vec<f32> {
    let [_, m, d, h, w] = shape;
    let [s0, s1, s2] = block;
    assert_eq!(
        src.len(),
        shape.iter().product::<usize>(),
        "space_to_depth input size"
    );
    trace::hit(KernelPath::DepthToSpace);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_to_space_places_each_channel_in_its_block_and_inverts() {
        // co 1, block [1, 2, 2]: four channels of a 1x1x2 map become a 1x2x4 map
        let src: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let shape = [1, 4, 1, 1, 2];
        let out = depth_to_space(&src, shape, [1, 2, 2]);
        // channel (a=0, b, c) = 2b + c at column x: out[y = b][2x + c]
        assert_eq!(out, [0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
        assert_eq!(space_to_depth(&out, shape, [1, 2, 2]), src);
    }
}
