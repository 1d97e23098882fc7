//! Continuous normalizing flows: property tests through the public `testing` module (round
//! trip through integrating forward and back, log-dets against the autodiff and
//! central-difference Jacobians of the solved map), parameter gradients through the solver,
//! and a model of CNF layers sampling and scoring consistently.

use flow_core::{rng, Cpu};
use flow_core::{ParamStore, Tape, Tensor};
use flow_layers::cnf::{FieldActivation, TimeInput, Trace, SELU_ALPHA, SELU_SCALE};
use flow_layers::ode::Solver;
use flow_layers::testing::{cases, check_layer_kind, check_layer_kind_params, Tolerances};
use flow_layers::{
    BaseSpec, BuildContext, Cnf, CnfLayerConfig, Flow, FlowSpec, Init, LayerSpec, NormalizingFlow,
    Probe,
};
use proptest::prelude::*;

fn tight() -> CnfLayerConfig {
    CnfLayerConfig {
        hidden: vec![8, 8],
        solver: Solver::Dopri5 {
            rtol: 1e-11,
            atol: 1e-11,
            max_steps: 100_000,
        },
        ..Default::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn cnf_layers_invert_with_exact_log_dets(case in cases(1..=3, 1..=3, 0..=1)) {
        let tol = Tolerances { round_trip: 1e-8, log_det: 1e-8, jacobian: 1e-7, ..Default::default() };
        check_layer_kind::<Cnf>(&tight(), &case, &tol)?;
    }

    /// zuko's field: ELU on Fourier features of time. ELU's second derivative jumps at 0,
    /// so the adaptive solver's error (about rtol) no longer varies smoothly with the start
    /// point and central differences of the solved map measure it (1e-11 / 1e-6): the
    /// log-dets are held to the autodiff Jacobians only.
    #[test]
    fn elu_fields_on_fourier_time_invert_with_exact_log_dets(case in cases(1..=3, 1..=3, 0..=1), frequencies in 1usize..=3) {
        let config = CnfLayerConfig {
            activation: FieldActivation::Elu,
            time: TimeInput::Fourier { frequencies },
            ..tight()
        };
        let tol = Tolerances { round_trip: 1e-8, log_det: 1e-7, jacobian: 1e-7, finite_difference: None, ..Default::default() };
        check_layer_kind::<Cnf>(&config, &case, &tol)?;
    }

    /// Gradients through the solver's operations (fixed RK4 steps: a smooth map of the
    /// parameters) against central differences, log-dets included.
    #[test]
    fn cnf_parameter_gradients_match_finite_differences(case in cases(1..=2, 1..=2, 0..=1)) {
        let config = CnfLayerConfig { hidden: vec![6], solver: Solver::Rk4 { steps: 8 }, ..Default::default() };
        let checker = flow_core::gradcheck::GradCheck { rtol: 1e-5, atol: 1e-6, ..Default::default() };
        check_layer_kind_params::<Cnf>(&config, &case, &checker)?;
    }

    /// The same with RNODE's penalties in the loss (their second derivatives included).
    #[test]
    fn rnode_parameter_gradients_match_finite_differences(case in cases(1..=2, 1..=2, 0..=1)) {
        let config = CnfLayerConfig {
            hidden: vec![6],
            solver: Solver::Rk4 { steps: 8 },
            kinetic_energy: 0.5,
            jacobian_norm: 0.5,
            ..Default::default()
        };
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
    // The map alone (no trace: fewer evaluations, as its steps differ) lands on the same
    // points to the solver's tolerance, and counts its evaluations too.
    let z = Tensor::randn(&cpu, (16, 2), &mut rng(2)).unwrap();
    let (x, _) = model.forward(&z, None).unwrap();
    let before = model.field_evaluations().unwrap();
    let mapped = model.forward_map(&z, None).unwrap();
    assert!(model.field_evaluations().unwrap() > before);
    assert!(mapped.max_abs_diff(&x).unwrap() < 1e-8);
}

#[test]
fn hutchinson_log_dets_are_unbiased_and_evaluation_is_exact() {
    let cpu = Cpu::<f64>::new();
    for probe in [Probe::Gaussian, Probe::Rademacher] {
        let config = CnfLayerConfig {
            hidden: vec![16],
            solver: Solver::Rk4 { steps: 6 },
            trace: Trace::Hutchinson { probe },
            ..Default::default()
        };
        let mut params = ParamStore::new();
        let layer = Cnf::new(
            &mut BuildContext::new(&cpu, &mut params, "cnf", 3, &mut rng(2))
                .with_init(Init::Random),
            config,
        )
        .unwrap();
        let x = Tensor::randn(&cpu, (4, 3), &mut rng(3)).unwrap();
        // Evaluation (parameters frozen, 3 <= exact_up_to features): the exact trace.
        let eval = Tape::inference(&cpu);
        let (_, exact) = layer
            .inverse(&params, &eval.constant(x.clone()), None)
            .unwrap();
        let exact = exact.value().to_f64s().unwrap();
        let again = layer
            .inverse(&params, &eval.constant(x.clone()), None)
            .unwrap()
            .1;
        assert_eq!(
            again.value().to_f64s().unwrap(),
            exact,
            "evaluation is deterministic"
        );
        // Training: one probe per solve; the mean of many solves is the exact value.
        let n = 3000;
        let samples: Vec<Vec<f64>> = (0..n)
            .map(|_| {
                let tape = Tape::new(&cpu);
                let (_, ld) = layer
                    .inverse(&params, &tape.constant(x.clone()), None)
                    .unwrap();
                ld.value().to_f64s().unwrap()
            })
            .collect();
        for j in 0..exact.len() {
            let mean = samples.iter().map(|s| s[j]).sum::<f64>() / n as f64;
            let var = samples.iter().map(|s| (s[j] - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0);
            let se = (var / n as f64).sqrt();
            assert!(se > 0.0, "{probe:?}: the estimates do not vary");
            assert!(
                (mean - exact[j]).abs() < 4.5 * se,
                "{probe:?} row {j}: mean {mean} against exact {} (se {se})",
                exact[j]
            );
        }
    }
}

#[test]
fn adjoint_gradients_equal_gradients_through_the_solver() {
    let cpu = Cpu::<f64>::new();
    let build = |adjoint: bool, trace: Trace, rnode: f64| {
        let config = CnfLayerConfig {
            hidden: vec![8, 8],
            solver: Solver::Dopri5 {
                rtol: 1e-10,
                atol: 1e-10,
                max_steps: 100_000,
            },
            trace,
            adjoint,
            kinetic_energy: rnode,
            jacobian_norm: 2.0 * rnode,
            ..Default::default()
        };
        let mut params = ParamStore::new();
        let layer = Cnf::new(
            &mut BuildContext::new(&cpu, &mut params, "cnf", 2, &mut rng(5))
                .with_context(1)
                .with_init(Init::Random),
            config,
        )
        .unwrap();
        (layer, params)
    };
    let x = Tensor::randn(&cpu, (5, 2), &mut rng(6)).unwrap();
    let c = Tensor::randn(&cpu, (5, 1), &mut rng(7)).unwrap();
    let gradients = |(layer, params): &(Cnf, ParamStore<Cpu<f64>>)| {
        let tape = Tape::new(&cpu);
        let xv = tape.input(x.clone());
        let cv = tape.input(c.clone());
        let (z, ld) = layer.inverse(params, &xv, Some(&cv)).unwrap();
        let loss = z
            .square()
            .unwrap()
            .sum_all()
            .unwrap()
            .add(&ld.sum_all().unwrap())
            .unwrap();
        let grads = tape.backward(&loss).unwrap();
        let mut all = loss.value().to_f64s().unwrap();
        all.extend(grads.get(&xv).unwrap().to_f64s().unwrap());
        all.extend(grads.get(&cv).unwrap().to_f64s().unwrap());
        for id in params.trainable_ids() {
            all.extend(grads.param(id).unwrap().to_f64s().unwrap());
        }
        all
    };
    // RNODE's penalty is one more state of the solve, which the adjoint carries too.
    let rademacher = Trace::Hutchinson {
        probe: Probe::Rademacher,
    };
    for (trace, rnode) in [
        (Trace::Exact, 0.0),
        (rademacher, 0.0),
        (Trace::Exact, 0.1),
        (rademacher, 0.1),
    ] {
        let through = gradients(&build(false, trace, rnode));
        let adjoint = gradients(&build(true, trace, rnode));
        assert_eq!(through.len(), adjoint.len());
        for (k, (a, b)) in adjoint.iter().zip(&through).enumerate() {
            assert!(
                (a - b).abs() < 1e-6 * (1.0 + b.abs()),
                "{trace:?}, RNODE {rnode}, entry {k}: adjoint {a} against {b}"
            );
        }
    }
}

/// The field's input layout and nonlinearities, against the MLP written out by hand:
/// `[z, cos(k pi t)..., sin(k pi t)..., c]` for Fourier time, one time per row.
#[test]
fn fields_read_time_and_context_as_documented() {
    let cpu = Cpu::<f64>::new();
    let (dim, context, rows, frequencies) = (2, 1, 3, 2);
    for activation in [
        FieldActivation::Tanh,
        FieldActivation::Elu,
        FieldActivation::Selu,
    ] {
        for time in [TimeInput::Linear, TimeInput::Fourier { frequencies }] {
            let config = CnfLayerConfig {
                hidden: vec![5],
                activation,
                time,
                ..tight()
            };
            let mut params = ParamStore::new();
            let mut r = rng(3);
            let cx = &mut BuildContext::new(&cpu, &mut params, "cnf", dim, &mut r)
                .with_context(context)
                .with_init(Init::Random);
            let layer = Cnf::new(cx, config).unwrap();
            let z = Tensor::randn(&cpu, (rows, dim), &mut rng(4)).unwrap();
            let c = Tensor::randn(&cpu, (rows, context), &mut rng(5)).unwrap();
            let times = [0.1, 0.55, 0.9];
            let tape = Tape::new(&cpu);
            let v = Flow::<Cpu<f64>>::velocity(
                &layer,
                &params,
                &tape.constant(z.clone()),
                &times,
                Some(&tape.constant(c.clone())),
            )
            .unwrap()
            .unwrap()
            .value()
            .to_f64s()
            .unwrap();
            let get = |name: &str| {
                params
                    .get(params.id(name).unwrap())
                    .unwrap()
                    .to_f64s()
                    .unwrap()
            };
            let (w0, b0, w1, b1) = (
                get("cnf.net.0.weight"),
                get("cnf.net.0.bias"),
                get("cnf.net.2.weight"),
                get("cnf.net.2.bias"),
            );
            let (z, c) = (z.to_f64s().unwrap(), c.to_f64s().unwrap());
            for r in 0..rows {
                let t = times[r];
                let mut input = z[r * dim..(r + 1) * dim].to_vec();
                match time {
                    TimeInput::Linear => input.push(t),
                    TimeInput::Fourier { frequencies } => {
                        let pi = std::f64::consts::PI;
                        input.extend((1..=frequencies).map(|k| (k as f64 * pi * t).cos()));
                        input.extend((1..=frequencies).map(|k| (k as f64 * pi * t).sin()));
                    }
                }
                input.push(c[r]);
                let n_in = input.len();
                let hidden: Vec<f64> = (0..5)
                    .map(|o| {
                        let a = b0[o] + (0..n_in).map(|i| w0[o * n_in + i] * input[i]).sum::<f64>();
                        let elu = |alpha: f64| if a > 0.0 { a } else { alpha * a.exp_m1() };
                        match activation {
                            FieldActivation::Tanh => a.tanh(),
                            FieldActivation::Elu => elu(1.0),
                            FieldActivation::Selu => SELU_SCALE * elu(SELU_ALPHA),
                        }
                    })
                    .collect();
                for o in 0..dim {
                    let want = b1[o] + (0..5).map(|i| w1[o * 5 + i] * hidden[i]).sum::<f64>();
                    let got = v[r * dim + o];
                    assert!(
                        (got - want).abs() < 1e-13,
                        "{activation:?} {time:?}: {got} vs {want}"
                    );
                }
            }
        }
    }
}

/// RNODE's penalty against the path integrated independently: in training the inverse's
/// log-det is the frozen one less `integral lambda_K ||f||^2 + lambda_J ||df/dz||_F^2 dt`
/// along the path from `x` back to `z`, which the test rebuilds with its own RK4 over the
/// layer's field, the Jacobian from central differences and Simpson's rule in time.
#[test]
fn rnode_penalties_are_the_integrated_kinetic_energy_and_jacobian_norm() {
    let cpu = Cpu::<f64>::new();
    let (kinetic, jacobian) = (0.3, 0.7);
    let config = CnfLayerConfig {
        hidden: vec![8],
        kinetic_energy: kinetic,
        jacobian_norm: jacobian,
        ..tight()
    };
    let mut params = ParamStore::new();
    let layer = Cnf::new(
        &mut BuildContext::new(&cpu, &mut params, "cnf", 2, &mut rng(11)).with_init(Init::Random),
        config,
    )
    .unwrap();
    let rows = 3;
    let x = Tensor::randn(&cpu, (rows, 2), &mut rng(12)).unwrap();
    let log_det = |tape: &Tape<Cpu<f64>>| {
        let (_, ld) = layer
            .inverse(&params, &tape.input(x.clone()), None)
            .unwrap();
        ld.value().to_f64s().unwrap()
    };
    let regularised = log_det(&Tape::new(&cpu));
    let exact = log_det(&Tape::inference(&cpu));

    // The field of one row at (z, t), values only.
    let field = |z: &[f64], t: f64| -> Vec<f64> {
        let tape = Tape::inference(&cpu);
        let zv = tape.constant(Tensor::from_f64s(&cpu, (1, 2), z).unwrap());
        layer
            .field(&params, &zv, &[t], None)
            .unwrap()
            .value()
            .to_f64s()
            .unwrap()
    };
    let rate = |z: &[f64], t: f64| -> f64 {
        let f = field(z, t);
        let h = 1e-5;
        let mut norm = 0.0;
        for j in 0..2 {
            let (mut up, mut down) = (z.to_vec(), z.to_vec());
            up[j] += h;
            down[j] -= h;
            let (fu, fd) = (field(&up, t), field(&down, t));
            norm += (0..2)
                .map(|i| ((fu[i] - fd[i]) / (2.0 * h)).powi(2))
                .sum::<f64>();
        }
        kinetic * f.iter().map(|v| v * v).sum::<f64>() + jacobian * norm
    };
    let steps = 200;
    let dt = -1.0 / steps as f64;
    let xs = x.to_f64s().unwrap();
    for r in 0..rows {
        let mut z = xs[2 * r..2 * r + 2].to_vec();
        let mut t = 1.0;
        let mut integral = 0.0;
        for _ in 0..steps {
            let shifted = |z: &[f64], k: &[f64], c: f64| -> Vec<f64> {
                z.iter().zip(k).map(|(a, b)| a + c * dt * b).collect()
            };
            let k1 = field(&z, t);
            let k2 = field(&shifted(&z, &k1, 0.5), t + 0.5 * dt);
            let k3 = field(&shifted(&z, &k2, 0.5), t + 0.5 * dt);
            let k4 = field(&shifted(&z, &k3, 1.0), t + dt);
            let mid = shifted(&z, &k2, 0.5);
            let next: Vec<f64> = (0..2)
                .map(|i| z[i] + dt / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]))
                .collect();
            // Simpson's rule over the step (the midpoint state from RK4's second stage,
            // accurate to the step's second order: ample at 200 steps).
            integral +=
                (-dt) / 6.0 * (rate(&z, t) + 4.0 * rate(&mid, t + 0.5 * dt) + rate(&next, t + dt));
            z = next;
            t += dt;
        }
        let penalty = exact[r] - regularised[r];
        assert!(
            (penalty - integral).abs() < 1e-6 * (1.0 + integral.abs()),
            "row {r}: penalty {penalty} against the integrated {integral}"
        );
        assert!(integral > 0.0);
    }
}
