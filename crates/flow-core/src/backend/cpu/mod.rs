//! The CPU backend: ndarray storage in standard (row-major, contiguous) layout, matrix
//! products through the `gemm` crate, single-threaded kernels written for the small,
//! wide-batch shapes of normalizing flows.

mod columns;
mod elementwise;
mod fused;
mod kernels;
mod math;
mod matmul;
mod reduce;
mod simd;
pub(crate) mod spline;
mod thin_matmul;

use super::{
    Activation, AdamStep, Backend, BinaryOp, CouplingScale, Direction, RationalQuadratic, ReduceOp,
    UnaryOp,
};
use crate::element::Element;
use crate::error::Result;
use crate::shape::{Axis, Shape};
use ndarray::Array2;
use std::marker::PhantomData;

/// The CPU backend for element type `E` (f32 or f64). Zero-sized.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cpu<E>(PhantomData<E>);

impl<E> Cpu<E> {
    pub const fn new() -> Self {
        Cpu(PhantomData)
    }
}

/// Row-major contiguous slice of a CPU tensor. Every array this backend creates is in
/// standard layout, so this is an invariant, not a user error.
pub(crate) fn slice_of<E>(a: &Array2<E>) -> &[E] {
    a.as_slice()
        .expect("CPU storage is always in standard layout")
}

pub(crate) fn shape_of<E>(a: &Array2<E>) -> Shape {
    Shape::new(a.nrows(), a.ncols())
}

pub use kernels::CpuKernels;
pub use simd::widest;

pub(crate) fn from_shape_vec<E>(shape: Shape, data: Vec<E>) -> Array2<E> {
    Array2::from_shape_vec((shape.rows, shape.cols), data).expect("length equals rows * cols")
}

impl<E: Element> Backend for Cpu<E> {
    type Elem = E;
    type Storage = Array2<E>;
    type Index = Vec<usize>;

    fn name(&self) -> String {
        format!("cpu-{}", E::NAME)
    }

    fn upload(&self, shape: Shape, data: Vec<E>) -> Result<Array2<E>> {
        Ok(from_shape_vec(shape, data))
    }

    fn download(&self, s: &Array2<E>) -> Result<Vec<E>> {
        Ok(slice_of(s).to_vec())
    }

    fn full(&self, shape: Shape, value: E) -> Result<Array2<E>> {
        Ok(Array2::from_elem((shape.rows, shape.cols), value))
    }

    fn shape(&self, s: &Array2<E>) -> Shape {
        shape_of(s)
    }

    fn randn(&self, shape: Shape, rng: &mut crate::FlowRng) -> Result<Array2<E>> {
        let data = crate::random::standard_normals(shape.len(), rng);
        Ok(from_shape_vec(shape, data.into_iter().map(E::of).collect()))
    }

    fn rand_uniform(
        &self,
        shape: Shape,
        low: f64,
        high: f64,
        rng: &mut crate::FlowRng,
    ) -> Result<Array2<E>> {
        let data = crate::random::uniforms(shape.len(), low, high, rng)?;
        Ok(from_shape_vec(shape, data.into_iter().map(E::of).collect()))
    }

    fn upload_index(&self, index: &[usize]) -> Result<Vec<usize>> {
        Ok(index.to_vec())
    }

    fn download_index(&self, index: &Vec<usize>) -> Result<Vec<usize>> {
        Ok(index.clone())
    }

    fn matmul(&self, a: &Array2<E>, ta: bool, b: &Array2<E>, tb: bool) -> Result<Array2<E>> {
        Ok(E::cpu_matmul(a, ta, b, tb))
    }

    fn unary(&self, op: UnaryOp<E>, a: &Array2<E>) -> Result<Array2<E>> {
        Ok(E::cpu_unary(op, a))
    }

    fn binary(&self, op: BinaryOp, a: &Array2<E>, b: &Array2<E>) -> Result<Array2<E>> {
        Ok(E::cpu_binary(op, a, b))
    }

    fn reduce(&self, op: ReduceOp, axis: Axis, a: &Array2<E>) -> Result<Array2<E>> {
        Ok(E::cpu_reduce(op, axis, a))
    }

    fn finite_probe(&self, a: &Array2<E>) -> Result<Array2<E>> {
        Ok(E::cpu_finite_probe(a))
    }

    fn argmax_mask(&self, axis: Axis, a: &Array2<E>) -> Result<Array2<E>> {
        Ok(E::cpu_argmax_mask(axis, a))
    }

    fn logsumexp_cols(&self, a: &Array2<E>) -> Result<Array2<E>> {
        Ok(E::cpu_logsumexp_cols(a))
    }

    fn softmax_cols(&self, a: &Array2<E>) -> Result<Array2<E>> {
        Ok(E::cpu_softmax_cols(a))
    }

    fn broadcast_to(&self, a: &Array2<E>, shape: Shape) -> Result<Array2<E>> {
        Ok(E::cpu_broadcast_to(a, shape))
    }

    fn slice_cols(&self, a: &Array2<E>, start: usize, len: usize) -> Result<Array2<E>> {
        Ok(E::cpu_slice_cols(a, start, len))
    }

    fn concat_cols(&self, parts: &[&Array2<E>]) -> Result<Array2<E>> {
        Ok(E::cpu_concat_cols(parts))
    }

    fn gather_cols(&self, a: &Array2<E>, index: &Vec<usize>) -> Result<Array2<E>> {
        Ok(E::cpu_gather_cols(a, index))
    }

    fn scatter_add_cols(
        &self,
        a: &Array2<E>,
        index: &Vec<usize>,
        width: usize,
    ) -> Result<Array2<E>> {
        Ok(E::cpu_scatter_add_cols(a, index, width))
    }

    fn select(&self, mask: &Array2<E>, a: &Array2<E>, b: &Array2<E>) -> Result<Array2<E>> {
        Ok(E::cpu_select(mask, a, b))
    }

    fn reshape(&self, a: &Array2<E>, shape: Shape) -> Result<Array2<E>> {
        Ok(from_shape_vec(shape, slice_of(a).to_vec()))
    }

    fn take_per_row(&self, a: &Array2<E>, index: &Vec<usize>) -> Result<Array2<E>> {
        Ok(E::cpu_take_per_row(a, index))
    }

    fn put_per_row(&self, a: &Array2<E>, index: &Vec<usize>, width: usize) -> Result<Array2<E>> {
        Ok(E::cpu_put_per_row(a, index, width))
    }

    fn search_sorted_rows(&self, sorted: &Array2<E>, x: &Array2<E>) -> Result<Vec<usize>> {
        Ok(E::cpu_search_sorted_rows(sorted, x))
    }

    fn rational_quadratic(
        &self,
        x: &Array2<E>,
        params: &Array2<E>,
        spec: &RationalQuadratic,
        direction: Direction,
    ) -> Result<(Array2<E>, Array2<E>)> {
        Ok(E::cpu_rational_quadratic(x, params, spec, direction))
    }

    fn rational_quadratic_backward(
        &self,
        x: &Array2<E>,
        params: &Array2<E>,
        cache: &Array2<E>,
        spec: &RationalQuadratic,
        direction: Direction,
        g: &Array2<E>,
    ) -> Result<(Array2<E>, Array2<E>)> {
        Ok(E::cpu_rational_quadratic_backward(
            x, params, cache, spec, direction, g,
        ))
    }

    fn linear(
        &self,
        x: &Array2<E>,
        weight: &Array2<E>,
        bias: &Array2<E>,
        act: Activation<E>,
    ) -> Result<Array2<E>> {
        Ok(E::cpu_linear(x, weight, bias, act))
    }

    fn activation_backward(
        &self,
        act: Activation<E>,
        g: &mut Array2<E>,
        out: &Array2<E>,
    ) -> Result<Array2<E>> {
        Ok(E::cpu_activation_backward(act, g, out))
    }

    fn affine_coupling(
        &self,
        v: &Array2<E>,
        params: &Array2<E>,
        scale: CouplingScale,
        direction: Direction,
    ) -> Result<(Array2<E>, Array2<E>)> {
        Ok(E::cpu_affine_coupling(v, params, scale, direction))
    }

    fn affine_coupling_backward(
        &self,
        _v: &Array2<E>,
        params: &Array2<E>,
        out: &Array2<E>,
        g: &Array2<E>,
        scale: CouplingScale,
        direction: Direction,
    ) -> Result<(Array2<E>, Array2<E>)> {
        Ok(E::cpu_affine_coupling_backward(
            params, out, g, scale, direction,
        ))
    }

    fn diag_normal_log_prob(
        &self,
        z: &Array2<E>,
        loc: &Array2<E>,
        log_scale: &Array2<E>,
    ) -> Result<Array2<E>> {
        Ok(E::cpu_diag_normal_log_prob(z, loc, log_scale))
    }

    fn diag_normal_log_prob_backward(
        &self,
        z: &Array2<E>,
        loc: &Array2<E>,
        log_scale: &Array2<E>,
        g: &Array2<E>,
    ) -> Result<(Array2<E>, Array2<E>, Array2<E>)> {
        Ok(E::cpu_diag_normal_log_prob_backward(z, loc, log_scale, g))
    }

    fn adam_update(
        &self,
        param: &mut Array2<E>,
        grad: &Array2<E>,
        m: &mut Array2<E>,
        v: &mut Array2<E>,
        h: &AdamStep<E>,
    ) -> Result<()> {
        E::cpu_adam_update(param, grad, m, v, h);
        Ok(())
    }
}
