//! The fused linear layer `act(x @ weight^T + bias)` (weight stored `out x in`, as PyTorch).

use super::GradList;
use crate::autodiff::algebra::GradAlgebra;
use crate::autodiff::op::Op;
use crate::autodiff::{NodeId, Var};
use crate::backend::{Activation, Backend, BinaryOp, UnaryOp};
use crate::error::{Error, Result};
use crate::shape::Axis;
use num_traits::{Float as _, One as _, Zero as _};

impl<B: Backend> Var<B> {
    /// `self @ weight^T + bias`, with `weight` `out x in` and `bias` `1 x out`. One fused
    /// backend call where the backend has one.
    pub fn linear(&self, weight: &Var<B>, bias: &Var<B>) -> Result<Var<B>> {
        self.linear_activated(weight, bias, Activation::Identity)
    }

    /// `act(self @ weight^T + bias)`: a linear layer and its activation in one node, so the
    /// pre-activation is never stored and the backward gates the gradient by the output.
    /// A leaky slope must be positive (a slope of 0 is [`Activation::Relu`]).
    pub fn linear_activated(
        &self,
        weight: &Var<B>,
        bias: &Var<B>,
        act: Activation<B::Elem>,
    ) -> Result<Var<B>> {
        self.check_same_tape(weight, "linear")?;
        self.check_same_tape(bias, "linear")?;
        if let Activation::LeakyRelu(slope) = act {
            if slope.is_nan() || slope <= B::Elem::zero() {
                return Err(Error::invalid(
                    "linear_activated",
                    format!("a fused leaky ReLU needs a positive slope, got {slope}"),
                ));
            }
        }
        let value = self
            .value()
            .linear_activated(&weight.value(), &bias.value(), act)?;
        let op = Op::Linear {
            x: self.id,
            weight: weight.id,
            bias: bias.id,
            act,
        };
        Ok(self.tape.var(self.tape.push(value, op)))
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn backward<B: Backend, A: GradAlgebra<B>>(
    alg: &mut A,
    x: NodeId,
    weight: NodeId,
    bias: NodeId,
    act: Activation<B::Elem>,
    out: NodeId,
    g: A::T,
    grads: &mut GradList<A::T>,
) -> Result<()> {
    let y = alg.node(out);
    let (g, g_bias) = alg.activation_grads(act, g, &y)?;
    if alg.needs_grad(x) {
        let w = alg.node(weight);
        let gx = alg.matmul(&g, false, &w, false)?;
        grads.push((x, gx));
    }
    if alg.needs_grad(weight) {
        let xv = alg.node(x);
        let gw = alg.matmul(&g, true, &xv, false)?;
        grads.push((weight, gw));
    }
    if alg.needs_grad(bias) {
        grads.push((bias, g_bias));
    }
    Ok(())
}

/// The gradient at the pre-activation and its row sum, composed from primitives. Both
/// activations have positive slope on each side of zero, so the output's sign is the
/// pre-activation's.
pub(crate) fn composed_activation_grads<B: Backend, A: GradAlgebra<B>>(
    alg: &mut A,
    act: Activation<B::Elem>,
    g: &A::T,
    y: &A::T,
) -> Result<(A::T, A::T)> {
    let g_pre = match act {
        Activation::Identity => g.clone(),
        Activation::Relu => alg.binary(BinaryOp::Gate, g, y)?,
        Activation::LeakyRelu(slope) => {
            // step(y) (1 - slope) + slope
            let d = alg.unary(UnaryOp::Step, y)?;
            let d = alg.scale(&d, B::Elem::one() - slope)?;
            let d = alg.unary(UnaryOp::AddScalar(slope), &d)?;
            alg.mul(g, &d)?
        }
    };
    let row_sum = alg.sum(&g_pre, Axis::Rows)?;
    Ok((g_pre, row_sum))
}
