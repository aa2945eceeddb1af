//! Any byte string after a DICOM preamble and `DICM` magic, read as a one-file DICOM series and
//! as a folder holding it beside a valid slice, must give data or an error: never a panic,
//! never an out-of-memory abort (the reader checks Rows x Columns x frames against the file's
//! size before allocating).
//!
//! Seed corpus: the files of tests/fixtures/dicom with their first 132 bytes removed, e.g.
//! `for f in ../../tests/fixtures/dicom/*/*.dcm; do tail -c +133 $f > corpus/read_dicom/$(basename $f); done`.
//! Note: the dicom-rs parser reserves (never touches) an element's announced length before
//! reading it, so run with `-rss_limit_mb=4096 -malloc_limit_mb=8192` to keep such
//! reservations from being reported as leaks of memory they never use.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("medseg-fuzz-dicom-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(&dir);
    let mut bytes = vec![0u8; 128];
    bytes.extend_from_slice(b"DICM");
    bytes.extend_from_slice(data);
    let path = dir.join("input.dcm");
    if std::fs::write(&path, &bytes).is_ok() {
        let _ = medseg_volume::read_dicom_series(&path);
        let _ = medseg_volume::read_dicom_series(&dir);
        let _ = medseg_volume::list_dicom_series(&dir);
    }
});
