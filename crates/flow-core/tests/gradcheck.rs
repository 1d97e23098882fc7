//! The gradient checker itself: parameter gradients (first and second order), f32 with its
//! own tolerances, errors of any type from the checked function, and that it catches a
//! backward that is wrong by 1%.

use flow_core::gradcheck::{GradCheck, GradCheckError};
use flow_core::{Axis, Backend, Cpu, CustomOp, Element, ParamId, ParamStore, Tape, Tensor, Var};
use std::sync::Arc;

/// `y = x * exp(s) + t` (`x`: `r x d`, `s`, `t`: `1 x d`) with a hand-written backward whose
/// gradient for `s` is multiplied by `factor` in column `col` (1: correct).
struct ScaleShift {
    factor: f64,
    col: usize,
}

impl<B: Backend> CustomOp<B> for ScaleShift {
    fn name(&self) -> &str {
        "scale_shift"
    }

    fn forward(&self, inputs: &[&Tensor<B>]) -> flow_core::Result<Tensor<B>> {
        let tape = Tape::new(inputs[0].backend());
        let [x, s, t] = [0, 1, 2].map(|i| tape.constant(inputs[i].clone()));
        Ok(x.mul(&s.exp()?)?.add(&t)?.value())
    }

    fn backward(
        &self,
        inputs: &[&Var<B>],
        _output: &Var<B>,
        grad: &Var<B>,
    ) -> flow_core::Result<Vec<Option<Var<B>>>> {
        let (x, s) = (inputs[0], inputs[1]);
        let e = s.exp()?;
        let d = s.shape().cols;
        let mask: Vec<f64> = (0..d)
            .map(|c| if c == self.col { self.factor } else { 1.0 })
            .collect();
        let mask = s
            .tape()
            .constant(Tensor::from_f64s(s.tape().backend(), (1, d), &mask)?);
        let ds = grad.mul(x)?.mul(&e)?.sum(Axis::Rows)?.mul(&mask)?;
        Ok(vec![
            Some(grad.mul(&e)?),
            Some(ds),
            Some(grad.sum(Axis::Rows)?),
        ])
    }
}

struct Fixture<B: Backend> {
    backend: B,
    params: ParamStore<B>,
    s: ParamId,
    t: ParamId,
    x: Tensor<B>,
}

fn fixture<B: Backend>(backend: B) -> Fixture<B> {
    let mut params = ParamStore::new();
    let s = Tensor::from_f64s(&backend, (1, 3), &[0.3, -0.5, 0.8]).unwrap();
    let t = Tensor::from_f64s(&backend, (1, 3), &[-0.2, 0.4, 1.1]).unwrap();
    let s = params.add("scale", s).unwrap();
    let t = params.add("shift", t).unwrap();
    let x = Tensor::from_f64s(
        &backend,
        (4, 3),
        &[
            0.9, -1.2, 0.4, -0.3, 1.7, 0.8, 1.1, 0.2, -0.6, -1.4, 0.5, 1.3,
        ],
    )
    .unwrap();
    Fixture {
        backend,
        params,
        s,
        t,
        x,
    }
}

impl<B: Backend> Fixture<B> {
    /// `tanh(ScaleShift(x, s, t))` with the op's backward wrong by `factor` in column `col`
    /// of `s`'s gradient.
    fn f(
        &self,
        factor: f64,
        col: usize,
    ) -> impl Fn(&Tape<B>, &ParamStore<B>) -> flow_core::Result<Var<B>> {
        let (s, t, x) = (self.s, self.t, self.x.clone());
        move |tape, params| {
            let op = Arc::new(ScaleShift { factor, col });
            let x = tape.constant(x.clone());
            let (s, t) = (tape.param(params, s)?, tape.param(params, t)?);
            Var::custom(op, &[&x, &s, &t])?.tanh()
        }
    }

    fn ids(&self) -> Vec<ParamId> {
        vec![self.s, self.t]
    }
}

#[test]
fn parameter_gradients_pass_first_and_second_order_in_f64() {
    let mut fx = fixture(Cpu::<f64>::new());
    let f = fx.f(1.0, 0);
    let (backend, ids) = (fx.backend, fx.ids());
    let report = GradCheck::default()
        .check_params(&backend, &mut fx.params, &ids, &f)
        .unwrap();
    assert_eq!(report.checked, 6);
    assert!(report.max_abs_error < 1e-8, "{report:?}");
    let report = GradCheck::default()
        .check_second_order_params(&backend, &mut fx.params, &ids, &f)
        .unwrap();
    assert_eq!(report.checked, 6);
}

#[test]
fn a_parameter_gradient_wrong_by_one_percent_is_named_with_its_entry() {
    for col in 0..3 {
        let mut fx = fixture(Cpu::<f64>::new());
        let before: Vec<Vec<f64>> = fx
            .params
            .iter()
            .map(|(_, _, v)| v.to_f64s().unwrap())
            .collect();
        let f = fx.f(1.01, col);
        let (backend, ids) = (fx.backend, fx.ids());
        let err = GradCheck::default()
            .check_params(&backend, &mut fx.params, &ids, &f)
            .unwrap_err();
        match &err {
            GradCheckError::ParamMismatch {
                order,
                name,
                id,
                row,
                col: c,
                analytic,
                numeric,
            } => {
                assert_eq!(*order, "first-order");
                assert_eq!(name, "scale");
                assert_eq!(*id, fx.s);
                assert_eq!((*row, *c), (0, col));
                assert!((analytic / numeric - 1.01).abs() < 1e-4, "{err}");
            }
            other => panic!("expected a parameter mismatch, got {other:?}"),
        }
        assert!(
            err.to_string()
                .contains(&format!("parameter `scale` at row 0, column {col}")),
            "{err}"
        );
        // Every moved entry was put back exactly.
        let after: Vec<Vec<f64>> = fx
            .params
            .iter()
            .map(|(_, _, v)| v.to_f64s().unwrap())
            .collect();
        assert_eq!(before, after);
    }
}

#[test]
fn the_input_check_misses_what_the_parameter_check_finds() {
    let fx = fixture(Cpu::<f64>::new());
    let (s, t, params) = (fx.s, fx.t, &fx.params);
    let op = Arc::new(ScaleShift {
        factor: 1.01,
        col: 1,
    });
    // The same function of x alone, the parameters bound as they would be in training.
    let report = GradCheck::default()
        .check(&fx.backend, std::slice::from_ref(&fx.x), |v| {
            let tape = v[0].tape();
            let (s, t) = (tape.param(params, s)?, tape.param(params, t)?);
            Var::custom(op.clone(), &[&v[0], &s, &t])?.tanh()
        })
        .unwrap();
    assert_eq!(report.checked, 12);
}

#[test]
fn f32_passes_with_its_defaults_and_still_fails_a_one_percent_error() {
    let checker = GradCheck::<f32>::default();
    assert_eq!(
        (checker.eps, checker.rtol, checker.atol),
        (3e-3, 2e-3, 1e-3)
    );
    for col in 0..3 {
        let mut fx = fixture(Cpu::<f32>::new());
        let (backend, ids) = (fx.backend, fx.ids());
        // `GradCheck::default()` picks the f32 values from the backend.
        let f = fx.f(1.0, col);
        let report = GradCheck::default()
            .check_params(&backend, &mut fx.params, &ids, &f)
            .unwrap();
        assert_eq!(report.checked, 6);
        GradCheck::f32()
            .check_second_order_params(&backend, &mut fx.params, &ids, &f)
            .unwrap();
        let f = fx.f(1.01, col);
        let err = GradCheck::default()
            .check_params(&backend, &mut fx.params, &ids, &f)
            .unwrap_err();
        assert!(
            matches!(&err, GradCheckError::ParamMismatch { name, row: 0, col: c, .. } if name == "scale" && *c == col),
            "{err}"
        );
    }
    // Inputs too.
    let cpu = Cpu::<f32>::new();
    let x = Tensor::from_f64s(&cpu, (2, 2), &[0.1, -0.4, 0.7, 1.3]).unwrap();
    GradCheck::default()
        .check(&cpu, std::slice::from_ref(&x), |v| v[0].tanh()?.exp())
        .unwrap();
    GradCheck::default()
        .check_second_order(&cpu, &[x], |v| v[0].tanh()?.exp())
        .unwrap();
}

#[test]
fn f64_defaults_are_unchanged() {
    let c = GradCheck::default();
    assert_eq!((c.eps, c.rtol, c.atol, c.seed), (1e-6, 1e-5, 1e-7, 0x5eed));
    assert!(c.fallback_steps.is_empty());
    let d = GradCheck::f64();
    assert_eq!(
        (d.eps, d.rtol, d.atol, d.seed),
        (c.eps, c.rtol, c.atol, c.seed)
    );
    assert_eq!(<f64 as Element>::NAME, "f64");
}

/// A steep function, `exp(1e4 x)` at `x = -1e-3`: the central difference at the default
/// step errs by `h^2 k^2 / 6 = 1.7e-5` relative (truncation), beyond `rtol`; a fallback step
/// of `1e-7` agrees. A derivative wrong by 1% still fails with every fallback, reporting the
/// difference at `eps`.
#[test]
fn fallback_steps_rescue_truncation_but_not_a_wrong_gradient() {
    let cpu = Cpu::<f64>::new();
    let x = [Tensor::from_f64s(&cpu, (1, 1), &[-1e-3]).unwrap()];
    let steep = |v: &[Var<Cpu<f64>>]| v[0].mul_scalar(1e4)?.exp();
    let err = GradCheck::default().check(&cpu, &x, steep).unwrap_err();
    assert!(matches!(err, GradCheckError::Mismatch { .. }), "{err}");
    let fallback = GradCheck {
        fallback_steps: &[1e-5, 1e-7],
        ..GradCheck::default()
    };
    let report = fallback.check(&cpu, &x, steep).unwrap();
    assert_eq!(report.checked, 1);

    let fx = fixture(Cpu::<f64>::new());
    let (s, t, x) = (fx.s, fx.t, fx.x.clone());
    let inputs = [
        fx.params.get(s).unwrap().clone(),
        fx.params.get(t).unwrap().clone(),
    ];
    let wrong = |v: &[Var<Cpu<f64>>]| {
        let x = v[0].tape().constant(x.clone());
        Var::custom(
            Arc::new(ScaleShift {
                factor: 1.01,
                col: 1,
            }),
            &[&x, &v[0], &v[1]],
        )?
        .tanh()
    };
    let fallback = GradCheck {
        fallback_steps: &[1e-7, 1e-5, 1e-4, 1e-3],
        ..GradCheck::default()
    };
    match fallback.check(&cpu, &inputs, wrong).unwrap_err() {
        GradCheckError::Mismatch {
            input,
            col,
            analytic,
            numeric,
            ..
        } => {
            assert_eq!((input, col), (0, 1));
            assert!((analytic / numeric - 1.01).abs() < 1e-4);
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
}

/// An error type of the caller's own, as a crate layered over flow-core has.
#[derive(Debug, thiserror::Error)]
enum MyError {
    #[error(transparent)]
    Core(#[from] flow_core::Error),
    #[error("my layer refused: {0}")]
    Refused(String),
}

#[test]
fn the_function_may_fail_with_any_error_type() {
    let cpu = Cpu::<f64>::new();
    let mut params = ParamStore::new();
    let w = params
        .add("w", Tensor::from_f64s(&cpu, (1, 2), &[0.5, -0.25]).unwrap())
        .unwrap();
    // `?` on flow-core calls into the caller's error type; the check passes.
    let ok = |tape: &Tape<Cpu<f64>>, params: &ParamStore<Cpu<f64>>| {
        let w = tape.param(params, w)?;
        Ok::<_, MyError>(w.exp()?.mul(&w)?)
    };
    GradCheck::default()
        .check_params(&cpu, &mut params, &[w], ok)
        .unwrap();
    // An error of the caller's type comes back boxed, its message intact.
    let refuse = |_: &Tape<Cpu<f64>>, _: &ParamStore<Cpu<f64>>| -> Result<Var<Cpu<f64>>, MyError> {
        Err(MyError::Refused("no".into()))
    };
    let err = GradCheck::default()
        .check_params(&cpu, &mut params, &[w], refuse)
        .unwrap_err();
    assert!(matches!(err, GradCheckError::Function(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the checked function failed: my layer refused: no"
    );
    // A flow-core error the function returns as such comes back as `Op`.
    let raw = |v: &[Var<Cpu<f64>>]| v[0].matmul(&v[0]);
    let x = Tensor::from_f64s(&cpu, (1, 2), &[1.0, 2.0]).unwrap();
    let err = GradCheck::default()
        .check(&cpu, std::slice::from_ref(&x), raw)
        .unwrap_err();
    assert!(
        matches!(
            err,
            GradCheckError::Op(flow_core::Error::ShapeMismatch { .. })
        ),
        "{err:?}"
    );
    // Strings box too.
    let err = GradCheck::default()
        .check(&cpu, &[x], |_| Err::<Var<Cpu<f64>>, _>("plain text"))
        .unwrap_err();
    assert_eq!(err.to_string(), "the checked function failed: plain text");
}

#[test]
fn a_store_is_restored_when_the_function_fails_midway() {
    let cpu = Cpu::<f64>::new();
    let mut params = ParamStore::new();
    let w = params
        .add("w", Tensor::from_f64s(&cpu, (1, 2), &[0.5, -0.25]).unwrap())
        .unwrap();
    // Fails as soon as an entry moves up.
    let f = |tape: &Tape<Cpu<f64>>, params: &ParamStore<Cpu<f64>>| {
        let w = tape.param(params, w)?;
        if w.value().to_f64s()?[0] > 0.5 {
            return Err(MyError::Refused("moved".into()));
        }
        Ok(w.square()?)
    };
    assert!(GradCheck::default()
        .check_params(&cpu, &mut params, &[w], f)
        .is_err());
    assert_eq!(params.get(w).unwrap().to_f64s().unwrap(), vec![0.5, -0.25]);
}

#[test]
fn a_parameter_the_function_does_not_use_has_a_zero_gradient() {
    let cpu = Cpu::<f64>::new();
    let mut params = ParamStore::new();
    let used = params
        .add(
            "used",
            Tensor::from_f64s(&cpu, (2, 1), &[0.5, -0.25]).unwrap(),
        )
        .unwrap();
    let unused = params
        .add("unused", Tensor::from_f64s(&cpu, (1, 1), &[2.0]).unwrap())
        .unwrap();
    let f = |tape: &Tape<Cpu<f64>>, params: &ParamStore<Cpu<f64>>| tape.param(params, used)?.tanh();
    for ids in [vec![used, unused], vec![unused]] {
        GradCheck::default()
            .check_params(&cpu, &mut params, &ids, f)
            .unwrap();
        GradCheck::default()
            .check_second_order_params(&cpu, &mut params, &ids, f)
            .unwrap();
    }
}
