//! Integration tests for `flow_train::plot`: each plot is written to a temporary directory and
//! checked to be a non-trivial PNG; bad input must give `PlotError::Input`, never a panic.
//!
//! Set `FLOW_PLOT_CHECK_DIR=/some/dir` to also keep copies of the images for eyeballing.

use std::path::{Path, PathBuf};
use std::time::Instant;

use flow_train::plot::{density_panels, loss_curve, samples_scatter, DensityGrid, PlotError};

const PNG_MAGIC: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];

/// Asserts `path` is a PNG of at least `min_bytes`, and copies it to the check dir if asked.
fn assert_png(path: &Path, min_bytes: usize) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.starts_with(&PNG_MAGIC),
        "{} is not a PNG",
        path.display()
    );
    assert!(
        bytes.len() > min_bytes,
        "{} is only {} bytes",
        path.display(),
        bytes.len()
    );
    if let Some(dir) = std::env::var_os("FLOW_PLOT_CHECK_DIR") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(path, dir.join(path.file_name().unwrap())).unwrap();
    }
}

/// Log-density of an equal mixture of two isotropic Gaussians at (-1.5, 0) and (1.5, 1).
fn mixture_log_density(p: [f64; 2]) -> f64 {
    let comp = |mx: f64, my: f64, s: f64| {
        let (dx, dy) = ((p[0] - mx) / s, (p[1] - my) / s);
        -0.5 * (dx * dx + dy * dy) - (2.0 * std::f64::consts::PI * s * s).ln()
    };
    let (a, b) = (comp(-1.5, 0.0, 0.6), comp(1.5, 1.0, 0.9));
    let m = a.max(b);
    m + ((a - m).exp() * 0.5 + (b - m).exp() * 0.5).ln()
}

fn grid_of(f: impl Fn([f64; 2]) -> f64, n: usize) -> DensityGrid {
    let (x_range, y_range) = ((-4.0, 4.0), (-3.0, 4.0));
    DensityGrid {
        x_range,
        y_range,
        n,
        log_density: DensityGrid::points(x_range, y_range, n)
            .into_iter()
            .map(f)
            .collect(),
    }
}

/// Deterministic pseudo-random normals (Box-Muller on an LCG) so the tests need no RNG crate.
fn normals(count: usize, seed: u64) -> Vec<f64> {
    let mut state = seed;
    let mut uniform = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..count)
        .map(|_| {
            let (u, v) = (uniform(), uniform());
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        })
        .collect()
}

fn mixture_samples(count: usize, seed: u64, jitter: f64) -> Vec<[f64; 2]> {
    let z = normals(2 * count, seed);
    (0..count)
        .map(|i| {
            let (mx, my, s) = if i % 2 == 0 {
                (-1.5, 0.0, 0.6)
            } else {
                (1.5, 1.0, 0.9)
            };
            [mx + s * jitter * z[2 * i], my + s * jitter * z[2 * i + 1]]
        })
        .collect()
}

#[test]
fn points_are_cell_centres_row_major_from_bottom_left() {
    let pts = DensityGrid::points((0.0, 4.0), (-2.0, 2.0), 4);
    assert_eq!(pts.len(), 16);
    // Bottom-left cell centre, then one step (cell width 1) in x.
    assert_eq!(pts[0], [0.5, -1.5]);
    assert_eq!(pts[1], [1.5, -1.5]);
    // Start of the second row: back to the first column, one step up in y.
    assert_eq!(pts[4], [0.5, -0.5]);
    // Top-right cell centre last.
    assert_eq!(pts[15], [3.5, 1.5]);
    assert!(DensityGrid::points((0.0, 1.0), (0.0, 1.0), 0).is_empty());
}

#[test]
fn density_panels_writes_png_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("density_panels.png");
    let target = grid_of(mixture_log_density, 200);
    // A "model" panel: a single broad Gaussian, with a few non-finite values mixed in.
    let mut model = grid_of(
        |p| -0.5 * ((p[0] / 2.0).powi(2) + (p[1] / 1.5).powi(2)),
        200,
    );
    model.log_density[0] = f64::NAN;
    model.log_density[1] = f64::INFINITY;
    model.log_density[2] = f64::NEG_INFINITY;
    let panels = vec![
        ("target density".to_string(), target),
        ("model density (iteration 5000)".to_string(), model),
    ];
    let start = Instant::now();
    density_panels(&path, &panels).unwrap();
    let elapsed = start.elapsed();
    assert_png(&path, 10_000);
    // Generous bound (tests build with opt-level 2); the brief asks for well under 1 s/panel.
    assert!(elapsed.as_secs_f64() < 2.0, "took {elapsed:?}");
}

#[test]
fn density_panels_all_non_finite_and_single_cell_do_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("degenerate.png");
    let nan = DensityGrid {
        x_range: (0.0, 1.0),
        y_range: (0.0, 1.0),
        n: 3,
        log_density: vec![f64::NAN; 9],
    };
    let one = DensityGrid {
        x_range: (-1.0, 1.0),
        y_range: (-1.0, 1.0),
        n: 1,
        log_density: vec![1e300],
    };
    density_panels(&path, &[(String::new(), nan), ("one".into(), one)]).unwrap();
    assert_png(&path, 2_000);
}

#[test]
fn density_panels_rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.png");
    let mut grid = grid_of(mixture_log_density, 10);
    grid.log_density.pop();
    let err = density_panels(&path, &[("short".into(), grid.clone())]).unwrap_err();
    assert!(matches!(err, PlotError::Input { .. }), "{err:?}");
    assert!(err.to_string().contains("bad.png"), "{err}");

    let err = density_panels(&path, &[]).unwrap_err();
    assert!(matches!(err, PlotError::Input { .. }), "{err:?}");

    grid.log_density.push(0.0);
    grid.x_range = (1.0, 1.0);
    let err = density_panels(&path, &[("empty range".into(), grid.clone())]).unwrap_err();
    assert!(matches!(err, PlotError::Input { .. }), "{err:?}");

    grid.x_range = (0.0, 1.0);
    grid.n = 0;
    grid.log_density.clear();
    let err = density_panels(&path, &[("n = 0".into(), grid)]).unwrap_err();
    assert!(matches!(err, PlotError::Input { .. }), "{err:?}");
    assert!(!path.exists(), "no file should be written for bad input");
}

#[test]
fn unwritable_path_is_a_draw_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/loss.png");
    let err = loss_curve(&path, "loss", &[3.0, 2.0, 1.0]).unwrap_err();
    assert!(matches!(err, PlotError::Draw { .. }), "{err:?}");
}

#[test]
fn loss_curve_with_nan_gaps_writes_png() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loss_curve.png");
    let noise = normals(3000, 7);
    let mut losses: Vec<f64> = (0..3000)
        .map(|i| 1.0 + 4.0 * (-(i as f64) / 400.0).exp() + 0.15 * noise[i])
        .collect();
    for i in (1000..1040).chain([1500, 2200]) {
        losses[i] = f64::NAN;
    }
    losses[2500] = f64::INFINITY;
    loss_curve(&path, "training loss (NLL)", &losses).unwrap();
    assert_png(&path, 10_000);
}

#[test]
fn loss_curve_short_and_flat_inputs() {
    let dir = tempfile::tempdir().unwrap();
    for (name, losses) in [
        ("single.png", vec![1.5]),
        ("flat.png", vec![2.0; 10]),
        ("isolated.png", vec![f64::NAN, 1.0, f64::NAN, 2.0, f64::NAN]),
    ] {
        let path = dir.path().join(name);
        loss_curve(&path, name, &losses).unwrap();
        assert_png(&path, 3_000);
    }
}

/// Documented choice: empty or all-non-finite losses give `PlotError::Input` (nothing to
/// scale the axes to), and no file is written.
#[test]
fn loss_curve_empty_or_all_nan_is_input_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nothing.png");
    for losses in [vec![], vec![f64::NAN; 5], vec![f64::INFINITY, f64::NAN]] {
        let err = loss_curve(&path, "loss", &losses).unwrap_err();
        assert!(matches!(err, PlotError::Input { .. }), "{err:?}");
    }
    assert!(!path.exists());
}

#[test]
fn samples_scatter_writes_png() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("samples_scatter.png");
    let data = mixture_samples(2000, 1, 1.0);
    let mut samples = mixture_samples(2000, 2, 1.3);
    // Stray and non-finite samples must be skipped, not drawn over the axes or panic.
    samples.push([100.0, 0.0]);
    samples.push([f64::NAN, 0.0]);
    samples_scatter(
        &path,
        "samples vs data",
        &samples,
        Some(&data),
        (-4.0, 4.0),
        (-3.0, 4.0),
    )
    .unwrap();
    assert_png(&path, 10_000);
}

#[test]
fn samples_scatter_edge_cases() {
    let dir = tempfile::tempdir().unwrap();
    // Empty samples and no reference still draw the axes and legend.
    let path = dir.path().join("empty_scatter.png");
    samples_scatter(&path, "empty", &[], None, (0.0, 1.0), (0.0, 1.0)).unwrap();
    assert_png(&path, 3_000);

    let path = dir.path().join("bad_scatter.png");
    for (xr, yr) in [((1.0, 0.0), (0.0, 1.0)), ((0.0, 1.0), (f64::NAN, 1.0))] {
        let err = samples_scatter(&path, "bad", &[[0.5, 0.5]], None, xr, yr).unwrap_err();
        assert!(matches!(err, PlotError::Input { .. }), "{err:?}");
    }
}

#[test]
fn histogram_grid_estimates_a_uniform_density() {
    // 40,000 points on a regular lattice over [0, 2] x [0, 1]: 200 in each 0.1 x 0.1 cell of
    // the lower half of a 20 x 20 grid on [0, 2] x [0, 2], none in the upper half.
    let pts: Vec<[f64; 2]> = (0..200)
        .flat_map(|i| (0..200).map(move |j| [(i as f64 + 0.5) / 100.0, (j as f64 + 0.5) / 200.0]))
        .collect();
    let grid = DensityGrid::from_samples((0.0, 2.0), (0.0, 2.0), 20, &pts);
    assert_eq!(grid.log_density.len(), 400);
    for iy in 0..20 {
        for ix in 0..20 {
            let v = grid.log_density[iy * 20 + ix];
            if iy < 10 {
                // density 1/2 on the unit-high strip
                assert!((v - 0.5f64.ln()).abs() < 1e-12, "cell ({ix}, {iy}): {v}");
            } else {
                assert_eq!(v, f64::NEG_INFINITY, "cell ({ix}, {iy})");
            }
        }
    }
}
