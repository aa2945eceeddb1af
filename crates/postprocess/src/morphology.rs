//! Binary erosion, dilation, opening, closing (scipy with `border_value = 0`).

use crate::Connectivity;
use crate::connectivity::is_planar;
use ndarray::{Array3, ArrayView3};
use rayon::prelude::*;

/// A symmetric 3x3x3 structuring element: the centre plus the neighbours of a connectivity
/// (`Faces` = scipy's `generate_binary_structure(3, 1)` "cross", `Corners` = the full cube).
/// One-slice volumes use the in-plane part (3x3 cross or square).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Structure(pub Connectivity);

impl Structure {
    fn offsets(self, planar: bool) -> Vec<[isize; 3]> {
        let mut o = self.0.offsets(planar);
        o.push([0, 0, 0]);
        o
    }
}

/// `iterations` rounds of erosion: a voxel stays foreground when every voxel of the structure
/// around it is foreground; **outside the array counts as background** (scipy
/// `border_value = 0`; ndarray-ndimage's erosion differs here), so foreground touching the
/// border is eroded. `iterations = 0` returns a copy.
pub fn erode(mask: ArrayView3<bool>, structure: Structure, iterations: usize) -> Array3<bool> {
    let mut cur = mask.to_owned();
    for _ in 0..iterations {
        cur = pass(cur.view(), structure, true);
    }
    cur
}

/// `iterations` rounds of dilation with the (symmetric) structure; nothing enters from
/// outside the array.
pub fn dilate(mask: ArrayView3<bool>, structure: Structure, iterations: usize) -> Array3<bool> {
    let mut cur = mask.to_owned();
    for _ in 0..iterations {
        cur = pass(cur.view(), structure, false);
    }
    cur
}

/// Erosion then dilation (removes specks and thin bridges).
pub fn open(mask: ArrayView3<bool>, structure: Structure, iterations: usize) -> Array3<bool> {
    dilate(
        erode(mask, structure, iterations).view(),
        structure,
        iterations,
    )
}

/// Dilation then erosion (closes small gaps). As in scipy, the erosion's `border_value = 0`
/// also erodes foreground that touches the array border.
pub fn close(mask: ArrayView3<bool>, structure: Structure, iterations: usize) -> Array3<bool> {
    erode(
        dilate(mask, structure, iterations).view(),
        structure,
        iterations,
    )
}

fn pass(mask: ArrayView3<bool>, structure: Structure, erosion: bool) -> Array3<bool> {
    let (nk, nj, ni) = mask.dim();
    let offsets = structure.offsets(is_planar(mask.shape()));
    let mask = mask.as_standard_layout();
    let m = mask.as_slice().unwrap_or(&[]);
    let sk = nj * ni;
    let mut out = vec![false; m.len()];
    if sk == 0 {
        return Array3::from_elem((nk, nj, ni), false);
    }
    out.par_chunks_mut(sk).enumerate().for_each(|(k, slice)| {
        for j in 0..nj {
            for i in 0..ni {
                let mut acc = erosion;
                for o in &offsets {
                    let (kk, jj, ii) = (k as isize + o[0], j as isize + o[1], i as isize + o[2]);
                    let inside = kk >= 0
                        && jj >= 0
                        && ii >= 0
                        && kk < nk as isize
                        && jj < nj as isize
                        && ii < ni as isize;
                    let v = inside && m[kk as usize * sk + jj as usize * ni + ii as usize];
                    if erosion && !v {
                        acc = false;
                        break;
                    }
                    if !erosion && v {
                        acc = true;
                        break;
                    }
                }
                slice[j * ni + i] = acc;
            }
        }
    });
    Array3::from_shape_vec((nk, nj, ni), out)
        .unwrap_or_else(|_| Array3::from_elem((nk, nj, ni), false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_removes_a_speck_closing_fills_a_gap() {
        let mut m = Array3::from_elem((7, 7, 7), false);
        m[[3, 3, 3]] = true;
        assert_eq!(
            open(m.view(), Structure(Connectivity::Faces), 1)
                .iter()
                .filter(|&&v| v)
                .count(),
            0
        );
        assert_eq!(
            dilate(m.view(), Structure(Connectivity::Faces), 1)
                .iter()
                .filter(|&&v| v)
                .count(),
            7
        );
        assert_eq!(
            dilate(m.view(), Structure(Connectivity::Corners), 1)
                .iter()
                .filter(|&&v| v)
                .count(),
            27
        );
        let mut bar = Array3::from_elem((7, 7, 9), false);
        // a 3x3-thick bar with a one-slice gap at i = 4
        for k in 2..5 {
            for j in 2..5 {
                for i in 1..8 {
                    bar[[k, j, i]] = i != 4;
                }
            }
        }
        let c = close(bar.view(), Structure(Connectivity::Faces), 1);
        assert!(c[[3, 3, 4]]);
    }
}
