//! Damaged and degenerate files: every damage to a `.nii.gz` past its gzip header is an error
//! naming the file (never garbage data), corrupt headers are reported as stored, and a
//! degenerate geometry gets nibabel's repairs instead of a zero spacing.

use flate2::{Compression, write::GzEncoder};
use medseg_volume::{Geometry, Volume, WriteOptions, read_header, read_nifti, write_volume};
use ndarray::Array3;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A 32³ float32 volume of noise (so the deflate stream is long) as plain NIfTI bytes.
fn nifti_bytes(dir: &Path) -> (Vec<u8>, Array3<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let data = Array3::from_shape_fn((32, 32, 32), |_| rng.random_range(0.0..100.0f32).round());
    let plain = dir.join("plain.nii");
    let v = Volume::new(data.clone(), Geometry::with_spacing([1.0, 1.0, 2.0]));
    write_volume(&plain, &v, &WriteOptions::default()).unwrap();
    (std::fs::read(&plain).unwrap(), data)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::new(6));
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn read_err(p: &Path) -> String {
    match read_nifti(p) {
        Ok(_) => panic!("{} was read as data", p.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn gzip_with_a_flipped_bit_mid_stream_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _) = nifti_bytes(dir.path());
    let mut gz = gzip(&bytes);
    let mid = gz.len() / 2;
    gz[mid] ^= 0x10;
    let p = write(dir.path(), "flipped.nii.gz", &gz);
    let e = read_err(&p);
    assert!(
        e.contains("flipped.nii.gz") && e.contains("corrupt gzip"),
        "{e}"
    );
    assert!(!e.contains('\n'), "one line: {e}");
}

#[test]
fn gzip_with_a_damaged_crc_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _) = nifti_bytes(dir.path());
    let mut gz = gzip(&bytes);
    let n = gz.len();
    gz[n - 8] ^= 0x01;
    let e = read_err(&write(dir.path(), "crc.nii.gz", &gz));
    assert!(
        e.contains("crc.nii.gz") && e.contains("corrupt gzip"),
        "{e}"
    );
}

#[test]
fn gzip_with_a_damaged_isize_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _) = nifti_bytes(dir.path());
    let mut gz = gzip(&bytes);
    let n = gz.len();
    gz[n - 2] ^= 0x40;
    let e = read_err(&write(dir.path(), "isize.nii.gz", &gz));
    assert!(
        e.contains("isize.nii.gz") && e.contains("corrupt gzip"),
        "{e}"
    );
}

#[test]
fn truncated_gzip_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _) = nifti_bytes(dir.path());
    let gz = gzip(&bytes);
    for cut in [gz.len() - 3, gz.len() * 3 / 4] {
        let e = read_err(&write(dir.path(), "cut.nii.gz", &gz[..cut]));
        assert!(e.contains("cut.nii.gz") && e.contains("truncated"), "{e}");
    }
}

#[test]
fn damaged_crc_in_the_first_of_two_members_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, data) = nifti_bytes(dir.path());
    let (a, b) = (gzip(&bytes[..40_000]), gzip(&bytes[40_000..]));
    let good: Vec<u8> = a.iter().chain(&b).copied().collect();
    let p = write(dir.path(), "two.nii.gz", &good);
    let img = read_nifti(&p).unwrap();
    assert_eq!(img.data.as_slice().unwrap(), data.as_slice().unwrap());
    let mut bad = good.clone();
    bad[a.len() - 7] ^= 0x80;
    let e = read_err(&write(dir.path(), "two_bad.nii.gz", &bad));
    assert!(e.contains("corrupt gzip"), "{e}");
}

/// The header-and-image pair reads every member of a gzipped `.img.gz` too (the data used to
/// be read only up to the announced size, never reaching the trailer).
#[test]
fn damaged_crc_of_a_gzipped_img_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _) = nifti_bytes(dir.path());
    let mut hdr = bytes[..348].to_vec();
    hdr[344..348].copy_from_slice(b"ni1\0");
    hdr[108..112].copy_from_slice(&0f32.to_le_bytes());
    write(dir.path(), "pair.hdr", &hdr);
    let mut img = gzip(&bytes[352..]);
    let n = img.len();
    img[n - 6] ^= 0x04;
    write(dir.path(), "pair.img.gz", &img);
    let e = read_err(&dir.path().join("pair.hdr"));
    assert!(e.contains("pair.img.gz"), "{e}");
}

#[test]
fn corrupt_dim0_is_reported_as_stored_not_byte_swapped() {
    let dir = tempfile::tempdir().unwrap();
    let (mut bytes, _) = nifti_bytes(dir.path());
    bytes[40..42].copy_from_slice(&9i16.to_le_bytes());
    let e = read_err(&write(dir.path(), "dim0.nii", &bytes));
    assert!(e.contains("dim[0] = 9 "), "{e}");
    assert!(!e.contains("2304"), "{e}");
}

/// A header with only a qform (sform_code 0) whose pixdim[1] is 0.
fn qform_only_zero_pixdim(bytes: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[254..256].copy_from_slice(&0i16.to_le_bytes()); // sform_code
    b[80..84].copy_from_slice(&0f32.to_le_bytes()); // pixdim[1]
    b
}

#[test]
fn zero_pixdim_with_qform_only_gets_spacing_one_as_nibabel() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _) = nifti_bytes(dir.path());
    let p = write(dir.path(), "zero.nii", &qform_only_zero_pixdim(&bytes));
    let img = read_nifti(&p).unwrap();
    assert_eq!(
        img.header.pixdim[1..4],
        [1.0, 1.0, 2.0],
        "pixdim[1] = 0 -> 1.0"
    );
    assert_eq!(img.geometry().spacing, [1.0, 1.0, 2.0]);
    assert_eq!(read_header(&p).unwrap().pixdim[1], 1.0);
}

#[test]
fn all_zero_sform_falls_back_to_the_qform() {
    let dir = tempfile::tempdir().unwrap();
    let (mut bytes, _) = nifti_bytes(dir.path());
    let before = {
        let mut b = bytes.clone();
        b[254..256].copy_from_slice(&0i16.to_le_bytes());
        read_nifti(&write(dir.path(), "qform.nii", &b))
            .unwrap()
            .geometry()
    };
    for v in bytes[280..328].iter_mut() {
        *v = 0;
    }
    let p = write(dir.path(), "zero_sform.nii", &bytes);
    let img = read_nifti(&p).unwrap();
    assert_eq!(img.header.sform_code, 0, "the singular sform is not used");
    let g = img.geometry();
    assert!(g.difference(&before, 1e-9).is_none(), "{g:?} vs {before:?}");
    assert!(g.spacing.iter().all(|&s| s > 0.0), "{g:?}");
}

/// A prediction written with a 2D file's header (dim[0] = 2, shape (x, y)) stays 2D, so that
/// it matches its own ground truth; it used to come back as (x, y, 1).
#[test]
fn output_with_a_2d_reference_keeps_two_dimensions() {
    let dir = tempfile::tempdir().unwrap();
    let v = Volume::new(
        Array3::from_shape_fn((1, 6, 5), |(_, j, i)| (i + j) as u8),
        Geometry::with_spacing([0.5, 0.7, 1.0]),
    );
    let p3 = dir.path().join("flat.nii");
    write_volume(&p3, &v, &WriteOptions::default()).unwrap();
    let mut b = std::fs::read(&p3).unwrap();
    b[40..42].copy_from_slice(&2i16.to_le_bytes());
    let p2 = write(dir.path(), "two_d.nii", &b);
    let reference = read_header(&p2).unwrap();
    assert_eq!(reference.shape(), vec![5, 6]);
    let out = dir.path().join("pred.nii.gz");
    write_volume(&out, &v, &WriteOptions::with_reference(reference)).unwrap();
    let h = read_header(&out).unwrap();
    assert_eq!((h.dim[0], h.shape()), (2, vec![5, 6]));
}
