//! The optimizers, schedules and gradient clipping against PyTorch's, in f64: the fixture
//! (`data/optim_fixture.json`, written by `data/make_optim_fixture.py` with torch 2.15)
//! records two parameters after each of six steps with fixed gradients, the learning rate of
//! each step of three schedules, and one clipping.

use flow_core::{Cpu, Gradients, ParamId, ParamStore, Tape, Tensor};
use flow_train::optim::{clip_grad_norm, Adam, Decay, LrSchedule, Optimizer, Sgd};
use serde_json::Value;

type B = Cpu<f64>;
const CPU: B = Cpu::new();

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/optim_fixture.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn store(f: &Value) -> (ParamStore<B>, Vec<ParamId>) {
    let mut params = ParamStore::new();
    let ids = f["params"]
        .as_array()
        .unwrap()
        .iter()
        .zip(f["shapes"].as_array().unwrap())
        .enumerate()
        .map(|(k, (values, shape))| {
            let shape: Vec<usize> = floats(shape).iter().map(|&x| x as usize).collect();
            let t = Tensor::from_vec(&CPU, (shape[0], shape[1]), floats(values)).unwrap();
            params.add(format!("p{k}"), t).unwrap()
        })
        .collect();
    (params, ids)
}

/// Gradients equal to `step`'s: those of `sum(p_k * G_k)`.
fn gradients(params: &ParamStore<B>, ids: &[ParamId], step: &Value) -> Gradients<B> {
    let tape = Tape::new(&CPU);
    let mut loss = None;
    for (&id, g) in ids.iter().zip(step.as_array().unwrap()) {
        let p = tape.param(params, id).unwrap();
        let g = tape.constant(Tensor::from_vec(&CPU, p.shape(), floats(g)).unwrap());
        let term = p.mul(&g).unwrap().sum_all().unwrap();
        loss = Some(match loss {
            None => term,
            Some(l) => term.add(&l).unwrap(),
        });
    }
    tape.backward(&loss.unwrap()).unwrap()
}

fn assert_close(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= 1e-12 * w.abs().max(1.0),
            "{what}: {g} vs PyTorch's {w}"
        );
    }
}

fn check(name: &str, mut opt: impl Optimizer<B>) {
    let f = fixture();
    let (mut params, ids) = store(&f);
    let steps = f["grads"].as_array().unwrap();
    let expected = f["optimizers"][name].as_array().unwrap();
    for (k, (step, want)) in steps.iter().zip(expected).enumerate() {
        let grads = gradients(&params, &ids, step);
        opt.step(&mut params, &grads).unwrap();
        for (j, (&id, w)) in ids.iter().zip(want.as_array().unwrap()).enumerate() {
            let got = params.get(id).unwrap().to_vec().unwrap();
            assert_close(
                &got,
                &floats(w),
                &format!("{name}, step {k}, parameter {j}"),
            );
        }
    }
}

#[test]
fn adam_matches_torch() {
    check("adam", Adam::new(1e-2, 1e-2));
}

#[test]
fn adamw_matches_torch() {
    check("adamw", Adam::adamw(1e-2, 1e-1));
}

#[test]
fn sgd_matches_torch() {
    check("sgd", Sgd::new(0.1, 0.0, 0.0, false).unwrap());
    check("sgd_momentum", Sgd::new(0.1, 0.9, 1e-2, false).unwrap());
    check("sgd_nesterov", Sgd::new(0.1, 0.9, 0.0, true).unwrap());
    assert!(Sgd::<B>::new(0.1, 0.0, 0.0, true).is_err());
}

#[test]
fn schedules_match_torch() {
    let f = fixture();
    let cases = [
        (
            "cosine",
            LrSchedule {
                decay: Decay::Cosine {
                    steps: 10,
                    min_lr: 1e-3,
                },
                ..LrSchedule::default()
            },
        ),
        (
            "warmup",
            LrSchedule {
                warmup_steps: 4,
                warmup_start_factor: 0.1,
                decay: Decay::Constant,
            },
        ),
        (
            "warmup_cosine",
            LrSchedule {
                warmup_steps: 4,
                warmup_start_factor: 0.1,
                decay: Decay::Cosine {
                    steps: 8,
                    min_lr: 1e-3,
                },
            },
        ),
    ];
    for (name, schedule) in cases {
        let got: Vec<f64> = (0..12).map(|t| schedule.lr(0.1, t)).collect();
        assert_close(&got, &floats(&f["schedules"][name]), name);
    }
    assert_eq!(LrSchedule::default().lr(0.3, 1000), 0.3);
}

#[test]
fn clipping_matches_torch() {
    let f = fixture();
    let (params, ids) = store(&f);
    let mut grads = gradients(&params, &ids, &f["grads"][0]);
    let norm = clip_grad_norm(&mut grads, 0.5).unwrap();
    assert_close(
        &[norm],
        &[f["clip"]["total_norm"].as_f64().unwrap()],
        "norm",
    );
    for (&id, want) in ids.iter().zip(f["clip"]["clipped"].as_array().unwrap()) {
        assert_close(
            &grads.param(id).unwrap().to_vec().unwrap(),
            &floats(want),
            "clipped",
        );
    }
    // Below the bound nothing changes; a non-positive bound is an error.
    let mut grads = gradients(&params, &ids, &f["grads"][0]);
    let before = grads.param(ids[0]).unwrap().to_vec().unwrap();
    clip_grad_norm(&mut grads, 100.0).unwrap();
    assert_eq!(grads.param(ids[0]).unwrap().to_vec().unwrap(), before);
    assert!(clip_grad_norm(&mut grads, 0.0).is_err());
}

#[test]
fn clipping_sums_in_the_parameters_order_every_time() {
    // Twenty parameters whose squared norms round differently in different orders: the
    // total is the same, bit for bit, from one set of gradients to the next.
    let mut params = ParamStore::<B>::new();
    let ids: Vec<ParamId> = (0..20)
        .map(|k| {
            let v = vec![(k as f64 + 0.1).powf(1.7) * 1e-3, 1.0 / (k as f64 + 3.0)];
            params
                .add(format!("p{k}"), Tensor::from_vec(&CPU, (1, 2), v).unwrap())
                .unwrap()
        })
        .collect();
    let norms: Vec<u64> = (0..16)
        .map(|_| {
            let tape = Tape::new(&CPU);
            let mut loss = None;
            for &id in &ids {
                let p = tape.param(&params, id).unwrap();
                let term = p
                    .square()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .mul_scalar(0.5)
                    .unwrap();
                loss = Some(match loss {
                    None => term,
                    Some(l) => term.add(&l).unwrap(),
                });
            }
            let mut grads = tape.backward(&loss.unwrap()).unwrap();
            clip_grad_norm(&mut grads, 1e9).unwrap().to_bits()
        })
        .collect();
    assert!(norms.iter().all(|&n| n == norms[0]), "{norms:?}");
}
