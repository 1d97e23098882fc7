//! `import-normflows` beyond the two-moons fixture: normflows RealNVPs in odd and even
//! dimensions, with shuffle permutations (int64 buffers), several blocks and a LeakyReLU
//! slope, written by `tests/data/make_normflows_fixtures.py` with normflows itself. Our
//! log_prob matches normflows' float64 values.

use flow_core::{Cpu, Tensor};
use flow_train::checkpoint::TensorFile;
use flow_train::import::{import_normflows, ImportOptions};
use std::path::PathBuf;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn check(name: &str, leaky: f64) {
    let cpu = Cpu::<f64>::new();
    let options = ImportOptions {
        leaky,
        ..ImportOptions::default()
    };
    let model = import_normflows(
        &cpu,
        &data(&format!("normflows_{name}.safetensors")),
        options,
    )
    .unwrap();
    let reference =
        TensorFile::read(&data(&format!("normflows_{name}.reference.safetensors"))).unwrap();
    let (shape, x) = &reference.tensors["x"];
    let x = Tensor::from_vec(&cpu, (shape[0], shape[1]), x.clone()).unwrap();
    let got = model.log_prob(&x, None).unwrap().to_vec().unwrap();
    let want = &reference.tensors["log_prob"].1;
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
        .fold(0.0, f64::max);
    assert!(worst < 1e-9, "{name}: worst relative difference {worst:e}");
}

#[test]
fn odd_dimension_with_shuffles_and_three_blocks() {
    check("shuffle3", 0.01);
}

#[test]
fn even_dimension_with_shuffles_and_leaky_relu() {
    check("shuffle6", 0.2);
}

#[test]
fn a_wrong_leaky_slope_gives_a_different_model() {
    // The slope is not in a state_dict: the test above would not notice it being ignored
    // unless a wrong one made a difference.
    let result = std::panic::catch_unwind(|| check("shuffle6", 0.0));
    assert!(result.is_err());
}
