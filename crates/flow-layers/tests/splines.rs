//! Rational-quadratic splines and the neural spline flows built on them: the spline against
//! its defining properties (knots interpolated, knot derivatives, monotonic, identity tails
//! with matching slopes), gradient checks against finite differences, edge cases at and
//! beyond the tail bound and with extreme parameters, and the layer properties (round trip,
//! log-dets against Jacobians) for coupling and autoregressive layers, with and without
//! context.

mod common;

use common::*;
use flow_core::gradcheck::GradCheck;
use flow_core::{Direction, ParamStore, Tape, Tensor, Var};
use flow_layers::spline::rational_quadratic;
use flow_layers::{
    FlowSpec, MaskedAutoregressive, NormalizingFlow, NsfConfig, Ordering, SplineConfig,
    SplineCoupling, Transformer,
};
use proptest::prelude::*;

fn config(bins: usize, tail_bound: f64) -> SplineConfig {
    SplineConfig {
        bins,
        tail_bound,
        ..SplineConfig::default()
    }
}

/// The spline of a `rows x 1` column with one parameter row per entry, as plain numbers.
fn spline_values(
    x: &[f64],
    params: &[f64],
    config: &SplineConfig,
    direction: Direction,
) -> (Vec<f64>, Vec<f64>) {
    let tape = Tape::new(&CPU);
    let p = config.params_per_feature();
    let xv = tape.constant(Tensor::from_vec(&CPU, (x.len(), 1), x.to_vec()).unwrap());
    let pv = tape.constant(Tensor::from_vec(&CPU, (x.len(), p), params.to_vec()).unwrap());
    let (y, ld) = rational_quadratic(&xv, &pv, config, direction).unwrap();
    (y.value().to_vec().unwrap(), ld.value().to_vec().unwrap())
}

/// The knots of the spline with `params`, computed independently: `(xs, ys, derivatives)`.
fn knots(params: &[f64], c: &SplineConfig) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let k = c.bins;
    let normalised = |raw: &[f64], min: f64| -> Vec<f64> {
        let m = raw.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = raw.iter().map(|r| (r - m).exp()).collect();
        let s: f64 = e.iter().sum();
        let mut acc = 0.0;
        let mut out = vec![-c.tail_bound];
        for v in e {
            acc += min + (1.0 - min * k as f64) * v / s;
            out.push(-c.tail_bound + 2.0 * c.tail_bound * acc);
        }
        out
    };
    let xs = normalised(&params[..k], c.min_bin_width);
    let ys = normalised(&params[k..2 * k], c.min_bin_height);
    let bound = -c.min_derivative.ln();
    let mut ds = vec![1.0];
    ds.extend(
        params[2 * k..]
            .iter()
            .map(|r| (r / (1.0 + r.abs() / bound)).exp()),
    );
    ds.push(1.0);
    (xs, ys, ds)
}

fn spline_params(bins: usize, scale: f64) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(-scale..scale, 3 * bins - 1)
}

/// flow-layers' errors inside a gradient check's closure, which speaks flow-core's.
fn core(e: flow_layers::Error) -> flow_core::Error {
    match e {
        flow_layers::Error::Core(e) => e,
        other => panic!("{other}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The spline passes through its knots with the knots' derivatives, is increasing, maps
    /// [-B, B] onto itself, and its inverse and log-derivative agree with it.
    #[test]
    fn spline_interpolates_its_knots((bins, params) in (1usize..=8).prop_flat_map(|k| (Just(k), spline_params(k, 3.0))), bound in 0.5f64..6.0) {
        let c = config(bins, bound);
        let (xs, ys, ds) = knots(&params, &c);
        let n = xs.len();
        let rows: Vec<f64> = (0..n).flat_map(|_| params.iter().cloned()).collect();
        let (y, _) = spline_values(&xs, &rows, &c, Direction::Forward);
        assert_close(&y, &ys, 1e-12, "spline at the knots")?;
        // Derivative at each knot from each side that lies in the spline's domain, by
        // second-order one-sided differences with steps scaled to the adjacent bin (the
        // spline's curvature is of order d / width).
        for (i, (&x, &d)) in xs.iter().zip(&ds).enumerate() {
            let mut sides = Vec::new();
            if i > 0 {
                sides.push(-1e-7 * (x - xs[i - 1]));
            }
            if i + 1 < n {
                sides.push(1e-7 * (xs[i + 1] - x));
            }
            for h in sides {
                let at = [x, x + h, x + 2.0 * h];
                let (v, _) = spline_values(&at, &[params.clone(), params.clone(), params.clone()].concat(), &c, Direction::Forward);
                let slope = (-3.0 * v[0] + 4.0 * v[1] - v[2]) / (2.0 * h);
                prop_assert!((slope - d).abs() < 1e-5 * (1.0 + d), "knot {} (step {}): slope {} vs derivative {}", i, h, slope, d);
            }
        }
        // Increasing on a grid, inverse and log-derivative consistent.
        let grid: Vec<f64> = (0..=200).map(|j| -bound + 2.0 * bound * j as f64 / 200.0).collect();
        let rows: Vec<f64> = grid.iter().flat_map(|_| params.iter().cloned()).collect();
        let (y, ld) = spline_values(&grid, &rows, &c, Direction::Forward);
        prop_assert!(y.windows(2).all(|w| w[1] > w[0]), "not increasing: {:?}", y);
        prop_assert!(y.iter().all(|v| v.abs() <= bound * (1.0 + 1e-12)));
        let (back, inv_ld) = spline_values(&y, &rows, &c, Direction::Inverse);
        assert_close(&back, &grid, 1e-9, "inverse(spline(x))")?;
        let minus: Vec<f64> = inv_ld.iter().map(|v| -v).collect();
        assert_close(&ld, &minus, 1e-8, "log-derivatives")?;
    }

    /// First- and second-order gradients of values and log-dets, in the inputs and the
    /// parameters, against central differences; in both directions, with entries inside and
    /// outside the tail bound.
    #[test]
    fn spline_gradients(rows in 1usize..=4, d in 1usize..=3, bins in 1usize..=6, seed in 0u64..1000, inverse in any::<bool>()) {
        let c = config(bins, 2.0);
        let mut rng = flow_core::rng(seed);
        let x = Tensor::rand_uniform(&CPU, (rows, d), -2.6, 2.6, &mut rng).unwrap();
        let p = Tensor::rand_uniform(&CPU, (rows, d * c.params_per_feature()), -2.0, 2.0, &mut rng).unwrap();
        let direction = if inverse { Direction::Inverse } else { Direction::Forward };
        let f = |v: &[Var<B>]| {
            let (y, ld) = rational_quadratic(&v[0], &v[1], &c, direction).map_err(core)?;
            Var::concat_cols(&[&y, &ld])
        };
        GradCheck { rtol: 1e-5, atol: 1e-6, ..GradCheck::default() }
            .check(&CPU, &[x.clone(), p.clone()], f)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        GradCheck { rtol: 1e-4, atol: 1e-5, ..GradCheck::default() }
            .check_second_order(&CPU, &[x, p], f)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }

    #[test]
    fn spline_coupling(z in batch(2..=8), seed in 0u64..1000, bins in 1usize..=6, bound in prop::sample::select(vec![1.0, 2.0, 5.0]), context in 0usize..=2) {
        let mut params = ParamStore::new();
        let mut rng = flow_core::rng(seed);
        let mut cx = BuildContext::new(&CPU, &mut params, "flows.0", z.cols(), &mut rng)
            .with_context(context)
            .with_init(Init::Random);
        let layer = SplineCoupling::new(
            &mut cx,
            &SplineCouplingConfig { hidden: vec![12, 12], leaky: 0.0, spline: config(bins, bound) },
        ).unwrap();
        let c = (context > 0).then(|| Tensor::rand_uniform(&CPU, (z.rows(), context), -1.0, 1.0, &mut rng).unwrap());
        check_layer_given(&layer, &params, &z, c.as_ref())?;
    }

    #[test]
    fn masked_spline_autoregressive(
        z in batch(1..=6),
        seed in 0u64..1000,
        iaf in any::<bool>(),
        bins in 1usize..=6,
        bound in prop::sample::select(vec![1.0, 2.0, 5.0]),
        ordering in prop::sample::select(vec![Ordering::Natural, Ordering::Reversed, Ordering::Random]),
        context in 0usize..=2,
    ) {
        let mut params = ParamStore::new();
        let mut rng = flow_core::rng(seed);
        let degrees = ordering.degrees(z.cols(), &mut rng);
        let mut cx = BuildContext::new(&CPU, &mut params, "flows.0", z.cols(), &mut rng)
            .with_context(context)
            .with_init(Init::Random);
        let layer = MaskedAutoregressive::new(
            &mut cx,
            &AutoregressiveConfig { hidden: vec![16, 16], degrees, leaky: 0.0, iaf },
            Transformer::RationalQuadratic(config(bins, bound)),
        ).unwrap();
        let c = (context > 0).then(|| Tensor::rand_uniform(&CPU, (z.rows(), context), -1.0, 1.0, &mut rng).unwrap());
        check_layer_given(&layer, &params, &z, c.as_ref())?;
    }

    /// Whole flows, autoregressive and coupling, conditional or not: round trip, log-dets
    /// against finite-difference Jacobians, sample log-densities against log_prob, and the
    /// architecture through JSON.
    #[test]
    fn whole_nsf(z in batch(2..=5), seed in 0u64..1000, transforms in 1usize..=3, coupling in any::<bool>(), context in 0usize..=2) {
        let spec = NsfConfig {
            dim: z.cols(),
            transforms,
            hidden: vec![8, 8],
            context,
            coupling,
            spline: config(4, 3.0),
            seed,
            ..NsfConfig::default()
        }
        .spec()
        .unwrap();
        let model = NormalizingFlow::new_random(&CPU, spec, seed).unwrap();
        let c = (context > 0).then(|| Tensor::rand_uniform(&CPU, (z.rows(), context), -1.0, 1.0, &mut flow_core::rng(seed)).unwrap());
        check_model_given(&model, &z, c.as_ref())?;
        let (x, _) = model.forward(&z, c.as_ref()).unwrap();
        let log_p = model.log_prob(&x, c.as_ref()).unwrap();
        let (samples, log_q) = model.sample(z.rows(), c.as_ref(), &mut flow_core::rng(seed + 1)).unwrap();
        let log_p_samples = model.log_prob(&samples, c.as_ref()).unwrap();
        assert_close(&log_p_samples.to_vec()?, &log_q.to_vec()?, 1e-9, "sample log q vs log_prob")?;
        prop_assert!(log_p.to_vec()?.iter().all(|v| v.is_finite()));
        let rebuilt = FlowSpec::from_json(&model.spec().to_json()).unwrap();
        prop_assert_eq!(&rebuilt, model.spec());
    }
}

/// At the tail bound, just beyond it and far beyond it, with parameters that push bins to
/// their minimum width: finite values, the identity outside, slope 1 on both sides of the
/// bound, and finite gradients in the inputs and the parameters.
#[test]
fn spline_edge_cases_at_and_beyond_the_tail_bound() {
    let c = config(5, 3.0);
    let p = c.params_per_feature();
    let b = c.tail_bound;
    let inputs = [
        -b,
        b,
        b * (1.0 - 1e-15),
        b * (1.0 + 1e-15),
        -b - 1e-9,
        b + 1e-9,
        1e6,
        -1e300,
        0.0,
    ];
    // Extreme logits: all but one bin at the minimum width and height, derivatives at the
    // minimum and huge.
    let extreme: Vec<f64> = (0..p)
        .map(|j| match j % 3 {
            0 => 800.0,
            1 => -800.0,
            _ => 40.0,
        })
        .collect();
    for params in [vec![0.0; p], extreme] {
        let n = inputs.len();
        let rows: Vec<f64> = (0..n).flat_map(|_| params.iter().cloned()).collect();
        for direction in [Direction::Forward, Direction::Inverse] {
            let tape = Tape::new(&CPU);
            let x = tape.input(Tensor::from_vec(&CPU, (n, 1), inputs.to_vec()).unwrap());
            let pv = tape.input(Tensor::from_vec(&CPU, (n, p), rows.clone()).unwrap());
            let (y, ld) = rational_quadratic(&x, &pv, &c, direction).unwrap();
            let (yv, ldv) = (y.value().to_vec().unwrap(), ld.value().to_vec().unwrap());
            for (i, &v) in inputs.iter().enumerate() {
                assert!(
                    yv[i].is_finite() && ldv[i].is_finite(),
                    "{direction:?} at {v}: {} {}",
                    yv[i],
                    ldv[i]
                );
                if v.abs() > b {
                    assert_eq!(yv[i], v, "identity outside the bound");
                    assert_eq!(ldv[i], 0.0);
                }
            }
            for out in [&y, &ld] {
                let grads = tape
                    .grad(&out.sum_all().unwrap(), &[&x, &pv], false)
                    .unwrap();
                for g in &grads {
                    let g = g.value().to_vec().unwrap();
                    assert!(
                        g.iter().all(|v| v.is_finite()),
                        "{direction:?}: non-finite gradient {g:?}"
                    );
                }
            }
            // Slope 1 outside, and at the bound from inside too.
            let gx = tape.grad(&y.sum_all().unwrap(), &[&x], false).unwrap()[0]
                .value()
                .to_vec()
                .unwrap();
            for (i, &v) in inputs.iter().enumerate() {
                if v.abs() > b || v.abs() == b {
                    assert!(
                        (gx[i] - 1.0).abs() < 1e-6,
                        "{direction:?}: d/dx at {v} is {}",
                        gx[i]
                    );
                }
            }
        }
    }
}

#[test]
fn bad_spline_configurations_are_errors() {
    for bad in [
        config(0, 3.0),
        config(4, 0.0),
        config(4, f64::INFINITY),
        SplineConfig {
            min_bin_width: 0.3,
            ..config(4, 3.0)
        },
        SplineConfig {
            min_bin_height: 0.0,
            ..config(4, 3.0)
        },
        SplineConfig {
            min_derivative: 1.0,
            ..config(4, 3.0)
        },
    ] {
        let err = NsfConfig {
            spline: bad,
            ..NsfConfig::default()
        }
        .spec()
        .unwrap_err();
        assert!(err.to_string().contains("spline with"), "{err}");
    }
    let err = NsfConfig {
        dim: 1,
        coupling: true,
        ..NsfConfig::default()
    }
    .spec()
    .unwrap_err();
    assert!(err.to_string().contains("at least 2 features"), "{err}");
}

/// A zero-initialised NSF is the identity (the spline of zero parameters is), so training
/// starts from the base distribution.
#[test]
fn zero_initialised_nsf_is_the_identity() {
    for coupling in [false, true] {
        let spec = NsfConfig {
            dim: 3,
            coupling,
            ..NsfConfig::default()
        }
        .spec()
        .unwrap();
        let model = NormalizingFlow::new(&CPU, spec, 0).unwrap();
        let z = Tensor::rand_uniform(&CPU, (7, 3), -6.0, 6.0, &mut flow_core::rng(3)).unwrap();
        let tape = Tape::new(&CPU);
        let (x, ld) = model.forward(&tape.constant(z.clone()), None).unwrap();
        // Autoregressive layers keep the order; coupling layers are followed by
        // permutations, so each row comes out as a permutation of itself.
        let (xs, zs) = (x.value().to_vec().unwrap(), z.to_vec().unwrap());
        for (xr, zr) in xs.chunks(3).zip(zs.chunks(3)) {
            let (mut a, mut b) = (xr.to_vec(), zr.to_vec());
            a.sort_by(f64::total_cmp);
            b.sort_by(f64::total_cmp);
            assert_close(&a, &b, 1e-12, "identity up to permutation").unwrap();
            if !coupling {
                assert_close(xr, zr, 1e-12, "identity").unwrap();
            }
        }
        assert!(ld.value().to_vec().unwrap().iter().all(|v| v.abs() < 1e-12));
    }
}

/// A conditional flow's density depends on its context, and it refuses a missing or
/// wrongly shaped one with an error that says what it expected.
#[test]
fn conditional_nsf_reads_its_context() {
    let spec = NsfConfig {
        dim: 2,
        context: 3,
        ..NsfConfig::default()
    }
    .spec()
    .unwrap();
    let model = NormalizingFlow::new_random(&CPU, spec, 1).unwrap();
    let x = Tensor::from_vec(&CPU, (1, 2), vec![0.3, -0.2]).unwrap();
    let c1 = Tensor::from_vec(&CPU, (1, 3), vec![1.0, 0.0, 0.0]).unwrap();
    let c2 = Tensor::from_vec(&CPU, (1, 3), vec![0.0, 0.0, 1.0]).unwrap();
    let l1 = model.log_prob(&x, Some(&c1)).unwrap().to_vec().unwrap()[0];
    let l2 = model.log_prob(&x, Some(&c2)).unwrap().to_vec().unwrap()[0];
    assert!((l1 - l2).abs() > 1e-6, "{l1} vs {l2}");
    let err = model.log_prob(&x, None).unwrap_err().to_string();
    assert!(
        err.contains("expected a context of 1 rows x 3 features, got none"),
        "{err}"
    );
    let bad = Tensor::zeros(&CPU, (1, 2)).unwrap();
    let err = model.log_prob(&x, Some(&bad)).unwrap_err().to_string();
    assert!(err.contains("got 1 x 2"), "{err}");
    // One context row is shared by every sample; the samples' densities are given that row.
    let (samples, log_q) = model.sample(5, Some(&c1), &mut flow_core::rng(2)).unwrap();
    let shared = Tensor::from_vec(&CPU, (5, 3), [1.0, 0.0, 0.0].repeat(5)).unwrap();
    let log_p = model.log_prob(&samples, Some(&shared)).unwrap();
    assert!(log_p.max_abs_diff(&log_q).unwrap() < 1e-9);
    // An unconditional flow refuses a context.
    let plain = NormalizingFlow::new(&CPU, NsfConfig::default().spec().unwrap(), 0).unwrap();
    let err = plain.log_prob(&x, Some(&c1)).unwrap_err().to_string();
    assert!(err.contains("unconditional flow takes no context"), "{err}");
}
