//! The user's layer under `flow_layers::testing`: alone, mixed with built-in layers in a
//! model, reloaded from its architecture; and a deliberately wrong copy that the checks catch.

use custom_layer::{ElementwiseAffine, ElementwiseAffineConfig};
use flow_core::{Backend, ParamStore, Var};
use flow_layers::testing::{self, cases, check_layer_kind, check_model, CheckError, Tolerances};
use flow_layers::{
    AffineCouplingBlock, AffineCouplingConfig, BuildContext, Flow, Init, LayerKind, LayerSpec,
    NormalizingFlow, Registry, ScaleMap,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

fn config() -> ElementwiseAffineConfig {
    ElementwiseAffineConfig { init_std: 0.5 }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn the_layer_is_invertible_with_exact_log_dets(case in cases(1..=6, 1..=5, 0..=0)) {
        check_layer_kind::<ElementwiseAffine>(&config(), &case, &Tolerances::default())?;
    }

    #[test]
    fn it_composes_with_built_in_layers(case in cases(2..=5, 1..=4, 0..=0)) {
        let coupling = AffineCouplingConfig { hidden: vec![8], leaky: 0.0, scale_map: ScaleMap::Exp };
        let model = NormalizingFlow::builder(case.dim)
            .init(Init::Random)
            .layer::<ElementwiseAffine>(config())
            .layer::<AffineCouplingBlock>(coupling)
            .layer::<ElementwiseAffine>(config())
            .build(&testing::TestBackend::new(), case.seed)?;
        check_model(&model, &case.z, None, &Tolerances::default())?;
        // Rebuilt from its stored architecture by a registry that knows the layer.
        let registry = Registry::builtin().with::<ElementwiseAffine>()?;
        let json = model.spec().to_json();
        prop_assert!(json.contains("\"type\":\"elementwise_affine\""));
        let spec = flow_layers::FlowSpec::from_json(&json)?;
        let again = NormalizingFlow::from_spec(&registry, &testing::TestBackend::new(), spec, case.seed)?;
        prop_assert_eq!(again.spec(), model.spec());
        // Without it, the error names the unknown kind.
        let unknown = NormalizingFlow::new(&testing::TestBackend::new(), model.spec().clone(), 0).unwrap_err();
        prop_assert!(unknown.to_string().contains("elementwise_affine"), "{}", unknown);
    }
}

/// The same layer with its log-det off by a constant: the checks must fail it.
#[derive(Debug)]
struct WrongLogDet(ElementwiseAffine);

impl<B: Backend> Flow<B> for WrongLogDet {
    fn dim(&self) -> usize {
        Flow::<B>::dim(&self.0)
    }
    fn forward(
        &self,
        p: &ParamStore<B>,
        z: &Var<B>,
        c: Option<&Var<B>>,
    ) -> flow_layers::Result<(Var<B>, Var<B>)> {
        let (x, ld) = self.0.forward(p, z, c)?;
        Ok((x, ld.add_scalar(0.01)?))
    }
    fn inverse(
        &self,
        p: &ParamStore<B>,
        x: &Var<B>,
        c: Option<&Var<B>>,
    ) -> flow_layers::Result<(Var<B>, Var<B>)> {
        let (z, ld) = self.0.inverse(p, x, c)?;
        Ok((z, ld.add_scalar(-0.01)?))
    }
    fn spec(&self) -> LayerSpec {
        Flow::<B>::spec(&self.0)
    }
}

#[test]
fn a_wrong_log_det_fails_the_checks() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let case = cases(2..=3, 2..=3, 0..=0)
        .new_tree(&mut runner)
        .unwrap()
        .current();
    let (layer, params) = testing::build_layer(&case, |cx: &mut BuildContext<'_, _>| {
        Ok(Box::new(WrongLogDet(ElementwiseAffine::new(cx, &config())?)) as Box<dyn Flow<_>>)
    })
    .unwrap();
    let err = testing::check_flow(
        layer.as_ref(),
        &params,
        &case.z,
        None,
        &Tolerances::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, CheckError::Mismatch { check, .. } if check.contains("log|det J|")),
        "{err}"
    );
    // The honest layer passes the same case.
    check_layer_kind::<ElementwiseAffine>(&config(), &case, &Tolerances::default()).unwrap();
    assert_eq!(<ElementwiseAffine as LayerKind>::NAME, "elementwise_affine");
}
