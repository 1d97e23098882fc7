//! `Tensor`: an immutable 2-D array on a backend, with shape-checked operations.
//!
//! Storage is shared (`Arc`), so cloning a tensor is cheap. Every public operation checks
//! its shapes here, once, and returns [`Error`] naming both shapes on a mismatch; backends
//! only ever see validated arguments.

use crate::backend::cpu::Cpu;
use crate::backend::{
    Activation, Backend, BinaryOp, CouplingScale, Direction, RationalQuadratic, ReduceOp, UnaryOp,
};
use crate::element::Element;
use crate::error::{Error, Result};
use crate::index::IndexTensor;
use crate::random::FlowRng;
use crate::shape::{Axis, Shape};
use ndarray::Array2;
use num_traits::{Float as _, One as _, Zero as _};
use std::fmt;
use std::sync::Arc;

/// An immutable row-major matrix on backend `B`.
pub struct Tensor<B: Backend> {
    backend: B,
    storage: Arc<B::Storage>,
    shape: Shape,
}

impl<B: Backend> Clone for Tensor<B> {
    fn clone(&self) -> Self {
        Tensor {
            backend: self.backend.clone(),
            storage: Arc::clone(&self.storage),
            shape: self.shape,
        }
    }
}

impl<B: Backend> fmt::Debug for Tensor<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Small tensors show their values; larger ones are not copied off a device to print.
        let mut s = f.debug_struct("Tensor");
        s.field("backend", &self.backend.name())
            .field("shape", &self.shape);
        if self.shape.len() <= 16 {
            match self.to_vec() {
                Ok(values) => s.field("data", &values),
                Err(e) => s.field("data", &e),
            };
        }
        s.finish()
    }
}

impl<B: Backend> Tensor<B> {
    /// Wraps backend storage. The shape is read from the storage.
    pub fn from_storage(backend: &B, storage: B::Storage) -> Self {
        let shape = backend.shape(&storage);
        Tensor {
            backend: backend.clone(),
            storage: Arc::new(storage),
            shape,
        }
    }

    fn wrap(&self, storage: Result<B::Storage>) -> Result<Self> {
        Ok(Tensor::from_storage(&self.backend, storage?))
    }

    /// A `rows x cols` tensor from row-major values.
    pub fn from_vec(backend: &B, shape: impl Into<Shape>, data: Vec<B::Elem>) -> Result<Self> {
        let shape = shape.into();
        if data.len() != shape.len() {
            return Err(Error::LengthMismatch {
                op: "from_vec",
                len: data.len(),
                shape,
            });
        }
        Ok(Tensor::from_storage(backend, backend.upload(shape, data)?))
    }

    /// A tensor from f64 values, converted to the backend's element type.
    pub fn from_f64s(backend: &B, shape: impl Into<Shape>, data: &[f64]) -> Result<Self> {
        Tensor::from_vec(
            backend,
            shape,
            data.iter().map(|&x| B::Elem::of(x)).collect(),
        )
    }

    pub fn full(backend: &B, shape: impl Into<Shape>, value: B::Elem) -> Result<Self> {
        Ok(Tensor::from_storage(
            backend,
            backend.full(shape.into(), value)?,
        ))
    }

    pub fn zeros(backend: &B, shape: impl Into<Shape>) -> Result<Self> {
        Tensor::full(backend, shape, B::Elem::zero())
    }

    pub fn ones(backend: &B, shape: impl Into<Shape>) -> Result<Self> {
        Tensor::full(backend, shape, B::Elem::one())
    }

    pub fn scalar(backend: &B, value: B::Elem) -> Result<Self> {
        Tensor::full(backend, Shape::SCALAR, value)
    }

    /// Standard normal draws from the seeded stream `rng` ([`Backend::randn`]).
    pub fn randn(backend: &B, shape: impl Into<Shape>, rng: &mut FlowRng) -> Result<Self> {
        let shape = shape.into();
        Ok(Tensor::from_storage(backend, backend.randn(shape, rng)?))
    }

    /// Uniform draws on `[low, high)` from `rng` ([`Backend::rand_uniform`]).
    pub fn rand_uniform(
        backend: &B,
        shape: impl Into<Shape>,
        low: f64,
        high: f64,
        rng: &mut FlowRng,
    ) -> Result<Self> {
        let shape = shape.into();
        crate::random::check_interval(low, high)?;
        Ok(Tensor::from_storage(
            backend,
            backend.rand_uniform(shape, low, high, rng)?,
        ))
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn storage(&self) -> &B::Storage {
        &self.storage
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }

    pub fn rows(&self) -> usize {
        self.shape.rows
    }

    pub fn cols(&self) -> usize {
        self.shape.cols
    }

    /// The values, row-major, copied to the host.
    pub fn to_vec(&self) -> Result<Vec<B::Elem>> {
        self.backend.download(&self.storage)
    }

    /// The values widened to f64, row-major.
    pub fn to_f64s(&self) -> Result<Vec<f64>> {
        Ok(self.to_vec()?.into_iter().map(Element::as_f64).collect())
    }

    /// The value of a 1x1 tensor.
    pub fn scalar_value(&self) -> Result<B::Elem> {
        if !self.shape.is_scalar() {
            return Err(Error::NotScalar {
                op: "scalar_value",
                shape: self.shape,
            });
        }
        Ok(self.to_vec()?[0])
    }

    /// The value at (`row`, `col`); an error when out of range.
    pub fn get(&self, row: usize, col: usize) -> Result<B::Elem> {
        if row >= self.shape.rows || col >= self.shape.cols {
            return Err(Error::invalid(
                "get",
                format!("entry ({row}, {col}) of shape {}", self.shape),
            ));
        }
        Ok(self.to_vec()?[row * self.shape.cols + col])
    }

    /// `Err(NonFinite)` naming the first NaN or infinite entry; `what` says whose values these are.
    pub fn check_finite(&self, what: &str) -> Result<()> {
        let values = self.to_vec()?;
        match values.iter().position(|x| !x.is_finite()) {
            None => Ok(()),
            Some(i) => Err(Error::NonFinite {
                what: what.to_string(),
                row: i / self.shape.cols.max(1),
                col: i % self.shape.cols.max(1),
                value: values[i].as_f64(),
            }),
        }
    }

    /// A `1 x 1` tensor, left on the backend, that is finite when every entry is finite and
    /// NaN or infinite when one is not (possibly also infinite for finite entries whose sum
    /// overflows; [`Tensor::check_finite`] then tells). Probes add: the sum of several is a
    /// probe of them all, so that checking many tensors on a device reads back one scalar.
    /// See [`crate::Backend::finite_probe`].
    pub fn finite_probe(&self) -> Result<Self> {
        self.wrap(self.backend.finite_probe(&self.storage))
    }

    // ---- operations ----

    /// `op(self) @ op(other)`, transposing each operand whose flag is set.
    pub fn matmul_t(&self, ta: bool, other: &Self, tb: bool) -> Result<Self> {
        let (sa, sb) = (self.shape, other.shape);
        let k = if ta { sa.rows } else { sa.cols };
        let kb = if tb { sb.cols } else { sb.rows };
        if k != kb {
            return Err(Error::ShapeMismatch {
                op: "matmul",
                lhs: if ta { Shape::new(sa.cols, sa.rows) } else { sa },
                rhs: if tb { Shape::new(sb.cols, sb.rows) } else { sb },
            });
        }
        self.wrap(self.backend.matmul(&self.storage, ta, &other.storage, tb))
    }

    pub fn matmul(&self, other: &Self) -> Result<Self> {
        self.matmul_t(false, other, false)
    }

    pub fn unary(&self, op: UnaryOp<B::Elem>) -> Result<Self> {
        self.wrap(self.backend.unary(op, &self.storage))
    }

    pub fn binary(&self, op: BinaryOp, other: &Self) -> Result<Self> {
        if self.shape.broadcast(other.shape).is_none() {
            return Err(Error::ShapeMismatch {
                op: binary_name(op),
                lhs: self.shape,
                rhs: other.shape,
            });
        }
        self.wrap(self.backend.binary(op, &self.storage, &other.storage))
    }

    pub fn add(&self, other: &Self) -> Result<Self> {
        self.binary(BinaryOp::Add, other)
    }

    pub fn sub(&self, other: &Self) -> Result<Self> {
        self.binary(BinaryOp::Sub, other)
    }

    pub fn mul(&self, other: &Self) -> Result<Self> {
        self.binary(BinaryOp::Mul, other)
    }

    pub fn div(&self, other: &Self) -> Result<Self> {
        self.binary(BinaryOp::Div, other)
    }

    pub fn reduce(&self, op: ReduceOp, axis: Axis) -> Result<Self> {
        self.wrap(self.backend.reduce(op, axis, &self.storage))
    }

    pub fn sum(&self, axis: Axis) -> Result<Self> {
        self.reduce(ReduceOp::Sum, axis)
    }

    pub fn max(&self, axis: Axis) -> Result<Self> {
        self.reduce(ReduceOp::Max, axis)
    }

    pub fn argmax_mask(&self, axis: Axis) -> Result<Self> {
        self.wrap(self.backend.argmax_mask(axis, &self.storage))
    }

    pub fn logsumexp_cols(&self) -> Result<Self> {
        self.wrap(self.backend.logsumexp_cols(&self.storage))
    }

    pub fn softmax_cols(&self) -> Result<Self> {
        self.wrap(self.backend.softmax_cols(&self.storage))
    }

    /// Repeats a row or column vector (or a scalar) up to `shape`.
    pub fn broadcast_to(&self, shape: impl Into<Shape>) -> Result<Self> {
        let shape = shape.into();
        if !self.shape.broadcasts_to(shape) {
            return Err(Error::ShapeMismatch {
                op: "broadcast_to",
                lhs: self.shape,
                rhs: shape,
            });
        }
        if shape == self.shape {
            return Ok(self.clone());
        }
        self.wrap(self.backend.broadcast_to(&self.storage, shape))
    }

    /// Sums away broadcast dimensions so that the result has `shape`: the adjoint of
    /// [`Tensor::broadcast_to`].
    pub fn sum_to(&self, shape: impl Into<Shape>) -> Result<Self> {
        let shape = shape.into();
        if !shape.broadcasts_to(self.shape) {
            return Err(Error::ShapeMismatch {
                op: "sum_to",
                lhs: self.shape,
                rhs: shape,
            });
        }
        let mut t = self.clone();
        if shape.rows == 1 && t.shape.rows != 1 {
            t = t.sum(Axis::Rows)?;
        }
        if shape.cols == 1 && t.shape.cols != 1 {
            t = t.sum(Axis::Cols)?;
        }
        Ok(t)
    }

    /// Columns `start .. start + len`.
    pub fn slice_cols(&self, start: usize, len: usize) -> Result<Self> {
        if start + len > self.shape.cols {
            return Err(Error::invalid(
                "slice_cols",
                format!("columns {start}..{} of shape {}", start + len, self.shape),
            ));
        }
        self.wrap(self.backend.slice_cols(&self.storage, start, len))
    }

    /// Side-by-side concatenation of tensors with equal row counts.
    pub fn concat_cols(parts: &[&Self]) -> Result<Self> {
        let first = parts
            .first()
            .ok_or_else(|| Error::invalid("concat_cols", "no tensors to concatenate"))?;
        for p in &parts[1..] {
            if p.shape.rows != first.shape.rows {
                return Err(Error::ShapeMismatch {
                    op: "concat_cols",
                    lhs: first.shape,
                    rhs: p.shape,
                });
            }
        }
        let storages: Vec<&B::Storage> = parts.iter().map(|p| &*p.storage).collect();
        first.wrap(first.backend.concat_cols(&storages))
    }

    /// Output column `j` is column `index[j]` (a permutation, a selection or repeats).
    pub fn gather_cols(&self, index: &IndexTensor<B>) -> Result<Self> {
        index.check_bound("gather_cols", self.shape.cols)?;
        self.wrap(self.backend.gather_cols(&self.storage, index.storage()))
    }

    /// Adds column `j` into column `index[j]` of a zero `rows x width` tensor: the adjoint
    /// of [`Tensor::gather_cols`].
    pub fn scatter_add_cols(&self, index: &IndexTensor<B>, width: usize) -> Result<Self> {
        if index.len() != self.shape.cols {
            return Err(Error::invalid(
                "scatter_add_cols",
                format!("{} indices for shape {}", index.len(), self.shape),
            ));
        }
        index.check_bound("scatter_add_cols", width)?;
        self.wrap(
            self.backend
                .scatter_add_cols(&self.storage, index.storage(), width),
        )
    }

    /// The same row-major values as a `rows x cols` tensor of equal length.
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Self> {
        let shape = shape.into();
        if shape.len() != self.shape.len() {
            return Err(Error::invalid(
                "reshape",
                format!("{} cannot be viewed as {shape}", self.shape),
            ));
        }
        self.wrap(self.backend.reshape(&self.storage, shape))
    }

    /// `rows x 1`: entry `index[r]` of each row `r` (one index per row).
    pub fn take_per_row(&self, index: &IndexTensor<B>) -> Result<Self> {
        check_per_row("take_per_row", index, self.shape.rows, self.shape.cols)?;
        self.wrap(self.backend.take_per_row(&self.storage, index.storage()))
    }

    /// `rows x width`, zero except entry `index[r]` of row `r`, which is this `rows x 1`
    /// tensor's row `r`: the adjoint of [`Tensor::take_per_row`].
    pub fn put_per_row(&self, index: &IndexTensor<B>, width: usize) -> Result<Self> {
        if self.shape.cols != 1 {
            return Err(Error::invalid(
                "put_per_row",
                format!("expected one column, got {}", self.shape),
            ));
        }
        check_per_row("put_per_row", index, self.shape.rows, width)?;
        self.wrap(
            self.backend
                .put_per_row(&self.storage, index.storage(), width),
        )
    }

    /// For each row `r`, how many entries of row `r` of this tensor (ascending along the row)
    /// are `<= x[r]`, where `x` is `rows x 1`: the bin of `x[r]` among knots, as
    /// `torch.searchsorted(sorted, x, right=True)`. A NaN in `x` counts no entries. Piecewise
    /// constant: it has no gradient, and is not recorded on a tape. The counts stay in the
    /// backend's index storage (each at most the row length).
    pub fn search_sorted_rows(&self, x: &Self) -> Result<IndexTensor<B>> {
        if x.shape != Shape::new(self.shape.rows, 1) {
            return Err(Error::invalid(
                "search_sorted_rows",
                format!("values of shape {} for sorted rows {}", x.shape, self.shape),
            ));
        }
        let found = self.backend.search_sorted_rows(&self.storage, &x.storage)?;
        Ok(IndexTensor::from_storage(
            &self.backend,
            found,
            self.shape.rows,
            self.shape.cols + 1,
        ))
    }

    /// The rational-quadratic spline of every entry (see [`RationalQuadratic`]) in
    /// `direction`, entry `(r, i)`'s parameters in row `r`, columns `i P .. (i + 1) P` of
    /// `params` (`n x d P`): `n x 2d`, the outputs and then each entry's log|dy/dx|.
    pub fn rational_quadratic(
        &self,
        params: &Self,
        spec: &RationalQuadratic,
        direction: Direction,
    ) -> Result<Self> {
        Ok(self.rational_quadratic_cached(params, spec, direction)?.0)
    }

    /// [`Tensor::rational_quadratic`] and what its backward reads.
    pub(crate) fn rational_quadratic_cached(
        &self,
        params: &Self,
        spec: &RationalQuadratic,
        direction: Direction,
    ) -> Result<(Self, Self)> {
        check_spline_shapes(self.shape, params.shape, spec)?;
        let (out, cache) =
            self.backend
                .rational_quadratic(&self.storage, &params.storage, spec, direction)?;
        Ok((self.wrap(Ok(out))?, self.wrap(Ok(cache))?))
    }

    pub(crate) fn rational_quadratic_backward(
        &self,
        params: &Self,
        cache: &Self,
        spec: &RationalQuadratic,
        direction: Direction,
        g: &Self,
    ) -> Result<(Self, Self)> {
        let (gx, gp) = self.backend.rational_quadratic_backward(
            &self.storage,
            &params.storage,
            &cache.storage,
            spec,
            direction,
            &g.storage,
        )?;
        Ok((self.wrap(Ok(gx))?, self.wrap(Ok(gp))?))
    }

    /// `a` where `mask` is non-zero, else `b`.
    pub fn select(mask: &Self, a: &Self, b: &Self) -> Result<Self> {
        for other in [a, b] {
            if other.shape != mask.shape {
                return Err(Error::ShapeMismatch {
                    op: "select",
                    lhs: mask.shape,
                    rhs: other.shape,
                });
            }
        }
        a.wrap(a.backend.select(&mask.storage, &a.storage, &b.storage))
    }

    /// `x @ weight^T + bias`, with `weight` stored `out x in` and `bias` `1 x out`.
    pub fn linear(&self, weight: &Self, bias: &Self) -> Result<Self> {
        self.linear_activated(weight, bias, Activation::Identity)
    }

    /// `act(x @ weight^T + bias)` in one fused backend call.
    pub fn linear_activated(
        &self,
        weight: &Self,
        bias: &Self,
        act: Activation<B::Elem>,
    ) -> Result<Self> {
        if weight.shape.cols != self.shape.cols {
            return Err(Error::ShapeMismatch {
                op: "linear (input x weight)",
                lhs: self.shape,
                rhs: weight.shape,
            });
        }
        if bias.shape != Shape::new(1, weight.shape.rows) {
            return Err(Error::ShapeMismatch {
                op: "linear (weight x bias)",
                lhs: weight.shape,
                rhs: bias.shape,
            });
        }
        self.wrap(
            self.backend
                .linear(&self.storage, &weight.storage, &bias.storage, act),
        )
    }

    /// See [`Backend::activation_backward`]: returns the gradient at the pre-activation
    /// (in `g`'s buffer when nothing else holds it) and its row sum. Shapes follow a
    /// validated forward.
    pub(crate) fn activation_backward(
        act: Activation<B::Elem>,
        mut g: Self,
        out: &Self,
    ) -> Result<(Self, Self)> {
        if act == Activation::Identity {
            let row_sum = g.sum(Axis::Rows)?;
            return Ok((g, row_sum));
        }
        let backend = g.backend.clone();
        let row_sum = backend.activation_backward(act, Arc::make_mut(&mut g.storage), &out.storage);
        let row_sum = g.wrap(row_sum)?;
        Ok((g, row_sum))
    }

    /// The affine coupling of [`Backend::affine_coupling`]: `self` is `n x d`, `params`
    /// `n x 2 d2` with `1 <= d2 <= d` (shift and raw scale interleaved). Returns the output
    /// (`n x d`) and the log|det J| of each row (`n x 1`).
    pub fn affine_coupling(
        &self,
        params: &Self,
        scale: CouplingScale,
        direction: Direction,
    ) -> Result<(Self, Self)> {
        check_coupling_shapes(self.shape, params.shape)?;
        let (out, log_det) =
            self.backend
                .affine_coupling(&self.storage, &params.storage, scale, direction)?;
        Ok((self.wrap(Ok(out))?, self.wrap(Ok(log_det))?))
    }

    /// Gradients of [`Tensor::affine_coupling`]'s output with respect to its rows and
    /// parameters, from the output and its gradient. Shapes follow a validated forward.
    pub(crate) fn affine_coupling_backward(
        v: &Self,
        params: &Self,
        out: &Self,
        g: &Self,
        scale: CouplingScale,
        direction: Direction,
    ) -> Result<(Self, Self)> {
        let (g_v, g_params) = out.backend.affine_coupling_backward(
            &v.storage,
            &params.storage,
            &out.storage,
            &g.storage,
            scale,
            direction,
        )?;
        Ok((out.wrap(Ok(g_v))?, out.wrap(Ok(g_params))?))
    }

    /// The log-density of a diagonal Gaussian with `loc` and `log_scale` (`1 x d`) at each
    /// row of `self` (`n x d`); returns `n x 1`.
    pub fn diag_normal_log_prob(&self, loc: &Self, log_scale: &Self) -> Result<Self> {
        check_diag_normal_shapes(self.shape, loc.shape, log_scale.shape)?;
        self.wrap(self.backend.diag_normal_log_prob(
            &self.storage,
            &loc.storage,
            &log_scale.storage,
        ))
    }

    /// Gradients of [`Tensor::diag_normal_log_prob`] (shapes follow a validated forward).
    pub(crate) fn diag_normal_log_prob_backward(
        z: &Self,
        loc: &Self,
        log_scale: &Self,
        g: &Self,
    ) -> Result<(Self, Self, Self)> {
        let (gz, gl, gs) = z.backend.diag_normal_log_prob_backward(
            &z.storage,
            &loc.storage,
            &log_scale.storage,
            &g.storage,
        )?;
        Ok((z.wrap(Ok(gz))?, z.wrap(Ok(gl))?, z.wrap(Ok(gs))?))
    }

    /// One Adam update of `self` (see [`Backend::adam_update`]) with the moments `m` and `v`
    /// updated too, in place where the storage is not shared (copied first where it is).
    /// All four tensors of one shape. On an error the three tensors keep their values.
    pub fn adam_update(
        &mut self,
        grad: &Self,
        m: &mut Self,
        v: &mut Self,
        step: &crate::backend::AdamStep<B::Elem>,
    ) -> Result<()> {
        for other in [grad, &*m, &*v] {
            if other.shape != self.shape {
                return Err(Error::ShapeMismatch {
                    op: "adam_update",
                    lhs: self.shape,
                    rhs: other.shape,
                });
            }
        }
        self.backend.adam_update(
            Arc::make_mut(&mut self.storage),
            &grad.storage,
            Arc::make_mut(&mut m.storage),
            Arc::make_mut(&mut v.storage),
            step,
        )
    }

    /// Largest absolute difference to `other` (shapes must agree).
    pub fn max_abs_diff(&self, other: &Self) -> Result<f64> {
        if self.shape != other.shape {
            return Err(Error::ShapeMismatch {
                op: "max_abs_diff",
                lhs: self.shape,
                rhs: other.shape,
            });
        }
        Ok(self
            .to_vec()?
            .iter()
            .zip(other.to_vec()?)
            .map(|(a, b)| (a.as_f64() - b.as_f64()).abs())
            .fold(0.0, f64::max))
    }
}

fn binary_name(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Add => "add",
        BinaryOp::Sub => "sub",
        BinaryOp::Mul => "mul",
        BinaryOp::Div => "div",
        BinaryOp::Gate => "gate",
    }
}

/// `params` is `n x d P` for values `n x d`, and the spline has at least one bin.
pub(crate) fn check_spline_shapes(x: Shape, params: Shape, spec: &RationalQuadratic) -> Result<()> {
    if spec.bins == 0 {
        return Err(Error::invalid("rational_quadratic", "a spline needs a bin"));
    }
    let want = Shape::new(x.rows, x.cols * spec.params_per_feature());
    if params != want {
        return Err(Error::invalid(
            "rational_quadratic",
            format!("parameters of shape {params} for values {x}: expected {want}"),
        ));
    }
    Ok(())
}

/// One index per row, each within `width`.
fn check_per_row<B: Backend>(
    op: &'static str,
    index: &IndexTensor<B>,
    rows: usize,
    width: usize,
) -> Result<()> {
    if index.len() != rows {
        return Err(Error::invalid(
            op,
            format!("{} indices for {rows} rows", index.len()),
        ));
    }
    index.check_bound(op, width)
}

impl<E: Element> Tensor<Cpu<E>> {
    /// Wraps an ndarray matrix (copied into standard layout if it is not already).
    pub fn from_array(array: Array2<E>) -> Self {
        let array = if array.is_standard_layout() {
            array
        } else {
            array.as_standard_layout().into_owned()
        };
        Tensor::from_storage(&Cpu::new(), array)
    }

    /// The values as an ndarray view.
    pub fn as_array(&self) -> &Array2<E> {
        &self.storage
    }
}

/// The shapes [`Tensor::affine_coupling`] accepts: rows `n x d`, parameters `n x 2 d2` with
/// `1 <= d2 <= d`.
pub(crate) fn check_coupling_shapes(v: Shape, p: Shape) -> Result<()> {
    if p.rows != v.rows || p.cols % 2 != 0 || p.cols == 0 || p.cols / 2 > v.cols {
        return Err(Error::ShapeMismatch {
            op: "affine_coupling (rows x interleaved parameters: n x 2 d2, d2 <= d)",
            lhs: v,
            rhs: p,
        });
    }
    Ok(())
}

/// The shapes [`Tensor::diag_normal_log_prob`] accepts: points `n x d`, `loc` and
/// `log_scale` `1 x d`.
pub(crate) fn check_diag_normal_shapes(z: Shape, loc: Shape, log_scale: Shape) -> Result<()> {
    let row = Shape::new(1, z.cols);
    for (what, other) in [("loc", loc), ("log_scale", log_scale)] {
        if other != row {
            return Err(Error::invalid(
                "diag_normal_log_prob",
                format!("{what} must be 1 x {} for points {z}, got {other}", z.cols),
            ));
        }
    }
    Ok(())
}
