//! Differentiable operations, one family per module: each holds its forward (recording onto
//! the tape, with `Var` methods) and its backward, written once over
//! [`crate::autodiff::algebra::GradAlgebra`]. Kernels live in the backends.

pub(crate) mod affine_coupling;
pub(crate) mod binary;
pub(crate) mod columns;
pub(crate) mod custom;
pub(crate) mod diag_normal;
pub(crate) mod linear;
pub(crate) mod matmul;
pub(crate) mod per_row;
pub(crate) mod rational_quadratic;
pub(crate) mod reduce;
pub(crate) mod select;
pub(crate) mod softmax;
pub(crate) mod unary;

use crate::autodiff::NodeId;

/// Gradients an op's backward emits: (input node, its gradient contribution).
pub(crate) type GradList<T> = Vec<(NodeId, T)>;
