//! PNG plots for training runs: density heat maps, loss curves and sample scatters.
//!
//! Everything is drawn with `plotters`' bitmap backend so no external tools are needed.
//! Errors never panic: bad input is reported as [`PlotError::Input`] and any drawing or
//! encoding failure as [`PlotError::Draw`], both naming the output path.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::{RangedCoordf64, RangedCoordi64};
use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Font family of all text: DejaVu Sans, compiled into the program (the `dejavu` crate) and
/// registered with plotters' ab_glyph renderer by [`png_area`], so drawing needs no system
/// fonts, fontconfig or FreeType.
const FONT: &str = "DejaVu Sans";

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
/// Validation NLL colour (a third colour next to the loss and moving average).
const VALID_COLOUR: RGBColor = RGBColor(44, 160, 44);

/// A log-density evaluated on a regular n x n grid over `[x_min, x_max] x [y_min, y_max]`.
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

/// The drawing area of a PNG of `size` pixels at `path`, [`FONT`] registered (once per
/// process) before anything is drawn on it.
fn png_area(
    path: &Path,
    size: (u32, u32),
) -> Result<DrawingArea<BitMapBackend<'_>, Shift>, PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let registered = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()
    });
    if !registered {
        return Err(PlotError::Draw {
            path: path.to_path_buf(),
            message: format!("the built-in font {FONT} could not be loaded"),
        });
    }
    Ok(BitMapBackend::new(path, size).into_drawing_area())
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
    let root = png_area(path, (width, PANEL_H))?;
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

/// A cartesian chart on the bitmap backend.
type BitMapChart<'a, 'b, X, Y> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<X, Y>>;

/// The standard single-chart layout shared by [`training_curves`] and [`samples_scatter`]:
/// fills `root` white and builds a chart on it over the ranges (x, y) with `title` as caption
/// (shrunk to fit), margins, label areas and a light mesh with the axis descriptions `descs`
/// = (x, y).
fn captioned_chart<'a, 'b, X, Y>(
    root: &'a DrawingArea<BitMapBackend<'b>, Shift>,
    path: &Path,
    title: &str,
    (x, y): (X, Y),
    y_label_area: u32,
    descs: (&str, &str),
) -> Result<BitMapChart<'a, 'b, X::CoordDescType, Y::CoordDescType>, PlotError>
where
    X: AsRangedCoord,
    Y: AsRangedCoord,
    X::CoordDescType: ValueFormatter<X::Value>,
    Y::CoordDescType: ValueFormatter<Y::Value>,
{
    root.fill(&WHITE).map_err(draw_err(path))?;
    let (width, _) = root.dim_in_pixel();
    let size = fitting_font_size(root, title, 24, width.saturating_sub(40));
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, size as f64))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(y_label_area)
        .build_cartesian_2d(x, y)
        .map_err(draw_err(path))?;
    chart
        .configure_mesh()
        .x_desc(descs.0)
        .y_desc(descs.1)
        .light_line_style(RGBColor(246, 246, 246))
        .bold_line_style(RGBColor(212, 212, 212))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 17))
        .draw()
        .map_err(draw_err(path))?;
    Ok(chart)
}

/// Draws the legend of the labelled series in the upper right corner.
fn draw_legend<'a, 'b: 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, BitMapBackend<'b>, CT>,
    path: &Path,
) -> Result<(), PlotError> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 15))
        .draw()
        .map_err(draw_err(path))
}

/// The training loss per iteration as a line; non-finite entries are skipped (gaps), and a
/// moving average (window = max(1, len/50)) drawn over it in a second colour, with a legend.
/// Axes: "iteration" (0-based index into `losses`), "loss". Same as [`training_curves`] with
/// no validation points.
///
/// Returns [`PlotError::Input`] when `losses` is empty or has no finite entry, since there is
/// nothing to scale the axes to; a caller plotting at the end of a diverged run can log it.
pub fn loss_curve(path: &Path, title: &str, losses: &[f64]) -> Result<(), PlotError> {
    training_curves(path, title, losses, &[])
}

/// The training loss per iteration (raw, muted, with a moving average over it, as
/// [`loss_curve`]) and the validation NLL at the given `(step, value)` points, drawn as a
/// line with markers in a third colour on the same axes. Legend: "loss", "moving average
/// (w)", "validation NLL" (the last only when there are finite validation points). One PNG,
/// 900x540. Axes: "iteration", "loss"; the x axis extends to the last validation step when
/// it lies past the last loss.
///
/// Non-finite losses are gaps in the loss curves; non-finite validation values are skipped
/// (the line joins their neighbours), as are steps beyond `i64::MAX`. The points are drawn in
/// step order. Returns [`PlotError::Input`] when `losses` is empty or has no finite entry.
pub fn training_curves(
    path: &Path,
    title: &str,
    losses: &[f64],
    validation: &[(usize, f64)],
) -> Result<(), PlotError> {
    if losses.is_empty() {
        return Err(input_err(path, "no losses to plot"));
    }
    let finite_range = |values: &mut dyn Iterator<Item = f64>| {
        values
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            })
    };
    let (lo, hi) = finite_range(&mut losses.iter().copied());
    if lo > hi {
        return Err(input_err(path, "no finite losses to plot"));
    }
    let mut valid: Vec<(i64, f64)> = validation
        .iter()
        .filter(|(_, v)| v.is_finite())
        .filter_map(|&(step, v)| Some((i64::try_from(step).ok()?, v)))
        .collect();
    valid.sort_by_key(|&(step, _)| step);
    let (v_lo, v_hi) = finite_range(&mut valid.iter().map(|&(_, v)| v));
    let (lo, hi) = (lo.min(v_lo), hi.max(v_hi));
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
    let last_step = valid.last().map_or(0, |&(step, _)| step);
    let x_max = i64::try_from(losses.len() - 1)
        .unwrap_or(i64::MAX)
        .max(last_step)
        .max(1);

    let root = png_area(path, LOSS_SIZE)?;
    let mut chart = captioned_chart(
        &root,
        path,
        title,
        (0..x_max, (lo - pad)..(hi + pad)),
        80,
        ("iteration", "loss"),
    )?;

    let raw = finite_runs(losses.iter().enumerate().map(|(i, &v)| (i as i64, v)));
    draw_runs(&mut chart, path, raw, LOSS_COLOUR.stroke_width(1), "loss")?;

    let window = (losses.len() / 50).max(1);
    let avg = moving_average(losses, window);
    let avg = finite_runs(avg.iter().enumerate().map(|(i, &v)| (i as i64, v)));
    let label = format!("moving average ({window})");
    draw_runs(&mut chart, path, avg, AVG_COLOUR.stroke_width(2), &label)?;

    if !valid.is_empty() {
        let style = VALID_COLOUR.stroke_width(2);
        chart
            .draw_series(LineSeries::new(valid.iter().copied(), style))
            .map_err(draw_err(path))?;
        chart
            .draw_series(
                valid
                    .iter()
                    .map(|&p| Circle::new(p, 4, VALID_COLOUR.filled())),
            )
            .map_err(draw_err(path))?
            .label("validation NLL")
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (20, 0)], style)
                    + Circle::new((10, 0), 4, VALID_COLOUR.filled())
            });
    }

    draw_legend(&mut chart, path)?;
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

    let root = png_area(path, SCATTER_SIZE)?;
    let mut chart = captioned_chart(
        &root,
        path,
        title,
        (x_range.0..x_range.1, y_range.0..y_range.1),
        60,
        ("x", "y"),
    )?;

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

    draw_legend(&mut chart, path)?;
    root.present().map_err(draw_err(path))
}

/// Side of one cell of [`pairwise_scatter`] in pixels.
const PAIR_CELL: u32 = 220;
/// Height of the caption and legend strip above the [`pairwise_scatter`] grid.
const PAIR_HEADER: u32 = 64;
/// Height of the strip at the top of every pairwise cell holding the diagonal cells' names.
const PAIR_NAME: u32 = 18;
/// Largest canvas side drawn, so a huge feature count or image grid fails cleanly instead of
/// allocating gigabytes.
const MAX_SIDE: u32 = 16_384;

/// The `q`-quantile (0..=1) of sorted finite values, interpolating linearly between ranks.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos - pos.floor());
    match sorted.get(i + 1) {
        Some(&next) => sorted[i] + frac * (next - sorted[i]),
        None => sorted[i],
    }
}

/// The axis range of one feature: the data's 0.5% and 99.5% quantiles padded by 10% of their
/// span on each side (a constant feature gets a band around its value).
fn feature_range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let mut sorted: Vec<f64> = values.filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let (lo, hi) = (quantile(&sorted, 0.005), quantile(&sorted, 0.995));
    let span = hi - lo;
    let pad = if span > 0.0 {
        0.1 * span
    } else {
        (0.1 * lo.abs()).max(0.5)
    };
    let range = (lo - pad, hi + pad);
    (range.0.is_finite() && range.1.is_finite() && range.0 < range.1).then_some(range)
}

/// `dim`-wide rows as (x, y) = (column `j`, column `i`) pairs inside the ranges.
fn pairs_inside<'d>(
    rows: &'d [f64],
    dim: usize,
    (j, xr): (usize, (f64, f64)),
    (i, yr): (usize, (f64, f64)),
) -> impl Iterator<Item = (f64, f64)> + 'd {
    rows.chunks_exact(dim)
        .map(move |row| (row[j], row[i]))
        .filter(move |&(x, y)| (xr.0..=xr.1).contains(&x) && (yr.0..=yr.1).contains(&y))
}

/// Density histogram of column `f` of `dim`-wide rows on `bins` equal bins over `range`: the
/// count in each bin over (number of finite values * bin width), so the data and sample
/// histograms are comparable whatever their sizes; values outside the range are not counted
/// in any bin (but are in the total).
fn histogram(rows: &[f64], dim: usize, f: usize, range: (f64, f64), bins: usize) -> Vec<f64> {
    let mut counts = vec![0usize; bins];
    let mut total = 0usize;
    let width = (range.1 - range.0) / bins as f64;
    for v in rows.chunks_exact(dim).map(|row| row[f]) {
        if !v.is_finite() {
            continue;
        }
        total += 1;
        if (range.0..=range.1).contains(&v) {
            counts[(((v - range.0) / width) as usize).min(bins - 1)] += 1;
        }
    }
    let norm = total.max(1) as f64 * width;
    counts.into_iter().map(|c| c as f64 / norm).collect()
}

/// A grid of pairwise marginal scatter plots of model `samples` against `data`, both flat
/// row-major tables of `dim` values per row (column `f` is feature `names[f]`), for the first
/// `min(dim, max_features)` features.
///
/// Cell (i, j) with i != j shows feature j (x) against feature i (y): data as small
/// translucent dots in the data colour, samples on top in the sample colour. Diagonal cells
/// show the data and sample histograms (as densities) of the feature overlaid, titled with
/// its name. Each feature's axis range is the data's 0.5%..99.5% quantile range padded by 10%
/// on both sides, so outlying samples do not squash the plot; points outside it (and
/// non-finite ones) are not drawn. Tick labels are on the bottom row (x) and left column (y)
/// only. Each cell is 220x220 px, under a strip with the title and a legend ("data",
/// "samples", and how many features are shown when not all).
///
/// Returns [`PlotError::Input`] when `dim` or `max_features` is 0, a length is not a multiple
/// of `dim`, `names.len() != dim`, `data` is empty, a shown feature has no finite data value
/// or the image would be too large. Empty `samples` only draw the data.
pub fn pairwise_scatter(
    path: &Path,
    title: &str,
    samples: &[f64],
    data: &[f64],
    dim: usize,
    names: &[String],
    max_features: usize,
) -> Result<(), PlotError> {
    if dim == 0 {
        return Err(input_err(path, "dim must be at least 1"));
    }
    if max_features == 0 {
        return Err(input_err(path, "max_features must be at least 1"));
    }
    if names.len() != dim {
        return Err(input_err(
            path,
            format!("{} feature names for dim = {dim}", names.len()),
        ));
    }
    for (what, values) in [("data", data), ("samples", samples)] {
        if values.len() % dim != 0 {
            return Err(input_err(
                path,
                format!(
                    "{what} has {} values, not a multiple of dim = {dim}",
                    values.len()
                ),
            ));
        }
    }
    if data.is_empty() {
        return Err(input_err(path, "no data rows to plot"));
    }
    let k = dim.min(max_features);
    let ranges = (0..k)
        .map(|f| {
            feature_range(data.chunks_exact(dim).map(|row| row[f])).ok_or_else(|| {
                input_err(
                    path,
                    format!(
                        "feature {:?} has no finite data values (or their range is too large)",
                        names[f]
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let side = u32::try_from(k)
        .ok()
        .and_then(|k| k.checked_mul(PAIR_CELL))
        .filter(|&side| side + PAIR_HEADER <= MAX_SIDE)
        .ok_or_else(|| input_err(path, format!("too many features to draw ({k})")))?;

    let root = png_area(path, (side, side + PAIR_HEADER))?;
    root.fill(&WHITE).map_err(draw_err(path))?;
    let (header, body) = root.split_vertically(PAIR_HEADER);
    let shown = if k < dim {
        format!("first {k} of {dim} features")
    } else {
        String::new()
    };
    draw_pair_header(path, &header, title, &shown)?;

    let bins = ((data.len() / dim) as f64).sqrt().clamp(10.0, 40.0) as usize;
    for (cell_index, cell) in body.split_evenly((k, k)).iter().enumerate() {
        let (i, j) = (cell_index / k, cell_index % k);
        let (name_strip, plot) = cell.split_vertically(PAIR_NAME);
        let mut builder = ChartBuilder::on(&plot);
        builder
            .margin(4)
            .x_label_area_size(18)
            .y_label_area_size(36);
        if i == j {
            let (w, h) = name_strip.dim_in_pixel();
            let size = fitting_font_size(&name_strip, &names[i], 14, w.saturating_sub(8));
            name_strip
                .draw(&Text::new(
                    names[i].as_str(),
                    ((w / 2) as i32, (h / 2) as i32),
                    TextStyle::from((FONT, size as f64)).pos(Pos::new(HPos::Center, VPos::Center)),
                ))
                .map_err(draw_err(path))?;
        }
        // Diagonal cells: the data and sample histograms of feature i, as densities.
        let hists =
            (i == j).then(|| [data, samples].map(|rows| histogram(rows, dim, i, ranges[i], bins)));
        let y_range = match &hists {
            Some(hists) => {
                let top = hists.iter().flatten().copied().fold(0.0, f64::max);
                (0.0, if top > 0.0 { 1.1 * top } else { 1.0 })
            }
            None => ranges[i],
        };
        let (x0, x1) = ranges[j];
        let mut chart = builder
            .build_cartesian_2d(x0..x1, y_range.0..y_range.1)
            .map_err(draw_err(path))?;
        // Tick labels only on the outer cells (and none for the histogram heights); inner ones
        // keep the ticks with empty labels so every cell has the same plotting area.
        let hide = |_: &f64| String::new();
        let mut mesh = chart.configure_mesh();
        mesh.disable_mesh()
            .x_labels(5)
            .y_labels(5)
            .label_style((FONT, 10));
        if i + 1 < k {
            mesh.x_label_formatter(&hide);
        }
        if j > 0 || i == j {
            mesh.y_label_formatter(&hide);
        }
        mesh.draw().map_err(draw_err(path))?;

        if let Some(hists) = hists {
            let width = (x1 - x0) / bins as f64;
            let left = |b: usize| x0 + b as f64 * width;
            for (hist, colour) in hists.iter().zip([DATA_COLOUR, SAMPLE_COLOUR]) {
                chart
                    .draw_series(hist.iter().enumerate().filter(|(_, &h)| h > 0.0).map(
                        |(b, &h)| {
                            Rectangle::new(
                                [(left(b), 0.0), (left(b + 1), h)],
                                colour.mix(0.3).filled(),
                            )
                        },
                    ))
                    .map_err(draw_err(path))?;
                // The outline of the histogram as a step line, so overlapping bars stay legible.
                let steps = hist
                    .iter()
                    .enumerate()
                    .flat_map(|(b, &h)| [(left(b), h), (left(b + 1), h)]);
                chart
                    .draw_series(LineSeries::new(steps, colour.stroke_width(1)))
                    .map_err(draw_err(path))?;
            }
        } else {
            // 2x2 px translucent squares: far cheaper than circles and as legible at this size.
            for (rows, colour, alpha) in [(data, DATA_COLOUR, 0.35), (samples, SAMPLE_COLOUR, 0.45)]
            {
                let style = colour.mix(alpha).filled();
                chart
                    .draw_series(
                        pairs_inside(rows, dim, (j, ranges[j]), (i, ranges[i])).map(|p| {
                            EmptyElement::at(p) + Rectangle::new([(-1, -1), (1, 1)], style)
                        }),
                    )
                    .map_err(draw_err(path))?;
            }
        }
    }
    root.present().map_err(draw_err(path))
}

/// The caption and legend strip of [`pairwise_scatter`]: the title centred on top, below it
/// the data and sample colour keys and the `note` (if any).
fn draw_pair_header(
    path: &Path,
    header: &DrawingArea<BitMapBackend<'_>, Shift>,
    title: &str,
    note: &str,
) -> Result<(), PlotError> {
    let (width, _) = header.dim_in_pixel();
    let size = fitting_font_size(header, title, 24, width.saturating_sub(20));
    let centre = (width / 2) as i32;
    header
        .draw(&Text::new(
            title,
            (centre, 18),
            TextStyle::from((FONT, size as f64)).pos(Pos::new(HPos::Center, VPos::Center)),
        ))
        .map_err(draw_err(path))?;
    let key = TextStyle::from((FONT, 15)).pos(Pos::new(HPos::Left, VPos::Center));
    let y = 46;
    let mut x = centre - 90;
    for (label, colour) in [("data", DATA_COLOUR), ("samples", SAMPLE_COLOUR)] {
        header
            .draw(&Rectangle::new(
                [(x, y - 5), (x + 10, y + 5)],
                colour.filled(),
            ))
            .map_err(draw_err(path))?;
        header
            .draw(&Text::new(label, (x + 16, y), key.clone()))
            .map_err(draw_err(path))?;
        x += 90;
    }
    if !note.is_empty() {
        header
            .draw(&Text::new(
                note,
                (x + 10, y),
                key.color(&RGBColor(90, 90, 90)),
            ))
            .map_err(draw_err(path))?;
    }
    Ok(())
}

/// Gap in pixels between the tiles of [`image_grid`].
const TILE_GAP: usize = 2;
/// Tiles are upscaled by the smallest integer factor making their longer side at least this.
const TILE_MIN_SIDE: usize = 84;
/// Margin around the tile block of [`image_grid`], and the height of its caption strip.
const IMAGE_MARGIN: u32 = 10;
const IMAGE_CAPTION: u32 = 40;
/// Narrowest [`image_grid`] canvas, so a single small tile still leaves room for the title.
const IMAGE_MIN_WIDTH: u32 = 320;

/// A greyscale raster: `pixels[y * width + x]`, 0 black to 255 white.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GreyRaster {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// The integer factor each image pixel was upscaled by.
    pub scale: usize,
    /// `width * height` grey values, row-major from the top-left.
    pub pixels: Vec<u8>,
}

impl GreyRaster {
    /// The grey value at column `x`, row `y` (from the top), if inside the raster.
    pub fn get(&self, x: usize, y: usize) -> Option<u8> {
        (x < self.width && y < self.height).then(|| self.pixels[y * self.width + x])
    }
}

/// The tile block of [`image_grid`] as a greyscale raster: images of `height * width` values
/// (row-major) laid out `columns` per row (fewer when there are fewer images), each upscaled
/// by an integer factor (the smallest making the longer side at least 84 px, so 3 for 28x28),
/// with 2 px white gaps between tiles and white after the last image. Values map linearly
/// from `value_range` to 0..=255 and are clamped; NaN is black.
///
/// Errors (as text, the reason [`image_grid`] reports) on a zero `height`, `width` or
/// `columns`, no images, a length not a multiple of `height * width`, an invalid range, or a
/// raster too large to draw.
pub fn image_grid_pixels(
    images: &[f64],
    height: usize,
    width: usize,
    columns: usize,
    value_range: (f64, f64),
) -> Result<GreyRaster, String> {
    if height == 0 || width == 0 {
        return Err(format!("image size {height}x{width} must be at least 1x1"));
    }
    if columns == 0 {
        return Err("columns must be at least 1".into());
    }
    let per_image = height
        .checked_mul(width)
        .ok_or_else(|| format!("image size {height}x{width} too large"))?;
    if images.is_empty() {
        return Err("no images to draw".into());
    }
    if images.len() % per_image != 0 {
        return Err(format!(
            "{} values, not a multiple of height*width = {height}*{width}",
            images.len()
        ));
    }
    let (lo, hi) = value_range;
    if !(lo.is_finite() && hi.is_finite() && lo < hi && (hi - lo).is_finite()) {
        return Err(format!(
            "value range ({lo}, {hi}) must be finite with min < max"
        ));
    }
    let count = images.len() / per_image;
    let columns = columns.min(count);
    let rows = count.div_ceil(columns);
    let scale = TILE_MIN_SIDE.div_ceil(height.max(width)).max(1);
    let (tile_w, tile_h) = (width * scale, height * scale);
    let side = |n: usize, tile: usize| {
        n.checked_mul(tile + TILE_GAP)
            .map(|s| s - TILE_GAP)
            .filter(|&s| s <= MAX_SIDE as usize)
    };
    let (Some(raster_w), Some(raster_h)) = (side(columns, tile_w), side(rows, tile_h)) else {
        return Err(format!(
            "{count} images of {height}x{width} in {columns} columns are too large to draw"
        ));
    };

    let mut pixels = vec![255u8; raster_w * raster_h];
    let grey = |v: f64| {
        let t = (v - lo) / (hi - lo);
        if t.is_nan() {
            0
        } else {
            (t.clamp(0.0, 1.0) * 255.0).round() as u8
        }
    };
    for (n, image) in images.chunks_exact(per_image).enumerate() {
        let (x0, y0) = (
            (n % columns) * (tile_w + TILE_GAP),
            (n / columns) * (tile_h + TILE_GAP),
        );
        for (r, row) in image.chunks_exact(width).enumerate() {
            // Build one upscaled line of the tile, then repeat it `scale` times.
            let start = (y0 + r * scale) * raster_w + x0;
            let line = &mut pixels[start..start + tile_w];
            for (c, &v) in row.iter().enumerate() {
                line[c * scale..(c + 1) * scale].fill(grey(v));
            }
            for k in 1..scale {
                pixels.copy_within(start..start + tile_w, start + k * raster_w);
            }
        }
    }
    Ok(GreyRaster {
        width: raster_w,
        height: raster_h,
        scale,
        pixels,
    })
}

/// A grid of greyscale images (e.g. model samples of an image data set) under a title: the
/// tiles of [`image_grid_pixels`] (each image `height * width` values, row-major; `columns`
/// per row, as many rows as needed; values scaled from `value_range` to black..white and
/// clamped; integer upscaling so a 28x28 image is 84 px; 2 px gaps), with a 10 px white
/// margin below a 40 px caption strip. The canvas is at least 320 px wide, the tiles centred.
///
/// Returns [`PlotError::Input`] naming the path for no images, a zero size or `columns`, a
/// length that is not a multiple of `height * width`, an invalid range or a too large grid.
pub fn image_grid(
    path: &Path,
    title: &str,
    images: &[f64],
    height: usize,
    width: usize,
    columns: usize,
    value_range: (f64, f64),
) -> Result<(), PlotError> {
    let raster = image_grid_pixels(images, height, width, columns, value_range)
        .map_err(|message| input_err(path, message))?;
    // Both sides are at most MAX_SIDE, so these fit in u32 with the margins.
    let (tiles_w, tiles_h) = (raster.width as u32, raster.height as u32);
    let canvas = (
        (tiles_w + 2 * IMAGE_MARGIN).max(IMAGE_MIN_WIDTH),
        tiles_h + IMAGE_CAPTION + IMAGE_MARGIN,
    );
    let root = png_area(path, canvas)?;
    root.fill(&WHITE).map_err(draw_err(path))?;
    let size = fitting_font_size(&root, title, 22, canvas.0.saturating_sub(20));
    root.draw(&Text::new(
        title,
        ((canvas.0 / 2) as i32, (IMAGE_CAPTION / 2) as i32),
        TextStyle::from((FONT, size as f64)).pos(Pos::new(HPos::Center, VPos::Center)),
    ))
    .map_err(draw_err(path))?;
    // Copy the whole raster in one blit rather than drawing pixel by pixel.
    let rgb: Vec<u8> = raster.pixels.iter().flat_map(|&g| [g, g, g]).collect();
    let origin = (((canvas.0 - tiles_w) / 2) as i32, IMAGE_CAPTION as i32);
    let tiles =
        BitMapElement::with_owned_buffer(origin, (tiles_w, tiles_h), rgb).ok_or_else(|| {
            PlotError::Draw {
                path: path.to_path_buf(),
                message: "raster size does not match its buffer".into(),
            }
        })?;
    root.draw(&tiles).map_err(draw_err(path))?;
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
