//! PNG plots: box plots of Dice and HD95 per label across cases, and ROC curves.
//!
//! Text uses DejaVu Sans shipped in `assets/` (registered with plotters' `ab_glyph` backend),
//! so the plots look the same everywhere and need no system fonts.

use crate::cases::Evaluation;
use crate::distances::percentile;
use crate::error::EvalError;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use std::path::Path;
use std::sync::Once;

/// DejaVu Sans (Bitstream Vera licence, see `assets/DejaVuSans-LICENSE.txt`).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

/// Registers the shipped font with plotters (once per process); every medseg plot calls it.
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Registered as "sans-serif", the family plotters uses by default for axis labels.
        // The font is a compile-time constant; a parse failure would show at the first plot.
        let _ = register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

/// What a drawing step returns: plotters' own error (or a message) boxed, kept as the source of
/// [`EvalError::Plot`].
pub type DrawResult = Result<(), medseg_volume::BoxedError>;

/// Renders into a temporary file next to `path`, then renames it into place (shared by
/// every medseg plot, e.g. training curves).
pub fn render_atomically(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(DrawingArea<BitMapBackend, plotters::coord::Shift>) -> DrawResult,
) -> Result<(), EvalError> {
    register();
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp.png", std::process::id()));
    let result = (|| -> DrawResult {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        root.fill(&WHITE)?;
        draw(root.clone())?;
        root.present()?;
        Ok(std::fs::rename(&tmp, path)?)
    })();
    result.map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        EvalError::Plot {
            path: path.to_path_buf(),
            source,
        }
    })
}

fn label_text(ev: &Evaluation, l: u16) -> String {
    match ev.label_names.get(&l) {
        Some(n) => format!("{l}: {n}"),
        None => format!("label {l}"),
    }
}

/// Box plots (quartiles by linear interpolation, whiskers at 1.5 IQR, every case as a dot) of
/// Dice and HD95 per label across cases.
pub fn box_plots(ev: &Evaluation, path: &Path) -> Result<(), EvalError> {
    let n = ev.labels.len().max(1);
    let width = (320 + 160 * n as u32).min(2400);
    render_atomically(path, (2 * width, 520), |root| {
        let panels = root.split_evenly((1, 2));
        for (panel, metric) in panels.iter().zip(["dice", "hd95"]) {
            let series: Vec<Vec<f64>> = ev
                .labels
                .iter()
                .map(|l| {
                    ev.cases
                        .iter()
                        .filter_map(|c| c.labels.get(l).and_then(|m| m.get(metric)))
                        .collect()
                })
                .collect();
            let ymax = match metric {
                "dice" => 1.05,
                _ => {
                    series
                        .iter()
                        .flatten()
                        .copied()
                        .fold(0.0, f64::max)
                        .max(1.0)
                        * 1.08
                }
            };
            let title = match metric {
                "dice" => "Dice per label",
                _ => "HD95 (mm) per label",
            };
            let mut chart = ChartBuilder::on(panel)
                .caption(title, (FAMILY, 24))
                .margin(14)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..ymax)?;
            let labels = ev.labels.clone();
            let names: Vec<String> = labels.iter().map(|&l| label_text(ev, l)).collect();
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(n)
                .x_label_formatter(&|x| {
                    let i = x.round();
                    if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
                        names[i as usize].clone()
                    } else {
                        String::new()
                    }
                })
                .y_desc(if metric == "dice" {
                    "Dice"
                } else {
                    "HD95 (mm)"
                })
                .label_style((FAMILY, 15))
                .draw()?;
            for (x, values) in series.iter().enumerate() {
                draw_box(&mut chart, x as f64, values)?;
            }
        }
        Ok(())
    })
}

type Chart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

fn draw_box(chart: &mut Chart, x: f64, values: &[f64]) -> DrawResult {
    let color = RGBColor(49, 104, 173);
    if !values.is_empty() {
        let mut v = values.to_vec();
        let q1 = percentile(&mut v, 25.0);
        let med = percentile(&mut v, 50.0);
        let q3 = percentile(&mut v, 75.0);
        let iqr = q3 - q1;
        let lo = v
            .iter()
            .copied()
            .filter(|&y| y >= q1 - 1.5 * iqr)
            .fold(f64::INFINITY, f64::min);
        let hi = v
            .iter()
            .copied()
            .filter(|&y| y <= q3 + 1.5 * iqr)
            .fold(f64::NEG_INFINITY, f64::max);
        let w = 0.28;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(x - w, q1), (x + w, q3)],
            color.mix(0.25).filled(),
        )))?;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(x - w, q1), (x + w, q3)],
            color.stroke_width(2),
        )))?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(x - w, med), (x + w, med)],
            RED.stroke_width(3),
        )))?;
        for (a, b) in [(lo, q1), (q3, hi)] {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(x, a), (x, b)],
                color.stroke_width(2),
            )))?;
            chart.draw_series(std::iter::once(PathElement::new(
                vec![
                    (x - w / 2.0, if a == lo { a } else { b }),
                    (x + w / 2.0, if a == lo { a } else { b }),
                ],
                color.stroke_width(2),
            )))?;
        }
    }
    // Every case as a dot, spread deterministically across the box width.
    let n = values.len().max(1) as f64;
    chart.draw_series(values.iter().enumerate().map(|(i, &y)| {
        let dx = if n > 1.0 {
            -0.2 + 0.4 * i as f64 / (n - 1.0)
        } else {
            0.0
        };
        Circle::new((x + dx, y), 3, BLACK.mix(0.6).filled())
    }))?;
    Ok(())
}

/// ROC curves per label: each case's voxel-level curve (thin) and the case-level curve (thick).
pub fn roc_curves(ev: &Evaluation, path: &Path) -> Result<(), EvalError> {
    let n = ev.labels.len().max(1);
    let cols = n.min(3);
    let rows = n.div_ceil(cols);
    render_atomically(path, (480 * cols as u32, 500 * rows as u32), |root| {
        let panels = root.split_evenly((rows, cols));
        for (panel, &l) in panels.iter().zip(&ev.labels) {
            let case_auc = ev.case_level.get(&l).and_then(|c| c.auc);
            let voxel_aucs: Vec<f64> = ev
                .cases
                .iter()
                .filter_map(|c| c.labels.get(&l).and_then(|m| m.auc))
                .collect();
            let fmt = |v: Option<f64>| v.map_or("n/a".to_string(), |x| format!("{x:.3}"));
            let mean_voxel = (!voxel_aucs.is_empty())
                .then(|| voxel_aucs.iter().sum::<f64>() / voxel_aucs.len() as f64);
            let mut chart = ChartBuilder::on(panel)
                .caption(label_text(ev, l), (FAMILY, 22))
                .margin(14)
                .x_label_area_size(40)
                .y_label_area_size(50)
                .build_cartesian_2d(0f64..1f64, 0f64..1.0001f64)?;
            chart
                .configure_mesh()
                .x_desc("false positive rate")
                .y_desc("true positive rate")
                .label_style((FAMILY, 14))
                .draw()?;
            chart.draw_series(LineSeries::new(
                vec![(0.0, 0.0), (1.0, 1.0)],
                BLACK.mix(0.3),
            ))?;
            let mut first = true;
            for c in &ev.cases {
                if let Some(curve) = c.roc_curves.get(&l) {
                    let s = chart.draw_series(LineSeries::new(
                        curve.iter().map(|p| (p[0], p[1])),
                        RGBColor(49, 104, 173).mix(0.5).stroke_width(1),
                    ))?;
                    if first {
                        s.label(format!("voxel ROC per case (mean AUC {})", fmt(mean_voxel)))
                            .legend(|(x, y)| {
                                PathElement::new(vec![(x, y), (x + 18, y)], RGBColor(49, 104, 173))
                            });
                        first = false;
                    }
                }
            }
            if let Some(cl) = ev.case_level.get(&l).filter(|c| !c.roc_curve.is_empty()) {
                chart
                    .draw_series(LineSeries::new(
                        cl.roc_curve.iter().map(|p| (p[0], p[1])),
                        RED.stroke_width(3),
                    ))?
                    .label(format!("case level (AUC {})", fmt(case_auc)))
                    .legend(|(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], RED.stroke_width(3))
                    });
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .label_font((FAMILY, 14))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.4))
                .draw()?;
        }
        Ok(())
    })
}
