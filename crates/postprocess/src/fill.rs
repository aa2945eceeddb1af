//! Hole filling (scipy.ndimage.binary_fill_holes).

use crate::Connectivity;
use crate::connectivity::is_planar;
use ndarray::{Array3, ArrayView3, Axis};
use rayon::prelude::*;

/// Fills the holes of `mask`: background voxels that the background flood from the array
/// border cannot reach become foreground. `connectivity` is the connectivity **of the
/// background flood** (scipy's `structure`; scipy's default is `Faces`). So with `Faces`, a
/// cavity that leaks to the outside only through a removed corner voxel still counts as a
/// hole; with `Corners` it does not. Background voxels on the array border are always reached.
///
/// One-slice volumes are filled as 2D images (the flood starts from the `j`/`i` border);
/// a 3D fill of such a volume would fill nothing.
pub fn fill_holes(mask: ArrayView3<bool>, connectivity: Connectivity) -> Array3<bool> {
    let shape = mask.shape().to_vec();
    let offsets = connectivity.offsets(is_planar(&shape));
    let mut out = mask.to_owned();
    if is_planar(&shape) {
        out.axis_iter_mut(Axis(0))
            .into_par_iter()
            .for_each(|mut s| {
                let filled = flood(
                    s.view().insert_axis(Axis(0)).as_standard_layout().view(),
                    &offsets,
                );
                s.assign(&filled.index_axis(Axis(0), 0));
            });
        out
    } else {
        flood(mask, &offsets)
    }
}

fn flood(mask: ArrayView3<bool>, offsets: &[[isize; 3]]) -> Array3<bool> {
    let (nk, nj, ni) = mask.dim();
    let planar = nk == 1;
    let mask = mask.as_standard_layout();
    let m = mask.as_slice().unwrap_or(&[]);
    // reached[v]: background reachable from the border.
    let mut reached = vec![false; m.len()];
    let mut stack: Vec<usize> = Vec::new();
    let sk = nj * ni;
    let on_border = |k: usize, j: usize, i: usize| {
        (!planar && (k == 0 || k + 1 == nk)) || j == 0 || j + 1 == nj || i == 0 || i + 1 == ni
    };
    for k in 0..nk {
        for j in 0..nj {
            for i in 0..ni {
                let idx = k * sk + j * ni + i;
                if !m[idx] && on_border(k, j, i) {
                    reached[idx] = true;
                    stack.push(idx);
                }
            }
        }
    }
    while let Some(idx) = stack.pop() {
        let k = idx / sk;
        let j = (idx % sk) / ni;
        let i = idx % ni;
        for o in offsets {
            let (kk, jj, ii) = (k as isize + o[0], j as isize + o[1], i as isize + o[2]);
            if kk < 0
                || jj < 0
                || ii < 0
                || kk >= nk as isize
                || jj >= nj as isize
                || ii >= ni as isize
            {
                continue;
            }
            let n = kk as usize * sk + jj as usize * ni + ii as usize;
            if !m[n] && !reached[n] {
                reached[n] = true;
                stack.push(n);
            }
        }
    }
    let out: Vec<bool> = reached.iter().map(|&r| !r).collect();
    Array3::from_shape_vec((nk, nj, ni), out)
        .unwrap_or_else(|_| Array3::from_elem((nk, nj, ni), false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_box_is_filled_open_box_is_not() {
        let mut m = Array3::from_elem((5, 5, 5), false);
        for k in 1..4 {
            for j in 1..4 {
                for i in 1..4 {
                    m[[k, j, i]] = !(k == 2 && j == 2 && i == 2);
                }
            }
        }
        let f = fill_holes(m.view(), Connectivity::Faces);
        assert!(f[[2, 2, 2]]);
        m[[1, 2, 2]] = false; // tunnel
        let f = fill_holes(m.view(), Connectivity::Faces);
        assert!(!f[[2, 2, 2]]);
    }
}
