//! Every file of the NIfTI conformance set (tests/fixtures/nifti-conformance) read by medseg
//! must agree with what nibabel 5.4.2 read from it (the JSON next to each file).

use medseg_volume::{NiftiFormat, read_header, read_nifti, read_nifti_f64, read_volume};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/nifti-conformance")
}

fn files() -> Vec<(PathBuf, Value)> {
    let dir = fixture_dir().join("files");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.to_string_lossy().into_owned();
        if name.ends_with(".json") {
            continue;
        }
        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(format!("{name}.json")).unwrap())
                .unwrap();
        out.push((p, json));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 20, "conformance set incomplete: {}", out.len());
    out
}

fn rel_close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-12) + 1e-9
}

#[test]
fn header_fields_match_nibabel() {
    for (path, j) in files() {
        let h = read_header(&path).unwrap_or_else(|e| panic!("{e}"));
        let name = path.display();
        let shape: Vec<usize> = j["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(h.shape(), shape, "{name}: shape");
        assert_eq!(
            h.datatype.name(),
            j["dtype"].as_str().unwrap(),
            "{name}: dtype"
        );
        let v = j["nifti_version"].as_u64().unwrap();
        assert_eq!(
            h.format,
            if v == 2 {
                NiftiFormat::Nifti2
            } else {
                NiftiFormat::Nifti1
            },
            "{name}"
        );
        assert_eq!(h.big_endian, j["byte_order"] == "big", "{name}: byte order");
        assert_eq!(
            h.qform_code as i64,
            j["qform_code"].as_i64().unwrap(),
            "{name}"
        );
        assert_eq!(
            h.sform_code as i64,
            j["sform_code"].as_i64().unwrap(),
            "{name}"
        );
        for (key, m) in [
            ("affine", h.affine()),
            ("qform", h.qform()),
            ("sform", h.sform()),
        ] {
            let exp = j[key].as_array().unwrap();
            for r in 0..4 {
                for c in 0..4 {
                    let e = exp[r][c].as_f64().unwrap();
                    assert!(
                        (m[r][c] - e).abs() < 1e-5,
                        "{name}: {key}[{r}][{c}] = {} vs nibabel {e}",
                        m[r][c]
                    );
                }
            }
        }
        let pix = j["pixdim"].as_array().unwrap();
        for (a, expected) in pix.iter().enumerate().skip(1).take(3) {
            assert!(
                (h.pixdim[a] - expected.as_f64().unwrap()).abs() < 1e-6,
                "{name}: pixdim"
            );
        }
    }
}

#[test]
fn scaled_data_matches_nibabel() {
    for (path, j) in files() {
        let name = path.display();
        let (h, data) = read_nifti_f64(&path).unwrap_or_else(|e| panic!("{e}"));
        let stats = &j["scaled_float64"];
        let (mut sum, mut min, mut max, mut nz) = (0.0f64, f64::INFINITY, f64::NEG_INFINITY, 0u64);
        for &v in data.iter() {
            sum += v;
            min = min.min(v);
            max = max.max(v);
            nz += (v != 0.0) as u64;
        }
        let mean = sum / data.len() as f64;
        assert!(
            rel_close(sum, stats["sum"].as_f64().unwrap(), 1e-6),
            "{name}: sum {sum} vs {}",
            stats["sum"]
        );
        assert!(
            rel_close(min, stats["min"].as_f64().unwrap(), 1e-6),
            "{name}: min {min} vs {}",
            stats["min"]
        );
        assert!(
            rel_close(max, stats["max"].as_f64().unwrap(), 1e-6),
            "{name}: max {max} vs {}",
            stats["max"]
        );
        assert!(
            rel_close(mean, stats["mean"].as_f64().unwrap(), 1e-6),
            "{name}: mean"
        );
        assert_eq!(nz, stats["nonzero"].as_u64().unwrap(), "{name}: nonzero");
        // Samples are indexed in NIfTI order (i fastest); our array is the reverse.
        let shape = h.shape();
        for s in j["samples_F_order"].as_array().unwrap() {
            let idx: Vec<usize> = s["index"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            let mut rev: Vec<usize> = idx.clone();
            while rev.len() < shape.len().max(3) {
                rev.push(0);
            }
            rev.reverse();
            let got = data[ndarray::IxDyn(&rev)];
            let exp = s["value"].as_f64().unwrap();
            assert!(
                rel_close(got, exp, 1e-6),
                "{name}: sample {idx:?} = {got} vs nibabel {exp}"
            );
        }
        // The f32 reader agrees with the f64 one.
        let img = read_nifti(&path).unwrap();
        assert_eq!(img.data.shape(), data.shape());
    }
}

#[test]
fn negative_files_are_errors_not_panics() {
    let p = fixture_dir().join("negative/niworkflows_boldref_header_only.nii");
    let err = read_nifti(&p).unwrap_err().to_string();
    assert!(err.contains("niworkflows_boldref_header_only.nii"), "{err}");
    assert!(err.contains("truncated"), "{err}");
    assert!(read_volume(&p).is_err());
}
