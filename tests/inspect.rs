//! `medseg inspect --json` agrees with nibabel on every conformance file, and unreadable files
//! give exit code 1 with one line naming the file.

use std::path::Path;
use std::process::Command;

#[test]
fn inspect_json_matches_nibabel() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nifti-conformance/files");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            continue;
        }
        let expected: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{}.json", p.display())).unwrap(),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_medseg"))
            .args(["inspect", "--json"])
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            p.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let name = p.display();
        let v = expected["nifti_version"].as_u64().unwrap();
        assert_eq!(
            got["format"],
            if v == 2 { "nifti2" } else { "nifti1" },
            "{name}"
        );
        assert_eq!(got["shape"], expected["shape"], "{name}");
        assert_eq!(got["datatype"], expected["dtype"], "{name}");
        for r in 0..4 {
            for c in 0..4 {
                let (a, b) = (
                    got["affine"][r][c].as_f64().unwrap(),
                    expected["affine"][r][c].as_f64().unwrap(),
                );
                assert!((a - b).abs() < 1e-5, "{name}: affine[{r}][{c}] {a} vs {b}");
            }
        }
        let nd = expected["shape"].as_array().unwrap().len().min(3);
        for a in 0..nd {
            let (s, e) = (
                got["spacing"][a].as_f64().unwrap(),
                expected["pixdim"][a + 1].as_f64().unwrap(),
            );
            assert!((s - e).abs() < 1e-6, "{name}: spacing");
        }
        for key in ["min", "max", "mean"] {
            let (a, b) = (
                got[key].as_f64().unwrap(),
                expected["scaled_float64"][key].as_f64().unwrap(),
            );
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1e-9),
                "{name}: {key} {a} vs nibabel {b}"
            );
        }
        n += 1;
    }
    assert!(n >= 20);
}

#[test]
fn unreadable_file_is_exit_1_with_one_line() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/nifti-conformance/negative/niworkflows_boldref_header_only.nii");
    let out = Command::new(env!("CARGO_BIN_EXE_medseg"))
        .args(["inspect"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("niworkflows_boldref_header_only.nii") && err.contains("truncated"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_medseg"))
        .args(["inspect", "--bogus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn inspect_reads_metaimage_and_nrrd() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats");
    for (file, format) in [
        ("oblique_int16.mha", "metaimage"),
        ("oblique_float32.nrrd", "nrrd"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_medseg"))
            .args(["inspect", "--json"])
            .arg(dir.join(file))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(d["format"], format, "{file}");
        assert_eq!(d["shape"], serde_json::json!([7, 6, 5]), "{file}");
        assert_eq!(d["finite_count"], 210, "{file}");
        let table = Command::new(env!("CARGO_BIN_EXE_medseg"))
            .arg("inspect")
            .arg(dir.join(file))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&table.stdout);
        assert!(
            table.status.success() && text.contains(format) && text.contains("spacing"),
            "{text}"
        );
    }
}
