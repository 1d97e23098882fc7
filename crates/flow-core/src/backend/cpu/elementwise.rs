//! Elementwise kernels: unary maps and broadcasting binary maps.

use super::{from_shape_vec, shape_of, slice_of};
use crate::backend::{BinaryOp, UnaryOp};
use crate::element::Element;
use ndarray::Array2;

fn map<E: Element>(a: &Array2<E>, f: impl Fn(E) -> E) -> Array2<E> {
    let data = slice_of(a).iter().map(|&x| f(x)).collect();
    from_shape_vec(shape_of(a), data)
}

/// Logistic sigmoid without overflow for large |x|.
#[inline]
pub(crate) fn sigmoid<E: Element>(x: E) -> E {
    if x >= E::zero() {
        E::one() / (E::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (E::one() + e)
    }
}

/// `log(1 + exp(x))` without overflow: `max(x, 0) + log1p(exp(-|x|))`.
#[inline]
pub(crate) fn softplus<E: Element>(x: E) -> E {
    x.max(E::zero()) + (-x.abs()).exp().ln_1p()
}

pub(crate) fn unary<E: Element>(op: UnaryOp<E>, a: &Array2<E>) -> Array2<E> {
    let zero = E::zero();
    match op {
        UnaryOp::Neg => map(a, |x| -x),
        UnaryOp::Exp => map(a, |x| x.exp()),
        UnaryOp::Log => map(a, |x| x.ln()),
        UnaryOp::Log1p => map(a, |x| x.ln_1p()),
        UnaryOp::Sqrt => map(a, |x| x.sqrt()),
        UnaryOp::Square => map(a, |x| x * x),
        UnaryOp::Abs => map(a, |x| x.abs()),
        UnaryOp::Tanh => map(a, |x| x.tanh()),
        UnaryOp::Sigmoid => map(a, sigmoid),
        UnaryOp::Softplus => map(a, softplus),
        UnaryOp::Relu => map(a, |x| if x > zero { x } else { zero }),
        UnaryOp::LeakyRelu(slope) => map(a, |x| if x > zero { x } else { slope * x }),
        UnaryOp::Elu(alpha) => map(a, |x| if x > zero { x } else { alpha * x.exp_m1() }),
        UnaryOp::AddScalar(s) => map(a, |x| x + s),
        UnaryOp::MulScalar(s) => map(a, |x| x * s),
        UnaryOp::Powi(n) => map(a, |x| x.powi(n)),
        UnaryOp::Sign => map(a, |x| {
            if x > zero {
                E::one()
            } else if x < zero {
                -E::one()
            } else {
                zero
            }
        }),
        UnaryOp::Step => map(a, |x| if x > zero { E::one() } else { zero }),
    }
}

pub(crate) fn binary<E: Element>(op: BinaryOp, a: &Array2<E>, b: &Array2<E>) -> Array2<E> {
    match op {
        BinaryOp::Add => zip_broadcast(a, b, |x, y| x + y),
        BinaryOp::Sub => zip_broadcast(a, b, |x, y| x - y),
        BinaryOp::Mul => zip_broadcast(a, b, |x, y| x * y),
        BinaryOp::Div => zip_broadcast(a, b, |x, y| x / y),
        BinaryOp::Gate => zip_broadcast(a, b, |x, y| if y > E::zero() { x } else { E::zero() }),
    }
}

/// Applies `f` over the broadcast shape of `a` and `b`. The inner loops are split by which
/// operand is a single column, so that each compiles to a straight vectorisable loop.
fn zip_broadcast<E: Element>(a: &Array2<E>, b: &Array2<E>, f: impl Fn(E, E) -> E) -> Array2<E> {
    let (sa, sb) = (shape_of(a), shape_of(b));
    let out = sa
        .broadcast(sb)
        .expect("broadcast shapes are validated by Tensor");
    let (da, db) = (slice_of(a), slice_of(b));
    if sa == sb {
        let data = da.iter().zip(db).map(|(&x, &y)| f(x, y)).collect();
        return from_shape_vec(out, data);
    }
    let mut data = Vec::with_capacity(out.len());
    for i in 0..out.rows {
        let ra = &da[if sa.rows == 1 { 0 } else { i * sa.cols }..][..sa.cols];
        let rb = &db[if sb.rows == 1 { 0 } else { i * sb.cols }..][..sb.cols];
        match (sa.cols == out.cols, sb.cols == out.cols) {
            (true, true) => data.extend(ra.iter().zip(rb).map(|(&x, &y)| f(x, y))),
            (true, false) => data.extend(ra.iter().map(|&x| f(x, rb[0]))),
            (false, true) => data.extend(rb.iter().map(|&y| f(ra[0], y))),
            (false, false) => data.extend((0..out.cols).map(|_| f(ra[0], rb[0]))),
        }
    }
    from_shape_vec(out, data)
}
