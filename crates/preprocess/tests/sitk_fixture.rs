//! Resampling against SimpleITK and scipy.ndimage.zoom (tests/fixtures/preprocess, README).

use medseg_preprocess::{
    Boundary, Grid, Interpolation, LabelInterpolation, ResampleOptions, resample, resample_labels,
    resize,
};
use ndarray::Array3;
use std::path::PathBuf;

fn path(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/preprocess"
    ))
    .join(name)
}

fn max_abs(a: &Array3<f32>, b: &Array3<f32>) -> f32 {
    assert_eq!(a.dim(), b.dim());
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn check_case(case: &str, grid_name: &str) {
    let input =
        medseg_volume::read_volume(&path(&format!("resample_{case}_input.nii.gz"))).unwrap();
    let label =
        medseg_volume::read_labels(&path(&format!("resample_{case}_label.nii.gz"))).unwrap();
    for (interp_name, interp, tol) in [
        ("linear", Interpolation::Linear, 1e-3f32),
        ("bspline", Interpolation::Cubic, 1e-3),
        ("nearest", Interpolation::Nearest, 0.0),
    ] {
        let reference = medseg_volume::read_volume(&path(&format!(
            "resample_{case}_{grid_name}_{interp_name}.nii.gz"
        )))
        .unwrap();
        let s = reference.data.dim();
        let grid = Grid::new(reference.geometry, [s.0, s.1, s.2]);
        if grid_name == "keep_origin_direction" {
            // the size rule reproduces the reference grid
            let ours = Grid::new(input.geometry, {
                let d = input.data.dim();
                [d.0, d.1, d.2]
            })
            .with_spacing([1.5; 3]);
            assert_eq!(ours.shape_kji, grid.shape_kji);
            assert!(ours.geometry.difference(&grid.geometry, 1e-5).is_none());
        }
        let opts = ResampleOptions {
            interpolation: interp,
            boundary: Boundary::Zero,
            nearest_axis: None,
        };
        let out = resample(input.data.view(), &input.geometry, &grid, &opts).unwrap();
        let d = max_abs(&out, &reference.data);
        assert!(
            d <= tol,
            "{case} {grid_name} {interp_name}: max abs diff {d}"
        );
    }
    let reference = medseg_volume::read_labels(&path(&format!(
        "resample_{case}_{grid_name}_nearest_label.nii.gz"
    )))
    .unwrap();
    let s = reference.data.dim();
    let grid = Grid::new(reference.geometry, [s.0, s.1, s.2]);
    let out = resample_labels(
        label.data.view(),
        &label.geometry,
        &grid,
        LabelInterpolation::Nearest,
        None,
    )
    .unwrap();
    assert_eq!(out, reference.data, "{case} {grid_name} nearest label");
}

#[test]
fn axis_aligned_keep_origin_direction() {
    check_case("axis", "keep_origin_direction");
}

#[test]
fn oblique_keep_origin_direction() {
    check_case("oblique", "keep_origin_direction");
}

#[test]
fn oblique_onto_identity_direction_bbox() {
    check_case("oblique", "identity_direction_bbox");
    // most of that grid lies outside the input field: those voxels are exactly 0
    let r = medseg_volume::read_volume(&path(
        "resample_oblique_identity_direction_bbox_linear.nii.gz",
    ))
    .unwrap();
    assert!(r.data.iter().filter(|&&v| v == 0.0).count() >= 30642);
}

#[test]
fn zoom_matches_scipy() {
    let x = medseg_volume::read_volume(&path("zoom_input.nii.gz"))
        .unwrap()
        .data;
    for (order, interp, tol) in [
        (0, Interpolation::Nearest, 0.0f32),
        (1, Interpolation::Linear, 1e-5),
        (3, Interpolation::Cubic, 1e-5),
    ] {
        let reference = medseg_volume::read_volume(&path(&format!("zoom_order{order}.nii.gz")))
            .unwrap()
            .data;
        let d = reference.dim();
        let out = resize(x.view(), [d.0, d.1, d.2], interp);
        let diff = max_abs(&out, &reference);
        assert!(diff <= tol, "zoom order {order}: {diff}");
    }
}

#[test]
fn reorienting_first_does_not_change_a_physical_resampling() {
    // The fixture inputs are LPS (RAS+ affine with negative i and j axes). Reorienting to RAS
    // permutes/flips the array and moves the origin; resampled onto the same world grid the
    // result must be the same (exact for nearest, to rounding for linear).
    use medseg_preprocess::Reorientation;
    let input = medseg_volume::read_volume(&path("resample_oblique_input.nii.gz")).unwrap();
    let d = input.data.dim();
    let shape = [d.0, d.1, d.2];
    let r = Reorientation::to_ras(&input.geometry, shape);
    assert!(!r.is_identity());
    let data = r.apply(input.data.view());
    let geom = r.apply_geometry(&input.geometry, shape);
    for (name, interp, tol) in [
        ("linear", Interpolation::Linear, 1e-3f32),
        ("nearest", Interpolation::Nearest, 0.0),
    ] {
        let reference = medseg_volume::read_volume(&path(&format!(
            "resample_oblique_identity_direction_bbox_{name}.nii.gz"
        )))
        .unwrap();
        let s = reference.data.dim();
        let grid = Grid::new(reference.geometry, [s.0, s.1, s.2]);
        let opts = ResampleOptions {
            interpolation: interp,
            boundary: Boundary::Zero,
            nearest_axis: None,
        };
        let out = resample(data.view(), &geom, &grid, &opts).unwrap();
        let diff = max_abs(&out, &reference.data);
        assert!(diff <= tol, "{name}: {diff}");
    }
    assert_eq!(r.invert(data.view()), input.data);
}
