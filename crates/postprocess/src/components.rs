//! Connected-component labelling (two-pass, union-find), largest component, small objects.

use crate::Connectivity;
use crate::connectivity::is_planar;
use ndarray::{Array3, ArrayView3};
use rayon::prelude::*;

/// A labelled mask: `labels` holds 0 for background and ids `1..=n` for the components, in
/// the order of each component's first voxel in a C-order scan of the `[k, j, i]` array
/// (scipy.ndimage.label's order). `sizes[id - 1]` is the voxel count of component `id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Components {
    pub labels: Array3<u32>,
    pub sizes: Vec<usize>,
}

impl Components {
    /// Number of components.
    pub fn count(&self) -> usize {
        self.sizes.len()
    }

    /// Id of the largest component; ties go to the smaller id (scipy's `argmax`). `None` for
    /// an empty mask.
    pub fn largest(&self) -> Option<u32> {
        let mut best: Option<(usize, u32)> = None;
        for (i, &s) in self.sizes.iter().enumerate() {
            if best.is_none_or(|(bs, _)| s > bs) {
                best = Some((s, i as u32 + 1));
            }
        }
        best.map(|(_, id)| id)
    }

    /// A mask of the components for which `keep(id, size)` is true.
    pub fn select(&self, mut keep: impl FnMut(u32, usize) -> bool) -> Array3<bool> {
        let table: Vec<bool> = std::iter::once(false)
            .chain(
                self.sizes
                    .iter()
                    .enumerate()
                    .map(|(i, &s)| keep(i as u32 + 1, s)),
            )
            .collect();
        self.labels.mapv(|l| table[l as usize])
    }
}

fn find(parent: &mut [u32], mut x: u32) -> u32 {
    let mut root = x;
    while parent[root as usize] != root {
        root = parent[root as usize];
    }
    // path compression
    while parent[x as usize] != root {
        let next = parent[x as usize];
        parent[x as usize] = root;
        x = next;
    }
    root
}

/// Labels the connected components of `mask`. One-slice volumes use the 2D neighbourhood
/// (4 or 8). Cost: two passes over the volume plus a union-find over provisional labels;
/// memory: one `u32` per voxel.
pub fn label_components(mask: ArrayView3<bool>, connectivity: Connectivity) -> Components {
    let shape = mask.shape().to_vec();
    let (nk, nj, ni) = (shape[0], shape[1], shape[2]);
    let mask = mask.as_standard_layout();
    let m = mask.as_slice().unwrap_or(&[]);
    let mut labels = vec![0u32; m.len()];
    // Provisional labels; index 0 is background. Every union keeps the smaller label as root,
    // so a component's root is the provisional label of its first voxel in scan order.
    let mut parent: Vec<u32> = vec![0];
    let offsets = connectivity.backward_offsets(is_planar(&shape));
    let sj = ni;
    let sk = nj * ni;
    // backward offsets as (linear distance back, [dk, dj, di]); every one points earlier
    let lin: Vec<usize> = offsets
        .iter()
        .map(|o| (-(o[0] * sk as isize + o[1] * sj as isize + o[2])) as usize)
        .collect();
    for k in 0..nk {
        for j in 0..nj {
            let row = k * sk + j * sj;
            let row_interior = k > 0 && j > 0 && j + 1 < nj;
            for i in 0..ni {
                let idx = row + i;
                if !m[idx] {
                    continue;
                }
                let interior = row_interior && i > 0 && i + 1 < ni;
                let mut cur = 0u32;
                let mut last = 0u32;
                for (o, &back) in offsets.iter().zip(&lin) {
                    let n = if interior {
                        labels[idx - back]
                    } else {
                        let (kk, jj, ii) =
                            (k as isize + o[0], j as isize + o[1], i as isize + o[2]);
                        if kk < 0 || jj < 0 || ii < 0 || jj >= nj as isize || ii >= ni as isize {
                            continue;
                        }
                        labels[idx - back]
                    };
                    // neighbours often share a provisional label: skip repeated finds
                    if n == 0 || n == last {
                        continue;
                    }
                    last = n;
                    if cur == 0 {
                        cur = find(&mut parent, n);
                    } else {
                        let rn = find(&mut parent, n);
                        if rn != cur {
                            let (lo, hi) = if rn < cur { (rn, cur) } else { (cur, rn) };
                            parent[hi as usize] = lo;
                            cur = lo;
                        }
                    }
                }
                if cur == 0 {
                    cur = parent.len() as u32;
                    parent.push(cur);
                }
                labels[idx] = cur;
            }
        }
    }
    // Resolve roots in one ascending sweep: every link points to a smaller label, so the
    // parent of `l` is already resolved when `l` is visited. Roots are the labels of each
    // component's first voxel, created in scan order, so numbering roots in ascending order
    // gives scipy's first-voxel order.
    let mut final_id = vec![0u32; parent.len()];
    let mut count = 0u32;
    for l in 1..parent.len() {
        let p = parent[parent[l] as usize];
        parent[l] = p;
        if p as usize == l {
            count += 1;
            final_id[l] = count;
        } else {
            final_id[l] = final_id[p as usize];
        }
    }
    labels
        .par_iter_mut()
        .for_each(|v| *v = final_id[*v as usize]);
    let mut sizes = vec![0usize; count as usize];
    for &l in &labels {
        if l != 0 {
            sizes[l as usize - 1] += 1;
        }
    }
    let labels = Array3::from_shape_vec((nk, nj, ni), labels)
        .unwrap_or_else(|_| Array3::zeros((nk, nj, ni)));
    Components { labels, sizes }
}

/// The largest connected component of `mask` (ties: the one whose first voxel comes first).
/// An empty mask stays empty.
pub fn keep_largest_component(mask: ArrayView3<bool>, connectivity: Connectivity) -> Array3<bool> {
    let cc = label_components(mask, connectivity);
    match cc.largest() {
        Some(best) => cc.select(|id, _| id == best),
        None => mask.to_owned(),
    }
}

/// Removes the components with fewer than `min_voxels` voxels (a component of exactly
/// `min_voxels` stays). `min_voxels = 0` or 1 keeps everything.
pub fn remove_small_components(
    mask: ArrayView3<bool>,
    connectivity: Connectivity,
    min_voxels: usize,
) -> Array3<bool> {
    if min_voxels <= 1 {
        return mask.to_owned();
    }
    label_components(mask, connectivity).select(|_, size| size >= min_voxels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagonal_pair_depends_on_connectivity() {
        let mut m = Array3::from_elem((2, 2, 2), false);
        m[[0, 0, 0]] = true;
        m[[1, 1, 1]] = true;
        m[[0, 1, 1]] = true;
        assert_eq!(label_components(m.view(), Connectivity::Faces).count(), 2);
        assert_eq!(label_components(m.view(), Connectivity::Edges).count(), 1);
        // (0,0,0)-(0,1,1) is an edge contact; (0,1,1)-(1,1,1) a face contact.
    }

    #[test]
    fn u_shape_merges_and_keeps_scan_order() {
        // A "U" whose arms are first seen as two provisional labels, then merged.
        let mut m = Array3::from_elem((1, 3, 5), false);
        for (j, i) in [
            (0, 0),
            (1, 0),
            (2, 0),
            (2, 1),
            (2, 2),
            (1, 2),
            (0, 2),
            (0, 4),
        ] {
            m[[0, j, i]] = true;
        }
        let cc = label_components(m.view(), Connectivity::Faces);
        assert_eq!(cc.sizes, vec![7, 1]);
        assert_eq!(cc.labels[[0, 0, 2]], 1);
        assert_eq!(cc.labels[[0, 0, 4]], 2);
        assert_eq!(cc.largest(), Some(1));
        let small = remove_small_components(m.view(), Connectivity::Faces, 2);
        assert!(!small[[0, 0, 4]] && small[[0, 0, 0]]);
    }

    #[test]
    fn empty_mask() {
        let m = Array3::from_elem((3, 3, 3), false);
        let cc = label_components(m.view(), Connectivity::Corners);
        assert_eq!(cc.count(), 0);
        assert_eq!(cc.largest(), None);
        assert_eq!(keep_largest_component(m.view(), Connectivity::Corners), m);
    }
}
