//! Warnings about input files that medseg repairs on reading (as nibabel logs its header
//! fixes): printed to stderr once per file and message, because one file is read several
//! times in a run (integrity check, fingerprint, preprocessing) and one line is enough.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

static SEEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Prints `warning: FILE: message` unless this exact line was printed before.
pub fn warn_once(path: &Path, message: &str) {
    let line = format!("warning: {}: {message}", path.display());
    let first = SEEN
        .lock()
        .map(|mut seen| seen.insert(line.clone()))
        .unwrap_or(true);
    if first {
        eprintln!("{line}");
    }
}
