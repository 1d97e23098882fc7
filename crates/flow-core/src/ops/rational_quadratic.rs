//! Monotonic rational-quadratic splines (Durkan et al. 2019) as one op: a fused kernel for
//! the values and the first-order backward ([`crate::Backend::rational_quadratic`]), and the
//! same map composed from the tape's primitives, which is what a recorded (differentiable)
//! backward differentiates, so that gradients of any order are exact.

use super::GradList;
use crate::autodiff::algebra::GradAlgebra;
use crate::autodiff::op::Op;
use crate::autodiff::{NodeId, Tape, Var};
use crate::backend::{Backend, Direction, RationalQuadratic, UnaryOp};
use crate::element::Element;
use crate::error::Result;
use crate::shape::Shape;
use crate::tensor::Tensor;

impl<B: Backend> Var<B> {
    /// The spline of every entry of this `n x d` variable in `direction` (see
    /// [`RationalQuadratic`]), with entry `(r, i)`'s raw parameters in row `r`, columns
    /// `i P .. (i + 1) P` of `params` (`n x d P`, `P = 3 bins - 1`). Returns the outputs
    /// (`n x d`) and each entry's log|dy/dx| (`n x d`; the inverse's, in `Inverse`).
    pub fn rational_quadratic(
        &self,
        params: &Var<B>,
        spec: &RationalQuadratic,
        direction: Direction,
    ) -> Result<(Var<B>, Var<B>)> {
        self.check_same_tape(params, "rational_quadratic")?;
        let (value, cache) =
            self.value()
                .rational_quadratic_cached(&params.value(), spec, direction)?;
        let d = self.shape().cols;
        let out = self.tape.var(self.tape.push(
            value,
            Op::RationalQuadratic {
                x: self.id,
                params: params.id,
                cache,
                spec: *spec,
                direction,
            },
        ));
        Ok((out.slice_cols(0, d)?, out.slice_cols(d, d)?))
    }

    /// [`Var::rational_quadratic`] composed from the tape's primitives (softmax, a cumulative
    /// sum as a product, per-row picks of the bin's knots, elementwise arithmetic): slower,
    /// the same values to rounding, and differentiable to any order through the primitives'
    /// own backward passes.
    pub fn rational_quadratic_composed(
        &self,
        params: &Var<B>,
        spec: &RationalQuadratic,
        direction: Direction,
    ) -> Result<(Var<B>, Var<B>)> {
        self.check_same_tape(params, "rational_quadratic")?;
        crate::tensor::check_spline_shapes(self.shape(), params.shape(), spec)?;
        let (n, d) = (self.shape().rows, self.shape().cols);
        let p = spec.params_per_feature();
        // One row per entry: `(n d) x 1` values and `(n d) x P` parameters.
        let x = self.reshape((n * d, 1))?;
        let params = params.reshape((n * d, p))?;
        let (y, log_det) = composed_rows(&x, &params, spec, direction)?;
        Ok((y.reshape((n, d))?, log_det.reshape((n, d))?))
    }
}

/// The composed spline of `N x 1` values with `N x P` parameters.
fn composed_rows<B: Backend>(
    x: &Var<B>,
    params: &Var<B>,
    spec: &RationalQuadratic,
    direction: Direction,
) -> Result<(Var<B>, Var<B>)> {
    let tape = x.tape();
    let backend = tape.backend();
    let k = spec.bins;
    let rows = x.shape().rows;
    let bound = spec.tail_bound;

    // Entries inside [-B, B] go through the spline; the rest are the identity. Outside
    // entries are moved to 0 before the spline sees them, so that nothing non-finite enters
    // (and no NaN gradient leaves) the branch that `select` discards. The mask is computed
    // on the backend: with `v = |x| - B` (B rounded to the element type), `v + |v|` is 0
    // exactly where `|x| <= B`, positive beyond and NaN for a NaN, and `select` takes any
    // non-zero (NaN too) as set. The fused CPU kernel compares with B in f64; the two differ
    // only for `|x|` between B and its rounding, where the spline is the identity to rounding.
    let over = x
        .value()
        .unary(UnaryOp::Abs)?
        .unary(UnaryOp::AddScalar(B::Elem::of(-bound)))?;
    let outside = tape.constant(over.add(&over.unary(UnaryOp::Abs)?)?);
    let zero = tape.constant(Tensor::zeros(backend, (rows, 1))?);
    let x_in = Var::select(&outside, &zero, x)?;

    // Knots: cumulative sums of the floored softmaxes, scaled onto [-B, B].
    let cumulative = tape.constant(cumulative_sums(backend, k)?);
    let knots = |raw: &Var<B>, min: f64| -> Result<Var<B>> {
        let fractions = raw
            .softmax_cols()?
            .mul_scalar(1.0 - min * k as f64)?
            .add_scalar(min)?;
        fractions
            .matmul(&cumulative)?
            .mul_scalar(2.0 * bound)?
            .add_scalar(-bound)
    };
    let knots_x = knots(&params.slice_cols(0, k)?, spec.min_bin_width)?;
    let knots_y = knots(&params.slice_cols(k, k)?, spec.min_bin_height)?;
    let ones = tape.constant(Tensor::ones(backend, (rows, 1))?);
    let derivatives = if k > 1 {
        let raw = params.slice_cols(2 * k, k - 1)?;
        let inner = raw
            .div(
                &raw.abs()?
                    .mul_scalar(1.0 / spec.log_derivative_bound())?
                    .add_scalar(1.0)?,
            )?
            .exp()?;
        Var::concat_cols(&[&ones, &inner, &ones])?
    } else {
        Var::concat_cols(&[&ones, &ones])?
    };

    // The bin: how many inner knots (on the input's side) are at or below the input.
    let search = match direction {
        Direction::Forward => &knots_x,
        Direction::Inverse => &knots_y,
    };
    // One bin: every entry is in bin 0, so its knots are the first and second columns.
    let bin = if k == 1 {
        None
    } else {
        Some(
            search
                .value()
                .slice_cols(1, k - 1)?
                .search_sorted_rows(&x_in.value())?,
        )
    };
    // Knot `bin` of each row, and knot `bin + 1` (knot `bin` of the row without its first).
    let at = |v: &Var<B>, next: usize| match (&bin, next) {
        (Some(bin), 0) => v.take_per_row(bin),
        (Some(bin), _) => v.slice_cols(1, k)?.take_per_row(bin),
        (None, _) => v.slice_cols(next, 1),
    };
    let x0 = at(&knots_x, 0)?;
    let width = at(&knots_x, 1)?.sub(&x0)?;
    let y0 = at(&knots_y, 0)?;
    let height = at(&knots_y, 1)?.sub(&y0)?;
    let d0 = at(&derivatives, 0)?;
    let d1 = at(&derivatives, 1)?;
    let slope = height.div(&width)?;
    let curvature = d0.add(&d1)?.sub(&slope.mul_scalar(2.0)?)?;

    let (theta, out) = match direction {
        Direction::Forward => {
            let theta = x_in.sub(&x0)?.div(&width)?;
            let t = theta.mul(&theta.neg()?.add_scalar(1.0)?)?;
            let numerator = slope.mul(&theta.square()?)?.add(&d0.mul(&t)?)?;
            let denominator = slope.add(&curvature.mul(&t)?)?;
            let y = y0.add(&height.mul(&numerator)?.div(&denominator)?)?;
            (theta, y)
        }
        Direction::Inverse => {
            // theta solves a theta^2 + b theta + c = 0: the root in [0, 1], in the form that
            // does not cancel, 2c / (-b - sqrt(b^2 - 4ac)).
            let offset = x_in.sub(&y0)?;
            let a = height
                .mul(&slope.sub(&d0)?)?
                .add(&offset.mul(&curvature)?)?;
            let b = height.mul(&d0)?.sub(&offset.mul(&curvature)?)?;
            let c = slope.mul(&offset)?.neg()?;
            // b^2 - 4ac >= 0 exactly; rounding may take it just below.
            let discriminant = b.square()?.sub(&a.mul(&c)?.mul_scalar(4.0)?)?.relu()?;
            let theta = c
                .mul_scalar(2.0)?
                .div(&b.neg()?.sub(&discriminant.sqrt()?)?)?;
            (theta.clone(), theta.mul(&width)?.add(&x0)?)
        }
    };
    let one_minus = theta.neg()?.add_scalar(1.0)?;
    let t = theta.mul(&one_minus)?;
    let m = d1
        .mul(&theta.square()?)?
        .add(&slope.mul(&t)?.mul_scalar(2.0)?)?
        .add(&d0.mul(&one_minus.square()?)?)?;
    let denominator = slope.add(&curvature.mul(&t)?)?;
    let log_derivative = slope
        .log()?
        .mul_scalar(2.0)?
        .add(&m.log()?)?
        .sub(&denominator.log()?.mul_scalar(2.0)?)?;
    let log_det = match direction {
        Direction::Forward => log_derivative,
        Direction::Inverse => log_derivative.neg()?,
    };
    Ok((
        Var::select(&outside, x, &out)?,
        Var::select(&outside, &zero, &log_det)?,
    ))
}

/// The `k x (k + 1)` matrix whose product with a row of `k` fractions gives their cumulative
/// sums from 0 to 1 (entry `(i, j)` is 1 for `i < j`) on `backend`, built once per `k` and
/// backend.
fn cumulative_sums<B: Backend>(backend: &B, k: usize) -> Result<Tensor<B>> {
    crate::resident::shared(
        crate::resident::Constant::CumulativeSums(k),
        |_| {
            let entries = (0..k)
                .flat_map(|i| (0..=k).map(move |j| f64::from(u8::from(i < j))))
                .collect();
            (Shape::new(k, k + 1), entries)
        },
        |resident| resident.tensor(backend),
    )
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn backward<B: Backend, A: GradAlgebra<B>>(
    alg: &mut A,
    x: NodeId,
    params: NodeId,
    cache: &Tensor<B>,
    spec: &RationalQuadratic,
    direction: Direction,
    g: &A::T,
    grads: &mut GradList<A::T>,
) -> Result<()> {
    if !(alg.needs_grad(x) || alg.needs_grad(params)) {
        return Ok(());
    }
    let (gx, gp) = alg.rational_quadratic_grads(x, params, cache, g, spec, direction)?;
    if alg.needs_grad(x) {
        grads.push((x, gx));
    }
    if alg.needs_grad(params) {
        grads.push((params, gp));
    }
    Ok(())
}

/// The recorded backward: the composed spline of the same inputs, differentiated on the tape
/// with `create_graph`, so that the gradients are themselves differentiable.
pub(crate) fn recorded_grads<B: Backend>(
    tape: &Tape<B>,
    x: NodeId,
    params: NodeId,
    g: NodeId,
    spec: &RationalQuadratic,
    direction: Direction,
) -> Result<(NodeId, NodeId)> {
    let (xv, pv, gv) = (tape.var(x), tape.var(params), tape.var(g));
    let floor = tape.len();
    let projected = composed_side_by_side(&xv, &pv, spec, direction)?
        .mul(&gv)?
        .sum_all()?;
    let grads = tape.grad_since(&projected, &[&xv, &pv], floor)?;
    Ok((grads[0].id, grads[1].id))
}

/// [`Var::rational_quadratic_composed`] with its outputs and log-dets side by side (`n x 2d`),
/// the layout of the fused op's node.
pub(crate) fn composed_side_by_side<B: Backend>(
    x: &Var<B>,
    params: &Var<B>,
    spec: &RationalQuadratic,
    direction: Direction,
) -> Result<Var<B>> {
    let (y, log_det) = x.rational_quadratic_composed(params, spec, direction)?;
    Var::concat_cols(&[&y, &log_det])
}
