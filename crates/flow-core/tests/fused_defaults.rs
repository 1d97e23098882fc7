//! The CPU backend's fused kernels agree with the `Backend` trait's default compositions.
//! `Plain` forwards every primitive to the CPU backend but keeps the trait's defaults for
//! the fused operations.

mod common;

use common::*;
use flow_core::backend::{AdamStep, Backend, BinaryOp, ReduceOp, UnaryOp};
use flow_core::{Axis, Cpu, Shape, Tensor};
use ndarray::Array2;
use proptest::prelude::*;

#[derive(Clone, Copy, Debug, Default)]
struct Plain(Cpu<f64>);

impl Backend for Plain {
    type Elem = f64;
    type Storage = Array2<f64>;
    fn name(&self) -> String {
        "plain".into()
    }
    fn upload(&self, shape: Shape, data: Vec<f64>) -> Array2<f64> {
        self.0.upload(shape, data)
    }
    fn download(&self, s: &Array2<f64>) -> Vec<f64> {
        self.0.download(s)
    }
    fn full(&self, shape: Shape, value: f64) -> Array2<f64> {
        self.0.full(shape, value)
    }
    fn shape(&self, s: &Array2<f64>) -> Shape {
        self.0.shape(s)
    }
    fn matmul(&self, a: &Array2<f64>, ta: bool, b: &Array2<f64>, tb: bool) -> Array2<f64> {
        self.0.matmul(a, ta, b, tb)
    }
    fn unary(&self, op: UnaryOp<f64>, a: &Array2<f64>) -> Array2<f64> {
        self.0.unary(op, a)
    }
    fn binary(&self, op: BinaryOp, a: &Array2<f64>, b: &Array2<f64>) -> Array2<f64> {
        self.0.binary(op, a, b)
    }
    fn reduce(&self, op: ReduceOp, axis: Axis, a: &Array2<f64>) -> Array2<f64> {
        self.0.reduce(op, axis, a)
    }
    fn argmax_mask(&self, axis: Axis, a: &Array2<f64>) -> Array2<f64> {
        self.0.argmax_mask(axis, a)
    }
    fn logsumexp_cols(&self, a: &Array2<f64>) -> Array2<f64> {
        self.0.logsumexp_cols(a)
    }
    fn softmax_cols(&self, a: &Array2<f64>) -> Array2<f64> {
        self.0.softmax_cols(a)
    }
    fn broadcast_to(&self, a: &Array2<f64>, shape: Shape) -> Array2<f64> {
        self.0.broadcast_to(a, shape)
    }
    fn slice_cols(&self, a: &Array2<f64>, start: usize, len: usize) -> Array2<f64> {
        self.0.slice_cols(a, start, len)
    }
    fn concat_cols(&self, parts: &[&Array2<f64>]) -> Array2<f64> {
        self.0.concat_cols(parts)
    }
    fn gather_cols(&self, a: &Array2<f64>, index: &[usize]) -> Array2<f64> {
        self.0.gather_cols(a, index)
    }
    fn scatter_add_cols(&self, a: &Array2<f64>, index: &[usize], width: usize) -> Array2<f64> {
        self.0.scatter_add_cols(a, index, width)
    }
    fn select(&self, mask: &Array2<f64>, a: &Array2<f64>, b: &Array2<f64>) -> Array2<f64> {
        self.0.select(mask, a, b)
    }
}

fn on_plain(x: &Tensor<B>) -> Tensor<Plain> {
    Tensor::from_vec(&Plain::default(), x.shape(), x.to_vec()).unwrap()
}

fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-12 * (1.0 + x.abs()))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn linear_matches_default((x, w, b) in (1usize..=6, 1usize..=6, 1usize..=6).prop_flat_map(|(r, i, o)| {
        (matrix_of(r, i, any_value()), matrix_of(o, i, any_value()), matrix_of(1, o, any_value()))
    })) {
        let fused = x.linear(&w, &b).unwrap();
        let plain = on_plain(&x).linear(&on_plain(&w), &on_plain(&b)).unwrap();
        prop_assert!(close(&fused.to_vec(), &plain.to_vec()));
    }

    #[test]
    fn affine_coupling_matches_default((x, s, t) in shape().prop_flat_map(|(r, c)| {
        (matrix_of(r, c, any_value()), matrix_of(r, c, any_value()), matrix_of(r, c, any_value()))
    })) {
        let (y, ld) = x.affine_coupling(&t, &s).unwrap();
        let (py, pld) = on_plain(&x).affine_coupling(&on_plain(&t), &on_plain(&s)).unwrap();
        prop_assert!(close(&y.to_vec(), &py.to_vec()));
        prop_assert!(close(&ld.to_vec(), &pld.to_vec()));
    }

    #[test]
    fn affine_coupling_inverse_matches_default_and_inverts((x, s, t) in shape().prop_flat_map(|(r, c)| {
        (matrix_of(r, c, any_value()), matrix_of(r, c, any_value()), matrix_of(r, c, any_value()))
    })) {
        let (y, ld) = x.affine_coupling(&t, &s).unwrap();
        let (back, sums) = y.affine_coupling_inverse(&t, &s).unwrap();
        let (pback, psums) = on_plain(&y).affine_coupling_inverse(&on_plain(&t), &on_plain(&s)).unwrap();
        prop_assert!(close(&back.to_vec(), &pback.to_vec()));
        prop_assert!(close(&sums.to_vec(), &psums.to_vec()));
        prop_assert!(back.max_abs_diff(&x).unwrap() < 1e-9);
        prop_assert!(close(&sums.to_vec(), &ld.to_vec()));
    }

    #[test]
    fn adam_update_matches_default((p, g, m, v) in shape().prop_flat_map(|(r, c)| {
        (matrix_of(r, c, any_value()), matrix_of(r, c, any_value()), matrix_of(r, c, any_value()), matrix_of(r, c, 0.0f64..2.0))
    }), t in 1i32..50, wd in prop::sample::select(vec![0.0, 1e-2])) {
        let h = AdamStep {
            lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: wd,
            bias_correction1: 1.0 - 0.9f64.powi(t), bias_correction2: 1.0 - 0.999f64.powi(t),
        };
        let (fp, fm, fv) = p.adam_update(&g, &m, &v, &h).unwrap();
        let (pp, pm, pv) = on_plain(&p).adam_update(&on_plain(&g), &on_plain(&m), &on_plain(&v), &h).unwrap();
        prop_assert!(close(&fp.to_vec(), &pp.to_vec()));
        prop_assert!(close(&fm.to_vec(), &pm.to_vec()));
        prop_assert!(close(&fv.to_vec(), &pv.to_vec()));
    }
}
