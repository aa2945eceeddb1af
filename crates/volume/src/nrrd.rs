//! NRRD (`.nrrd` with the data attached, `.nhdr` + a data file; raw or gzip), read and write.
//! The header's `space` says the world frame (`left-posterior-superior` as 3D Slicer writes it,
//! `right-anterior-superior`, `left-anterior-superior`), `space directions` give each axis'
//! step in world mm (spacing = its length), `space origin` the centre of voxel (0, 0, 0); all
//! converted to medseg's RAS. Data are stored with the first axis fastest (i, then j, then k).

use crate::DataType;
use crate::raw::{self, Codec, RawScalar};
use crate::{Geometry, Volume, VolumeError, write_atomically};
use ndarray::Array3;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

const MAX_HEADER_BYTES: usize = 1 << 20;

/// Reads a 2D or 3D scalar NRRD as f32 (2D: one slice).
pub fn read_nrrd(path: &Path) -> Result<Volume<f32>, VolumeError> {
    let file = std::fs::File::open(path).map_err(|e| VolumeError::io(path, e))?;
    let mut r = BufReader::new(file);
    let fields = read_fields(path, &mut r)?;
    let get = |k: &str| fields.get(k).map(String::as_str);
    let dim: usize = get("dimension")
        .ok_or_else(|| VolumeError::format(path, "no dimension field"))?
        .trim()
        .parse()
        .map_err(|_| VolumeError::format(path, "dimension is not a number"))?;
    if !(2..=3).contains(&dim) {
        return Err(VolumeError::unsupported(
            path,
            format!("dimension {dim}: medseg reads scalar 2D and 3D images (one channel per file)"),
        ));
    }
    let sizes: Vec<usize> = numbers(path, "sizes", get("sizes"))?;
    if sizes.len() != dim {
        return Err(VolumeError::format(
            path,
            format!("sizes has {} entries, dimension is {dim}", sizes.len()),
        ));
    }
    let element = element_type(path, get("type"))?;
    let codec = match get("encoding").map(str::trim) {
        Some("raw") => Codec::Raw,
        Some("gzip") | Some("gz") => Codec::Gzip,
        Some(other) => {
            return Err(VolumeError::unsupported(
                path,
                format!("encoding {other} is not supported (raw, gzip)"),
            ));
        }
        None => return Err(VolumeError::format(path, "no encoding field")),
    };
    let big_endian = get("endian").is_some_and(|e| e.trim() == "big") && element.size() > 1;
    let geometry = geometry(path, &fields, dim)?;
    let expected = raw::byte_count(path, &sizes, element)?;
    let bytes = match get("data file").or(get("datafile")) {
        None => raw::read_payload(path, r, expected, codec)?,
        Some(f) if f.contains(' ') || f.starts_with("LIST") => {
            return Err(VolumeError::unsupported(
                path,
                format!("data file {f}: multi-file data are not supported"),
            ));
        }
        Some(f) => {
            let data_path = path.parent().unwrap_or(Path::new(".")).join(f.trim());
            let file = std::fs::File::open(&data_path).map_err(|e| {
                VolumeError::format(path, format!("data file {}: {e}", data_path.display()))
            })?;
            raw::read_payload(&data_path, BufReader::new(file), expected, codec)?
        }
    };
    let values = raw::decode_f32(&bytes, element, big_endian);
    let (ni, nj, nk) = (sizes[0], sizes[1], if dim == 3 { sizes[2] } else { 1 });
    let data = Array3::from_shape_vec((nk, nj, ni), values)
        .map_err(|e| VolumeError::decode(path, "unexpected data size", e))?;
    Ok(Volume::new(data, geometry))
}

/// Writes `v` as NRRD in LPS (as 3D Slicer does): `.nrrd` gzip-compressed with the data
/// attached, or `.nhdr` with `NAME.raw.gz` beside it.
pub fn write_nrrd<T: RawScalar>(path: &Path, v: &Volume<T>) -> Result<(), VolumeError> {
    let g = &v.geometry;
    let [ni, nj, nk] = v.shape_ijk();
    let vec = |x: [f64; 3]| format!("({},{},{})", x[0], x[1], x[2]);
    let dirs: Vec<String> = (0..3)
        .map(|a| {
            vec(raw::flip_xy(
                [0, 1, 2].map(|r| g.direction[r][a] * g.spacing[a]),
            ))
        })
        .collect();
    let detached = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("nhdr"));
    let data_name = path.with_extension("raw.gz");
    let mut h = String::from("NRRD0004\n# written by medseg\n");
    h += &format!(
        "type: {}\ndimension: 3\nspace: left-posterior-superior\n",
        type_name(T::ELEMENT.element())
    );
    h += &format!(
        "sizes: {ni} {nj} {nk}\nspace directions: {}\n",
        dirs.join(" ")
    );
    h += "kinds: domain domain domain\nendian: little\nencoding: gzip\n";
    h += &format!("space origin: {}\n", vec(raw::flip_xy(g.origin)));
    let body = gzip(&raw::encode(&v.data)).map_err(|e| VolumeError::io(path, e))?;
    if detached {
        let name = data_name
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        h += &format!("data file: {name}\n");
        write_atomically(&data_name, |w| w.write_all(&body))?;
        return write_atomically(path, |w| w.write_all(h.as_bytes()));
    }
    h += "\n";
    write_atomically(path, |w| {
        w.write_all(h.as_bytes())?;
        w.write_all(&body)
    })
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(bytes)?;
    e.finish()
}

/// The magic line, then `field: value` lines up to the blank line (or the end of a
/// detached header); comments and `key:=value` pairs are skipped. Fields lower-cased.
fn read_fields(path: &Path, r: &mut impl BufRead) -> Result<HashMap<String, String>, VolumeError> {
    let mut fields = HashMap::new();
    let mut total = 0;
    let mut first = true;
    loop {
        let mut line = Vec::new();
        let n = r
            .by_ref()
            .take(65536)
            .read_until(b'\n', &mut line)
            .map_err(|e| VolumeError::io(path, e))?;
        total += n;
        if total > MAX_HEADER_BYTES {
            return Err(VolumeError::format(
                path,
                "header longer than 1 MiB: not a NRRD file",
            ));
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if first {
            if !text.starts_with("NRRD000") {
                return Err(VolumeError::format(
                    path,
                    "does not start with NRRD000X: not a NRRD file",
                ));
            }
            first = false;
            continue;
        }
        if n == 0 || text.is_empty() {
            return Ok(fields);
        }
        if text.starts_with('#') || text.contains(":=") {
            continue;
        }
        let Some((k, v)) = text.split_once(':') else {
            return Err(VolumeError::format(
                path,
                format!("header line {text:?} is not `field: value`"),
            ));
        };
        fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
}

fn numbers<T: std::str::FromStr>(
    path: &Path,
    key: &str,
    v: Option<&str>,
) -> Result<Vec<T>, VolumeError> {
    let v = v.ok_or_else(|| VolumeError::format(path, format!("no {key} field")))?;
    v.split_whitespace()
        .map(|x| {
            x.parse()
                .map_err(|_| VolumeError::format(path, format!("{key}: {x:?} is not a number")))
        })
        .collect()
}

fn element_type(path: &Path, v: Option<&str>) -> Result<DataType, VolumeError> {
    let v = v.ok_or_else(|| VolumeError::format(path, "no type field"))?;
    Ok(match v.trim() {
        "signed char" | "int8" | "int8_t" => DataType::I8,
        "uchar" | "unsigned char" | "uint8" | "uint8_t" => DataType::U8,
        "short" | "short int" | "signed short" | "signed short int" | "int16" | "int16_t" => {
            DataType::I16
        }
        "ushort" | "unsigned short" | "unsigned short int" | "uint16" | "uint16_t" => DataType::U16,
        "int" | "signed int" | "int32" | "int32_t" => DataType::I32,
        "uint" | "unsigned int" | "uint32" | "uint32_t" => DataType::U32,
        "longlong"
        | "long long"
        | "long long int"
        | "signed long long"
        | "signed long long int"
        | "int64"
        | "int64_t" => DataType::I64,
        "ulonglong" | "unsigned long long" | "unsigned long long int" | "uint64" | "uint64_t" => {
            DataType::U64
        }
        "float" => DataType::F32,
        "double" => DataType::F64,
        other => {
            return Err(VolumeError::unsupported(
                path,
                format!("type {other} is not supported"),
            ));
        }
    })
}

fn type_name(e: DataType) -> &'static str {
    match e {
        DataType::I8 => "int8",
        DataType::U8 => "uint8",
        DataType::I16 => "int16",
        DataType::U16 => "uint16",
        DataType::I32 => "int32",
        DataType::U32 => "uint32",
        DataType::I64 => "int64",
        DataType::U64 => "uint64",
        DataType::F32 => "float",
        DataType::F64 => "double",
    }
}

/// The `(...)` groups of a `space directions` value, in order (`none` entries skipped).
fn vectors_in(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices() {
        match c {
            '(' => start = Some(i),
            ')' => {
                if let Some(b) = start.take() {
                    out.push(&s[b..=i]);
                }
            }
            _ => {}
        }
    }
    out
}

/// `(a,b,c)` -> `[a, b, c]`.
fn vector(path: &Path, s: &str) -> Result<Vec<f64>, VolumeError> {
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|x| x.strip_suffix(')'))
        .ok_or_else(|| VolumeError::format(path, format!("{s:?} is not a vector (x,y,z)")))?;
    inner
        .split(',')
        .map(|x| {
            x.trim()
                .parse()
                .map_err(|_| VolumeError::format(path, format!("{s:?}: {x:?} is not a number")))
        })
        .collect()
}

/// RAS geometry from `space`, `space directions`, `space origin` (or `spacings`).
fn geometry(path: &Path, f: &HashMap<String, String>, dim: usize) -> Result<Geometry, VolumeError> {
    let flip: [f64; 3] = match f.get("space").map(|s| s.trim().to_ascii_lowercase()) {
        None => [1.0, 1.0, 1.0],
        Some(s) => match s.as_str() {
            "right-anterior-superior" | "ras" | "scanner-xyz" | "3d-right-handed" => {
                [1.0, 1.0, 1.0]
            }
            "left-posterior-superior" | "lps" => [-1.0, -1.0, 1.0],
            "left-anterior-superior" | "las" => [-1.0, 1.0, 1.0],
            other => {
                return Err(VolumeError::unsupported(
                    path,
                    format!("space {other} is not supported (RAS, LPS, LAS)"),
                ));
            }
        },
    };
    let mut g = Geometry::with_spacing([1.0; 3]);
    if let Some(d) = f.get("space directions") {
        let parts = vectors_in(d);
        if parts.len() != dim {
            return Err(VolumeError::format(
                path,
                format!("space directions {d:?} needs {dim} vectors"),
            ));
        }
        for (a, p) in parts.iter().enumerate() {
            let v = vector(path, p)?;
            let v: [f64; 3] = std::array::from_fn(|r| v.get(r).copied().unwrap_or(0.0) * flip[r]);
            let norm = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
            if !(norm > 0.0 && norm.is_finite()) {
                return Err(VolumeError::format(
                    path,
                    format!("space direction {p} of axis {a} has no length"),
                ));
            }
            g.spacing[a] = norm;
            for (row, value) in g.direction.iter_mut().zip(v) {
                row[a] = value / norm;
            }
        }
    } else if let Some(s) = f.get("spacings") {
        let s: Vec<f64> = numbers(path, "spacings", Some(s.as_str()))?;
        for (a, v) in s.iter().take(dim).enumerate() {
            if v.is_finite() && *v != 0.0 {
                g.spacing[a] = v.abs();
            }
        }
    }
    if let Some(o) = f.get("space origin") {
        let o = vector(path, o)?;
        g.origin = std::array::from_fn(|r| o.get(r).copied().unwrap_or(0.0) * flip[r]);
    }
    Ok(g)
}
