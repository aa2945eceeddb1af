//! nnU-Net's Gaussian importance map for sliding-window stitching.

use ndarray::Array3;

/// Importance weights for a patch `[d, h, w]`: a separable Gaussian centred on voxel
/// `size / 2` of each axis (nnU-Net's centre) with sigma = `size * sigma_scale` (nnU-Net: 1/8),
/// scaled to a maximum of 1. Values below 4 sigma are not cut to zero (nnU-Net replaces its
/// zeros by the smallest positive weight); every weight is positive, so every voxel a window
/// covers gets a defined average. An axis of extent 1 has weight 1.
pub fn gaussian_importance_map(size: [usize; 3], sigma_scale: f64) -> Array3<f32> {
    let axis = |n: usize| -> Vec<f64> {
        if n <= 1 {
            return vec![1.0; n.max(1)];
        }
        let c = (n / 2) as f64;
        let sigma = (n as f64 * sigma_scale).max(1e-6);
        (0..n)
            .map(|x| (-((x as f64 - c).powi(2)) / (2.0 * sigma * sigma)).exp())
            .collect()
    };
    let (az, ay, ax) = (axis(size[0]), axis(size[1]), axis(size[2]));
    let mut m = Array3::from_shape_fn((size[0], size[1], size[2]), |(z, y, x)| {
        (az[z] * ay[y] * ax[x]) as f32
    });
    let max = m.iter().copied().fold(0.0f32, f32::max);
    let floor = f32::MIN_POSITIVE * 1e6;
    m.mapv_inplace(|v| (v / max).max(floor));
    m
}

/// Uniform weights (Gaussian weighting off).
pub fn uniform_map(size: [usize; 3]) -> Array3<f32> {
    Array3::ones((size[0], size[1], size[2]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_is_one_at_centre_and_positive_everywhere() {
        let g = gaussian_importance_map([8, 16, 16], 1.0 / 8.0);
        assert_eq!(g[[4, 8, 8]], 1.0);
        assert!(g.iter().all(|&v| v > 0.0 && v <= 1.0));
        // Symmetric around the centre voxel.
        assert!((g[[4, 8, 7]] - g[[4, 8, 9]]).abs() < 1e-7);
        let flat = gaussian_importance_map([1, 4, 4], 0.125);
        assert_eq!(flat.shape(), &[1, 4, 4]);
    }
}
