//! MetaImage (`.mha` with the data attached, `.mhd` + a raw file), read and write, as ITK's
//! MetaImageIO: world space is LPS (converted to medseg's RAS by flipping x and y),
//! `TransformMatrix` lists each voxel axis' direction in turn (row `a` = the direction of axis
//! `a`), `Offset` is the world position of voxel (0, 0, 0). `CompressedData = True` is zlib.

use crate::DataType;
use crate::raw::{self, Codec, RawScalar};
use crate::{Geometry, Volume, VolumeError, write_atomically};
use ndarray::Array3;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

/// Longest header medseg reads (a MetaImage header is a few hundred bytes).
const MAX_HEADER_BYTES: usize = 1 << 20;

/// Reads a 2D or 3D scalar MetaImage as f32 (2D: one slice, k extent 1).
pub fn read_metaimage(path: &Path) -> Result<Volume<f32>, VolumeError> {
    let file = std::fs::File::open(path).map_err(|e| VolumeError::io(path, e))?;
    let mut r = BufReader::new(file);
    let fields = read_fields(path, &mut r)?;
    let get = |k: &str| fields.get(&k.to_ascii_lowercase()).map(String::as_str);
    let ndims: usize = parse_one(path, "NDims", get("NDims"))?;
    if !(2..=3).contains(&ndims) {
        return Err(VolumeError::unsupported(
            path,
            format!("NDims = {ndims}; medseg reads 2D and 3D images"),
        ));
    }
    if let Some(c) = get("ElementNumberOfChannels")
        && c.trim() != "1"
    {
        return Err(VolumeError::unsupported(
            path,
            format!(
                "ElementNumberOfChannels = {c}: vector images are not supported; store one channel per file"
            ),
        ));
    }
    let dims: Vec<usize> = parse_list(path, "DimSize", get("DimSize"), ndims)?;
    let spacing: Vec<f64> = match get("ElementSpacing").or(get("ElementSize")) {
        Some(v) => parse_list(path, "ElementSpacing", Some(v), ndims)?,
        None => vec![1.0; ndims],
    };
    let offset: Vec<f64> = match get("Offset").or(get("Origin")).or(get("Position")) {
        Some(v) => parse_list(path, "Offset", Some(v), ndims)?,
        None => vec![0.0; ndims],
    };
    let matrix: Vec<f64> = match get("TransformMatrix")
        .or(get("Rotation"))
        .or(get("Orientation"))
    {
        Some(v) => parse_list(path, "TransformMatrix", Some(v), ndims * ndims)?,
        None => (0..ndims * ndims)
            .map(|i| f64::from(u8::from(i % (ndims + 1) == 0)))
            .collect(),
    };
    let element = element_type(path, get("ElementType"))?;
    let big_endian = get("BinaryDataByteOrderMSB")
        .or(get("ElementByteOrderMSB"))
        .is_some_and(is_true);
    let compressed = get("CompressedData").is_some_and(is_true);
    if get("BinaryData").is_some_and(|v| !is_true(v)) {
        return Err(VolumeError::unsupported(
            path,
            "BinaryData = False (ASCII voxels) is not supported",
        ));
    }
    let data_file = get("ElementDataFile").ok_or_else(|| {
        VolumeError::format(path, "no ElementDataFile line: not a MetaImage header")
    })?;
    let expected = raw::byte_count(path, &dims, element)?;
    let codec = if compressed { Codec::Zlib } else { Codec::Raw };
    let bytes = if data_file.eq_ignore_ascii_case("LOCAL") {
        raw::read_payload(path, r, expected, codec)?
    } else if data_file.contains(' ') || data_file.eq_ignore_ascii_case("LIST") {
        return Err(VolumeError::unsupported(
            path,
            format!("ElementDataFile = {data_file}: lists of slice files are not supported"),
        ));
    } else {
        let raw_path = path.parent().unwrap_or(Path::new(".")).join(data_file);
        let f = std::fs::File::open(&raw_path).map_err(|e| {
            VolumeError::format(path, format!("ElementDataFile {}: {e}", raw_path.display()))
        })?;
        let mut f = BufReader::new(f);
        let mut header_size: i64 =
            get("HeaderSize").map_or(Ok(0), |v| parse_one(path, "HeaderSize", Some(v)))?;
        if header_size == -1 {
            // -1: the voxels are the last bytes of the file
            let len = std::fs::metadata(&raw_path)
                .map_err(|e| VolumeError::io(&raw_path, e))?
                .len();
            header_size = len.saturating_sub(expected as u64) as i64;
        }
        if header_size > 0 {
            std::io::copy(&mut (&mut f).take(header_size as u64), &mut std::io::sink())
                .map_err(|e| VolumeError::io(&raw_path, e))?;
        }
        raw::read_payload(&raw_path, f, expected, codec)?
    };
    let values = raw::decode_f32(&bytes, element, big_endian);
    let (ni, nj, nk) = (dims[0], dims[1], if ndims == 3 { dims[2] } else { 1 });
    let data = Array3::from_shape_vec((nk, nj, ni), values)
        .map_err(|e| VolumeError::decode(path, "unexpected data size", e))?;
    Ok(Volume::new(
        data,
        geometry_from_lps(ndims, &spacing, &offset, &matrix),
    ))
}

/// Writes `v` as MetaImage: `.mha` with the data attached (zlib-compressed), or `.mhd` with
/// a raw file beside it (`NAME.raw`, uncompressed). Always 3D (a 2D volume keeps k = 1).
pub fn write_metaimage<T: RawScalar>(path: &Path, v: &Volume<T>) -> Result<(), VolumeError> {
    let g = &v.geometry;
    let [ni, nj, nk] = v.shape_ijk();
    let origin = raw::flip_xy(g.origin);
    // TransformMatrix row a = LPS direction of axis a = column a of diag(-1,-1,1) * direction
    let mut matrix = Vec::with_capacity(9);
    for a in 0..3 {
        let col = [g.direction[0][a], g.direction[1][a], g.direction[2][a]];
        matrix.extend(raw::flip_xy(col));
    }
    let attached = !path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("mhd"));
    let payload = raw::encode(&v.data);
    let body = if attached {
        zlib(&payload).map_err(|e| VolumeError::io(path, e))?
    } else {
        payload
    };
    let join = |x: &[f64]| {
        x.iter()
            .map(|v| format!("{v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let raw_name = path.with_extension("raw");
    let mut header = String::new();
    header += "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n";
    header += &format!(
        "CompressedData = {}\n",
        if attached { "True" } else { "False" }
    );
    if attached {
        header += &format!("CompressedDataSize = {}\n", body.len());
    }
    header += &format!(
        "TransformMatrix = {}\nOffset = {}\nCenterOfRotation = 0 0 0\n",
        join(&matrix),
        join(&origin)
    );
    header += &format!(
        "ElementSpacing = {}\nDimSize = {ni} {nj} {nk}\n",
        join(&g.spacing)
    );
    header += &format!("ElementType = {}\n", met_name(T::ELEMENT.element()));
    let file_name = raw_name
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    header += &format!(
        "ElementDataFile = {}\n",
        if attached {
            "LOCAL"
        } else {
            file_name.as_str()
        }
    );
    if !attached {
        write_atomically(&raw_name, |w| w.write_all(&body))?;
        return write_atomically(path, |w| w.write_all(header.as_bytes()));
    }
    write_atomically(path, |w| {
        w.write_all(header.as_bytes())?;
        w.write_all(&body)
    })
}

fn zlib(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(bytes)?;
    e.finish()
}

/// `Key = Value` lines up to and including `ElementDataFile` (keys lower-cased).
fn read_fields(path: &Path, r: &mut impl BufRead) -> Result<HashMap<String, String>, VolumeError> {
    let mut fields = HashMap::new();
    let mut total = 0;
    loop {
        let mut line = Vec::new();
        let n = r
            .by_ref()
            .take(4096)
            .read_until(b'\n', &mut line)
            .map_err(|e| VolumeError::io(path, e))?;
        total += n;
        if n == 0 || total > MAX_HEADER_BYTES {
            return Err(VolumeError::format(
                path,
                "no ElementDataFile line: not a MetaImage file (.mha/.mhd), or its header is cut short",
            ));
        }
        let line = String::from_utf8_lossy(&line);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(VolumeError::format(
                path,
                format!("header line {line:?} is not `Key = Value`: not a MetaImage file"),
            ));
        };
        let key = k.trim().to_ascii_lowercase();
        let done = key == "elementdatafile";
        fields.insert(key, v.trim().to_string());
        if done {
            return Ok(fields);
        }
    }
}

fn is_true(v: &str) -> bool {
    v.trim().eq_ignore_ascii_case("true") || v.trim() == "1"
}

fn parse_one<T: std::str::FromStr>(
    path: &Path,
    key: &str,
    v: Option<&str>,
) -> Result<T, VolumeError> {
    let v = v.ok_or_else(|| VolumeError::format(path, format!("no {key} in the header")))?;
    v.trim()
        .parse()
        .map_err(|_| VolumeError::format(path, format!("{key} = {v} is not a number")))
}

fn parse_list<T: std::str::FromStr>(
    path: &Path,
    key: &str,
    v: Option<&str>,
    n: usize,
) -> Result<Vec<T>, VolumeError> {
    let v = v.ok_or_else(|| VolumeError::format(path, format!("no {key} in the header")))?;
    let items: Vec<T> = v
        .split_whitespace()
        .map(|x| {
            x.parse().map_err(|_| {
                VolumeError::format(path, format!("{key} = {v}: {x:?} is not a number"))
            })
        })
        .collect::<Result<_, _>>()?;
    if items.len() != n {
        return Err(VolumeError::format(
            path,
            format!("{key} = {v} has {} values, expected {n}", items.len()),
        ));
    }
    Ok(items)
}

fn element_type(path: &Path, v: Option<&str>) -> Result<DataType, VolumeError> {
    let v = v.ok_or_else(|| VolumeError::format(path, "no ElementType in the header"))?;
    Ok(match v.trim() {
        "MET_CHAR" => DataType::I8,
        "MET_UCHAR" => DataType::U8,
        "MET_SHORT" => DataType::I16,
        "MET_USHORT" => DataType::U16,
        "MET_INT" | "MET_LONG" => DataType::I32,
        "MET_UINT" | "MET_ULONG" => DataType::U32,
        "MET_LONG_LONG" => DataType::I64,
        "MET_ULONG_LONG" => DataType::U64,
        "MET_FLOAT" => DataType::F32,
        "MET_DOUBLE" => DataType::F64,
        other => {
            return Err(VolumeError::unsupported(
                path,
                format!(
                    "ElementType {other} is not supported (scalar MET_CHAR ... MET_DOUBLE only)"
                ),
            ));
        }
    })
}

fn met_name(e: DataType) -> &'static str {
    match e {
        DataType::I8 => "MET_CHAR",
        DataType::U8 => "MET_UCHAR",
        DataType::I16 => "MET_SHORT",
        DataType::U16 => "MET_USHORT",
        DataType::I32 => "MET_INT",
        DataType::U32 => "MET_UINT",
        DataType::I64 => "MET_LONG_LONG",
        DataType::U64 => "MET_ULONG_LONG",
        DataType::F32 => "MET_FLOAT",
        DataType::F64 => "MET_DOUBLE",
    }
}

/// medseg's RAS geometry from MetaImage's LPS fields (2D: a unit third axis along z).
fn geometry_from_lps(ndims: usize, spacing: &[f64], offset: &[f64], matrix: &[f64]) -> Geometry {
    let mut g = Geometry::with_spacing([1.0; 3]);
    let mut o = [0.0; 3];
    let mut dir = [[0.0; 3]; 3];
    dir[2][2] = 1.0;
    for a in 0..ndims {
        g.spacing[a] = spacing[a].abs();
        o[a] = offset[a];
        for r in 0..ndims {
            dir[r][a] = matrix[a * ndims + r];
        }
    }
    g.origin = raw::flip_xy(o);
    for (a, col) in (0..3).map(|a| (a, raw::flip_xy([dir[0][a], dir[1][a], dir[2][a]]))) {
        for (row, value) in g.direction.iter_mut().zip(col) {
            row[a] = value;
        }
    }
    g
}
