//! Non-finite gradients never reach the parameters: every optimizer refuses a step whose
//! gradients hold a NaN or an infinity, naming the parameter and changing nothing (the
//! parameters, the moments and the step count), so that the next good step is the one a run
//! that never saw the bad one takes; and the training loop skips and counts such a step, as
//! it does one whose batch or loss is not finite.

use flow_core::{
    Backend, Cpu, CustomOp, Element, Gradients, ParamId, ParamStore, Tape, Tensor, Var,
};
use flow_layers::{
    zero_log_det, AffineCouplingBlock, AffineCouplingConfig, BaseSpec, BuildContext, Flow,
    LayerKind, LayerSpec, NoConfig, NormalizingFlow, ScaleMap,
};
use flow_train::error::Error;
use flow_train::optim::{check_gradients, Adam, Optimizer, OptimizerState, Sgd};
use flow_train::source::{BatchSource, SourcePosition};
use flow_train::train::{train_on, Progress, TrainConfig};
use std::sync::Arc;

type B = Cpu<f64>;
const CPU: B = Cpu::new();
const BAD: [f64; 3] = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY];

// ---- the optimizers ----

const SHAPES: [(usize, usize); 3] = [(2, 3), (1, 4), (3, 1)];
const NAMES: [&str; 3] = ["flows.0.weight", "flows.0.bias", "q0.loc"];

fn store() -> (ParamStore<B>, Vec<ParamId>) {
    let mut params = ParamStore::new();
    let ids = SHAPES
        .iter()
        .zip(NAMES)
        .enumerate()
        .map(|(k, (&shape, name))| {
            let n = shape.0 * shape.1;
            let v = (0..n).map(|i| (i as f64 - 1.5) / (k + 2) as f64).collect();
            params
                .add(name, Tensor::from_vec(&CPU, shape, v).unwrap())
                .unwrap()
        })
        .collect();
    (params, ids)
}

/// Gradients of `sum_k sum(p_k * G_k)`, i.e. `G_k`, where `G_k` is drawn from `seed`.
fn gradients(
    params: &ParamStore<B>,
    ids: &[ParamId],
    seed: u64,
    bad: Option<(usize, usize, f64)>,
) -> Gradients<B> {
    let tape = Tape::new(&CPU);
    let mut loss: Option<Var<B>> = None;
    for (k, &id) in ids.iter().enumerate() {
        let p = tape.param(params, id).unwrap();
        let n = p.shape().rows * p.shape().cols;
        let mut g: Vec<f64> = (0..n)
            .map(|i| ((seed as usize * 31 + k * 7 + i * 13) % 17) as f64 / 8.0 - 1.0)
            .collect();
        if let Some((which, at, value)) = bad {
            if which == k {
                g[at] = value;
            }
        }
        let g = tape.constant(Tensor::from_vec(&CPU, p.shape(), g).unwrap());
        let term = p.mul(&g).unwrap().sum_all().unwrap();
        loss = Some(match loss {
            None => term,
            Some(l) => l.add(&term).unwrap(),
        });
    }
    tape.backward(&loss.unwrap()).unwrap()
}

fn good_step(opt: &mut dyn Optimizer<B>, params: &mut ParamStore<B>, ids: &[ParamId], seed: u64) {
    let grads = gradients(params, ids, seed, None);
    opt.step(params, &grads).unwrap();
}

fn bits(t: &Tensor<B>) -> Vec<u64> {
    t.to_vec().unwrap().iter().map(|v| v.to_bits()).collect()
}

fn param_bits(params: &ParamStore<B>) -> Vec<Vec<u64>> {
    params.iter().map(|(_, _, t)| bits(t)).collect()
}

fn state_bits(state: &OptimizerState<B>) -> (u64, Vec<(String, Vec<u64>)>) {
    (
        state.steps,
        state
            .buffers
            .iter()
            .map(|(k, t)| (k.clone(), bits(t)))
            .collect(),
    )
}

type MakeOptimizer = fn() -> Box<dyn Optimizer<B>>;

fn optimizers() -> Vec<(&'static str, MakeOptimizer)> {
    vec![
        ("Adam", || Box::new(Adam::new(1e-2, 0.0))),
        ("Adam, weight decay", || Box::new(Adam::new(1e-2, 0.1))),
        ("AdamW", || Box::new(Adam::adamw(1e-2, 0.1))),
        ("AdamW, no decay", || Box::new(Adam::adamw(1e-2, 0.0))),
        ("SGD", || Box::new(Sgd::new(0.1, 0.0, 0.0, false).unwrap())),
        ("SGD, weight decay", || {
            Box::new(Sgd::new(0.1, 0.0, 0.01, false).unwrap())
        }),
        ("SGD, momentum", || {
            Box::new(Sgd::new(0.1, 0.9, 0.0, false).unwrap())
        }),
        ("SGD, momentum and weight decay", || {
            Box::new(Sgd::new(0.1, 0.9, 0.01, false).unwrap())
        }),
        ("SGD, Nesterov", || {
            Box::new(Sgd::new(0.1, 0.9, 0.01, true).unwrap())
        }),
    ]
}

/// Two good steps, a refused one, a good one: the parameters and the state after each match
/// a run of the three good steps alone, bit for bit; the refused step changes nothing.
fn refused_step_changes_nothing(
    name: &str,
    make: MakeOptimizer,
    bad: (usize, usize, f64),
    bad_first: bool,
) {
    let (which, at, value) = bad;
    let (mut params, ids) = store();
    let mut opt = make();
    let (mut clean, clean_ids) = store();
    let mut reference = make();
    let good_steps = if bad_first { 0 } else { 2 };
    for seed in 0..good_steps {
        good_step(opt.as_mut(), &mut params, &ids, seed);
        good_step(reference.as_mut(), &mut clean, &clean_ids, seed);
    }
    let params_before = param_bits(&params);
    let state_before = state_bits(&opt.state(&params).unwrap());
    let grads = gradients(&params, &ids, 7, Some(bad));
    let err = opt.step(&mut params, &grads).unwrap_err();
    let (cols, what) = (
        SHAPES[which].1,
        format!("{name}, {value} in {}", NAMES[which]),
    );
    match &err {
        Error::NonFiniteGradient {
            param,
            row,
            col,
            value: v,
        } => {
            assert_eq!(param, NAMES[which], "{what}");
            assert_eq!((*row, *col), (at / cols, at % cols), "{what}");
            assert!(v.to_bits() == value.to_bits() || (v.is_nan() && value.is_nan()));
        }
        other => panic!("{what}: {other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(NAMES[which])
            && message.contains(&format!("row {}, column {}", at / cols, at % cols)),
        "{message}"
    );
    assert_eq!(param_bits(&params), params_before, "{what}: parameters");
    assert!(params
        .iter()
        .all(|(_, _, t)| t.to_vec().unwrap().iter().all(|v| v.is_finite())));
    assert_eq!(
        state_bits(&opt.state(&params).unwrap()),
        state_before,
        "{what}: optimizer state"
    );
    // The next good step is the one the clean run takes.
    good_step(opt.as_mut(), &mut params, &ids, 9);
    good_step(reference.as_mut(), &mut clean, &clean_ids, 9);
    assert_eq!(param_bits(&params), param_bits(&clean), "{what}: next step");
    assert_eq!(
        state_bits(&opt.state(&params).unwrap()),
        state_bits(&reference.state(&clean).unwrap()),
        "{what}: state after the next step"
    );
}

#[test]
fn every_optimizer_refuses_a_non_finite_gradient_and_changes_nothing() {
    for (name, make) in optimizers() {
        for value in BAD {
            for (which, &(r, c)) in SHAPES.iter().enumerate() {
                for at in [0, r * c - 1, (r * c) / 2] {
                    refused_step_changes_nothing(name, make, (which, at, value), false);
                }
            }
            // On the very first step (no state yet), in the last parameter.
            refused_step_changes_nothing(name, make, (2, 2, value), true);
        }
    }
}

#[test]
fn the_first_bad_parameter_in_the_store_is_named() {
    let (params, ids) = store();
    // NaN in the last parameter's gradient, an infinity in the second's: the second is named.
    let tape = Tape::new(&CPU);
    let mut loss: Option<Var<B>> = None;
    for (k, &id) in ids.iter().enumerate() {
        let p = tape.param(&params, id).unwrap();
        let n = p.shape().rows * p.shape().cols;
        let mut g = vec![0.5; n];
        match k {
            1 => g[3] = f64::INFINITY,
            2 => g[0] = f64::NAN,
            _ => {}
        }
        let g = tape.constant(Tensor::from_vec(&CPU, p.shape(), g).unwrap());
        let term = p.mul(&g).unwrap().sum_all().unwrap();
        loss = Some(match loss {
            None => term,
            Some(l) => l.add(&term).unwrap(),
        });
    }
    let grads = tape.backward(&loss.unwrap()).unwrap();
    match check_gradients(&params, &grads) {
        Err(Error::NonFiniteGradient {
            param, row, col, ..
        }) => {
            assert_eq!((param.as_str(), row, col), (NAMES[1], 0, 3))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn finite_gradients_whose_sum_overflows_pass() {
    let (mut params, ids) = store();
    let tape = Tape::new(&CPU);
    let p = tape.param(&params, ids[0]).unwrap();
    let g = tape.constant(Tensor::full(&CPU, SHAPES[0], f64::MAX).unwrap());
    let grads = tape
        .backward(&p.mul(&g).unwrap().sum_all().unwrap())
        .unwrap();
    drop((p, g, tape));
    check_gradients(&params, &grads).unwrap();
    // Adam normalises the step: finite.
    Adam::new(1e-3, 0.0).step(&mut params, &grads).unwrap();
}

// ---- the training loop ----

/// The identity on its input in value; the gradient of its parameter is NaN when a row of
/// the input holds a value between 50 and 1e100, else zero.
struct PoisonGradient;

fn poisoned<Bk: Backend>(x: &Tensor<Bk>) -> bool {
    x.to_f64s()
        .unwrap()
        .iter()
        .any(|v| v.abs() > 50.0 && v.abs() < 1e100)
}

impl<Bk: Backend> CustomOp<Bk> for PoisonGradient {
    fn name(&self) -> &str {
        "poison_gradient"
    }
    fn forward(&self, inputs: &[&Tensor<Bk>]) -> flow_core::Result<Tensor<Bk>> {
        Ok(inputs[0].clone())
    }
    fn backward(
        &self,
        inputs: &[&Var<Bk>],
        _output: &Var<Bk>,
        grad: &Var<Bk>,
    ) -> flow_core::Result<Vec<Option<Var<Bk>>>> {
        let value = inputs[0].value();
        let fill = if poisoned(&value) { f64::NAN } else { 0.0 };
        let a = Tensor::full(value.backend(), inputs[1].shape(), Element::of(fill))?;
        let ga = grad.tape().constant(a);
        Ok(vec![Some(grad.clone()), Some(ga)])
    }
}

/// A layer that is the identity, with a parameter whose gradient [`PoisonGradient`] gives.
#[derive(Debug)]
struct Poison {
    dim: usize,
    a: ParamId,
}

impl Poison {
    fn apply<Bk: Backend>(
        &self,
        p: &ParamStore<Bk>,
        v: &Var<Bk>,
    ) -> flow_layers::Result<(Var<Bk>, Var<Bk>)> {
        let a = v.tape().param(p, self.a)?;
        let y = Var::custom(Arc::new(PoisonGradient), &[v, &a])?;
        Ok((y, zero_log_det(v)?))
    }
}

impl<Bk: Backend> Flow<Bk> for Poison {
    fn dim(&self) -> usize {
        self.dim
    }
    fn forward(
        &self,
        p: &ParamStore<Bk>,
        z: &Var<Bk>,
        _: Option<&Var<Bk>>,
    ) -> flow_layers::Result<(Var<Bk>, Var<Bk>)> {
        self.apply(p, z)
    }
    fn inverse(
        &self,
        p: &ParamStore<Bk>,
        x: &Var<Bk>,
        _: Option<&Var<Bk>>,
    ) -> flow_layers::Result<(Var<Bk>, Var<Bk>)> {
        self.apply(p, x)
    }
    fn spec(&self) -> LayerSpec {
        LayerSpec::of::<Poison>(&NoConfig {})
    }
}

impl LayerKind for Poison {
    const NAME: &'static str = "poison";
    type Config = NoConfig;
    fn build<Bk: Backend>(
        _: &NoConfig,
        cx: &mut BuildContext<'_, Bk>,
    ) -> flow_layers::Result<Box<dyn Flow<Bk>>> {
        let a = cx
            .params
            .add(cx.name("a"), Tensor::zeros(cx.backend, (1, cx.dim))?)?;
        Ok(Box::new(Poison { dim: cx.dim, a }))
    }
}

fn model() -> NormalizingFlow<B> {
    let coupling = AffineCouplingConfig {
        hidden: vec![8],
        leaky: 0.0,
        scale_map: ScaleMap::Exp,
    };
    NormalizingFlow::builder(2)
        .base(BaseSpec::DiagGaussian)
        .layer::<AffineCouplingBlock>(coupling)
        // Last in the forward direction: the first the data meet.
        .layer::<Poison>(NoConfig {})
        .build(&CPU, 0)
        .unwrap()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Good,
    /// A NaN or an infinity in the batch: refused by the model.
    NonFiniteData(f64),
    /// A value so large that the loss is infinite.
    InfiniteLoss,
    /// A finite loss, a NaN gradient.
    NanGradient,
}

/// Batches of a fixed sequence: step `s` gets the `s`-th kind, good ones numbered apart.
struct Scripted {
    kinds: Vec<Kind>,
}

fn good_batch(k: usize, rows: usize) -> Vec<f64> {
    (0..rows * 2)
        .map(|i| (((k * 37 + i * 11) % 23) as f64 - 11.0) / 6.0)
        .collect()
}

impl BatchSource for Scripted {
    fn dim(&self) -> usize {
        2
    }
    fn batch(&mut self, step: usize, rows: usize) -> flow_train::Result<(Vec<f64>, f64)> {
        let good_before = self.kinds[..step]
            .iter()
            .filter(|k| **k == Kind::Good)
            .count();
        let mut x = good_batch(good_before, rows);
        match self.kinds[step] {
            Kind::Good => {}
            Kind::NonFiniteData(v) => x[3] = v,
            Kind::InfiniteLoss => x[2] = 1e200,
            Kind::NanGradient => x[1] = 80.0,
        }
        Ok((x, 0.0))
    }
    fn position(&self) -> SourcePosition {
        SourcePosition::default()
    }
    fn restore(&mut self, _: &SourcePosition) -> flow_train::Result<()> {
        Ok(())
    }
}

fn params_of(model: &NormalizingFlow<B>) -> Vec<Vec<u64>> {
    param_bits(model.params())
}

/// Trains on `kinds`; the report, and the parameters before every step and at the end.
fn run(
    kinds: &[Kind],
    config: &TrainConfig,
) -> (
    flow_train::Result<flow_train::train::TrainReport>,
    Vec<Vec<Vec<u64>>>,
) {
    let mut model = model();
    let mut seen = Vec::new();
    let mut observer = |p: &Progress<'_, B>| {
        seen.push(params_of(p.model));
        Ok(())
    };
    let source = Scripted {
        kinds: kinds.to_vec(),
    };
    let config = TrainConfig {
        iters: kinds.len(),
        ..config.clone()
    };
    let report = train_on(&mut model, source, &config, None, None, &mut observer);
    (report, seen)
}

#[test]
fn the_training_loop_skips_and_counts_bad_batches_losses_and_gradients() {
    use Kind::*;
    let kinds = [
        Good,
        Good,
        NonFiniteData(f64::NAN),
        Good,
        NanGradient,
        InfiniteLoss,
        Good,
        NonFiniteData(f64::NEG_INFINITY),
        NanGradient,
        Good,
        NonFiniteData(f64::INFINITY),
        Good,
    ];
    let good: Vec<Kind> = kinds.iter().copied().filter(|k| *k == Good).collect();
    for (clip, optimizer) in [
        (None, flow_train::optim::OptimizerKind::Adam),
        (Some(1.0), flow_train::optim::OptimizerKind::Adam),
        (
            None,
            flow_train::optim::OptimizerKind::Sgd {
                momentum: 0.9,
                nesterov: false,
            },
        ),
    ] {
        let config = TrainConfig {
            batch: 16,
            lr: 1e-2,
            clip_grad_norm: clip,
            optimizer,
            max_nonfinite_streak: 3,
            ..TrainConfig::default()
        };
        let (report, seen) = run(&kinds, &config);
        let report = report.unwrap();
        assert_eq!(report.skipped, 6);
        assert_eq!(report.losses.len(), kinds.len());
        for (i, kind) in kinds.iter().enumerate() {
            let loss = report.losses[i];
            match kind {
                Good | NanGradient => assert!(loss.is_finite(), "step {i}: {loss}"),
                NonFiniteData(_) => assert!(loss.is_nan(), "step {i}: {loss}"),
                InfiniteLoss => assert!(!loss.is_finite(), "step {i}: {loss}"),
            }
            // `seen[i]`: the parameters before step i; `seen[i + 1]`: after it.
            if *kind == Good {
                assert_ne!(seen[i], seen[i + 1], "step {i} updates");
            } else {
                assert_eq!(seen[i], seen[i + 1], "step {i} ({kind:?}) changes nothing");
            }
        }
        // The run is the one that saw only the good batches, bit for bit.
        let (clean, clean_seen) = run(&good, &config);
        assert_eq!(clean.unwrap().skipped, 0);
        assert_eq!(seen.last(), clean_seen.last(), "{clip:?} {optimizer:?}");
    }
}

#[test]
fn a_streak_of_non_finite_gradients_still_stops_the_run() {
    use Kind::*;
    let kinds = [Good, NanGradient, NanGradient, NanGradient, Good];
    let config = TrainConfig {
        batch: 8,
        max_nonfinite_streak: 3,
        ..TrainConfig::default()
    };
    match run(&kinds, &config).0 {
        Err(Error::Diverged { at, first, steps }) => assert_eq!((at, first, steps), (3, 1, 3)),
        other => panic!("{other:?}"),
    }
}

/// Keeps the generic helpers honest on another element type.
#[test]
fn check_gradients_on_f32() {
    fn check<Bk: Backend>(backend: &Bk) {
        let mut params = ParamStore::<Bk>::new();
        let id = params
            .add(
                "w",
                Tensor::from_f64s(backend, (1, 3), &[1.0, 2.0, 3.0]).unwrap(),
            )
            .unwrap();
        let tape = Tape::new(backend);
        let c = tape.constant(Tensor::from_f64s(backend, (1, 3), &[0.0, 1e30, 1e30]).unwrap());
        // 1e30 * 1e30 overflows f32: an infinite gradient of w.
        let loss = tape
            .param(&params, id)
            .unwrap()
            .mul(&c.mul(&c).unwrap())
            .unwrap();
        let grads = tape.backward(&loss.sum_all().unwrap()).unwrap();
        match check_gradients(&params, &grads) {
            Err(Error::NonFiniteGradient {
                param,
                row: 0,
                col: 1,
                ..
            }) => assert_eq!(param, "w"),
            other => panic!("{other:?}"),
        }
    }
    check(&Cpu::<f32>::new());
}
