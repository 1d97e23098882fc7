//! MADE's autoregressive structure, tested directly: the Jacobian of its outputs with respect
//! to its inputs is zero wherever the ordering forbids a dependence, and context inputs reach
//! every output.

use flow_core::{Axis, Cpu, ParamStore, Tape, Tensor};
use flow_layers::{BuildContext, Init};
use flow_layers::{Made, MadeConfig, Ordering};
use proptest::prelude::*;

type B = Cpu<f64>;
const CPU: B = Cpu::new();

/// d out[:, o] / d input, summed over rows, for every output column o.
fn jacobian(
    made: &Made,
    params: &ParamStore<B>,
    x: &Tensor<B>,
    c: Option<&Tensor<B>>,
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let tape = Tape::new(&CPU);
    let xv = tape.input(x.clone());
    let cv = c.map(|c| tape.input(c.clone()));
    let out = made.forward(params, &xv, cv.as_ref()).unwrap();
    let (mut dx, mut dc) = (Vec::new(), Vec::new());
    for o in 0..out.shape().cols {
        let col = out.slice_cols(o, 1).unwrap().sum(Axis::All).unwrap();
        let mut wrt = vec![&xv];
        if let Some(cv) = &cv {
            wrt.push(cv);
        }
        let grads = tape.grad(&col, &wrt, false).unwrap();
        let abs_sum = |t: &Tensor<B>, cols: usize| -> Vec<f64> {
            let v = t.to_vec().unwrap();
            (0..cols)
                .map(|j| v.iter().skip(j).step_by(cols).map(|g| g.abs()).sum())
                .collect()
        };
        dx.push(abs_sum(&grads[0].value(), x.cols()));
        if let Some(c) = c {
            dc.push(abs_sum(&grads[1].value(), c.cols()));
        }
    }
    (dx, dc)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn outputs_depend_only_on_earlier_inputs(
        dim in 1usize..=7,
        outputs_per_input in 1usize..=3,
        feature_major in any::<bool>(),
        hidden in prop::collection::vec(1usize..=12, 1..=3),
        ordering in prop::sample::select(vec![Ordering::Natural, Ordering::Reversed, Ordering::Random]),
        context in 0usize..=2,
        seed in 0u64..1000,
    ) {
        let mut rng = flow_core::rng(seed);
        let degrees = ordering.degrees(dim, &mut rng);
        let mut params = ParamStore::new();
        let config = MadeConfig { dim, hidden: hidden.clone(), degrees: degrees.clone(), outputs_per_input, feature_major, context, leaky: 0.1 };
        let made = Made::new(&mut BuildContext::new(&CPU, &mut params, "", config.dim, &mut rng).with_init(Init::Random), "made", &config).unwrap();
        let x = Tensor::rand_uniform(&CPU, (3, dim), -2.0, 2.0, &mut rng).unwrap();
        let c = (context > 0).then(|| Tensor::rand_uniform(&CPU, (3, context), -2.0, 2.0, &mut rng).unwrap());
        let (dx, dc) = jacobian(&made, &params, &x, c.as_ref());
        prop_assert_eq!(dx.len(), dim * outputs_per_input);
        let mut allowed_nonzero = 0;
        for (o, row) in dx.iter().enumerate() {
            // Outputs in blocks, o = k * dim + i, or grouped by input, o = i * P + k.
            let i = if feature_major { o / outputs_per_input } else { o % dim };
            for (j, &g) in row.iter().enumerate() {
                if degrees[j] >= degrees[i] {
                    prop_assert!(g == 0.0, "output {} (input {}, degree {}) depends on input {} (degree {}): {}", o, i, degrees[i], j, degrees[j], g);
                } else if g != 0.0 {
                    allowed_nonzero += 1;
                }
            }
        }
        // With at least `dim` units a layer holds every hidden degree, so the input that
        // comes first reaches the later outputs (leaky activations pass every sign).
        if dim >= 2 && hidden.iter().all(|&h| h >= dim) {
            prop_assert!(allowed_nonzero > 0, "no dependence at all");
        }
        for row in &dc {
            prop_assert!(row.iter().all(|&g| g > 0.0), "context does not reach an output: {:?}", row);
        }
    }
}

#[test]
fn bad_configurations_are_errors() {
    let mut params = ParamStore::<B>::new();
    let mut rng = flow_core::rng(0);
    for config in [
        MadeConfig {
            dim: 3,
            hidden: vec![4],
            degrees: vec![1, 2, 2],
            outputs_per_input: 2,
            feature_major: false,
            context: 0,
            leaky: 0.0,
        },
        MadeConfig {
            dim: 0,
            hidden: vec![4],
            degrees: vec![],
            outputs_per_input: 2,
            feature_major: false,
            context: 0,
            leaky: 0.0,
        },
        MadeConfig {
            dim: 2,
            hidden: vec![0],
            degrees: vec![1, 2],
            outputs_per_input: 2,
            feature_major: false,
            context: 0,
            leaky: 0.0,
        },
    ] {
        assert!(
            Made::new(
                &mut BuildContext::new(&CPU, &mut params, "", config.dim, &mut rng)
                    .with_init(Init::Random),
                "m",
                &config
            )
            .is_err(),
            "{config:?}"
        );
    }
    let config = MadeConfig {
        dim: 2,
        hidden: vec![4],
        degrees: vec![2, 1],
        outputs_per_input: 2,
        feature_major: false,
        context: 1,
        leaky: 0.0,
    };
    let made = Made::new(
        &mut BuildContext::new(&CPU, &mut params, "", config.dim, &mut rng).with_init(Init::Random),
        "ok",
        &config,
    )
    .unwrap();
    let tape = Tape::new(&CPU);
    let x = tape.constant(Tensor::zeros(&CPU, (2, 2)).unwrap());
    let err = made.forward(&params, &x, None).unwrap_err();
    assert!(
        err.to_string()
            .contains("MADE: expected a context of 2 rows x 1 features, got none"),
        "{err}"
    );
}
