//! `dataset.json` of an nnU-Net v2 model folder: channels, labels, file ending.

use crate::error::NnUnetError;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What inference needs from `dataset.json`.
#[derive(Debug, Clone)]
pub struct DatasetJson {
    pub path: PathBuf,
    /// Channel names in channel order (`channel_names`, legacy `modality`).
    pub channel_names: Vec<String>,
    /// Label names by output channel index (0 = background).
    pub labels: Vec<String>,
    /// `.nii.gz`, `.mha`, ...
    pub file_ending: String,
}

#[derive(Deserialize)]
struct RawDataset {
    #[serde(default)]
    channel_names: Option<BTreeMap<String, String>>,
    #[serde(default)]
    modality: Option<BTreeMap<String, String>>,
    labels: BTreeMap<String, Value>,
    file_ending: String,
    #[serde(default)]
    regions_class_order: Option<Value>,
}

impl DatasetJson {
    pub fn read(path: &Path) -> Result<Self, NnUnetError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| NnUnetError::file(path, format!("cannot read: {e}")))?;
        let raw: RawDataset = serde_json::from_str(&text)
            .map_err(|e| NnUnetError::file(path, format!("not an nnU-Net v2 dataset.json: {e}")))?;
        let channels = raw.channel_names.or(raw.modality).ok_or_else(|| {
            NnUnetError::file(path, "neither channel_names nor modality is given")
        })?;
        let channel_names = indexed(path, "channel_names", channels)?;
        if raw.regions_class_order.is_some() {
            return Err(NnUnetError::unsupported(
                path,
                "region-based labels (regions_class_order, sigmoid outputs) are not supported yet; \
                 only models with one softmax channel per label",
            ));
        }
        let labels = label_names(path, &raw.labels)?;
        Ok(DatasetJson {
            path: path.to_path_buf(),
            channel_names,
            labels,
            file_ending: raw.file_ending,
        })
    }

    pub fn num_channels(&self) -> usize {
        self.channel_names.len()
    }

    pub fn num_classes(&self) -> usize {
        self.labels.len()
    }
}

/// `{"0": a, "1": b}` as `[a, b]`; keys must be 0..n-1.
fn indexed(
    path: &Path,
    key: &str,
    map: BTreeMap<String, String>,
) -> Result<Vec<String>, NnUnetError> {
    let mut out = vec![None; map.len()];
    for (k, v) in map {
        let i: usize =
            k.parse().ok().filter(|&i| i < out.len()).ok_or_else(|| {
                NnUnetError::file(path, format!("{key}: key {k:?} is not 0..n-1"))
            })?;
        out[i] = Some(v);
    }
    out.into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| NnUnetError::file(path, format!("{key}: keys are not 0..n-1")))
}

/// `labels` (`name -> value`) as names by value; values must be 0..n-1 (nnU-Net writes the
/// argmax channel index as the label value) and background must be 0.
fn label_names(path: &Path, labels: &BTreeMap<String, Value>) -> Result<Vec<String>, NnUnetError> {
    let mut out: Vec<Option<String>> = vec![None; labels.len()];
    for (name, v) in labels {
        let Some(value) = v.as_u64() else {
            return Err(NnUnetError::unsupported(
                path,
                format!("label {name:?} = {v}: region labels (lists) are not supported yet"),
            ));
        };
        let slot = out.get_mut(value as usize).ok_or_else(|| {
            NnUnetError::file(
                path,
                format!("label values must be 0..{}", labels.len() - 1),
            )
        })?;
        if slot.replace(name.clone()).is_some() {
            return Err(NnUnetError::file(
                path,
                format!("label value {value} appears twice"),
            ));
        }
    }
    let names: Vec<String> = out
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| NnUnetError::file(path, "label values are not consecutive from 0"))?;
    if names.len() < 2 {
        return Err(NnUnetError::file(
            path,
            "labels: need background and at least one label",
        ));
    }
    Ok(names)
}
