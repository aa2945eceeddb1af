//! Background data loading: worker threads sample patches (foreground oversampling), augment
//! them and send whole batches through a bounded channel.
//!
//! Batch `i` of epoch `e` is drawn from an RNG seeded by `(seed, e, i)` alone, and the
//! consumer takes batches in index order, so the batch sequence does not depend on thread
//! scheduling: the same config and seed give the same batches (and, on one machine, the same
//! loss curve), and `--resume` regenerates an epoch exactly.

use crate::TrainError;
use crate::cache::CachedCase;
use medseg_preprocess::{Augmenter, PatchSampler};
use ndarray::{Array4, Array5, Axis};
use rand::Rng;
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// One batch: images `[b, c, d, h, w]` and labels `[b, d, h, w]`.
pub struct Batch {
    pub index: usize,
    pub image: Array5<f32>,
    pub label: Array4<u16>,
}

/// How batches are drawn.
#[derive(Clone)]
pub struct LoaderSettings {
    /// Patch `[k, j, i]`.
    pub patch_kji: [usize; 3],
    pub batch_size: usize,
    pub foreground_fraction: f64,
    pub augmenter: Augmenter,
    pub seed: u64,
    /// Worker threads (at least 1).
    pub workers: usize,
}

/// Seed of batch `index` of `epoch` (SplitMix64 finalizer over the three numbers).
pub fn batch_seed(seed: u64, epoch: usize, index: usize) -> u64 {
    let mut z = seed
        ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Draws batch `index` of `epoch`.
pub fn make_batch(
    cases: &[CachedCase],
    s: &LoaderSettings,
    epoch: usize,
    index: usize,
) -> Result<Batch, TrainError> {
    if cases.is_empty() {
        return Err(TrainError::Config("no training cases".into()));
    }
    let mut sampler = PatchSampler::new(
        s.patch_kji,
        s.foreground_fraction,
        batch_seed(s.seed, epoch, index),
    );
    let c = cases[0].image.shape()[0];
    let [pd, ph, pw] = s.patch_kji;
    let mut image = Array5::<f32>::zeros((s.batch_size, c, pd, ph, pw));
    let mut label = Array4::<u16>::zeros((s.batch_size, pd, ph, pw));
    for b in 0..s.batch_size {
        let ci = sampler.rng().random_range(0..cases.len());
        let case = &cases[ci];
        let fg = sampler.force_foreground(b, s.batch_size);
        let (mut img, mut lab) = sampler.sample(
            case.image.view(),
            case.label.view(),
            Some(&case.locations),
            fg,
        );
        s.augmenter
            .apply(&mut img, &mut lab, sampler.rng())
            .map_err(|e| TrainError::Case {
                case: case.name.clone(),
                reason: e.to_string(),
            })?;
        image.index_axis_mut(Axis(0), b).assign(&img);
        label.index_axis_mut(Axis(0), b).assign(&lab);
    }
    Ok(batch_result(index, image, label))
}

fn batch_result(index: usize, image: Array5<f32>, label: Array4<u16>) -> Batch {
    Batch {
        index,
        image,
        label,
    }
}

/// Runs `consume` on batches `0..count` of `epoch`, in order, while `settings.workers`
/// threads prepare the next ones (at most two per worker wait in the channel). An error in a
/// worker stops the epoch with the case name and the cause; `consume` returning an error or
/// [`ControlFlow::Break`] stops the workers, and the result says which batches ran:
/// `Continue` when all `count` did, `Break` when `consume` stopped early.
pub fn for_each_batch(
    cases: &[CachedCase],
    settings: &LoaderSettings,
    epoch: usize,
    count: usize,
    consume: &mut dyn FnMut(Batch) -> Result<ControlFlow<()>, TrainError>,
) -> Result<ControlFlow<()>, TrainError> {
    let workers = settings.workers.max(1);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (tx, rx): (SyncSender<Result<Batch, TrainError>>, Receiver<_>) =
            sync_channel(2 * workers);
        for w in 0..workers {
            let tx = tx.clone();
            let stop = &stop;
            scope.spawn(move || {
                let mut i = w;
                while i < count && !stop.load(Ordering::Relaxed) {
                    let r = make_batch(cases, settings, epoch, i);
                    let failed = r.is_err();
                    if tx.send(r).is_err() || failed {
                        break;
                    }
                    i += workers;
                }
            });
        }
        drop(tx);
        let result = (|| {
            let mut pending: BTreeMap<usize, Batch> = BTreeMap::new();
            let mut next = 0;
            while next < count {
                if let Some(b) = pending.remove(&next) {
                    next += 1;
                    if consume(b)?.is_break() {
                        return Ok(ControlFlow::Break(()));
                    }
                    continue;
                }
                match rx.recv() {
                    Ok(Ok(b)) => {
                        pending.insert(b.index, b);
                    }
                    Ok(Err(e)) => return Err(e),
                    Err(_) => {
                        return Err(TrainError::Config(
                            "data loading workers stopped early".into(),
                        ));
                    }
                }
            }
            Ok(ControlFlow::Continue(()))
        })();
        stop.store(true, Ordering::Relaxed);
        drop(rx);
        result
    })
}
