//! Hole filling (scipy.ndimage.binary_fill_holes).

use crate::connectivity::is_planar;
use crate::{Connectivity, label_components};
use ndarray::{Array3, ArrayView3, Zip};

/// Fills the holes of `mask`: background voxels that the background flood from the array
/// border cannot reach become foreground. `connectivity` is the connectivity **of the
/// background flood** (scipy's `structure`; scipy's default is `Faces`). So with `Faces`, a
/// cavity that leaks to the outside only through a removed corner voxel still counts as a
/// hole; with `Corners` it does not. Background voxels on the array border are always reached.
///
/// One-slice volumes are filled as 2D images (the flood starts from the `j`/`i` border);
/// a 3D fill of such a volume would fill nothing.
pub fn fill_holes(mask: ArrayView3<bool>, connectivity: Connectivity) -> Array3<bool> {
    // The background's connected components (two-pass labelling, faster than a flood fill);
    // those touching the border are outside, every other one is a hole.
    let (nk, nj, ni) = mask.dim();
    let planar = is_planar(mask.shape());
    let mut background = Array3::from_elem((nk, nj, ni), false);
    Zip::from(&mut background)
        .and(&mask)
        .par_for_each(|b, &m| *b = !m);
    let cc = label_components(background.view(), connectivity);
    let mut outside = vec![false; cc.count() + 1];
    for ((k, j, i), &l) in cc.labels.indexed_iter() {
        let border =
            (!planar && (k == 0 || k + 1 == nk)) || j == 0 || j + 1 == nj || i == 0 || i + 1 == ni;
        if border {
            outside[l as usize] = true;
        }
    }
    let mut out = Array3::from_elem((nk, nj, ni), false);
    Zip::from(&mut out)
        .and(&cc.labels)
        .par_for_each(|o, &l| *o = l == 0 || !outside[l as usize]);
    out
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
