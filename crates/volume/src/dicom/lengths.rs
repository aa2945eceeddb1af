//! The element-length walk that runs before dicom-rs parses a file: dicom-rs sizes (and
//! zeroes) a buffer from each element's announced length, so a damaged length would allocate
//! without bound.

use crate::VolumeError;
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use std::io::Read;
use std::path::Path;

/// Walks the data elements of a Part 10 file (meta group, then the data set in its transfer
/// syntax, into sequences and pixel fragments) and checks that every defined length fits in
/// the bytes left in the file. The parser sizes (and zeroes) a buffer from each length before
/// reading it, so an unchecked length of 4 GiB in a 1 KiB file would cost 4 GiB; this keeps
/// every buffer within the file's size. Deflated data sets are not walked (their lengths
/// refer to the inflated stream).
pub(super) fn check_lengths(path: &Path, file_len: u64) -> Result<(), VolumeError> {
    use dicom_core::VR;
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
    use std::io::{BufReader, Seek, SeekFrom};
    const UNDEFINED: u32 = u32::MAX;
    let io = |e| VolumeError::io(path, e);
    let mut r = BufReader::with_capacity(16 << 10, std::fs::File::open(path).map_err(io)?);
    r.seek(SeekFrom::Start(132)).map_err(io)?;
    let mut pos: u64 = 132;
    let (mut meta, mut explicit, mut big) = (true, true, false);
    let mut fragments = false; // inside an encapsulated Pixel Data's items
    let mut ts = Vec::new();
    let mut buf = [0u8; 8];
    loop {
        // a short read at the end is the parser's to report
        if r.read_exact(&mut buf[..4]).is_err() {
            return Ok(());
        }
        pos += 4;
        if meta && u16::from_le_bytes([buf[0], buf[1]]) != 0x0002 {
            meta = false;
            let uid = String::from_utf8_lossy(&ts);
            let uid = uid.trim_end_matches(['\0', ' ']);
            if uid == "1.2.840.10008.1.2.1.99" {
                return Ok(()); // deflated
            }
            explicit = uid != "1.2.840.10008.1.2";
            big = uid == "1.2.840.10008.1.2.2";
        }
        let word = |b: &[u8]| {
            if big {
                u16::from_be_bytes([b[0], b[1]])
            } else {
                u16::from_le_bytes([b[0], b[1]])
            }
        };
        let dword = |b: &[u8]| {
            if big {
                u32::from_be_bytes([b[0], b[1], b[2], b[3]])
            } else {
                u32::from_le_bytes([b[0], b[1], b[2], b[3]])
            }
        };
        let tag = Tag(word(&buf[0..2]), word(&buf[2..4]));
        let read = |n: usize, r: &mut BufReader<std::fs::File>| -> Option<[u8; 8]> {
            let mut b = [0u8; 8];
            r.read_exact(&mut b[..n]).ok()?;
            Some(b)
        };
        let (len, sequence) = if tag.0 == 0xFFFE {
            // item / delimiters: a 4-byte length, never a VR
            let Some(b) = read(4, &mut r) else {
                return Ok(());
            };
            pos += 4;
            let len = dword(&b);
            if tag.1 == 0xE0DD {
                fragments = false;
            }
            // an item of a sequence is walked into; a pixel fragment is skipped
            (len, tag.1 == 0xE000 && !fragments)
        } else if explicit || meta {
            let Some(b) = read(4, &mut r) else {
                return Ok(());
            };
            pos += 4;
            // an unknown VR is read as UN (a 4-byte length), as the parser reads it
            let vr = VR::from_binary([b[0], b[1]]).unwrap_or(VR::UN);
            let long = matches!(
                vr,
                VR::OB
                    | VR::OD
                    | VR::OF
                    | VR::OL
                    | VR::OV
                    | VR::OW
                    | VR::SQ
                    | VR::UC
                    | VR::UN
                    | VR::UR
                    | VR::UT
                    | VR::SV
                    | VR::UV
            );
            if long {
                let Some(b) = read(4, &mut r) else {
                    return Ok(());
                };
                pos += 4;
                if vr == VR::UN && dword(&b) == UNDEFINED {
                    // a sequence of unknown VR: its items are implicit VR (PS3.5 6.2.2); the
                    // walk stops here rather than misread them
                    return Ok(());
                }
                (dword(&b), vr == VR::SQ)
            } else {
                (u32::from(word(&b[2..4])), false)
            }
        } else {
            let Some(b) = read(4, &mut r) else {
                return Ok(());
            };
            pos += 4;
            let sq = dicom_dictionary_std::StandardDataDictionary
                .by_tag(tag)
                .is_some_and(|e| e.vr() == VirtualVr::Exact(VR::SQ));
            (dword(&b), sq)
        };
        if len == UNDEFINED {
            if tag == tags::PIXEL_DATA {
                fragments = true;
            }
            continue; // a sequence, an item or encapsulated pixel data: walk into it
        }
        if pos + u64::from(len) > file_len {
            return Err(VolumeError::Truncated {
                path: path.to_path_buf(),
                expected: pos + u64::from(len),
                found: file_len,
            });
        }
        if sequence {
            continue; // walk into a defined-length sequence or item
        }
        if meta && tag == tags::TRANSFER_SYNTAX_UID && len <= 64 {
            let mut v = vec![0u8; len as usize];
            if r.read_exact(&mut v).is_err() {
                return Ok(());
            }
            ts = v;
        } else {
            r.seek_relative(i64::from(len)).map_err(io)?;
        }
        pos += u64::from(len);
    }
}
