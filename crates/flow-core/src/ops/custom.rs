//! Differentiable operations defined outside flow-core (as candle's `CustomOp`): a backend
//! crate or a user supplies an op's forward (its own kernel, on any backend) and its
//! backward in one place, and the tape records it like a built-in op.

use super::GradList;
use crate::autodiff::algebra::GradAlgebra;
use crate::autodiff::op::Op;
use crate::autodiff::{NodeId, Tape, Var};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::sync::Arc;

/// An operation of one output from any number of inputs, defined outside flow-core.
///
/// `forward` computes the output from the inputs' values (a fused kernel of one's own, say).
/// `backward` gives each input's gradient from the output's gradient, written with tape
/// operations: recorded when gradients are taken with `create_graph`, so the op is
/// differentiable to any order. `backward_values` is the first-order pass on plain tensors;
/// its default runs `backward` on a scratch tape, and a kernel of one's own may replace it.
///
/// ```
/// use std::sync::Arc;
/// use flow_core::{CustomOp, Cpu, Tape, Tensor, Var};
///
/// /// `x^3`, elementwise.
/// struct Cube;
///
/// impl CustomOp<Cpu<f64>> for Cube {
///     fn name(&self) -> &str {
///         "cube"
///     }
///     fn forward(&self, inputs: &[&Tensor<Cpu<f64>>]) -> flow_core::Result<Tensor<Cpu<f64>>> {
///         inputs[0].mul(&inputs[0].mul(inputs[0])?)
///     }
///     fn backward(
///         &self,
///         inputs: &[&Var<Cpu<f64>>],
///         _output: &Var<Cpu<f64>>,
///         grad: &Var<Cpu<f64>>,
///     ) -> flow_core::Result<Vec<Option<Var<Cpu<f64>>>>> {
///         Ok(vec![Some(inputs[0].square()?.mul_scalar(3.0)?.mul(grad)?)])
///     }
/// }
///
/// let cpu = Cpu::<f64>::new();
/// let tape = Tape::new(&cpu);
/// let x = tape.input(Tensor::from_vec(&cpu, (1, 2), vec![1.0, -2.0])?);
/// let y = Var::custom(Arc::new(Cube), &[&x])?;
/// let grads = tape.backward(&y.sum_all()?)?;
/// assert_eq!(grads.get(&x).unwrap().to_vec()?, vec![3.0, 12.0]);
/// # Ok::<(), flow_core::Error>(())
/// ```
pub trait CustomOp<B: Backend>: Send + Sync + 'static {
    /// A name for errors.
    fn name(&self) -> &str;

    /// The output from the inputs' values.
    fn forward(&self, inputs: &[&Tensor<B>]) -> Result<Tensor<B>>;

    /// Each input's gradient (`None`: none) given the output's gradient `grad`, with tape
    /// operations on `inputs`, `output` and `grad` (all on one tape).
    fn backward(
        &self,
        inputs: &[&Var<B>],
        output: &Var<B>,
        grad: &Var<B>,
    ) -> Result<Vec<Option<Var<B>>>>;

    /// [`CustomOp::backward`] on values, for first-order passes. The default records
    /// `backward` on a scratch tape.
    fn backward_values(
        &self,
        inputs: &[&Tensor<B>],
        output: &Tensor<B>,
        grad: &Tensor<B>,
    ) -> Result<Vec<Option<Tensor<B>>>> {
        let tape = Tape::new(output.backend());
        let vars: Vec<Var<B>> = inputs.iter().map(|t| tape.constant((*t).clone())).collect();
        let refs: Vec<&Var<B>> = vars.iter().collect();
        let (output, grad) = (tape.constant(output.clone()), tape.constant(grad.clone()));
        Ok(self
            .backward(&refs, &output, &grad)?
            .into_iter()
            .map(|g| g.map(|g| g.value()))
            .collect())
    }
}

impl<B: Backend> Var<B> {
    /// Applies a [`CustomOp`] to `inputs` (at least one, all on one tape).
    pub fn custom(op: Arc<dyn CustomOp<B>>, inputs: &[&Var<B>]) -> Result<Var<B>> {
        let Some(first) = inputs.first() else {
            return Err(Error::invalid(
                "custom",
                format!("op `{}` given no input", op.name()),
            ));
        };
        for v in &inputs[1..] {
            first.check_same_tape(v, "custom")?;
        }
        let values: Vec<Tensor<B>> = inputs.iter().map(|v| v.value()).collect();
        let refs: Vec<&Tensor<B>> = values.iter().collect();
        let out = op.forward(&refs)?;
        let tape = first.tape();
        let ids = inputs.iter().map(|v| v.id).collect();
        Ok(tape.var(tape.push(out, Op::Custom { op, inputs: ids })))
    }
}

pub(crate) fn backward<B: Backend, A: GradAlgebra<B>>(
    alg: &mut A,
    op: &Arc<dyn CustomOp<B>>,
    inputs: &[NodeId],
    out: NodeId,
    g: &A::T,
    grads: &mut GradList<A::T>,
) -> Result<()> {
    if !inputs.iter().any(|&id| alg.needs_grad(id)) {
        return Ok(());
    }
    for (&id, grad) in inputs.iter().zip(alg.custom_grads(op, inputs, out, g)?) {
        if let Some(grad) = grad {
            if alg.needs_grad(id) {
                grads.push((id, grad));
            }
        }
    }
    Ok(())
}

/// Checks that `op` gave one gradient per input, each of its input's shape.
fn check_grads<T>(
    op: &dyn CustomOp<impl Backend>,
    grads: &[Option<T>],
    shapes: &[crate::Shape],
    shape_of: impl Fn(&T) -> crate::Shape,
) -> Result<()> {
    if grads.len() != shapes.len() {
        return Err(Error::invalid(
            "custom",
            format!(
                "op `{}`: backward gave {} gradients for {} inputs",
                op.name(),
                grads.len(),
                shapes.len()
            ),
        ));
    }
    for (k, (g, &shape)) in grads.iter().zip(shapes).enumerate() {
        if let Some(g) = g {
            if shape_of(g) != shape {
                return Err(Error::invalid(
                    "custom",
                    format!(
                        "op `{}`: the gradient of input {k} is {}, the input {shape}",
                        op.name(),
                        shape_of(g)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The first-order gradients on values.
pub(crate) fn value_grads<B: Backend>(
    op: &Arc<dyn CustomOp<B>>,
    inputs: &[Tensor<B>],
    out: &Tensor<B>,
    g: &Tensor<B>,
) -> Result<Vec<Option<Tensor<B>>>> {
    let refs: Vec<&Tensor<B>> = inputs.iter().collect();
    let grads = op.backward_values(&refs, out, g)?;
    let shapes: Vec<_> = inputs.iter().map(|t| t.shape()).collect();
    check_grads(op.as_ref(), &grads, &shapes, |t| t.shape())?;
    Ok(grads)
}

/// The gradients recorded on `tape`.
pub(crate) fn recorded_grads<B: Backend>(
    tape: &Tape<B>,
    op: &Arc<dyn CustomOp<B>>,
    inputs: &[NodeId],
    out: NodeId,
    g: NodeId,
) -> Result<Vec<Option<NodeId>>> {
    let vars: Vec<Var<B>> = inputs.iter().map(|&id| tape.var(id)).collect();
    let refs: Vec<&Var<B>> = vars.iter().collect();
    let out = tape.var(out);
    let grads = op.backward(&refs, &out, &tape.var(g))?;
    for v in grads.iter().flatten() {
        out.check_same_tape(v, "custom")?;
    }
    let shapes: Vec<_> = vars.iter().map(|v| v.shape()).collect();
    check_grads(op.as_ref(), &grads, &shapes, |v| v.shape())?;
    Ok(grads.into_iter().map(|v| v.map(|v| v.id)).collect())
}
