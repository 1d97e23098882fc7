//! `Tensor::finite_probe` on the CPU: exactly 0 when every entry is finite (however large),
//! not finite when any entry is NaN or infinite, at any position (the lanes and the tail).

use flow_core::{Backend, Cpu, Element, Tensor};

fn probe<B: Backend>(backend: &B, rows: usize, cols: usize, values: &[f64]) -> f64 {
    Tensor::from_f64s(backend, (rows, cols), values)
        .unwrap()
        .finite_probe()
        .unwrap()
        .scalar_value()
        .unwrap()
        .as_f64()
}

fn check<B: Backend>(backend: &B, max: f64) {
    for (rows, cols) in [(0, 3), (1, 1), (1, 15), (2, 8), (3, 11), (5, 7), (40, 2)] {
        let n = rows * cols;
        let mut values: Vec<f64> = (0..n).map(|i| (i as f64 - 3.0) * 0.37).collect();
        assert_eq!(probe(backend, rows, cols, &values), 0.0);
        // Huge finite values: a sum would overflow, the probe does not.
        values
            .iter_mut()
            .for_each(|v| *v = if *v < 0.0 { -max } else { max });
        assert_eq!(probe(backend, rows, cols, &values), 0.0, "{rows} x {cols}");
        for at in 0..n {
            for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                let mut v = values.clone();
                v[at] = bad;
                let p = probe(backend, rows, cols, &v);
                assert!(!p.is_finite(), "{bad} at {at} of {rows} x {cols}: {p}");
            }
        }
    }
}

#[test]
fn the_cpu_probe_is_zero_exactly_when_all_entries_are_finite() {
    check(&Cpu::<f64>::new(), f64::MAX);
    check(&Cpu::<f32>::new(), f32::MAX as f64);
}

#[test]
fn probes_add() {
    let cpu = Cpu::<f64>::new();
    let a = Tensor::from_vec(&cpu, (1, 2), vec![1.0, 2.0]).unwrap();
    let b = Tensor::from_vec(&cpu, (2, 1), vec![3.0, f64::NAN]).unwrap();
    let both = a
        .finite_probe()
        .unwrap()
        .add(&b.finite_probe().unwrap())
        .unwrap();
    assert!(both.scalar_value().unwrap().is_nan());
    let again = a
        .finite_probe()
        .unwrap()
        .add(&a.finite_probe().unwrap())
        .unwrap();
    assert_eq!(again.scalar_value().unwrap(), 0.0);
}
