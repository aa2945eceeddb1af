//! The last checkpoint is one unit: a kill at any step of a save leaves weights, optimizer
//! state and training state of one and the same epoch.

use medseg_infer::RunLayout;
use medseg_train::TrainError;
use medseg_train::checkpoint::{SaveStep, save_checkpoint};
use medseg_train::state::TrainState;
use std::path::Path;

/// Saves a checkpoint of `epoch` whose weights and optimizer files name the epoch, so a test
/// can tell which save each file comes from; `stop_at` fails the save after that step.
fn save(run: &RunLayout, epoch: usize, stop_at: Option<SaveStep>) -> Result<(), TrainError> {
    let write = |what: &'static str| {
        move |p: &Path| -> Result<(), TrainError> {
            std::fs::write(p, format!("{what} {epoch}")).unwrap();
            Ok(())
        }
    };
    let (weights, optimizer) = (write("weights"), write("optimizer"));
    let mut state = TrainState::new(1);
    state.epochs_done = epoch;
    let mut hook = |step: SaveStep| match stop_at {
        Some(s) if s == step => Err(std::io::Error::other("killed")),
        _ => Ok(()),
    };
    save_checkpoint(run, &weights, &optimizer, &state, &mut hook)
}

/// The epoch of the checkpoint resume would load; panics when its files disagree.
fn resumable_epoch(run: &RunLayout) -> usize {
    let c = run.last_checkpoint().expect("a checkpoint to resume from");
    let epoch = TrainState::load(&c.state).unwrap().epochs_done;
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    assert_eq!(read(&c.weights), format!("weights {epoch}"), "{c:?}");
    assert_eq!(
        read(c.optimizer.as_ref().unwrap()),
        format!("optimizer {epoch}"),
        "{c:?}"
    );
    epoch
}

#[test]
fn a_kill_at_any_step_of_a_save_leaves_one_consistent_checkpoint() {
    for stop in SaveStep::ALL {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunLayout::new(tmp.path());
        save(&run, 1, None).unwrap();
        assert!(save(&run, 2, Some(stop)).is_err());
        let epoch = resumable_epoch(&run);
        // Before the rename the previous checkpoint stands; after it, the new one.
        let committed = matches!(stop, SaveStep::Committed | SaveStep::PreviousRemoved);
        assert_eq!(
            epoch,
            if committed { 2 } else { 1 },
            "killed after {stop:?}"
        );
        // The next save after the kill succeeds and is the one resume sees.
        save(&run, 3, None).unwrap();
        assert_eq!(
            resumable_epoch(&run),
            3,
            "saving after a kill after {stop:?}"
        );
        assert!(!run.checkpoint_staging_dir().exists());
        assert!(!run.checkpoint_previous_dir().exists());
    }
}

#[test]
fn a_kill_during_the_first_save_leaves_no_checkpoint() {
    for stop in &SaveStep::ALL[..4] {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunLayout::new(tmp.path());
        assert!(save(&run, 1, Some(*stop)).is_err());
        assert_eq!(run.last_checkpoint(), None, "killed after {stop:?}");
    }
}

#[test]
fn a_folder_checkpoint_replaces_the_flat_files_of_an_older_run() {
    let tmp = tempfile::tempdir().unwrap();
    let run = RunLayout::new(tmp.path());
    let legacy = run.legacy_checkpoint_files();
    std::fs::write(&legacy[0], "weights 7").unwrap();
    std::fs::write(&legacy[1], "optimizer 7").unwrap();
    let mut state = TrainState::new(1);
    state.epochs_done = 7;
    state.save(&legacy[2]).unwrap();
    assert_eq!(resumable_epoch(&run), 7, "an older run resumes");
    save(&run, 8, None).unwrap();
    assert_eq!(resumable_epoch(&run), 8);
    assert!(legacy.iter().all(|p| !p.exists()), "stale flat files stay");
}
