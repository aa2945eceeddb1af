//! 2D natural images (PNG, TIFF, BMP) as nnU-Net's `NaturalImage2DIO` reads them: one slice,
//! unit spacing, rows along j and columns along i, every stored channel kept (grey = 1, RGB = 3,
//! RGBA = 4) with its stored values (8-bit 0..255, 16-bit 0..65535; no rescaling).

use crate::raw::RawScalar;
use crate::{Geometry, MultiChannel, Volume, VolumeError, write_atomically};
use image::DynamicImage;
use ndarray::{Array3, Axis};
use std::path::Path;

/// Reads a natural image as `[channels, 1, rows, columns]` with unit spacing.
pub fn read_natural(path: &Path) -> Result<MultiChannel, VolumeError> {
    let img = image::open(path).map_err(|e| VolumeError::image(path, e))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let widen8 = |v: &[u8]| v.iter().map(|&x| f32::from(x)).collect::<Vec<f32>>();
    let widen16 = |v: &[u16]| v.iter().map(|&x| f32::from(x)).collect::<Vec<f32>>();
    let (channels, values) = match &img {
        DynamicImage::ImageLuma8(b) => (1, widen8(b.as_raw())),
        DynamicImage::ImageLumaA8(b) => (2, widen8(b.as_raw())),
        DynamicImage::ImageRgb8(b) => (3, widen8(b.as_raw())),
        DynamicImage::ImageRgba8(b) => (4, widen8(b.as_raw())),
        DynamicImage::ImageLuma16(b) => (1, widen16(b.as_raw())),
        DynamicImage::ImageLumaA16(b) => (2, widen16(b.as_raw())),
        DynamicImage::ImageRgb16(b) => (3, widen16(b.as_raw())),
        DynamicImage::ImageRgba16(b) => (4, widen16(b.as_raw())),
        DynamicImage::ImageRgb32F(b) => (3, b.as_raw().clone()),
        DynamicImage::ImageRgba32F(b) => (4, b.as_raw().clone()),
        other => {
            return Err(VolumeError::unsupported(
                path,
                format!("pixel type {:?} is not supported", other.color()),
            ));
        }
    };
    let hwc = Array3::from_shape_vec((h, w, channels), values)
        .map_err(|e| VolumeError::image(path, e))?;
    let data = hwc
        .permuted_axes([2, 0, 1])
        .insert_axis(Axis(1))
        .as_standard_layout()
        .into_owned();
    Ok(MultiChannel {
        data,
        geometry: Geometry::default(),
    })
}

/// Reads a one-channel natural image as a single-slice volume (a label map, or a grey image).
pub fn read_natural_volume(path: &Path) -> Result<Volume<f32>, VolumeError> {
    let mc = read_natural(path)?;
    if mc.num_channels() != 1 {
        return Err(VolumeError::unsupported(
            path,
            format!(
                "has {} colour channels where one grey channel is expected (a label map, or one channel of a case)",
                mc.num_channels()
            ),
        ));
    }
    Ok(mc.channel(0))
}

/// Writes a single-slice volume of whole numbers as a grey PNG (8-bit when every value fits
/// 0..255, else 16-bit); other values are refused (write NIfTI for them).
pub fn write_png<T: RawScalar>(path: &Path, v: &Volume<T>) -> Result<(), VolumeError> {
    let [ni, nj, nk] = v.shape_ijk();
    if !path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"))
    {
        return Err(VolumeError::unsupported(
            path,
            "medseg writes 2D images as .png",
        ));
    }
    if nk != 1 {
        return Err(VolumeError::unsupported(
            path,
            format!("a PNG holds one slice; this volume has {nk}"),
        ));
    }
    let values: Vec<f64> = v.data.iter().map(|x| x.to_f64()).collect();
    if let Some(bad) = values
        .iter()
        .find(|x| !(0.0..=65535.0).contains(*x) || x.fract() != 0.0)
    {
        return Err(VolumeError::unsupported(
            path,
            format!("holds {bad}: a PNG stores whole numbers 0..65535; write .nii.gz instead"),
        ));
    }
    let (w, h) = (ni as u32, nj as u32);
    let img = if values.iter().all(|&x| x <= 255.0) {
        let buf = image::GrayImage::from_raw(w, h, values.iter().map(|&x| x as u8).collect());
        buf.map(DynamicImage::ImageLuma8)
    } else {
        let buf = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_raw(
            w,
            h,
            values.iter().map(|&x| x as u16).collect(),
        );
        buf.map(DynamicImage::ImageLuma16)
    }
    .ok_or_else(|| VolumeError::format(path, "image buffer size mismatch"))?;
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| VolumeError::image(path, e))?;
    write_atomically(path, |w| std::io::Write::write_all(w, &bytes))
}
