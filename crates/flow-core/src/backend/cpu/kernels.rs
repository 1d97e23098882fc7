//! The CPU kernels of one element type, behind [`CpuKernels`], implemented for f32 and f64
//! here by concrete (non-generic) functions.
//!
//! Why: generic code is compiled where it is instantiated. A generic `Backend for Cpu<E>`
//! calling generic kernels would be compiled in the crate that names `Cpu<f32>` (a user's
//! binary), so a debug build would run the kernels unoptimised whatever it sets for its
//! dependencies. Instantiated here, the kernels are compiled with flow-core, and a user's
//! `[profile.dev.package."*"] opt-level = 2` reaches them. In release the cost is one call per
//! op.

use super::{columns, elementwise, fused, matmul, reduce, spline};
use super::{from_shape_vec, shape_of, slice_of};
use crate::backend::{interleave_halves as interleave, split_halves as split};
use crate::backend::{
    Activation, AdamStep, BinaryOp, CouplingScale, Direction, RationalQuadratic, ReduceOp, UnaryOp,
};
use crate::shape::{Axis, Shape};
use ndarray::Array2;

/// The CPU backend's kernels for one element type (f32 and f64: sealed with `Element`).
#[allow(clippy::too_many_arguments)]
pub trait CpuKernels: Sized {
    fn cpu_matmul(a: &Array2<Self>, ta: bool, b: &Array2<Self>, tb: bool) -> Array2<Self>;
    fn cpu_unary(op: UnaryOp<Self>, a: &Array2<Self>) -> Array2<Self>;
    fn cpu_binary(op: BinaryOp, a: &Array2<Self>, b: &Array2<Self>) -> Array2<Self>;
    fn cpu_reduce(op: ReduceOp, axis: Axis, a: &Array2<Self>) -> Array2<Self>;
    fn cpu_argmax_mask(axis: Axis, a: &Array2<Self>) -> Array2<Self>;
    fn cpu_logsumexp_cols(a: &Array2<Self>) -> Array2<Self>;
    fn cpu_finite_probe(a: &Array2<Self>) -> Array2<Self>;
    fn cpu_softmax_cols(a: &Array2<Self>) -> Array2<Self>;
    fn cpu_broadcast_to(a: &Array2<Self>, shape: Shape) -> Array2<Self>;
    fn cpu_slice_cols(a: &Array2<Self>, start: usize, len: usize) -> Array2<Self>;
    fn cpu_concat_cols(parts: &[&Array2<Self>]) -> Array2<Self>;
    fn cpu_gather_cols(a: &Array2<Self>, index: &[usize]) -> Array2<Self>;
    fn cpu_scatter_add_cols(a: &Array2<Self>, index: &[usize], width: usize) -> Array2<Self>;
    fn cpu_select(mask: &Array2<Self>, a: &Array2<Self>, b: &Array2<Self>) -> Array2<Self>;
    fn cpu_take_per_row(a: &Array2<Self>, index: &[usize]) -> Array2<Self>;
    fn cpu_put_per_row(a: &Array2<Self>, index: &[usize], width: usize) -> Array2<Self>;
    fn cpu_search_sorted_rows(sorted: &Array2<Self>, x: &Array2<Self>) -> Vec<usize>;
    fn cpu_rational_quadratic(
        x: &Array2<Self>,
        params: &Array2<Self>,
        spec: &RationalQuadratic,
        direction: Direction,
    ) -> (Array2<Self>, Array2<Self>);
    fn cpu_rational_quadratic_backward(
        x: &Array2<Self>,
        params: &Array2<Self>,
        cache: &Array2<Self>,
        spec: &RationalQuadratic,
        direction: Direction,
        g: &Array2<Self>,
    ) -> (Array2<Self>, Array2<Self>);
    fn cpu_linear(
        x: &Array2<Self>,
        weight: &Array2<Self>,
        bias: &Array2<Self>,
        act: Activation<Self>,
    ) -> Array2<Self>;
    fn cpu_activation_backward(
        act: Activation<Self>,
        g: &mut Array2<Self>,
        out: &Array2<Self>,
    ) -> Array2<Self>;
    fn cpu_affine_coupling(
        v: &Array2<Self>,
        params: &Array2<Self>,
        scale: CouplingScale,
        direction: Direction,
    ) -> (Array2<Self>, Array2<Self>);
    fn cpu_affine_coupling_backward(
        params: &Array2<Self>,
        out: &Array2<Self>,
        g: &Array2<Self>,
        scale: CouplingScale,
        direction: Direction,
    ) -> (Array2<Self>, Array2<Self>);
    fn cpu_diag_normal_log_prob(
        z: &Array2<Self>,
        loc: &Array2<Self>,
        log_scale: &Array2<Self>,
    ) -> Array2<Self>;
    fn cpu_diag_normal_log_prob_backward(
        z: &Array2<Self>,
        loc: &Array2<Self>,
        log_scale: &Array2<Self>,
        g: &Array2<Self>,
    ) -> (Array2<Self>, Array2<Self>, Array2<Self>);
    fn cpu_adam_update(
        param: &mut Array2<Self>,
        grad: &Array2<Self>,
        m: &mut Array2<Self>,
        v: &mut Array2<Self>,
        h: &AdamStep<Self>,
    );
}

/// The spline of every entry: `n x 2d` (outputs, then log-dets) and the backward's cache.
fn rational_quadratic<E: crate::Element>(
    x: &Array2<E>,
    params: &Array2<E>,
    spec: &RationalQuadratic,
    direction: Direction,
) -> (Array2<E>, Array2<E>) {
    let s = shape_of(x);
    let (cache_rows, cache_cols) = spline::cache_shape(s.len(), spec);
    let mut y = vec![E::zero(); s.len()];
    let mut ld = vec![E::zero(); s.len()];
    let mut cache = vec![E::zero(); cache_rows * cache_cols];
    let (xs, ps) = (slice_of(x), slice_of(params));
    spline::forward(xs, ps, spec, direction, &mut y, &mut ld, &mut cache);
    let out = interleave(&y, &ld, s.rows, s.cols);
    (
        from_shape_vec(Shape::new(s.rows, 2 * s.cols), out),
        from_shape_vec(Shape::new(cache_rows, cache_cols), cache),
    )
}

fn rational_quadratic_backward<E: crate::Element>(
    x: &Array2<E>,
    params: &Array2<E>,
    cache: &Array2<E>,
    spec: &RationalQuadratic,
    direction: Direction,
    g: &Array2<E>,
) -> (Array2<E>, Array2<E>) {
    let s = shape_of(x);
    let (g_y, g_ld) = split(slice_of(g), s.rows, s.cols);
    let mut gx = vec![E::zero(); s.len()];
    let mut gp = vec![E::zero(); params.len()];
    spline::backward(
        spec,
        direction,
        slice_of(cache),
        &g_y,
        &g_ld,
        &mut gx,
        &mut gp,
    );
    (from_shape_vec(s, gx), from_shape_vec(shape_of(params), gp))
}

macro_rules! cpu_kernels {
    ($t:ty) => {
        impl CpuKernels for $t {
            fn cpu_matmul(a: &Array2<$t>, ta: bool, b: &Array2<$t>, tb: bool) -> Array2<$t> {
                matmul::matmul(a, ta, b, tb, None)
            }
            fn cpu_unary(op: UnaryOp<$t>, a: &Array2<$t>) -> Array2<$t> {
                elementwise::unary(op, a)
            }
            fn cpu_binary(op: BinaryOp, a: &Array2<$t>, b: &Array2<$t>) -> Array2<$t> {
                elementwise::binary(op, a, b)
            }
            fn cpu_reduce(op: ReduceOp, axis: Axis, a: &Array2<$t>) -> Array2<$t> {
                reduce::reduce(op, axis, a)
            }
            fn cpu_argmax_mask(axis: Axis, a: &Array2<$t>) -> Array2<$t> {
                reduce::argmax_mask(axis, a)
            }
            fn cpu_logsumexp_cols(a: &Array2<$t>) -> Array2<$t> {
                reduce::logsumexp_cols(a)
            }
            fn cpu_finite_probe(a: &Array2<$t>) -> Array2<$t> {
                reduce::finite_probe(a)
            }
            fn cpu_softmax_cols(a: &Array2<$t>) -> Array2<$t> {
                reduce::softmax_cols(a)
            }
            fn cpu_broadcast_to(a: &Array2<$t>, shape: Shape) -> Array2<$t> {
                reduce::broadcast_to(a, shape)
            }
            fn cpu_slice_cols(a: &Array2<$t>, start: usize, len: usize) -> Array2<$t> {
                columns::slice_cols(a, start, len)
            }
            fn cpu_concat_cols(parts: &[&Array2<$t>]) -> Array2<$t> {
                columns::concat_cols(parts)
            }
            fn cpu_gather_cols(a: &Array2<$t>, index: &[usize]) -> Array2<$t> {
                columns::gather_cols(a, index)
            }
            fn cpu_scatter_add_cols(a: &Array2<$t>, index: &[usize], width: usize) -> Array2<$t> {
                columns::scatter_add_cols(a, index, width)
            }
            fn cpu_select(mask: &Array2<$t>, a: &Array2<$t>, b: &Array2<$t>) -> Array2<$t> {
                columns::select(mask, a, b)
            }
            fn cpu_take_per_row(a: &Array2<$t>, index: &[usize]) -> Array2<$t> {
                columns::take_per_row(a, index)
            }
            fn cpu_put_per_row(a: &Array2<$t>, index: &[usize], width: usize) -> Array2<$t> {
                columns::put_per_row(a, index, width)
            }
            fn cpu_search_sorted_rows(sorted: &Array2<$t>, x: &Array2<$t>) -> Vec<usize> {
                columns::search_sorted_rows(sorted, x)
            }
            fn cpu_rational_quadratic(
                x: &Array2<$t>,
                params: &Array2<$t>,
                spec: &RationalQuadratic,
                direction: Direction,
            ) -> (Array2<$t>, Array2<$t>) {
                rational_quadratic(x, params, spec, direction)
            }
            fn cpu_rational_quadratic_backward(
                x: &Array2<$t>,
                params: &Array2<$t>,
                cache: &Array2<$t>,
                spec: &RationalQuadratic,
                direction: Direction,
                g: &Array2<$t>,
            ) -> (Array2<$t>, Array2<$t>) {
                rational_quadratic_backward(x, params, cache, spec, direction, g)
            }
            fn cpu_linear(
                x: &Array2<$t>,
                weight: &Array2<$t>,
                bias: &Array2<$t>,
                act: Activation<$t>,
            ) -> Array2<$t> {
                fused::linear(x, weight, bias, act)
            }
            fn cpu_activation_backward(
                act: Activation<$t>,
                g: &mut Array2<$t>,
                out: &Array2<$t>,
            ) -> Array2<$t> {
                fused::activation_backward(act, g, out)
            }
            fn cpu_affine_coupling(
                v: &Array2<$t>,
                params: &Array2<$t>,
                scale: CouplingScale,
                direction: Direction,
            ) -> (Array2<$t>, Array2<$t>) {
                fused::affine_coupling(v, params, scale, direction)
            }
            fn cpu_affine_coupling_backward(
                params: &Array2<$t>,
                out: &Array2<$t>,
                g: &Array2<$t>,
                scale: CouplingScale,
                direction: Direction,
            ) -> (Array2<$t>, Array2<$t>) {
                fused::affine_coupling_backward(params, out, g, scale, direction)
            }
            fn cpu_diag_normal_log_prob(
                z: &Array2<$t>,
                loc: &Array2<$t>,
                log_scale: &Array2<$t>,
            ) -> Array2<$t> {
                fused::diag_normal_log_prob(z, loc, log_scale)
            }
            fn cpu_diag_normal_log_prob_backward(
                z: &Array2<$t>,
                loc: &Array2<$t>,
                log_scale: &Array2<$t>,
                g: &Array2<$t>,
            ) -> (Array2<$t>, Array2<$t>, Array2<$t>) {
                fused::diag_normal_log_prob_backward(z, loc, log_scale, g)
            }
            fn cpu_adam_update(
                param: &mut Array2<$t>,
                grad: &Array2<$t>,
                m: &mut Array2<$t>,
                v: &mut Array2<$t>,
                h: &AdamStep<$t>,
            ) {
                fused::adam_update(param, grad, m, v, h)
            }
        }
    };
}

cpu_kernels!(f32);
cpu_kernels!(f64);
