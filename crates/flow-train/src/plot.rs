//! PNG plots for training runs: density heat maps, loss curves and sample scatters.
//!
//! Everything is drawn with `plotters`' bitmap backend so no external tools are needed.
//! Errors never panic: bad input is reported as [`PlotError::Input`] and any drawing or
//! encoding failure as [`PlotError::Draw`], both naming the output path.

use std::path::{Path, PathBuf};

use plotters::coord::types::{RangedCoordf64, RangedCoordi64};
use plotters::coord::Shift;
use plotters::prelude::*;

/// Font family for all text; resolved through fontconfig by the `ttf` feature.
const FONT: &str = "sans-serif";

/// Target side length in pixels of the square plotting area of one density panel.
const PANEL_W: u32 = 480;
const PANEL_H: u32 = 520;

const LOSS_SIZE: (u32, u32) = (900, 540);
const SCATTER_SIZE: (u32, u32) = (640, 640);

/// Raw loss colour: muted so the moving average drawn over it stands out.
const LOSS_COLOUR: RGBColor = RGBColor(120, 160, 220);
/// Moving-average colour.
const AVG_COLOUR: RGBColor = RGBColor(214, 39, 40);
/// Reference data colour (drawn underneath).
const DATA_COLOUR: RGBColor = RGBColor(31, 119, 180);
/// Model sample colour (drawn on top).
const SAMPLE_COLOUR: RGBColor = RGBColor(255, 127, 14);

/// A log-density evaluated on a regular n x n grid over [x_min,x_max] x [y_min,y_max].
/// `log_density[iy * n + ix]` is the value at x = x_min + (ix + 0.5) * (x_max - x_min) / n,
/// y = y_min + (iy + 0.5) * (y_max - y_min) / n (cell centres; iy = 0 is the bottom row).
#[derive(Clone, Debug)]
pub struct DensityGrid {
    /// `(x_min, x_max)` of the grid.
    pub x_range: (f64, f64),
    /// `(y_min, y_max)` of the grid.
    pub y_range: (f64, f64),
    /// Number of cells along each axis.
    pub n: usize,
    /// `n * n` log-density values, row-major with y outer (see the type docs).
    pub log_density: Vec<f64>,
}

impl DensityGrid {
    /// The cell-centre coordinates in the order of `log_density` (row-major, y outer), as
    /// (x, y) pairs. Used by callers to evaluate a model.
    pub fn points(x_range: (f64, f64), y_range: (f64, f64), n: usize) -> Vec<[f64; 2]> {
        let centre = |(lo, hi): (f64, f64), i: usize| lo + (i as f64 + 0.5) * (hi - lo) / n as f64;
        let mut out = Vec::with_capacity(n * n);
        for iy in 0..n {
            let y = centre(y_range, iy);
            for ix in 0..n {
                out.push([centre(x_range, ix), y]);
            }
        }
        out
    }

    /// The log of a histogram density estimate from 2-D `samples` (`[x, y]` rows) on the
    /// grid's cells: for targets with no closed-form density. Empty cells are `-inf`.
    pub fn from_samples(
        x_range: (f64, f64),
        y_range: (f64, f64),
        n: usize,
        samples: &[[f64; 2]],
    ) -> Self {
        let mut counts = vec![0usize; n * n];
        let cell = |v: f64, (lo, hi): (f64, f64)| {
            let t = (v - lo) / (hi - lo) * n as f64;
            (t >= 0.0 && t < n as f64).then_some(t as usize)
        };
        for p in samples {
            if let (Some(ix), Some(iy)) = (cell(p[0], x_range), cell(p[1], y_range)) {
                counts[iy * n + ix] += 1;
            }
        }
        let area = (x_range.1 - x_range.0) * (y_range.1 - y_range.0) / (n * n) as f64;
        let total = samples.len().max(1) as f64;
        DensityGrid {
            x_range,
            y_range,
            n,
            log_density: counts
                .iter()
                .map(|&c| (c as f64 / (total * area)).ln())
                .collect(),
        }
    }
}

/// Why a plot could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// plotters failed to draw, find a font or encode/write the PNG.
    #[error("plot {path}: {message}")]
    Draw {
        /// The output file.
        path: PathBuf,
        /// The underlying plotters error, as text (its type is generic over the backend).
        message: String,
    },
    /// The input cannot be plotted (e.g. grid length != n*n, no panels, empty data).
    #[error("plot {path}: {message}")]
    Input {
        /// The output file.
        path: PathBuf,
        /// What is wrong with the input.
        message: String,
    },
}

fn input_err(path: &Path, message: impl Into<String>) -> PlotError {
    PlotError::Input {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Maps any plotters error into [`PlotError::Draw`]; the error types are generic over the
/// backend, so the message is kept as text.
fn draw_err<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> PlotError + '_ {
    move |e| PlotError::Draw {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Rejects ranges plotters cannot map (empty, reversed or non-finite).
fn check_range(path: &Path, axis: &str, (lo, hi): (f64, f64)) -> Result<(), PlotError> {
    if lo.is_finite() && hi.is_finite() && lo < hi && (hi - lo).is_finite() {
        Ok(())
    } else {
        Err(input_err(
            path,
            format!("{axis} range ({lo}, {hi}) must be finite with min < max"),
        ))
    }
}

/// Largest font size (down to 10) at which `text` fits in `max_width` pixels, so long
/// titles shrink instead of spilling into the neighbouring panel.
fn fitting_font_size(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    text: &str,
    start: u32,
    max_width: u32,
) -> u32 {
    let mut size = start;
    while size > 10 {
        match area.estimate_text_size(text, &TextStyle::from((FONT, size as f64))) {
            Ok((w, _)) if w <= max_width => break,
            // On a font error keep the size: the real draw call will report it.
            Err(_) => break,
            Ok(_) => size -= 1,
        }
    }
    size
}

/// Side-by-side heat maps of the *density* exp(log_density), one panel per (title, grid), in
/// a single PNG.
///
/// Each panel is square (about 400x400 px of plotting area), titled, with axes labelled x and
/// y and ticks over the grid's ranges. Colour is the viridis colormap normalised per panel to
/// that panel's maximum density (so colours are relative, not comparable across panels);
/// non-finite log-densities are drawn as the lowest colour.
///
/// Returns [`PlotError::Input`] if `panels` is empty, a grid has `n == 0`, a length other
/// than `n * n`, or an invalid range.
pub fn density_panels(path: &Path, panels: &[(String, DensityGrid)]) -> Result<(), PlotError> {
    if panels.is_empty() {
        return Err(input_err(path, "no density panels to draw"));
    }
    for (title, grid) in panels {
        if grid.n == 0 {
            return Err(input_err(path, format!("panel {title:?}: grid has n = 0")));
        }
        let expected = grid.n.checked_mul(grid.n);
        if expected != Some(grid.log_density.len()) {
            return Err(input_err(
                path,
                format!(
                    "panel {title:?}: log_density has {} values, expected n*n = {}*{}",
                    grid.log_density.len(),
                    grid.n,
                    grid.n
                ),
            ));
        }
        check_range(path, "x", grid.x_range)?;
        check_range(path, "y", grid.y_range)?;
    }

    let width = u32::try_from(panels.len())
        .ok()
        .and_then(|k| k.checked_mul(PANEL_W))
        .ok_or_else(|| input_err(path, "too many panels"))?;
    let root = BitMapBackend::new(path, (width, PANEL_H)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err(path))?;
    let areas = root.split_evenly((1, panels.len()));
    for (area, (title, grid)) in areas.iter().zip(panels) {
        draw_density_panel(path, area, title, grid)?;
    }
    root.present().map_err(draw_err(path))
}

fn draw_density_panel(
    path: &Path,
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    title: &str,
    grid: &DensityGrid,
) -> Result<(), PlotError> {
    const MARGIN: u32 = 12;
    const X_LABELS: u32 = 45;
    const Y_LABELS: u32 = 60;

    let size = fitting_font_size(area, title, 22, PANEL_W - 2 * MARGIN);
    let body = area
        .titled(title, (FONT, size as f64))
        .map_err(draw_err(path))?;

    // Pad the longer side so the plotting area comes out exactly square.
    let (bw, bh) = body.dim_in_pixel();
    let plot_w = bw.saturating_sub(2 * MARGIN + Y_LABELS);
    let plot_h = bh.saturating_sub(2 * MARGIN + X_LABELS);
    let side = plot_w.min(plot_h);
    let (extra_x, extra_y) = (plot_w - side, plot_h - side);

    let (x0, x1) = grid.x_range;
    let (y0, y1) = grid.y_range;
    let mut chart = ChartBuilder::on(&body)
        .margin_left(MARGIN + extra_x / 2)
        .margin_right(MARGIN + extra_x - extra_x / 2)
        .margin_top(MARGIN + extra_y / 2)
        .margin_bottom(MARGIN + extra_y - extra_y / 2)
        .x_label_area_size(X_LABELS)
        .y_label_area_size(Y_LABELS)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(draw_err(path))?;

    // Normalise by the largest finite log-density: exp(v - max) is density / max density
    // and cannot overflow even for huge log-densities.
    let max = grid
        .log_density
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f64::NEG_INFINITY, f64::max);
    let colours: Vec<RGBColor> = grid
        .log_density
        .iter()
        .map(|&v| {
            let t = if v.is_finite() && max.is_finite() {
                (v - max).exp().clamp(0.0, 1.0)
            } else {
                0.0
            };
            ViridisRGB::get_color(t)
        })
        .collect();

    // Fill pixel by pixel in screen coordinates: every pixel gets exactly the colour of the
    // cell containing its centre, with no seams or overdraw, and it is much cheaper than
    // rasterising n*n rectangles.
    let pixels = chart.plotting_area().strip_coord_spec();
    let (w, h) = pixels.dim_in_pixel();
    let n = grid.n;
    let cell = |p: u32, len: u32| (((p as f64 + 0.5) / len as f64 * n as f64) as usize).min(n - 1);
    let cols: Vec<usize> = (0..w).map(|px| cell(px, w)).collect();
    for py in 0..h {
        // Screen y grows downwards while iy = 0 is the bottom row.
        let iy = cell(h - 1 - py, h);
        let row = &colours[iy * n..(iy + 1) * n];
        for (px, &ix) in cols.iter().enumerate() {
            pixels
                .draw_pixel((px as i32, py as i32), &row[ix])
                .map_err(draw_err(path))?;
        }
    }

    // Axes and ticks only: grid lines would obscure the heat map.
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("x")
        .y_desc("y")
        .x_labels(6)
        .y_labels(6)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(draw_err(path))?;
    Ok(())
}

/// Splits `(x, y)` points into runs of consecutive finite `y`, so that non-finite values
/// show as gaps instead of breaking or distorting the line.
fn finite_runs<X>(points: impl Iterator<Item = (X, f64)>) -> Vec<Vec<(X, f64)>> {
    let mut runs = Vec::new();
    let mut current = Vec::new();
    for (x, y) in points {
        if y.is_finite() {
            current.push((x, y));
        } else if !current.is_empty() {
            runs.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs
}

/// Trailing moving average over the finite entries of the last `window` values; NaN where
/// the window holds no finite value (or the mean overflows).
fn moving_average(xs: &[f64], window: usize) -> Vec<f64> {
    let window = window.max(1);
    let mut out = Vec::with_capacity(xs.len());
    let (mut sum, mut count) = (0.0_f64, 0_usize);
    for i in 0..xs.len() {
        let lo = (i + 1).saturating_sub(window);
        if i % window == 0 {
            // Recompute from scratch once per window so the running sum cannot drift
            // (e.g. after subtracting a huge early loss), keeping the total cost O(len).
            (sum, count) = xs[lo..=i]
                .iter()
                .filter(|v| v.is_finite())
                .fold((0.0, 0), |(s, c), v| (s + v, c + 1));
        } else {
            if xs[i].is_finite() {
                sum += xs[i];
                count += 1;
            }
            if lo > 0 && xs[lo - 1].is_finite() {
                sum -= xs[lo - 1];
                count -= 1;
            }
        }
        out.push(if count > 0 {
            sum / count as f64
        } else {
            f64::NAN
        });
    }
    out
}

/// Draws each run as a line; single-point runs (isolated finite values) as a dot, since a
/// one-point line would be invisible.
fn draw_runs<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordi64, RangedCoordf64>>,
    path: &Path,
    runs: Vec<Vec<(i64, f64)>>,
    style: ShapeStyle,
    label: &str,
) -> Result<(), PlotError> {
    let mut labelled = false;
    for run in runs {
        let anno = if run.len() == 1 {
            chart
                .draw_series(run.into_iter().map(|p| Circle::new(p, 2, style.filled())))
                .map_err(draw_err(path))?
        } else {
            chart
                .draw_series(LineSeries::new(run, style))
                .map_err(draw_err(path))?
        };
        // Label only one series so the legend has a single entry per curve.
        if !labelled {
            labelled = true;
            anno.label(label).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], style.stroke_width(2))
            });
        }
    }
    Ok(())
}

/// The training loss per iteration as a line; non-finite entries are skipped (gaps), and a
/// moving average (window = max(1, len/50)) drawn over it in a second colour, with a legend.
/// Axes: "iteration" (0-based index into `losses`), "loss".
///
/// Returns [`PlotError::Input`] when `losses` is empty or has no finite entry, since there is
/// nothing to scale the axes to; a caller plotting at the end of a diverged run can log it.
pub fn loss_curve(path: &Path, title: &str, losses: &[f64]) -> Result<(), PlotError> {
    let (lo, hi) = losses
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if losses.is_empty() {
        return Err(input_err(path, "no losses to plot"));
    }
    if lo > hi {
        return Err(input_err(path, "no finite losses to plot"));
    }
    let span = hi - lo;
    if !span.is_finite() {
        return Err(input_err(path, "loss range too large to plot"));
    }
    // A little headroom so the curve does not sit on the frame; a flat curve gets a band.
    let pad = if span > 0.0 {
        0.05 * span
    } else {
        (0.1 * lo.abs()).max(1e-3)
    };
    // Integer x coordinates so the ticks are whole iterations even for short runs.
    let x_max = (losses.len() - 1).max(1) as i64;

    let root = BitMapBackend::new(path, LOSS_SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err(path))?;
    let size = fitting_font_size(&root, title, 24, LOSS_SIZE.0 - 40);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, size as f64))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0..x_max, (lo - pad)..(hi + pad))
        .map_err(draw_err(path))?;
    chart
        .configure_mesh()
        .x_desc("iteration")
        .y_desc("loss")
        .light_line_style(RGBColor(245, 245, 245))
        .bold_line_style(RGBColor(210, 210, 210))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 17))
        .draw()
        .map_err(draw_err(path))?;

    let raw = finite_runs(losses.iter().enumerate().map(|(i, &v)| (i as i64, v)));
    draw_runs(&mut chart, path, raw, LOSS_COLOUR.stroke_width(1), "loss")?;

    let window = (losses.len() / 50).max(1);
    let avg = moving_average(losses, window);
    let avg = finite_runs(avg.iter().enumerate().map(|(i, &v)| (i as i64, v)));
    let label = format!("moving average ({window})");
    draw_runs(&mut chart, path, avg, AVG_COLOUR.stroke_width(2), &label)?;

    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 15))
        .draw()
        .map_err(draw_err(path))?;
    root.present().map_err(draw_err(path))
}

/// Scatter of 2-D model samples (small dots) over reference data in another colour (if
/// given), over the given ranges, with a legend ("samples", "data"). One PNG, 640x640.
///
/// Points that are non-finite or outside the ranges are skipped. Empty `samples` are not an
/// error (the axes and legend are still drawn); invalid ranges give [`PlotError::Input`].
pub fn samples_scatter(
    path: &Path,
    title: &str,
    samples: &[[f64; 2]],
    reference: Option<&[[f64; 2]]>,
    x_range: (f64, f64),
    y_range: (f64, f64),
) -> Result<(), PlotError> {
    check_range(path, "x", x_range)?;
    check_range(path, "y", y_range)?;
    // Filtering here rather than relying on clipping keeps stray samples (common early in
    // training) from being drawn over the axes.
    let inside = |p: &&[f64; 2]| {
        (x_range.0..=x_range.1).contains(&p[0]) && (y_range.0..=y_range.1).contains(&p[1])
    };

    let root = BitMapBackend::new(path, SCATTER_SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err(path))?;
    let size = fitting_font_size(&root, title, 24, SCATTER_SIZE.0 - 40);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, size as f64))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(x_range.0..x_range.1, y_range.0..y_range.1)
        .map_err(draw_err(path))?;
    chart
        .configure_mesh()
        .x_desc("x")
        .y_desc("y")
        .light_line_style(RGBColor(247, 247, 247))
        .bold_line_style(RGBColor(215, 215, 215))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 17))
        .draw()
        .map_err(draw_err(path))?;

    // Translucent dots so dense regions read darker; data first so samples sit on top.
    if let Some(reference) = reference {
        let style = DATA_COLOUR.mix(0.45).filled();
        chart
            .draw_series(
                reference
                    .iter()
                    .filter(inside)
                    .map(|p| Circle::new((p[0], p[1]), 2, style)),
            )
            .map_err(draw_err(path))?
            .label("data")
            .legend(|(x, y)| Circle::new((x + 10, y), 4, DATA_COLOUR.filled()));
    }
    let style = SAMPLE_COLOUR.mix(0.55).filled();
    chart
        .draw_series(
            samples
                .iter()
                .filter(inside)
                .map(|p| Circle::new((p[0], p[1]), 2, style)),
        )
        .map_err(draw_err(path))?
        .label("samples")
        .legend(|(x, y)| Circle::new((x + 10, y), 4, SAMPLE_COLOUR.filled()));

    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 15))
        .draw()
        .map_err(draw_err(path))?;
    root.present().map_err(draw_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_average_matches_direct_mean() {
        let xs: Vec<f64> = (0..103)
            .map(|i| {
                if i % 7 == 3 {
                    f64::NAN
                } else {
                    (i * i % 13) as f64
                }
            })
            .collect();
        for window in [1, 2, 5, 10, 200] {
            let got = moving_average(&xs, window);
            for (i, g) in got.iter().enumerate() {
                let lo = (i + 1).saturating_sub(window);
                let fin: Vec<f64> = xs[lo..=i]
                    .iter()
                    .copied()
                    .filter(|v| v.is_finite())
                    .collect();
                if fin.is_empty() {
                    assert!(g.is_nan());
                } else {
                    let want = fin.iter().sum::<f64>() / fin.len() as f64;
                    assert!((g - want).abs() < 1e-9, "w={window} i={i}: {g} vs {want}");
                }
            }
        }
    }

    #[test]
    fn finite_runs_split_on_nan() {
        let runs = finite_runs(
            [1.0, f64::NAN, 2.0, 3.0, f64::INFINITY]
                .iter()
                .enumerate()
                .map(|(i, &v)| (i as f64, v)),
        );
        assert_eq!(runs, vec![vec![(0.0, 1.0)], vec![(2.0, 2.0), (3.0, 3.0)]]);
    }
}
