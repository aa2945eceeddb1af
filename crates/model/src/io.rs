//! Saving and loading weights: burnpack (burn's native format, bit-exact round trip) and
//! safetensors (for exchange). Writes go to a temporary file in the same folder, renamed into
//! place, so a crash never leaves a half-written checkpoint under the final name.

use crate::config::UNetConfig;
use crate::error::ModelError;
use crate::unet::UNet;
use burn::module::Module;
use burn::store::{ModuleRecord, ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use std::path::{Path, PathBuf};

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn finish(tmp: &Path, path: &Path, result: Result<(), String>) -> Result<(), ModelError> {
    if let Err(reason) = result {
        let _ = std::fs::remove_file(tmp);
        return Err(ModelError::Record {
            path: path.to_path_buf(),
            reason,
        });
    }
    std::fs::rename(tmp, path).map_err(|source| {
        let _ = std::fs::remove_file(tmp);
        ModelError::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Writes the weights as a burnpack file (temp file + rename).
pub fn save(model: &UNet, path: &Path) -> Result<(), ModelError> {
    let tmp = temp_path(path);
    let _ = std::fs::remove_file(&tmp);
    let r = model
        .clone()
        .into_record()
        .save(&tmp)
        .map_err(|e| e.to_string());
    finish(&tmp, path, r)
}

/// Builds `config`'s network on `device` and loads burnpack weights from `path`; every tensor
/// must be present with the right shape.
pub fn load(config: &UNetConfig, path: &Path, device: &Device) -> Result<UNet, ModelError> {
    if !path.is_file() {
        return Err(ModelError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such weights file"),
        });
    }
    let rec = |e: burn::store::RecordError| ModelError::Record {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let record = ModuleRecord::load(path).map_err(rec)?;
    config.init(device).try_load_record(record).map_err(rec)
}

/// Writes the weights as safetensors (temp file + rename); tensor names are the module paths
/// (e.g. `encoder.0.blocks.1.conv.weight`).
pub fn save_safetensors(model: &UNet, path: &Path) -> Result<(), ModelError> {
    let tmp = temp_path(path);
    let _ = std::fs::remove_file(&tmp);
    let mut store = SafetensorsStore::from_file(&tmp);
    let r = model
        .save_into(&mut store)
        .map_err(|e| e.to_string())
        .and_then(|()| give_default_mode(&tmp).map_err(|e| e.to_string()));
    finish(&tmp, path, r)
}

/// burn writes safetensors through a private temporary file (mode 0600); give the file the
/// mode a newly created file gets here (0666 less the umask, usually 0644), like every other
/// file of the run directory. The mode is read from a freshly created probe file, the one
/// portable way to learn the umask without unsafe code.
fn give_default_mode(file: &Path) -> std::io::Result<()> {
    let probe = temp_path(&file.with_extension("mode-probe"));
    let mode = std::fs::File::create(&probe).and_then(|f| f.metadata());
    let _ = std::fs::remove_file(&probe);
    std::fs::set_permissions(file, mode?.permissions())
}

/// Builds `config`'s network on `device` and loads safetensors weights written by
/// [`save_safetensors`]; missing or mismatched tensors are errors.
pub fn load_safetensors(
    config: &UNetConfig,
    path: &Path,
    device: &Device,
) -> Result<UNet, ModelError> {
    if !path.is_file() {
        return Err(ModelError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such weights file"),
        });
    }
    let mut model = config.init(device);
    let mut store = SafetensorsStore::from_file(path);
    let res = model
        .load_from(&mut store)
        .map_err(|e| ModelError::Record {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if !res.errors.is_empty() || !res.missing.is_empty() {
        return Err(ModelError::Record {
            path: path.to_path_buf(),
            reason: format!(
                "{} tensors missing, errors: {:?}",
                res.missing.len(),
                res.errors
            ),
        });
    }
    Ok(model)
}
