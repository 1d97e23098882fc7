//! The layer property tests' thin layer over the public `flow_layers::testing` module (the
//! checks users run on their own layers): the infallible forms the tests call.
#![allow(dead_code)]

use flow_core::{Cpu, ParamStore, Tensor, Var};
use flow_layers::testing::{self, Tolerances};
use flow_layers::{Flow, NormalizingFlow};
use proptest::prelude::*;

#[allow(unused_imports)]
pub use flow_layers::testing::log_abs_det;
#[allow(unused_imports)]
pub use flow_layers::{
    ActNorm, AffineCouplingBlock, AffineCouplingConfig, AutoregressiveConfig, BuildContext, Init,
    InvertibleLinearLu, InvertibleLinearLuConfig, NoConfig, PlanarLayerConfig, Registry,
    SplineCouplingConfig,
};

pub type B = Cpu<f64>;
pub const CPU: B = Cpu::new();
pub const TOL: f64 = 1e-9;

/// Per-sample Jacobians dy/dz of a row-wise map, by one reverse pass per output column.
pub fn jacobians(f: &dyn Fn(&Var<B>) -> Var<B>, z: &Tensor<B>) -> Vec<Vec<f64>> {
    testing::jacobians(&|v| Ok(f(v)), z).unwrap()
}

/// Per-sample Jacobians by central differences (step 1e-6).
pub fn jacobians_fd(f: &dyn Fn(&Tensor<B>) -> Tensor<B>, z: &Tensor<B>) -> Vec<Vec<f64>> {
    testing::jacobians_fd(&|t| Ok(f(t)), z, 1e-6).unwrap()
}

pub fn assert_close(a: &[f64], b: &[f64], tol: f64, what: &str) -> Result<(), TestCaseError> {
    testing::assert_close("values", a, b, tol)
        .map_err(|e| TestCaseError::fail(format!("{what}: {e}")))
}

/// The properties of `flow_layers::testing::check_flow` for one layer at `z`.
pub fn check_layer(
    layer: &dyn Flow<B>,
    params: &ParamStore<B>,
    z: &Tensor<B>,
) -> Result<(), TestCaseError> {
    check_layer_given(layer, params, z, None)
}

/// The checks without the central-difference comparison: for layers with kinks (planar
/// with a leaky ReLU) or so close to singular that central differences lose their accuracy
/// before the autodiff Jacobians do.
pub fn check_layer_without_fd(
    layer: &dyn Flow<B>,
    params: &ParamStore<B>,
    z: &Tensor<B>,
) -> Result<(), TestCaseError> {
    let tol = Tolerances {
        finite_difference: None,
        ..Tolerances::default()
    };
    Ok(testing::check_flow(layer, params, z, None, &tol)?)
}

/// The same, given a context (`rows x c`) held fixed.
pub fn check_layer_given(
    layer: &dyn Flow<B>,
    params: &ParamStore<B>,
    z: &Tensor<B>,
    context: Option<&Tensor<B>>,
) -> Result<(), TestCaseError> {
    Ok(testing::check_flow(
        layer,
        params,
        z,
        context,
        &Tolerances::default(),
    )?)
}

/// `flow_layers::testing::check_model` at `z`: returns the forward log-dets.
pub fn check_model(model: &NormalizingFlow<B>, z: &Tensor<B>) -> Result<Vec<f64>, TestCaseError> {
    check_model_given(model, z, None)
}

/// The same, given a context (`rows x c`) held fixed.
pub fn check_model_given(
    model: &NormalizingFlow<B>,
    z: &Tensor<B>,
    context: Option<&Tensor<B>>,
) -> Result<Vec<f64>, TestCaseError> {
    Ok(testing::check_model(
        model,
        z,
        context,
        &Tolerances::default(),
    )?)
}

pub fn batch(dim: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Tensor<B>> {
    testing::batch(1..=4, dim)
}
