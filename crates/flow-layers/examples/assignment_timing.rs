//! Times the exact assignment solver on OT-CFM's costs (squared distances between a
//! standard normal batch and a shifted one): `cargo run --release -p flow-layers --example
//! assignment_timing -- 256 2000`.
fn main() {
    for n in std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().expect("sizes"))
    {
        let mut r = flow_core::rng(n as u64);
        let a = flow_core::random::standard_normals(2 * n, &mut r);
        let b = flow_core::random::standard_normals(2 * n, &mut r);
        let cost: Vec<f64> = (0..n * n)
            .map(|k| {
                let (i, j) = (k / n, k % n);
                (a[2 * i] - b[2 * j] - 1.0).powi(2) + (a[2 * i + 1] - b[2 * j + 1]).powi(2)
            })
            .collect();
        let start = std::time::Instant::now();
        let reps = (200_000 / n).max(1);
        for _ in 0..reps {
            std::hint::black_box(flow_layers::assignment::solve(&cost, n).unwrap());
        }
        println!(
            "n = {n}: {:.3} ms per solve",
            start.elapsed().as_secs_f64() * 1e3 / reps as f64
        );
    }
}
