//! A small UNet must drive Dice on one synthetic patch above 0.95 within a bounded number of
//! Adam steps (Dice+CE, as in training).

use medseg_config::ModelConfig;
use medseg_model::burn::module::Module;
use medseg_model::burn::optim::{AdamConfig, GradientsParams};
use medseg_model::burn::tensor::{Device, Int, Tensor, TensorData};
use medseg_model::{DeepSupervisionLoss, SegLoss, UNetConfig};

fn hard_dice(pred: &[i64], target: &[i64]) -> f64 {
    let inter = pred
        .iter()
        .zip(target)
        .filter(|(p, t)| **p == 1 && **t == 1)
        .count() as f64;
    let p = pred.iter().filter(|p| **p == 1).count() as f64;
    let t = target.iter().filter(|t| **t == 1).count() as f64;
    2.0 * inter / (p + t).max(1.0)
}

#[test]
fn small_unet_overfits_one_patch() {
    let device = Device::flex().autodiff();
    device.seed(7);
    let n = 32;
    // a disk and a square in a noisy background ramp; label = disk only
    let mut img = vec![0f32; n * n];
    let mut lab = vec![0i64; n * n];
    for y in 0..n {
        for x in 0..n {
            let (fy, fx) = (y as f32 - 12.0, x as f32 - 18.0);
            let disk = fy * fy + fx * fx < 36.0;
            let square = (22..28).contains(&y) && (4..10).contains(&x);
            let noise = (((y * 31 + x * 17) % 13) as f32 - 6.0) * 0.05;
            img[y * n + x] = x as f32 / n as f32 + noise + if disk || square { 1.0 } else { 0.0 };
            lab[y * n + x] = disk as i64;
        }
    }
    let x: Tensor<5> = Tensor::from_data(TensorData::new(img, [1, 1, 1, n, n]), &device);
    let y: Tensor<4, Int> = Tensor::from_data(TensorData::new(lab.clone(), [1, 1, n, n]), &device);
    let m = ModelConfig {
        dims: 2,
        features: Some(vec![8, 16, 32]),
        deep_supervision: true,
        ..ModelConfig::default()
    };
    let cfg = UNetConfig::from_model_config(&m, 1, 2, &[n, n]).unwrap();
    let mut model = cfg.init(&device);
    let loss = DeepSupervisionLoss::new(SegLoss::dice_ce(2), cfg.num_outputs());
    let mut optim = AdamConfig::new().init();
    let dice_of = |model: &medseg_model::UNet| {
        let pred = model.valid().forward_logits(x.clone().inner()).argmax(1);
        hard_dice(
            &pred
                .into_data()
                .convert::<i64>()
                .try_into_vec::<i64>()
                .unwrap(),
            &lab,
        )
    };
    let initial = dice_of(&model);
    assert!(
        initial < 0.5,
        "untrained network already segments the disk (Dice {initial})"
    );
    let mut best = 0.0;
    let mut steps = 0;
    for step in 1..=150 {
        let l = loss
            .forward(model.forward_train(x.clone()), y.clone())
            .unwrap();
        let grads = GradientsParams::from_grads(l.backward(), &model);
        model = optim.step(1e-2, model, grads);
        if step % 10 == 0 {
            let pred = model.valid().forward_logits(x.clone().inner()).argmax(1);
            let pred = pred
                .into_data()
                .convert::<i64>()
                .try_into_vec::<i64>()
                .unwrap();
            best = hard_dice(&pred, &lab);
            steps = step;
            if best > 0.95 {
                break;
            }
        }
    }
    eprintln!("Dice {initial:.3} -> {best:.3} after {steps} steps");
    assert!(best > 0.95, "Dice {best} after {steps} steps");
}
