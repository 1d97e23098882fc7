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

/// The `k`-th derivative of `t sigmoid(t)` (`0 <= k <= 4`, NaN beyond) in the arithmetic
/// of `F`, given `e = exp(-|t|)`: `g^(k) = k sigma^(k-1) + t sigma^(k)`, with sigma's
/// derivatives `s1 = s(1-s)`, `s1 d`, `s1 (1 - 6 s1)` and `s1 d (1 - 12 s1)`, where
/// `s = sigmoid(t)` and `d = 1 - 2s`. `s` and `1 - s` each come from `e` directly, so that
/// both tails keep their precision; the selects are branch-free, so that loops vectorise.
#[inline(always)]
fn swish_from_exp<F: num_traits::Float>(t: F, e: F, k: i32) -> F {
    let c = |v: f64| F::from(v).expect("small constants convert");
    let one = F::one();
    let big = one / (one + e);
    let small = e * big;
    let (s, q) = if t >= F::zero() {
        (big, small)
    } else {
        (small, big)
    };
    let s1 = s * q;
    let d = q - s;
    match k {
        0 => t * s,
        1 => s + t * s1,
        2 => c(2.0) * s1 + t * s1 * d,
        3 => c(3.0) * s1 * d + t * s1 * (one - c(6.0) * s1),
        4 => c(4.0) * s1 * (one - c(6.0) * s1) + t * s1 * d * (one - c(12.0) * s1),
        _ => F::nan(),
    }
}

/// [`swish_from_exp`] in f64.
#[inline(always)]
pub(crate) fn swish_derivative(t: f64, k: i32) -> f64 {
    swish_from_exp(t, super::math::exp(-t.abs()), k)
}

/// [`swish_from_exp`] in f32 arithmetic, for f32 tensors (twice the lanes, and a shorter
/// exponential; tested against the f64 version below).
#[inline(always)]
pub(crate) fn swish_derivative_f32(t: f32, k: i32) -> f32 {
    swish_from_exp(t, super::math::exp_f32(-t.abs()), k)
}

/// `a` mapped elementwise in its own precision: `f32_map` for f32 tensors (twice the lanes,
/// and f32 arithmetic throughout), `f64_map` otherwise, in one loop compiled for the
/// widest vectors the CPU has, written straight into the output's allocation. For maps the
/// compiler can vectorise: branch-free, no calls.
#[inline(always)]
fn map_in_own_precision<E: Element>(
    a: &Array2<E>,
    f32_map: impl Fn(f32) -> f32,
    f64_map: impl Fn(f64) -> f64,
) -> Array2<E> {
    let src = slice_of(a);
    let n = src.len();
    let mut data: Vec<E> = Vec::with_capacity(n);
    let out = &mut data.spare_capacity_mut()[..n];
    if std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>() {
        // SAFETY: E is f32 (checked just above): the same memory, reinterpreted.
        let (src, out) = unsafe {
            (
                std::slice::from_raw_parts(src.as_ptr().cast::<f32>(), n),
                std::slice::from_raw_parts_mut(
                    out.as_mut_ptr().cast::<std::mem::MaybeUninit<f32>>(),
                    n,
                ),
            )
        };
        super::simd::widest(
            #[inline(always)]
            move || {
                for (o, &x) in out.iter_mut().zip(src) {
                    o.write(f32_map(x));
                }
            },
        );
    } else {
        super::simd::widest(
            #[inline(always)]
            move || {
                for (o, &x) in out.iter_mut().zip(src) {
                    o.write(E::of(f64_map(x.as_f64())));
                }
            },
        );
    }
    // SAFETY: the loops above wrote every one of the n entries.
    unsafe { data.set_len(n) };
    from_shape_vec(shape_of(a), data)
}

/// [`swish_derivative`] of order `k` over `a`, one vectorised loop per order (the order a
/// constant in each), in f32 arithmetic for f32 tensors.
fn swish_map<E: Element>(a: &Array2<E>, k: i32) -> Array2<E> {
    let order = |k: i32| {
        map_in_own_precision(
            a,
            #[inline(always)]
            move |x| swish_derivative_f32(x, k),
            #[inline(always)]
            move |x| swish_derivative(x, k),
        )
    };
    match k {
        0 => order(0),
        1 => order(1),
        2 => order(2),
        3 => order(3),
        4 => order(4),
        _ => order(-1),
    }
}

/// ELU, `x` above zero and `alpha (e^x - 1)` elsewhere, or with `derivative` its
/// derivative, `1` above zero and `alpha e^x` elsewhere, as one vectorised loop (in f32
/// arithmetic for f32 tensors): libm's `expm1` is a call, which kept the loop scalar. NaN
/// stays NaN: it takes the second branch, whose exponential keeps it.
fn elu_map<E: Element>(a: &Array2<E>, alpha: E, derivative: bool) -> Array2<E> {
    use super::math::{exp, exp_f32, exp_m1_nonpositive, exp_m1_nonpositive_f32};
    let (alpha, alpha_f32) = (alpha.as_f64(), alpha.as_f64() as f32);
    if derivative {
        map_in_own_precision(
            a,
            #[inline(always)]
            move |x| if x > 0.0 { 1.0 } else { alpha_f32 * exp_f32(x) },
            #[inline(always)]
            move |x| if x > 0.0 { 1.0 } else { alpha * exp(x) },
        )
    } else {
        map_in_own_precision(
            a,
            #[inline(always)]
            move |x| {
                if x > 0.0 {
                    x
                } else {
                    alpha_f32 * exp_m1_nonpositive_f32(x)
                }
            },
            #[inline(always)]
            move |x| {
                if x > 0.0 {
                    x
                } else {
                    alpha * exp_m1_nonpositive(x)
                }
            },
        )
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
        UnaryOp::Elu(alpha) => elu_map(a, alpha, false),
        UnaryOp::EluDerivative(alpha) => elu_map(a, alpha, true),
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
        UnaryOp::Swish(k) => swish_map(a, k),
    }
}

pub(crate) fn binary<E: Element>(op: BinaryOp, a: &Array2<E>, b: &Array2<E>) -> Array2<E> {
    match op {
        BinaryOp::Add => zip_widest(a, b, |x, y| x + y),
        BinaryOp::Sub => zip_widest(a, b, |x, y| x - y),
        BinaryOp::Mul => zip_widest(a, b, |x, y| x * y),
        BinaryOp::Div => zip_widest(a, b, |x, y| x / y),
        BinaryOp::Gate => zip_broadcast(a, b, |x, y| if y > E::zero() { x } else { E::zero() }),
    }
}

/// [`zip_broadcast`] for operands of one shape compiled for the widest vectors the CPU has
/// (the same bits: nothing is contracted), written straight into the output's allocation;
/// other shapes go to [`zip_broadcast`].
#[inline(always)]
fn zip_widest<E: Element>(a: &Array2<E>, b: &Array2<E>, f: impl Fn(E, E) -> E) -> Array2<E> {
    let (sa, sb) = (shape_of(a), shape_of(b));
    if sa != sb {
        return zip_broadcast(a, b, f);
    }
    let (da, db) = (slice_of(a), slice_of(b));
    let n = da.len().min(db.len());
    let mut data: Vec<E> = Vec::with_capacity(n);
    let out = &mut data.spare_capacity_mut()[..n];
    // Zipped slices (no bounds checks), moved into the closure (no pointer reloaded after
    // each store): a loop that vectorises.
    super::simd::widest(
        #[inline(always)]
        move || {
            for ((o, &x), &y) in out.iter_mut().zip(da).zip(db) {
                o.write(f(x, y));
            }
        },
    );
    // SAFETY: the loop above wrote every one of the n entries.
    unsafe { data.set_len(n) };
    from_shape_vec(sa, data)
}

/// Applies `f` over the broadcast shape of `a` and `b`. The inner loops are split by which
/// operand is a single column, so that each compiles to a straight vectorisable loop.
fn zip_broadcast<E: Element>(a: &Array2<E>, b: &Array2<E>, f: impl Fn(E, E) -> E) -> Array2<E> {
    let (sa, sb) = (shape_of(a), shape_of(b));
    let out = sa
        .broadcast(sb)
        .expect("broadcast shapes are validated by Tensor");
    let (da, db) = (slice_of(a), slice_of(b));
    let n = out.len();
    let mut data: Vec<E> = Vec::with_capacity(n);
    let dst = &mut data.spare_capacity_mut()[..n];
    // Row by row, each row's loop over zipped slices (or one operand's single value),
    // compiled for the widest vectors the CPU has.
    super::simd::widest(
        #[inline(always)]
        move || {
            for (i, row) in dst.chunks_exact_mut(out.cols.max(1)).enumerate() {
                let ra = &da[if sa.rows == 1 { 0 } else { i * sa.cols }..][..sa.cols];
                let rb = &db[if sb.rows == 1 { 0 } else { i * sb.cols }..][..sb.cols];
                match (sa.cols == out.cols, sb.cols == out.cols) {
                    (true, true) => {
                        for ((o, &x), &y) in row.iter_mut().zip(ra).zip(rb) {
                            o.write(f(x, y));
                        }
                    }
                    (true, false) => {
                        let y = rb[0];
                        for (o, &x) in row.iter_mut().zip(ra) {
                            o.write(f(x, y));
                        }
                    }
                    (false, true) => {
                        let x = ra[0];
                        for (o, &y) in row.iter_mut().zip(rb) {
                            o.write(f(x, y));
                        }
                    }
                    (false, false) => {
                        let v = f(ra[0], rb[0]);
                        for o in row.iter_mut() {
                            o.write(v);
                        }
                    }
                }
            }
        },
    );
    // SAFETY: the rows above cover all n entries (out.cols > 0 whenever n > 0).
    unsafe { data.set_len(n) };
    from_shape_vec(out, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swish_in_f32_agrees_with_f64() {
        for k in 0..=4 {
            let mut worst = 0.0f64;
            for i in 0..60_001 {
                let t = -30.0 + 60.0 * i as f64 / 60_000.0;
                let t32 = t as f32;
                let reference = swish_derivative(t32 as f64, k);
                let ours = swish_derivative_f32(t32, k) as f64;
                worst = worst.max((ours - reference).abs() / (1.0 + (t32 as f64).abs()));
            }
            assert!(worst < 4.0 * f32::EPSILON as f64, "order {k}: {worst}");
        }
    }
}
