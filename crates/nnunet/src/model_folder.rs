//! An nnU-Net v2 model folder, `TRAINER__PLANS__CONFIGURATION/` as `nnUNetv2_train` writes it,
//! and the predictor built from it (`nnUNetPredictor.initialize_from_trained_model_folder`).

use crate::checkpoint::NnUnetCheckpoint;
use crate::dataset_json::DatasetJson;
use crate::error::NnUnetError;
use crate::export::{ExportedCase, export_case, export_segmentation};
use crate::network::{NetworkSpec, NnUnetNetwork};
use crate::plans::{Configuration, Plans};
use crate::predict::{SlidingWindowSettings, predict_logits};
use crate::preprocess::{PreprocessedCase, preprocess_case};
use crate::weights::WeightMap;
use burn::tensor::Device;
use ndarray::ArrayView4;
use std::path::{Path, PathBuf};

/// Which checkpoint of each fold to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CheckpointChoice {
    #[default]
    Final,
    Best,
}

impl CheckpointChoice {
    pub fn file_name(self) -> &'static str {
        match self {
            CheckpointChoice::Final => "checkpoint_final.pth",
            CheckpointChoice::Best => "checkpoint_best.pth",
        }
    }
}

/// A recognized model folder.
#[derive(Debug, Clone)]
pub struct ModelFolder {
    pub dir: PathBuf,
    pub plans: Plans,
    pub dataset: DatasetJson,
    pub configuration: Configuration,
    /// `fold_0`, `fold_1`, ..., `fold_all`: the fold folders present, sorted.
    pub folds: Vec<String>,
}

impl ModelFolder {
    /// Whether `dir` looks like an nnU-Net model folder (plans.json and dataset.json).
    pub fn looks_like(dir: &Path) -> bool {
        dir.join("plans.json").is_file() && dir.join("dataset.json").is_file()
    }

    /// Reads the folder's plans and dataset.json; the configuration comes from the folder name
    /// (`TRAINER__PLANS__CONFIGURATION`), else from the first fold's checkpoint.
    pub fn open(dir: &Path) -> Result<Self, NnUnetError> {
        let plans = Plans::read(&dir.join("plans.json"))?;
        let dataset = DatasetJson::read(&dir.join("dataset.json"))?;
        let folds = fold_folders(dir)?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let from_name = name
            .rsplit("__")
            .next()
            .filter(|_| name.matches("__").count() == 2)
            .map(str::to_string);
        let config_name = match from_name.filter(|c| plans.configuration_names().contains(c)) {
            Some(c) => c,
            None => {
                let first = folds.first().ok_or_else(|| no_folds(dir))?;
                let ckpt = dir.join(first).join(CheckpointChoice::Final.file_name());
                NnUnetCheckpoint::read(&ckpt)?.configuration.ok_or_else(|| {
                    NnUnetError::file(dir, "cannot tell the configuration: the folder is not named TRAINER__PLANS__CONFIGURATION and the checkpoint has no init_args.configuration")
                })?
            }
        };
        let configuration = plans.configuration(&config_name)?;
        if let Some(prev) = &configuration.previous_stage {
            return Err(NnUnetError::unsupported(
                &plans.path,
                format!(
                    "configuration {config_name} is a cascade stage: it needs the segmentation of {prev} as extra input channels, which medseg does not run yet; use the model's 3d_fullres or 2d configuration"
                ),
            ));
        }
        Ok(ModelFolder {
            dir: dir.to_path_buf(),
            plans,
            dataset,
            configuration,
            folds,
        })
    }

    /// The network spec of the configuration.
    pub fn network_spec(&self) -> Result<NetworkSpec, NnUnetError> {
        let a = &self.configuration.architecture;
        NetworkSpec::from_plans(
            &self.plans.path,
            &a.network_class_name,
            &a.arch_kwargs,
            self.dataset.num_channels(),
            self.dataset.num_outputs(),
        )
    }

    /// One line for the user: configuration, network, folds.
    pub fn describe(&self, folds: &[String]) -> String {
        let class = self
            .configuration
            .architecture
            .network_class_name
            .rsplit('.')
            .next()
            .unwrap_or("?");
        let outputs = match &self.dataset.regions {
            Some(r) => format!(", region-based ({} sigmoid outputs)", r.members.len()),
            None => String::new(),
        };
        format!(
            "nnU-Net model {}: configuration {}, {class} {:?}{outputs}, patch {:?}, folds {}",
            self.dir.display(),
            self.configuration.name,
            self.configuration
                .architecture
                .arch_kwargs
                .features_per_stage,
            self.configuration.patch_size,
            folds.join(", ")
        )
    }

    /// The `postprocessing.pkl` files `nnUNetv2_find_best_configuration` left in the folder
    /// (`crossval_results_folds_*/`), sorted. nnUNetv2_predict does not apply them.
    pub fn postprocessing_files(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("crossval_results_folds_")
            })
            .map(|e| e.path().join("postprocessing.pkl"))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        found
    }

    /// `requested`: fold names (`0`, `1`, `all`) or empty for every fold present (nnU-Net's
    /// CLI default is 0-4; every fold present is what a user of a downloaded model wants).
    pub fn select_folds(&self, requested: &[String]) -> Result<Vec<String>, NnUnetError> {
        if requested.is_empty() {
            return if self.folds.is_empty() {
                Err(no_folds(&self.dir))
            } else {
                Ok(self.folds.clone())
            };
        }
        requested
            .iter()
            .map(|f| {
                let name = format!("fold_{f}");
                if self.folds.contains(&name) {
                    Ok(name)
                } else {
                    Err(NnUnetError::file(
                        self.dir.join(&name),
                        format!(
                            "fold {f} is not in the model folder (present: {})",
                            self.folds.join(", ")
                        ),
                    ))
                }
            })
            .collect()
    }
}

fn no_folds(dir: &Path) -> NnUnetError {
    NnUnetError::file(
        dir,
        "no fold_N folders with checkpoints: is this a trained nnU-Net model folder?",
    )
}

fn fold_folders(dir: &Path) -> Result<Vec<String>, NnUnetError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| NnUnetError::file(dir, format!("cannot list: {e}")))?;
    let mut folds: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| {
            n.strip_prefix("fold_")
                .is_some_and(|f| f == "all" || f.parse::<usize>().is_ok())
        })
        .collect();
    folds.sort_by_key(|f| {
        (
            f == "fold_all",
            f.trim_start_matches("fold_").parse::<usize>().unwrap_or(0),
        )
    });
    Ok(folds)
}

/// A model folder's folds loaded and ready to predict.
#[derive(Debug)]
pub struct NnUnetPredictor {
    pub folder: ModelFolder,
    pub folds: Vec<String>,
    networks: Vec<NnUnetNetwork>,
    settings: SlidingWindowSettings,
    device: Device,
}

impl NnUnetPredictor {
    /// Loads `folds` (names from [`ModelFolder::select_folds`]); the mirroring axes come from
    /// the first fold's checkpoint, as in nnU-Net. `tta = false` disables mirroring.
    pub fn load(
        folder: ModelFolder,
        folds: Vec<String>,
        checkpoint: CheckpointChoice,
        tta: bool,
        device: &Device,
    ) -> Result<Self, NnUnetError> {
        let spec = folder.network_spec()?;
        let mut networks = Vec::with_capacity(folds.len());
        let mut mirror_axes = None;
        for (i, fold) in folds.iter().enumerate() {
            let path = folder.dir.join(fold).join(checkpoint.file_name());
            if !path.is_file() {
                return Err(NnUnetError::file(
                    &path,
                    format!(
                        "missing; the fold has no {} (try --checkpoint best, or another --folds)",
                        checkpoint.file_name()
                    ),
                ));
            }
            let ckpt = NnUnetCheckpoint::read(&path)?;
            if i == 0 {
                mirror_axes = Some(ckpt.mirroring_axes.clone());
            }
            networks.push(spec.load(WeightMap::new(path, ckpt.weights, device))?);
        }
        let dims = folder.configuration.dims();
        let patch = match folder.configuration.patch_size.as_slice() {
            [a, b, c] => [*a, *b, *c],
            [b, c] => [1, *b, *c],
            other => {
                return Err(NnUnetError::file(
                    &folder.plans.path,
                    format!("patch_size {other:?} needs 2 or 3 entries"),
                ));
            }
        };
        let total = spec.total_stride();
        if (0..3).any(|a| patch[a] % total[a] != 0) {
            return Err(NnUnetError::file(
                &folder.plans.path,
                format!(
                    "patch_size {patch:?} is not divisible by the network's total stride {total:?}"
                ),
            ));
        }
        let axes = if tta {
            mirror_axes.flatten().unwrap_or_default()
        } else {
            Vec::new()
        };
        let settings = SlidingWindowSettings {
            patch,
            dims,
            step: 0.5,
            mirror_axes: axes.into_iter().filter(|&a| a < dims).collect(),
        };
        Ok(NnUnetPredictor {
            folder,
            folds,
            networks,
            settings,
            device: device.clone(),
        })
    }

    /// nnU-Net's `tile_step_size` (`-step_size`; the default 0.5): tiles start every
    /// `step * patch` voxels, evenly spread, so 1.0 means tiles that just touch.
    pub fn with_step_size(mut self, step: f64) -> Result<Self, NnUnetError> {
        if !(step > 0.0 && step <= 1.0) {
            return Err(NnUnetError::file(
                &self.folder.plans.path,
                format!("step size {step} must be in (0, 1] (nnU-Net's -step_size)"),
            ));
        }
        self.settings.step = step;
        Ok(self)
    }

    pub fn num_channels(&self) -> usize {
        self.folder.dataset.num_channels()
    }

    /// One more than the largest label value of a segmentation (the label maps' value range).
    pub fn num_classes(&self) -> usize {
        self.folder.dataset.num_label_values()
    }

    /// Whether mirroring TTA runs.
    pub fn tta(&self) -> bool {
        !self.settings.mirror_axes.is_empty()
    }

    /// Preprocessing of one case (`data` `(C, k, j, i)`, `spacing_kji` in array order).
    pub fn preprocess(
        &self,
        case: &str,
        data: ArrayView4<f32>,
        spacing_kji: [f64; 3],
    ) -> Result<PreprocessedCase, NnUnetError> {
        preprocess_case(
            case,
            data,
            spacing_kji,
            &self.folder.plans,
            &self.folder.configuration,
        )
    }

    /// The float16 logits of a preprocessed case, folds averaged.
    pub fn logits(
        &self,
        pre: &PreprocessedCase,
        on_tile: &mut dyn FnMut(usize, usize),
    ) -> ndarray::Array4<f32> {
        predict_logits(
            pre.data.view(),
            &self.networks,
            self.folder.dataset.num_outputs(),
            &self.settings,
            &self.device,
            on_tile,
        )
    }

    /// The whole chain for one case: preprocess, predict, export.
    pub fn predict(
        &self,
        case: &str,
        data: ArrayView4<f32>,
        spacing_kji: [f64; 3],
        on_tile: &mut dyn FnMut(usize, usize),
    ) -> Result<ExportedCase, NnUnetError> {
        let (pre, logits) = self.preprocess_and_predict(case, data, spacing_kji, on_tile)?;
        let (plans, cfg) = (&self.folder.plans, &self.folder.configuration);
        let regions = self.folder.dataset.regions.as_ref();
        Ok(export_case(logits.view(), &pre, plans, cfg, regions))
    }

    /// [`predict`](Self::predict) without the probabilities: nnU-Net's export without
    /// `--save_probabilities`, resampling one class at a time ([`export_segmentation`]).
    pub fn predict_segmentation(
        &self,
        case: &str,
        data: ArrayView4<f32>,
        spacing_kji: [f64; 3],
        on_tile: &mut dyn FnMut(usize, usize),
    ) -> Result<ndarray::Array3<u16>, NnUnetError> {
        let (pre, logits) = self.preprocess_and_predict(case, data, spacing_kji, on_tile)?;
        let (plans, cfg) = (&self.folder.plans, &self.folder.configuration);
        let regions = self.folder.dataset.regions.as_ref();
        Ok(export_segmentation(
            logits.view(),
            &pre,
            plans,
            cfg,
            regions,
        ))
    }

    /// The preprocessed case (its network input freed: the export does not need it) and its
    /// logits.
    fn preprocess_and_predict(
        &self,
        case: &str,
        data: ArrayView4<f32>,
        spacing_kji: [f64; 3],
        on_tile: &mut dyn FnMut(usize, usize),
    ) -> Result<(PreprocessedCase, ndarray::Array4<f32>), NnUnetError> {
        let mut pre = self.preprocess(case, data, spacing_kji)?;
        let logits = self.logits(&pre, on_tile);
        pre.data = ndarray::Array4::zeros((0, 0, 0, 0));
        Ok((pre, logits))
    }
}
