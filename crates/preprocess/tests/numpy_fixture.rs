//! Normalization and crop-to-nonzero against the numpy/scipy fixture.

use medseg_preprocess::{Normalization, crop_to_nonzero, normalize, percentile, uncrop};
use ndarray::{Array3, Axis};
use std::path::PathBuf;

fn path(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/preprocess"
    ))
    .join(name)
}

fn entry(id: &str) -> serde_json::Value {
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path("manifest.json")).unwrap()).unwrap();
    m["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .unwrap()
        .clone()
}

fn read(name: &str) -> medseg_volume::Volume<f32> {
    medseg_volume::read_volume(&path(name)).unwrap()
}

fn assert_close(ours: &Array3<f32>, reference: &Array3<f32>, what: &str) {
    for (a, b) in ours.iter().zip(reference.iter()) {
        let tol = 1e-5f32.max(1e-5 * b.abs());
        assert!((a - b).abs() <= tol, "{what}: {a} vs {b}");
    }
}

#[test]
fn zscore_variants() {
    let x = read("norm_input.nii.gz").data;
    let mut z = x.clone();
    normalize(z.view_mut(), &Normalization::ZScore, None).unwrap();
    assert_close(&z, &read("norm_zscore.nii.gz").data, "zscore");
    let mut z = x.clone();
    normalize(z.view_mut(), &Normalization::ZScoreNonzero, None).unwrap();
    assert_close(
        &z,
        &read("norm_zscore_nonzero.nii.gz").data,
        "zscore_nonzero",
    );
}

#[test]
fn ct_normalization_with_dataset_statistics() {
    let ct = read("ct_input.nii.gz").data;
    let label = medseg_volume::read_labels(&path("ct_label.nii.gz"))
        .unwrap()
        .data;
    let r = &entry("ct_normalization")["results"];
    let fg: Vec<f64> = ct
        .iter()
        .zip(label.iter())
        .filter(|(_, l)| **l > 0)
        .map(|(&x, _)| x as f64)
        .collect();
    assert_eq!(fg.len() as u64, r["n_foreground"].as_u64().unwrap());
    let lo = percentile(&fg, 0.5).unwrap();
    let hi = percentile(&fg, 99.5).unwrap();
    let mean = fg.iter().sum::<f64>() / fg.len() as f64;
    let std = (fg.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / fg.len() as f64).sqrt();
    for (ours, key) in [
        (lo, "percentile_00_5"),
        (hi, "percentile_99_5"),
        (mean, "mean_fg"),
        (std, "std_fg"),
    ] {
        let want = r[key].as_f64().unwrap();
        assert!(
            (ours - want).abs() <= 1e-9 * want.abs().max(1.0),
            "{key}: {ours} vs {want}"
        );
    }
    let mut out = ct.clone();
    normalize(
        out.view_mut(),
        &Normalization::Ct {
            lower: lo,
            upper: hi,
            mean,
            std,
        },
        None,
    )
    .unwrap();
    assert_close(&out, &read("ct_normalized.nii.gz").data, "ct");
}

#[test]
fn crop_to_nonzero_bbox_mask_and_geometry() {
    let c0 = read("crop_input_ch0.nii.gz");
    let c1 = read("crop_input_ch1.nii.gz");
    let data = ndarray::stack(Axis(0), &[c0.data.view(), c1.data.view()]).unwrap();
    let (bbox, mask) = crop_to_nonzero(data.view());
    let r = &entry("crop_to_nonzero")["results"];
    let want: Vec<[usize; 2]> = serde_json::from_value(r["bbox_kji_half_open"].clone()).unwrap();
    for (a, w) in want.iter().enumerate() {
        assert_eq!([bbox.start_kji[a], bbox.end_kji[a]], *w);
    }
    let ref_mask = medseg_volume::read_labels(&path("crop_nonzero_mask.nii.gz"))
        .unwrap()
        .data
        .mapv(|v| v != 0);
    assert_eq!(mask, ref_mask);
    let out0 = read("crop_out_ch0.nii.gz");
    let cropped = bbox.crop(c0.data.view());
    assert_eq!(cropped, out0.data);
    assert_eq!(bbox.crop(c1.data.view()), read("crop_out_ch1.nii.gz").data);
    assert!(
        bbox.cropped_geometry(&c0.geometry)
            .difference(&out0.geometry, 1e-4)
            .is_none()
    );
    let d = c0.data.dim();
    assert_eq!(
        uncrop(cropped.view(), &bbox, [d.0, d.1, d.2], 0.0).unwrap(),
        c0.data
    );
}
