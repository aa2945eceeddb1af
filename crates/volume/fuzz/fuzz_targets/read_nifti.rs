//! Any byte string, read as a NIfTI file (plain or gzip), must give data or an error: never a
//! panic, never an out-of-memory abort. The same bytes gzipped in two members, with one byte
//! of a member's CRC-32 or ISIZE trailer damaged, must always be an error (the reader checks
//! every member's trailer).
#![no_main]

use flate2::{Compression, write::GzEncoder};
use libfuzzer_sys::fuzz_target;
use std::io::Write;

fn gzip(part: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    let _ = e.write_all(part);
    e.finish().unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("medseg-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("input.nii");
    if std::fs::write(&path, data).is_ok() {
        let _ = medseg_volume::read_nifti(&path);
        let _ = medseg_volume::read_header(&path);
    }
    // Two members; the first input byte picks the trailer byte to damage (0..8 of either).
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let cut = rest.len() / 2;
    let (a, b) = (gzip(&rest[..cut]), gzip(&rest[cut..]));
    let mut stream: Vec<u8> = a.iter().chain(&b).copied().collect();
    let member_end = if pick & 0x80 == 0 { a.len() } else { stream.len() };
    let at = member_end - 8 + (pick as usize % 8);
    stream[at] ^= 1 + (pick >> 3 & 0x0f);
    let gz_path = dir.join("input.nii.gz");
    if std::fs::write(&gz_path, &stream).is_ok() {
        assert!(
            medseg_volume::read_nifti(&gz_path).is_err(),
            "a gzip member with a damaged trailer was read as data"
        );
    }
});
