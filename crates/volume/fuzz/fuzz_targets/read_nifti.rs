//! Any byte string, read as a NIfTI file (plain or gzip), must give data or an error: never a
//! panic, never an out-of-memory abort.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("medseg-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("input.nii");
    if std::fs::write(&path, data).is_ok() {
        let _ = medseg_volume::read_nifti(&path);
        let _ = medseg_volume::read_header(&path);
    }
});
