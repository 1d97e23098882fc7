//! Second derivatives (Hessian-vector products recorded with `create_graph`) against
//! central differences of the first derivative, for every op an MLP uses. Each unary op is
//! checked alone and multiplied by a second input, so that mixed partials are non-trivial
//! even where the op's own second derivative is zero (relu).

mod common;

use common::*;
use flow_core::Axis;
use proptest::prelude::*;

fn pair(
    values: impl Strategy<Value = f64> + Clone + 'static,
) -> impl Strategy<Value = (flow_core::Tensor<B>, flow_core::Tensor<B>)> {
    shape().prop_flat_map(move |(r, c)| {
        (
            matrix_of(r, c, values.clone()),
            matrix_of(r, c, any_value()),
        )
    })
}

macro_rules! second_order_unary {
    ($($name:ident: $values:expr => |$x:ident| $body:expr;)*) => {
        proptest! {
            #![proptest_config(config())]
            $(
                #[test]
                fn $name((x, w) in pair($values)) {
                    check2(std::slice::from_ref(&x), |v| { let $x = &v[0]; Ok($body) })?;
                    check2(&[x, w], |v| { let $x = &v[0]; $body.mul(&v[1]) })?;
                }
            )*
        }
    };
}

second_order_unary! {
    tanh: any_value() => |x| x.tanh()?;
    softplus: -6.0f64..6.0 => |x| x.softplus()?;
    relu: away_from_zero() => |x| x.relu()?;
    leaky_relu: away_from_zero() => |x| x.leaky_relu(0.1)?;
    elu: away_from_zero() => |x| x.elu(0.8)?;
    elu_derivative: away_from_zero() => |x| x.unary(flow_core::UnaryOp::EluDerivative(0.8))?;
    exp: any_value() => |x| x.exp()?;
    log: positive() => |x| x.log()?;
    sum_cols: any_value() => |x| x.sum(Axis::Cols)?.broadcast_to(x.shape())?;
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn per_row_take_and_put((x, w, index) in shape().prop_flat_map(|(r, c)| {
        (matrix_of(r, c, any_value()), matrix_of(r, 1, any_value()), prop::collection::vec(0..c, r))
    })) {
        // The picks are linear: multiplied by a second input, and through tanh, they have
        // non-trivial second derivatives that must flow back through put_per_row / reshape.
        let width = x.cols();
        check2(&[x.clone(), w.clone()], |v| {
            let picked = v[0].take_per_row(&idx(&index))?.mul(&v[1])?.tanh()?;
            picked.put_per_row(&idx(&index), width)?.reshape((1, v[0].shape().len()))
        })?;
    }

    #[test]
    fn rational_quadratic((x, params, bins, direction) in spline_operands()) {
        // The fused op's recorded backward differentiates the composed spline.
        let spec = spline_spec(bins);
        // The second derivative jumps at a knot, so central differences of the gradient
        // measure nothing there: points within 1e-4 of one are drawn again.
        prop_assume!(clear_of_knots(&x, &params, &spec, direction, 1e-4));
        // Bins as steep as the minimum derivative allows (1e-3 to 1e3) have large third
        // derivatives, the truncation error of central differences of a gradient: rtol 1e-3
        // (a steep inverse bin gave 1.3120e-2 against 1.3127e-2, 5e-4 apart).
        flow_core::gradcheck::GradCheck { rtol: 1e-3, atol: 1e-6, ..Default::default() }
            .check_second_order(&CPU, &[x, params], |v| {
                let (y, ld) = v[0].rational_quadratic(&v[1], &spec, direction)?;
                flow_core::Var::concat_cols(&[&y, &ld])
            })
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }

    #[test]
    fn matmul((a, b, ta, tb) in matmul_operands(4))
    {
        // The product is bilinear: its mixed partials are the whole second derivative.
        check2(&[a.clone(), b.clone()], |v| v[0].matmul_t(ta, &v[1], tb))?;
        check2(&[a, b], |v| v[0].matmul_t(ta, &v[1], tb)?.tanh())?;
    }

    #[test]
    fn broadcasting_add((a, b) in (shape(), any::<bool>()).prop_flat_map(|((r, c), row)| {
        let (br, bc) = if row { (1, c) } else { (r, 1) };
        (matrix_of(r, c, any_value()), matrix_of(br, bc, any_value()))
    })) {
        check2(&[a, b], |v| v[0].add(&v[1])?.tanh())?;
    }

    #[test]
    fn sum_all_and_sum_rows(x in any_matrix()) {
        check2(std::slice::from_ref(&x), |v| v[0].sum_all()?.square())?;
        check2(&[x], |v| v[0].sum(Axis::Rows)?.exp())?;
    }

    #[test]
    fn mlp_layer((x, w, b) in (1usize..=4, 1usize..=3, 1usize..=3).prop_flat_map(|(r, i, o)| {
        (matrix_of(r, i, any_value()), matrix_of(o, i, any_value()), matrix_of(1, o, any_value()))
    })) {
        check2(&[x.clone(), w.clone(), b.clone()], |v| v[0].linear(&v[1], &v[2])?.softplus())?;
        check2(&[x, w, b], |v| v[0].matmul_t(false, &v[1], true)?.add(&v[2])?.elu(1.0)?.tanh())?;
    }

    #[test]
    fn affine_coupling((v, params, scale, direction) in coupling_operands()) {
        check2(&[v, params], |v| {
            let (y, ld) = v[0].affine_coupling(&v[1], scale, direction)?;
            flow_core::Var::concat_cols(&[&y.tanh()?, &ld.tanh()?])
        })?;
    }

    #[test]
    fn diag_normal_log_prob((z, loc, log_scale) in diag_normal_operands()) {
        check2(&[z, loc, log_scale], |v| v[0].diag_normal_log_prob(&v[1], &v[2])?.tanh())?;
    }

    #[test]
    fn linear_activated((x, w, b) in linear_operands(3), slope in prop::sample::select(vec![0.0, 0.1])) {
        prop_assume!(min_abs_pre_activation(&x, &w, &b) > 1e-3);
        let act = if slope == 0.0 {
            flow_core::Activation::Relu
        } else {
            flow_core::Activation::LeakyRelu(slope)
        };
        check2(&[x, w, b], |v| v[0].linear_activated(&v[1], &v[2], act)?.tanh())?;
    }
}
