//! Neighbourhoods: which voxels touch which.

use crate::PostprocessError;

/// How voxels connect. In 3D: [`Faces`](Connectivity::Faces) = 6 neighbours,
/// [`Edges`](Connectivity::Edges) = 18, [`Corners`](Connectivity::Corners) = 26 (scipy's
/// `generate_binary_structure(3, 1 | 2 | 3)`). In 2D (one-slice volumes): `Faces` = 4,
/// `Edges` and `Corners` = 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Connectivity {
    Faces,
    Edges,
    Corners,
}

impl Connectivity {
    /// From a neighbour count: 4 or 6 -> Faces, 18 -> Edges, 8 or 26 -> Corners.
    pub fn from_count(n: u32) -> Result<Self, PostprocessError> {
        match n {
            4 | 6 => Ok(Connectivity::Faces),
            18 => Ok(Connectivity::Edges),
            8 | 26 => Ok(Connectivity::Corners),
            other => Err(PostprocessError::Connectivity(other)),
        }
    }

    /// Largest number of non-zero coordinates in a neighbour offset (scipy's `rank`).
    fn rank(self) -> usize {
        match self {
            Connectivity::Faces => 1,
            Connectivity::Edges => 2,
            Connectivity::Corners => 3,
        }
    }

    /// Every neighbour offset `[dk, dj, di]` (the centre excluded). `planar` keeps `dk = 0`.
    pub fn offsets(self, planar: bool) -> Vec<[isize; 3]> {
        let mut out = Vec::with_capacity(26);
        for dk in -1isize..=1 {
            if planar && dk != 0 {
                continue;
            }
            for dj in -1isize..=1 {
                for di in -1isize..=1 {
                    let nz = (dk != 0) as usize + (dj != 0) as usize + (di != 0) as usize;
                    if nz >= 1 && nz <= self.rank() {
                        out.push([dk, dj, di]);
                    }
                }
            }
        }
        out
    }

    /// The offsets that come earlier in a C-order scan (used by the two-pass labelling).
    pub(crate) fn backward_offsets(self, planar: bool) -> Vec<[isize; 3]> {
        self.offsets(planar)
            .into_iter()
            .filter(|o| o[0] < 0 || (o[0] == 0 && (o[1] < 0 || (o[1] == 0 && o[2] < 0))))
            .collect()
    }
}

/// True when a volume of this `[k, j, i]` shape is a 2D image (one slice).
pub(crate) fn is_planar(shape: &[usize]) -> bool {
    shape[0] == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbour_counts() {
        assert_eq!(Connectivity::Faces.offsets(false).len(), 6);
        assert_eq!(Connectivity::Edges.offsets(false).len(), 18);
        assert_eq!(Connectivity::Corners.offsets(false).len(), 26);
        assert_eq!(Connectivity::Faces.offsets(true).len(), 4);
        assert_eq!(Connectivity::Edges.offsets(true).len(), 8);
        assert_eq!(Connectivity::Corners.backward_offsets(false).len(), 13);
        assert!(Connectivity::from_count(10).is_err());
        assert_eq!(Connectivity::from_count(8).unwrap(), Connectivity::Corners);
    }
}
