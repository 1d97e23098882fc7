//! Column slicing and concatenation, and column gathers (permutations) with their adjoint,
//! the scatter-add.

use super::GradList;
use crate::autodiff::algebra::GradAlgebra;
use crate::autodiff::op::Op;
use crate::autodiff::{NodeId, Tape, Var};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::index::IndexTensor;
use crate::tensor::Tensor;

impl<B: Backend> Tape<B> {
    pub(crate) fn record_slice_cols(&self, x: NodeId, start: usize, len: usize) -> Result<NodeId> {
        let value = self.value(x).slice_cols(start, len)?;
        Ok(self.push(value, Op::SliceCols { x, start }))
    }

    pub(crate) fn record_gather_cols(&self, x: NodeId, index: IndexTensor<B>) -> Result<NodeId> {
        let value = self.value(x).gather_cols(&index)?;
        Ok(self.push(value, Op::GatherCols { x, index }))
    }

    pub(crate) fn record_scatter_add_cols(
        &self,
        x: NodeId,
        index: IndexTensor<B>,
        width: usize,
    ) -> Result<NodeId> {
        let value = self.value(x).scatter_add_cols(&index, width)?;
        Ok(self.push(value, Op::ScatterAddCols { x, index }))
    }
}

impl<B: Backend> Var<B> {
    /// Columns `start .. start + len`.
    pub fn slice_cols(&self, start: usize, len: usize) -> Result<Var<B>> {
        Ok(self
            .tape
            .var(self.tape.record_slice_cols(self.id, start, len)?))
    }

    /// Side-by-side concatenation of variables with equal row counts.
    pub fn concat_cols(parts: &[&Var<B>]) -> Result<Var<B>> {
        let first = parts
            .first()
            .ok_or_else(|| Error::invalid("concat_cols", "no variables to concatenate"))?;
        for p in parts {
            first.check_same_tape(p, "concat_cols")?;
        }
        let values: Vec<Tensor<B>> = parts.iter().map(|p| p.value()).collect();
        let value = Tensor::concat_cols(&values.iter().collect::<Vec<_>>())?;
        let op = Op::ConcatCols {
            parts: parts.iter().map(|p| p.id).collect(),
        };
        Ok(first.tape.var(first.tape.push(value, op)))
    }

    /// Output column `j` is column `index[j]`: a permutation, a selection or repeats.
    pub fn gather_cols(&self, index: &IndexTensor<B>) -> Result<Var<B>> {
        Ok(self
            .tape
            .var(self.tape.record_gather_cols(self.id, index.clone())?))
    }

    /// Adds column `j` into column `index[j]` of a zero `rows x width` result.
    pub fn scatter_add_cols(&self, index: &IndexTensor<B>, width: usize) -> Result<Var<B>> {
        let id = self
            .tape
            .record_scatter_add_cols(self.id, index.clone(), width)?;
        Ok(self.tape.var(id))
    }
}

pub(crate) fn backward_slice<B: Backend, A: GradAlgebra<B>>(
    alg: &mut A,
    x: NodeId,
    start: usize,
    g: &A::T,
    grads: &mut GradList<A::T>,
) -> Result<()> {
    if alg.needs_grad(x) {
        let xv = alg.node(x);
        let width = alg.shape(&xv).cols;
        let len = alg.shape(g).cols;
        let index = crate::resident::shared_columns(alg.backend(), start, len, 1)?;
        grads.push((x, alg.scatter_add_cols(g, &index, width)?));
    }
    Ok(())
}

pub(crate) fn backward_concat<B: Backend, A: GradAlgebra<B>>(
    alg: &mut A,
    parts: &[NodeId],
    g: &A::T,
    grads: &mut GradList<A::T>,
) -> Result<()> {
    let mut offset = 0;
    for &p in parts {
        let pv = alg.node(p);
        let width = alg.shape(&pv).cols;
        if alg.needs_grad(p) {
            grads.push((p, alg.slice_cols(g, offset, width)?));
        }
        offset += width;
    }
    Ok(())
}

pub(crate) fn backward_gather<B: Backend, A: GradAlgebra<B>>(
    alg: &mut A,
    x: NodeId,
    index: &IndexTensor<B>,
    g: &A::T,
    grads: &mut GradList<A::T>,
) -> Result<()> {
    if alg.needs_grad(x) {
        let xv = alg.node(x);
        let width = alg.shape(&xv).cols;
        grads.push((x, alg.scatter_add_cols(g, index, width)?));
    }
    Ok(())
}

pub(crate) fn backward_scatter_add<B: Backend, A: GradAlgebra<B>>(
    alg: &mut A,
    x: NodeId,
    index: &IndexTensor<B>,
    g: &A::T,
    grads: &mut GradList<A::T>,
) -> Result<()> {
    if alg.needs_grad(x) {
        grads.push((x, alg.gather_cols(g, index)?));
    }
    Ok(())
}
