//! What each tape node was computed by, and the one dispatch from a node to its op's
//! backward (which lives in `crate::ops`, beside the op's forward).

use super::algebra::GradAlgebra;
use super::tape::NodeId;
use crate::backend::{
    Activation, Backend, BinaryOp, CouplingScale, Direction, RationalQuadratic, UnaryOp,
};
use crate::error::Result;
use crate::index::IndexTensor;
use crate::ops;
use crate::shape::Axis;
use crate::tensor::Tensor;
use std::sync::Arc;

pub(crate) enum Op<B: Backend> {
    /// An input, a parameter or a constant.
    Leaf,
    Matmul {
        a: NodeId,
        ta: bool,
        b: NodeId,
        tb: bool,
    },
    Linear {
        x: NodeId,
        weight: NodeId,
        bias: NodeId,
        act: Activation<B::Elem>,
    },
    Unary {
        op: UnaryOp<B::Elem>,
        x: NodeId,
    },
    Binary {
        op: BinaryOp,
        a: NodeId,
        b: NodeId,
    },
    Sum {
        x: NodeId,
        axis: Axis,
    },
    /// `mask` is the one-hot position of each maximum, fixed at forward time.
    Max {
        x: NodeId,
        mask: Tensor<B>,
    },
    BroadcastTo {
        x: NodeId,
    },
    LogSumExpCols {
        x: NodeId,
    },
    SoftmaxCols {
        x: NodeId,
    },
    SliceCols {
        x: NodeId,
        start: usize,
    },
    ConcatCols {
        parts: Vec<NodeId>,
    },
    GatherCols {
        x: NodeId,
        index: IndexTensor<B>,
    },
    ScatterAddCols {
        x: NodeId,
        index: IndexTensor<B>,
    },
    Select {
        mask: Tensor<B>,
        a: NodeId,
        b: NodeId,
    },
    Reshape {
        x: NodeId,
    },
    TakePerRow {
        x: NodeId,
        index: IndexTensor<B>,
    },
    PutPerRow {
        x: NodeId,
        index: IndexTensor<B>,
    },
    /// The transformed rows of an affine coupling.
    AffineCoupling {
        v: NodeId,
        params: NodeId,
        scale: CouplingScale,
        direction: Direction,
    },
    DiagNormalLogProb {
        z: NodeId,
        loc: NodeId,
        log_scale: NodeId,
    },
    /// A spline's outputs and per-entry log-dets, side by side (`n x 2d`).
    RationalQuadratic {
        x: NodeId,
        params: NodeId,
        /// What the fused backward reads, computed by the forward.
        cache: Tensor<B>,
        spec: RationalQuadratic,
        direction: Direction,
    },
    /// A [`crate::CustomOp`] of `inputs`.
    Custom {
        op: Arc<dyn crate::ops::custom::CustomOp<B>>,
        inputs: Vec<NodeId>,
    },
    /// The log-det of the same coupling, a function of `params` only.
    AffineCouplingLogDet {
        params: NodeId,
        scale: CouplingScale,
        direction: Direction,
    },
}

// Not derived: a derive would require `B: Clone` bounds on the parameters' types.
impl<B: Backend> Clone for Op<B> {
    fn clone(&self) -> Self {
        match self {
            Op::Leaf => Op::Leaf,
            Op::Custom { op, inputs } => Op::Custom {
                op: Arc::clone(op),
                inputs: inputs.clone(),
            },
            Op::Matmul { a, ta, b, tb } => Op::Matmul {
                a: *a,
                ta: *ta,
                b: *b,
                tb: *tb,
            },
            Op::Linear {
                x,
                weight,
                bias,
                act,
            } => Op::Linear {
                x: *x,
                weight: *weight,
                bias: *bias,
                act: *act,
            },
            Op::Unary { op, x } => Op::Unary { op: *op, x: *x },
            Op::Binary { op, a, b } => Op::Binary {
                op: *op,
                a: *a,
                b: *b,
            },
            Op::Sum { x, axis } => Op::Sum { x: *x, axis: *axis },
            Op::Max { x, mask } => Op::Max {
                x: *x,
                mask: mask.clone(),
            },
            Op::BroadcastTo { x } => Op::BroadcastTo { x: *x },
            Op::LogSumExpCols { x } => Op::LogSumExpCols { x: *x },
            Op::SoftmaxCols { x } => Op::SoftmaxCols { x: *x },
            Op::SliceCols { x, start } => Op::SliceCols {
                x: *x,
                start: *start,
            },
            Op::ConcatCols { parts } => Op::ConcatCols {
                parts: parts.clone(),
            },
            Op::GatherCols { x, index } => Op::GatherCols {
                x: *x,
                index: index.clone(),
            },
            Op::ScatterAddCols { x, index } => Op::ScatterAddCols {
                x: *x,
                index: index.clone(),
            },
            Op::Select { mask, a, b } => Op::Select {
                mask: mask.clone(),
                a: *a,
                b: *b,
            },
            Op::Reshape { x } => Op::Reshape { x: *x },
            Op::TakePerRow { x, index } => Op::TakePerRow {
                x: *x,
                index: index.clone(),
            },
            Op::PutPerRow { x, index } => Op::PutPerRow {
                x: *x,
                index: index.clone(),
            },
            Op::AffineCoupling {
                v,
                params,
                scale,
                direction,
            } => Op::AffineCoupling {
                v: *v,
                params: *params,
                scale: *scale,
                direction: *direction,
            },
            Op::DiagNormalLogProb { z, loc, log_scale } => Op::DiagNormalLogProb {
                z: *z,
                loc: *loc,
                log_scale: *log_scale,
            },
            Op::RationalQuadratic {
                x,
                params,
                cache,
                spec,
                direction,
            } => Op::RationalQuadratic {
                x: *x,
                params: *params,
                cache: cache.clone(),
                spec: *spec,
                direction: *direction,
            },
            Op::AffineCouplingLogDet {
                params,
                scale,
                direction,
            } => Op::AffineCouplingLogDet {
                params: *params,
                scale: *scale,
                direction: *direction,
            },
        }
    }
}

impl<B: Backend> Op<B> {
    /// Whether any input of the op satisfies `f` (no allocation: this runs on every push).
    pub(crate) fn any_input(&self, f: impl Fn(NodeId) -> bool) -> bool {
        match self {
            Op::Leaf => false,
            Op::Matmul { a, b, .. } | Op::Binary { a, b, .. } | Op::Select { a, b, .. } => {
                f(*a) || f(*b)
            }
            Op::Linear {
                x, weight, bias, ..
            } => f(*x) || f(*weight) || f(*bias),
            Op::AffineCoupling { v, params, .. } => f(*v) || f(*params),
            Op::RationalQuadratic { x, params, .. } => f(*x) || f(*params),
            Op::AffineCouplingLogDet { params, .. } => f(*params),
            Op::DiagNormalLogProb { z, loc, log_scale } => f(*z) || f(*loc) || f(*log_scale),
            Op::Unary { x, .. }
            | Op::Sum { x, .. }
            | Op::Max { x, .. }
            | Op::BroadcastTo { x }
            | Op::LogSumExpCols { x }
            | Op::SoftmaxCols { x }
            | Op::SliceCols { x, .. }
            | Op::GatherCols { x, .. }
            | Op::ScatterAddCols { x, .. }
            | Op::Reshape { x }
            | Op::TakePerRow { x, .. }
            | Op::PutPerRow { x, .. } => f(*x),
            Op::ConcatCols { parts } => parts.iter().any(|&p| f(p)),
            Op::Custom { inputs, .. } => inputs.iter().any(|&p| f(p)),
        }
    }

    /// The gradients flowing from node `out` (with gradient `g`) into those of its inputs
    /// that need one.
    /// `g` is taken by value: an op may reuse its buffer (the linear layer's activation
    /// backward does).
    pub(crate) fn backward<A: GradAlgebra<B>>(
        &self,
        alg: &mut A,
        out: NodeId,
        g: A::T,
    ) -> Result<Vec<(NodeId, A::T)>> {
        let mut grads = Vec::new();
        {
            match self {
                Op::Leaf => {}
                Op::Matmul { a, ta, b, tb } => {
                    ops::matmul::backward(alg, *a, *ta, *b, *tb, &g, &mut grads)?
                }
                Op::Linear {
                    x,
                    weight,
                    bias,
                    act,
                } => ops::linear::backward(alg, *x, *weight, *bias, *act, out, g, &mut grads)?,
                Op::Unary { op, x } => {
                    if alg.needs_grad(*x) && !op.is_piecewise_constant() {
                        let gx = ops::unary::backward(alg, *op, *x, out, &g)?;
                        grads.push((*x, gx));
                    }
                }
                Op::Binary { op, a, b } => {
                    ops::binary::backward(alg, *op, *a, *b, out, &g, &mut grads)?
                }
                Op::Sum { x, .. } => ops::reduce::backward_sum(alg, *x, &g, &mut grads)?,
                Op::BroadcastTo { x } => ops::reduce::backward_broadcast(alg, *x, &g, &mut grads)?,
                Op::Max { x, mask } => ops::reduce::backward_max(alg, *x, mask, &g, &mut grads)?,
                Op::LogSumExpCols { x } => {
                    ops::softmax::backward_logsumexp(alg, *x, out, &g, &mut grads)?
                }
                Op::SoftmaxCols { x } => {
                    ops::softmax::backward_softmax(alg, *x, out, &g, &mut grads)?
                }
                Op::SliceCols { x, start } => {
                    ops::columns::backward_slice(alg, *x, *start, &g, &mut grads)?
                }
                Op::ConcatCols { parts } => {
                    ops::columns::backward_concat(alg, parts, &g, &mut grads)?
                }
                Op::GatherCols { x, index } => {
                    ops::columns::backward_gather(alg, *x, index, &g, &mut grads)?
                }
                Op::ScatterAddCols { x, index } => {
                    ops::columns::backward_scatter_add(alg, *x, index, &g, &mut grads)?
                }
                Op::Select { mask, a, b } => {
                    ops::select::backward(alg, mask, *a, *b, &g, &mut grads)?
                }
                Op::Reshape { x } => ops::per_row::backward_reshape(alg, *x, &g, &mut grads)?,
                Op::TakePerRow { x, index } => {
                    ops::per_row::backward_take(alg, *x, index, &g, &mut grads)?
                }
                Op::PutPerRow { x, index } => {
                    ops::per_row::backward_put(alg, *x, index, &g, &mut grads)?
                }
                Op::AffineCoupling {
                    v,
                    params,
                    scale,
                    direction,
                } => ops::affine_coupling::backward(
                    alg, *v, *params, *scale, *direction, out, &g, &mut grads,
                )?,
                Op::RationalQuadratic {
                    x,
                    params,
                    cache,
                    spec,
                    direction,
                } => ops::rational_quadratic::backward(
                    alg, *x, *params, cache, spec, *direction, &g, &mut grads,
                )?,
                Op::DiagNormalLogProb { z, loc, log_scale } => {
                    ops::diag_normal::backward(alg, *z, *loc, *log_scale, &g, &mut grads)?
                }
                Op::Custom { op, inputs } => {
                    ops::custom::backward(alg, op, inputs, out, &g, &mut grads)?
                }
                Op::AffineCouplingLogDet {
                    params,
                    scale,
                    direction,
                } => ops::affine_coupling::backward_log_det(
                    alg, *params, *scale, *direction, &g, &mut grads,
                )?,
            }
        }
        Ok(grads)
    }
}
