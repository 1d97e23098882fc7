//! Flows over the bases beyond the diagonal Gaussian, end to end: checkpoints of a model with
//! a Gaussian-mixture (or uniform) base save and load back the same model, an architecture
//! claiming more mixture parameters than the file holds is refused, random base descriptions
//! never panic the loader, and forward-KL training with a mixture base fits bimodal data.

use flow_core::{Cpu, Tape, Tensor};
use flow_layers::{BaseSpec, FlowSpec, NormalizingFlow, RealNvpConfig};
use flow_train::checkpoint::{self, TensorFile};
use flow_train::optim::{Adam, Optimizer};
use rand_distr::{Distribution, StandardNormal};

type B = Cpu<f64>;
const CPU: B = Cpu::new();

fn spec(base: BaseSpec) -> FlowSpec {
    let mut spec = RealNvpConfig {
        dim: 2,
        transforms: 2,
        hidden: vec![8],
        leaky: 0.1,
        ..Default::default()
    }
    .spec()
    .unwrap();
    spec.base = base;
    spec
}

/// A model with every parameter random (the mixture's scales and weights moved off their
/// initial values too, so that a load that kept the defaults would show).
fn random_model(base: BaseSpec) -> NormalizingFlow<B> {
    let mut model = NormalizingFlow::new_random(&CPU, spec(base), 5).unwrap();
    let mut rng = flow_core::rng(6);
    let ids: Vec<_> = model.params().ids().collect();
    for id in ids {
        let shape = model.params().get(id).unwrap().shape();
        let name = model.params().name(id).unwrap().to_string();
        if name == "q0.log_scale" || name == "q0.weight_scores" {
            let t = Tensor::randn(&CPU, shape, &mut rng).unwrap();
            model.params_mut().set(id, t).unwrap();
        }
    }
    model
}

fn probe() -> Tensor<B> {
    Tensor::from_vec(
        &CPU,
        (4, 2),
        vec![0.0, 0.0, 1.5, -0.5, -2.0, 3.0, 40.0, -60.0],
    )
    .unwrap()
}

fn assert_same_model(a: &NormalizingFlow<B>, b: &NormalizingFlow<B>) {
    assert_eq!(a.spec(), b.spec());
    assert_eq!(a.params().len(), b.params().len());
    for (_, name, value) in a.params().iter() {
        let other = b.params().get(b.params().id(name).unwrap()).unwrap();
        assert_eq!(other.shape(), value.shape(), "{name}");
        assert_eq!(other.to_vec().unwrap(), value.to_vec().unwrap(), "{name}");
    }
    let (pa, pb) = (
        a.log_prob(&probe(), None).unwrap(),
        b.log_prob(&probe(), None).unwrap(),
    );
    assert_eq!(pa.to_vec().unwrap(), pb.to_vec().unwrap());
}

#[test]
fn mixture_base_checkpoint_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    for trainable in [true, false] {
        let model = random_model(BaseSpec::GaussianMixture {
            components: 3,
            trainable,
        });
        let path = dir.path().join(format!("mixture-{trainable}.safetensors"));
        checkpoint::save(&model, &path, &[]).unwrap();
        // The base's tensors under normflows' names (a fixed mixture's are buffers there, in
        // the state_dict all the same).
        let file = TensorFile::read(&path).unwrap();
        assert_eq!(file.tensors["q0.loc"].0, vec![3, 2]);
        assert_eq!(file.tensors["q0.log_scale"].0, vec![3, 2]);
        assert_eq!(file.tensors["q0.weight_scores"].0, vec![1, 3]);
        assert!(file.metadata["architecture"].contains(&format!(
            r#""base":{{"type":"gaussian_mixture","components":3,"trainable":{trainable}}}"#
        )));
        let loaded = checkpoint::load(&CPU, &path).unwrap();
        assert_same_model(&model, &loaded);
        let log_q = loaded.log_prob(&probe(), None).unwrap().to_vec().unwrap();
        assert!(log_q.iter().all(|l| l.is_finite()), "{log_q:?}");
    }
}

#[test]
fn uniform_base_checkpoint_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_model(BaseSpec::Uniform {
        low: -2.0,
        high: 0.5,
    });
    let path = dir.path().join("uniform.safetensors");
    checkpoint::save(&model, &path, &[]).unwrap();
    let file = TensorFile::read(&path).unwrap();
    assert!(file.tensors.keys().all(|k| !k.starts_with("q0.")));
    let loaded = checkpoint::load(&CPU, &path).unwrap();
    assert_same_model(&model, &loaded);
    let (x, log_q) = loaded.sample(16, None, &mut flow_core::rng(1)).unwrap();
    let log_p = loaded.log_prob(&x, None).unwrap();
    assert!(log_p.max_abs_diff(&log_q).unwrap() < 1e-9);
}

/// A stored architecture whose mixture needs more values than the file holds is refused
/// before anything is built; one that fits the count but not the shapes is refused by name.
#[test]
fn mixture_architecture_that_does_not_fit_the_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_model(BaseSpec::GaussianMixture {
        components: 3,
        trainable: true,
    });
    let path = dir.path().join("m.safetensors");
    checkpoint::save(&model, &path, &[]).unwrap();
    let rewrite = |from: &str, to: &str| {
        let mut file = TensorFile::read(&path).unwrap();
        let arch = file.metadata["architecture"].replace(from, to);
        file.metadata.insert("architecture".into(), arch);
        let out = dir.path().join("edited.safetensors");
        file.write(&out, "f64").unwrap();
        checkpoint::load(&CPU, &out).unwrap_err().to_string()
    };
    let err = rewrite(r#""components":3"#, r#""components":1000000000000"#);
    assert!(err.contains("the architecture needs"), "{err}");
    let err = rewrite(r#""components":3"#, r#""components":2"#);
    assert!(err.contains("q0.loc"), "{err}");
    let err = rewrite(r#""components":3"#, r#""components":0"#);
    assert!(err.contains("at least one component"), "{err}");
}

/// Two blobs far apart (a bimodal data set no Gaussian fits): a RealNVP over a two-component
/// mixture base, trained by forward KL with Adam for 300 steps, raises the held-out
/// log-likelihood well above its start and above the best single Gaussian's.
#[test]
fn forward_kl_with_a_mixture_base_fits_bimodal_data() {
    let mut rng = flow_core::rng(42);
    let mut blobs = |n: usize| -> Tensor<B> {
        let mut data = Vec::with_capacity(2 * n);
        for i in 0..n {
            let centre = if i % 2 == 0 { -2.5 } else { 2.5 };
            let (a, b): (f64, f64) = (
                StandardNormal.sample(&mut rng),
                StandardNormal.sample(&mut rng),
            );
            data.extend([centre + 0.4 * a, 0.5 * centre + 0.4 * b]);
        }
        Tensor::from_vec(&CPU, (n, 2), data).unwrap()
    };
    let test = blobs(2_000);
    let mean_log_lik = |m: &NormalizingFlow<B>| {
        let l = m.log_prob(&test, None).unwrap().to_vec().unwrap();
        l.iter().sum::<f64>() / l.len() as f64
    };
    // The best single Gaussian: the test set's own mean and covariance.
    let best_gaussian = {
        let v = test.to_vec().unwrap();
        let n = v.len() as f64 / 2.0;
        let m: Vec<f64> = (0..2)
            .map(|j| v.iter().skip(j).step_by(2).sum::<f64>() / n)
            .collect();
        let c = |i: usize, j: usize| {
            v.chunks(2)
                .map(|r| (r[i] - m[i]) * (r[j] - m[j]))
                .sum::<f64>()
                / n
        };
        let det = c(0, 0) * c(1, 1) - c(0, 1) * c(1, 0);
        -(2.0 * std::f64::consts::PI).ln() - 0.5 * det.ln() - 1.0
    };
    let mut model = NormalizingFlow::new(
        &CPU,
        spec(BaseSpec::GaussianMixture {
            components: 2,
            trainable: true,
        }),
        0,
    )
    .unwrap();
    let before = mean_log_lik(&model);
    let mut adam = Adam::new(2e-2, 0.0);
    for _ in 0..300 {
        let batch = blobs(256);
        let tape = Tape::new(&CPU);
        let loss = model.forward_kld(&tape.constant(batch), None).unwrap();
        let grads = tape.backward(&loss).unwrap();
        adam.step(model.params_mut(), &grads).unwrap();
    }
    let after = mean_log_lik(&model);
    assert!(
        after > before + 1.0 && after > best_gaussian + 0.5,
        "held-out log-likelihood {before:.3} -> {after:.3} (best Gaussian {best_gaussian:.3})"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Random base descriptions (sizes up to 2^64, bounds reversed, equal, huge or tiny) over
    /// a mixture checkpoint's tensors: loaded or refused by an error, never a panic.
    #[test]
    fn random_base_architectures_never_panic(
        dim in 0usize..4,
        components in proptest::sample::select(vec![0usize, 1, 2, 3, 4, 7, 1 << 40, usize::MAX]),
        trainable in proptest::option::of(proptest::bool::ANY),
        low in proptest::sample::select(vec![-1e308, -1.0, 0.0, 1e-300, 1.0, 1e308]),
        high in proptest::sample::select(vec![-1e308, -1.0, 0.0, 1e-300, 1.0, 1e308]),
        uniform in proptest::bool::ANY,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let model = random_model(BaseSpec::GaussianMixture { components: 3, trainable: true });
        checkpoint::save(&model, &path, &[]).unwrap();
        let mut file = TensorFile::read(&path).unwrap();
        let mut arch: serde_json::Value =
            serde_json::from_str(&file.metadata["architecture"]).unwrap();
        arch["dim"] = dim.into();
        arch["base"] = if uniform {
            serde_json::json!({"type": "uniform", "low": low, "high": high})
        } else {
            let mut base = serde_json::json!({"type": "gaussian_mixture", "components": components});
            if let Some(t) = trainable {
                base["trainable"] = t.into();
            }
            base
        };
        file.metadata.insert("architecture".into(), arch.to_string());
        let out = dir.path().join("edited.safetensors");
        file.write(&out, "f64").unwrap();
        if let Ok(loaded) = checkpoint::load(&CPU, &out) {
            let (x, log_q) = loaded.sample(4, None, &mut flow_core::rng(0)).unwrap();
            let log_p = loaded.log_prob(&x, None).unwrap();
            proptest::prop_assert!(log_p.max_abs_diff(&log_q).unwrap() < 1e-9);
        }
    }
}
