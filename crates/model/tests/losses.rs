//! Loss values and gradients against the MONAI / PyTorch references in
//! `tests/fixtures/losses/cases.json` (see its README for formulas and tolerances).

use medseg_config::LossConfig;
use medseg_model::burn::tensor::{Device, Int, Tensor, TensorData};
use medseg_model::{DeepSupervisionLoss, SegLoss, deep_supervision_weights};
use serde_json::Value;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/losses/cases.json"
);

fn fixture() -> Value {
    let text = std::fs::read_to_string(FIXTURE).expect("loss fixture present");
    serde_json::from_str(&text).expect("valid json")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// The `[loss]` settings that reproduce each fixture loss.
fn loss_config(name: &str, class_weights: &[f64]) -> LossConfig {
    let only = |dice: f64, ce: f64, focal: f64, iou: f64, tversky: f64| LossConfig {
        dice,
        ce,
        focal,
        iou,
        tversky,
        ..LossConfig::default()
    };
    match name {
        "ce" => only(0.0, 1.0, 0.0, 0.0, 0.0),
        "ce_weighted" => LossConfig {
            class_weights: Some(class_weights.to_vec()),
            ..only(0.0, 1.0, 0.0, 0.0, 0.0)
        },
        "dice" => only(1.0, 0.0, 0.0, 0.0, 0.0),
        "dice_bg" => LossConfig {
            include_background: true,
            ..only(1.0, 0.0, 0.0, 0.0, 0.0)
        },
        "dice_batch" => LossConfig {
            batch_dice: true,
            ..only(1.0, 0.0, 0.0, 0.0, 0.0)
        },
        "dice_squared" => LossConfig {
            squared_pred: true,
            ..only(1.0, 0.0, 0.0, 0.0, 0.0)
        },
        "iou" => only(0.0, 0.0, 0.0, 1.0, 0.0),
        "tversky" => LossConfig {
            tversky_alpha: 0.3,
            tversky_beta: 0.7,
            ..only(0.0, 0.0, 0.0, 0.0, 1.0)
        },
        "focal" => LossConfig {
            include_background: true,
            ..only(0.0, 0.0, 1.0, 0.0, 0.0)
        },
        "focal_alpha" => LossConfig {
            include_background: true,
            focal_alpha: Some(0.25),
            ..only(0.0, 0.0, 1.0, 0.0, 0.0)
        },
        "dice_ce" => LossConfig::default(),
        "dice_focal" => LossConfig {
            focal_mode: "sigmoid".into(),
            ..only(1.0, 0.0, 1.0, 0.0, 0.0)
        },
        other => panic!("fixture loss {other} has no config mapping"),
    }
}

/// Returns (value, gradient) of `loss` on the case's logits.
fn eval<const D: usize, const DL: usize>(
    loss: &SegLoss,
    shape: &[usize],
    logits: &[f64],
    target: &[i64],
) -> (f64, Vec<f64>) {
    let device = Device::flex().autodiff();
    let x: Tensor<D> = Tensor::from_data(
        TensorData::new(
            logits.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            shape.to_vec(),
        ),
        &device,
    )
    .require_grad();
    let mut lshape = vec![shape[0]];
    lshape.extend_from_slice(&shape[2..]);
    let y: Tensor<DL, Int> = Tensor::from_data(TensorData::new(target.to_vec(), lshape), &device);
    let l = loss.forward(x.clone(), y);
    let grads = l.backward();
    let value = l.into_scalar::<f32>() as f64;
    let g = x
        .grad(&grads)
        .expect("logits get a gradient")
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    (value, g.into_iter().map(f64::from).collect())
}

#[test]
fn every_loss_matches_monai_values_and_gradients() {
    let fx = fixture();
    let mut checked = 0;
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let shape: Vec<usize> = case["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let logits = floats(&case["logits"]);
        let target: Vec<i64> = case["target"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let cw = floats(&case["ce_class_weights"]);
        for (loss_name, expected) in case["expected"].as_object().unwrap() {
            let expected = expected.as_f64().unwrap();
            let grad_ref = floats(&case["grad"][loss_name]);
            let loss = SegLoss::from_config(&loss_config(loss_name, &cw), shape[1]).unwrap();
            let (v, g) = match shape.len() {
                4 => eval::<4, 3>(&loss, &shape, &logits, &target),
                5 => eval::<5, 4>(&loss, &shape, &logits, &target),
                r => panic!("rank {r}"),
            };
            let rel = (v - expected).abs() / expected.abs().max(1e-12);
            assert!(
                rel < 1e-5,
                "{name}/{loss_name}: value {v} vs {expected} (rel {rel:e})"
            );
            assert_eq!(g.len(), grad_ref.len());
            for (i, (a, b)) in g.iter().zip(&grad_ref).enumerate() {
                let err = (a - b).abs();
                assert!(
                    err < 1e-6 || err < 1e-4 * b.abs(),
                    "{name}/{loss_name}: grad[{i}] {a} vs {b}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(
        checked,
        6 * 12,
        "every case and loss of the fixture was checked"
    );
}

#[test]
fn deep_supervision_weights_match_nnunet() {
    let fx = fixture();
    for (n, w) in fx["deep_supervision_weights"].as_object().unwrap() {
        let n: usize = n.parse().unwrap();
        let ours = deep_supervision_weights(n);
        for (a, b) in ours.iter().zip(floats(w)) {
            assert!((a - b).abs() < 1e-15, "n={n}: {ours:?}");
        }
    }
    assert_eq!(deep_supervision_weights(1), vec![1.0]);
}

#[test]
fn ignored_voxels_do_not_count() {
    // Same logits twice; in the second call one voxel's label is the ignore label. The loss must
    // equal the loss over the other voxels only, and that voxel's gradient must be zero.
    let device = Device::flex().autodiff();
    let logits: Vec<f32> = (0..2 * 3 * 4)
        .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.3)
        .collect();
    let labels = [0i64, 1, 2, 1];
    let cfg = LossConfig {
        ignore_label: Some(9),
        focal: 0.5,
        tversky: 0.5,
        ..LossConfig::default()
    };
    let loss = SegLoss::from_config(&cfg, 3).unwrap();
    // reference: drop voxel 3 from the data altogether
    let x_ref: Tensor<3> = Tensor::from_data(
        TensorData::new(
            (0..2)
                .flat_map(|b| (0..3).flat_map(move |c| (0..3).map(move |n| (b, c, n))))
                .map(|(b, c, n)| logits[b * 12 + c * 4 + n])
                .collect::<Vec<_>>(),
            [2, 3, 3],
        ),
        &device,
    );
    let y_ref: Tensor<2, Int> = Tensor::from_data(
        TensorData::new([0i64, 1, 2, 0, 1, 2].to_vec(), [2, 3]),
        &device,
    );
    let expected = loss.forward(x_ref, y_ref).into_scalar::<f32>();
    let x: Tensor<3> =
        Tensor::from_data(TensorData::new(logits.clone(), [2, 3, 4]), &device).require_grad();
    let y: Tensor<2, Int> = Tensor::from_data(
        TensorData::new(
            [labels[0], labels[1], labels[2], 9, 0, 1, 2, 9].to_vec(),
            [2, 4],
        ),
        &device,
    );
    let l = loss.forward(x.clone(), y);
    let grads = l.backward();
    let got = l.into_scalar::<f32>();
    assert!(
        (got - expected).abs() < 1e-5 * expected.abs(),
        "{got} vs {expected}"
    );
    let g = x
        .grad(&grads)
        .unwrap()
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    for b in 0..2 {
        for c in 0..3 {
            assert_eq!(g[b * 12 + c * 4 + 3], 0.0, "ignored voxel has no gradient");
        }
    }
}

#[test]
fn deep_supervision_wrapper_downsamples_targets_and_weights_terms() {
    let device = Device::flex();
    let labels: Tensor<4, Int> = Tensor::from_data(
        TensorData::new(
            (0..64).map(|i| (i % 3) as i64).collect::<Vec<_>>(),
            [1, 4, 4, 4],
        ),
        &device,
    );
    let full = Tensor::<5>::random(
        [1, 3, 4, 4, 4],
        medseg_model::burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let half = Tensor::<5>::random(
        [1, 3, 2, 2, 2],
        medseg_model::burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let quarter = Tensor::<5>::random(
        [1, 3, 1, 1, 1],
        medseg_model::burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let loss = SegLoss::dice_ce(3);
    let ds = DeepSupervisionLoss::new(loss.clone(), 3);
    let total = ds
        .forward(vec![full.clone(), half.clone(), quarter], labels.clone())
        .unwrap()
        .into_scalar::<f32>();
    let l0 = loss.forward(full, labels.clone()).into_scalar::<f32>();
    let y_half = medseg_model::downsample_labels(labels, [2, 2, 2]).unwrap();
    let expect_labels: Vec<i64> = (0..2)
        .flat_map(|d| {
            (0..2).flat_map(move |h| (0..2).map(move |w| ((d * 32 + h * 8 + w * 2) % 3) as i64))
        })
        .collect();
    assert_eq!(
        y_half
            .clone()
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .unwrap(),
        expect_labels
    );
    let l1 = loss.forward(half, y_half).into_scalar::<f32>();
    let want = 2.0 / 3.0 * l0 + 1.0 / 3.0 * l1;
    assert!((total - want).abs() < 1e-5, "{total} vs {want}");
}

#[test]
fn bad_loss_configs_are_errors() {
    let bad = [
        LossConfig {
            class_weights: Some(vec![1.0, 2.0]),
            ..LossConfig::default()
        },
        LossConfig {
            dice: 0.0,
            ce: 0.0,
            ..LossConfig::default()
        },
        LossConfig {
            ce: -1.0,
            ..LossConfig::default()
        },
        LossConfig {
            focal_mode: "tanh".into(),
            ..LossConfig::default()
        },
        LossConfig {
            focal_alpha: Some(1.5),
            ..LossConfig::default()
        },
    ];
    for cfg in bad {
        assert!(SegLoss::from_config(&cfg, 3).is_err(), "{cfg:?} accepted");
    }
    assert!(SegLoss::from_config(&LossConfig::default(), 1).is_err());
}
