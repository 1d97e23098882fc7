//! Integration tests for `flows_cli::plot`: each plot is written to a temporary directory and
//! checked to be a non-trivial PNG; bad input must give `PlotError::Input`, never a panic.
//!
//! Set `FLOW_PLOT_CHECK_DIR=/some/dir` to also keep copies of the images for eyeballing.

use std::path::{Path, PathBuf};
use std::time::Instant;

use flows_cli::plot::{
    density_panels, image_grid, image_grid_pixels, loss_curve, pairwise_scatter, samples_scatter,
    training_curves, DensityGrid, PlotError,
};

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

/// Width and height of the PNG at `path`, read from its IHDR chunk (which must come first).
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.len() > 24 && &bytes[12..16] == b"IHDR",
        "{}",
        path.display()
    );
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

/// Asserts `err` is `PlotError::Input` naming `path`'s file and mentioning `what`.
fn assert_input_err(err: PlotError, path: &Path, what: &str) {
    assert!(matches!(err, PlotError::Input { .. }), "{err:?}");
    let text = err.to_string();
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(text.contains(name), "{text} does not name {name}");
    assert!(text.contains(what), "{text} does not mention {what:?}");
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

#[test]
fn training_curves_with_validation_writes_png() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("training_curves.png");
    let noise = normals(2000, 3);
    let mut losses: Vec<f64> = (0..2000)
        .map(|i| 1.0 + 3.0 * (-(i as f64) / 300.0).exp() + 0.2 * noise[i])
        .collect();
    losses[700] = f64::NAN;
    // Unsorted steps, a non-finite value and a final step past the last loss.
    let mut validation: Vec<(usize, f64)> = (1..=8)
        .map(|k| (k * 250, 1.2 + 2.5 * (-(k as f64) * 250.0 / 300.0).exp()))
        .collect();
    validation.swap(0, 3);
    validation[5].1 = f64::NAN;
    validation.push((2100, f64::INFINITY));
    training_curves(&path, "loss and validation NLL", &losses, &validation).unwrap();
    assert_png(&path, 10_000);
    assert_eq!(png_size(&path), (900, 540));

    // No validation is the plain loss curve; validation values alone cannot make up for
    // missing losses.
    let path = dir.path().join("training_no_validation.png");
    training_curves(&path, "loss only", &losses, &[]).unwrap();
    assert_eq!(png_size(&path), (900, 540));
    let path = dir.path().join("only_nan_validation.png");
    training_curves(&path, "nan validation", &[2.0, 1.0], &[(1, f64::NAN)]).unwrap();
    assert_png(&path, 3_000);
    let path = dir.path().join("no_losses.png");
    let err = training_curves(&path, "none", &[], &[(0, 1.0)]).unwrap_err();
    assert_input_err(err, &path, "no losses");
    let err = training_curves(&path, "nan", &[f64::NAN], &[(0, 1.0)]).unwrap_err();
    assert_input_err(err, &path, "no finite losses");
    assert!(!path.exists());
}

/// `rows` rows of `dim` correlated features: feature f = z_0 + 0.5 * f * z_f, scaled.
fn correlated_table(rows: usize, dim: usize, seed: u64, scale: f64) -> Vec<f64> {
    let z = normals(rows * dim, seed);
    let mut out = Vec::with_capacity(rows * dim);
    for r in 0..rows {
        let row = &z[r * dim..(r + 1) * dim];
        for f in 0..dim {
            out.push(scale * (row[0] + 0.5 * f as f64 * row[f]) + f as f64);
        }
    }
    out
}

fn feature_names(dim: usize) -> Vec<String> {
    (0..dim).map(|f| format!("feature_{f}")).collect()
}

#[test]
fn pairwise_scatter_writes_grid_png() {
    let dir = tempfile::tempdir().unwrap();
    let (dim, rows) = (11, 2000);
    let data = correlated_table(rows, dim, 11, 1.0);
    let mut samples = correlated_table(rows, dim, 12, 1.2);
    // Outliers and non-finite samples are not drawn, and must not panic.
    samples[0] = 1e9;
    samples[dim + 1] = f64::NAN;
    samples[2 * dim + 2] = f64::NEG_INFINITY;
    let names = feature_names(dim);

    let path = dir.path().join("pairwise_11.png");
    let start = Instant::now();
    pairwise_scatter(&path, "samples vs data", &samples, &data, dim, &names, 11).unwrap();
    let elapsed = start.elapsed();
    eprintln!("pairwise_scatter 11 features x {rows} rows: {elapsed:?}");
    assert_png(&path, 50_000);
    // 220 px per cell plus the caption/legend strip.
    assert_eq!(png_size(&path), (11 * 220, 11 * 220 + 64));
    assert!(elapsed.as_secs_f64() < 10.0, "took {elapsed:?}");

    // Only the first 4 features; NaN in the data as well.
    let mut data_nan = data.clone();
    data_nan[3] = f64::NAN;
    let path = dir.path().join("pairwise_4.png");
    pairwise_scatter(&path, "first four", &samples, &data_nan, dim, &names, 4).unwrap();
    assert_png(&path, 20_000);
    assert_eq!(png_size(&path), (4 * 220, 4 * 220 + 64));
}

#[test]
fn pairwise_scatter_small_and_degenerate_inputs() {
    let dir = tempfile::tempdir().unwrap();
    // Two features, no samples, a constant feature and a single row all still draw.
    let path = dir.path().join("pairwise_2.png");
    let data = [0.0, 1.0, 0.5, 1.0, 1.0, 1.0];
    pairwise_scatter(&path, "tiny", &[], &data, 2, &feature_names(2), 8).unwrap();
    assert_eq!(png_size(&path), (440, 504));
    let path = dir.path().join("pairwise_1.png");
    pairwise_scatter(&path, "one", &[f64::NAN], &[3.0], 1, &["x".into()], 8).unwrap();
    assert_eq!(png_size(&path), (220, 284));
}

#[test]
fn pairwise_scatter_rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad_pairwise.png");
    let data = correlated_table(10, 3, 1, 1.0);
    let names = feature_names(3);
    let cases: Vec<(&str, Result<(), PlotError>)> = vec![
        ("dim", pairwise_scatter(&path, "t", &[], &data, 0, &[], 3)),
        (
            "not a multiple",
            pairwise_scatter(&path, "t", &data, &data[1..], 3, &names, 3),
        ),
        (
            "not a multiple",
            pairwise_scatter(&path, "t", &data[1..], &data, 3, &names, 3),
        ),
        (
            "feature names",
            pairwise_scatter(&path, "t", &data, &data, 3, &names[..2], 3),
        ),
        (
            "no data",
            pairwise_scatter(&path, "t", &data, &[], 3, &names, 3),
        ),
        (
            "max_features",
            pairwise_scatter(&path, "t", &data, &data, 3, &names, 0),
        ),
        (
            "feature_1",
            pairwise_scatter(&path, "t", &data, &[0.0, f64::NAN, 0.0], 3, &names, 3),
        ),
    ];
    for (what, result) in cases {
        assert_input_err(result.unwrap_err(), &path, what);
    }
    assert!(!path.exists(), "no file should be written for bad input");
}

#[test]
fn image_grid_writes_png_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("image_grid.png");
    // 100 28x28 images: blurry blobs on a dark background, with NaN and out-of-range values.
    let mut images = Vec::with_capacity(100 * 784);
    for n in 0..100 {
        let (cx, cy) = (8.0 + (n % 10) as f64, 8.0 + (n / 10) as f64);
        for r in 0..28 {
            for c in 0..28 {
                let d2 = (c as f64 - cx).powi(2) + (r as f64 - cy).powi(2);
                images.push(1.2 * (-d2 / 40.0).exp() - 0.1);
            }
        }
    }
    images[5] = f64::NAN;
    images[6] = f64::INFINITY;
    let start = Instant::now();
    image_grid(&path, "samples", &images, 28, 28, 10, (0.0, 1.0)).unwrap();
    let elapsed = start.elapsed();
    eprintln!("image_grid 10x10 of 28x28: {elapsed:?}");
    assert_png(&path, 10_000);
    // 3x upscaling: 10 * 84 + 9 * 2 = 858 px of tiles, 10 px margins, a 40 px caption.
    assert_eq!(png_size(&path), (878, 908));
    assert!(elapsed.as_secs_f64() < 3.0, "took {elapsed:?}");

    // Fewer images than columns: one row, no wider than needed (but room for the title).
    let path = dir.path().join("image_grid_two.png");
    image_grid(&path, "two", &images[..2 * 784], 28, 28, 10, (0.0, 1.0)).unwrap();
    assert_eq!(png_size(&path), (320, 84 + 50));
}

#[test]
fn image_grid_pixels_scale_lay_out_and_clamp() {
    // Three 4x4 images in two columns; the first holds a white 2x2 square in its centre.
    let mut images = vec![0.0; 3 * 16];
    for (r, c) in [(1, 1), (1, 2), (2, 1), (2, 2)] {
        images[r * 4 + c] = 2.0;
    }
    images[16] = f64::NAN; // image 1, top-left: black
    images[17] = 1.5; // image 1, (0, 1): mid grey
    images[32 + 15] = -10.0; // image 2, bottom-right: clamped to black
    let raster = image_grid_pixels(&images, 4, 4, 2, (0.0, 2.0)).unwrap();
    // 84 / 4 = 21x upscaling; 2 columns, 2 rows, 2 px gaps.
    assert_eq!(raster.scale, 21);
    assert_eq!((raster.width, raster.height), (2 * 84 + 2, 2 * 84 + 2));
    assert_eq!(raster.pixels.len(), raster.width * raster.height);
    let at = |x, y| raster.get(x, y).unwrap();
    // The white square covers image pixels 1..3, i.e. raster pixels 21..63, of tile 0.
    for (x, y, want) in [
        (21, 21, 255),
        (62, 62, 255),
        (40, 50, 255),
        (20, 40, 0),
        (63, 40, 0),
        (0, 0, 0),
        (83, 83, 0),
        (84, 10, 255), // gap
        (85, 10, 255), // gap
        (86, 0, 0),    // image 1, NaN
        (86 + 21, 0, 191),
        (86 + 20, 20, 0),
        (10, 84, 255),    // gap between the rows
        (83, 86 + 83, 0), // image 2, clamped
        (86, 86, 255),    // after the last image
        (169, 169, 255),
    ] {
        assert_eq!(at(x, y), want, "pixel ({x}, {y})");
    }
    assert_eq!(raster.get(170, 0), None);
}

#[test]
fn image_grid_rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad_grid.png");
    let images = vec![0.5; 2 * 784];
    for (what, result) in [
        (
            "no images",
            image_grid(&path, "t", &[], 28, 28, 10, (0.0, 1.0)),
        ),
        (
            "not a multiple",
            image_grid(&path, "t", &images[1..], 28, 28, 10, (0.0, 1.0)),
        ),
        (
            "range",
            image_grid(&path, "t", &images, 28, 28, 10, (1.0, 0.0)),
        ),
        (
            "range",
            image_grid(&path, "t", &images, 28, 28, 10, (0.0, f64::NAN)),
        ),
        (
            "columns",
            image_grid(&path, "t", &images, 28, 28, 0, (0.0, 1.0)),
        ),
        (
            "image size",
            image_grid(&path, "t", &images, 0, 28, 10, (0.0, 1.0)),
        ),
        (
            "too large",
            image_grid(&path, "t", &vec![0.5; 20_000], 1, 20_000, 1, (0.0, 1.0)),
        ),
    ] {
        assert_input_err(result.unwrap_err(), &path, what);
    }
    assert!(!path.exists(), "no file should be written for bad input");
}
