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
/// (4 or 8). Two passes with a union-find over provisional labels; the first pass runs in
/// parallel over slabs of slices, whose boundaries are then merged. Memory: one `u32` per
/// voxel plus one per provisional label.
pub fn label_components(mask: ArrayView3<bool>, connectivity: Connectivity) -> Components {
    let shape = mask.shape().to_vec();
    let (nk, nj, ni) = (shape[0], shape[1], shape[2]);
    let mask = mask.as_standard_layout();
    let m = mask.as_slice().unwrap_or(&[]);
    let mut labels = vec![0u32; m.len()];
    let offsets = connectivity.backward_offsets(is_planar(&shape));
    let sk = nj * ni;
    if m.is_empty() || sk == 0 {
        return Components {
            labels: Array3::zeros((nk, nj, ni)),
            sizes: vec![],
        };
    }
    // Slabs of whole slices, labelled independently (provisional labels local to the slab).
    let slabs = (rayon::current_num_threads() * 2).clamp(1, nk);
    let ks = nk.div_ceil(slabs);
    let local: Vec<Vec<u32>> = labels
        .par_chunks_mut(ks * sk)
        .zip(m.par_chunks(ks * sk))
        .map(|(lab, msk)| label_slab(msk, lab, nj, ni, &offsets))
        .collect();
    // Global provisional labels: slab s's labels shifted by the count of all earlier slabs.
    // Label order is still scan order, so a component's smallest label is its first voxel.
    let mut bases = Vec::with_capacity(local.len());
    let mut total = 0u32;
    for p in &local {
        bases.push(total);
        total += p.len() as u32 - 1;
    }
    let mut parent = vec![0u32; total as usize + 1];
    for (p, &b) in local.iter().zip(&bases) {
        for l in 1..p.len() {
            parent[b as usize + l] = p[l] + b;
        }
    }
    labels
        .par_chunks_mut(ks * sk)
        .zip(bases.par_iter())
        .for_each(|(lab, &b)| {
            if b > 0 {
                lab.iter_mut().filter(|l| **l != 0).for_each(|l| *l += b);
            }
        });
    // Merge across slab boundaries: the first slice of each slab with the slice before it.
    for k in (ks..nk).step_by(ks) {
        for j in 0..nj {
            for i in 0..ni {
                let idx = k * sk + j * ni + i;
                if labels[idx] == 0 {
                    continue;
                }
                for o in offsets.iter().filter(|o| o[0] == -1) {
                    let (jj, ii) = (j as isize + o[1], i as isize + o[2]);
                    if jj < 0 || ii < 0 || jj >= nj as isize || ii >= ni as isize {
                        continue;
                    }
                    let n = labels[(k - 1) * sk + jj as usize * ni + ii as usize];
                    if n == 0 {
                        continue;
                    }
                    let (a, b) = (find(&mut parent, labels[idx]), find(&mut parent, n));
                    if a != b {
                        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
                        parent[hi as usize] = lo;
                    }
                }
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

/// First pass over one slab of whole slices (`m`, `labels`: the slab's voxels). Neighbours
/// before the slab are ignored (merged later). Returns the slab's parent table (index 0 =
/// background); every union keeps the smaller label as root.
fn label_slab(
    m: &[bool],
    labels: &mut [u32],
    nj: usize,
    ni: usize,
    offsets: &[[isize; 3]],
) -> Vec<u32> {
    let sk = nj * ni;
    let nk = m.len() / sk;
    let mut parent: Vec<u32> = vec![0];
    // backward offsets as linear distances back; every one points earlier in scan order
    let lin: Vec<usize> = offsets
        .iter()
        .map(|o| (-(o[0] * sk as isize + o[1] * ni as isize + o[2])) as usize)
        .collect();
    for k in 0..nk {
        for j in 0..nj {
            let row = k * sk + j * ni;
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
                    if !interior {
                        let (kk, jj, ii) =
                            (k as isize + o[0], j as isize + o[1], i as isize + o[2]);
                        if kk < 0 || jj < 0 || ii < 0 || jj >= nj as isize || ii >= ni as isize {
                            continue;
                        }
                    }
                    let n = labels[idx - back];
                    // neighbours often share a provisional label: skip repeated finds
                    if n == 0 || n == last {
                        continue;
                    }
                    last = n;
                    let rn = find(&mut parent, n);
                    if cur == 0 {
                        cur = rn;
                    } else if rn != cur {
                        let (lo, hi) = if rn < cur { (rn, cur) } else { (cur, rn) };
                        parent[hi as usize] = lo;
                        cur = lo;
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
    parent
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
    fn slabs_merge_like_one_pass() {
        // a helix-like component crossing every slab boundary plus many small pieces
        let (nk, nj, ni) = (37, 11, 13);
        let m = Array3::from_shape_fn((nk, nj, ni), |(k, j, i)| {
            let t = k as f64 * 0.7;
            let (cj, ci) = (5.0 + 4.0 * t.sin(), 6.0 + 5.0 * t.cos());
            ((j as f64 - cj).abs() < 1.5 && (i as f64 - ci).abs() < 1.5)
                || (k * 7 + j * 3 + i) % 29 == 0
        });
        for conn in [
            Connectivity::Faces,
            Connectivity::Edges,
            Connectivity::Corners,
        ] {
            let cc = label_components(m.view(), conn);
            // reference: plain flood fill in scan order
            let mut ids = Array3::<u32>::zeros((nk, nj, ni));
            let mut sizes = vec![];
            for start in 0..m.len() {
                let (k, j, i) = (start / (nj * ni), (start / ni) % nj, start % ni);
                if !m[[k, j, i]] || ids[[k, j, i]] != 0 {
                    continue;
                }
                sizes.push(0usize);
                let id = sizes.len() as u32;
                let mut stack = vec![(k, j, i)];
                ids[[k, j, i]] = id;
                while let Some((k, j, i)) = stack.pop() {
                    *sizes.last_mut().unwrap() += 1;
                    for o in conn.offsets(false) {
                        let (a, b, c) = (k as isize + o[0], j as isize + o[1], i as isize + o[2]);
                        if a < 0
                            || b < 0
                            || c < 0
                            || a >= nk as isize
                            || b >= nj as isize
                            || c >= ni as isize
                        {
                            continue;
                        }
                        let q = (a as usize, b as usize, c as usize);
                        if m[[q.0, q.1, q.2]] && ids[[q.0, q.1, q.2]] == 0 {
                            ids[[q.0, q.1, q.2]] = id;
                            stack.push(q);
                        }
                    }
                }
            }
            assert_eq!(cc.labels, ids, "{conn:?}");
            assert_eq!(cc.sizes, sizes);
        }
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
