//! medseg-nnunet: nnU-Net v2 model folders (what `nnUNetv2_train` writes) run natively, with
//! the segmentation nnU-Net's predictor would produce.
//!
//! ```text
//! MODEL/plans.json + dataset.json --ModelFolder::open--> configuration, folds
//! fold_N/checkpoint_final.pth --NnUnetCheckpoint::read--> state dict + mirroring axes
//! arch_kwargs --NetworkSpec::from_plans--> spec --load(weights)--> NnUnetNetwork
//! CASE_0000.nii.gz.. --preprocess_case--> --predict_logits (float16)--> --export_case--> labels
//! ```
//! [`NnUnetPredictor`] runs the chain for one case, as `nnUNetv2_predict` does.
//! Written from nnunetv2 2.8.1 and dynamic_network_architectures 0.4.4
//! (tests/fixtures/nnunet/NOTES-for-rust.md has the source references).

// deny, not forbid: ndarray's `s!` macro expands to an `#[allow(unsafe_code)]` block.
#![deny(unsafe_code)]

mod checkpoint;
mod dataset_json;
mod error;
mod export;
mod model_folder;
mod network;
mod plans;
mod postprocessing;
mod predict;
mod preprocess;
mod resample;
mod weights;

pub use checkpoint::{NnUnetCheckpoint, StateTensor};
pub use dataset_json::{DatasetJson, Regions};
pub use error::NnUnetError;
pub use export::{ExportedCase, ensemble_cases, export_case, export_segmentation};
pub use model_folder::{CheckpointChoice, ModelFolder, NnUnetPredictor};
pub use network::{NetworkClass, NetworkSpec, NnUnetNetwork};
pub use plans::{
    ArchKwargs, Architecture, Configuration, IntensityProperties, Plans, ResamplingKwargs,
};
pub use postprocessing::{KeepLargestStep, NnUnetPostprocessing};
pub use predict::{SlidingWindowSettings, gaussian_f16, predict_logits, tile_origins};
pub use preprocess::{PreprocessedCase, preprocess_case};
pub use resample::{resample_channel, resize, separate_z_axis};
pub use weights::WeightMap;
