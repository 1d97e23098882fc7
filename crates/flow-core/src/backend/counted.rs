//! [`Counted`]: any backend, counting its calls by method. On a device every call but
//! [`Backend::shape`] and [`Backend::name`] (which are not counted) is at least one kernel
//! launch or transfer, and every read back to the host (`download`, `download_index`)
//! waits for all the work queued before it; so the counts of one training step say what the
//! step costs a GPU in launches and round trips, measured on any backend, the CPU's too.
//!
//! ```
//! use flow_core::backend::Counted;
//! use flow_core::{Axis, Cpu, Tensor};
//!
//! let cpu = Counted::new(Cpu::<f64>::new());
//! let x = Tensor::from_f64s(&cpu, (2, 3), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])?;
//! let before = cpu.calls();
//! let total = x.sum(Axis::All)?.scalar_value()?;
//! let step = cpu.calls().since(&before);
//! assert_eq!(total, 21.0);
//! assert_eq!((step.get("reduce"), step.reads(), step.total()), (1, 1, 2));
//! # Ok::<(), flow_core::Error>(())
//! ```

use super::{
    Activation, AdamStep, Backend, BinaryOp, CouplingScale, Direction, RationalQuadratic, ReduceOp,
    UnaryOp,
};
use crate::error::Result;
use crate::random::FlowRng;
use crate::shape::{Axis, Shape};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

/// A backend that forwards every call to `B` and counts the calls by method. Clones share
/// the counts.
#[derive(Clone, Debug)]
pub struct Counted<B> {
    inner: B,
    counts: Arc<Mutex<BTreeMap<&'static str, u64>>>,
}

/// Calls by method: a snapshot of [`Counted::calls`], or the difference of two
/// ([`Calls::since`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Calls(pub BTreeMap<&'static str, u64>);

impl Calls {
    /// The calls of `method` (a `Backend` method's name).
    pub fn get(&self, method: &str) -> u64 {
        self.0.get(method).copied().unwrap_or(0)
    }

    /// Every call counted.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Reads back to the host (`download`, `download_index`): on a device, each waits for
    /// everything queued before it.
    pub fn reads(&self) -> u64 {
        self.get("download") + self.get("download_index")
    }

    /// Copies from the host (`upload`, `upload_index`).
    pub fn writes(&self) -> u64 {
        self.get("upload") + self.get("upload_index")
    }

    /// The calls made since `earlier` (a snapshot of the same counter).
    pub fn since(&self, earlier: &Calls) -> Calls {
        Calls(
            self.0
                .iter()
                .map(|(&method, &n)| (method, n.saturating_sub(earlier.get(method))))
                .filter(|&(_, n)| n > 0)
                .collect(),
        )
    }
}

impl fmt::Display for Calls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} calls", self.total())?;
        for (i, (method, n)) in self.0.iter().enumerate() {
            write!(f, "{}{method} {n}", if i == 0 { ": " } else { ", " })?;
        }
        Ok(())
    }
}

impl<B: Backend> Counted<B> {
    pub fn new(inner: B) -> Self {
        Counted {
            inner,
            counts: Arc::default(),
        }
    }

    /// The backend the calls go to.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// The calls counted so far.
    pub fn calls(&self) -> Calls {
        Calls(self.lock().clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, u64>> {
        // A panic while the map was held leaves it consistent (one increment).
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, method: &'static str) {
        *self.lock().entry(method).or_default() += 1;
    }
}

impl<B: Backend> Backend for Counted<B> {
    type Elem = B::Elem;
    type Storage = B::Storage;
    type Index = B::Index;

    /// The inner backend's name: the same device.
    fn name(&self) -> String {
        self.inner.name()
    }
    fn upload(&self, shape: Shape, data: Vec<B::Elem>) -> Result<B::Storage> {
        self.count("upload");
        self.inner.upload(shape, data)
    }
    fn download(&self, s: &B::Storage) -> Result<Vec<B::Elem>> {
        self.count("download");
        self.inner.download(s)
    }
    fn full(&self, shape: Shape, value: B::Elem) -> Result<B::Storage> {
        self.count("full");
        self.inner.full(shape, value)
    }
    fn shape(&self, s: &B::Storage) -> Shape {
        self.inner.shape(s)
    }
    fn upload_index(&self, index: &[usize]) -> Result<B::Index> {
        self.count("upload_index");
        self.inner.upload_index(index)
    }
    fn download_index(&self, index: &B::Index) -> Result<Vec<usize>> {
        self.count("download_index");
        self.inner.download_index(index)
    }
    fn synchronize(&self) -> Result<()> {
        self.count("synchronize");
        self.inner.synchronize()
    }
    fn randn(&self, shape: Shape, rng: &mut FlowRng) -> Result<B::Storage> {
        self.count("randn");
        self.inner.randn(shape, rng)
    }
    fn rand_uniform(
        &self,
        shape: Shape,
        low: f64,
        high: f64,
        rng: &mut FlowRng,
    ) -> Result<B::Storage> {
        self.count("rand_uniform");
        self.inner.rand_uniform(shape, low, high, rng)
    }
    fn matmul(&self, a: &B::Storage, ta: bool, b: &B::Storage, tb: bool) -> Result<B::Storage> {
        self.count("matmul");
        self.inner.matmul(a, ta, b, tb)
    }
    fn unary(&self, op: UnaryOp<B::Elem>, a: &B::Storage) -> Result<B::Storage> {
        self.count("unary");
        self.inner.unary(op, a)
    }
    fn binary(&self, op: BinaryOp, a: &B::Storage, b: &B::Storage) -> Result<B::Storage> {
        self.count("binary");
        self.inner.binary(op, a, b)
    }
    fn reduce(&self, op: ReduceOp, axis: Axis, a: &B::Storage) -> Result<B::Storage> {
        self.count("reduce");
        self.inner.reduce(op, axis, a)
    }
    fn finite_probe(&self, a: &B::Storage) -> Result<B::Storage> {
        self.count("finite_probe");
        self.inner.finite_probe(a)
    }
    fn argmax_mask(&self, axis: Axis, a: &B::Storage) -> Result<B::Storage> {
        self.count("argmax_mask");
        self.inner.argmax_mask(axis, a)
    }
    fn logsumexp_cols(&self, a: &B::Storage) -> Result<B::Storage> {
        self.count("logsumexp_cols");
        self.inner.logsumexp_cols(a)
    }
    fn softmax_cols(&self, a: &B::Storage) -> Result<B::Storage> {
        self.count("softmax_cols");
        self.inner.softmax_cols(a)
    }
    fn broadcast_to(&self, a: &B::Storage, shape: Shape) -> Result<B::Storage> {
        self.count("broadcast_to");
        self.inner.broadcast_to(a, shape)
    }
    fn slice_cols(&self, a: &B::Storage, start: usize, len: usize) -> Result<B::Storage> {
        self.count("slice_cols");
        self.inner.slice_cols(a, start, len)
    }
    fn concat_cols(&self, parts: &[&B::Storage]) -> Result<B::Storage> {
        self.count("concat_cols");
        self.inner.concat_cols(parts)
    }
    fn gather_cols(&self, a: &B::Storage, index: &B::Index) -> Result<B::Storage> {
        self.count("gather_cols");
        self.inner.gather_cols(a, index)
    }
    fn scatter_add_cols(
        &self,
        a: &B::Storage,
        index: &B::Index,
        width: usize,
    ) -> Result<B::Storage> {
        self.count("scatter_add_cols");
        self.inner.scatter_add_cols(a, index, width)
    }
    fn select(&self, mask: &B::Storage, a: &B::Storage, b: &B::Storage) -> Result<B::Storage> {
        self.count("select");
        self.inner.select(mask, a, b)
    }
    fn reshape(&self, a: &B::Storage, shape: Shape) -> Result<B::Storage> {
        self.count("reshape");
        self.inner.reshape(a, shape)
    }
    fn take_per_row(&self, a: &B::Storage, index: &B::Index) -> Result<B::Storage> {
        self.count("take_per_row");
        self.inner.take_per_row(a, index)
    }
    fn put_per_row(&self, a: &B::Storage, index: &B::Index, width: usize) -> Result<B::Storage> {
        self.count("put_per_row");
        self.inner.put_per_row(a, index, width)
    }
    fn search_sorted_rows(&self, sorted: &B::Storage, x: &B::Storage) -> Result<B::Index> {
        self.count("search_sorted_rows");
        self.inner.search_sorted_rows(sorted, x)
    }
    fn rational_quadratic(
        &self,
        x: &B::Storage,
        params: &B::Storage,
        spec: &RationalQuadratic,
        direction: Direction,
    ) -> Result<(B::Storage, B::Storage)> {
        self.count("rational_quadratic");
        self.inner.rational_quadratic(x, params, spec, direction)
    }
    fn rational_quadratic_backward(
        &self,
        x: &B::Storage,
        params: &B::Storage,
        cache: &B::Storage,
        spec: &RationalQuadratic,
        direction: Direction,
        g: &B::Storage,
    ) -> Result<(B::Storage, B::Storage)> {
        self.count("rational_quadratic_backward");
        self.inner
            .rational_quadratic_backward(x, params, cache, spec, direction, g)
    }
    fn linear(
        &self,
        x: &B::Storage,
        weight: &B::Storage,
        bias: &B::Storage,
        act: Activation<B::Elem>,
    ) -> Result<B::Storage> {
        self.count("linear");
        self.inner.linear(x, weight, bias, act)
    }
    fn activation_backward(
        &self,
        act: Activation<B::Elem>,
        g: &mut B::Storage,
        out: &B::Storage,
    ) -> Result<B::Storage> {
        self.count("activation_backward");
        self.inner.activation_backward(act, g, out)
    }
    fn affine_coupling(
        &self,
        v: &B::Storage,
        params: &B::Storage,
        scale: CouplingScale,
        direction: Direction,
    ) -> Result<(B::Storage, B::Storage)> {
        self.count("affine_coupling");
        self.inner.affine_coupling(v, params, scale, direction)
    }
    fn affine_coupling_backward(
        &self,
        v: &B::Storage,
        params: &B::Storage,
        out: &B::Storage,
        g: &B::Storage,
        scale: CouplingScale,
        direction: Direction,
    ) -> Result<(B::Storage, B::Storage)> {
        self.count("affine_coupling_backward");
        self.inner
            .affine_coupling_backward(v, params, out, g, scale, direction)
    }
    fn diag_normal_log_prob(
        &self,
        z: &B::Storage,
        loc: &B::Storage,
        log_scale: &B::Storage,
    ) -> Result<B::Storage> {
        self.count("diag_normal_log_prob");
        self.inner.diag_normal_log_prob(z, loc, log_scale)
    }
    fn diag_normal_log_prob_backward(
        &self,
        z: &B::Storage,
        loc: &B::Storage,
        log_scale: &B::Storage,
        g: &B::Storage,
    ) -> Result<(B::Storage, B::Storage, B::Storage)> {
        self.count("diag_normal_log_prob_backward");
        self.inner
            .diag_normal_log_prob_backward(z, loc, log_scale, g)
    }
    fn adam_update(
        &self,
        param: &mut B::Storage,
        grad: &B::Storage,
        m: &mut B::Storage,
        v: &mut B::Storage,
        h: &AdamStep<B::Elem>,
    ) -> Result<()> {
        self.count("adam_update");
        self.inner.adam_update(param, grad, m, v, h)
    }
}
