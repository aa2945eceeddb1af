//! medseg's port of nnU-Net's network topology against values nnU-Net v2.8.1 itself computed
//! (`tests/fixtures/topology/generate.py` wrote `nnunet_topology.json`).

use medseg_preprocess::topology::{
    MIN_FEATURE_MAP, PoolAndConvProps, UNLIMITED, fit_patch_to_budget, pool_and_conv_props,
};
use serde_json::Value;

fn fixture() -> Value {
    let text = include_str!("fixtures/topology/nnunet_topology.json");
    serde_json::from_str(text).expect("valid fixture JSON")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn ints(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn nested(v: &Value) -> Vec<Vec<usize>> {
    v.as_array().unwrap().iter().map(ints).collect()
}

fn assert_matches(name: &str, got: &PoolAndConvProps, want: &Value) {
    assert_eq!(
        got.num_pool_per_axis,
        ints(&want["num_pool_per_axis"]),
        "{name}: pools"
    );
    assert_eq!(
        got.pool_op_kernel_sizes,
        nested(&want["pool_op_kernel_sizes"]),
        "{name}: strides"
    );
    assert_eq!(
        got.conv_kernel_sizes,
        nested(&want["conv_kernel_sizes"]),
        "{name}: kernels"
    );
    assert_eq!(got.patch_size, ints(&want["patch_size"]), "{name}: patch");
    assert_eq!(
        got.shape_must_be_divisible_by,
        ints(&want["shape_must_be_divisible_by"]),
        "{name}: divisor"
    );
}

#[test]
fn pool_and_conv_props_matches_nnunet() {
    let fx = fixture();
    let cases = fx["pool_and_conv_props"].as_array().unwrap();
    assert!(cases.len() >= 8);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let got = pool_and_conv_props(
            &floats(&c["spacing"]),
            &floats(&c["patch"]),
            MIN_FEATURE_MAP,
            UNLIMITED,
            usize::MAX,
        );
        assert_matches(name, &got, &c["expected"]);
    }
}

#[test]
fn patch_search_matches_nnunet_with_a_voxel_budget() {
    let fx = fixture();
    let cases = fx["planner_patch"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let got = fit_patch_to_budget(
            &floats(&c["spacing"]),
            &floats(&c["median_shape"]),
            c["budget_voxels"].as_u64().unwrap() as usize,
            usize::MAX,
        );
        assert_matches(name, &got, &c["expected"]);
    }
}
