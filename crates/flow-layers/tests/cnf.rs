//! Continuous normalizing flows: property tests through the public `testing` module (round
//! trip through integrating forward and back, log-dets against the autodiff and
//! central-difference Jacobians of the solved map), parameter gradients through the solver,
//! and a model of CNF layers sampling and scoring consistently.

use flow_core::{rng, Cpu};
use flow_layers::ode::Solver;
use flow_layers::testing::{cases, check_layer_kind, check_layer_kind_params, Tolerances};
use flow_layers::{BaseSpec, Cnf, CnfLayerConfig, FlowSpec, LayerSpec, NormalizingFlow};
use proptest::prelude::*;

fn tight() -> CnfLayerConfig {
    CnfLayerConfig {
        hidden: vec![8, 8],
        solver: Solver::Dopri5 {
            rtol: 1e-11,
            atol: 1e-11,
            max_steps: 100_000,
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn cnf_layers_invert_with_exact_log_dets(case in cases(1..=3, 1..=3, 0..=1)) {
        let tol = Tolerances { round_trip: 1e-8, log_det: 1e-8, jacobian: 1e-7, ..Default::default() };
        check_layer_kind::<Cnf>(&tight(), &case, &tol)?;
    }

    /// Gradients through the solver's operations (fixed RK4 steps: a smooth map of the
    /// parameters) against central differences, log-dets included.
    #[test]
    fn cnf_parameter_gradients_match_finite_differences(case in cases(1..=2, 1..=2, 0..=1)) {
        let config = CnfLayerConfig { hidden: vec![6], solver: Solver::Rk4 { steps: 8 } };
        let checker = flow_core::gradcheck::GradCheck { rtol: 1e-5, atol: 1e-6, ..Default::default() };
        check_layer_kind_params::<Cnf>(&config, &case, &checker)?;
    }
}

#[test]
fn a_model_of_cnf_layers_samples_and_scores_consistently() {
    let cpu = Cpu::<f64>::new();
    let spec = FlowSpec {
        dim: 2,
        context: 0,
        base: BaseSpec::StandardNormal,
        layers: vec![LayerSpec::of::<Cnf>(&tight()); 2],
    };
    let model = NormalizingFlow::new_random(&cpu, spec.clone(), 4).unwrap();
    let registry = flow_layers::Registry::<Cpu<f64>>::builtin();
    assert_eq!(
        spec.num_scalars(&registry).unwrap(),
        Some(model.params().num_scalars())
    );
    let (x, log_q) = model.sample(16, None, &mut rng(1)).unwrap();
    let again = model.log_prob(&x, None).unwrap();
    assert!(again.max_abs_diff(&log_q).unwrap() < 1e-7);
}
