//! A flow-matching model trained by torchcfm, imported with `import_torchcfm`: its field,
//! latents, samples and exact log-likelihoods match the float64 references of
//! `../shared/fixtures/torchcfm` (classical RK4 with 8,000 steps and the exact divergence,
//! in NumPy). Integrated on the same grid, ours agree to 1e-9 relative to max(1, |value|);
//! with our adaptive Dormand-Prince, to the reference's own accuracy (its README: about 1e-3
//! in log-densities, where SELU's kinks make the integral converge at first order).

use flow_core::{Cpu, Tape, Tensor};
use flow_layers::ode::Solver;
use flow_layers::NormalizingFlow;
use flow_train::checkpoint::{self, TensorFile};
use flow_train::import::import_torchcfm;
use std::path::PathBuf;

type F64 = Cpu<f64>;

fn fixture(name: &str) -> PathBuf {
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    assert!(
        shared.is_dir(),
        "../shared is missing (looked for {}): the torchcfm fixtures live there",
        shared.display()
    );
    shared.join("fixtures/torchcfm").join(name)
}

fn weights() -> PathBuf {
    fixture("torchcfm_icfm_w64.safetensors")
}

struct Reference(TensorFile);

impl Reference {
    fn load() -> Self {
        Reference(TensorFile::read(&fixture("torchcfm_icfm_w64.reference.safetensors")).unwrap())
    }

    fn values(&self, name: &str) -> Vec<f64> {
        self.0
            .tensors
            .get(name)
            .unwrap_or_else(|| panic!("reference has no `{name}`"))
            .1
            .clone()
    }

    fn rows(&self, name: &str) -> Tensor<F64> {
        let values = self.values(name);
        Tensor::from_f64s(&Cpu::new(), (values.len() / 2, 2), &values).unwrap()
    }
}

fn assert_matches(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let (worst, at) = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
        .enumerate()
        .fold(
            (0.0, 0),
            |(m, at), (i, e)| if e > m { (e, i) } else { (m, at) },
        );
    assert!(
        worst <= tol,
        "{what}: worst relative error {worst:e} at index {at} ({} vs {}), tolerance {tol:e}",
        got[at],
        want[at]
    );
}

/// log N(z; 0, I) + log|det dz/dx| per row.
fn log_prob_from(z: &Tensor<F64>, log_det: &Tensor<F64>) -> Vec<f64> {
    let z = z.to_f64s().unwrap();
    let ld = log_det.to_f64s().unwrap();
    let log_2pi = (2.0 * std::f64::consts::PI).ln();
    z.chunks(2)
        .zip(ld)
        .map(|(z, ld)| -0.5 * (z[0] * z[0] + z[1] * z[1]) - log_2pi + ld)
        .collect()
}

/// The first `rows` reference points (the 5 chosen ones, then samples): integration cost
/// grows with every SELU kink a path crosses, so the long solves take a subset.
fn check(
    model: &NormalizingFlow<F64>,
    reference: &Reference,
    rows: usize,
    tol: (f64, f64),
    what: &str,
) {
    let first = |name: &str| {
        let values = reference.values(name);
        let width = values.len() / reference.values("log_prob").len();
        values[..rows * width].to_vec()
    };
    let tensor = |name: &str| Tensor::from_f64s(&Cpu::new(), (rows, 2), &first(name)).unwrap();
    let (z, log_det) = model.inverse(&tensor("x"), None).unwrap();
    assert_matches(
        &z.to_f64s().unwrap(),
        &first("z_of_x"),
        tol.0,
        &format!("{what}: z_of_x"),
    );
    assert_matches(
        &log_prob_from(&z, &log_det),
        &first("log_prob"),
        tol.1,
        &format!("{what}: log_prob"),
    );
    let (x, _) = model.forward(&tensor("z0"), None).unwrap();
    assert_matches(
        &x.to_f64s().unwrap(),
        &first("x_of_z0"),
        tol.0,
        &format!("{what}: x_of_z0"),
    );
}

#[test]
fn the_imported_field_is_torchcfms() {
    let cpu = F64::new();
    let model = import_torchcfm(&cpu, &weights(), Solver::Rk4 { steps: 10 }).unwrap();
    let reference = Reference::load();
    let tape = Tape::inference(&cpu);
    let x = tape.constant(reference.rows("field_x"));
    let v = model
        .velocity(&x, &reference.values("field_t"), None)
        .unwrap();
    assert_matches(
        &v.value().to_f64s().unwrap(),
        &reference.values("field_v"),
        1e-12,
        "field_v",
    );
}

/// The same RK4 grid as the reference: the same numbers up to rounding.
#[test]
fn latents_samples_and_log_likelihoods_match_on_the_references_grid() {
    let model = import_torchcfm(&F64::new(), &weights(), Solver::Rk4 { steps: 8000 }).unwrap();
    check(
        &model,
        &Reference::load(),
        40,
        (1e-9, 1e-9),
        "RK4, 8000 steps",
    );
}

/// Adaptive steps at a tight tolerance: within the reference's own accuracy.
#[test]
fn adaptive_integration_agrees_within_the_references_accuracy() {
    let solver = Solver::Dopri5 {
        rtol: 1e-8,
        atol: 1e-8,
        max_steps: 100_000,
    };
    let model = import_torchcfm(&F64::new(), &weights(), solver).unwrap();
    check(
        &model,
        &Reference::load(),
        20,
        (1e-6, 1e-3),
        "dopri5 at 1e-8",
    );
}

/// Through a checkpoint: the f32 model the command line would save and reload.
#[test]
fn an_imported_checkpoint_reloads_the_same_model() {
    let cpu = F64::new();
    let model = import_torchcfm(&cpu, &weights(), Solver::Rk4 { steps: 50 }).unwrap();
    let dir = std::env::temp_dir().join(format!("torchcfm-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    checkpoint::save(&model, &path, &[]).unwrap();
    let reloaded = checkpoint::load(&cpu, &path).unwrap();
    let x = Reference::load().rows("x");
    let (a, b) = (
        model.log_prob(&x, None).unwrap(),
        reloaded.log_prob(&x, None).unwrap(),
    );
    assert_eq!(a.to_f64s().unwrap(), b.to_f64s().unwrap());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn other_files_are_refused_with_a_reason() {
    let cpu = F64::new();
    let solver = Solver::Rk4 { steps: 10 };
    // A normflows RealNVP is not a torchcfm MLP.
    let normflows = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/normflows/normflows_realnvp_swap2.safetensors");
    let e = import_torchcfm(&cpu, &normflows, solver)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unexpected tensor"), "{e}");
    let e = import_torchcfm(&cpu, &fixture("missing.safetensors"), solver)
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.safetensors"), "{e}");
}
