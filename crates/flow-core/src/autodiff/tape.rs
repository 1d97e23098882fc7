//! The tape, its variables, and the backward pass.

use super::algebra::{GradAlgebra, RawAlgebra, RecordingAlgebra};
use super::op::Op;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::params::{ParamId, ParamStore};
use crate::shape::Shape;
use crate::tensor::Tensor;
use std::cell::{Ref, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

/// Index of a node on its tape.
pub(crate) type NodeId = usize;

pub(crate) struct Node<B: Backend> {
    pub(crate) value: Tensor<B>,
    pub(crate) op: Op<B>,
    pub(crate) requires_grad: bool,
    /// A local derivative a first-order backward pass computed, kept for the next pass
    /// through the node (see `GradAlgebra::local_derivative`).
    pub(crate) derivative: std::cell::OnceCell<Tensor<B>>,
}

pub(crate) struct TapeInner<B: Backend> {
    pub(crate) nodes: Vec<Node<B>>,
    params: HashMap<ParamId, NodeId>,
    /// Parameters bind as constants ([`Tape::inference`]).
    frozen_params: bool,
}

/// A record of one forward pass. Cheap to clone (a shared handle); single-threaded.
pub struct Tape<B: Backend> {
    backend: B,
    inner: Rc<RefCell<TapeInner<B>>>,
}

impl<B: Backend> Clone for Tape<B> {
    fn clone(&self) -> Self {
        Tape {
            backend: self.backend.clone(),
            inner: Rc::clone(&self.inner),
        }
    }
}

impl<B: Backend> fmt::Debug for Tape<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tape({} nodes on {})", self.len(), self.backend.name())
    }
}

/// A value recorded on a tape.
pub struct Var<B: Backend> {
    pub(crate) tape: Tape<B>,
    pub(crate) id: NodeId,
}

impl<B: Backend> Clone for Var<B> {
    fn clone(&self) -> Self {
        Var {
            tape: self.tape.clone(),
            id: self.id,
        }
    }
}

impl<B: Backend> fmt::Debug for Var<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Var(#{} {})", self.id, self.shape())
    }
}

impl<B: Backend> Tape<B> {
    pub fn new(backend: &B) -> Self {
        Self::with_frozen_params(backend, false)
    }

    /// A tape for evaluation, as PyTorch's `no_grad` for parameters: [`Tape::param`] binds
    /// parameters as constants, so a model evaluated on it records no backward work for
    /// them and [`Tape::params_frozen`] tells layers that no parameter gradient is wanted.
    /// Inputs made with [`Tape::input`] are still differentiable (a layer may need
    /// vector-Jacobian products in its input to evaluate itself, as a residual flow's
    /// log-determinant does).
    ///
    /// ```
    /// use flow_core::{Cpu, ParamStore, Tape, Tensor};
    /// let cpu = Cpu::<f64>::new();
    /// let mut params = ParamStore::new();
    /// let w = params.add("w", Tensor::from_f64s(&cpu, (1, 1), &[2.0])?)?;
    /// let tape = Tape::inference(&cpu);
    /// assert!(tape.params_frozen());
    /// assert!(!tape.param(&params, w)?.requires_grad());
    /// # Ok::<(), flow_core::Error>(())
    /// ```
    pub fn inference(backend: &B) -> Self {
        Self::with_frozen_params(backend, true)
    }

    fn with_frozen_params(backend: &B, frozen_params: bool) -> Self {
        Tape {
            backend: backend.clone(),
            inner: Rc::new(RefCell::new(TapeInner {
                nodes: Vec::new(),
                params: HashMap::new(),
                frozen_params,
            })),
        }
    }

    /// Whether parameters bind as constants on this tape ([`Tape::inference`]).
    pub fn params_frozen(&self) -> bool {
        self.inner.borrow().frozen_params
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Number of recorded nodes.
    pub fn len(&self) -> usize {
        self.inner.borrow().nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A value that is not differentiated.
    pub fn constant(&self, value: Tensor<B>) -> Var<B> {
        self.var(self.push_leaf(value, false))
    }

    /// An input whose gradient is asked for.
    pub fn input(&self, value: Tensor<B>) -> Var<B> {
        self.var(self.push_leaf(value, true))
    }

    /// Binds parameter `id` of `store` into this tape (once: later calls return the same
    /// variable), so that [`Gradients::param`] reports its gradient. On an
    /// [`Tape::inference`] tape, and for a buffer ([`ParamStore::add_buffer`]), it binds as
    /// a constant.
    pub fn param(&self, store: &ParamStore<B>, id: ParamId) -> Result<Var<B>> {
        if let Some(&node) = self.inner.borrow().params.get(&id) {
            return Ok(self.var(node));
        }
        let trainable = !self.params_frozen() && !store.is_buffer(id)?;
        let node = self.push_leaf(store.get(id)?.clone(), trainable);
        self.inner.borrow_mut().params.insert(id, node);
        Ok(self.var(node))
    }

    pub(crate) fn var(&self, id: NodeId) -> Var<B> {
        Var {
            tape: self.clone(),
            id,
        }
    }

    pub(crate) fn same(&self, other: &Tape<B>) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }

    fn push_leaf(&self, value: Tensor<B>, requires_grad: bool) -> NodeId {
        let mut inner = self.inner.borrow_mut();
        inner.nodes.push(Node {
            value,
            op: Op::Leaf,
            requires_grad,
            derivative: std::cell::OnceCell::new(),
        });
        inner.nodes.len() - 1
    }

    /// Records `value` as the result of `op`. When no input requires a gradient the op is
    /// dropped and the node becomes a constant, so grad-free subgraphs cost no backward work.
    pub(crate) fn push(&self, value: Tensor<B>, op: Op<B>) -> NodeId {
        let mut inner = self.inner.borrow_mut();
        let requires_grad = op.any_input(|i| inner.nodes[i].requires_grad);
        let op = if requires_grad { op } else { Op::Leaf };
        inner.nodes.push(Node {
            value,
            op,
            requires_grad,
            derivative: std::cell::OnceCell::new(),
        });
        inner.nodes.len() - 1
    }

    pub(crate) fn value(&self, id: NodeId) -> Tensor<B> {
        self.inner.borrow().nodes[id].value.clone()
    }

    pub(crate) fn shape(&self, id: NodeId) -> Shape {
        self.inner.borrow().nodes[id].value.shape()
    }

    pub(crate) fn requires_grad(&self, id: NodeId) -> bool {
        self.inner.borrow().nodes[id].requires_grad
    }

    pub(crate) fn nodes(&self) -> Ref<'_, TapeInner<B>> {
        self.inner.borrow()
    }

    fn check_var(&self, v: &Var<B>, op: &'static str) -> Result<()> {
        if self.same(&v.tape) {
            Ok(())
        } else {
            Err(Error::TapeMismatch { op })
        }
    }

    fn check_scalar(&self, v: &Var<B>, op: &'static str) -> Result<()> {
        self.check_var(v, op)?;
        let shape = v.shape();
        if !shape.is_scalar() {
            return Err(Error::NotScalar { op, shape });
        }
        Ok(())
    }

    /// Gradients of the scalar `loss` with respect to every input and parameter leaf that
    /// asked for one. Nothing is recorded.
    pub fn backward(&self, loss: &Var<B>) -> Result<Gradients<B>> {
        self.check_scalar(loss, "backward")?;
        let seed = Tensor::ones(&self.backend, Shape::SCALAR)?;
        let inner = self.inner.borrow();
        let mut algebra = RawAlgebra::new(&self.backend, &inner.nodes);
        let is_leaf = |id: NodeId| matches!(inner.nodes[id].op, Op::Leaf);
        let grads = run_backward(&mut algebra, loss.id, seed, &is_leaf, 0)?;
        Ok(Gradients {
            grads,
            params: inner.params.clone(),
        })
    }

    /// Gradients of the scalar `output` with respect to `wrt`, as variables on this tape.
    /// With `create_graph`, the gradient computation is itself recorded, so the results can
    /// be differentiated again; without it they are constants. A variable that `output`
    /// does not depend on gets a zero gradient. Only the nodes between `wrt` and `output`
    /// are visited, and no parameter gradient is computed unless a parameter is in `wrt`.
    pub fn grad(
        &self,
        output: &Var<B>,
        wrt: &[&Var<B>],
        create_graph: bool,
    ) -> Result<Vec<Var<B>>> {
        self.check_scalar(output, "grad")?;
        self.gradients(output, None, wrt, create_graph)
    }

    /// The vector-Jacobian products `cotangent^T d output / d w` for each `w` of `wrt`
    /// (PyTorch's `autograd.grad(output, wrt, grad_outputs=cotangent)`): `output` of any
    /// shape, `cotangent` of the same shape. The cotangent seeds the sweep and is not
    /// differentiated through, even when it depends on `wrt` (as the iterates of a power
    /// series `v^T J^k` do); with `create_graph` the products are recorded, bilinear in the
    /// cotangent and the Jacobian, and can be differentiated again.
    ///
    /// ```
    /// use flow_core::{Cpu, Tape, Tensor};
    /// let cpu = Cpu::<f64>::new();
    /// let tape = Tape::new(&cpu);
    /// let x = tape.input(Tensor::from_f64s(&cpu, (1, 2), &[1.0, 2.0])?);
    /// let y = x.square()?; // Jacobian diag(2, 4)
    /// let u = tape.constant(Tensor::from_f64s(&cpu, (1, 2), &[1.0, 10.0])?);
    /// let uj = tape.vjp(&y, &u, &[&x], false)?;
    /// assert_eq!(uj[0].value().to_f64s()?, vec![2.0, 40.0]);
    /// # Ok::<(), flow_core::Error>(())
    /// ```
    pub fn vjp(
        &self,
        output: &Var<B>,
        cotangent: &Var<B>,
        wrt: &[&Var<B>],
        create_graph: bool,
    ) -> Result<Vec<Var<B>>> {
        self.check_var(output, "vjp")?;
        self.check_var(cotangent, "vjp")?;
        if cotangent.shape() != output.shape() {
            return Err(Error::invalid(
                "vjp",
                format!(
                    "the cotangent is {}, the output {}",
                    cotangent.shape(),
                    output.shape()
                ),
            ));
        }
        self.gradients(output, Some(cotangent), wrt, create_graph)
    }

    /// [`Tape::grad`] and [`Tape::vjp`]: the sweep from `output` seeded with `cotangent`
    /// (ones for a scalar when `None`).
    fn gradients(
        &self,
        output: &Var<B>,
        cotangent: Option<&Var<B>>,
        wrt: &[&Var<B>],
        create_graph: bool,
    ) -> Result<Vec<Var<B>>> {
        for v in wrt {
            self.check_var(v, "grad")?;
        }
        let wanted: Vec<NodeId> = wrt.iter().map(|v| v.id).collect();
        let keep = |id: NodeId| wanted.contains(&id);
        let ids: Vec<NodeId> = if create_graph {
            let seed = match cotangent {
                Some(c) => c.id,
                None => {
                    self.constant(Tensor::ones(&self.backend, Shape::SCALAR)?)
                        .id
                }
            };
            self.recorded_grads(output, seed, &wanted, &keep, 0)?
        } else {
            let seed = match cotangent {
                Some(c) => c.value(),
                None => Tensor::ones(&self.backend, Shape::SCALAR)?,
            };
            let grads = {
                let inner = self.inner.borrow();
                let reach = reaching(&inner.nodes, output.id, &wanted);
                let mut algebra = RawAlgebra::new(&self.backend, &inner.nodes).pruned(reach);
                let floor = wanted.iter().copied().min().unwrap_or(0);
                run_backward(&mut algebra, output.id, seed, &keep, floor)?
            };
            wanted
                .iter()
                .map(|&id| {
                    // (A variable recorded after `output` gets no entry: zero.)
                    let g = match grads.get(id).and_then(Option::as_ref) {
                        Some(g) => g.clone(),
                        None => Tensor::zeros(&self.backend, self.shape(id))?,
                    };
                    Ok(self.push_leaf(g, false))
                })
                .collect::<Result<_>>()?
        };
        Ok(ids.into_iter().map(|id| self.var(id)).collect())
    }

    /// The recorded gradients of the scalar `output` with respect to `wrt`, propagated only
    /// through the nodes recorded since `floor` (`wrt` are older): the vector-Jacobian
    /// product of a composition built after `floor` from older nodes, which must not reach
    /// back into how those nodes were computed. What fused ops' recorded backward passes use.
    pub(crate) fn grad_since(
        &self,
        output: &Var<B>,
        wrt: &[&Var<B>],
        floor: NodeId,
    ) -> Result<Vec<Var<B>>> {
        self.check_scalar(output, "grad")?;
        let wanted: Vec<NodeId> = wrt.iter().map(|v| v.id).collect();
        let seed = self
            .constant(Tensor::ones(&self.backend, Shape::SCALAR)?)
            .id;
        let ids = self.recorded_grads(output, seed, &wanted, &|_| false, floor)?;
        Ok(ids.into_iter().map(|id| self.var(id)).collect())
    }

    /// The recorded reverse sweep from `output`, seeded with node `seed`, through the nodes
    /// `floor..`: the gradient node of each of `wanted` (a zero constant where `output` does
    /// not depend on it).
    fn recorded_grads(
        &self,
        output: &Var<B>,
        seed: NodeId,
        wanted: &[NodeId],
        keep: &dyn Fn(NodeId) -> bool,
        floor: NodeId,
    ) -> Result<Vec<NodeId>> {
        let reach = reaching(&self.nodes().nodes, output.id, wanted);
        let floor = floor.max(wanted.iter().copied().min().unwrap_or(0));
        let mut algebra = RecordingAlgebra::new(self).pruned(reach);
        let grads = run_backward(&mut algebra, output.id, seed, keep, floor)?;
        wanted
            .iter()
            .map(|&id| match grads.get(id).and_then(Option::as_ref) {
                Some(g) => Ok(*g),
                None => Ok(algebra.constant(Tensor::zeros(&self.backend, self.shape(id))?)),
            })
            .collect()
    }
}

/// Which of the nodes `0..=root` depend on one of `wanted` (or are one): the only nodes a
/// gradient with respect to `wanted` needs to flow through. Nothing older than the oldest of
/// `wanted` can depend on it, so a vector-Jacobian product in a late input (one block of a
/// deep model) costs that block's backward alone, and no parameter gradient is computed.
fn reaching<B: Backend>(nodes: &[Node<B>], root: NodeId, wanted: &[NodeId]) -> Vec<bool> {
    let mut reach = vec![false; root + 1];
    for &w in wanted {
        if w <= root {
            reach[w] = true;
        }
    }
    let Some(&first) = wanted.iter().min() else {
        return reach;
    };
    for id in first..=root {
        if !reach[id] && nodes[id].op.any_input(|i| reach[i]) {
            reach[id] = true;
        }
    }
    reach
}

/// The reverse sweep, shared by both interpreters: propagates `seed` from `root` back
/// through the nodes `floor..=root` (gradients reaching nodes below `floor` are accumulated
/// there but not propagated further). Returns the gradient of every node for which `keep`
/// holds (and that `root` depends on through differentiable ops), or the first error (of
/// the backend, or of a user-defined backward).
fn run_backward<B: Backend, A: GradAlgebra<B>>(
    algebra: &mut A,
    root: NodeId,
    seed: A::T,
    keep: &dyn Fn(NodeId) -> bool,
    floor: NodeId,
) -> Result<Vec<Option<A::T>>> {
    let mut grads: Vec<Option<A::T>> = vec![None; root + 1];
    grads[root] = Some(seed);
    for id in (floor..=root).rev() {
        let Some(g) = grads[id].take() else { continue };
        let op = algebra.op(id);
        let kept = keep(id).then(|| g.clone());
        for (input, gi) in op.backward(algebra, id, g)? {
            let acc = match grads[input].take() {
                None => gi,
                Some(prev) => algebra.add(&prev, &gi)?,
            };
            grads[input] = Some(acc);
        }
        grads[id] = kept;
    }
    Ok(grads)
}

/// Gradients from [`Tape::backward`], by variable or by parameter.
pub struct Gradients<B: Backend> {
    grads: Vec<Option<Tensor<B>>>,
    params: HashMap<ParamId, NodeId>,
}

impl<B: Backend> fmt::Debug for Gradients<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.grads.iter().filter(|g| g.is_some()).count();
        write!(f, "Gradients({n} tensors, {} params)", self.params.len())
    }
}

impl<B: Backend> Gradients<B> {
    /// The gradient of a leaf variable; `None` when the loss does not depend on it.
    pub fn get(&self, v: &Var<B>) -> Option<&Tensor<B>> {
        self.grads.get(v.id).and_then(Option::as_ref)
    }

    /// The gradient of a parameter bound on the tape; `None` when the loss does not depend
    /// on it or it was never bound.
    pub fn param(&self, id: ParamId) -> Option<&Tensor<B>> {
        self.params
            .get(&id)
            .and_then(|&n| self.grads.get(n))
            .and_then(Option::as_ref)
    }

    /// Every parameter gradient there is, in no particular order.
    pub fn params(&self) -> impl Iterator<Item = (ParamId, &Tensor<B>)> + '_ {
        self.params
            .iter()
            .filter_map(|(&id, &n)| self.grads.get(n)?.as_ref().map(|g| (id, g)))
    }

    /// Multiplies every parameter gradient by `factor` (for gradient clipping).
    pub fn scale_params(&mut self, factor: B::Elem) -> Result<()> {
        for &n in self.params.values() {
            if let Some(g) = self.grads.get_mut(n).and_then(Option::as_mut) {
                *g = g.unary(crate::backend::UnaryOp::MulScalar(factor))?;
            }
        }
        Ok(())
    }
}

impl<B: Backend> Var<B> {
    pub fn tape(&self) -> &Tape<B> {
        &self.tape
    }

    /// The recorded value.
    pub fn value(&self) -> Tensor<B> {
        self.tape.value(self.id)
    }

    pub fn shape(&self) -> Shape {
        self.tape.shape(self.id)
    }

    /// Whether gradients flow through this variable.
    pub fn requires_grad(&self) -> bool {
        self.tape.requires_grad(self.id)
    }

    /// The same value as a constant: gradients stop here.
    pub fn detach(&self) -> Var<B> {
        self.tape.constant(self.value())
    }

    /// The value of a 1x1 variable.
    pub fn scalar_value(&self) -> Result<B::Elem> {
        self.value().scalar_value()
    }

    pub(crate) fn check_same_tape(&self, other: &Var<B>, op: &'static str) -> Result<()> {
        self.tape.check_var(other, op)
    }
}
