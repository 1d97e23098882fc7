//! Parameter gradients against central differences (`flow_core::gradcheck` through
//! `flow_layers::testing::check_layer_params`): every built-in layer kind, forward and
//! inverse with their log-dets, at random initialisations; the bases with parameters; a
//! layer with a deliberately wrong backward, which the parameter check catches and names
//! while the input check passes; and f32 with its own tolerances.

use flow_core::gradcheck::{GradCheck, GradCheckError};
use flow_core::{
    rng, standard_normals, Axis, Backend, Cpu, CustomOp, ParamId, ParamStore, Tape, Tensor, Var,
};
use flow_layers::testing::{
    build_layer, cases, check_flow, check_layer_kind_params, check_layer_params, Case, CheckError,
    Tolerances,
};
use flow_layers::{
    ActNorm, AffineCouplingBlock, AffineCouplingConfig, AutoregressiveConfig, Base, BaseSpec,
    BuildContext, DiagGaussian, Flow, Init, InvertibleLinearLu, InvertibleLinearLuConfig,
    LayerKind, LayerSpec, MaskedAffineAutoregressive, MaskedSplineAutoregressive, NoConfig,
    Ordering, Permute, PermuteConfig, PermuteMode, Planar, PlanarActivation, PlanarLayerConfig,
    Radial, ScaleMap, SplineAutoregressiveConfig, SplineConfig, SplineCoupling,
    SplineCouplingConfig,
};
use proptest::prelude::*;
use std::sync::Arc;

type B = Cpu<f64>;
const CPU: B = Cpu::new();

/// Checks a layer of kind `K` for `case`, every parameter entry compared in both directions.
fn check_kind<K: LayerKind>(config: &K::Config, case: &Case) -> Result<(), TestCaseError> {
    let report = check_layer_kind_params::<K>(config, case, &GradCheck::default())?;
    let (_, params) = build_layer(case, |cx| K::build(config, cx))?;
    prop_assert_eq!(report.checked, 2 * params.num_scalars());
    Ok(())
}

fn spline(bins: usize) -> SplineConfig {
    SplineConfig {
        bins,
        tail_bound: 3.0,
        ..SplineConfig::default()
    }
}

fn made(case: &Case, iaf: bool) -> AutoregressiveConfig {
    AutoregressiveConfig {
        hidden: vec![6],
        degrees: Ordering::Random.degrees(case.dim, &mut rng(case.seed ^ 1)),
        leaky: 0.1,
        iaf,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn affine_coupling(case in cases(2..=4, 1..=3, 0..=2), sigmoid in any::<bool>()) {
        let scale_map = if sigmoid { ScaleMap::Sigmoid } else { ScaleMap::Exp };
        let config = AffineCouplingConfig { hidden: vec![6], leaky: 0.1, scale_map };
        check_kind::<AffineCouplingBlock>(&config, &case)?;
    }

    #[test]
    fn spline_coupling(case in cases(2..=3, 1..=3, 0..=1), bins in 1usize..=4) {
        let config = SplineCouplingConfig { hidden: vec![6], leaky: 0.1, spline: spline(bins) };
        check_kind::<SplineCoupling>(&config, &case)?;
    }

    #[test]
    fn masked_affine_autoregressive(case in cases(1..=3, 1..=3, 0..=1), iaf in any::<bool>()) {
        check_kind::<MaskedAffineAutoregressive>(&made(&case, iaf), &case)?;
    }

    #[test]
    fn masked_spline_autoregressive(case in cases(1..=3, 1..=2, 0..=1), iaf in any::<bool>(), bins in 1usize..=3) {
        let config = SplineAutoregressiveConfig { made: made(&case, iaf), spline: spline(bins) };
        check_kind::<MaskedSplineAutoregressive>(&config, &case)?;
    }

    #[test]
    fn permute(case in cases(1..=4, 1..=3, 0..=0), mode in prop::sample::select(vec![PermuteMode::Swap, PermuteMode::Reverse, PermuteMode::Shuffle])) {
        let perm: Vec<usize> = (0..case.dim).rev().collect();
        let config = PermuteConfig { mode, perm };
        // No parameters: nothing to compare, and nothing fails.
        check_kind::<Permute>(&config, &case)?;
        // Its input gradients, forward and inverse, instead.
        let (layer, params) = build_layer(&case, |cx| Permute::build(&config, cx))?;
        check_inputs(layer.as_ref(), &params, &case.z)?;
    }

    #[test]
    fn act_norm(case in cases(1..=4, 1..=3, 0..=0)) {
        check_kind::<ActNorm>(&NoConfig {}, &case)?;
    }

    #[test]
    fn invertible_linear_lu(case in cases(1..=4, 1..=3, 0..=0)) {
        let d = case.dim;
        let perm: Vec<usize> = (0..d).map(|i| (i + case.seed as usize) % d).collect();
        let sign: Vec<f64> = (0..d).map(|i| if (case.seed >> i) & 1 == 1 { -1.0 } else { 1.0 }).collect();
        check_kind::<InvertibleLinearLu>(&InvertibleLinearLuConfig { perm, sign }, &case)?;
    }

    #[test]
    fn planar(case in cases(1..=3, 1..=3, 0..=0), tanh in any::<bool>()) {
        let activation = if tanh { PlanarActivation::Tanh } else { PlanarActivation::LeakyRelu };
        check_kind::<Planar>(&PlanarLayerConfig { activation }, &case)?;
    }

    #[test]
    fn radial(case in cases(1..=3, 1..=3, 0..=0)) {
        check_kind::<Radial>(&NoConfig {}, &case)?;
    }
}

/// The input gradients of `layer` (forward at `z`, inverse at its image), for layers
/// without parameters.
fn check_inputs(
    layer: &dyn Flow<B>,
    params: &ParamStore<B>,
    z: &Tensor<B>,
) -> Result<(), TestCaseError> {
    let x = {
        let tape = Tape::new(&CPU);
        layer
            .forward(params, &tape.constant(z.clone()), None)?
            .0
            .value()
    };
    for (forward, at) in [(true, z), (false, &x)] {
        GradCheck::default().check(&CPU, std::slice::from_ref(at), |v| {
            let (y, log_det) = if forward {
                layer.forward(params, &v[0], None)?
            } else {
                layer.inverse(params, &v[0], None)?
            };
            Ok::<_, flow_layers::Error>(Var::concat_cols(&[&y, &log_det])?)
        })?;
    }
    Ok(())
}

/// `n x d` values in `[-2, 2]` from `seed`.
fn points(n: usize, d: usize, seed: u64) -> Tensor<B> {
    Tensor::rand_uniform(&CPU, (n, d), -2.0, 2.0, &mut rng(seed)).unwrap()
}

/// Every parameter of `params` set to random values (`N(0, 0.5^2)`; scores `N(0, 1)`).
fn randomise(params: &mut ParamStore<B>, seed: u64) {
    let mut r = rng(seed);
    let ids: Vec<ParamId> = params.ids().collect();
    for id in ids {
        let shape = params.get(id).unwrap().shape();
        let v = Tensor::randn(&CPU, shape, &mut r)
            .unwrap()
            .to_f64s()
            .unwrap();
        let v: Vec<f64> = v.iter().map(|x| 0.5 * x).collect();
        params
            .set(id, Tensor::from_f64s(&CPU, shape, &v).unwrap())
            .unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// log q(z) and reparametrised draws `(z, log q)` of a DiagGaussian and of a trainable
    /// GaussianMixture at random parameters, in every parameter, first and second order
    /// (the draws first order), and log q in the point.
    #[test]
    fn bases_with_parameters(d in 1usize..=3, n in 1usize..=4, k in 1usize..=3, seed in any::<u64>(), mixture in any::<bool>()) {
        let mut params = ParamStore::new();
        let spec = if mixture {
            BaseSpec::GaussianMixture { components: k, trainable: true }
        } else {
            BaseSpec::DiagGaussian
        };
        let base = Base::from_spec(&mut params, &CPU, d, &spec, seed)?;
        randomise(&mut params, seed);
        let ids: Vec<ParamId> = params.ids().collect();
        let z = points(n, d, seed ^ 7);
        let log_prob = |tape: &Tape<B>, params: &ParamStore<B>| base.log_prob(params, &tape.constant(z.clone()));
        let report = GradCheck::default().check_params(&CPU, &mut params, &ids, log_prob)?;
        prop_assert_eq!(report.checked, params.num_scalars());
        let second = GradCheck { eps: 1e-5, rtol: 1e-4, atol: 1e-6, ..GradCheck::default() };
        second.check_second_order_params(&CPU, &mut params, &ids, log_prob)?;
        let sample = |tape: &Tape<B>, params: &ParamStore<B>| {
            let (z, log_q) = base.sample(params, tape, n, &mut rng(seed ^ 3))?;
            Ok::<_, flow_layers::Error>(Var::concat_cols(&[&z, &log_q])?)
        };
        GradCheck::default().check_params(&CPU, &mut params, &ids, sample)?;
        let p = &params;
        GradCheck::default().check(&CPU, std::slice::from_ref(&z), |v| base.log_prob(p, &v[0]))?;
    }
}

#[test]
fn diag_gaussian_alone() {
    let mut params = ParamStore::new();
    let base = DiagGaussian::new(&mut params, &CPU, 3).unwrap();
    randomise(&mut params, 11);
    let ids: Vec<ParamId> = params.ids().collect();
    let z = points(5, 3, 12);
    let report = GradCheck::default()
        .check_params(&CPU, &mut params, &ids, |tape, params| {
            base.log_prob(params, &tape.constant(z.clone()))
        })
        .unwrap();
    assert_eq!(report.checked, 6);
}

/// `x = z * exp(s) + t` (`s`, `t`: `1 x d`) with a hand-written backward whose gradient for
/// `s` is multiplied by `factor` in column `col` (1: correct). The log-det `sum(s)` and the
/// inverse are built from tape operations.
struct ScaleShiftOp {
    factor: f64,
    col: usize,
}

impl<B2: Backend> CustomOp<B2> for ScaleShiftOp {
    fn name(&self) -> &str {
        "scale_shift"
    }

    fn forward(&self, inputs: &[&Tensor<B2>]) -> flow_core::Result<Tensor<B2>> {
        let tape = Tape::new(inputs[0].backend());
        let [z, s, t] = [0, 1, 2].map(|i| tape.constant(inputs[i].clone()));
        Ok(z.mul(&s.exp()?)?.add(&t)?.value())
    }

    fn backward(
        &self,
        inputs: &[&Var<B2>],
        _output: &Var<B2>,
        grad: &Var<B2>,
    ) -> flow_core::Result<Vec<Option<Var<B2>>>> {
        let (z, s) = (inputs[0], inputs[1]);
        let e = s.exp()?;
        let d = s.shape().cols;
        let mask: Vec<f64> = (0..d)
            .map(|c| if c == self.col { self.factor } else { 1.0 })
            .collect();
        let mask = s
            .tape()
            .constant(Tensor::from_f64s(s.tape().backend(), (1, d), &mask)?);
        Ok(vec![
            Some(grad.mul(&e)?),
            Some(grad.mul(z)?.mul(&e)?.sum(Axis::Rows)?.mul(&mask)?),
            Some(grad.sum(Axis::Rows)?),
        ])
    }
}

/// A test-only layer over [`ScaleShiftOp`], parameters `{prefix}.log_scale` and
/// `{prefix}.shift`.
#[derive(Debug)]
struct ScaleShift {
    dim: usize,
    log_scale: ParamId,
    shift: ParamId,
    factor: f64,
    col: usize,
}

impl ScaleShift {
    fn new<B2: Backend>(
        params: &mut ParamStore<B2>,
        backend: &B2,
        dim: usize,
        factor: f64,
        col: usize,
    ) -> Self {
        let mut r = rng(5);
        let mut add = |name: &str| {
            let v: Vec<f64> = standard_normals(dim, &mut r)
                .iter()
                .map(|x| 0.5 * x)
                .collect();
            let value = Tensor::from_f64s(backend, (1, dim), &v).unwrap();
            params.add(name, value).unwrap()
        };
        let log_scale = add("toy.log_scale");
        let shift = add("toy.shift");
        ScaleShift {
            dim,
            log_scale,
            shift,
            factor,
            col,
        }
    }

    /// `rows x 1` copies of `sign * sum(s)`.
    fn log_det<B2: Backend>(v: &Var<B2>, s: &Var<B2>, sign: f64) -> flow_layers::Result<Var<B2>> {
        let zeros = v
            .tape()
            .constant(Tensor::zeros(v.tape().backend(), (v.shape().rows, 1))?);
        Ok(zeros.add(&s.sum_all()?.mul_scalar(sign)?)?)
    }
}

impl<B2: Backend> Flow<B2> for ScaleShift {
    fn dim(&self) -> usize {
        self.dim
    }

    fn forward(
        &self,
        params: &ParamStore<B2>,
        z: &Var<B2>,
        _: Option<&Var<B2>>,
    ) -> flow_layers::Result<(Var<B2>, Var<B2>)> {
        let tape = z.tape();
        let (s, t) = (
            tape.param(params, self.log_scale)?,
            tape.param(params, self.shift)?,
        );
        let op = Arc::new(ScaleShiftOp {
            factor: self.factor,
            col: self.col,
        });
        let x = Var::custom(op, &[z, &s, &t])?;
        Ok((x, Self::log_det(z, &s, 1.0)?))
    }

    fn inverse(
        &self,
        params: &ParamStore<B2>,
        x: &Var<B2>,
        _: Option<&Var<B2>>,
    ) -> flow_layers::Result<(Var<B2>, Var<B2>)> {
        let tape = x.tape();
        let (s, t) = (
            tape.param(params, self.log_scale)?,
            tape.param(params, self.shift)?,
        );
        let z = x.sub(&t)?.mul(&s.neg()?.exp()?)?;
        Ok((z, Self::log_det(x, &s, -1.0)?))
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::of::<ScaleShift>(&NoConfig {})
    }
}

impl LayerKind for ScaleShift {
    const NAME: &'static str = "test_scale_shift";
    type Config = NoConfig;

    fn build<B2: Backend>(
        _: &NoConfig,
        cx: &mut BuildContext<'_, B2>,
    ) -> flow_layers::Result<Box<dyn Flow<B2>>> {
        Ok(Box::new(ScaleShift::new(
            cx.params, cx.backend, cx.dim, 1.0, 0,
        )))
    }
}

#[test]
fn a_wrong_parameter_backward_fails_the_parameter_check_and_names_its_entry() {
    let z = points(4, 3, 21);
    for col in 0..3 {
        let mut params = ParamStore::new();
        let layer = ScaleShift::new(&mut params, &CPU, 3, 1.01, col);
        // The layer's input gradients are right: check_flow's Jacobians and an input
        // gradient check pass.
        check_flow(&layer, &params, &z, None, &Tolerances::default()).unwrap();
        let p = &params;
        GradCheck::default()
            .check(&CPU, std::slice::from_ref(&z), |v| {
                let (x, log_det) = layer.forward(p, &v[0], None)?;
                Ok::<_, flow_layers::Error>(Var::concat_cols(&[&x, &log_det])?)
            })
            .unwrap();
        // Its parameter gradient is not, by 1% in one entry.
        let err =
            check_layer_params(&layer, &mut params, &z, None, &GradCheck::default()).unwrap_err();
        match &err {
            CheckError::Gradient {
                direction: "forward",
                source:
                    GradCheckError::ParamMismatch {
                        name,
                        row: 0,
                        col: c,
                        ..
                    },
            } => {
                assert_eq!(name, "toy.log_scale");
                assert_eq!(*c, col);
            }
            other => panic!("expected the forward pass's log_scale to fail, got {other}"),
        }
        assert!(
            err.to_string().contains(&format!(
                "forward: first-order gradient of parameter `toy.log_scale` at row 0, column {col}"
            )),
            "{err}"
        );
        // Right, it passes.
        let mut params = ParamStore::new();
        let layer = ScaleShift::new(&mut params, &CPU, 3, 1.0, col);
        let report =
            check_layer_params(&layer, &mut params, &z, None, &GradCheck::default()).unwrap();
        assert_eq!(report.checked, 2 * 6);
    }
}

/// A smooth layer in f32 passes with f32's defaults; a 1% error in one entry still fails.
#[test]
fn f32_layers_with_f32_tolerances() {
    let cpu = Cpu::<f32>::new();
    let checker = GradCheck::<f32>::default();
    let z = Tensor::from_f64s(&cpu, (4, 3), &points(4, 3, 31).to_f64s().unwrap()).unwrap();
    for col in 0..3 {
        let mut params = ParamStore::new();
        let layer = ScaleShift::new(&mut params, &cpu, 3, 1.0, col);
        check_layer_params(&layer, &mut params, &z, None, &checker).unwrap();
        let mut params = ParamStore::new();
        let layer = ScaleShift::new(&mut params, &cpu, 3, 1.01, col);
        let err = check_layer_params(&layer, &mut params, &z, None, &checker).unwrap_err();
        assert!(
            matches!(&err, CheckError::Gradient { source: GradCheckError::ParamMismatch { name, col: c, .. }, .. } if name == "toy.log_scale" && *c == col),
            "{err}"
        );
    }
    // Built-in smooth layers at random initialisations, in f32.
    for seed in 0..8u64 {
        let mut params = ParamStore::new();
        let mut r = rng(seed);
        let mut cx =
            BuildContext::new(&cpu, &mut params, "flows.0", 3, &mut r).with_init(Init::Random);
        let layers: Vec<Box<dyn Flow<Cpu<f32>>>> = vec![
            Radial::build(&NoConfig {}, &mut cx).unwrap(),
            Planar::build(
                &PlanarLayerConfig {
                    activation: PlanarActivation::Tanh,
                },
                &mut cx,
            )
            .unwrap(),
            ActNorm::build(&NoConfig {}, &mut cx).unwrap(),
            InvertibleLinearLu::build(
                &InvertibleLinearLuConfig {
                    perm: vec![2, 0, 1],
                    sign: vec![1.0, -1.0, 1.0],
                },
                &mut cx,
            )
            .unwrap(),
        ];
        for layer in &layers {
            let report = check_layer_params(layer.as_ref(), &mut params, &z, None, &checker)
                .unwrap_or_else(|e| panic!("seed {seed}, {:?}: {e}", layer.spec()));
            assert_eq!(report.checked, 2 * params.num_scalars());
        }
    }
}
