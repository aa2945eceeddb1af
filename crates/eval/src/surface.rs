//! Surface voxels of a binary mask.
//!
//! A surface voxel is a mask voxel with at least one face-neighbour outside the mask: the mask
//! XOR its binary erosion by the face-connected cross (6-connectivity in 3D, 4 in 2D) with
//! border value 0, exactly as `scipy.ndimage.binary_erosion` and MONAI's `get_mask_edges`.
//! Outside the array counts as "not in the mask", so voxels on the image border are surface,
//! and so is the wall of an internal cavity.

use ndarray::{Array3, ArrayView3, Axis, Zip};

/// Surface voxels of `mask` (array order `[k, j, i]`).
///
/// With `two_d` the `k` axis takes no part in the erosion (4-connected surfaces in each slice):
/// use it for 2D images stored as one slice, where 6-connectivity would make every voxel a
/// surface voxel.
pub fn surface(mask: ArrayView3<bool>, two_d: bool) -> Array3<bool> {
    let (nk, nj, ni) = mask.dim();
    let mut out = Array3::from_elem((nk, nj, ni), false);
    let at = |k: isize, j: isize, i: isize| -> bool {
        k >= 0
            && j >= 0
            && i >= 0
            && (k as usize) < nk
            && (j as usize) < nj
            && (i as usize) < ni
            && mask[[k as usize, j as usize, i as usize]]
    };
    Zip::indexed(out.axis_iter_mut(Axis(0))).par_for_each(|k, mut plane| {
        let k = k as isize;
        for ((j, i), o) in plane.indexed_iter_mut() {
            let (j, i) = (j as isize, i as isize);
            if !at(k, j, i) {
                continue;
            }
            let inside_in_plane =
                at(k, j - 1, i) && at(k, j + 1, i) && at(k, j, i - 1) && at(k, j, i + 1);
            let inside = inside_in_plane && (two_d || (at(k - 1, j, i) && at(k + 1, j, i)));
            *o = !inside;
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_block_keeps_only_its_shell_and_border_counts() {
        // A full 5x4x3 mask: everything but the 3x2x1 core is surface (54 voxels).
        let m = Array3::from_elem((3, 4, 5), true);
        assert_eq!(surface(m.view(), false).iter().filter(|&&x| x).count(), 54);
        // As 2D slices: each 4x5 slice loses its 2x3 core.
        let m = Array3::from_elem((1, 4, 5), true);
        assert_eq!(surface(m.view(), true).iter().filter(|&&x| x).count(), 14);
        assert_eq!(surface(m.view(), false).iter().filter(|&&x| x).count(), 20);
    }

    #[test]
    fn cavity_wall_is_surface() {
        let mut m = Array3::from_elem((5, 5, 5), true);
        m[[2, 2, 2]] = false;
        let s = surface(m.view(), false);
        // 98 border voxels + the 6 face-neighbours of the cavity.
        assert_eq!(s.iter().filter(|&&x| x).count(), 98 + 6);
        assert!(s[[1, 2, 2]] && !s[[1, 1, 1]]);
    }
}
