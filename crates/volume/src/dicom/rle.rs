//! RLE Lossless decoding (DICOM PS3.5 Annex G).

use crate::VolumeError;
use std::path::Path;

/// RLE Lossless (PS3.5 Annex G), decoded here rather than by the codec crate so that a
/// corrupt fragment is an error, never a panic: a 64-byte header (segment count, 15 offsets),
/// then one PackBits segment per byte of a sample, most significant first. Returns `pixels`
/// little-endian samples of `bytes` bytes.
pub(super) fn decode_rle(
    path: &Path,
    fragment: &[u8],
    bytes: usize,
    pixels: usize,
) -> Result<Vec<u8>, VolumeError> {
    let bad = |why: String| VolumeError::format(path, format!("corrupt RLE pixel data: {why}"));
    let word = |at: usize| -> u32 {
        fragment
            .get(at..at + 4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if fragment.len() < 64 {
        return Err(bad(format!(
            "a fragment of {} bytes has no 64-byte header",
            fragment.len()
        )));
    }
    let segments = word(0) as usize;
    if segments != bytes {
        return Err(bad(format!(
            "{segments} segment(s) for samples of {bytes} byte(s) (one per byte expected)"
        )));
    }
    let mut out = vec![0u8; pixels * bytes];
    for s in 0..segments {
        let start = word(4 + 4 * s) as usize;
        let end = if s + 1 < segments {
            word(8 + 4 * s) as usize
        } else {
            fragment.len()
        };
        if start < 64 || start > end || end > fragment.len() {
            return Err(bad(format!(
                "segment {} spans bytes {start}..{end} of {}",
                s + 1,
                fragment.len()
            )));
        }
        let segment = &fragment[start..end];
        let byte = bytes - 1 - s; // segment 0 holds the most significant byte
        let (mut i, mut p) = (0usize, 0usize);
        while p < pixels && i < segment.len() {
            let n = segment[i] as i8;
            i += 1;
            if n >= 0 {
                let count = n as usize + 1;
                let Some(literal) = segment.get(i..i + count) else {
                    break;
                };
                for &b in literal.iter().take(pixels - p) {
                    out[p * bytes + byte] = b;
                    p += 1;
                }
                i += count;
            } else if n != -128 {
                let Some(&b) = segment.get(i) else {
                    break;
                };
                i += 1;
                for _ in 0..(1 - isize::from(n)).min((pixels - p) as isize) {
                    out[p * bytes + byte] = b;
                    p += 1;
                }
            }
        }
        if p < pixels {
            return Err(bad(format!(
                "segment {} decodes to {p} of the {pixels} pixels of a frame (truncated?)",
                s + 1
            )));
        }
    }
    Ok(out)
}
