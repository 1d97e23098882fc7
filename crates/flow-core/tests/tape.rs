//! Behaviour of the tape itself: errors, parameter binding, pruning of grad-free work,
//! higher-order gradients beyond second order.

use flow_core::{Axis, Cpu, Error, ParamStore, Shape, Tape, Tensor, Var};

type B = Cpu<f64>;
const CPU: B = Cpu::new();

fn idx(v: &[usize]) -> flow_core::IndexTensor<B> {
    flow_core::IndexTensor::new(&CPU, v).unwrap()
}

fn t(rows: usize, cols: usize, v: &[f64]) -> Tensor<B> {
    Tensor::from_vec(&CPU, (rows, cols), v.to_vec()).unwrap()
}

#[test]
fn shape_mismatch_names_both_shapes() {
    let tape = Tape::new(&CPU);
    let a = tape.input(t(2, 3, &[0.0; 6]));
    let b = tape.input(t(4, 3, &[0.0; 12]));
    let err = a.add(&b).unwrap_err();
    assert_eq!(
        err,
        Error::ShapeMismatch {
            op: "add",
            lhs: Shape::new(2, 3),
            rhs: Shape::new(4, 3)
        }
    );
    assert_eq!(err.to_string(), "add: shapes 2x3 and 4x3 do not match");
    let err = a.matmul(&b).unwrap_err().to_string();
    assert!(err.contains("2x3") && err.contains("4x3"), "{err}");
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let tape = Tape::new(&CPU);
    let a = tape.input(t(2, 3, &[0.0; 6]));
    assert!(matches!(
        a.slice_cols(2, 2),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        a.gather_cols(&idx(&[0, 3])),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        a.scatter_add_cols(&idx(&[0, 1]), 4),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        a.broadcast_to((4, 3)),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        Var::<B>::concat_cols(&[]),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(tape.backward(&a), Err(Error::NotScalar { .. })));
    assert!(matches!(
        Tensor::from_vec(&CPU, (2, 2), vec![1.0; 3]),
        Err(Error::LengthMismatch { len: 3, .. })
    ));
    let other = Tape::new(&CPU);
    let b = other.input(t(2, 3, &[0.0; 6]));
    assert!(matches!(a.add(&b), Err(Error::TapeMismatch { .. })));
}

#[test]
fn non_finite_values_are_located() {
    let x = t(2, 2, &[1.0, 2.0, f64::NAN, 4.0]);
    let err = x.check_finite("batch").unwrap_err();
    assert!(
        matches!(err, Error::NonFinite { row: 1, col: 0, .. }),
        "{err}"
    );
}

#[test]
fn parameters_bind_once_and_report_gradients() -> std::result::Result<(), Box<dyn std::error::Error>>
{
    let mut store = ParamStore::<B>::new();
    let w = store.add("layer.weight", t(1, 2, &[2.0, -3.0])).unwrap();
    let unused = store.add("unused", t(1, 1, &[1.0])).unwrap();
    assert!(matches!(
        store.add("layer.weight", t(1, 1, &[0.0])),
        Err(Error::DuplicateParameter(_))
    ));
    let tape = Tape::new(&CPU);
    let a = tape.param(&store, w).unwrap();
    let b = tape.param(&store, w).unwrap();
    tape.param(&store, unused).unwrap();
    // loss = sum(w * w) through two bindings of the same parameter: gradient 2w.
    let loss = a.mul(&b).unwrap().sum_all()?;
    let grads = tape.backward(&loss).unwrap();
    assert_eq!(grads.param(w).unwrap().to_vec()?, vec![4.0, -6.0]);
    assert!(grads.param(unused).is_none());
    let foreign = ParamStore::<B>::new().clone();
    assert!(store.name(w).is_ok() && foreign.get(w).is_err());
    Ok(())
}

#[test]
fn constants_get_no_gradient_and_record_no_backward_work(
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let tape = Tape::new(&CPU);
    let c = tape.constant(t(1, 3, &[1.0, 2.0, 3.0]));
    let derived = c.exp()?.sum_all()?;
    assert!(!derived.requires_grad());
    let x = tape.input(t(1, 3, &[0.5, 0.5, 0.5]));
    let loss = x.mul(&c.exp()?).unwrap().sum_all()?;
    let grads = tape.backward(&loss).unwrap();
    assert!(grads.get(&c).is_none());
    let e: Vec<f64> = [1.0f64, 2.0, 3.0].iter().map(|v| v.exp()).collect();
    assert_eq!(grads.get(&x).unwrap().to_vec()?, e);
    Ok(())
}

#[test]
fn third_and_fourth_derivatives_of_a_power() -> std::result::Result<(), Box<dyn std::error::Error>>
{
    // y = x^4: y' = 4x^3, y'' = 12x^2, y''' = 24x, y'''' = 24.
    let tape = Tape::new(&CPU);
    let x = tape.input(t(1, 1, &[1.5]));
    let mut d = x.powi(4)?;
    let mut expected = vec![];
    for _ in 0..4 {
        d = tape.grad(&d.sum_all()?, &[&x], true).unwrap().remove(0);
        expected.push(d.scalar_value().unwrap());
    }
    assert_eq!(
        expected,
        vec![4.0 * 1.5f64.powi(3), 12.0 * 1.5 * 1.5, 24.0 * 1.5, 24.0]
    );
    Ok(())
}

#[test]
fn grad_without_create_graph_is_constant_and_unused_inputs_get_zeros(
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let tape = Tape::new(&CPU);
    let x = tape.input(t(2, 1, &[0.3, -0.2]));
    let unused = tape.input(t(1, 2, &[1.0, 1.0]));
    let y = x.tanh()?.sum(Axis::All)?;
    let g = tape.grad(&y, &[&x, &unused], false).unwrap();
    assert!(!g[0].requires_grad());
    assert_eq!(g[1].value().to_vec()?, vec![0.0, 0.0]);
    Ok(())
}

#[test]
fn a_variable_recorded_after_the_output_gets_a_zero_gradient(
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let tape = Tape::new(&CPU);
    let x = tape.input(t(2, 1, &[0.3, -0.2]));
    let y = x.tanh()?.sum(Axis::All)?;
    let later = tape.input(t(1, 2, &[1.0, 1.0]));
    for create_graph in [false, true] {
        let g = tape.grad(&y, &[&later, &x], create_graph)?;
        assert_eq!(g[0].value().to_vec()?, vec![0.0, 0.0]);
        assert_eq!(g[1].shape(), Shape::new(2, 1));
    }
    Ok(())
}

#[test]
fn hutchinson_trace_of_a_jacobian_is_unbiased_in_expectation(
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    // For f(x) = x @ A (one sample, 3 features), tr(df/dx) = tr(A). The estimator
    // eps^T (df/dx) eps with a vector-Jacobian product recorded on the tape, then
    // differentiated with respect to A, gives d tr(A)/dA = I in expectation; with the 3
    // standard basis directions the estimate is exact.
    let tape = Tape::new(&CPU);
    let a = tape.input(t(3, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]));
    let x = tape.input(t(1, 3, &[0.1, 0.2, 0.3]));
    let f = x.matmul(&a).unwrap().tanh()?;
    let mut trace = tape.constant(t(1, 1, &[0.0]));
    for k in 0..3 {
        let mut e = [0.0; 3];
        e[k] = 1.0;
        let eps = tape.constant(t(1, 3, &e));
        let vjp = tape
            .grad(&f.mul(&eps).unwrap().sum_all()?, &[&x], true)
            .unwrap()
            .remove(0);
        trace = trace.add(&vjp.mul(&eps).unwrap().sum_all()?).unwrap();
    }
    // Exact trace of the Jacobian of tanh(x A): sum_k A_kk (1 - tanh(xA)_k^2).
    let fx = f.value().to_vec()?;
    let exact: f64 = (0..3)
        .map(|k| [1.0, 5.0, 9.0][k] * (1.0 - fx[k] * fx[k]))
        .sum();
    assert!((trace.scalar_value().unwrap() - exact).abs() < 1e-12);
    // And it is differentiable with respect to A.
    let g = tape.backward(&trace).unwrap();
    assert_eq!(g.get(&a).unwrap().shape(), Shape::new(3, 3));
    Ok(())
}

#[test]
fn vjp_seeds_the_sweep_with_a_cotangent_that_is_not_differentiated(
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    // y = x^3 (elementwise), J = diag(3 x^2). The cotangent u = x depends on x, but
    // vjp treats it as given: u^T J = 3 x^3, not the derivative of sum(x * x^3).
    let tape = Tape::new(&CPU);
    let x = tape.input(t(1, 3, &[1.0, -2.0, 0.5]));
    let y = x.powi(3)?;
    for create_graph in [false, true] {
        let uj = tape.vjp(&y, &x, &[&x], create_graph)?.remove(0);
        assert_eq!(uj.value().to_vec()?, vec![3.0, -24.0, 0.375]);
        assert_eq!(uj.requires_grad(), create_graph);
        if create_graph {
            // Recorded: bilinear in u and J. d/dx sum(u (3 x^2)) with u = x is 9 x^2.
            let g = tape.grad(&uj.sum_all()?, &[&x], false)?.remove(0);
            assert_eq!(g.value().to_vec()?, vec![9.0, 36.0, 2.25]);
        }
    }
    // The cotangent's shape must be the output's.
    let bad = tape.constant(t(3, 1, &[1.0; 3]));
    assert!(matches!(
        tape.vjp(&y, &bad, &[&x], false),
        Err(Error::InvalidArgument { op: "vjp", .. })
    ));
    Ok(())
}

#[test]
fn grad_in_a_late_input_visits_only_what_depends_on_it(
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    // A parameter and an early input feed a chain; a late input x joins it. The gradient
    // with respect to x alone (a sweep over the nodes after x only, with no parameter
    // gradient computed) equals the full backward pass's x entry.
    let mut store = ParamStore::new();
    let w = store.add("w", t(1, 2, &[0.7, -1.3]))?;
    let tape = Tape::new(&CPU);
    let early = tape.input(t(1, 2, &[0.2, 0.4]));
    let wv = tape.param(&store, w)?;
    let h = early.mul(&wv)?.swish()?;
    let x = tape.input(t(1, 2, &[1.5, -0.5]));
    let y = h.mul(&x)?.swish()?.sum_all()?;
    let only_x = tape.grad(&y, &[&x], false)?.remove(0);
    let full = tape.backward(&y)?;
    assert_eq!(only_x.value().to_vec()?, full.get(&x).unwrap().to_vec()?);
    Ok(())
}

#[test]
fn an_inference_tape_binds_parameters_and_buffers_as_constants(
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let mut store = ParamStore::new();
    let w = store.add("w", t(1, 2, &[0.7, -1.3]))?;
    let u = store.add_buffer("u", t(1, 2, &[1.0, 0.0]))?;
    assert!(store.is_buffer(u)? && !store.is_buffer(w)?);
    assert_eq!(store.trainable_ids().collect::<Vec<_>>(), vec![w]);
    let training = Tape::new(&CPU);
    assert!(!training.params_frozen());
    assert!(training.param(&store, w)?.requires_grad());
    assert!(
        !training.param(&store, u)?.requires_grad(),
        "a buffer is never trained"
    );
    let eval = Tape::inference(&CPU);
    assert!(eval.params_frozen());
    let wv = eval.param(&store, w)?;
    assert!(!wv.requires_grad());
    // Inputs stay differentiable: a layer can take vector-Jacobian products in them.
    let x = eval.input(t(1, 2, &[1.0, 2.0]));
    let y = x.mul(&wv)?.sum_all()?;
    assert_eq!(
        eval.grad(&y, &[&x], false)?[0].value().to_vec()?,
        vec![0.7, -1.3]
    );
    // A snapshot is addressed by the same handles; a clone is not.
    assert!(store.snapshot().get(w).is_ok());
    assert!(store.clone().get(w).is_err());
    Ok(())
}
