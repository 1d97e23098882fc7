//! Property tests of every layer and of whole flows, with random (not zero-initialised)
//! weights and dimensions 1 to 8: `inverse(forward(z)) = z`, the forward log-det equals
//! minus the inverse log-det at the image point, and both equal log|det J| of the Jacobian
//! computed independently by reverse-mode autodiff (and, for whole flows, by central
//! finite differences).

use flow_core::{ParamStore, Tensor};
use flow_layers::{
    AffineCouplingBlock, FlowSpec, MafConfig, MaskedAutoregressive, NormalizingFlow, Ordering,
    Permute, PermuteMode, RealNvpConfig, ScaleMap, Transformer,
};
use proptest::prelude::*;

mod common;
use common::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn affine_coupling_block(z in batch(2..=8), seed in 0u64..1000, sigmoid in any::<bool>(), leaky in prop::sample::select(vec![0.0, 0.2]), context in 0usize..=2) {
        let mut params = ParamStore::new();
        let mut rng = flow_core::rng(seed);
        let scale_map = if sigmoid { ScaleMap::Sigmoid } else { ScaleMap::Exp };
        let layer = AffineCouplingBlock::new(&mut BuildContext::new(&CPU, &mut params, "flows.0", z.cols(), &mut rng).with_context(context).with_init(Init::Random), &AffineCouplingConfig { hidden: vec![16, 16], leaky, scale_map }).unwrap();
        let c = (context > 0).then(|| Tensor::rand_uniform(&CPU, (z.rows(), context), -1.0, 1.0, &mut rng).unwrap());
        check_layer_given(&layer, &params, &z, c.as_ref())?;
    }

    #[test]
    fn permute(z in batch(1..=8), seed in 0u64..1000, mode in prop::sample::select(vec![PermuteMode::Swap, PermuteMode::Shuffle, PermuteMode::Reverse])) {
        let layer = Permute::new(z.cols(), mode, &mut flow_core::rng(seed)).unwrap();
        check_layer(&layer, &ParamStore::new(), &z)?;
    }

    #[test]
    fn whole_realnvp(z in batch(2..=8), seed in 0u64..1000, transforms in 1usize..=3, shuffle in any::<bool>()) {
        let config = RealNvpConfig {
            dim: z.cols(),
            transforms,
            hidden: vec![8, 8],
            leaky: 0.1,
            permute: if shuffle { PermuteMode::Shuffle } else { PermuteMode::Swap },
            seed,
            ..Default::default()
        };
        let model = NormalizingFlow::new_random(&CPU, config.spec().unwrap(), seed).unwrap();
        let fwd_ld = check_model(&model, &z)?;
        let d = z.cols();
        let from_ad: Vec<f64> = jacobians(&|v| model.forward(v, None).unwrap().0, &z)
            .into_iter().map(|j| log_abs_det(j, d)).collect();
        assert_close(&fwd_ld, &from_ad, 1e-8, "forward log-det vs autodiff log|det J|")?;
    }

    #[test]
    fn masked_affine_autoregressive(
        z in batch(1..=8),
        seed in 0u64..1000,
        iaf in any::<bool>(),
        ordering in prop::sample::select(vec![Ordering::Natural, Ordering::Reversed, Ordering::Random]),
        hidden in prop::sample::select(vec![vec![16], vec![12, 12]]),
        context in 0usize..=2,
    ) {
        let mut params = ParamStore::new();
        let mut rng = flow_core::rng(seed);
        let degrees = ordering.degrees(z.cols(), &mut rng);
        let layer = MaskedAutoregressive::new(&mut BuildContext::new(&CPU, &mut params, "flows.0", z.cols(), &mut rng).with_context(context).with_init(Init::Random), &AutoregressiveConfig { hidden: hidden.to_vec(), degrees, leaky: 0.0, iaf }, Transformer::Affine).unwrap();
        let c = (context > 0).then(|| Tensor::rand_uniform(&CPU, (z.rows(), context), -1.0, 1.0, &mut rng).unwrap());
        check_layer_given(&layer, &params, &z, c.as_ref())?;
    }

    #[test]
    fn whole_maf_and_iaf(z in batch(1..=6), seed in 0u64..1000, transforms in 1usize..=3, iaf in any::<bool>()) {
        let config = MafConfig { dim: z.cols(), transforms, hidden: vec![8, 8], iaf, seed, ..Default::default() };
        let model = NormalizingFlow::new_random(&CPU, config.spec().unwrap(), seed).unwrap();
        check_model(&model, &z)?;
        // A checkpoint's architecture rebuilds the same model.
        let rebuilt = FlowSpec::from_json(&model.spec().to_json()).unwrap();
        prop_assert_eq!(&rebuilt, model.spec());
    }

    #[test]
    fn sample_log_density_matches_log_prob(seed in 0u64..1000, dim in 2usize..=8) {
        let config = RealNvpConfig { dim, hidden: vec![8], seed, ..Default::default() };
        let model = NormalizingFlow::new_random(&CPU, config.spec().unwrap(), seed).unwrap();
        let (x, log_q) = model.sample(6, None, &mut flow_core::rng(seed + 1)).unwrap();
        let log_p = model.log_prob(&x, None).unwrap();
        assert_close(&log_p.to_vec()?, &log_q.to_vec()?, TOL, "sample log q vs log_prob")?;
    }
}

#[test]
fn diag_gaussian_matches_its_closed_form() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let dim = 3;
    let config = RealNvpConfig {
        dim,
        transforms: 0,
        ..Default::default()
    };
    let mut model = NormalizingFlow::new(&CPU, config.spec().unwrap(), 0).unwrap();
    let (loc, log_scale) = ([0.5, -1.0, 2.0], [0.1, -0.3, 0.7]);
    let store = model.params_mut();
    store
        .set(
            store.id("q0.loc").unwrap(),
            Tensor::from_vec(&CPU, (1, 3), loc.to_vec()).unwrap(),
        )
        .unwrap();
    store
        .set(
            store.id("q0.log_scale").unwrap(),
            Tensor::from_vec(&CPU, (1, 3), log_scale.to_vec()).unwrap(),
        )
        .unwrap();
    let x = [0.3, 0.2, -0.4];
    let got = model
        .log_prob(&Tensor::from_vec(&CPU, (1, 3), x.to_vec()).unwrap(), None)
        .unwrap()
        .to_vec()?[0];
    let want: f64 = (0..3)
        .map(|i| {
            let s = f64::exp(log_scale[i]);
            -0.5 * (2.0 * std::f64::consts::PI).ln()
                - log_scale[i]
                - 0.5 * ((x[i] - loc[i]) / s).powi(2)
        })
        .sum();
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    Ok(())
}

#[test]
fn bad_configurations_and_widths_are_errors() {
    let mut params = ParamStore::<B>::new();
    let err = AffineCouplingBlock::new(
        &mut BuildContext::new(&CPU, &mut params, "f", 1, &mut flow_core::rng(0)),
        &AffineCouplingConfig {
            hidden: vec![4],
            leaky: 0.0,
            scale_map: ScaleMap::Exp,
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("at least 2 features"), "{err}");
    assert!(Permute::from_perm(vec![0, 0], PermuteMode::Shuffle).is_err());
    let model = NormalizingFlow::new(&CPU, RealNvpConfig::default().spec().unwrap(), 0).unwrap();
    let err = model
        .log_prob(&Tensor::zeros(&CPU, (4, 3)).unwrap(), None)
        .unwrap_err();
    assert_eq!(err.to_string(), "inverse: expected 2 features, got 3");
}
