//! MetaImage and NRRD against SimpleITK (tests/fixtures/formats, generate.py): voxels,
//! spacing, origin and direction after LPS -> RAS; round trips NIfTI -> MHA -> NRRD -> NIfTI;
//! hostile headers.

use medseg_volume::{
    Geometry, ImageFormat, Volume, read_image, read_metaimage, read_nrrd, write_image,
};
use ndarray::Array3;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/formats")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// SimpleITK's (LPS) spacing / origin / direction as medseg's RAS geometry (2D: unit z).
fn sitk_geometry(e: &Value) -> Geometry {
    let sp = floats(&e["spacing"]);
    let o = floats(&e["origin"]);
    let d = floats(&e["direction"]);
    let n = sp.len();
    let mut g = Geometry::with_spacing([1.0; 3]);
    let flip = [-1.0, -1.0, 1.0];
    for a in 0..n {
        g.spacing[a] = sp[a];
        g.origin[a] = o[a] * flip[a];
    }
    for r in 0..3 {
        for c in 0..3 {
            let lps = if r < n && c < n {
                d[r * n + c]
            } else {
                f64::from(u8::from(r == c))
            };
            g.direction[r][c] = lps * flip[r];
        }
    }
    g
}

fn assert_geometry(name: &str, got: &Geometry, want: &Geometry) {
    if let Some(d) = got.difference(want, 1e-9) {
        panic!("{name}: geometry differs from SimpleITK's: {d}\n got {got:?}\nwant {want:?}");
    }
}

#[test]
fn reads_what_simpleitk_reads() {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap())
            .unwrap();
    for (name, e) in expected.as_object().unwrap() {
        let v = read_image(&fixtures().join(name)).unwrap_or_else(|err| panic!("{name}: {err}"));
        let mut shape: Vec<usize> = e["shape_kji"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        if shape.len() == 2 {
            shape.insert(0, 1);
        }
        assert_eq!(v.data.shape(), shape.as_slice(), "{name}: shape");
        let want = floats(&e["values"]);
        for (i, (a, b)) in v.data.iter().zip(&want).enumerate() {
            // as f32: serde_json's default float parsing may be off by one f64 ulp
            assert_eq!(*a, *b as f32, "{name}: voxel {i}");
        }
        assert_geometry(name, &v.geometry, &sitk_geometry(e));
    }
}

fn oblique() -> Volume<i16> {
    let data = Array3::from_shape_fn((4, 5, 6), |(k, j, i)| (k * 100 + j * 10 + i) as i16 - 200);
    let (c, s) = (0.6f64.cos(), 0.6f64.sin());
    let geometry = Geometry {
        spacing: [0.75, 0.8, 3.0],
        origin: [-10.5, 22.25, 5.0],
        direction: [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]],
    };
    Volume::new(data, geometry)
}

#[test]
fn round_trip_nifti_mha_nrrd_nifti_keeps_data_and_geometry() {
    let tmp = tempfile::tempdir().unwrap();
    let v = oblique();
    // the NIfTI file is the reference: its header holds the geometry as float32
    let first = tmp.path().join("a.nii.gz");
    write_image(&first, &v).unwrap();
    let reference = read_image(&first).unwrap();
    assert_eq!(reference.data, v.data.mapv(f32::from));
    assert!(reference.geometry.difference(&v.geometry, 1e-6).is_none());
    let mut current = reference.clone();
    for name in ["b.mha", "c.mhd", "d.nrrd", "e.nhdr", "f.nii.gz"] {
        let p = tmp.path().join(name);
        write_image(&p, &current.map(|&x| x as i16)).unwrap();
        let back = read_image(&p).unwrap();
        assert_eq!(back.data, reference.data, "{name}: voxels");
        assert_geometry(name, &back.geometry, &reference.geometry);
        current = back;
    }
    assert_eq!(
        ImageFormat::of(Path::new("X.NRRD")),
        Some(ImageFormat::Nrrd)
    );
}

#[test]
fn hostile_headers_are_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("huge.mha", b"NDims = 3\nDimSize = 100000 100000 100000\nElementType = MET_FLOAT\nElementDataFile = LOCAL\n".to_vec()),
        ("short.mha", b"NDims = 3\nDimSize = 10 10 10\nElementType = MET_FLOAT\nElementDataFile = LOCAL\nabc".to_vec()),
        ("noend.mha", b"NDims = 3\nDimSize = 10 10 10\n".to_vec()),
        ("vector.mha", b"NDims = 3\nDimSize = 2 2 2\nElementNumberOfChannels = 3\nElementType = MET_FLOAT\nElementDataFile = LOCAL\n".to_vec()),
        ("type.mha", b"NDims = 3\nDimSize = 2 2 2\nElementType = MET_COMPLEX\nElementDataFile = LOCAL\n".to_vec()),
        ("bomb.mha", b"NDims = 3\nDimSize = 2 2 2\nCompressedData = True\nElementType = MET_UCHAR\nElementDataFile = LOCAL\nnot zlib".to_vec()),
        ("missing.mhd", b"NDims = 3\nDimSize = 2 2 2\nElementType = MET_UCHAR\nElementDataFile = nowhere.raw\n".to_vec()),
        ("huge.nrrd", b"NRRD0004\ntype: float\ndimension: 3\nsizes: 100000 100000 100000\nencoding: raw\n\n".to_vec()),
        ("short.nrrd", b"NRRD0004\ntype: float\ndimension: 3\nsizes: 4 4 4\nencoding: raw\n\n1234".to_vec()),
        ("magic.nrrd", b"PK\x03\x04 not a nrrd".to_vec()),
        ("space.nrrd", b"NRRD0004\ntype: float\ndimension: 3\nspace: right-anterior-inferior-ish\nsizes: 1 1 1\nencoding: raw\n\n1234".to_vec()),
        ("bzip.nrrd", b"NRRD0004\ntype: float\ndimension: 3\nsizes: 1 1 1\nencoding: bzip2\n\n1234".to_vec()),
        ("dims.nrrd", b"NRRD0004\ntype: float\ndimension: 3\nsizes: 1 1\nencoding: raw\n\n1234".to_vec()),
        ("flat.nrrd", b"NRRD0004\ntype: float\ndimension: 3\nsizes: 1 1 1\nspace: RAS\nspace directions: (0,0,0) (0,1,0) (0,0,1)\nencoding: raw\n\n1234".to_vec()),
    ];
    for (name, bytes) in cases {
        let p = tmp.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let err = match ImageFormat::of(&p) {
            Some(ImageFormat::MetaImage) => read_metaimage(&p).unwrap_err(),
            _ => read_nrrd(&p).unwrap_err(),
        };
        let msg = err.to_string();
        assert!(msg.contains(name) && !msg.contains('\n'), "{name}: {msg}");
    }
}

#[test]
fn natural_images_keep_channels_and_values() {
    let tmp = tempfile::tempdir().unwrap();
    // RGB PNG: three channels, stored values, rows along j
    let rgb = image::RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8, y as u8 * 10, 200]));
    let p = tmp.path().join("case_0000.png");
    rgb.save(&p).unwrap();
    let mc = medseg_volume::read_channels(std::slice::from_ref(&p)).unwrap();
    assert_eq!(mc.data.shape(), &[3, 1, 3, 5]);
    assert_eq!(mc.data[[0, 0, 2, 4]], 4.0);
    assert_eq!(mc.data[[1, 0, 2, 4]], 20.0);
    assert_eq!(mc.data[[2, 0, 0, 0]], 200.0);
    assert!(
        read_image(&p)
            .unwrap_err()
            .to_string()
            .contains("3 colour channels")
    );
    // 16-bit grey TIFF
    let grey = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(4, 2, |x, y| {
        image::Luma([1000 * x as u16 + y as u16])
    });
    let t = tmp.path().join("grey.tif");
    grey.save(&t).unwrap();
    let v = read_image(&t).unwrap();
    assert_eq!(v.data.shape(), &[1, 2, 4]);
    assert_eq!(v.data[[0, 1, 3]], 3001.0);
    // labels written as PNG and read back; fractional values refused
    let labels = Volume::new(
        Array3::from_shape_fn((1, 3, 4), |(_, j, i)| (i + j) as u16 * 300),
        Geometry::default(),
    );
    let l = tmp.path().join("labels.png");
    write_image(&l, &labels).unwrap();
    assert_eq!(medseg_volume::read_labels(&l).unwrap().data, labels.data);
    let half = Volume::new(Array3::from_elem((1, 2, 2), 0.5f32), Geometry::default());
    let err = write_image(&tmp.path().join("bad.png"), &half)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad.png") && err.contains("whole numbers"),
        "{err}"
    );
}
