//! `fold_N/checkpoint_final.pth`: the dict `nnUNetTrainer.save_checkpoint` pickles with torch.
//! The network's state dict (`network_weights`) and three metadata entries are read; the
//! optimizer state, logs and numpy scalars in the same pickle are skipped by the reader.

use crate::error::NnUnetError;
use pytorch_reader::{DType, PickleValue, PytorchReader};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One float32 tensor of the state dict, read into memory.
#[derive(Debug, Clone)]
pub struct StateTensor {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// What medseg needs from an nnU-Net checkpoint.
#[derive(Debug, Clone)]
pub struct NnUnetCheckpoint {
    pub path: PathBuf,
    /// `network.state_dict()`, by parameter name.
    pub weights: HashMap<String, StateTensor>,
    pub trainer_name: Option<String>,
    /// `init_args['configuration']`.
    pub configuration: Option<String>,
    /// Spatial axes (network order) mirrored at test time; `None` = the trainer disabled
    /// mirroring (nnUNetTrainerNoMirroring).
    pub mirroring_axes: Option<Vec<usize>>,
}

impl NnUnetCheckpoint {
    pub fn read(path: &Path) -> Result<Self, NnUnetError> {
        let bad = |reason: String| NnUnetError::checkpoint(path, reason);
        let meta = PytorchReader::read_pickle_data(path, None)
            .map_err(|e| bad(format!("not a readable torch checkpoint: {e}")))?;
        let PickleValue::Dict(top) = &meta else {
            return Err(bad(
                "the pickle is not a dict; is this an nnU-Net v2 checkpoint?".into(),
            ));
        };
        if !top.contains_key("network_weights") {
            return Err(bad(
                "no 'network_weights' entry; is this an nnU-Net v2 checkpoint (checkpoint_final.pth)?"
                    .into(),
            ));
        }
        let reader = PytorchReader::with_top_level_key(path, "network_weights")
            .map_err(|e| bad(format!("network_weights: {e}")))?;
        let mut weights = HashMap::with_capacity(reader.len());
        for (name, t) in reader.into_tensors() {
            if t.dtype() != DType::F32 {
                return Err(bad(format!(
                    "tensor {name} is {:?}; only float32 weights are supported",
                    t.dtype()
                )));
            }
            let bytes = t.read().map_err(|e| bad(format!("reading {name}: {e}")))?;
            let values = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let shape = t.shape().to_vec();
            weights.insert(name, StateTensor { shape, values });
        }
        Ok(NnUnetCheckpoint {
            path: path.to_path_buf(),
            weights,
            trainer_name: string_at(top.get("trainer_name")),
            configuration: match top.get("init_args") {
                Some(PickleValue::Dict(a)) => string_at(a.get("configuration")),
                _ => None,
            },
            mirroring_axes: mirroring_axes(path, top.get("inference_allowed_mirroring_axes"))?,
        })
    }
}

fn string_at(v: Option<&PickleValue>) -> Option<String> {
    match v {
        Some(PickleValue::String(s)) => Some(s.clone()),
        _ => None,
    }
}

/// A tuple of ints, or `None`; a missing entry (older checkpoints) means every axis.
fn mirroring_axes(path: &Path, v: Option<&PickleValue>) -> Result<Option<Vec<usize>>, NnUnetError> {
    match v {
        None => Ok(Some(vec![0, 1, 2])),
        Some(PickleValue::None) => Ok(None),
        Some(PickleValue::List(items)) => items
            .iter()
            .map(|i| match i {
                PickleValue::Int(a) if (0..3).contains(a) => Ok(*a as usize),
                other => Err(NnUnetError::checkpoint(
                    path,
                    format!("inference_allowed_mirroring_axes holds {other:?}, expected axes 0-2"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(NnUnetError::checkpoint(
            path,
            format!("inference_allowed_mirroring_axes is {other:?}, expected a tuple of ints"),
        )),
    }
}
