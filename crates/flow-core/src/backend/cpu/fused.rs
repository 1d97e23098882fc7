//! Fused kernels that replace the trait's default compositions on the CPU.

use super::elementwise::{sigmoid, softplus};
use super::thin_matmul::is_thin;
use super::{from_shape_vec, matmul::matmul, shape_of, slice_of};
use crate::backend::{Activation, AdamStep, CouplingScale, Direction};
use crate::element::Element;
use crate::shape::Shape;
use ndarray::Array2;

/// `act(x @ weight^T + bias)`: one product and one pass over the output while it is in
/// cache. The thin kernels start from the bias themselves; for `gemm` the bias is added in
/// the activation pass, which saves writing bias rows first and gemm reading them back.
pub(crate) fn linear<E: Element>(
    x: &Array2<E>,
    weight: &Array2<E>,
    bias: &Array2<E>,
    act: Activation<E>,
) -> Array2<E> {
    let (m, k, n) = (x.nrows(), x.ncols(), weight.nrows());
    if is_thin(m, n, k, true) || m == 0 || n == 0 || k == 0 {
        let mut out = matmul(x, false, weight, true, Some(bias));
        let data = out.as_slice_mut().expect("fresh array is contiguous");
        data.iter_mut().for_each(|v| *v = activate(act, *v));
        return out;
    }
    let mut out = matmul(x, false, weight, true, None);
    let data = out.as_slice_mut().expect("fresh array is contiguous");
    let bias = slice_of(bias);
    for row in data.chunks_exact_mut(n) {
        for (v, &b) in row.iter_mut().zip(bias) {
            *v = activate(act, *v + b);
        }
    }
    out
}

#[inline(always)]
fn activate<E: Element>(act: Activation<E>, x: E) -> E {
    let zero = E::zero();
    match act {
        Activation::Identity => x,
        Activation::Relu => {
            if x > zero {
                x
            } else {
                zero
            }
        }
        Activation::LeakyRelu(slope) => {
            if x > zero {
                x
            } else {
                slope * x
            }
        }
    }
}

/// [`crate::Backend::activation_backward`]: each row gated in place and added into the bias
/// gradient while it is in cache. In place, the gradient's buffer (just written by the
/// product that computed it) is reused instead of a fresh one being pulled into cache.
pub(crate) fn activation_backward<E: Element>(
    act: Activation<E>,
    g: &mut Array2<E>,
    out: &Array2<E>,
) -> Array2<E> {
    let cols = g.ncols();
    let zero = E::zero();
    let mut row_sum = vec![zero; cols];
    let g = g
        .as_slice_mut()
        .expect("CPU storage is always in standard layout");
    for (gr, yr) in g
        .chunks_exact_mut(cols.max(1))
        .zip(slice_of(out).chunks_exact(cols.max(1)))
    {
        match act {
            Activation::Identity => {}
            Activation::Relu => gr
                .iter_mut()
                .zip(yr)
                .for_each(|(gi, &yi)| *gi = if yi > zero { *gi } else { zero }),
            Activation::LeakyRelu(slope) => gr
                .iter_mut()
                .zip(yr)
                .for_each(|(gi, &yi)| *gi = if yi > zero { *gi } else { *gi * slope }),
        }
        for (acc, &v) in row_sum.iter_mut().zip(gr.iter()) {
            *acc += v;
        }
    }
    from_shape_vec(Shape::new(1, cols), row_sum)
}

/// The log-scale `s` of a coupling from its raw parameter `r`, and `d s / d r`.
#[inline]
fn coupling_log_scale<E: Element>(r: E, scale: CouplingScale) -> (E, E) {
    match scale {
        CouplingScale::Exp => (r, E::one()),
        CouplingScale::Sigmoid => {
            let a = -(r + E::of(2.0));
            (softplus(a), -sigmoid(a))
        }
    }
}

/// [`crate::Backend::affine_coupling`] in one pass over the rows.
pub(crate) fn affine_coupling<E: Element>(
    v: &Array2<E>,
    params: &Array2<E>,
    scale: CouplingScale,
    direction: Direction,
) -> (Array2<E>, Array2<E>) {
    let s = shape_of(v);
    let (d, d2) = (s.cols, params.ncols() / 2);
    let d1 = d - d2;
    let (dv, dp) = (slice_of(v), slice_of(params));
    let mut out = Vec::with_capacity(s.len());
    let mut log_dets = Vec::with_capacity(s.rows);
    for (row, p) in dv.chunks_exact(d).zip(dp.chunks_exact(2 * d2)) {
        out.extend_from_slice(&row[..d1]);
        let mut sum = E::zero();
        for (&x, tr) in row[d1..].iter().zip(p.chunks_exact(2)) {
            let (t, ls) = (tr[0], coupling_log_scale(tr[1], scale).0);
            out.push(match direction {
                Direction::Forward => x * ls.exp() + t,
                Direction::Inverse => (x - t) * (-ls).exp(),
            });
            sum += ls;
        }
        log_dets.push(match direction {
            Direction::Forward => sum,
            Direction::Inverse => -sum,
        });
    }
    (
        from_shape_vec(s, out),
        from_shape_vec(Shape::new(s.rows, 1), log_dets),
    )
}

/// [`crate::Backend::affine_coupling_backward`] in one pass over the rows.
pub(crate) fn affine_coupling_backward<E: Element>(
    params: &Array2<E>,
    out: &Array2<E>,
    g: &Array2<E>,
    scale: CouplingScale,
    direction: Direction,
) -> (Array2<E>, Array2<E>) {
    let s = shape_of(out);
    let (d, d2) = (s.cols, params.ncols() / 2);
    let d1 = d - d2;
    let (dp, dy, dg) = (slice_of(params), slice_of(out), slice_of(g));
    let mut g_v = Vec::with_capacity(s.len());
    let mut g_params = Vec::with_capacity(params.len());
    for ((p, y), gr) in dp
        .chunks_exact(2 * d2)
        .zip(dy.chunks_exact(d))
        .zip(dg.chunks_exact(d))
    {
        g_v.extend_from_slice(&gr[..d1]);
        for ((&y2, &g2), tr) in y[d1..].iter().zip(&gr[d1..]).zip(p.chunks_exact(2)) {
            let (t, (ls, dls)) = (tr[0], coupling_log_scale(tr[1], scale));
            let (g_v2, g_shift, g_s) = match direction {
                Direction::Forward => (g2 * ls.exp(), g2, g2 * (y2 - t)),
                Direction::Inverse => {
                    let g_v2 = g2 * (-ls).exp();
                    (g_v2, -g_v2, -(g2 * y2))
                }
            };
            g_v.push(g_v2);
            g_params.push(g_shift);
            g_params.push(g_s * dls);
        }
    }
    (
        from_shape_vec(s, g_v),
        from_shape_vec(shape_of(params), g_params),
    )
}

/// [`crate::Backend::diag_normal_log_prob`] in one pass over the rows.
pub(crate) fn diag_normal_log_prob<E: Element>(
    z: &Array2<E>,
    loc: &Array2<E>,
    log_scale: &Array2<E>,
) -> Array2<E> {
    let s = shape_of(z);
    let (loc, log_scale) = (slice_of(loc), slice_of(log_scale));
    let inv_scale: Vec<E> = log_scale.iter().map(|&ls| (-ls).exp()).collect();
    let norm = log_scale.iter().fold(E::zero(), |acc, &ls| acc + ls);
    let constant = E::of(-0.5 * s.cols as f64 * (2.0 * std::f64::consts::PI).ln());
    let half = E::of(0.5);
    let out = slice_of(z)
        .chunks_exact(s.cols.max(1))
        .map(|row| {
            let mut quad = E::zero();
            for ((&x, &m), &k) in row.iter().zip(loc).zip(&inv_scale) {
                let u = (x - m) * k;
                quad += u * u;
            }
            -(half * quad + norm) + constant
        })
        .collect();
    from_shape_vec(Shape::new(s.rows, 1), out)
}

/// [`crate::Backend::diag_normal_log_prob_backward`] in one pass over the rows.
pub(crate) fn diag_normal_log_prob_backward<E: Element>(
    z: &Array2<E>,
    loc: &Array2<E>,
    log_scale: &Array2<E>,
    g: &Array2<E>,
) -> (Array2<E>, Array2<E>, Array2<E>) {
    let s = shape_of(z);
    let (loc, log_scale, g) = (slice_of(loc), slice_of(log_scale), slice_of(g));
    let inv_scale: Vec<E> = log_scale.iter().map(|&ls| (-ls).exp()).collect();
    let mut g_z = Vec::with_capacity(s.len());
    let mut g_loc = vec![E::zero(); s.cols];
    let mut g_log_scale = vec![E::zero(); s.cols];
    for (row, &gi) in slice_of(z).chunks_exact(s.cols.max(1)).zip(g) {
        for (j, ((&x, &m), &k)) in row.iter().zip(loc).zip(&inv_scale).enumerate() {
            let u = (x - m) * k;
            let w = gi * u * k;
            g_z.push(-w);
            g_loc[j] += w;
            g_log_scale[j] += gi * (u * u - E::one());
        }
    }
    let row = Shape::new(1, s.cols);
    (
        from_shape_vec(s, g_z),
        from_shape_vec(row, g_loc),
        from_shape_vec(row, g_log_scale),
    )
}

/// One pass over parameter, gradient and moments, in the same operation order as the
/// default composition (and PyTorch's single-tensor Adam).
///
/// Subnormal numbers are kept out. Weights of dead ReLU units only feel weight decay and
/// shrink geometrically into the subnormal range, and squares of their tiny gradients land
/// there too; every operation touching a subnormal takes a microcode assist, and a handful
/// of such weights made the seed example 4x slower. So gradients below `sqrt(MIN_POSITIVE)`
/// (1.1e-19 in f32, whose squares would be subnormal) count as zero, and subnormal results
/// are flushed to zero. At these magnitudes the Adam step they would have produced is below
/// 1e-12 of the learning rate.
pub(crate) fn adam_update<E: Element>(
    param: &mut Array2<E>,
    grad: &Array2<E>,
    m: &mut Array2<E>,
    v: &mut Array2<E>,
    h: &AdamStep<E>,
) {
    // Wider lanes of sqrt and div than SSE2's; bit-identical (see `simd::widest`).
    super::simd::widest(
        #[inline(always)]
        || adam_update_body(param, grad, m, v, h),
    )
}

#[inline(always)]
fn adam_update_body<E: Element>(
    param: &mut Array2<E>,
    grad: &Array2<E>,
    m: &mut Array2<E>,
    v: &mut Array2<E>,
    h: &AdamStep<E>,
) {
    let one = E::one();
    let tiny = E::min_positive_value().sqrt();
    let inv_sqrt_bc2 = one / h.bias_correction2.sqrt();
    let step_size = h.lr / h.bias_correction1;
    let contiguous = "CPU storage is always in standard layout";
    let pi = param.as_slice_mut().expect(contiguous);
    let mi = m.as_slice_mut().expect(contiguous);
    let vi = v.as_slice_mut().expect(contiguous);
    let gi = slice_of(grad);
    let n = pi.len();
    assert!(
        gi.len() == n && mi.len() == n && vi.len() == n,
        "shapes checked by Tensor"
    );
    // Indexed over equal-length slices so that the loop vectorises (selects, sqrt, div).
    for k in 0..n {
        let p = pi[k];
        let g = gi[k] + h.weight_decay * p;
        let g = if g.abs() < tiny { E::zero() } else { g };
        let m = flush_subnormal(h.beta1 * mi[k] + (one - h.beta1) * g);
        let v = flush_subnormal(h.beta2 * vi[k] + (one - h.beta2) * (g * g));
        let denom = v.sqrt() * inv_sqrt_bc2 + h.eps;
        pi[k] = flush_subnormal(p - step_size * (m / denom));
        mi[k] = m;
        vi[k] = v;
    }
}

#[inline]
fn flush_subnormal<E: Element>(x: E) -> E {
    if x.abs() < E::min_positive_value() {
        E::zero()
    } else {
        x
    }
}
