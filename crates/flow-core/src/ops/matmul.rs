//! Matrix product with optional transposes.

use super::GradList;
use crate::autodiff::algebra::GradAlgebra;
use crate::autodiff::op::Op;
use crate::autodiff::{NodeId, Tape, Var};
use crate::backend::Backend;
use crate::error::Result;

impl<B: Backend> Tape<B> {
    pub(crate) fn record_matmul(&self, a: NodeId, ta: bool, b: NodeId, tb: bool) -> Result<NodeId> {
        let value = self.value(a).matmul_t(ta, &self.value(b), tb)?;
        Ok(self.push(value, Op::Matmul { a, ta, b, tb }))
    }
}

impl<B: Backend> Var<B> {
    /// `self @ other`.
    pub fn matmul(&self, other: &Var<B>) -> Result<Var<B>> {
        self.matmul_t(false, other, false)
    }

    /// `op(self) @ op(other)`, transposing each operand whose flag is set.
    pub fn matmul_t(&self, ta: bool, other: &Var<B>, tb: bool) -> Result<Var<B>> {
        self.check_same_tape(other, "matmul")?;
        let id = self.tape.record_matmul(self.id, ta, other.id, tb)?;
        Ok(self.tape.var(id))
    }
}

/// For `C = op(A) op(B)`: `dop(A) = G op(B)^T` and `dop(B) = op(A)^T G`, transposed back
/// where the operand was read transposed.
pub(crate) fn backward<B: Backend, A: GradAlgebra<B>>(
    alg: &mut A,
    a: NodeId,
    ta: bool,
    b: NodeId,
    tb: bool,
    g: &A::T,
    grads: &mut GradList<A::T>,
) -> Result<()> {
    if alg.needs_grad(a) {
        let bv = alg.node(b);
        let ga = if ta {
            alg.matmul(&bv, tb, g, true)?
        } else {
            alg.matmul(g, false, &bv, !tb)?
        };
        grads.push((a, ga));
    }
    if alg.needs_grad(b) {
        let av = alg.node(a);
        let gb = if tb {
            alg.matmul(g, true, &av, ta)?
        } else {
            alg.matmul(&av, !ta, g, false)?
        };
        grads.push((b, gb));
    }
    Ok(())
}
