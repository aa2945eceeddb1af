//! The mask operations applied to multi-class label maps (class by class).

use crate::{Connectivity, fill_holes, keep_largest_component, label_components};
use ndarray::{Array3, ArrayView3, Zip};

/// The non-zero label values present, ascending.
pub fn classes_present(labels: ArrayView3<u16>) -> Vec<u16> {
    let mut seen = vec![false; u16::MAX as usize + 1];
    labels.iter().for_each(|&l| seen[l as usize] = true);
    (1..=u16::MAX).filter(|&c| seen[c as usize]).collect()
}

fn class_mask(labels: &Array3<u16>, c: u16) -> Array3<bool> {
    let mut m = Array3::from_elem(labels.dim(), false);
    Zip::from(&mut m)
        .and(labels)
        .par_for_each(|m, &l| *m = l == c);
    m
}

/// For every class, keeps only its largest connected component; the other voxels of that
/// class become background (0).
pub fn keep_largest_per_class(labels: &mut Array3<u16>, connectivity: Connectivity) {
    let present = classes_present(labels.view());
    keep_largest_of_classes(labels, &present, connectivity);
}

/// [`keep_largest_per_class`] for the classes in `classes` only; the other classes keep all
/// their components. Classes absent from `labels` are skipped.
pub fn keep_largest_of_classes(
    labels: &mut Array3<u16>,
    classes: &[u16],
    connectivity: Connectivity,
) {
    for &c in classes {
        if c == 0 || !labels.iter().any(|&l| l == c) {
            continue;
        }
        let keep = keep_largest_component(class_mask(labels, c).view(), connectivity);
        Zip::from(&mut *labels).and(&keep).for_each(|l, &k| {
            if *l == c && !k {
                *l = 0;
            }
        });
    }
}

/// Keeps the largest connected component of the whole foreground (all classes together,
/// `label > 0`), with its class values; everything else becomes background.
pub fn keep_largest_foreground(labels: &mut Array3<u16>, connectivity: Connectivity) {
    let fg = labels.mapv(|l| l > 0);
    let keep = keep_largest_component(fg.view(), connectivity);
    Zip::from(&mut *labels).and(&keep).for_each(|l, &k| {
        if !k {
            *l = 0;
        }
    });
}

/// For every class, removes its components with fewer than `min_voxels` voxels (set to 0).
pub fn remove_small_per_class(
    labels: &mut Array3<u16>,
    connectivity: Connectivity,
    min_voxels: usize,
) {
    if min_voxels <= 1 {
        return;
    }
    for c in classes_present(labels.view()) {
        let cc = label_components(class_mask(labels, c).view(), connectivity);
        let keep = cc.select(|_, size| size >= min_voxels);
        Zip::from(&mut *labels).and(&keep).for_each(|l, &k| {
            if *l == c && !k {
                *l = 0;
            }
        });
    }
}

/// For every class, fills the holes of its mask ([`fill_holes`], background flood with
/// `connectivity`). Only **background** voxels are filled: a different class enclosed by this
/// one (a tumour inside an organ) is kept.
pub fn fill_holes_per_class(labels: &mut Array3<u16>, connectivity: Connectivity) {
    for c in classes_present(labels.view()) {
        let filled = fill_holes(class_mask(labels, c).view(), connectivity);
        Zip::from(&mut *labels).and(&filled).for_each(|l, &f| {
            if *l == 0 && f {
                *l = c;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_class_operations() {
        let mut l = Array3::<u16>::zeros((1, 5, 9));
        // class 1: a ring with a hole holding class 2 and background
        for j in 0..4 {
            for i in 0..4 {
                l[[0, j, i]] = 1;
            }
        }
        l[[0, 1, 1]] = 0;
        l[[0, 2, 2]] = 2;
        l[[0, 4, 8]] = 1; // small separate piece of class 1
        l[[0, 4, 6]] = 2; // second piece of class 2
        assert_eq!(classes_present(l.view()), vec![1, 2]);
        let mut f = l.clone();
        fill_holes_per_class(&mut f, Connectivity::Faces);
        assert_eq!(f[[0, 1, 1]], 1);
        assert_eq!(f[[0, 2, 2]], 2);
        let mut g = l.clone();
        keep_largest_per_class(&mut g, Connectivity::Faces);
        assert_eq!(g[[0, 4, 8]], 0);
        assert_eq!(g[[0, 4, 6]], 0); // ties: first-seen component of class 2 is kept
        assert_eq!(g[[0, 2, 2]], 2);
        let mut only2 = l.clone();
        keep_largest_of_classes(&mut only2, &[2], Connectivity::Faces);
        assert_eq!(only2[[0, 4, 8]], 1, "class 1 keeps its small piece");
        assert_eq!(only2[[0, 4, 6]], 0);
        let mut h = l.clone();
        keep_largest_foreground(&mut h, Connectivity::Corners);
        assert_eq!(h[[0, 2, 2]], 2);
        assert_eq!(h[[0, 4, 6]], 0);
        let mut r = l.clone();
        remove_small_per_class(&mut r, Connectivity::Faces, 2);
        assert_eq!(r[[0, 4, 8]], 0);
        assert_eq!(r[[0, 0, 0]], 1);
    }
}
