//! `FlowSpec::num_scalars` counts what `NormalizingFlow::new` allocates, without building it.

use flow_core::Cpu;
use flow_layers::{
    MafConfig, NormalizingFlow, NsfConfig, PermuteMode, RealNvpConfig, ResidualConfig,
    ResidualLayerConfig, ScaleMap, SplineConfig,
};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn num_scalars_matches_the_built_model(
        dim in 2usize..9,
        transforms in 0usize..4,
        hidden in proptest::collection::vec(1usize..12, 0..3),
        context in 0usize..4,
    ) {
        let spec = RealNvpConfig {
            dim,
            transforms,
            hidden,
            context,
            leaky: 0.0,
            scale_map: ScaleMap::Exp,
            permute: PermuteMode::Shuffle,
            seed: 1,
        }
        .spec()
        .unwrap();
        let model = NormalizingFlow::new(&Cpu::<f64>::new(), spec.clone(), 0).unwrap();
        prop_assert_eq!(spec.num_scalars(&flow_layers::Registry::<Cpu<f64>>::builtin()).unwrap(), Some(model.params().num_scalars()));
    }

    #[test]
    fn num_scalars_matches_maf(dim in 1usize..9, transforms in 0usize..4, hidden in proptest::collection::vec(1usize..12, 0..3), iaf in any::<bool>(), context in 0usize..4) {
        let spec = MafConfig { dim, transforms, hidden, iaf, context, ..MafConfig::default() }.spec().unwrap();
        let model = NormalizingFlow::new(&Cpu::<f64>::new(), spec.clone(), 0).unwrap();
        prop_assert_eq!(spec.num_scalars(&flow_layers::Registry::<Cpu<f64>>::builtin()).unwrap(), Some(model.params().num_scalars()));
    }

    #[test]
    fn num_scalars_matches_nsf(dim in 2usize..7, transforms in 0usize..3, hidden in proptest::collection::vec(1usize..10, 0..3), bins in 1usize..6, coupling in any::<bool>(), context in 0usize..3) {
        let spline = SplineConfig { bins, ..SplineConfig::default() };
        let spec = NsfConfig { dim, transforms, hidden, spline, coupling, context, ..NsfConfig::default() }.spec().unwrap();
        let model = NormalizingFlow::new(&Cpu::<f64>::new(), spec.clone(), 0).unwrap();
        prop_assert_eq!(spec.num_scalars(&flow_layers::Registry::<Cpu<f64>>::builtin()).unwrap(), Some(model.params().num_scalars()));
    }

    /// Residual flows: weights, biases, LipSwish slopes and the buffers (power-iteration
    /// vectors, draw counters), which the checkpoint holds too.
    #[test]
    fn num_scalars_matches_residual(dim in 1usize..5, transforms in 0usize..3, hidden in proptest::collection::vec(1usize..10, 0..3), actnorm in any::<bool>()) {
        let layer = ResidualLayerConfig { hidden, ..ResidualLayerConfig::default() };
        let spec = ResidualConfig { dim, transforms, actnorm, layer }.spec().unwrap();
        let model = NormalizingFlow::new(&Cpu::<f64>::new(), spec.clone(), 0).unwrap();
        prop_assert_eq!(spec.num_scalars(&flow_layers::Registry::<Cpu<f64>>::builtin()).unwrap(), Some(model.params().num_scalars()));
    }
}

#[test]
fn num_scalars_reports_overflow() {
    let mut spec = RealNvpConfig::default().spec().unwrap();
    spec.dim = usize::MAX;
    assert_eq!(
        spec.num_scalars(&flow_layers::Registry::<Cpu<f64>>::builtin())
            .unwrap(),
        None
    );
}
