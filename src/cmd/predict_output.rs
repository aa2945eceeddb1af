//! The bookkeeping of a prediction folder: its lock, the done marker of each case (what
//! `--skip-existing` trusts) and the list of failed cases (`failures.json`).

use anyhow::{Context, Result};
use medseg_infer::{DirLock, LockMode, PredictionLayout};
use serde::{Deserialize, Serialize};
use std::fs::{OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// Locks the prediction folder for this run: alone (exclusive), or as shard `I/N` (a shared
/// lock on the folder, so shards run side by side but exclude a whole-folder run, and an
/// exclusive one on the shard, so the same shard never runs twice). Warnings about stale
/// locks taken over are printed.
pub fn lock_output(
    layout: &PredictionLayout,
    shard: Option<(usize, usize)>,
) -> Result<Vec<DirLock>> {
    let fix = "choose another --output";
    let mut locks = Vec::new();
    let mode = if shard.is_some() {
        LockMode::Shared
    } else {
        LockMode::Exclusive
    };
    match DirLock::acquire(&layout.lock(), mode, "medseg predict", fix) {
        Ok(l) => locks.push(l),
        Err(e) => {
            let shards = live_shard_holders(layout);
            return Err(if shards.is_empty() {
                e.into()
            } else {
                anyhow::anyhow!("{e} (running: {})", shards.join("; "))
            });
        }
    }
    if let Some((i, n)) = shard {
        let what = format!("medseg predict --shard {i}/{n}");
        locks.push(DirLock::acquire(
            &layout.shard_lock(i, n),
            LockMode::Exclusive,
            &what,
            fix,
        )?);
    }
    for l in &locks {
        if let Some(stale) = l.stale_holder() {
            eprintln!(
                "warning: {}: taking over the lock left by {stale}, which is no longer running",
                l.path().display()
            );
        }
    }
    Ok(locks)
}

/// The holder lines of shard locks held right now (a shared folder lock has no line of its
/// own, so these say who holds it).
fn live_shard_holders(layout: &PredictionLayout) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(layout.state_dir()) else {
        return Vec::new();
    };
    let mut holders = Vec::new();
    for p in entries.flatten().map(|e| e.path()) {
        let is_shard = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("shard-"));
        if !is_shard {
            continue;
        }
        let Ok(f) = OpenOptions::new().read(true).open(&p) else {
            continue;
        };
        // Free to lock: that shard ended (cleanly, or killed); busy: it is running.
        if matches!(f.try_lock_shared(), Err(TryLockError::WouldBlock))
            && let Ok(line) = std::fs::read_to_string(&p)
        {
            holders.push(line.trim().to_string());
        }
    }
    holders.sort();
    holders
}

/// `.medseg/CASE.done`: written after every output of a case, with each output's size, so
/// `--skip-existing` trusts only a case whose outputs all exist and are whole.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct DoneMarker {
    /// Each output, relative to the prediction folder, with its size in bytes.
    pub outputs: Vec<DoneOutput>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct DoneOutput {
    pub path: PathBuf,
    pub bytes: u64,
}

impl DoneMarker {
    /// The marker of the outputs `files` (inside `layout`'s folder) as they are now.
    pub fn of(layout: &PredictionLayout, files: &[PathBuf]) -> Result<Self> {
        let outputs = files
            .iter()
            .map(|f| {
                let bytes = std::fs::metadata(f)
                    .with_context(|| format!("reading {}", f.display()))?
                    .len();
                let path = f.strip_prefix(layout.root()).unwrap_or(f).to_path_buf();
                Ok(DoneOutput { path, bytes })
            })
            .collect::<Result<_>>()?;
        Ok(Self { outputs })
    }

    /// Writes the marker of `case` (temporary file, renamed).
    pub fn write(&self, layout: &PredictionLayout, case: &str) -> Result<()> {
        let path = layout.done_marker(case);
        let text = serde_json::to_string_pretty(self)?;
        medseg_volume::write_atomically(&path, |w| std::io::Write::write_all(w, text.as_bytes()))?;
        Ok(())
    }

    /// True when `case` has a marker naming each of `expected` (the outputs this run would
    /// write), and each of them exists with the size the marker recorded.
    pub fn is_done(layout: &PredictionLayout, case: &str, expected: &[PathBuf]) -> bool {
        let Ok(text) = std::fs::read_to_string(layout.done_marker(case)) else {
            return false;
        };
        let Ok(marker) = serde_json::from_str::<DoneMarker>(&text) else {
            return false;
        };
        expected.iter().all(|f| {
            let rel = f.strip_prefix(layout.root()).unwrap_or(f);
            marker
                .outputs
                .iter()
                .any(|o| o.path == rel && std::fs::metadata(f).is_ok_and(|m| m.len() == o.bytes))
        })
    }

    /// Removes the marker of `case` before its outputs are written again.
    pub fn clear(layout: &PredictionLayout, case: &str) -> Result<()> {
        let path = layout.done_marker(case);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        }
    }
}

/// A case that could not be predicted, as `failures.json` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Failure {
    pub case: String,
    pub inputs: Vec<PathBuf>,
    pub reason: String,
}

/// Writes the failure list to `path` (temporary file, renamed); with no failures, removes a
/// list left by an earlier run, so the folder never reports failures that are fixed.
pub fn write_failures(path: &Path, failures: &[Failure]) -> Result<()> {
    if failures.is_empty() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        };
    }
    let text = serde_json::to_string_pretty(&serde_json::json!({ "failures": failures }))?;
    medseg_volume::write_atomically(path, |w| std::io::Write::write_all(w, text.as_bytes()))?;
    Ok(())
}
