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
    /// Names of the network's outputs in channel order: the labels by value (0 = background),
    /// or, for a region-based model, the foreground regions in `labels` order.
    pub labels: Vec<String>,
    /// Region-based models only (nnU-Net's `LabelManager.has_regions`).
    pub regions: Option<Regions>,
    /// `.nii.gz`, `.mha`, ...
    pub file_ending: String,
}

/// A region-based model's outputs: one sigmoid per region, turned into labels by
/// `regions_class_order` (label `class_order[i]` where region `i`'s probability is > 0.5,
/// later regions painted over earlier ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Regions {
    /// The label values each region is the union of.
    pub members: Vec<Vec<u16>>,
    pub class_order: Vec<u16>,
}

#[derive(Deserialize)]
struct RawDataset {
    #[serde(default)]
    channel_names: Option<BTreeMap<String, String>>,
    #[serde(default)]
    modality: Option<BTreeMap<String, String>>,
    labels: OrderedLabels,
    file_ending: String,
    #[serde(default)]
    regions_class_order: Option<Vec<Value>>,
}

/// `labels` in file order: nnU-Net's regions are the label entries in the order written.
struct OrderedLabels(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for OrderedLabels {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = OrderedLabels;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of label names to values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = m.next_entry::<String, Value>()? {
                    out.push(entry);
                }
                Ok(OrderedLabels(out))
            }
        }
        d.deserialize_map(Visit)
    }
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
        let entries = label_entries(path, raw.labels.0)?;
        let has_regions = entries.iter().any(|(_, v)| v.len() > 1);
        let (labels, regions) = if has_regions {
            let (names, regions) = regions(path, &entries, raw.regions_class_order)?;
            (names, Some(regions))
        } else {
            (label_names(path, &entries)?, None)
        };
        Ok(DatasetJson {
            path: path.to_path_buf(),
            channel_names,
            labels,
            regions,
            file_ending: raw.file_ending,
        })
    }

    pub fn num_channels(&self) -> usize {
        self.channel_names.len()
    }

    /// The network's output channels (nnU-Net's `num_segmentation_heads`).
    pub fn num_outputs(&self) -> usize {
        self.labels.len()
    }

    /// One more than the largest label value a segmentation can hold.
    pub fn num_label_values(&self) -> usize {
        match &self.regions {
            Some(r) => r.class_order.iter().max().map_or(1, |&m| m as usize + 1),
            None => self.labels.len(),
        }
    }
}

/// The label entries but `ignore`, each as its values (a bare int is one value), with
/// nnU-Net's checks: background is 0; `ignore` (never a network output) is one int.
fn label_entries(
    path: &Path,
    labels: Vec<(String, Value)>,
) -> Result<Vec<(String, Vec<u16>)>, NnUnetError> {
    let bad = |m: String| NnUnetError::file(path, m);
    let value = |name: &str, v: &Value| -> Result<u16, NnUnetError> {
        v.as_u64()
            .and_then(|v| u16::try_from(v).ok())
            .ok_or_else(|| {
                bad(format!(
                    "labels: {name:?} = {v} is not a label value (0..=65535)"
                ))
            })
    };
    let mut out = Vec::with_capacity(labels.len());
    for (name, v) in labels {
        if name == "ignore" {
            value(&name, &v)?;
            continue;
        }
        let values = match &v {
            Value::Array(items) => items
                .iter()
                .map(|i| value(&name, i))
                .collect::<Result<Vec<_>, _>>()?,
            other => vec![value(&name, other)?],
        };
        if values.is_empty() {
            return Err(bad(format!("labels: {name:?} is an empty list")));
        }
        out.push((name, values));
    }
    match out.iter().find(|(n, _)| n == "background") {
        Some((_, v)) if v[..] == [0] => Ok(out),
        Some(_) => Err(bad("labels: background must be 0".into())),
        None => Err(bad("labels: no background (0) declared".into())),
    }
}

/// The foreground regions (entries that are not background alone), named, with
/// `regions_class_order` (one label per region, required).
fn regions(
    path: &Path,
    entries: &[(String, Vec<u16>)],
    order: Option<Vec<Value>>,
) -> Result<(Vec<String>, Regions), NnUnetError> {
    let bad = |m: String| NnUnetError::file(path, m);
    let order = order.ok_or_else(|| {
        bad("labels define regions (lists) but regions_class_order is missing".into())
    })?;
    let class_order = order
        .iter()
        .map(|v| {
            v.as_u64()
                .and_then(|v| u16::try_from(v).ok())
                .ok_or_else(|| bad(format!("regions_class_order: {v} is not a label value")))
        })
        .collect::<Result<Vec<u16>, _>>()?;
    let (names, members): (Vec<String>, Vec<Vec<u16>>) = entries
        .iter()
        .filter(|(_, v)| v.iter().any(|&l| l != 0))
        .cloned()
        .unzip();
    if names.len() != class_order.len() {
        return Err(bad(format!(
            "{} foreground regions but regions_class_order has {} entries",
            names.len(),
            class_order.len()
        )));
    }
    Ok((
        names,
        Regions {
            members,
            class_order,
        },
    ))
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

/// Single-value labels as names by value; values must be 0..n-1 (nnU-Net writes the argmax
/// channel index as the label value).
fn label_names(path: &Path, entries: &[(String, Vec<u16>)]) -> Result<Vec<String>, NnUnetError> {
    let mut out: Vec<Option<String>> = vec![None; entries.len()];
    for (name, values) in entries {
        let value = values[0];
        let slot = out.get_mut(value as usize).ok_or_else(|| {
            NnUnetError::file(
                path,
                format!("label values must be 0..{}", entries.len() - 1),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> Result<DatasetJson, NnUnetError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dataset.json");
        std::fs::write(&path, json).unwrap();
        DatasetJson::read(&path)
    }

    #[test]
    fn regions_keep_the_file_order_and_skip_background_and_ignore() {
        let d = read(
            r#"{"channel_names": {"0": "FLAIR"}, "file_ending": ".nii.gz",
                "labels": {"background": 0, "whole": [1, 2, 3], "core": [2, 3], "ignore": 4, "enhancing": 3},
                "regions_class_order": [1, 2, 3]}"#,
        )
        .unwrap();
        assert_eq!(d.labels, ["whole", "core", "enhancing"]);
        let r = d.regions.unwrap();
        assert_eq!(r.members, [vec![1, 2, 3], vec![2, 3], vec![3]]);
        assert_eq!(r.class_order, [1, 2, 3]);
        let plain = read(
            r#"{"channel_names": {"0": "CT"}, "file_ending": ".nii.gz",
                "labels": {"background": 0, "liver": 1, "ignore": 3, "tumour": [2]},
                "regions_class_order": [1, 2]}"#,
        )
        .unwrap();
        assert!(
            plain.regions.is_none(),
            "single values are labels, not regions"
        );
        assert_eq!(plain.labels, ["background", "liver", "tumour"]);
        assert_eq!(plain.num_label_values(), 3);
    }
}
