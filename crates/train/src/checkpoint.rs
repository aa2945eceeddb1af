//! The last checkpoint as one unit: weights, optimizer state and training state of the same
//! moment, or none of them.
//!
//! Three files renamed one after the other can mix epochs when the process dies between two
//! renames (weights of epoch 5 with the training state of epoch 4). So a checkpoint is a
//! folder: written whole as `.checkpoint_last.tmp/`, then the previous `checkpoint_last/` is
//! moved aside to `.checkpoint_last.old/`, the new folder renamed into place and the old one
//! removed. (A folder cannot be renamed over a non-empty one, hence the step aside.) After a
//! kill at any step [`RunLayout::last_checkpoint`] finds one complete checkpoint: the new one,
//! or the previous one. Only one process writes a run at a time (the run's lock), so the
//! staging and aside folders have fixed names.

use crate::TrainError;
use crate::state::TrainState;
use medseg_infer::RunLayout;
use std::path::Path;

/// The steps of [`save_checkpoint`], each reported to its hook once done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveStep {
    /// The weights are written into the staging folder.
    WeightsWritten,
    /// The optimizer state is written into the staging folder.
    OptimizerWritten,
    /// The training state is written into the staging folder.
    StateWritten,
    /// The previous `checkpoint_last/` is moved aside.
    PreviousMovedAside,
    /// The staging folder is renamed to `checkpoint_last/`.
    Committed,
    /// The previous checkpoint (and any older flat checkpoint file) is removed.
    PreviousRemoved,
}

impl SaveStep {
    /// Every step, in order.
    pub const ALL: [SaveStep; 6] = [
        SaveStep::WeightsWritten,
        SaveStep::OptimizerWritten,
        SaveStep::StateWritten,
        SaveStep::PreviousMovedAside,
        SaveStep::Committed,
        SaveStep::PreviousRemoved,
    ];
}

/// Called after each step; an error stops the save right there, as a kill would (tests use
/// it to check that every step leaves a usable checkpoint).
pub type SaveHook<'a> = &'a mut dyn FnMut(SaveStep) -> std::io::Result<()>;

/// Writes one file of a checkpoint to the path it is given.
pub type WriteFile<'a> = &'a dyn Fn(&Path) -> Result<(), TrainError>;

/// Saves a checkpoint (weights and optimizer state through their writers, then `state`) as
/// `checkpoint_last/`, replacing the previous one atomically.
pub fn save_checkpoint(
    run: &RunLayout,
    write_weights: WriteFile,
    write_optimizer: WriteFile,
    state: &TrainState,
    hook: SaveHook,
) -> Result<(), TrainError> {
    let step = |hook: &mut dyn FnMut(SaveStep) -> std::io::Result<()>, s: SaveStep| {
        hook(s).map_err(|e| TrainError::io(run.root(), e))
    };
    let staging = run.checkpoint_staging_dir();
    // A staging folder left by a kill is incomplete by definition.
    remove_dir_if_present(&staging)?;
    std::fs::create_dir_all(&staging).map_err(|e| TrainError::io(&staging, e))?;
    let files = RunLayout::checkpoint_in(&staging);
    write_weights(&files.weights)?;
    sync_file(&files.weights)?;
    step(hook, SaveStep::WeightsWritten)?;
    if let Some(optimizer) = &files.optimizer {
        write_optimizer(optimizer)?;
        sync_file(optimizer)?;
    }
    step(hook, SaveStep::OptimizerWritten)?;
    state.save(&files.state)?;
    sync_dir(&staging);
    step(hook, SaveStep::StateWritten)?;

    let (last, previous) = (run.checkpoint_last_dir(), run.checkpoint_previous_dir());
    if last.is_dir() {
        // `last` exists, so an aside folder from an earlier kill is no longer needed.
        remove_dir_if_present(&previous)?;
        std::fs::rename(&last, &previous).map_err(|e| TrainError::io(&last, e))?;
        sync_dir(run.root());
    }
    step(hook, SaveStep::PreviousMovedAside)?;
    std::fs::rename(&staging, &last).map_err(|e| TrainError::io(&last, e))?;
    sync_dir(run.root());
    step(hook, SaveStep::Committed)?;
    remove_dir_if_present(&previous)?;
    for old in run.legacy_checkpoint_files() {
        if old.is_file() {
            std::fs::remove_file(&old).map_err(|e| TrainError::io(&old, e))?;
        }
    }
    step(hook, SaveStep::PreviousRemoved)
}

/// The no-op hook of a real save.
pub fn no_hook(_: SaveStep) -> std::io::Result<()> {
    Ok(())
}

fn remove_dir_if_present(dir: &Path) -> Result<(), TrainError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(TrainError::io(dir, e)),
        _ => Ok(()),
    }
}

/// Flushes a written file to disk, so a renamed folder never holds a file the OS lost.
fn sync_file(path: &Path) -> Result<(), TrainError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| TrainError::io(path, e))
}

/// Flushes a folder's entries (renames) where the OS allows it; best effort, since not every
/// platform can open a folder.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
