//! A layer defined outside flow-layers (here, in this test) trains through `train_on` beside
//! built-in layers, is checkpointed, and reloads through a registry that holds it.

use flow_core::{Backend, Cpu, ParamId, ParamStore, Tensor, Var};
use flow_datasets::{ToyDensity, TwoMoons};
use flow_layers::{
    zero_log_det, AffineCouplingBlock, AffineCouplingConfig, BuildContext, Flow, LayerKind,
    LayerSpec, NoConfig, NormalizingFlow, Registry, ScaleMap,
};
use flow_train::checkpoint;
use flow_train::train::{train_on, Progress, TrainConfig};

/// `x = z + shift`: volume preserving, one learnable vector.
#[derive(Debug)]
struct Shift {
    dim: usize,
    shift: ParamId,
}

impl<B: Backend> Flow<B> for Shift {
    fn dim(&self) -> usize {
        self.dim
    }
    fn forward(
        &self,
        p: &ParamStore<B>,
        z: &Var<B>,
        _: Option<&Var<B>>,
    ) -> flow_layers::Result<(Var<B>, Var<B>)> {
        let shift = z.tape().param(p, self.shift)?;
        Ok((z.add(&shift)?, zero_log_det(z)?))
    }
    fn inverse(
        &self,
        p: &ParamStore<B>,
        x: &Var<B>,
        _: Option<&Var<B>>,
    ) -> flow_layers::Result<(Var<B>, Var<B>)> {
        let shift = x.tape().param(p, self.shift)?;
        Ok((x.sub(&shift)?, zero_log_det(x)?))
    }
    fn spec(&self) -> LayerSpec {
        LayerSpec::of::<Shift>(&NoConfig {})
    }
}

impl LayerKind for Shift {
    const NAME: &'static str = "shift";
    type Config = NoConfig;
    fn build<B: Backend>(
        _: &NoConfig,
        cx: &mut BuildContext<'_, B>,
    ) -> flow_layers::Result<Box<dyn Flow<B>>> {
        let shift = cx
            .params
            .add(cx.name("shift"), Tensor::zeros(cx.backend, (1, cx.dim))?)?;
        Ok(Box::new(Shift { dim: cx.dim, shift }))
    }
}

#[test]
fn a_user_layer_trains_checkpoints_and_reloads() {
    let cpu = Cpu::<f64>::new();
    let coupling = AffineCouplingConfig {
        hidden: vec![16, 16],
        leaky: 0.0,
        scale_map: ScaleMap::Exp,
    };
    let mut model = NormalizingFlow::builder(2)
        .layer::<AffineCouplingBlock>(coupling.clone())
        .layer::<Shift>(NoConfig {})
        .layer::<AffineCouplingBlock>(coupling)
        .build(&cpu, 0)
        .unwrap();
    let shift_id = model.params().id("flows.1.shift").unwrap();
    let data = TwoMoons.sample(2000, &mut flow_core::rng(1));
    let x = Tensor::from_f64s(&cpu, (2000, 2), &data).unwrap();
    let before = model.forward_kld(&x, None).unwrap().to_f64s().unwrap()[0];
    let source = flow_train::source::DensitySource::new(&TwoMoons, flow_core::rng(2));
    let config = TrainConfig {
        iters: 150,
        batch: 128,
        lr: 3e-3,
        ..TrainConfig::default()
    };
    let mut quiet = |_: &Progress<'_, Cpu<f64>>| Ok(());
    train_on(&mut model, source, &config, None, None, &mut quiet).unwrap();
    let after = model.forward_kld(&x, None).unwrap().to_f64s().unwrap()[0];
    assert!(after < before - 0.3, "NLL {before} -> {after}");
    // The user's parameter moved with the rest.
    assert!(model
        .params()
        .get(shift_id)
        .unwrap()
        .to_f64s()
        .unwrap()
        .iter()
        .any(|v| v.abs() > 1e-3));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    checkpoint::save(&model, &path, &[]).unwrap();
    // The built-in registry does not know the layer, and says so.
    let err = checkpoint::load(&cpu, &path).unwrap_err().to_string();
    assert!(err.contains("shift"), "{err}");
    let registry = Registry::builtin().with::<Shift>().unwrap();
    let loaded = checkpoint::load_with(&registry, &cpu, &path).unwrap();
    assert_eq!(loaded.spec(), model.spec());
    let (a, b) = (
        loaded.log_prob(&x, None).unwrap(),
        model.log_prob(&x, None).unwrap(),
    );
    assert_eq!(a.to_f64s().unwrap(), b.to_f64s().unwrap());
}
