//! Learning-rate schedules, evaluated per iteration (burn has no polynomial schedule, and a
//! closed form keeps `--resume` exact).

use medseg_config::ScheduleKind;

/// Learning rate at iteration `it` of `total`: linear warm-up over `warmup` iterations from
/// `base / warmup` to `base`, then `poly` (nnU-Net: `base * (1 - t)^0.9`), `cosine` (to 0) or
/// `constant`, with `t` the fraction of the post-warm-up iterations done.
pub fn learning_rate(kind: ScheduleKind, base: f64, it: usize, total: usize, warmup: usize) -> f64 {
    if it < warmup {
        return base * (it + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1);
    let t = ((it - warmup) as f64 / span as f64).clamp(0.0, 1.0);
    match kind {
        ScheduleKind::Constant => base,
        ScheduleKind::Poly => base * (1.0 - t).powf(0.9),
        ScheduleKind::Cosine => base * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        assert_eq!(learning_rate(ScheduleKind::Poly, 0.01, 0, 100, 0), 0.01);
        assert!(
            (learning_rate(ScheduleKind::Poly, 0.01, 50, 100, 0) - 0.01 * 0.5f64.powf(0.9)).abs()
                < 1e-12
        );
        assert!((learning_rate(ScheduleKind::Cosine, 1.0, 50, 100, 0) - 0.5).abs() < 1e-12);
        assert_eq!(learning_rate(ScheduleKind::Constant, 0.1, 99, 100, 0), 0.1);
        assert!((learning_rate(ScheduleKind::Constant, 0.1, 0, 100, 10) - 0.01).abs() < 1e-12);
    }
}
