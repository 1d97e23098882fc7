//! Elementwise maps of one operand.

use crate::autodiff::algebra::GradAlgebra;
use crate::autodiff::op::Op;
use crate::autodiff::{NodeId, Tape, Var};
use crate::backend::{Backend, BinaryOp, UnaryOp};
use crate::element::Element;
use crate::error::Result;
use num_traits::One as _;

impl<B: Backend> Tape<B> {
    pub(crate) fn record_unary(&self, op: UnaryOp<B::Elem>, x: NodeId) -> Result<NodeId> {
        let value = self.value(x).unary(op)?;
        Ok(self.push(value, Op::Unary { op, x }))
    }
}

impl<B: Backend> Var<B> {
    pub fn unary(&self, op: UnaryOp<B::Elem>) -> Result<Var<B>> {
        Ok(self.tape.var(self.tape.record_unary(op, self.id)?))
    }
    pub fn neg(&self) -> Result<Var<B>> {
        self.unary(UnaryOp::Neg)
    }
    pub fn exp(&self) -> Result<Var<B>> {
        self.unary(UnaryOp::Exp)
    }
    pub fn log(&self) -> Result<Var<B>> {
        self.unary(UnaryOp::Log)
    }
    pub fn log1p(&self) -> Result<Var<B>> {
        self.unary(UnaryOp::Log1p)
    }
    pub fn sqrt(&self) -> Result<Var<B>> {
        self.unary(UnaryOp::Sqrt)
    }
    pub fn square(&self) -> Result<Var<B>> {
        self.unary(UnaryOp::Square)
    }
    pub fn abs(&self) -> Result<Var<B>> {
        self.unary(UnaryOp::Abs)
    }
    pub fn tanh(&self) -> Result<Var<B>> {
        self.unary(UnaryOp::Tanh)
    }
    pub fn sigmoid(&self) -> Result<Var<B>> {
        self.unary(UnaryOp::Sigmoid)
    }
    /// Swish, `x sigmoid(x)` ([`UnaryOp::Swish`]`(0)`): its gradients are fused maps of
    /// its derivatives, to the fourth.
    pub fn swish(&self) -> Result<Var<B>> {
        self.unary(UnaryOp::Swish(0))
    }
    /// `log(1 + exp(x))`, computed without overflow.
    pub fn softplus(&self) -> Result<Var<B>> {
        self.unary(UnaryOp::Softplus)
    }
    pub fn relu(&self) -> Result<Var<B>> {
        self.unary(UnaryOp::Relu)
    }
    /// `x` for `x > 0`, `slope * x` otherwise (PyTorch's LeakyReLU).
    pub fn leaky_relu(&self, slope: f64) -> Result<Var<B>> {
        self.unary(UnaryOp::LeakyRelu(B::Elem::of(slope)))
    }
    /// `x` for `x > 0`, `alpha * (exp(x) - 1)` otherwise.
    pub fn elu(&self, alpha: f64) -> Result<Var<B>> {
        self.unary(UnaryOp::Elu(B::Elem::of(alpha)))
    }
    pub fn add_scalar(&self, s: f64) -> Result<Var<B>> {
        self.unary(UnaryOp::AddScalar(B::Elem::of(s)))
    }
    pub fn mul_scalar(&self, s: f64) -> Result<Var<B>> {
        self.unary(UnaryOp::MulScalar(B::Elem::of(s)))
    }
    pub fn powi(&self, n: i32) -> Result<Var<B>> {
        self.unary(UnaryOp::Powi(n))
    }
    /// -1, 0 or 1; gradients do not flow through it.
    pub fn sign(&self) -> Result<Var<B>> {
        self.unary(UnaryOp::Sign)
    }
    /// 1 where `x > 0`, else 0; gradients do not flow through it.
    pub fn step(&self) -> Result<Var<B>> {
        self.unary(UnaryOp::Step)
    }
}

/// `g * f'(x)`, with `f'` written in differentiable terms of `x` and the output `y`, so that
/// the recorded backward has correct second derivatives.
pub(crate) fn backward<B: Backend, A: GradAlgebra<B>>(
    alg: &mut A,
    op: UnaryOp<B::Elem>,
    x: NodeId,
    out: NodeId,
    g: &A::T,
) -> Result<A::T> {
    let one = B::Elem::one();
    Ok(match op {
        UnaryOp::Neg => alg.neg(g)?,
        UnaryOp::AddScalar(_) => g.clone(),
        UnaryOp::MulScalar(s) => alg.scale(g, s)?,
        UnaryOp::Exp => {
            let y = alg.node(out);
            alg.mul(g, &y)?
        }
        UnaryOp::Log => {
            let x = alg.node(x);
            alg.div(g, &x)?
        }
        UnaryOp::Log1p => {
            let x = alg.node(x);
            let x1 = alg.unary(UnaryOp::AddScalar(one), &x)?;
            alg.div(g, &x1)?
        }
        UnaryOp::Sqrt => {
            let y = alg.node(out);
            let two_y = alg.scale(&y, one + one)?;
            alg.div(g, &two_y)?
        }
        UnaryOp::Square => {
            let x = alg.node(x);
            let two_x = alg.scale(&x, one + one)?;
            alg.mul(g, &two_x)?
        }
        UnaryOp::Powi(n) => {
            let x = alg.node(x);
            let d = alg.unary(UnaryOp::Powi(n - 1), &x)?;
            let d = alg.scale(&d, B::Elem::of(n as f64))?;
            alg.mul(g, &d)?
        }
        UnaryOp::Abs => {
            let x = alg.node(x);
            let sign = alg.unary(UnaryOp::Sign, &x)?;
            alg.mul(g, &sign)?
        }
        UnaryOp::Tanh => {
            // 1 - y^2
            let y = alg.node(out);
            let y2 = alg.unary(UnaryOp::Square, &y)?;
            let d = alg.unary(UnaryOp::MulScalar(-one), &y2)?;
            let d = alg.unary(UnaryOp::AddScalar(one), &d)?;
            alg.mul(g, &d)?
        }
        UnaryOp::Sigmoid => {
            // y (1 - y)
            let y = alg.node(out);
            let one_minus = alg.unary(UnaryOp::MulScalar(-one), &y)?;
            let one_minus = alg.unary(UnaryOp::AddScalar(one), &one_minus)?;
            let d = alg.mul(&y, &one_minus)?;
            alg.mul(g, &d)?
        }
        UnaryOp::Softplus => {
            let x = alg.node(x);
            let d = alg.unary(UnaryOp::Sigmoid, &x)?;
            alg.mul(g, &d)?
        }
        UnaryOp::Relu => {
            let x = alg.node(x);
            alg.binary(BinaryOp::Gate, g, &x)?
        }
        UnaryOp::LeakyRelu(slope) => {
            // step(x) (1 - slope) + slope
            let x = alg.node(x);
            let d = alg.unary(UnaryOp::Step, &x)?;
            let d = alg.unary(UnaryOp::MulScalar(one - slope), &d)?;
            let d = alg.unary(UnaryOp::AddScalar(slope), &d)?;
            alg.mul(g, &d)?
        }
        UnaryOp::Elu(alpha) => {
            let d = alg.local_derivative(out, UnaryOp::EluDerivative(alpha), x)?;
            alg.mul(g, &d)?
        }
        UnaryOp::EluDerivative(_) => {
            // 0 above zero, alpha exp(x) below: the map itself less the step.
            let y = alg.node(out);
            let x = alg.node(x);
            let step = alg.unary(UnaryOp::Step, &x)?;
            let d = alg.sub(&y, &step)?;
            alg.mul(g, &d)?
        }
        UnaryOp::Swish(k) => {
            if k >= crate::backend::MAX_SWISH_DERIVATIVE {
                return Err(crate::error::Error::InvalidArgument {
                    op: "swish",
                    message: format!(
                        "the derivative of order {} of swish is not implemented (at most {})",
                        k + 1,
                        crate::backend::MAX_SWISH_DERIVATIVE
                    ),
                });
            }
            let d = alg.local_derivative(out, UnaryOp::Swish(k + 1), x)?;
            alg.mul(g, &d)?
        }
        UnaryOp::Sign | UnaryOp::Step => unreachable!("piecewise-constant ops have no backward"),
    })
}
