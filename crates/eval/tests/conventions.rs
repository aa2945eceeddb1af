//! The empty-mask rules, 2D handling and grid checks of `evaluate_pair`, on hand-made volumes.

use medseg_eval::{EmptyRule, EvalError, EvalOptions, evaluate_pair};
use medseg_volume::{Geometry, Volume};
use ndarray::Array3;

fn vol(
    shape: (usize, usize, usize),
    spacing: [f64; 3],
    voxels: &[(usize, usize, usize, u16)],
) -> Volume<u16> {
    let mut a = Array3::zeros(shape);
    for &(k, j, i, l) in voxels {
        a[[k, j, i]] = l;
    }
    Volume::new(a, Geometry::with_spacing(spacing))
}

#[test]
fn empty_mask_rules() {
    let sp = [1.5, 2.0, 3.0];
    let shape = (4, 5, 6); // i=6, j=5, k=4
    let diag = ((6.0f64 * 1.5).powi(2) + (5.0f64 * 2.0).powi(2) + (4.0f64 * 3.0).powi(2)).sqrt();
    let gt = vol(shape, sp, &[(1, 1, 1, 1), (1, 1, 2, 1)]);
    let pred = vol(shape, sp, &[(2, 2, 2, 2)]);
    let m = evaluate_pair(&pred, &gt, &[1, 2, 3], &EvalOptions::default()).unwrap();
    assert_eq!(m.image_diagonal_mm, diag);
    // Label 1: prediction empty.
    let l1 = &m.labels[&1];
    assert_eq!(l1.empty, EmptyRule::PredEmpty);
    assert_eq!((l1.dice, l1.iou, l1.nsd), (Some(0.0), Some(0.0), Some(0.0)));
    for d in [l1.hd, l1.hd95, l1.hd95_pooled, l1.assd, l1.masd] {
        assert_eq!(d, Some(diag));
    }
    assert_eq!(
        (l1.precision, l1.recall, l1.f1),
        (None, Some(0.0), Some(0.0))
    );
    // Label 2: ground truth empty.
    let l2 = &m.labels[&2];
    assert_eq!(l2.empty, EmptyRule::GtEmpty);
    assert_eq!(
        (l2.precision, l2.recall, l2.f1, l2.dice),
        (Some(0.0), None, Some(0.0), Some(0.0))
    );
    assert_eq!(l2.hd95, Some(diag));
    assert_eq!(l2.volume_similarity, Some(0.0));
    // Label 3: absent from both.
    let l3 = &m.labels[&3];
    assert_eq!(l3.empty, EmptyRule::BothEmpty);
    assert_eq!(
        (l3.dice, l3.iou, l3.nsd, l3.hd, l3.hd95, l3.assd),
        (
            Some(1.0),
            Some(1.0),
            Some(1.0),
            Some(0.0),
            Some(0.0),
            Some(0.0)
        )
    );
    assert_eq!(
        (
            l3.precision,
            l3.recall,
            l3.sensitivity,
            l3.f1,
            l3.volume_similarity
        ),
        (None, None, None, None, None)
    );
    assert_eq!((l3.specificity, l3.accuracy), (Some(1.0), Some(1.0)));
    assert_eq!(l3.tn, 120);
}

#[test]
fn single_slice_is_evaluated_in_2d() {
    // A 3x3 square vs the same square shifted by one column, spacing 0.5 x 2 mm.
    let sq = |di: usize| -> Vec<(usize, usize, usize, u16)> {
        (1..4)
            .flat_map(|j| (1 + di..4 + di).map(move |i| (0, j, i, 1)))
            .collect()
    };
    let gt = vol((1, 6, 7), [0.5, 2.0, 1.0], &sq(0));
    let pred = vol((1, 6, 7), [0.5, 2.0, 1.0], &sq(1));
    let m = evaluate_pair(&pred, &gt, &[1], &EvalOptions::default()).unwrap();
    assert!(m.two_d);
    assert_eq!(
        m.image_diagonal_mm,
        ((7.0f64 * 0.5).powi(2) + (6.0f64 * 2.0).powi(2)).sqrt()
    );
    let l = &m.labels[&1];
    // 4-connected surfaces: 8 voxels each (the centre is interior in 2D).
    assert_eq!((l.n_surface_pred, l.n_surface_gt), (Some(8), Some(8)));
    assert_eq!(l.hd, Some(0.5));
    // Area in ml from sx*sy only.
    assert!((l.vol_gt_ml - 9.0 * 0.5 * 2.0 / 1000.0).abs() < 1e-15);
    // Without surface metrics the distances are absent, the overlap stays.
    let opts = EvalOptions {
        surface_metrics: false,
        ..EvalOptions::default()
    };
    let m = evaluate_pair(&pred, &gt, &[1], &opts).unwrap();
    assert_eq!(
        (m.labels[&1].hd95, m.labels[&1].dice),
        (None, Some(12.0 / 18.0))
    );
}

#[test]
fn grid_mismatch_is_an_error() {
    let gt = vol((4, 5, 6), [1.0; 3], &[]);
    let pred = vol((4, 5, 7), [1.0; 3], &[]);
    let e = evaluate_pair(&pred, &gt, &[1], &EvalOptions::default()).unwrap_err();
    assert!(matches!(e, EvalError::GridMismatch { .. }));
    assert!(e.to_string().contains("shape"), "{e}");
    let pred = vol((4, 5, 6), [1.0, 1.0, 1.1], &[]);
    let e = evaluate_pair(&pred, &gt, &[1], &EvalOptions::default()).unwrap_err();
    assert!(e.to_string().contains("spacing"), "{e}");
    let mut pred = vol((4, 5, 6), [1.0; 3], &[]);
    pred.geometry.origin[1] = 0.0005; // within the default 1e-3 tolerance
    assert!(evaluate_pair(&pred, &gt, &[1], &EvalOptions::default()).is_ok());
}
