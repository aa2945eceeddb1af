//! The checkpoint's state dict, handed out by parameter name while the network is built, with
//! every shape checked. nnU-Net's state dicts hold each tensor two to four times
//! (`P.conv.weight` = `P.all_modules.0.weight`; `encoder.*` = `decoder.encoder.*`), and the
//! deep-supervision heads the predictor never uses: [`WeightMap::finish`] accepts exactly
//! those and names anything else left over.

use crate::checkpoint::StateTensor;
use crate::error::NnUnetError;
use burn::tensor::{Device, Tensor, TensorData};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

pub struct WeightMap {
    path: PathBuf,
    tensors: HashMap<String, StateTensor>,
    used: HashSet<String>,
    device: Device,
}

impl WeightMap {
    /// Keys saved from a DDP-wrapped (`module.`) or `torch.compile`d (`_orig_mod.`) network
    /// are read without that prefix, as nnU-Net's `load_checkpoint` does.
    pub fn new(path: PathBuf, tensors: HashMap<String, StateTensor>, device: &Device) -> Self {
        let tensors = tensors
            .into_iter()
            .map(|(k, v)| {
                let k = k.strip_prefix("module.").unwrap_or(&k);
                let k = k.strip_prefix("_orig_mod.").unwrap_or(k);
                (k.to_string(), v)
            })
            .collect();
        Self {
            path,
            tensors,
            used: HashSet::new(),
            device: device.clone(),
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The tensor `name`, which must have `shape`.
    pub fn take<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Tensor<D>, NnUnetError> {
        let t = self.tensors.get(name).ok_or_else(|| {
            NnUnetError::checkpoint(
                &self.path,
                format!(
                    "network_weights has no {name} {shape:?}: the checkpoint does not match the \
                     architecture in plans.json"
                ),
            )
        })?;
        if t.shape != shape {
            return Err(NnUnetError::checkpoint(
                &self.path,
                format!(
                    "{name} has shape {:?}, plans.json's architecture needs {shape:?}",
                    t.shape
                ),
            ));
        }
        self.used.insert(name.to_string());
        Ok(Tensor::from_data(
            TensorData::new(t.values.clone(), shape.to_vec()),
            &self.device,
        ))
    }

    /// Checks that every tensor not taken is a duplicate of one that was (same values) or a
    /// deep-supervision head `decoder.seg_layers.{i}` with `i < last_head`.
    pub fn finish(self, last_head: usize) -> Result<(), NnUnetError> {
        let mut left: Vec<&String> = self
            .tensors
            .keys()
            .filter(|k| !self.used.contains(*k))
            .collect();
        left.sort();
        for name in left {
            if self.is_unused_head(name, last_head) || self.is_duplicate(name) {
                continue;
            }
            return Err(NnUnetError::checkpoint(
                &self.path,
                format!(
                    "network_weights has {name}, which plans.json's architecture does not use: \
                     the checkpoint was trained with other plans"
                ),
            ));
        }
        Ok(())
    }

    fn is_unused_head(&self, name: &str, last_head: usize) -> bool {
        name.strip_prefix("decoder.seg_layers.")
            .and_then(|r| r.split('.').next())
            .and_then(|i| i.parse::<usize>().ok())
            .is_some_and(|i| i < last_head)
    }

    /// `decoder.encoder.X` -> `encoder.X`; `P.all_modules.K.p` -> `P.conv.p` / `P.norm.p`.
    fn is_duplicate(&self, name: &str) -> bool {
        let mut candidates = vec![name.to_string()];
        if let Some(rest) = name.strip_prefix("decoder.encoder.") {
            candidates = vec![format!("encoder.{rest}")];
        }
        let mut expanded = Vec::new();
        for c in &candidates {
            match split_all_modules(c) {
                Some((prefix, param)) => {
                    expanded.push(format!("{prefix}.conv.{param}"));
                    expanded.push(format!("{prefix}.norm.{param}"));
                }
                None => expanded.push(c.clone()),
            }
        }
        let this = &self.tensors[name];
        expanded.iter().any(|c| {
            c != name
                && self.used.contains(c)
                && self
                    .tensors
                    .get(c)
                    .is_some_and(|t| t.shape == this.shape && t.values == this.values)
        })
    }
}

/// `"a.b.all_modules.1.weight"` -> `("a.b", "weight")`.
fn split_all_modules(name: &str) -> Option<(&str, &str)> {
    let (prefix, rest) = name.split_once(".all_modules.")?;
    let (_index, param) = rest.split_once('.')?;
    Some((prefix, param))
}
