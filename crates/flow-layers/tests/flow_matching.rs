//! Flow matching: the regression batch (straight paths, path noise), optimal-transport
//! pairing against brute force, the loss against the model's field written out, and the
//! vector field's refusal of models that are not continuous.

use flow_core::{rng, Cpu, Tape, Tensor};
use flow_layers::cnf::FieldActivation;
use flow_layers::flow_matching::pair_by_transport;
use flow_layers::ode::Solver;
use flow_layers::{
    CnfConfig, CnfLayerConfig, FlowMatching, NormalizingFlow, Pairing, RealNvpConfig,
};
use proptest::prelude::*;

fn normals(n: usize, seed: u64) -> Vec<f64> {
    flow_core::random::standard_normals(n, &mut rng(seed))
}

fn squared_cost(x0: &[f64], x1: &[f64], dim: usize) -> f64 {
    x0.iter()
        .zip(x1)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        / dim as f64
}

fn rows_of(x: &[f64], dim: usize) -> Vec<Vec<u64>> {
    let mut rows: Vec<Vec<u64>> = x
        .chunks(dim)
        .map(|r| r.iter().map(|v| v.to_bits()).collect())
        .collect();
    rows.sort();
    rows
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for k in 0..n {
            let mut q = p.clone();
            q.insert(k, n - 1);
            out.push(q);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// The paired base draws are a reordering of the given ones, and no pairing costs less:
    /// against every permutation for small batches.
    #[test]
    fn transport_pairs_are_an_optimal_permutation(rows in 1usize..=6, dim in 1usize..=3, seed in any::<u64>()) {
        let (x0, x1) = (normals(rows * dim, seed), normals(rows * dim, seed ^ 1));
        let paired = pair_by_transport(&x0, &x1, dim).unwrap();
        prop_assert_eq!(rows_of(&paired, dim), rows_of(&x0, dim));
        let best = permutations(rows)
            .iter()
            .map(|p| {
                let reordered: Vec<f64> = p.iter().flat_map(|&i| x0[i * dim..(i + 1) * dim].to_vec()).collect();
                squared_cost(&reordered, &x1, dim)
            })
            .fold(f64::INFINITY, f64::min);
        prop_assert!((squared_cost(&paired, &x1, dim) - best).abs() <= 1e-12 * (1.0 + best));
    }

    /// Straight paths: x_t = t x1 + (1 - t) x0 and u_t = x1 - x0, t in [0, 1).
    #[test]
    fn batches_lie_on_straight_paths(rows in 1usize..=40, dim in 1usize..=4, seed in any::<u64>()) {
        let (x0, x1) = (normals(rows * dim, seed), normals(rows * dim, seed ^ 1));
        let matcher = FlowMatching { pairing: Pairing::Independent, sigma: 0.0 };
        let b = matcher.batch(&x0, &x1, dim, &mut rng(seed ^ 2)).unwrap();
        prop_assert_eq!(b.times.len(), rows);
        for r in 0..rows {
            let t = b.times[r];
            prop_assert!((0.0..1.0).contains(&t));
            for c in 0..dim {
                let k = r * dim + c;
                prop_assert!((b.xt[k] - (t * x1[k] + (1.0 - t) * x0[k])).abs() < 1e-14);
                prop_assert_eq!(b.target[k], x1[k] - x0[k]);
            }
        }
    }
}

/// A translated copy of the base draws, shuffled: the transport plan undoes the shuffle
/// (the translation is far smaller than the spacing of the points).
#[test]
fn transport_pairing_recovers_a_shuffled_translation() {
    let (rows, dim) = (256, 2);
    let x0 = normals(rows * dim, 7);
    let shuffle: Vec<usize> = (0..rows).map(|i| (i * 97 + 13) % rows).collect();
    let x1: Vec<f64> = shuffle
        .iter()
        .flat_map(|&i| x0[i * dim..(i + 1) * dim].iter().map(|v| v + 1e-6))
        .collect();
    let paired = pair_by_transport(&x0, &x1, dim).unwrap();
    for (a, b) in paired.iter().zip(&x1) {
        assert!((b - a - 1e-6).abs() < 1e-12);
    }
    // Independent pairs cost far more than the plan's.
    assert!(squared_cost(&x0, &x1, dim) > 1e6 * squared_cost(&paired, &x1, dim));
}

/// x_t - (t x1 + (1 - t) x0) is sigma times standard normal noise.
#[test]
fn path_noise_has_the_stated_spread() {
    let (rows, dim, sigma) = (20_000, 2, 0.3);
    let zeros = vec![0.0; rows * dim];
    let matcher = FlowMatching {
        pairing: Pairing::Independent,
        sigma,
    };
    let b = matcher.batch(&zeros, &zeros, dim, &mut rng(3)).unwrap();
    let n = b.xt.len() as f64;
    let mean = b.xt.iter().sum::<f64>() / n;
    let var = b.xt.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    assert!(mean.abs() < 5.0 * sigma / n.sqrt(), "mean {mean}");
    // The variance's standard error is sigma^2 sqrt(2 / n).
    assert!(
        (var - sigma * sigma).abs() < 5.0 * sigma * sigma * (2.0 / n).sqrt(),
        "variance {var}"
    );
}

#[test]
fn bad_matchers_and_batches_are_refused() {
    let x = vec![0.0; 6];
    for sigma in [-0.1, f64::NAN, f64::INFINITY] {
        let m = FlowMatching {
            pairing: Pairing::Independent,
            sigma,
        };
        let e = m.batch(&x, &x, 2, &mut rng(0)).unwrap_err().to_string();
        assert!(e.contains("sigma"), "{e}");
    }
    let m = FlowMatching::default();
    assert!(m.batch(&x, &x[..4], 2, &mut rng(0)).is_err());
    assert!(m.batch(&x, &x, 4, &mut rng(0)).is_err());
}

fn field_model(cpu: &Cpu<f64>) -> NormalizingFlow<Cpu<f64>> {
    let layer = CnfLayerConfig {
        hidden: vec![16, 16],
        activation: FieldActivation::Selu,
        solver: Solver::Rk4 { steps: 10 },
        ..Default::default()
    };
    let spec = CnfConfig {
        dim: 2,
        transforms: 1,
        layer,
    }
    .spec()
    .unwrap();
    NormalizingFlow::new_random(cpu, spec, 5).unwrap()
}

/// The loss is the mean over rows and features of (v(x_t, t) - u_t)^2, with the base draws
/// taken from the model's base first and the batch's draws after, from one stream.
#[test]
fn the_loss_is_the_field_regression_error() {
    let cpu = Cpu::<f64>::new();
    let model = field_model(&cpu);
    let rows = 50;
    let x1 = Tensor::randn(&cpu, (rows, 2), &mut rng(1)).unwrap();
    for pairing in [Pairing::Independent, Pairing::OptimalTransport] {
        let matcher = FlowMatching {
            pairing,
            sigma: 0.1,
        };
        let tape = Tape::new(&cpu);
        let loss = matcher
            .loss(&model, &tape.constant(x1.clone()), None, &mut rng(9))
            .unwrap();

        let mut r = rng(9);
        let (x0, _) = model
            .base()
            .sample(model.params(), &tape, rows, &mut r)
            .unwrap();
        let b = matcher
            .batch(
                &x0.value().to_f64s().unwrap(),
                &x1.to_f64s().unwrap(),
                2,
                &mut r,
            )
            .unwrap();
        let xt = tape.constant(Tensor::from_f64s(&cpu, (rows, 2), &b.xt).unwrap());
        let v = model
            .velocity(&xt, &b.times, None)
            .unwrap()
            .value()
            .to_f64s()
            .unwrap();
        let want = v
            .iter()
            .zip(&b.target)
            .map(|(v, u)| (v - u).powi(2))
            .sum::<f64>()
            / (2 * rows) as f64;
        let got = loss.scalar_value().unwrap();
        assert!(
            (got - want).abs() < 1e-13 * want,
            "{pairing:?}: {got} vs {want}"
        );
        // The gradient reaches every weight of the field.
        let grads = tape.backward(&loss).unwrap();
        for id in model.params().trainable_ids() {
            assert!(
                grads.param(id).is_some(),
                "{}",
                model.params().name(id).unwrap()
            );
        }
    }
}

/// Only a model of one continuous layer has a vector field.
#[test]
fn discrete_models_have_no_vector_field() {
    let cpu = Cpu::<f64>::new();
    let spec = RealNvpConfig {
        dim: 2,
        transforms: 2,
        hidden: vec![8],
        ..Default::default()
    }
    .spec()
    .unwrap();
    let model = NormalizingFlow::new(&cpu, spec, 0).unwrap();
    let tape = Tape::new(&cpu);
    let x = tape.constant(Tensor::zeros(&cpu, (3, 2)).unwrap());
    let e = model.velocity(&x, &[0.5], None).unwrap_err().to_string();
    assert!(e.contains("continuous"), "{e}");
    let e = FlowMatching::default()
        .loss(&model, &x, None, &mut rng(0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("continuous"), "{e}");
    // A field at the wrong number of times.
    let field = field_model(&cpu);
    let e = field
        .velocity(&x, &[0.1, 0.2], None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("1 time or 3"), "{e}");
}
