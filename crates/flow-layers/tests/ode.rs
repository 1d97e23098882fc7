//! The ODE solvers against closed-form solutions: each fixed-step method's order of
//! convergence measured, Dormand-Prince meeting its tolerance forward and backward in time,
//! gradients through the solver against the closed form and central differences, and the
//! errors that replace hangs.

use flow_core::{Cpu, Tape, Tensor, Var};
use flow_layers::ode::{integrate, Solver};

type B = Cpu<f64>;
const CPU: B = Cpu::new();

fn scalar(tape: &Tape<B>, v: f64) -> Var<B> {
    tape.constant(Tensor::from_f64s(&CPU, (1, 1), &[v]).unwrap())
}

/// `y' = -y` from 1 over [0, 2]: the error at `t = 2` of `solver`.
fn decay_error(solver: Solver) -> f64 {
    let tape = Tape::new(&CPU);
    let f = |_t: f64, y: &[Var<B>]| Ok(vec![y[0].neg()?]);
    let (y, _) = integrate(&f, &[scalar(&tape, 1.0)], 0.0, 2.0, &solver).unwrap();
    (y[0].value().to_f64s().unwrap()[0] - (-2.0f64).exp()).abs()
}

#[test]
fn fixed_step_methods_converge_at_their_orders() {
    for (name, order, make) in [
        (
            "euler",
            1.0,
            (|n| Solver::Euler { steps: n }) as fn(usize) -> Solver,
        ),
        ("midpoint", 2.0, |n| Solver::Midpoint { steps: n }),
        ("rk4", 4.0, |n| Solver::Rk4 { steps: n }),
    ] {
        let (coarse, fine) = (decay_error(make(20)), decay_error(make(40)));
        let measured = (coarse / fine).log2();
        assert!(
            (measured - order).abs() < 0.15,
            "{name}: measured order {measured} (errors {coarse:e}, {fine:e})"
        );
    }
}

/// The harmonic oscillator `x' = v, v' = -x` as two state variables, from (1, 0).
fn oscillator(t: f64, y: &[Var<B>]) -> flow_layers::Result<Vec<Var<B>>> {
    let _ = t;
    Ok(vec![y[1].clone(), y[0].neg()?])
}

#[test]
fn dopri5_meets_its_tolerance_forward_and_backward_in_time() {
    for (rtol, atol) in [(1e-6, 1e-8), (1e-10, 1e-12)] {
        let tape = Tape::new(&CPU);
        let y0 = [scalar(&tape, 1.0), scalar(&tape, 0.0)];
        let solver = Solver::Dopri5 {
            rtol,
            atol,
            max_steps: 100_000,
        };
        let t1 = 2.0 * std::f64::consts::PI + 0.5;
        let (y, stats) = integrate(&oscillator, &y0, 0.0, t1, &solver).unwrap();
        let (x, v) = (
            y[0].value().to_f64s().unwrap()[0],
            y[1].value().to_f64s().unwrap()[0],
        );
        let err = (x - t1.cos()).abs().max((v + t1.sin()).abs());
        // Global error stays within a small multiple of the local tolerance over a period.
        assert!(err < 50.0 * (rtol + atol), "rtol {rtol}: error {err}");
        assert!(stats.steps > 0 && stats.evaluations >= 6 * stats.steps);
        // Backward in time returns to the start.
        let (back, _) = integrate(&oscillator, &y, t1, 0.0, &solver).unwrap();
        let x0 = back[0].value().to_f64s().unwrap()[0];
        assert!(
            (x0 - 1.0).abs() < 100.0 * (rtol + atol),
            "rtol {rtol}: back to {x0}"
        );
    }
    // Tighter tolerances take more steps.
    let steps = |rtol: f64| {
        let tape = Tape::new(&CPU);
        let y0 = [scalar(&tape, 1.0), scalar(&tape, 0.0)];
        let solver = Solver::Dopri5 {
            rtol,
            atol: rtol,
            max_steps: 100_000,
        };
        integrate(&oscillator, &y0, 0.0, 10.0, &solver)
            .unwrap()
            .1
            .steps
    };
    assert!(steps(1e-9) > 2 * steps(1e-5));
}

#[test]
fn gradients_through_the_solver_match_the_closed_form() {
    // y' = a y, y(0) = y0: y(1) = y0 e^a, so dy/da = y0 e^a and dy/dy0 = e^a.
    let (a0, y00) = (0.7, 1.3);
    for solver in [
        Solver::Rk4 { steps: 200 },
        Solver::Dopri5 {
            rtol: 1e-12,
            atol: 1e-12,
            max_steps: 100_000,
        },
    ] {
        let tape = Tape::new(&CPU);
        let a = tape.input(Tensor::from_f64s(&CPU, (1, 1), &[a0]).unwrap());
        let y0 = tape.input(Tensor::from_f64s(&CPU, (1, 1), &[y00]).unwrap());
        let f = |_t: f64, y: &[Var<B>]| Ok(vec![y[0].mul(&a)?]);
        let (y, _) = integrate(&f, std::slice::from_ref(&y0), 0.0, 1.0, &solver).unwrap();
        let grads = tape.backward(&y[0].sum_all().unwrap()).unwrap();
        let da = grads.get(&a).unwrap().to_f64s().unwrap()[0];
        let dy0 = grads.get(&y0).unwrap().to_f64s().unwrap()[0];
        assert!((da - y00 * a0.exp()).abs() < 1e-8, "{solver:?}: {da}");
        assert!((dy0 - a0.exp()).abs() < 1e-8, "{solver:?}: {dy0}");
    }
}

#[test]
fn a_stiff_problem_or_a_bad_setting_is_an_error_not_a_hang() {
    let tape = Tape::new(&CPU);
    // y' = -1e6 (y - cos t): stiff; dopri5 with a 50-step cap gives up with an error.
    let f = |t: f64, y: &[Var<B>]| Ok(vec![y[0].add_scalar(-t.cos())?.mul_scalar(-1e6)?]);
    let solver = Solver::Dopri5 {
        rtol: 1e-8,
        atol: 1e-8,
        max_steps: 50,
    };
    let e = integrate(&f, &[scalar(&tape, 0.0)], 0.0, 10.0, &solver).unwrap_err();
    assert!(e.to_string().contains("limit of 50 steps"), "{e}");
    // Zero steps, infinite times and a field of the wrong shape are refused.
    let g = |_t: f64, y: &[Var<B>]| Ok(vec![y[0].clone()]);
    assert!(integrate(
        &g,
        &[scalar(&tape, 1.0)],
        0.0,
        1.0,
        &Solver::Euler { steps: 0 }
    )
    .is_err());
    assert!(integrate(
        &g,
        &[scalar(&tape, 1.0)],
        0.0,
        f64::INFINITY,
        &Solver::Rk4 { steps: 4 }
    )
    .is_err());
    let wrong = |_t: f64, y: &[Var<B>]| Ok(vec![y[0].clone(), y[0].clone()]);
    let e = integrate(
        &wrong,
        &[scalar(&tape, 1.0)],
        0.0,
        1.0,
        &Solver::Rk4 { steps: 4 },
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("vector field returned 2 variables"),
        "{e}"
    );
    // A field that blows up: a non-finite error ratio.
    let blow = |_t: f64, y: &[Var<B>]| Ok(vec![y[0].square()?.mul_scalar(1e300)?]);
    let solver = Solver::Dopri5 {
        rtol: 1e-6,
        atol: 1e-6,
        max_steps: 1000,
    };
    assert!(integrate(&blow, &[scalar(&tape, 1.0)], 0.0, 1.0, &solver).is_err());
}

#[test]
fn adjoint_gradients_equal_backpropagation_and_finite_differences() {
    use flow_layers::ode::{integrate_adjoint, ParamField};
    use std::sync::Arc;
    // y' = tanh(y W^T + b) t, a batch of 3 states in R^2; loss = sum(y(1)^2).
    let w0 = [0.3, -0.8, 0.5, 0.2];
    let b0 = [0.1, -0.4];
    let y00 = [0.5, -1.0, 1.5, 0.3, -0.7, 0.9];
    let field = |t: f64, y: &[Var<B>], p: &[Var<B>]| -> flow_layers::Result<Vec<Var<B>>> {
        Ok(vec![y[0].linear(&p[0], &p[1])?.tanh()?.mul_scalar(t)?])
    };
    let solver = Solver::Dopri5 {
        rtol: 1e-11,
        atol: 1e-11,
        max_steps: 100_000,
    };
    // Loss and gradients (W, b, y0), by the adjoint or by backpropagation.
    let run = |w: &[f64], b: &[f64], y0: &[f64], adjoint: bool| -> (f64, Vec<Vec<f64>>) {
        let tape = Tape::new(&CPU);
        let wv = tape.input(Tensor::from_f64s(&CPU, (2, 2), w).unwrap());
        let bv = tape.input(Tensor::from_f64s(&CPU, (1, 2), b).unwrap());
        let yv = tape.input(Tensor::from_f64s(&CPU, (3, 2), y0).unwrap());
        let y1 = if adjoint {
            let f: Arc<ParamField<B>> = Arc::new(field);
            integrate_adjoint(
                f,
                std::slice::from_ref(&yv),
                &[wv.clone(), bv.clone()],
                (0.0, 1.0),
                &solver,
            )
            .unwrap()
            .0
        } else {
            let params = [wv.clone(), bv.clone()];
            let f = |t: f64, y: &[Var<B>]| field(t, y, &params);
            integrate(&f, std::slice::from_ref(&yv), 0.0, 1.0, &solver)
                .unwrap()
                .0
        };
        let loss = y1[0].square().unwrap().sum_all().unwrap();
        let value = loss.value().to_f64s().unwrap()[0];
        let grads = tape.backward(&loss).unwrap();
        let g = [&wv, &bv, &yv]
            .iter()
            .map(|v| grads.get(v).unwrap().to_f64s().unwrap())
            .collect();
        (value, g)
    };
    let (loss_a, adjoint) = run(&w0, &b0, &y00, true);
    let (loss_b, backprop) = run(&w0, &b0, &y00, false);
    assert!((loss_a - loss_b).abs() < 1e-12, "{loss_a} {loss_b}");
    for (ga, gb) in adjoint.iter().zip(&backprop) {
        for (a, b) in ga.iter().zip(gb) {
            assert!(
                (a - b).abs() < 1e-8,
                "adjoint {a} against backpropagation {b}"
            );
        }
    }
    // Central differences of the loss in every entry of W, b and y0.
    let h = 1e-6;
    let bases: [&[f64]; 3] = [&w0, &b0, &y00];
    for (which, base) in bases.iter().enumerate() {
        for k in 0..base.len() {
            let shifted = |d: f64| {
                let mut v = [w0.to_vec(), b0.to_vec(), y00.to_vec()];
                v[which][k] += d;
                run(&v[0], &v[1], &v[2], false).0
            };
            let fd = (shifted(h) - shifted(-h)) / (2.0 * h);
            let a = adjoint[which][k];
            assert!(
                (a - fd).abs() < 1e-6 * (1.0 + fd.abs()),
                "input {which} entry {k}: {a} against {fd}"
            );
        }
    }
}

#[test]
fn the_adjoint_keeps_no_graph_of_the_steps() {
    use flow_layers::ode::{integrate_adjoint, ParamField};
    use std::sync::Arc;
    // The training tape holds the same few nodes however many steps the solve takes;
    // backpropagation through the solver records every stage.
    let nodes = |rtol: f64, adjoint: bool| {
        let tape = Tape::new(&CPU);
        let a = tape.input(Tensor::from_f64s(&CPU, (1, 1), &[0.9]).unwrap());
        let y0 = tape.input(Tensor::from_f64s(&CPU, (1, 2), &[1.0, 0.0]).unwrap());
        let solver = Solver::Dopri5 {
            rtol,
            atol: rtol,
            max_steps: 100_000,
        };
        let (y1, stats) = if adjoint {
            let f: Arc<ParamField<B>> = Arc::new(|_t: f64, y: &[Var<B>], p: &[Var<B>]| {
                Ok(vec![y[0].mul(&p[0])?.tanh()?])
            });
            integrate_adjoint(f, &[y0], &[a], (0.0, 5.0), &solver).unwrap()
        } else {
            let f = |_t: f64, y: &[Var<B>]| Ok(vec![y[0].mul(&a)?.tanh()?]);
            integrate(&f, &[y0], 0.0, 5.0, &solver).unwrap()
        };
        let _ = y1;
        (tape.len(), stats.steps)
    };
    let (loose, loose_steps) = nodes(1e-4, true);
    let (tight, tight_steps) = nodes(1e-10, true);
    assert!(tight_steps > 3 * loose_steps);
    assert_eq!(loose, tight, "the adjoint's tape grew with the steps");
    let (bp_loose, _) = nodes(1e-4, false);
    let (bp_tight, _) = nodes(1e-10, false);
    assert!(bp_tight > 3 * bp_loose);
}
