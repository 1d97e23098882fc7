//! `Fit`: training on one's own rows with the command's defaults.

use flow_core::{rng, Cpu, Tensor};
use flow_train::checkpoint;
use flow_train::fit::Fit;
use rand_distr::{Distribution, StandardNormal};

/// `n` rows of a correlated 2-D Gaussian (x1 = 2 e1 + 1, x2 = 0.5 x1 + 0.3 e2), whose entropy
/// is log(2 pi e) + log(2 * 0.3) nats.
fn gaussian_rows(n: usize, seed: u64) -> (Vec<f64>, f64) {
    let mut r = rng(seed);
    let rows = (0..n)
        .flat_map(|_| {
            let (e1, e2): (f64, f64) =
                (StandardNormal.sample(&mut r), StandardNormal.sample(&mut r));
            let x1 = 2.0 * e1 + 1.0;
            [x1, 0.5 * x1 + 0.3 * e2]
        })
        .collect();
    let entropy = (2.0 * std::f64::consts::PI * std::f64::consts::E).ln() + (2.0f64 * 0.3).ln();
    (rows, entropy)
}

#[test]
fn a_gaussian_is_learnt_to_its_entropy_and_scored_in_the_data_units() {
    let (rows, entropy) = gaussian_rows(5000, 1);
    let cpu = Cpu::<f64>::new();
    let fitted = Fit {
        iters: 1500,
        batch: 256,
        ..Fit::default()
    }
    .rows(&cpu, &rows, 2)
    .unwrap();
    let (nll, se) = fitted.test_nll;
    println!("test NLL {nll:.4} ± {se:.4}, entropy {entropy:.4}");
    // 500 test rows: the NLL is the entropy within a few standard errors (and a little fit).
    assert!(
        (nll - entropy).abs() < 4.0 * se + 0.03,
        "{nll} vs {entropy}"
    );
    assert!(fitted.report.best.is_some());
    // log p of rows in the data's units: a Gaussian's density at its mean is known.
    let peak = fitted.log_prob(&[1.0, 0.5]).unwrap()[0];
    let exact = -(2.0 * std::f64::consts::PI).ln() - (2.0f64 * 0.3).ln();
    assert!((peak - exact).abs() < 0.1, "{peak} vs {exact}");
}

#[test]
fn checkpoints_reload_to_the_same_densities_and_resume() {
    let (rows, _) = gaussian_rows(600, 2);
    let cpu = Cpu::<f32>::new();
    let dir = tempfile::tempdir().unwrap();
    let fitted = Fit {
        iters: 120,
        batch: 64,
        checkpoint_every: 50,
        ..Fit::default()
    }
    .checkpoints(dir.path().join("run"))
    .rows(&cpu, &rows, 2)
    .unwrap();
    let best = checkpoint::load_run(&cpu, &dir.path().join("run/best.safetensors")).unwrap();
    let x = fitted.inputs(&rows[..20]).unwrap();
    assert_eq!(
        best.model.log_prob(&x, None).unwrap().to_vec().unwrap(),
        fitted.model.log_prob(&x, None).unwrap().to_vec().unwrap()
    );
    assert_eq!(best.preprocess, fitted.preprocess);
    let last = checkpoint::load_run(&cpu, &dir.path().join("run/checkpoint.safetensors")).unwrap();
    assert_eq!(last.resume.expect("a resumable checkpoint").step, 120);
    // `save` writes what the loader reads.
    let path = dir.path().join("mine.safetensors");
    fitted.save(&path).unwrap();
    let again = checkpoint::load_run(&cpu, &path).unwrap();
    assert_eq!(
        again.model.log_prob(&x, None).unwrap().to_vec().unwrap(),
        fitted.model.log_prob(&x, None).unwrap().to_vec().unwrap()
    );
}

#[test]
fn a_tensor_trains_as_its_rows() {
    let (rows, _) = gaussian_rows(300, 3);
    let cpu = Cpu::<f64>::new();
    let fit = Fit {
        iters: 40,
        batch: 32,
        ..Fit::default()
    };
    let a = fit.rows(&cpu, &rows, 2).unwrap();
    let b = fit
        .tensor(&Tensor::from_f64s(&cpu, (300, 2), &rows).unwrap())
        .unwrap();
    assert_eq!(a.test_nll, b.test_nll);
}

#[test]
fn rows_that_are_not_whole_are_refused() {
    let cpu = Cpu::<f64>::new();
    let err = Fit::default().rows(&cpu, &[1.0, 2.0, 3.0], 2).unwrap_err();
    assert!(err.to_string().contains("not whole rows of 2"), "{err}");
    let fitted_err = Fit::default().rows(&cpu, &[], 0).unwrap_err();
    assert!(
        fitted_err.to_string().contains("0 features"),
        "{fitted_err}"
    );
}
