//! Shapes of every variant in 2D and 3D, patch validation, max pooling, receptive field,
//! save/load round trips.

use medseg_config::{BottleneckKind, ModelConfig, NormKind};
use medseg_model::burn::tensor::{Device, Distribution, Tensor, TensorData};
use medseg_model::shapes::{self, LayerKind};
use medseg_model::{NetworkReport, UNetConfig};

fn small(dims: usize) -> ModelConfig {
    ModelConfig {
        dims,
        features: Some(vec![4, 8, 16]),
        ..ModelConfig::default()
    }
}

fn variants(dims: usize) -> Vec<(&'static str, ModelConfig)> {
    let b = small(dims);
    vec![
        ("plain+ds", b.clone()),
        (
            "no ds",
            ModelConfig {
                deep_supervision: false,
                ..b.clone()
            },
        ),
        (
            "maxpool",
            ModelConfig {
                downsample: "maxpool".into(),
                ..b.clone()
            },
        ),
        (
            "residual",
            ModelConfig {
                residual: true,
                ..b.clone()
            },
        ),
        (
            "attention",
            ModelConfig {
                attention_gates: true,
                ..b.clone()
            },
        ),
        (
            "dilated",
            ModelConfig {
                bottleneck: BottleneckKind::Dilated,
                dilations: vec![1, 2, 3],
                ..b.clone()
            },
        ),
        (
            "transformer",
            ModelConfig {
                bottleneck: BottleneckKind::Transformer,
                heads: 2,
                transformer_layers: 2,
                ..b.clone()
            },
        ),
        (
            "group norm + dropout",
            ModelConfig {
                norm: NormKind::Group,
                dropout: 0.2,
                ..b.clone()
            },
        ),
        (
            "batch norm",
            ModelConfig {
                norm: NormKind::Batch,
                ..b.clone()
            },
        ),
        (
            "everything",
            ModelConfig {
                residual: true,
                attention_gates: true,
                downsample: "maxpool".into(),
                bottleneck: BottleneckKind::Transformer,
                heads: 4,
                ..b
            },
        ),
    ]
}

fn check_variant(name: &str, m: &ModelConfig, patch: &[usize], device: &Device) {
    let cfg =
        UNetConfig::from_model_config(m, 2, 3, patch).unwrap_or_else(|e| panic!("{name}: {e}"));
    let net = cfg.init(device);
    let [d, h, w] = cfg.patch_size;
    let x = Tensor::<5>::random([2, 2, d, h, w], Distribution::Normal(0.0, 1.0), device);
    let outs = net.forward_train(x.clone());
    assert_eq!(outs.len(), cfg.num_outputs(), "{name}");
    // the shape walk predicts every output exactly
    let layers = shapes::plan_layers(&cfg, &cfg.patch_size).unwrap();
    let mut heads: Vec<[usize; 4]> = layers
        .iter()
        .filter(|l| l.kind == LayerKind::Head)
        .map(|l| l.out)
        .collect();
    heads.reverse();
    assert_eq!(heads.len(), outs.len(), "{name}");
    for (o, hshape) in outs.iter().zip(&heads) {
        let dims = o.dims();
        assert_eq!(dims[0], 2, "{name}");
        assert_eq!(&dims[1..], &hshape[..], "{name}");
    }
    assert_eq!(
        outs[0].dims(),
        [2, 3, d, h, w],
        "{name}: full resolution first"
    );
    let logits = net.forward_logits(x);
    assert_eq!(logits.dims(), [2, 3, d, h, w], "{name}");
    let v = logits
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    assert!(v.iter().all(|x| x.is_finite()), "{name}: finite logits");
}

#[test]
fn every_variant_2d() {
    let device = Device::flex();
    for (name, m) in variants(2) {
        check_variant(name, &m, &[16, 24], &device);
    }
}

#[test]
fn every_variant_3d() {
    let device = Device::flex();
    for (name, m) in variants(3) {
        check_variant(name, &m, &[8, 12, 16], &device);
    }
}

#[test]
fn variants_train_on_autodiff_device() {
    // one backward pass through each variant: gradients reach the first conv
    let device = Device::flex().autodiff();
    for (name, m) in variants(3) {
        let cfg = UNetConfig::from_model_config(&m, 1, 2, &[8, 8, 8]).unwrap();
        let net = cfg.init(&device);
        let x = Tensor::<5>::random([1, 1, 8, 8, 8], Distribution::Normal(0.0, 1.0), &device);
        let loss = net
            .forward_train(x)
            .into_iter()
            .map(|o| o.powf_scalar(2.0).mean())
            .reduce(|a, b| a + b)
            .unwrap();
        let grads = loss.backward();
        let w = match &net.encoder[0].blocks[0].conv {
            medseg_model::layers::ConvNd::D3(c) => c.weight.val(),
            medseg_model::layers::ConvNd::D2(_) => unreachable!(),
        };
        let g = w
            .grad(&grads)
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        let s = g.abs().sum().into_scalar::<f32>();
        assert!(s > 0.0 && s.is_finite(), "{name}: gradient {s}");
    }
}

#[test]
fn anisotropic_stages() {
    let m = ModelConfig {
        dims: 3,
        features: Some(vec![4, 8, 16, 16]),
        kernel_sizes: Some(vec![
            vec![1, 3, 3],
            vec![1, 3, 3],
            vec![3, 3, 3],
            vec![3, 3, 3],
        ]),
        strides: Some(vec![
            vec![1, 1, 1],
            vec![1, 2, 2],
            vec![2, 2, 2],
            vec![2, 2, 2],
        ]),
        ..ModelConfig::default()
    };
    let cfg = UNetConfig::from_model_config(&m, 1, 2, &[4, 16, 24]).unwrap();
    let report = NetworkReport::new(&cfg, 2).unwrap();
    let shapes: Vec<Vec<usize>> = report.encoder.iter().map(|s| s.shape.clone()).collect();
    assert_eq!(
        shapes,
        vec![
            vec![4, 4, 16, 24],
            vec![8, 4, 8, 12],
            vec![16, 2, 4, 6],
            vec![16, 1, 2, 3]
        ]
    );
    for down in ["conv", "maxpool"] {
        let cfg = UNetConfig::from_model_config(
            &ModelConfig {
                downsample: down.into(),
                ..m.clone()
            },
            1,
            2,
            &[4, 16, 24],
        )
        .unwrap();
        let net = cfg.init(&Device::flex());
        let y = net.forward_train(Tensor::<5>::zeros([1, 1, 4, 16, 24], &Device::flex()));
        let dims: Vec<[usize; 5]> = y.iter().map(|t| t.dims()).collect();
        assert_eq!(
            dims,
            vec![[1, 2, 4, 16, 24], [1, 2, 4, 8, 12], [1, 2, 2, 4, 6]],
            "{down}"
        );
    }
    // depth 4 is divisible by 2*2 = 4 (stages 2 and 3); depth 6 is not
    let err = UNetConfig::from_model_config(&m, 1, 2, &[6, 16, 24])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("patch 6 is not divisible by 4 at stage 3; nearest valid sizes: 4 or 8"),
        "{err}"
    );
}

#[test]
fn invalid_patch_names_nearest_sizes() {
    // nnU-Net's widths for a 5-stage plan; without features the plan has to decide them
    let five = ModelConfig {
        features: Some(vec![32, 64, 128, 256, 320]),
        ..ModelConfig::default()
    };
    let err = UNetConfig::from_model_config(&ModelConfig::default(), 1, 2, &[64, 64, 64])
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.features is not set"), "{err}");
    let m = ModelConfig {
        dims: 3,
        ..five.clone()
    }; // 32..320, 5 stages: factor 16
    let err = UNetConfig::from_model_config(&m, 1, 2, &[128, 100, 128])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("patch 100 is not divisible by 16 at stage 4; nearest valid sizes: 96 or 112"),
        "{err}"
    );
    let err = UNetConfig::from_model_config(&m, 1, 2, &[8, 128, 128])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("patch 8 is not divisible by 16 at stage 4; nearest valid size: 16"),
        "{err}"
    );
    assert!(UNetConfig::from_model_config(&m, 1, 2, &[96, 112, 128]).is_ok());
    let m2 = ModelConfig {
        dims: 2,
        ..five.clone()
    };
    assert!(
        UNetConfig::from_model_config(&m2, 1, 2, &[64, 64, 64]).is_err(),
        "3 axes for a 2D net"
    );
    assert!(UNetConfig::from_model_config(&m2, 1, 2, &[64, 72]).is_err());
    let bad = [
        ModelConfig {
            dims: 4,
            ..five.clone()
        },
        ModelConfig {
            features: Some(vec![8]),
            ..five.clone()
        },
        ModelConfig {
            kernel_sizes: Some(vec![vec![3, 3, 3]; 2]),
            ..five.clone()
        },
        ModelConfig {
            kernel_sizes: Some(vec![vec![2, 2, 2]; 5]),
            ..five.clone()
        },
        ModelConfig {
            bottleneck: BottleneckKind::Transformer,
            heads: 7,
            ..five.clone()
        },
        ModelConfig {
            downsample: "avg".into(),
            ..five.clone()
        },
        ModelConfig {
            dropout: 1.0,
            ..five.clone()
        },
    ];
    for b in bad {
        assert!(
            UNetConfig::from_model_config(&b, 1, 2, &[64, 64, 64]).is_err(),
            "{b:?} accepted"
        );
    }
}

#[test]
fn conv_formula() {
    // out = floor((in - k - (k-1)(d-1) + 2p) / s) + 1
    assert_eq!(shapes::conv_out(64, 3, 1, 1, 1), Some(64));
    assert_eq!(shapes::conv_out(64, 3, 2, 1, 1), Some(32));
    assert_eq!(shapes::conv_out(25, 3, 2, 1, 1), Some(13));
    assert_eq!(shapes::conv_out(10, 3, 1, 0, 2), Some(6));
    assert_eq!(shapes::conv_out(10, 3, 1, 2, 2), Some(10));
    assert_eq!(shapes::conv_out(7, 2, 2, 0, 1), Some(3));
    assert_eq!(shapes::conv_out(2, 5, 1, 0, 1), None);
    assert_eq!(shapes::conv_transpose_out(13, 2, 2, 0, 1), Some(26));
}

#[test]
fn parameter_count_of_a_small_unet() {
    // enc0: conv 1->4 (40) + IN (8) + conv 4->4 (148) + IN (8); enc1: conv 4->8 (296) + IN (16)
    // + conv 8->8 (584) + IN (16); dec0: up 8->4 2x2 (132) + conv 8->4 (292) + IN (8)
    // + conv 4->4 (148) + IN (8); head 4->2 (10)
    let cfg = UNetConfig::plain(2, 1, 2, &[4, 8], &[16, 16]).unwrap();
    assert_eq!(cfg.num_params(), 1714);
    assert_eq!(NetworkReport::new(&cfg, 1).unwrap().parameters, 1714);
}

#[test]
fn receptive_field_of_a_small_unet() {
    // 2 stages, k=3, stride 2 at stage 1: encoder 3x3 (rf 3), 3x3 (5), strided 3x3 (7, jump 2),
    // 3x3 at jump 2 (11); up (jump 1); decoder 3x3 twice (13, 15).
    let cfg = UNetConfig::plain(2, 1, 2, &[4, 8], &[16, 16]).unwrap();
    let layers = shapes::plan_layers(&cfg, &cfg.patch_size).unwrap();
    assert_eq!(shapes::receptive_field(&cfg, &layers), Some([1, 15, 15]));
    let rep = NetworkReport::new(&cfg, 1).unwrap();
    assert_eq!(rep.receptive_field, Some(vec![15, 15]));
    assert!(rep.to_text().contains("receptive field: 15x15"));
}

#[test]
fn max_pool_3d_is_exact() {
    let device = Device::flex();
    let v: Vec<f32> = (0..2 * 4 * 4 * 6)
        .map(|i| ((i * 7919) % 101) as f32)
        .collect();
    let x: Tensor<5> = Tensor::from_data(TensorData::new(v.clone(), [1, 2, 4, 4, 6]), &device);
    for s in [[2, 2, 2], [1, 2, 2], [2, 1, 1], [2, 2, 3]] {
        let y = medseg_model::max_pool(x.clone(), s);
        let (od, oh, ow) = (4 / s[0], 4 / s[1], 6 / s[2]);
        assert_eq!(y.dims(), [1, 2, od, oh, ow]);
        let got = y
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap();
        let mut want = Vec::new();
        for c in 0..2 {
            for d in 0..od {
                for h in 0..oh {
                    for w in 0..ow {
                        let mut m = f32::MIN;
                        for a in 0..s[0] {
                            for b in 0..s[1] {
                                for e in 0..s[2] {
                                    m = m.max(
                                        v[(((c * 4 + d * s[0] + a) * 4 + h * s[1] + b) * 6)
                                            + w * s[2]
                                            + e],
                                    );
                                }
                            }
                        }
                        want.push(m);
                    }
                }
            }
        }
        assert_eq!(got, want, "stride {s:?}");
    }
}

fn round_trip(dims: usize, m: ModelConfig, patch: &[usize]) {
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let cfg = UNetConfig::from_model_config(&m, 1, 2, patch).unwrap();
    let net = cfg.init(&device);
    let [d, h, w] = cfg.patch_size;
    let x = Tensor::<5>::random([1, 1, d, h, w], Distribution::Normal(0.0, 1.0), &device);
    let before = net
        .forward_logits(x.clone())
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    let bpk = dir.path().join("model.bpk");
    medseg_model::save(&net, &bpk).unwrap();
    let loaded = medseg_model::load(&cfg, &bpk, &device).unwrap();
    let after = loaded
        .forward_logits(x.clone())
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    assert_eq!(before, after, "{dims}D burnpack round trip is bit-exact");
    let st = dir.path().join("model.safetensors");
    medseg_model::save_safetensors(&net, &st).unwrap();
    let loaded = medseg_model::load_safetensors(&cfg, &st, &device).unwrap();
    let after = loaded
        .forward_logits(x)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    assert_eq!(before, after, "{dims}D safetensors round trip is bit-exact");
    // no temp files left behind
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    // model.safetensors gets the mode of every other file written (not burn's tempfile 0600)
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&st), mode(&bpk), "safetensors mode {:o}", mode(&st));
    }
    // a weights file for another architecture is refused, not silently accepted
    let other = UNetConfig::from_model_config(
        &ModelConfig {
            features: Some(vec![4, 8, 32]),
            ..m
        },
        1,
        2,
        patch,
    )
    .unwrap();
    assert!(medseg_model::load(&other, &bpk, &device).is_err());
    assert!(medseg_model::load(&cfg, &dir.path().join("missing.bpk"), &device).is_err());
}

#[test]
fn save_load_round_trip_2d() {
    round_trip(
        2,
        ModelConfig {
            norm: NormKind::Batch,
            attention_gates: true,
            ..small(2)
        },
        &[16, 16],
    );
}

#[test]
fn save_load_round_trip_3d() {
    round_trip(
        3,
        ModelConfig {
            bottleneck: BottleneckKind::Transformer,
            heads: 2,
            residual: true,
            ..small(3)
        },
        &[8, 8, 8],
    );
}

#[test]
fn ndarray_conversion_round_trip() {
    let device = Device::flex();
    let a = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[2, 3, 4]), |ix| {
        (ix[0] * 100 + ix[1] * 10 + ix[2]) as f32
    });
    let t: Tensor<3> = medseg_model::convert::array_to_tensor(&a, &device).unwrap();
    assert_eq!(t.dims(), [2, 3, 4]);
    let back = medseg_model::convert::tensor_to_array(t).unwrap();
    assert_eq!(back, a);
    let t2: Tensor<3> = medseg_model::convert::array_into_tensor(
        a.clone().reversed_axes().reversed_axes(),
        &device,
    )
    .unwrap();
    assert_eq!(medseg_model::convert::tensor_to_array(t2).unwrap(), a);
    let tr = a.clone().permuted_axes(vec![2, 1, 0]);
    let t3: Tensor<3> = medseg_model::convert::array_to_tensor(&tr, &device).unwrap();
    assert_eq!(medseg_model::convert::tensor_to_array(t3).unwrap(), tr);
    assert!(medseg_model::convert::array_to_tensor::<4>(&a, &device).is_err());
    let labels =
        ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[1, 2, 2]), |ix| (ix[1] * 2 + ix[2]) as u16);
    let lt = medseg_model::convert::labels_to_tensor::<3>(&labels, &device).unwrap();
    assert_eq!(
        lt.into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .unwrap(),
        vec![0, 1, 2, 3]
    );
}

#[test]
fn transformer_attention_is_scaled_dot_product() {
    // softmax(Q K^T / sqrt(d_k)) V per head, Q = W_Q X, K = W_K X, V = W_V X, heads
    // concatenated and projected: recomputed here from the layer's own linear maps.
    use medseg_model::burn::nn::attention::MhaInput;
    use medseg_model::burn::tensor::activation::softmax;
    let device = Device::flex();
    let (c, heads, n) = (8, 2, 5);
    let dk = c / heads;
    let layer = medseg_model::blocks::TransformerLayer::new(c, heads, &device);
    let x = Tensor::<3>::random([1, n, c], Distribution::Normal(0.0, 1.0), &device);
    let got = layer
        .attention
        .forward(MhaInput::self_attn(x.clone()))
        .context;
    let att = &layer.attention;
    let (q, k, v) = (
        att.query.forward(x.clone()),
        att.key.forward(x.clone()),
        att.value.forward(x),
    );
    let mut ctx = Vec::new();
    for h in 0..heads {
        let r = [0..1, 0..n, h * dk..(h + 1) * dk];
        let (qh, kh, vh) = (
            q.clone().slice(r.clone()),
            k.clone().slice(r.clone()),
            v.clone().slice(r),
        );
        let scores = qh.matmul(kh.swap_dims(1, 2)).div_scalar((dk as f64).sqrt());
        ctx.push(softmax(scores, 2).matmul(vh));
    }
    let want = att.output.forward(Tensor::cat(ctx, 2));
    let diff = (got - want).abs().max().into_scalar::<f32>();
    assert!(diff < 1e-5, "max |diff| = {diff}");
}
