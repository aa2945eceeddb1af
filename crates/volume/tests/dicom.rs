//! DICOM series against SimpleITK's ImageSeriesReader (tests/fixtures/dicom, generate.py):
//! voxels, spacing, origin and direction after LPS -> RAS to 1e-5; the series rules (several
//! series, a missing slice, an undecodable transfer syntax); hostile files.

use medseg_volume::{
    DicomOptions, Geometry, ImageFormat, VolumeError, list_dicom_series, read_dicom,
    read_dicom_files, read_image,
};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/dicom")
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap())
        .unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// SimpleITK's (LPS) spacing / origin / direction as medseg's RAS geometry.
fn sitk_geometry(e: &Value) -> Geometry {
    let sp = floats(&e["spacing"]);
    let o = floats(&e["origin"]);
    let d = floats(&e["direction"]);
    let flip = [-1.0, -1.0, 1.0];
    let mut g = Geometry::default();
    for a in 0..3 {
        g.spacing[a] = sp[a];
        g.origin[a] = o[a] * flip[a];
        for c in 0..3 {
            g.direction[a][c] = d[a * 3 + c] * flip[a];
        }
    }
    g
}

fn assert_matches_sitk(name: &str, v: &medseg_volume::Volume<f32>, e: &Value) {
    let shape: Vec<usize> = e["shape_kji"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(v.data.shape(), shape.as_slice(), "{name}: shape");
    let want = floats(&e["values"]);
    assert_eq!(v.data.len(), want.len(), "{name}: voxel count");
    for (i, (a, b)) in v.data.iter().zip(&want).enumerate() {
        assert!(
            (f64::from(*a) - b).abs() <= 1e-5 * b.abs().max(1.0),
            "{name}: voxel {i}: {a} vs SimpleITK's {b}"
        );
    }
    let want = sitk_geometry(e);
    if let Some(d) = v.geometry.difference(&want, 1e-5) {
        panic!(
            "{name}: geometry differs from SimpleITK's: {d}\n got {:?}\nwant {want:?}",
            v.geometry
        );
    }
}

#[test]
fn reads_what_simpleitk_reads() {
    let expected = expected();
    let mut checked = 0;
    for (name, e) in expected.as_object().unwrap() {
        if e.get("values").is_none() {
            continue;
        }
        let v = read_image(&fixtures().join(name)).unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_matches_sitk(name, &v, e);
        checked += 1;
    }
    // ct (SimpleITK's writer, implicit VR), oblique MR, RLE, enhanced multi-frame, JPEG lossless
    assert_eq!(checked, 5);
}

#[test]
fn series_facts_for_inspect() {
    let s = read_dicom(&fixtures().join("ct_int16_sitk"), &DicomOptions::default()).unwrap();
    assert_eq!(s.series.slices, 5);
    assert_eq!(s.series.files, 5);
    assert_eq!(s.series.modality, "CT");
    assert_eq!(s.stored_type, "int16");
    assert_eq!(s.rescale, Some((0.5, -1024.0)));
    assert_eq!(s.patient_id, "MEDSEG-FIXTURE");
    assert!(s.transfer_syntaxes[0].contains("1.2.840.10008.1.2"));
    // the MR folder holds a README.txt: skipped, counted
    let s = read_dicom(
        &fixtures().join("mr_oblique_uint16"),
        &DicomOptions::default(),
    )
    .unwrap();
    assert_eq!(s.skipped_files, 1);
    assert_eq!(s.stored_type, "uint16 (12 bits stored)");
    let s = read_dicom(&fixtures().join("enhanced_mr"), &DicomOptions::default()).unwrap();
    assert_eq!((s.series.slices, s.series.files), (4, 1));
    let s = read_dicom(&fixtures().join("jpeg_lossless"), &DicomOptions::default()).unwrap();
    assert!(
        s.transfer_syntaxes[0].contains("1.2.840.10008.1.2.4.70"),
        "{:?}",
        s.transfer_syntaxes
    );
}

#[test]
fn slice_order_comes_from_the_positions_not_the_file_list() {
    let dir = fixtures().join("mr_oblique_uint16");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let a = read_dicom_files(&dir, &files, &DicomOptions::default()).unwrap();
    files.reverse();
    let b = read_dicom_files(&dir, &files, &DicomOptions::default()).unwrap();
    assert_eq!(a.volume, b.volume);
    // one file alone is a one-slice series with SliceThickness as its spacing
    let one = read_image(&dir.join("img0.dcm")).unwrap();
    assert_eq!(one.data.shape(), &[1, 12, 16]);
    assert!((one.geometry.spacing[2] - 3.3).abs() < 1e-9);
}

#[test]
fn several_series_are_listed_and_one_is_chosen() {
    let e = &expected()["two_series"];
    let dir = fixtures().join("two_series");
    let err = read_image(&dir).unwrap_err();
    assert!(matches!(err, VolumeError::SeveralSeries { .. }));
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "{msg}");
    for word in e["error_contains"].as_array().unwrap() {
        assert!(msg.contains(word.as_str().unwrap()), "{msg:?} lacks {word}");
    }
    let listed = list_dicom_series(&dir).unwrap();
    assert_eq!(listed.len(), 2);
    for (uid, want) in e["series"].as_object().unwrap() {
        let opts = DicomOptions {
            series: Some(uid.clone()),
        };
        let s = read_dicom(&dir, &opts).unwrap();
        assert_eq!(&s.series.uid, uid);
        assert_eq!(s.other_series.len(), 1);
        assert_matches_sitk(uid, &s.volume, want);
    }
    let opts = DicomOptions {
        series: Some("1.2.3".into()),
    };
    let msg = read_dicom(&dir, &opts).unwrap_err().to_string();
    assert!(
        msg.contains("no DICOM series 1.2.3") && msg.contains("first series"),
        "{msg}"
    );
}

#[test]
fn refused_series_say_why() {
    let expected = expected();
    for name in ["missing_slice", "jpeg2000"] {
        let msg = read_image(&fixtures().join(name)).unwrap_err().to_string();
        assert!(!msg.contains('\n'), "{msg}");
        for word in expected[name]["error_contains"].as_array().unwrap() {
            assert!(
                msg.contains(word.as_str().unwrap()),
                "{name}: {msg:?} lacks {word}"
            );
        }
    }
}

#[test]
fn format_detection() {
    assert_eq!(
        ImageFormat::of(Path::new("a/IM1.DCM")),
        Some(ImageFormat::Dicom)
    );
    assert_eq!(
        ImageFormat::detect(&fixtures().join("ct_int16_sitk")),
        Some(ImageFormat::Dicom)
    );
    // no extension: known by its DICM magic
    assert_eq!(
        ImageFormat::detect(&fixtures().join("ct_int16_sitk/IM0000")),
        Some(ImageFormat::Dicom)
    );
    assert!(medseg_volume::is_dicom_dir(&fixtures().join("rle_int16")));
    assert!(!medseg_volume::is_dicom_dir(&fixtures()));
    let v =
        medseg_volume::Volume::new(ndarray::Array3::<u8>::zeros((1, 2, 2)), Geometry::default());
    let msg = medseg_volume::write_image(Path::new("/tmp/x.dcm"), &v)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("does not write DICOM"), "{msg}");
}

// ---- hostile files ----

/// A copy of fixture `rel` in a fresh folder, with `edit` applied to its bytes.
fn edited(rel: &str, edit: impl FnOnce(&mut Vec<u8>)) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(fixtures().join(rel)).unwrap();
    edit(&mut bytes);
    let p = dir.path().join("slice.dcm");
    std::fs::write(&p, bytes).unwrap();
    (dir, p)
}

/// Replaces the 2-byte US value of `tag` (group, element) in an explicit VR little-endian file.
fn set_us(bytes: &mut [u8], group: u16, element: u16, value: u16) {
    let mut pat = Vec::new();
    pat.extend(group.to_le_bytes());
    pat.extend(element.to_le_bytes());
    pat.extend(b"US\x02\x00");
    let at = bytes
        .windows(pat.len())
        .position(|w| w == pat.as_slice())
        .expect("tag in the file");
    bytes[at + 8..at + 10].copy_from_slice(&value.to_le_bytes());
}

fn one_line_naming(err: &VolumeError, path: &Path) -> String {
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    msg
}

#[test]
fn truncated_files_are_errors_at_every_cut() {
    for rel in [
        "mr_oblique_uint16/img0.dcm",
        "ct_int16_sitk/IM0000",
        "rle_int16/slice000.dcm",
        "enhanced_mr/enhanced.dcm",
        "jpeg_lossless/slice0.dcm",
    ] {
        let len = std::fs::read(fixtures().join(rel)).unwrap().len();
        for cut in (133..len).step_by(37).chain([len - 1]) {
            let (_d, p) = edited(rel, |b| b.truncate(cut));
            if let Err(e) = read_image(&p) {
                one_line_naming(&e, &p);
            }
        }
        // the pixel data cut short: always an error
        let (_d, p) = edited(rel, |b| b.truncate(len - 10));
        let e = read_image(&p).expect_err(rel);
        one_line_naming(&e, &p);
    }
}

#[test]
fn a_header_promising_more_pixels_than_present_is_truncated() {
    let (_d, p) = edited("mr_oblique_uint16/img0.dcm", |b| {
        set_us(b, 0x0028, 0x0010, 13)
    });
    let e = read_image(&p).unwrap_err();
    assert!(matches!(e, VolumeError::Truncated { .. }), "{e}");
    one_line_naming(&e, &p);
}

#[test]
fn absurd_dimensions_are_refused_before_allocating() {
    // 65535 x 65535 x 2 bytes = 8 GiB announced by a file of a few hundred bytes
    let (_d, p) = edited("mr_oblique_uint16/img0.dcm", |b| {
        set_us(b, 0x0028, 0x0010, u16::MAX);
        set_us(b, 0x0028, 0x0011, u16::MAX);
    });
    let e = read_image(&p).unwrap_err();
    assert!(matches!(e, VolumeError::Truncated { .. }), "{e}");
    one_line_naming(&e, &p);
    // a compressed file may not promise more than MAX_COMPRESSION_RATIO times its size
    let (_d, p) = edited("rle_int16/slice000.dcm", |b| {
        set_us(b, 0x0028, 0x0010, u16::MAX);
        set_us(b, 0x0028, 0x0011, u16::MAX);
    });
    let msg = one_line_naming(&read_image(&p).unwrap_err(), &p);
    assert!(msg.contains("absurd dimensions"), "{msg}");
    // an element length of ~775 MB in a file of a few hundred bytes (an unknown VR is read as
    // UN, whose length is 4 bytes): refused before the parser sizes a buffer from it
    let (_d, p) = edited("mr_oblique_uint16/img0.dcm", |b| {
        let at = b
            .windows(6)
            .position(|w| w == b"\x02\x00\x12\x00UI")
            .unwrap();
        b[at + 5] = 0xB6;
    });
    let e = read_image(&p).unwrap_err();
    assert!(matches!(e, VolumeError::Truncated { .. }), "{e}");
    one_line_naming(&e, &p);
    // Rows = 0
    let (_d, p) = edited("mr_oblique_uint16/img0.dcm", |b| {
        set_us(b, 0x0028, 0x0010, 0)
    });
    let msg = one_line_naming(&read_image(&p).unwrap_err(), &p);
    assert!(msg.contains("not an image size"), "{msg}");
}

#[test]
fn unsupported_pixel_types_say_so() {
    for (tag, value, words) in [
        ((0x0028, 0x0100), 12, "BitsAllocated = 12"),
        ((0x0028, 0x0100), 1, "BitsAllocated = 1"),
        ((0x0028, 0x0002), 3, "SamplesPerPixel = 3"),
        ((0x0028, 0x0101), 17, "BitsStored = 17"),
        ((0x0028, 0x0103), 2, "PixelRepresentation = 2"),
    ] {
        let (_d, p) = edited("mr_oblique_uint16/img0.dcm", |b| {
            set_us(b, tag.0, tag.1, value)
        });
        let msg = one_line_naming(&read_image(&p).unwrap_err(), &p);
        assert!(msg.contains(words), "{msg}");
    }
}

#[test]
fn series_rules_on_copied_files() {
    // the same slice twice: two images at one position
    let dir = tempfile::tempdir().unwrap();
    for n in ["a.dcm", "b.dcm"] {
        std::fs::copy(
            fixtures().join("mr_oblique_uint16/img0.dcm"),
            dir.path().join(n),
        )
        .unwrap();
    }
    let msg = read_image(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("two slices at one position"), "{msg}");
    // a folder without DICOM files
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    let msg = read_image(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("no DICOM image files"), "{msg}");
    // steps of 2 and 4 mm (slices at 2, 4, 8 of the missing-slice folder): non-uniform
    let dir = tempfile::tempdir().unwrap();
    for n in ["slice001.dcm", "slice002.dcm", "slice003.dcm"] {
        std::fs::copy(fixtures().join("missing_slice").join(n), dir.path().join(n)).unwrap();
    }
    let msg = read_image(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains("non-uniform slice spacing") && msg.contains("expected 4.0000 mm"),
        "{msg}"
    );
    // a series folder nested in sub-folders is found
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("PATIENT/STUDY/SERIES");
    std::fs::create_dir_all(&sub).unwrap();
    for e in std::fs::read_dir(fixtures().join("rle_int16")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, sub.join(p.file_name().unwrap())).unwrap();
    }
    let v = read_image(dir.path()).unwrap();
    assert_eq!(v.data.shape()[0], 4);
}

#[test]
fn damaged_bytes_anywhere_give_data_or_an_error_never_a_panic() {
    // a deterministic poor man's fuzz over every fixture file kind (the cargo-fuzz target
    // crates/volume/fuzz/fuzz_targets/read_dicom.rs does the same with random inputs)
    for rel in [
        "mr_oblique_uint16/img0.dcm",
        "ct_int16_sitk/IM0000",
        "rle_int16/slice000.dcm",
        "enhanced_mr/enhanced.dcm",
        "jpeg_lossless/slice0.dcm",
    ] {
        let len = std::fs::read(fixtures().join(rel)).unwrap().len();
        for at in (132..len).step_by(11) {
            for (width, value) in [(1, 0xFFu8), (4, 0xFF), (2, 0x00), (1, 0x80)] {
                let (_d, p) = edited(rel, |b| {
                    for x in b.iter_mut().skip(at).take(width) {
                        *x = if width == 1 && value == 0xFF {
                            !*x
                        } else {
                            value
                        };
                    }
                });
                if let Err(e) = read_image(&p) {
                    one_line_naming(&e, &p);
                }
            }
        }
    }
}
