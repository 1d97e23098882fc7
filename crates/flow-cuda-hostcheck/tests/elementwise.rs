//! `elementwise.cu` against `Cpu<f64>`: each kernel on random inputs (special values
//! included) of every shape in `check::SHAPES`, on several grids and blocks, into outputs
//! filled with NaN first.

use flow_core::{Activation, AdamStep, Backend, BinaryOp, Tensor, UnaryOp};
use flow_cuda_hostcheck::both_types;
use flow_cuda_hostcheck::check::{
    assert_close, assert_rel, assert_same, cpu, nans, plan, tensor, to_f64s, to_real, values,
    with_specials, Real, Rng, SHAPES,
};

fn fill<T: Real>() {
    for (rows, cols) in SHAPES {
        let n = rows * cols;
        for (i, launch) in plan(n).into_iter().enumerate() {
            let value = T::of(-1.5 - i as f64);
            let mut out = nans::<T>(n);
            unsafe { T::fill(launch, out.as_mut_ptr(), n as u64, value) };
            let want = values(&Tensor::full(&cpu(), (rows, cols), value.to_f64()).unwrap());
            assert_same(&format!("fill {rows}x{cols} {launch:?}"), &out, &want);
        }
    }
}

/// A unary op, its code in `elementwise.cu`, its parameters and the range of its inputs.
struct UnaryCase {
    op: UnaryOp<f64>,
    code: i32,
    p: f64,
    k: i32,
    range: (f64, f64),
}

/// Every unary op (with parameter `p`, and three exponents of `powi`).
fn unary_cases(p: f64) -> Vec<UnaryCase> {
    use UnaryOp::*;
    let case = |op, code, p, k, range| UnaryCase {
        op,
        code,
        p,
        k,
        range,
    };
    let wide = (-4.0, 4.0);
    vec![
        case(Neg, 0, 0.0, 0, wide),
        case(Exp, 1, 0.0, 0, (-20.0, 20.0)),
        case(Log, 2, 0.0, 0, (-0.5, 30.0)),
        case(Log1p, 3, 0.0, 0, (-1.5, 30.0)),
        case(Sqrt, 4, 0.0, 0, (-0.5, 30.0)),
        case(Square, 5, 0.0, 0, wide),
        case(Abs, 6, 0.0, 0, wide),
        case(Tanh, 7, 0.0, 0, wide),
        case(Sigmoid, 8, 0.0, 0, (-30.0, 30.0)),
        case(Softplus, 9, 0.0, 0, (-30.0, 30.0)),
        case(Relu, 10, 0.0, 0, wide),
        case(LeakyRelu(p), 11, p, 0, wide),
        case(Elu(p), 12, p, 0, wide),
        case(AddScalar(p), 13, p, 0, wide),
        case(MulScalar(p), 14, p, 0, wide),
        case(Powi(3), 15, 0.0, 3, wide),
        case(Powi(-2), 15, 0.0, -2, wide),
        case(Powi(0), 15, 0.0, 0, wide),
        case(Sign, 16, 0.0, 0, wide),
        case(Step, 17, 0.0, 0, wide),
        case(EluDerivative(p), 19, p, 0, wide),
    ]
}

fn unary<T: Real>() {
    let mut rng = Rng::new(1);
    let p = T::of(0.3).to_f64();
    for (s, (rows, cols)) in SHAPES.into_iter().enumerate() {
        let n = rows * cols;
        let launches = plan(n);
        for (o, c) in unary_cases(p).into_iter().enumerate() {
            let (op, (low, high)) = (c.op, c.range);
            let x = to_real::<T>(&with_specials(&mut rng, n, low, high));
            let want = values(&tensor(rows, cols, &to_f64s(&x)).unary(op).unwrap());
            let launch = launches[(s + o) % launches.len()];
            let mut out = nans::<T>(n);
            unsafe {
                T::unary(
                    launch,
                    x.as_ptr(),
                    out.as_mut_ptr(),
                    n as u64,
                    c.code,
                    T::of(c.p),
                    c.k,
                )
            };
            // Results near zero: tiny inputs' squares and powers underflow in f32.
            assert_rel(
                &format!("unary {op:?} {rows}x{cols} {launch:?}"),
                &out,
                &want,
                1e-30,
            );
        }
    }
}

fn binary<T: Real>() {
    let mut rng = Rng::new(2);
    let ops = [
        (BinaryOp::Add, 0),
        (BinaryOp::Sub, 1),
        (BinaryOp::Mul, 2),
        (BinaryOp::Div, 3),
        (BinaryOp::Gate, 4),
    ];
    for (s, (rows, cols)) in SHAPES.into_iter().enumerate() {
        let n = rows * cols;
        let launches = plan(n);
        // Operand shapes: equal to the output's, a row, a column, a scalar.
        let shapes = [(rows, cols), (1, cols), (rows, 1), (1, 1)];
        let pairs = [(0, 0), (0, 1), (2, 0), (1, 2), (3, 0), (0, 3)];
        for (o, (op, code)) in ops.into_iter().enumerate() {
            for (q, &(ia, ib)) in pairs.iter().enumerate() {
                let ((ar, ac), (br, bc)) = (shapes[ia], shapes[ib]);
                let a = to_real::<T>(&with_specials(&mut rng, ar * ac, -3.0, 3.0));
                let b = to_real::<T>(&rng.values(br * bc, -3.0, 3.0));
                let ta = tensor(ar, ac, &to_f64s(&a));
                let want = values(&ta.binary(op, &tensor(br, bc, &to_f64s(&b))).unwrap());
                let launch = launches[(s + o + q) % launches.len()];
                let mut out = nans::<T>(n);
                unsafe {
                    T::binary(
                        launch,
                        a.as_ptr(),
                        b.as_ptr(),
                        out.as_mut_ptr(),
                        rows as u64,
                        cols as u64,
                        ar as u64,
                        ac as u64,
                        br as u64,
                        bc as u64,
                        code,
                    )
                };
                let what = format!("binary {op:?} {ar}x{ac} with {br}x{bc} {launch:?}");
                assert_rel(&what, &out, &want, 1e-30);
            }
        }
    }
}

fn select<T: Real>() {
    let mut rng = Rng::new(3);
    for (rows, cols) in SHAPES {
        let n = rows * cols;
        // Zeros of both signs, NaN (not zero: picks `a`) and random signs.
        let mask: Vec<T> = (0..n)
            .map(|i| match i % 5 {
                0 => T::of(0.0),
                1 => T::of(-0.0),
                2 => T::of(f64::NAN),
                _ => T::of(rng.uniform(-1.0, 1.0).signum()),
            })
            .collect();
        let a = to_real::<T>(&rng.values(n, -3.0, 3.0));
        let b = to_real::<T>(&rng.values(n, -3.0, 3.0));
        let [tm, ta, tb] = [&mask, &a, &b].map(|v| tensor(rows, cols, &to_f64s(v)));
        let want = values(&Tensor::select(&tm, &ta, &tb).unwrap());
        for launch in plan(n) {
            let mut out = nans::<T>(n);
            unsafe {
                T::select(
                    launch,
                    mask.as_ptr(),
                    a.as_ptr(),
                    b.as_ptr(),
                    out.as_mut_ptr(),
                    n as u64,
                )
            };
            assert_same(&format!("select {rows}x{cols} {launch:?}"), &out, &want);
        }
    }
}

fn broadcast_to<T: Real>() {
    let mut rng = Rng::new(4);
    for (rows, cols) in SHAPES {
        let n = rows * cols;
        let launches = plan(n);
        for (q, (xr, xc)) in [(1, cols), (rows, 1), (1, 1), (rows, cols)]
            .into_iter()
            .enumerate()
        {
            let x = to_real::<T>(&with_specials(&mut rng, xr * xc, -3.0, 3.0));
            let want = values(
                &tensor(xr, xc, &to_f64s(&x))
                    .broadcast_to((rows, cols))
                    .unwrap(),
            );
            for launch in [
                launches[q % launches.len()],
                launches[(q + 4) % launches.len()],
            ] {
                let mut out = nans::<T>(n);
                unsafe {
                    T::broadcast_to(
                        launch,
                        x.as_ptr(),
                        out.as_mut_ptr(),
                        rows as u64,
                        cols as u64,
                        xr as u64,
                        xc as u64,
                    )
                };
                assert_same(
                    &format!("broadcast_to {xr}x{xc} to {rows}x{cols} {launch:?}"),
                    &out,
                    &want,
                );
            }
        }
    }
}

/// The activations with their codes, with slope `slope`.
fn activations(slope: f64) -> [(Activation<f64>, i32); 3] {
    [
        (Activation::Identity, 0),
        (Activation::Relu, 1),
        (Activation::LeakyRelu(slope), 2),
    ]
}

fn linear_epilogue<T: Real>() {
    let mut rng = Rng::new(5);
    let slope = T::of(0.01).to_f64();
    for (s, (rows, cols)) in SHAPES.into_iter().enumerate() {
        let n = rows * cols;
        let launches = plan(n);
        for (a, (act, code)) in activations(slope).into_iter().enumerate() {
            let y = to_real::<T>(&with_specials(&mut rng, n, -3.0, 3.0));
            let bias = to_real::<T>(&rng.values(cols, -1.0, 1.0));
            let pre = tensor(rows, cols, &to_f64s(&y))
                .add(&tensor(1, cols, &to_f64s(&bias)))
                .unwrap();
            let want = values(&match act.unary() {
                Some(op) => pre.unary(op).unwrap(),
                None => pre,
            });
            for launch in [
                launches[(s + a) % launches.len()],
                launches[(s + a + 5) % launches.len()],
            ] {
                let mut out = y.clone(); // in place
                unsafe {
                    T::linear_epilogue(
                        launch,
                        out.as_mut_ptr(),
                        bias.as_ptr(),
                        rows as u64,
                        cols as u64,
                        code,
                        T::of(slope),
                    )
                };
                assert_rel(
                    &format!("linear_epilogue {act:?} {rows}x{cols} {launch:?}"),
                    &out,
                    &want,
                    1e-30,
                );
            }
        }
    }
}

fn activation_backward<T: Real>() {
    let mut rng = Rng::new(6);
    let slope = T::of(0.2).to_f64();
    for (s, (rows, cols)) in SHAPES.into_iter().enumerate() {
        let n = rows * cols;
        let launches = plan(n);
        for (a, (act, code)) in activations(slope).into_iter().enumerate() {
            let g = to_real::<T>(&rng.values(n, -3.0, 3.0));
            let out = to_real::<T>(&with_specials(&mut rng, n, -3.0, 3.0));
            let mut want = tensor(rows, cols, &to_f64s(&g)).storage().clone();
            let out64 = tensor(rows, cols, &to_f64s(&out)).storage().clone();
            cpu().activation_backward(act, &mut want, &out64).unwrap();
            let want = cpu().download(&want).unwrap();
            for launch in [
                launches[(s + a) % launches.len()],
                launches[(s + a + 4) % launches.len()],
            ] {
                let mut got = g.clone(); // in place
                unsafe {
                    T::activation_backward(
                        launch,
                        got.as_mut_ptr(),
                        out.as_ptr(),
                        n as u64,
                        code,
                        T::of(slope),
                    )
                };
                assert_rel(
                    &format!("activation_backward {act:?} {rows}x{cols} {launch:?}"),
                    &got,
                    &want,
                    1e-30,
                );
            }
        }
    }
}

fn adam<T: Real>() {
    let mut rng = Rng::new(7);
    for (s, (rows, cols)) in SHAPES.into_iter().enumerate() {
        let n = rows * cols;
        for (t, launch) in plan(n)
            .into_iter()
            .enumerate()
            .filter(|(t, _)| (t + s) % 2 == 0)
        {
            let step = (t + 1) as i32;
            let h = AdamStep {
                lr: T::of(1e-3).to_f64(),
                beta1: T::of(0.9).to_f64(),
                beta2: T::of(0.999).to_f64(),
                eps: T::of(1e-8).to_f64(),
                weight_decay: T::of(if t % 2 == 0 { 0.0 } else { 1e-2 }).to_f64(),
                bias_correction1: T::of(1.0 - 0.9f64.powi(step)).to_f64(),
                bias_correction2: T::of(1.0 - 0.999f64.powi(step)).to_f64(),
            };
            let param = to_real::<T>(&rng.values(n, -2.0, 2.0));
            let grad = to_real::<T>(&rng.values(n, -1.0, 1.0));
            let m = to_real::<T>(&rng.values(n, -0.1, 0.1));
            let v = to_real::<T>(&rng.values(n, 0.0, 0.01));
            let mut p_ref = tensor(rows, cols, &to_f64s(&param));
            let mut m_ref = tensor(rows, cols, &to_f64s(&m));
            let mut v_ref = tensor(rows, cols, &to_f64s(&v));
            p_ref
                .adam_update(
                    &tensor(rows, cols, &to_f64s(&grad)),
                    &mut m_ref,
                    &mut v_ref,
                    &h,
                )
                .unwrap();
            let (mut p_got, mut m_got, mut v_got) = (param.clone(), m.clone(), v.clone());
            unsafe {
                T::adam(
                    launch,
                    p_got.as_mut_ptr(),
                    grad.as_ptr(),
                    m_got.as_mut_ptr(),
                    v_got.as_mut_ptr(),
                    n as u64,
                    T::of(h.lr),
                    T::of(h.beta1),
                    T::of(h.beta2),
                    T::of(h.eps),
                    T::of(h.weight_decay),
                    T::of(h.bias_correction1),
                    T::of(h.bias_correction2),
                )
            };
            let what = format!("adam step {step} {rows}x{cols} {launch:?}");
            // The moments' updates cancel: tolerances relative to their terms' sizes.
            let (v_want, m_want) = (values(&v_ref), values(&m_ref));
            let m_terms: Vec<f64> = (0..n)
                .map(|i| {
                    let g = grad[i].to_f64() + h.weight_decay * param[i].to_f64();
                    (h.beta1 * m[i].to_f64()).abs() + ((1.0 - h.beta1) * g).abs()
                })
                .collect();
            let step_size = |i: usize| {
                let denom = v_want[i].sqrt() / h.bias_correction2.sqrt() + h.eps;
                h.lr / h.bias_correction1 * m_terms[i] / denom
            };
            assert_close(
                &format!("{what}: param"),
                &p_got,
                &values(&p_ref),
                |i, w| T::RTOL * (w.abs() + step_size(i)),
            );
            assert_close(&format!("{what}: m"), &m_got, &m_want, |i, w| {
                T::RTOL * (w.abs() + m_terms[i])
            });
            assert_rel(&format!("{what}: v"), &v_got, &v_want, 1e-30);
        }
    }
}

both_types!(
    fill,
    unary,
    binary,
    select,
    broadcast_to,
    linear_epilogue,
    activation_backward,
    adam
);
