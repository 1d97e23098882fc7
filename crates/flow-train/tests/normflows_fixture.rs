//! Our RealNVP computes exactly what normflows computes. The model normflows trained is
//! loaded through `import-normflows`' library function (and through a checkpoint round
//! trip), and every reference value normflows gave in float64 is matched to 1e-9 in f64 and
//! 1e-4 in f32, relative to max(1, |value|).

use flow_core::{Backend, Cpu, Element, Tape, Tensor};
use flow_train::checkpoint::{self, TensorFile};
use flow_train::import::{import_normflows, ImportOptions};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    assert!(
        shared.is_dir(),
        "../shared is missing (looked for {}): the normflows fixtures live there",
        shared.display()
    );
    shared.join("fixtures/normflows").join(name)
}

struct Reference {
    file: TensorFile,
}

impl Reference {
    fn load() -> Self {
        let path = fixture("normflows_realnvp_swap2.reference.safetensors");
        Reference {
            file: TensorFile::read(&path).unwrap(),
        }
    }

    fn get(&self, name: &str) -> (Vec<usize>, Vec<f64>) {
        self.file
            .tensors
            .get(name)
            .unwrap_or_else(|| panic!("reference has no `{name}`"))
            .clone()
    }

    fn tensor<B: Backend>(&self, backend: &B, name: &str) -> Tensor<B> {
        let (shape, values) = self.get(name);
        Tensor::from_f64s(backend, (shape[0], shape[1]), &values).unwrap()
    }
}

fn assert_matches(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
        .fold(0.0, f64::max);
    eprintln!("{what}: worst relative difference {worst:.2e}");
    assert!(
        worst <= tol,
        "{what}: worst relative difference {worst:e} > {tol:e}"
    );
}

fn check_all<B: Backend>(model: &flow_layers::NormalizingFlow<B>, tol: f64, label: &str) {
    let cpu = model.backend().clone();
    let reference = Reference::load();
    let tape = Tape::new(&cpu);
    let x = tape.constant(reference.tensor(&cpu, "x"));
    let log_prob = model.log_prob(&x, None).unwrap().value().to_f64s().unwrap();
    assert_matches(
        &log_prob,
        &reference.get("log_prob").1,
        tol,
        &format!("{label} log_prob"),
    );
    let (z, inv_ld) = model.inverse(&x, None).unwrap();
    assert_matches(
        &z.value().to_f64s().unwrap(),
        &reference.get("x_to_z").1,
        tol,
        &format!("{label} x_to_z"),
    );
    assert_matches(
        &inv_ld.value().to_f64s().unwrap(),
        &reference.get("inverse_log_det").1,
        tol,
        &format!("{label} inverse_log_det"),
    );
    let z = tape.constant(reference.tensor(&cpu, "z"));
    let (x, fwd_ld) = model.forward(&z, None).unwrap();
    assert_matches(
        &x.value().to_f64s().unwrap(),
        &reference.get("z_to_x").1,
        tol,
        &format!("{label} z_to_x"),
    );
    assert_matches(
        &fwd_ld.value().to_f64s().unwrap(),
        &reference.get("forward_log_det").1,
        tol,
        &format!("{label} forward_log_det"),
    );
}

fn imported<E: Element>() -> flow_layers::NormalizingFlow<Cpu<E>> {
    import_normflows(
        &Cpu::<E>::new(),
        &fixture("normflows_realnvp_swap2.safetensors"),
        ImportOptions::default(),
    )
    .unwrap()
}

#[test]
fn imported_model_matches_normflows_in_f64() {
    check_all(&imported::<f64>(), 1e-9, "f64");
}

#[test]
fn imported_model_matches_normflows_in_f32() {
    check_all(&imported::<f32>(), 1e-4, "f32");
}

#[test]
fn checkpoint_round_trip_keeps_every_digit() {
    // Saved from the f32 model (normflows' weights are float32), loaded in f64.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("imported.safetensors");
    checkpoint::save(&imported::<f32>(), &path, &[]).unwrap();
    let loaded = checkpoint::load(&Cpu::<f64>::new(), &path).unwrap();
    check_all(&loaded, 1e-9, "checkpoint f64");
    assert_eq!(loaded.spec(), imported::<f64>().spec());
}

#[test]
fn imported_architecture_is_normflows_example() {
    let model = imported::<f64>();
    assert_eq!(model.dim(), 2);
    assert_eq!(
        model.params().num_scalars(),
        2 * (64 + 64 + 64 * 64 + 64 + 2 * 64 + 2) + 4
    );
    let names: Vec<&str> = model.params().iter().map(|(_, n, _)| n).collect();
    assert!(
        names.contains(&"flows.2.flows.1.param_map.net.4.weight"),
        "{names:?}"
    );
}
