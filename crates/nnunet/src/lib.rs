//! medseg-nnunet: nnU-Net v2 model folders (what `nnUNetv2_train` writes) run natively, with
//! the segmentation nnU-Net's predictor would produce.
//!
//! ```text
//! MODEL/plans.json + dataset.json --ModelFolder::open--> configuration, folds
//! fold_N/checkpoint_final.pth --NnUnetCheckpoint::read--> state dict + mirroring axes
//! arch_kwargs --NetworkSpec::from_plans--> spec --load(weights)--> NnUnetNetwork
//! ```
//! Written from nnunetv2 2.8.1 and dynamic_network_architectures 0.4.4
//! (tests/fixtures/nnunet/NOTES-for-rust.md has the source references).

#![forbid(unsafe_code)]

mod checkpoint;
mod dataset_json;
mod error;
mod network;
mod plans;
mod weights;

pub use checkpoint::{NnUnetCheckpoint, StateTensor};
pub use dataset_json::DatasetJson;
pub use error::NnUnetError;
pub use network::{NetworkClass, NetworkSpec, NnUnetNetwork};
pub use plans::{
    ArchKwargs, Architecture, Configuration, IntensityProperties, Plans, ResamplingKwargs,
};
pub use weights::WeightMap;
