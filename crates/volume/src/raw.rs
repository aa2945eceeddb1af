//! Raw voxel buffers shared by the MetaImage and NRRD readers and writers: element types, byte
//! order, decompression with a size cap, and the checks that keep a hostile header from
//! allocating more than the file can hold.

use crate::{DataType, VolumeError};
use std::io::Read;
use std::path::Path;

/// Largest voxel buffer medseg will allocate (64 GiB), as for NIfTI.
const MAX_DATA_BYTES: u64 = 64 << 30;

/// Byte count of `dims` elements of `element`, refused before any allocation when it
/// overflows or exceeds the cap.
pub(crate) fn byte_count(
    path: &Path,
    dims: &[usize],
    element: DataType,
) -> Result<usize, VolumeError> {
    let n = dims
        .iter()
        .try_fold(element.size() as u64, |acc, &d| acc.checked_mul(d as u64))
        .filter(|&n| n <= MAX_DATA_BYTES)
        .ok_or_else(|| {
            VolumeError::format(
                path,
                format!("absurd dimensions {dims:?}: more than 64 GiB of voxels"),
            )
        })?;
    Ok(n as usize)
}

/// Reads exactly `expected` bytes from `r` (decompressed when `compressed`: zlib for
/// MetaImage, gzip for NRRD), never more than that plus one byte (a decompression bomb or a
/// header that lies about the size is an error, not an allocation).
pub(crate) fn read_payload(
    path: &Path,
    r: impl Read,
    expected: usize,
    codec: Codec,
) -> Result<Vec<u8>, VolumeError> {
    let mut out = match codec {
        Codec::Raw => read_capped(path, r, expected)?,
        Codec::Zlib => read_capped(path, flate2::read::ZlibDecoder::new(r), expected)?,
        Codec::Gzip => read_capped(path, flate2::read::MultiGzDecoder::new(r), expected)?,
    };
    if out.len() < expected {
        return Err(VolumeError::Truncated {
            path: path.to_path_buf(),
            expected: expected as u64,
            found: out.len() as u64,
        });
    }
    if out.len() > expected && codec != Codec::Raw {
        return Err(VolumeError::format(
            path,
            format!("the compressed data hold more than the {expected} bytes the header announces"),
        ));
    }
    out.truncate(expected);
    Ok(out)
}

/// At most `expected + 1` bytes of `reader`.
fn read_capped(path: &Path, reader: impl Read, expected: usize) -> Result<Vec<u8>, VolumeError> {
    let mut out = Vec::with_capacity(expected.min(1 << 30));
    reader
        .take(expected as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| VolumeError::decode(path, "cannot read the voxel data", e))?;
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    Raw,
    Zlib,
    Gzip,
}

/// Decodes `bytes` (elements of `element`, `big_endian` or not) into f32 values.
pub(crate) fn decode_f32(bytes: &[u8], element: DataType, big_endian: bool) -> Vec<f32> {
    let n = element.size();
    macro_rules! each {
        ($t:ty) => {
            bytes
                .chunks_exact(n)
                .map(|c| {
                    let a: [u8; std::mem::size_of::<$t>()] = c.try_into().expect("chunk size");
                    (if big_endian {
                        <$t>::from_be_bytes(a)
                    } else {
                        <$t>::from_le_bytes(a)
                    }) as f32
                })
                .collect()
        };
    }
    match element {
        DataType::I8 => bytes.iter().map(|&b| b as i8 as f32).collect(),
        DataType::U8 => bytes.iter().map(|&b| b as f32).collect(),
        DataType::I16 => each!(i16),
        DataType::U16 => each!(u16),
        DataType::I32 => each!(i32),
        DataType::U32 => each!(u32),
        DataType::I64 => each!(i64),
        DataType::U64 => each!(u64),
        DataType::F32 => each!(f32),
        DataType::F64 => each!(f64),
    }
}

/// DataType types medseg writes.
pub trait RawScalar: Copy + Send + Sync + 'static {
    const ELEMENT: RawElement;
    fn put_le(self, out: &mut Vec<u8>);
    fn to_f64(self) -> f64;
}

/// The element types medseg writes (what [`RawScalar`] types map to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawElement {
    U8,
    I16,
    U16,
    F32,
}

impl RawElement {
    pub(crate) fn element(self) -> DataType {
        match self {
            RawElement::U8 => DataType::U8,
            RawElement::I16 => DataType::I16,
            RawElement::U16 => DataType::U16,
            RawElement::F32 => DataType::F32,
        }
    }
}

macro_rules! raw_scalar {
    ($t:ty, $e:ident) => {
        impl RawScalar for $t {
            const ELEMENT: RawElement = RawElement::$e;
            fn put_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn to_f64(self) -> f64 {
                f64::from(self)
            }
        }
    };
}
raw_scalar!(u8, U8);
raw_scalar!(i16, I16);
raw_scalar!(u16, U16);
raw_scalar!(f32, F32);

/// Little-endian bytes of `data` in C order (`[k, j, i]`: i fastest, as both formats store it).
pub(crate) fn encode<T: RawScalar>(data: &ndarray::Array3<T>) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * T::ELEMENT.element().size());
    for &v in data.iter() {
        v.put_le(&mut out);
    }
    out
}

/// `(x, y, z)` in LPS <-> RAS: both flip the first two world axes.
pub(crate) fn flip_xy(v: [f64; 3]) -> [f64; 3] {
    [-v[0], -v[1], v[2]]
}
