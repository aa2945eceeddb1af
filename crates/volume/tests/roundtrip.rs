//! Write-then-read round trips, bad-input errors, and fuzz-style corruption of valid files.

use medseg_volume::{
    Geometry, MultiChannel, NiftiScalar, Volume, WriteOptions, read_channels, read_header,
    read_labels, read_nifti, read_volume, write_channels, write_volume,
};
use ndarray::Array3;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

fn oblique() -> Geometry {
    let t: f64 = 0.35;
    Geometry {
        spacing: [0.7, 1.3, 2.9],
        origin: [-91.5, 12.25, 40.0],
        direction: [
            [t.cos(), 0.0, t.sin()],
            [0.0, -1.0, 0.0],
            [t.sin(), 0.0, -t.cos()],
        ],
    }
}

fn round_trip<T: NiftiScalar + PartialEq + std::fmt::Debug + Copy>(
    dir: &Path,
    name: &str,
    f: impl Fn(usize) -> T,
) {
    let data = Array3::from_shape_fn((5, 7, 9), |(k, j, i)| f(k * 63 + j * 9 + i));
    let vol = Volume::new(data, oblique());
    for ext in ["nii", "nii.gz"] {
        let p = dir.join(format!("{name}.{ext}"));
        write_volume(&p, &vol, &WriteOptions::default()).unwrap();
        let back = read_volume(&p).unwrap();
        assert_eq!(back.shape_ijk(), [9, 7, 5]);
        for (a, b) in vol.data.iter().zip(back.data.iter()) {
            let a: f64 = format!("{a:?}").parse().unwrap();
            assert_eq!(a as f32, *b, "{name}.{ext}");
        }
        assert!(
            vol.geometry.difference(&back.geometry, 1e-5).is_none(),
            "{name}.{ext} geometry"
        );
        // The qform agrees with the sform too (float32 precision).
        let h = read_header(&p).unwrap();
        let (q, s) = (h.qform(), h.sform());
        for r in 0..3 {
            for c in 0..4 {
                assert!(
                    (q[r][c] - s[r][c]).abs() < 1e-4,
                    "{name}.{ext}: qform {q:?} vs sform {s:?}"
                );
            }
        }
    }
}

#[test]
fn every_written_datatype_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    round_trip::<u8>(dir.path(), "u8", |n| (n % 256) as u8);
    round_trip::<i16>(dir.path(), "i16", |n| (n as i16).wrapping_mul(97) - 3000);
    round_trip::<u16>(dir.path(), "u16", |n| (n as u16).wrapping_mul(211));
    round_trip::<f32>(dir.path(), "f32", |n| (n as f32).sin() * 1e3 - 0.125);
}

#[test]
fn reference_header_geometry_is_preserved_exactly() {
    let fixtures =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/nifti-conformance/files");
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "nibabel_anatomical.nii",
        "dcm2niix_CT_small.nii.gz",
        "dipy_aniso_vox.nii.gz",
        "nibabel_standard.nii.gz",
    ] {
        let src = fixtures.join(name);
        let img = read_volume(&src).unwrap();
        let reference = read_header(&src).unwrap();
        let labels = img.map(|&v| (v > 0.0) as u8);
        let out = dir.path().join(format!("pred_{name}"));
        write_volume(
            &out,
            &labels,
            &WriteOptions::with_reference(reference.clone()),
        )
        .unwrap();
        let h = read_header(&out).unwrap();
        assert_eq!(h.sform_code, reference.sform_code, "{name}");
        assert_eq!(h.qform_code, reference.qform_code, "{name}");
        assert_eq!(h.srow, reference.srow, "{name}");
        assert_eq!(h.quatern, reference.quatern, "{name}");
        assert_eq!(h.qoffset, reference.qoffset, "{name}");
        assert_eq!(h.pixdim[..4], reference.pixdim[..4], "{name}");
        assert_eq!(h.xyzt_units, reference.xyzt_units, "{name}");
        assert_eq!(h.affine(), reference.affine(), "{name}");
        let back = read_labels(&out).unwrap();
        assert_eq!(back.data, labels.data.mapv(|v| v as u16));
    }
}

#[test]
fn channels_round_trip_as_4d() {
    let dir = tempfile::tempdir().unwrap();
    let data = ndarray::Array4::from_shape_fn((3, 4, 5, 6), |(c, k, j, i)| {
        (c * 1000 + k * 100 + j * 10 + i) as f32 / 7.0
    });
    let mc = MultiChannel {
        data,
        geometry: oblique(),
    };
    let p = dir.path().join("prob.nii.gz");
    write_channels(&p, &mc, &WriteOptions::default()).unwrap();
    assert_eq!(read_header(&p).unwrap().shape(), vec![6, 5, 4, 3]);
    let back = read_channels(&[p]).unwrap();
    assert_eq!(back.data, mc.data);
}

#[test]
fn mismatched_channels_are_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = Volume::new(Array3::<f32>::zeros((4, 4, 4)), Geometry::default());
    let b = Volume::new(Array3::<f32>::zeros((4, 4, 5)), Geometry::default());
    let (pa, pb) = (dir.path().join("c_0000.nii"), dir.path().join("c_0001.nii"));
    write_volume(&pa, &a, &WriteOptions::default()).unwrap();
    write_volume(&pb, &b, &WriteOptions::default()).unwrap();
    let err = read_channels(&[pa, pb]).unwrap_err().to_string();
    assert!(err.contains("c_0001.nii") && err.contains("shape"), "{err}");
}

#[test]
fn bad_inputs_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let vol = Volume::new(Array3::from_elem((3, 3, 3), 1.5f32), Geometry::default());
    let good = dir.path().join("good.nii");
    write_volume(&good, &vol, &WriteOptions::default()).unwrap();
    let bytes = std::fs::read(&good).unwrap();

    // Analyze 7.5: NIfTI magic removed.
    let mut analyze = bytes.clone();
    analyze[344..348].copy_from_slice(&[0, 0, 0, 0]);
    let p = dir.path().join("analyze.hdr");
    std::fs::write(&p, &analyze).unwrap();
    let e = read_nifti(&p).unwrap_err().to_string();
    assert!(e.contains("Analyze") && e.contains("analyze.hdr"), "{e}");

    // Complex and RGB datatypes.
    for (code, word) in [(32i16, "complex"), (128, "RGB")] {
        let mut b = bytes.clone();
        b[70..72].copy_from_slice(&code.to_le_bytes());
        let p = dir.path().join(format!("dt{code}.nii"));
        std::fs::write(&p, &b).unwrap();
        let e = read_nifti(&p).unwrap_err().to_string();
        assert!(e.contains(word), "{e}");
    }

    // Allocation bomb: 30000^3 voxels announced in a tiny file.
    let mut bomb = bytes.clone();
    for a in 1..4 {
        bomb[40 + 2 * a..42 + 2 * a].copy_from_slice(&30000i16.to_le_bytes());
    }
    let p = dir.path().join("bomb.nii");
    std::fs::write(&p, &bomb).unwrap();
    assert!(read_nifti(&p).is_err());

    // Truncated file.
    let p = dir.path().join("trunc.nii");
    std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
    let e = read_nifti(&p).unwrap_err().to_string();
    assert!(e.contains("truncated"), "{e}");

    // Not a label map.
    let e = read_labels(&good).unwrap_err().to_string();
    assert!(e.contains("not a label map"), "{e}");

    // Empty and missing files.
    let p = dir.path().join("empty.nii.gz");
    std::fs::write(&p, b"").unwrap();
    assert!(read_nifti(&p).is_err());
    assert!(read_nifti(&dir.path().join("missing.nii")).is_err());
}

#[test]
fn gzip_detected_by_magic_and_multi_member() {
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let vol = Volume::new(
        Array3::from_shape_fn((4, 5, 6), |(k, j, i)| (k + j + i) as f32),
        oblique(),
    );
    let plain = dir.path().join("a.nii");
    write_volume(&plain, &vol, &WriteOptions::default()).unwrap();
    let bytes = std::fs::read(&plain).unwrap();
    // Two gzip members, under a name without .gz.
    let mut out = Vec::new();
    for part in [&bytes[..500], &bytes[500..]] {
        let mut e = GzEncoder::new(Vec::new(), Compression::new(3));
        e.write_all(part).unwrap();
        out.extend(e.finish().unwrap());
    }
    let p = dir.path().join("b.nii");
    std::fs::write(&p, &out).unwrap();
    assert_eq!(read_volume(&p).unwrap().data, vol.data);
}

/// Random truncations and byte flips of valid files must give errors or data, never a panic
/// or an abort; for gzip files, any damage past the 10-byte gzip header (deflate data, CRC-32,
/// ISIZE) must be an error or give back exactly the original voxels, never other data.
#[test]
fn corrupted_files_never_panic() {
    let fixtures =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/nifti-conformance/files");
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for name in [
        "nibabel_standard.nii.gz",
        "nibabel_anatomical.nii",
        "derived_nifti2_aniso_vox.nii",
        "dipy_small_25.nii.gz",
    ] {
        let bytes = std::fs::read(fixtures.join(name)).unwrap();
        let original = read_nifti(&fixtures.join(name)).unwrap().data;
        let gz = name.ends_with(".gz");
        for trial in 0..60 {
            let mut b = bytes.clone();
            if trial % 3 == 0 {
                let cut = rng.random_range(0..b.len());
                b.truncate(cut);
            } else {
                let limit = if trial % 3 == 1 {
                    b.len().min(600)
                } else {
                    b.len()
                };
                for _ in 0..rng.random_range(1..8) {
                    let at = rng.random_range(0..limit);
                    b[at] = rng.random();
                }
            }
            let p = dir.path().join(format!("fuzz_{trial}_{name}"));
            std::fs::write(&p, &b).unwrap();
            let damaged_body = gz && b.len() > 10 && b[10..] != bytes[10..];
            let r = std::panic::catch_unwind(|| {
                let _ = read_header(&p);
                read_nifti(&p).ok().map(|img| img.data)
            });
            let Ok(data) = r else {
                panic!("panic reading a corrupted {name} (trial {trial})");
            };
            if damaged_body && let Some(d) = data {
                assert_eq!(
                    d, original,
                    "{name} (trial {trial}): damaged gzip read as other data"
                );
            }
        }
    }
}
