//! Ops defined outside flow-core through `CustomOp`: gradients of first and second order
//! against central differences, a first-order kernel of one's own against the recorded
//! backward, and a backward that breaks its contract reported as an error.

mod common;

use common::*;
use flow_core::gradcheck::GradCheck;
use flow_core::{CustomOp, Tape, Tensor, Var};
use proptest::prelude::*;
use std::sync::Arc;

/// `x * exp(s)` with `s` a `1 x d` row broadcast over `x`'s rows: two inputs, broadcasting.
/// Its first-order pass is the default (the recorded backward on a scratch tape).
struct ScaleByExp;

impl CustomOp<B> for ScaleByExp {
    fn name(&self) -> &str {
        "scale_by_exp"
    }

    fn forward(&self, inputs: &[&Tensor<B>]) -> flow_core::Result<Tensor<B>> {
        inputs[0].mul(&inputs[1].unary(flow_core::UnaryOp::Exp)?)
    }

    fn backward(
        &self,
        inputs: &[&Var<B>],
        output: &Var<B>,
        grad: &Var<B>,
    ) -> flow_core::Result<Vec<Option<Var<B>>>> {
        let g_x = grad.mul(&inputs[1].exp()?)?;
        let g_s = grad.mul(output)?.sum(flow_core::Axis::Rows)?;
        Ok(vec![Some(g_x), Some(g_s)])
    }
}

/// The same op with a first-order kernel of its own on tensors.
struct ScaleByExpKernel;

impl CustomOp<B> for ScaleByExpKernel {
    fn name(&self) -> &str {
        "scale_by_exp_kernel"
    }
    fn forward(&self, inputs: &[&Tensor<B>]) -> flow_core::Result<Tensor<B>> {
        ScaleByExp.forward(inputs)
    }
    fn backward(
        &self,
        inputs: &[&Var<B>],
        output: &Var<B>,
        grad: &Var<B>,
    ) -> flow_core::Result<Vec<Option<Var<B>>>> {
        ScaleByExp.backward(inputs, output, grad)
    }
    fn backward_values(
        &self,
        inputs: &[&Tensor<B>],
        output: &Tensor<B>,
        grad: &Tensor<B>,
    ) -> flow_core::Result<Vec<Option<Tensor<B>>>> {
        let g_x = grad.mul(&inputs[1].unary(flow_core::UnaryOp::Exp)?)?;
        let g_s = grad.mul(output)?.sum(flow_core::Axis::Rows)?;
        Ok(vec![Some(g_x), Some(g_s)])
    }
}

/// A backward that gives the second input's gradient the first input's shape.
struct WrongShape;

impl CustomOp<B> for WrongShape {
    fn name(&self) -> &str {
        "wrong_shape"
    }
    fn forward(&self, inputs: &[&Tensor<B>]) -> flow_core::Result<Tensor<B>> {
        inputs[0].add(inputs[1])
    }
    fn backward(
        &self,
        _inputs: &[&Var<B>],
        _output: &Var<B>,
        grad: &Var<B>,
    ) -> flow_core::Result<Vec<Option<Var<B>>>> {
        Ok(vec![Some(grad.clone()), Some(grad.clone())])
    }
}

fn operands() -> impl Strategy<Value = (Tensor<B>, Tensor<B>)> {
    (1usize..=4, 1usize..=4)
        .prop_flat_map(|(r, c)| (matrix_of(r, c, any_value()), matrix_of(1, c, -1.0f64..1.0)))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn gradients_of_any_order_match_central_differences((x, s) in operands(), own in any::<bool>()) {
        let op: Arc<dyn CustomOp<B>> = if own { Arc::new(ScaleByExpKernel) } else { Arc::new(ScaleByExp) };
        let f = |v: &[Var<B>]| Var::custom(op.clone(), &[&v[0], &v[1]])?.tanh();
        GradCheck::default().check(&CPU, &[x.clone(), s.clone()], f).map_err(|e| TestCaseError::fail(e.to_string()))?;
        GradCheck { rtol: 1e-4, atol: 1e-6, ..GradCheck::default() }
            .check_second_order(&CPU, &[x, s], f)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }

    #[test]
    fn a_kernel_of_ones_own_matches_the_recorded_backward((x, s) in operands()) {
        let tape = Tape::new(&CPU);
        let (xv, sv) = (tape.input(x), tape.input(s));
        let op: Arc<dyn CustomOp<B>> = Arc::new(ScaleByExpKernel);
        let loss = Var::custom(op, &[&xv, &sv])?.square()?.sum_all()?;
        let raw = tape.backward(&loss)?;
        let recorded = tape.grad(&loss, &[&xv, &sv], true)?;
        for (v, r) in [&xv, &sv].into_iter().zip(&recorded) {
            prop_assert!(raw.get(v).unwrap().max_abs_diff(&r.value())? < 1e-12);
        }
    }
}

#[test]
fn a_broken_backward_is_an_error_naming_the_op(
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let tape = Tape::new(&CPU);
    let x = tape.input(Tensor::ones(&CPU, (3, 2))?);
    let s = tape.input(Tensor::ones(&CPU, (1, 2))?);
    let y = Var::custom(Arc::new(WrongShape), &[&x, &s]).unwrap();
    let loss = y.sum_all()?;
    for err in [
        tape.backward(&loss).unwrap_err(),
        tape.grad(&loss, &[&x, &s], true).unwrap_err(),
    ] {
        let msg = err.to_string();
        assert!(
            msg.contains("wrong_shape") && msg.contains("input 1"),
            "{msg}"
        );
    }
    assert!(Var::custom(Arc::new(WrongShape), &[]).is_err());
    Ok(())
}
