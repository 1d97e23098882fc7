//! The CPU backend's fused kernels agree with the `Backend` trait's default compositions.
//! `Plain` forwards every primitive to the CPU backend but keeps the trait's defaults for
//! the fused operations.

mod common;

use common::*;
use flow_core::backend::{AdamStep, Backend, BinaryOp, ReduceOp, UnaryOp};
use flow_core::{Activation, Direction};
use flow_core::{Axis, Cpu, Shape, Tensor};
use ndarray::Array2;
use proptest::prelude::*;

#[derive(Clone, Copy, Debug, Default)]
struct Plain(Cpu<f64>);

impl Backend for Plain {
    type Elem = f64;
    type Storage = Array2<f64>;
    type Index = Vec<usize>;
    fn name(&self) -> String {
        "plain".into()
    }
    fn upload(&self, shape: Shape, data: Vec<f64>) -> flow_core::Result<Array2<f64>> {
        self.0.upload(shape, data)
    }
    fn download(&self, s: &Array2<f64>) -> flow_core::Result<Vec<f64>> {
        self.0.download(s)
    }
    fn full(&self, shape: Shape, value: f64) -> flow_core::Result<Array2<f64>> {
        self.0.full(shape, value)
    }
    fn shape(&self, s: &Array2<f64>) -> Shape {
        self.0.shape(s)
    }
    fn randn(&self, shape: Shape, rng: &mut flow_core::FlowRng) -> flow_core::Result<Array2<f64>> {
        self.0.randn(shape, rng)
    }
    fn rand_uniform(
        &self,
        shape: Shape,
        low: f64,
        high: f64,
        rng: &mut flow_core::FlowRng,
    ) -> flow_core::Result<Array2<f64>> {
        self.0.rand_uniform(shape, low, high, rng)
    }
    fn upload_index(&self, index: &[usize]) -> flow_core::Result<Vec<usize>> {
        self.0.upload_index(index)
    }
    fn download_index(&self, index: &Vec<usize>) -> flow_core::Result<Vec<usize>> {
        self.0.download_index(index)
    }
    fn matmul(
        &self,
        a: &Array2<f64>,
        ta: bool,
        b: &Array2<f64>,
        tb: bool,
    ) -> flow_core::Result<Array2<f64>> {
        self.0.matmul(a, ta, b, tb)
    }
    fn unary(&self, op: UnaryOp<f64>, a: &Array2<f64>) -> flow_core::Result<Array2<f64>> {
        self.0.unary(op, a)
    }
    fn binary(
        &self,
        op: BinaryOp,
        a: &Array2<f64>,
        b: &Array2<f64>,
    ) -> flow_core::Result<Array2<f64>> {
        self.0.binary(op, a, b)
    }
    fn reduce(&self, op: ReduceOp, axis: Axis, a: &Array2<f64>) -> flow_core::Result<Array2<f64>> {
        self.0.reduce(op, axis, a)
    }
    fn argmax_mask(&self, axis: Axis, a: &Array2<f64>) -> flow_core::Result<Array2<f64>> {
        self.0.argmax_mask(axis, a)
    }
    fn logsumexp_cols(&self, a: &Array2<f64>) -> flow_core::Result<Array2<f64>> {
        self.0.logsumexp_cols(a)
    }
    fn softmax_cols(&self, a: &Array2<f64>) -> flow_core::Result<Array2<f64>> {
        self.0.softmax_cols(a)
    }
    fn broadcast_to(&self, a: &Array2<f64>, shape: Shape) -> flow_core::Result<Array2<f64>> {
        self.0.broadcast_to(a, shape)
    }
    fn slice_cols(
        &self,
        a: &Array2<f64>,
        start: usize,
        len: usize,
    ) -> flow_core::Result<Array2<f64>> {
        self.0.slice_cols(a, start, len)
    }
    fn concat_cols(&self, parts: &[&Array2<f64>]) -> flow_core::Result<Array2<f64>> {
        self.0.concat_cols(parts)
    }
    fn gather_cols(&self, a: &Array2<f64>, index: &Vec<usize>) -> flow_core::Result<Array2<f64>> {
        self.0.gather_cols(a, index)
    }
    fn scatter_add_cols(
        &self,
        a: &Array2<f64>,
        index: &Vec<usize>,
        width: usize,
    ) -> flow_core::Result<Array2<f64>> {
        self.0.scatter_add_cols(a, index, width)
    }
    fn select(
        &self,
        mask: &Array2<f64>,
        a: &Array2<f64>,
        b: &Array2<f64>,
    ) -> flow_core::Result<Array2<f64>> {
        self.0.select(mask, a, b)
    }
    fn reshape(&self, a: &Array2<f64>, shape: Shape) -> flow_core::Result<Array2<f64>> {
        self.0.reshape(a, shape)
    }
    fn take_per_row(&self, a: &Array2<f64>, index: &Vec<usize>) -> flow_core::Result<Array2<f64>> {
        self.0.take_per_row(a, index)
    }
    fn put_per_row(
        &self,
        a: &Array2<f64>,
        index: &Vec<usize>,
        width: usize,
    ) -> flow_core::Result<Array2<f64>> {
        self.0.put_per_row(a, index, width)
    }
    fn search_sorted_rows(
        &self,
        sorted: &Array2<f64>,
        x: &Array2<f64>,
    ) -> flow_core::Result<Vec<usize>> {
        self.0.search_sorted_rows(sorted, x)
    }
}

fn on_plain(x: &Tensor<B>) -> Tensor<Plain> {
    Tensor::from_vec(&Plain::default(), x.shape(), x.to_vec().unwrap()).unwrap()
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
    fn linear_matches_default(
        (x, w, b) in linear_operands(6),
        act in prop::sample::select(vec![Activation::Identity, Activation::Relu, Activation::LeakyRelu(0.2)]),
    ) {
        let fused = x.linear_activated(&w, &b, act).unwrap();
        let plain = on_plain(&x).linear_activated(&on_plain(&w), &on_plain(&b), act).unwrap();
        prop_assert!(close(&fused.to_vec()?, &plain.to_vec()?));
    }

    #[test]
    fn activation_backward_matches_default(
        (g, y) in shape().prop_flat_map(|(r, c)| (matrix_of(r, c, any_value()), matrix_of(r, c, any_value()))),
        act in prop::sample::select(vec![Activation::Identity, Activation::Relu, Activation::LeakyRelu(0.2)]),
    ) {
        let (mut fg, mut pg) = (g.storage().clone(), g.storage().clone());
        let fs = CPU.activation_backward(act, &mut fg, y.storage())?;
        let ps = Plain::default().activation_backward(act, &mut pg, y.storage())?;
        prop_assert!(close(fg.as_slice().unwrap(), pg.as_slice().unwrap()));
        prop_assert!(close(fs.as_slice().unwrap(), ps.as_slice().unwrap()));
    }

    #[test]
    fn affine_coupling_matches_default_and_inverts((v, params, scale, direction) in coupling_operands()) {
        let (y, ld) = v.affine_coupling(&params, scale, direction).unwrap();
        let (py, pld) = on_plain(&v).affine_coupling(&on_plain(&params), scale, direction).unwrap();
        prop_assert!(close(&y.to_vec()?, &py.to_vec()?));
        prop_assert!(close(&ld.to_vec()?, &pld.to_vec()?));
        let back_direction = match direction {
            Direction::Forward => Direction::Inverse,
            Direction::Inverse => Direction::Forward,
        };
        let (back, back_ld) = y.affine_coupling(&params, scale, back_direction).unwrap();
        prop_assert!(back.max_abs_diff(&v).unwrap() < 1e-9);
        prop_assert!(close(&back_ld.to_vec()?, &ld.unary(UnaryOp::Neg)?.to_vec()?));
    }

    #[test]
    fn affine_coupling_backward_matches_default(
        (v, params, scale, direction) in coupling_operands(),
        seed in 0u64..1000,
    ) {
        let (y, _) = v.affine_coupling(&params, scale, direction).unwrap();
        let g = Tensor::randn(&CPU, y.shape(), &mut flow_core::rng(seed))?;
        let (gv, gp) = CPU.affine_coupling_backward(v.storage(), params.storage(), y.storage(), g.storage(), scale, direction)?;
        let plain = Plain::default();
        let (pgv, pgp) = plain.affine_coupling_backward(v.storage(), params.storage(), y.storage(), g.storage(), scale, direction)?;
        prop_assert!(close(gv.as_slice().unwrap(), pgv.as_slice().unwrap()));
        prop_assert!(close(gp.as_slice().unwrap(), pgp.as_slice().unwrap()));
    }

    #[test]
    fn diag_normal_matches_default((z, loc, log_scale) in diag_normal_operands(), seed in 0u64..1000) {
        let lp = z.diag_normal_log_prob(&loc, &log_scale).unwrap();
        let plp = on_plain(&z).diag_normal_log_prob(&on_plain(&loc), &on_plain(&log_scale)).unwrap();
        prop_assert!(close(&lp.to_vec()?, &plp.to_vec()?));
        let g = Tensor::randn(&CPU, lp.shape(), &mut flow_core::rng(seed))?;
        let (s, l, ls, gs) = (z.storage(), loc.storage(), log_scale.storage(), g.storage());
        let fused = CPU.diag_normal_log_prob_backward(s, l, ls, gs)?;
        let plain = Plain::default().diag_normal_log_prob_backward(s, l, ls, gs)?;
        for (f, p) in [(&fused.0, &plain.0), (&fused.1, &plain.1), (&fused.2, &plain.2)] {
            prop_assert!(close(f.as_slice().unwrap(), p.as_slice().unwrap()));
        }
    }

    #[test]
    fn adam_update_matches_default((p, g, m, v) in shape().prop_flat_map(|(r, c)| {
        (matrix_of(r, c, any_value()), matrix_of(r, c, any_value()), matrix_of(r, c, any_value()), matrix_of(r, c, 0.0f64..2.0))
    }), t in 1i32..50, wd in prop::sample::select(vec![0.0, 1e-2])) {
        let h = AdamStep {
            lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: wd,
            bias_correction1: 1.0 - 0.9f64.powi(t), bias_correction2: 1.0 - 0.999f64.powi(t),
        };
        let before = p.to_vec()?;
        let (mut fp, mut fm, mut fv) = (p.clone(), m.clone(), v.clone());
        fp.adam_update(&g, &mut fm, &mut fv, &h).unwrap();
        let (mut pp, mut pm, mut pv) = (on_plain(&p), on_plain(&m), on_plain(&v));
        pp.adam_update(&on_plain(&g), &mut pm, &mut pv, &h).unwrap();
        // The storage was shared with `p`, so the update copied it first.
        prop_assert_eq!(p.to_vec()?, before);
        prop_assert!(close(&fp.to_vec()?, &pp.to_vec()?));
        prop_assert!(close(&fm.to_vec()?, &pm.to_vec()?));
        prop_assert!(close(&fv.to_vec()?, &pv.to_vec()?));
    }
}

/// A backend with primitives only (the trait's defaults for every fused op, and for the
/// per-row indexing and random draws) passes the conformance suite: the defaults are
/// complete compositions, with nothing of the CPU backend's kernels in them.
#[test]
fn a_primitives_only_backend_passes_the_conformance_suite() {
    let plain = Plain::default();
    let tol = flow_core::conformance::Tolerances::for_backend(&plain);
    let report = flow_core::conformance::run(&plain, tol).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.ops().len() > 20, "{report}");
}
