//! PNG slices: read 2D images or masks as volumes with one slice, and draw a slice of an image
//! with a label overlay (used by reports and the demo).

use crate::{Geometry, Volume, VolumeError};
use image::{ImageBuffer, Rgb, RgbImage};
use ndarray::{Array3, ArrayView2};
use std::path::Path;

/// Distinct colours for labels 1, 2, 3, ... (Okabe–Ito palette, colour-blind safe); cycles.
pub const LABEL_COLOURS: [[u8; 3]; 8] = [
    [230, 159, 0],
    [86, 180, 233],
    [0, 158, 115],
    [240, 228, 66],
    [0, 114, 178],
    [213, 94, 0],
    [204, 121, 167],
    [255, 255, 255],
];

/// Colour of a label id (> 0).
pub fn label_colour(label: u16) -> [u8; 3] {
    LABEL_COLOURS[(label.max(1) as usize - 1) % LABEL_COLOURS.len()]
}

/// Reads a PNG as a single-slice volume (grayscale; colour images are converted to luminance)
/// with unit spacing. Rows become `j`, columns `i`.
pub fn read_png(path: &Path) -> Result<Volume<f32>, VolumeError> {
    let img = image::open(path).map_err(|e| VolumeError::image(path, e))?;
    let g = img.to_luma32f();
    let (w, h) = g.dimensions();
    let scale = if matches!(img, image::DynamicImage::ImageLuma16(_)) {
        65535.0
    } else {
        255.0
    };
    let data: Vec<f32> = g.pixels().map(|p| (p.0[0] * scale).round()).collect();
    let arr = Array3::from_shape_vec((1, h as usize, w as usize), data)
        .map_err(|e| VolumeError::image(path, e))?;
    Ok(Volume::new(arr, Geometry::default()))
}

/// Renders `image` (rows = j, columns = i) windowed to its 1st..99th percentile, with `labels`
/// drawn as an alpha blend (0.45) plus a solid outline of each label region. `upscale`
/// enlarges small slices with nearest neighbour so they stay readable. Rows are flipped so
/// that +j points up, as radiology viewers show axial slices.
pub fn render_overlay(
    image: ArrayView2<f32>,
    labels: Option<ArrayView2<u16>>,
    upscale: u32,
) -> RgbImage {
    let (h, w) = image.dim();
    let mut vals: Vec<f32> = image.iter().copied().filter(|v| v.is_finite()).collect();
    vals.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| -> f32 {
        if vals.is_empty() {
            0.0
        } else {
            vals[((vals.len() - 1) as f64 * q) as usize]
        }
    };
    let (lo, hi) = (pick(0.01), pick(0.99));
    let span = if hi > lo { hi - lo } else { 1.0 };
    let s = upscale.max(1) as usize;
    let mut out: RgbImage = ImageBuffer::new((w * s) as u32, (h * s) as u32);
    for y in 0..h {
        for x in 0..w {
            let v = ((image[[y, x]] - lo) / span).clamp(0.0, 1.0);
            let g = (v * 255.0) as u8;
            let mut px = [g, g, g];
            if let Some(l) = &labels {
                let lab = l[[y, x]];
                if lab > 0 {
                    let c = label_colour(lab);
                    let edge =
                        [(0isize, 1isize), (0, -1), (1, 0), (-1, 0)]
                            .iter()
                            .any(|&(dy, dx)| {
                                let (yy, xx) = (y as isize + dy, x as isize + dx);
                                yy < 0
                                    || xx < 0
                                    || yy >= h as isize
                                    || xx >= w as isize
                                    || l[[yy as usize, xx as usize]] != lab
                            });
                    px = if edge {
                        c
                    } else {
                        [0, 1, 2].map(|k| (0.55 * px[k] as f32 + 0.45 * c[k] as f32) as u8)
                    };
                }
            }
            let oy = h - 1 - y;
            for dy in 0..s {
                for dx in 0..s {
                    out.put_pixel((x * s + dx) as u32, (oy * s + dy) as u32, Rgb(px));
                }
            }
        }
    }
    out
}

/// Writes an overlay PNG (see [`render_overlay`]) through a temporary file.
pub fn write_overlay(
    path: &Path,
    image: ArrayView2<f32>,
    labels: Option<ArrayView2<u16>>,
    upscale: u32,
) -> Result<(), VolumeError> {
    let img = render_overlay(image, labels, upscale);
    let mut buf = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut buf), image::ImageFormat::Png)
        .map_err(|e| VolumeError::image(path, e))?;
    crate::write_atomically(path, |w| std::io::Write::write_all(w, &buf))
}

/// Writes several overlays side by side (e.g. image | ground truth | prediction).
pub fn write_panels(path: &Path, panels: &[RgbImage]) -> Result<(), VolumeError> {
    let w: u32 =
        panels.iter().map(|p| p.width()).sum::<u32>() + 4 * panels.len().saturating_sub(1) as u32;
    let h = panels.iter().map(|p| p.height()).max().unwrap_or(1);
    let mut out: RgbImage = ImageBuffer::from_pixel(w.max(1), h, Rgb([0, 0, 0]));
    let mut x0 = 0;
    for p in panels {
        image::imageops::overlay(&mut out, p, x0 as i64, 0);
        x0 += p.width() + 4;
    }
    let mut buf = Vec::new();
    out.write_to(&mut std::io::Cursor::new(&mut buf), image::ImageFormat::Png)
        .map_err(|e| VolumeError::image(path, e))?;
    crate::write_atomically(path, |w| std::io::Write::write_all(w, &buf))
}
