//! The training log (`train_log.csv`) and its picture (`curves.png`).

use crate::{ClassLabels, TrainError};
use medseg_eval::plots::DrawResult;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// One epoch's line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    pub train_loss: f64,
    /// Learning rate at the end of the epoch.
    pub learning_rate: f64,
    /// Wall-clock seconds of the epoch (training + validation).
    pub seconds: f64,
    /// Per-class validation Dice (label id as text -> Dice) when validated this epoch.
    pub val_dice: Option<BTreeMap<String, f64>>,
    /// Foreground-mean validation Dice when validated this epoch.
    pub val_dice_mean: Option<f64>,
}

/// Writes `train_log.csv`: epoch, train_loss, val_dice_mean, one `val_dice_<name>` column per
/// foreground label, learning_rate, seconds. Empty cells where an epoch was not validated.
pub fn write_csv(
    path: &Path,
    records: &[EpochRecord],
    labels: &ClassLabels,
) -> Result<(), TrainError> {
    let mut s = String::from("epoch,train_loss,val_dice_mean");
    for (_, n) in labels.iter() {
        s.push_str(&format!(",val_dice_{n}"));
    }
    s.push_str(",learning_rate,seconds\n");
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
    for r in records {
        s.push_str(&format!(
            "{},{:.6},{}",
            r.epoch,
            r.train_loss,
            opt(r.val_dice_mean)
        ));
        for (l, _) in labels.iter() {
            s.push(',');
            s.push_str(&opt(r
                .val_dice
                .as_ref()
                .and_then(|d| d.get(&l.to_string()).copied())));
        }
        s.push_str(&format!(",{:.3e},{:.2}\n", r.learning_rate, r.seconds));
    }
    medseg_volume::write_atomically(path, |w| std::io::Write::write_all(w, s.as_bytes()))?;
    Ok(())
}

/// Okabe-Ito colours for the per-class Dice lines.
const PALETTE: [plotters::style::RGBColor; 6] = [
    plotters::style::RGBColor(230, 159, 0),
    plotters::style::RGBColor(86, 180, 233),
    plotters::style::RGBColor(0, 158, 115),
    plotters::style::RGBColor(213, 94, 0),
    plotters::style::RGBColor(204, 121, 167),
    plotters::style::RGBColor(0, 114, 178),
];

type Area<'a> =
    plotters::drawing::DrawingArea<plotters::backend::BitMapBackend<'a>, plotters::coord::Shift>;

/// Draws `curves.png`: training loss (left) and validation Dice per class and foreground mean
/// (right) over epochs.
pub fn write_curves(
    path: &Path,
    records: &[EpochRecord],
    labels: &ClassLabels,
) -> Result<(), TrainError> {
    if records.is_empty() {
        return Ok(());
    }
    let last_epoch = records.last().map(|r| r.epoch).unwrap_or(1).max(2) as f64;
    medseg_eval::plots::render_atomically(path, (1100, 420), |root| {
        let (left, right) = root.split_horizontally(550);
        draw_loss(&left, records, last_epoch)?;
        draw_dice(&right, records, labels, last_epoch)
    })?;
    Ok(())
}

/// The finite training losses and a y range that shows them all (starting at 0).
fn loss_points(records: &[EpochRecord]) -> (Vec<(f64, f64)>, std::ops::Range<f64>) {
    let losses: Vec<(f64, f64)> = records
        .iter()
        .filter(|r| r.train_loss.is_finite())
        .map(|r| (r.epoch as f64, r.train_loss))
        .collect();
    let (lmin, lmax) = losses
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &(_, v)| {
            (a.min(v), b.max(v))
        });
    let range = if lmin.is_finite() {
        let top = if lmax > lmin { lmax * 1.05 } else { lmin + 1.0 };
        lmin.min(0.0)..top
    } else {
        0.0..1.0
    };
    (losses, range)
}

fn draw_loss(area: &Area, records: &[EpochRecord], last_epoch: f64) -> DrawResult {
    use plotters::prelude::*;
    let (losses, range) = loss_points(records);
    let mut c = ChartBuilder::on(area)
        .caption("training loss", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(1f64..last_epoch, range)?;
    c.configure_mesh().x_desc("epoch").y_desc("loss").draw()?;
    c.draw_series(LineSeries::new(losses, BLACK.stroke_width(2)))?;
    Ok(())
}

fn draw_dice(
    area: &Area,
    records: &[EpochRecord],
    labels: &ClassLabels,
    last_epoch: f64,
) -> DrawResult {
    use plotters::prelude::*;
    let mut d = ChartBuilder::on(area)
        .caption("validation Dice (whole volumes)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(45)
        .build_cartesian_2d(1f64..last_epoch, 0f64..1f64)?;
    d.configure_mesh().x_desc("epoch").y_desc("Dice").draw()?;
    for (i, (l, name)) in labels.iter().enumerate() {
        let pts: Vec<(f64, f64)> = records
            .iter()
            .filter_map(|r| {
                r.val_dice
                    .as_ref()
                    .and_then(|m| m.get(&l.to_string()))
                    .map(|v| (r.epoch as f64, *v))
            })
            .collect();
        let col = PALETTE[i % PALETTE.len()];
        d.draw_series(LineSeries::new(pts.clone(), col.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(2)));
        d.draw_series(pts.iter().map(|&p| Circle::new(p, 3, col.filled())))?;
    }
    let mean: Vec<(f64, f64)> = records
        .iter()
        .filter_map(|r| r.val_dice_mean.map(|v| (r.epoch as f64, v)))
        .collect();
    d.draw_series(LineSeries::new(mean, BLACK.stroke_width(3)))?
        .label("foreground mean")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.stroke_width(3)));
    d.configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
