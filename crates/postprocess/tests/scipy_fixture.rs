//! Postprocessing against scipy.ndimage (tests/fixtures/preprocess, see its README).

use medseg_postprocess::{
    Connectivity, Structure, dilate, erode, fill_holes, keep_largest_component, label_components,
    remove_small_components,
};
use ndarray::Array3;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/preprocess"
    ))
}

fn labels(name: &str) -> Array3<u16> {
    medseg_volume::read_labels(&dir().join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .data
}

fn mask(name: &str) -> Array3<bool> {
    labels(name).mapv(|v| v != 0)
}

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(dir().join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn entry(id: &str) -> serde_json::Value {
    manifest()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("no entry {id}"))
        .clone()
}

fn assert_same(ours: &Array3<bool>, reference: &Array3<bool>, what: &str) {
    assert_eq!(ours.dim(), reference.dim(), "{what}: shape");
    let diff = ours
        .iter()
        .zip(reference.iter())
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(diff, 0, "{what}: {diff} voxels differ");
}

#[test]
fn connected_components_match_scipy_label() {
    let input = mask("cc_input.nii.gz");
    let results = &entry("connected_components")["results"];
    for (n, conn) in [
        (6, Connectivity::Faces),
        (18, Connectivity::Edges),
        (26, Connectivity::Corners),
    ] {
        let r = &results[n.to_string()];
        let cc = label_components(input.view(), conn);
        assert_eq!(
            cc.count() as u64,
            r["num_components"].as_u64().unwrap(),
            "{n}-conn count"
        );
        let sizes: Vec<u64> = r["sizes_by_label_id"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(
            cc.sizes.iter().map(|&s| s as u64).collect::<Vec<_>>(),
            sizes,
            "{n}-conn sizes"
        );
        // the label image itself, id by id (scipy's first-voxel order)
        let reference = labels(&format!("cc_label{n}.nii.gz"));
        let ours = cc.labels.mapv(|v| v as u16);
        assert_eq!(ours, reference, "{n}-conn label image");
        assert_eq!(
            cc.largest().unwrap() as u64,
            r["largest_label_id"].as_u64().unwrap()
        );

        let largest = keep_largest_component(input.view(), conn);
        assert_same(
            &largest,
            &mask(&format!("cc_largest{n}.nii.gz")),
            &format!("largest {n}"),
        );
        let kept = remove_small_components(input.view(), conn, 20);
        assert_same(
            &kept,
            &mask(&format!("cc_min20_{n}.nii.gz")),
            &format!("min20 {n}"),
        );
        let kept_components = label_components(kept.view(), conn).count() as u64;
        assert_eq!(
            kept_components,
            r["num_components_kept_min20"].as_u64().unwrap()
        );
    }
}

#[test]
fn fill_holes_3d_matches_scipy() {
    let input = mask("fill3d_input.nii.gz");
    for (name, conn) in [
        ("cross_default", Connectivity::Faces),
        ("18", Connectivity::Edges),
        ("full", Connectivity::Corners),
    ] {
        let ours = fill_holes(input.view(), conn);
        assert_same(&ours, &mask(&format!("fill3d_{name}.nii.gz")), name);
    }
}

#[test]
fn fill_holes_2d_is_computed_in_the_plane() {
    let input = mask("fill2d_input.nii.gz");
    assert_eq!(input.dim().0, 1);
    for (name, conn) in [
        ("cross_default", Connectivity::Faces),
        ("full", Connectivity::Corners),
    ] {
        let ours = fill_holes(input.view(), conn);
        assert_same(&ours, &mask(&format!("fill2d_{name}.nii.gz")), name);
        assert!(ours.iter().filter(|&&v| v).count() > input.iter().filter(|&&v| v).count());
    }
}

#[test]
fn erosion_and_dilation_match_scipy_border_value_0() {
    let input = mask("morph_input.nii.gz");
    let results = &entry("morphology")["results"];
    for (name, conn) in [
        ("cross6", Connectivity::Faces),
        ("full27", Connectivity::Corners),
    ] {
        let e = erode(input.view(), Structure(conn), 1);
        let d = dilate(input.view(), Structure(conn), 1);
        assert_same(
            &e,
            &mask(&format!("morph_erode_{name}.nii.gz")),
            &format!("erode {name}"),
        );
        assert_same(
            &d,
            &mask(&format!("morph_dilate_{name}.nii.gz")),
            &format!("dilate {name}"),
        );
        let count = |m: &Array3<bool>| m.iter().filter(|&&v| v).count() as u64;
        assert_eq!(count(&e), results[name]["eroded_voxels"].as_u64().unwrap());
        assert_eq!(count(&d), results[name]["dilated_voxels"].as_u64().unwrap());
    }
}
