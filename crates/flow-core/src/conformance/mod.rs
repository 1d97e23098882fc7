//! A conformance suite any [`Backend`] can run: every primitive and every fused op, values
//! and gradients, against the reference [`Cpu<f64>`] computing the same thing from the same
//! inputs (feature `conformance`).
//!
//! [`run`] goes through the public [`Tensor`] / [`Var`] / [`Tape`] API, so it checks what
//! users get: each op on a sweep of shapes (one row, one column, sizes that are no multiple
//! of a block size — 1, 3, 7, 33, 65, 127 —, rows of 4099 entries and thousands of rows),
//! with seeded inputs generated in f64 and rounded to the backend's element type, so that
//! both sides see the same numbers. In order, so that a broken primitive is reported as
//! itself rather than as an op built on it:
//!
//! 1. transfers: values uploaded and downloaded unchanged, `full`; index lists uploaded and
//!    downloaded unchanged; `synchronize`; finiteness probes (finite for finite entries, not
//!    finite with a NaN or an infinity anywhere); random normal and uniform draws, which a
//!    device may make with its own generator, so they are held to their contract rather
//!    than to the CPU's numbers: the shape, the same values from the same seed, a stream
//!    advanced past them, every draw in the support, and on 200,320 draws the mean and
//!    variance within 5 standard errors, a Kolmogorov-Smirnov distance below its 1e-4 bound
//!    and no more than 1% repeats;
//! 2. the values of every op; for the fused ops (linear layer, affine coupling, diagonal
//!    Gaussian log-density, rational-quadratic spline) also against the same formulas written
//!    with primitives, on the backend under test;
//! 3. first-order gradients through [`Tape::backward`] of a random projection of the outputs
//!    (this is where the fused backward methods run), and for the fused ops against the
//!    gradients of their compositions;
//! 4. second order: the gradient recorded with [`Tape::grad`]`(.., create_graph = true)` and
//!    the Hessian-vector product differentiated from it;
//! 5. one Adam step ([`Tensor::adam_update`]) against its formula in f64.
//!
//! The first disagreement stops the run with a [`ConformanceError`] naming the op (the
//! backend method it reaches), the case, the quantity, and (a [`Failure`]) the shape, the
//! entry, the value and the reference; a passing run returns a [`Report`] of every comparison with its worst
//! error. The tolerances ([`Tolerances`]) follow the element type.
//!
//! A backend crate runs it from a test, with `flow-core`'s `conformance` feature enabled for
//! its tests (`[dev-dependencies] flow-core = { .., features = ["conformance"] }`):
//!
//! ```
//! use flow_core::conformance::{self, Tolerances};
//! use flow_core::Cpu;
//!
//! let backend = Cpu::<f64>::new(); // a backend crate puts its own here
//! let report = conformance::run(&backend, Tolerances::for_backend(&backend))?;
//! assert!(report.ops().contains(&"rational_quadratic"));
//! println!("{report}"); // what was checked, and the closest call
//! # Ok::<(), flow_core::conformance::ConformanceError>(())
//! ```

mod cases;
mod contract;

use crate::autodiff::{Tape, Var};
use crate::backend::cpu::Cpu;
use crate::backend::{AdamStep, Backend};
use crate::element::Element;
use crate::error::Error;
use crate::random::rng;
use crate::shape::Shape;
use crate::tensor::Tensor;
use cases::Case;
use rand_distr::{Distribution, StandardNormal};
use std::fmt;

/// How far a backend's results may be from the reference's. An entry `a` of a result passes
/// against the reference `r` when
///
/// `|a - r| <= c sqrt(n) (rel |r| + norm max(max|R|, s))`
///
/// where `max|R|` is the largest magnitude in the whole reference result, `n` the length of
/// the longest sum behind it (1 for elementwise maps; the inner dimension of a product, the
/// reduced length of a reduction, the length a broadcast operand's gradient sums over), `s`
/// the size of the terms it may cancel down from (`sqrt(n)` for sums of the suite's unit-sized
/// random terms, 1 for a spline's log-det, 0 for a softmax's positive sums) and `c` the op's
/// conditioning at the case's inputs (1 for most; the largest |x| for a softmax or logsumexp,
/// whose `x - max x` rounds at the scale of `x`; 4 for splines). Ops that only move values
/// (slices, gathers, selects, reshapes, maxima, masks, sign-like maps) must match exactly.
/// One Adam step is compared with `n = c = 1`, `s = 0`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerances {
    /// Relative error of one entry.
    pub rel: f64,
    /// Error relative to the result's largest magnitude, per square root of the terms summed:
    /// absorbs cancellation (in sums, in gradients such as `1 - tanh^2`).
    pub norm: f64,
    /// Error of a fused op against its composition from primitives on the same backend,
    /// relative to the result's largest magnitude (`|a - r| <= rel |r| + composition
    /// max(max|R|, s)`): the two round differently (the spline's inverse solves a quadratic,
    /// a fused kernel may work in wider precision).
    pub composition: f64,
}

impl Tolerances {
    /// The tolerances for element type `E`: f64 about 1e-12 relative, f32 about 1e-5.
    pub fn for_element<E: Element>() -> Self {
        let eps = E::epsilon().as_f64();
        if eps < 1e-10 {
            Tolerances {
                rel: 1e-12,
                norm: 1e-13,
                composition: 1e-9,
            }
        } else {
            Tolerances {
                rel: 1e-5,
                norm: 1e-6,
                composition: 1e-3,
            }
        }
    }

    /// The tolerances for `backend`'s element type.
    pub fn for_backend<B: Backend>(_backend: &B) -> Self {
        Self::for_element::<B::Elem>()
    }

    /// Every tolerance multiplied by `factor`.
    pub fn scaled(self, factor: f64) -> Self {
        Tolerances {
            rel: self.rel * factor,
            norm: self.norm * factor,
            composition: self.composition * factor,
        }
    }
}

/// One comparison of a passing run.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// The backend method the op reaches (`"softmax_cols"`, `"rational_quadratic"`, ..).
    pub op: &'static str,
    /// The op's parameters and operand shapes.
    pub case: String,
    /// What was compared (`"value of output"`, `"first-order gradient of input 1"`, ..).
    pub what: String,
    pub shape: Shape,
    /// The largest `|backend - reference|`.
    pub max_abs_error: f64,
    /// The largest error as a share of its allowance (0 when exact, at most 1).
    pub worst_ratio: f64,
}

/// What a passing run compared.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// The backend's name.
    pub backend: String,
    pub checks: Vec<Check>,
}

impl Report {
    /// The ops checked, each once, in the order of the run.
    pub fn ops(&self) -> Vec<&'static str> {
        let mut ops: Vec<&'static str> = Vec::new();
        for c in &self.checks {
            if !ops.contains(&c.op) {
                ops.push(c.op);
            }
        }
        ops
    }

    /// The comparison that came closest to its tolerance.
    pub fn closest(&self) -> Option<&Check> {
        self.checks
            .iter()
            .max_by(|a, b| a.worst_ratio.total_cmp(&b.worst_ratio))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} comparisons of {} ops passed",
            self.backend,
            self.checks.len(),
            self.ops().len()
        )?;
        if let Some(c) = self.closest() {
            write!(
                f,
                "; closest: {} ({}), {} at {:.3} of its tolerance",
                c.op, c.case, c.what, c.worst_ratio
            )?;
        }
        Ok(())
    }
}

/// Where a run failed: the op (the backend method it reaches, e.g. `"softmax_cols"`), the
/// case (the op's parameters and operand shapes), what was being compared, and how it failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{op} ({case}), {what}: {failure}")]
pub struct ConformanceError {
    pub op: &'static str,
    pub case: String,
    /// What was being compared: a value, a gradient of some order, and of which input.
    pub what: String,
    pub failure: Box<Failure>,
}

/// How a comparison failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Failure {
    /// An entry outside its tolerance.
    #[error(
        "entry {index} (row {row}, column {col}) of {shape} is {value:e}, the reference \
         {reference:e} (error {error:e}, allowed {allowed:e})",
        error = (value - reference).abs()
    )]
    Mismatch {
        shape: Shape,
        index: usize,
        row: usize,
        col: usize,
        value: f64,
        reference: f64,
        allowed: f64,
    },
    /// A result of the wrong shape.
    #[error("shape {shape}, the reference {reference}")]
    Shape { shape: Shape, reference: Shape },
    /// The backend under test returned an error.
    #[error("{0}")]
    Backend(Error),
    /// A property that does not hold (a probe that misses a NaN, draws with the wrong
    /// variance, a stream that does not advance), said in words.
    #[error("{0}")]
    Property(String),
    /// The reference failed: a bug in the suite, not in the backend.
    #[error("the reference failed ({0}), a bug in the suite")]
    Reference(Error),
}

/// Runs the whole suite on `backend`; see the [module documentation](self).
pub fn run<B: Backend>(backend: &B, tol: Tolerances) -> Result<Report, ConformanceError> {
    let mut suite = Suite {
        backend,
        reference: Cpu::<f64>::new(),
        tol,
        report: Report {
            backend: backend.name(),
            checks: Vec::new(),
        },
    };
    suite.transfers()?;
    suite.indices()?;
    suite.synchronize()?;
    suite.finite_probes()?;
    suite.draws()?;
    let cases = cases::all::<B::Elem>();
    for case in &cases {
        suite.values(case)?;
    }
    for case in &cases {
        suite.first_order(case)?;
    }
    for case in cases.iter().filter(|c| c.second_order) {
        suite.second_order(case)?;
    }
    suite.adam()?;
    Ok(suite.report)
}

type Reference = Cpu<f64>;

/// Shapes around block sizes for the checks that are not ops on values (transfers, index
/// storage, probes, draws): one entry, one row, one column, odd sizes, a long row, many rows.
const AWKWARD_SHAPES: [(usize, usize); 6] =
    [(1, 1), (1, 7), (3, 1), (33, 65), (1, 4099), (4099, 3)];

/// Who is being asked: errors of the backend under test are its failures; the reference's
/// are the suite's.
#[derive(Clone, Copy)]
enum Side {
    Backend,
    Reference,
}

/// The case and the quantity a comparison belongs to.
struct At<'a> {
    op: &'static str,
    case: &'a str,
    what: String,
}

impl At<'_> {
    fn error(&self, failure: Failure) -> ConformanceError {
        ConformanceError {
            op: self.op,
            case: self.case.to_string(),
            what: self.what.clone(),
            failure: Box::new(failure),
        }
    }

    fn fail(&self, side: Side, source: Error) -> ConformanceError {
        self.error(match side {
            Side::Backend => Failure::Backend(source),
            Side::Reference => Failure::Reference(source),
        })
    }
}

/// How close a comparison must be: `|a - r| <= rel |r| + norm max(max|R|, floor)` (with the
/// case's `sqrt(terms)` and condition already folded into `rel` and `norm`).
#[derive(Clone, Copy)]
struct Allowance {
    rel: f64,
    norm: f64,
    floor: f64,
}

impl Allowance {
    const EXACT: Allowance = Allowance {
        rel: 0.0,
        norm: 0.0,
        floor: 0.0,
    };
}

struct Suite<'a, B: Backend> {
    backend: &'a B,
    reference: Reference,
    tol: Tolerances,
    report: Report,
}

/// A case's inputs on a fresh tape of `backend`: gradients are asked for the differentiable
/// ones.
fn record<X: Backend>(backend: &X, case: &Case) -> crate::Result<(Tape<X>, Vec<Var<X>>)> {
    let tape = Tape::new(backend);
    let vars = case
        .inputs
        .iter()
        .map(|input| {
            let t = Tensor::from_f64s(backend, input.shape, &input.values)?;
            Ok(if input.differentiable {
                tape.input(t)
            } else {
                tape.constant(t)
            })
        })
        .collect::<crate::Result<Vec<_>>>()?;
    Ok((tape, vars))
}

/// `sum_k sum(out_k * W_k)` over the outputs that carry gradients, with weights drawn from
/// `seed` and rounded by `round`; `None` when no output carries a gradient.
fn projection<X: Backend>(
    tape: &Tape<X>,
    outputs: &[Var<X>],
    seed: u64,
    round: fn(f64) -> f64,
) -> crate::Result<Option<Var<X>>> {
    let shapes: Vec<Shape> = outputs.iter().map(|o| o.shape()).collect();
    let weights = randn(seed, &shapes, round);
    let mut total: Option<Var<X>> = None;
    for (out, w) in outputs.iter().zip(&weights) {
        if !out.requires_grad() {
            continue;
        }
        let w = tape.constant(Tensor::from_f64s(tape.backend(), out.shape(), w)?);
        let term = out.mul(&w)?.sum_all()?;
        total = Some(match total {
            None => term,
            Some(t) => t.add(&term)?,
        });
    }
    Ok(total)
}

/// What the backend's side reports when its tape records no gradient where the reference's
/// does (the tape is the same code on both sides, so this is not expected).
fn no_gradient() -> Error {
    Error::invalid(
        "conformance",
        "no output carries a gradient, though the reference's do",
    )
}

/// `x` rounded to the element type `E` (and widened back).
fn round<E: Element>(x: f64) -> f64 {
    E::of(x).as_f64()
}

/// Seeded standard normal values of each shape, rounded by `round`.
fn randn(seed: u64, shapes: &[Shape], round: fn(f64) -> f64) -> Vec<Vec<f64>> {
    let mut r = rng(seed);
    shapes
        .iter()
        .map(|s| {
            (0..s.len())
                .map(|_| round(StandardNormal.sample(&mut r)))
                .collect()
        })
        .collect()
}

/// The case's differentiable inputs.
fn differentiable<X: Backend>(case: &Case, vars: &[Var<X>]) -> Vec<Var<X>> {
    case.inputs
        .iter()
        .zip(vars)
        .filter(|(input, _)| input.differentiable)
        .map(|(_, v)| v.clone())
        .collect()
}

/// Index of each differentiable input among all of a case's inputs.
fn differentiable_index(case: &Case) -> Vec<usize> {
    (0..case.inputs.len())
        .filter(|&i| case.inputs[i].differentiable)
        .collect()
}

impl<B: Backend> Suite<'_, B> {
    /// Compares two results entry by entry, and records the comparison.
    fn compare<X: Backend, Y: Backend>(
        &mut self,
        at: &At<'_>,
        got: &Tensor<X>,
        want: &Tensor<Y>,
        allow: Allowance,
    ) -> Result<(), ConformanceError> {
        let (shape, reference) = (got.shape(), want.shape());
        if shape != reference {
            return Err(at.error(Failure::Shape { shape, reference }));
        }
        let a = got.to_f64s().map_err(|e| at.fail(Side::Backend, e))?;
        let r = want.to_f64s().map_err(|e| at.fail(Side::Reference, e))?;
        let scale = r
            .iter()
            .filter(|x| x.is_finite())
            .fold(allow.floor, |m, x| m.max(x.abs()));
        let (mut max_abs_error, mut worst_ratio) = (0.0f64, 0.0f64);
        for (index, (&value, &reference)) in a.iter().zip(&r).enumerate() {
            // Equal values (infinities included) and NaN against NaN pass.
            if value == reference || (value.is_nan() && reference.is_nan()) {
                continue;
            }
            let error = (value - reference).abs();
            let allowed = allow.rel * reference.abs() + allow.norm * scale;
            // False for a NaN error too.
            let within = error <= allowed;
            if !within {
                let cols = shape.cols.max(1);
                return Err(at.error(Failure::Mismatch {
                    shape,
                    index,
                    row: index / cols,
                    col: index % cols,
                    value,
                    reference,
                    allowed,
                }));
            }
            max_abs_error = max_abs_error.max(error);
            worst_ratio = worst_ratio.max(error / allowed);
        }
        self.report.checks.push(Check {
            op: at.op,
            case: at.case.to_string(),
            what: at.what.clone(),
            shape,
            max_abs_error,
            worst_ratio,
        });
        Ok(())
    }

    /// Against the reference: the case's tolerance, or exact for ops that copy.
    fn against_reference(&self, case: &Case, copies: bool) -> Allowance {
        if copies {
            Allowance::EXACT
        } else {
            let factor = case.condition * (case.terms as f64).sqrt();
            Allowance {
                rel: self.tol.rel * factor,
                norm: self.tol.norm * factor,
                floor: case.floor,
            }
        }
    }

    fn against_composition(&self, case: &Case) -> Allowance {
        Allowance {
            rel: self.tol.rel,
            norm: self.tol.composition,
            floor: case.floor,
        }
    }

    /// Uploads and downloads, and `full`, on shapes around the block sizes.
    fn transfers(&mut self) -> Result<(), ConformanceError> {
        for (k, (r, c)) in AWKWARD_SHAPES.into_iter().enumerate() {
            let shape = Shape::new(r, c);
            let case = format!("{shape}");
            let values = &randn(0x7a4e + k as u64, &[shape], round::<B::Elem>)[0];
            let at = At {
                op: "upload",
                case: &case,
                what: "values read back by download".into(),
            };
            let got = Tensor::from_f64s(self.backend, shape, values)
                .map_err(|e| at.fail(Side::Backend, e))?;
            let want = Tensor::from_f64s(&self.reference, shape, values)
                .map_err(|e| at.fail(Side::Reference, e))?;
            self.compare(&at, &got, &want, Allowance::EXACT)?;
            for value in [0.0, 1.0, -2.5] {
                let at = At {
                    op: "full",
                    case: &case,
                    what: format!("every entry {value}"),
                };
                let got = Tensor::full(self.backend, shape, B::Elem::of(value))
                    .map_err(|e| at.fail(Side::Backend, e))?;
                let want = Tensor::full(&self.reference, shape, value)
                    .map_err(|e| at.fail(Side::Reference, e))?;
                self.compare(&at, &got, &want, Allowance::EXACT)?;
            }
        }
        Ok(())
    }

    /// The case's outputs on both sides; for a fused op, also its composition against itself
    /// on the backend.
    fn values(&mut self, case: &Case) -> Result<(), ConformanceError> {
        let description = case.describe();
        let op = case.op.name();
        let at = |what: String| At {
            op,
            case: &description,
            what,
        };
        let forward = at("forward".into());
        let (_, vars) = record(self.backend, case).map_err(|e| forward.fail(Side::Backend, e))?;
        let got = case
            .op
            .eval(&vars)
            .map_err(|e| forward.fail(Side::Backend, e))?;
        let (_, ref_vars) =
            record(&self.reference, case).map_err(|e| forward.fail(Side::Reference, e))?;
        let want = case
            .op
            .eval(&ref_vars)
            .map_err(|e| forward.fail(Side::Reference, e))?;
        let allow = self.against_reference(case, case.op.copies());
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            let at = at(format!("value of {}", case.op.output_name(k)));
            self.compare(&at, &g.value(), &w.value(), allow)?;
        }
        if let Some(composed) = case.op.composed(&vars) {
            let composed = composed.map_err(|e| forward.fail(Side::Backend, e))?;
            let allow = self.against_composition(case);
            for (k, (c, g)) in composed.iter().zip(&got).enumerate() {
                let at = at(format!(
                    "value of {}: composition from primitives against the fused op",
                    case.op.output_name(k)
                ));
                self.compare(&at, &c.value(), &g.value(), allow)?;
            }
        }
        Ok(())
    }

    /// Gradients through `Tape::backward` (the fused backward methods).
    fn first_order(&mut self, case: &Case) -> Result<(), ConformanceError> {
        let description = case.describe();
        let op = case.op.name();
        let via = case
            .op
            .backward_name()
            .map(|m| format!(" (Backend::{m})"))
            .unwrap_or_default();
        let at = |what: String| At {
            op,
            case: &description,
            what,
        };
        let setup = at("first-order gradients".into());
        let reference = self.reference;
        let round = round::<B::Elem>;
        let Some(want) = gradients(&reference, case, round, false)
            .map_err(|e| setup.fail(Side::Reference, e))?
        else {
            return Ok(());
        };
        let got = gradients(self.backend, case, round, false)
            .map_err(|e| setup.fail(Side::Backend, e))?
            .ok_or_else(|| setup.fail(Side::Backend, no_gradient()))?;
        let allow = self.against_reference(case, false);
        let index = differentiable_index(case);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let at = at(format!("first-order gradient{via} of input {}", index[i]));
            self.compare(&at, g, w, allow)?;
        }
        let composed =
            gradients(self.backend, case, round, true).map_err(|e| setup.fail(Side::Backend, e))?;
        if let Some(composed) = composed {
            let allow = self.against_composition(case);
            for (i, (c, g)) in composed.iter().zip(&got).enumerate() {
                let at = at(format!(
                    "first-order gradient of input {}: composition from primitives against \
                     the fused op",
                    index[i]
                ));
                self.compare(&at, c, g, allow)?;
            }
        }
        Ok(())
    }

    /// The gradient recorded with `create_graph`, and the Hessian-vector product
    /// `d/dx <dL/dx, V>` differentiated from it.
    fn second_order(&mut self, case: &Case) -> Result<(), ConformanceError> {
        let description = case.describe();
        let op = case.op.name();
        let at = |what: String| At {
            op,
            case: &description,
            what,
        };
        let setup = at("second-order gradients".into());
        let reference = self.reference;
        let round = round::<B::Elem>;
        let Some(want) = hessian_products(&reference, case, round)
            .map_err(|e| setup.fail(Side::Reference, e))?
        else {
            return Ok(());
        };
        let got = hessian_products(self.backend, case, round)
            .map_err(|e| setup.fail(Side::Backend, e))?
            .ok_or_else(|| setup.fail(Side::Backend, no_gradient()))?;
        let allow = self.against_reference(case, false);
        let index = differentiable_index(case);
        for (i, (g, w)) in got.grads.iter().zip(&want.grads).enumerate() {
            let at = at(format!(
                "first-order gradient of input {}, recorded (create_graph)",
                index[i]
            ));
            self.compare(&at, g, w, allow)?;
        }
        for (i, (g, w)) in got.products.iter().zip(&want.products).enumerate() {
            let at = at(format!(
                "second-order gradient (Hessian-vector product) of input {}",
                index[i]
            ));
            self.compare(&at, g, w, allow)?;
        }
        Ok(())
    }

    /// One Adam step on each side of the formula, in f64 from the same (rounded) numbers.
    fn adam(&mut self) -> Result<(), ConformanceError> {
        let round = round::<B::Elem>;
        let shapes = [(1, 1), (3, 7), (1, 4099), (65, 33)];
        let mut seed = 0xada0;
        for (r, c) in shapes {
            for (t, weight_decay) in [(1, 0.0), (7, 1e-2)] {
                seed += 1;
                let shape = Shape::new(r, c);
                let mut values = randn(seed, &[shape; 4], round);
                // The second moment is non-negative.
                for v in &mut values[3] {
                    *v = round(v.abs());
                }
                let (lr, beta1, beta2, eps, wd) = (
                    round(1e-3),
                    round(0.9),
                    round(0.999),
                    round(1e-8),
                    round(weight_decay),
                );
                let bc1 = round(1.0 - 0.9f64.powi(t));
                let bc2 = round(1.0 - 0.999f64.powi(t));
                let step = AdamStep {
                    lr: B::Elem::of(lr),
                    beta1: B::Elem::of(beta1),
                    beta2: B::Elem::of(beta2),
                    eps: B::Elem::of(eps),
                    weight_decay: B::Elem::of(wd),
                    bias_correction1: B::Elem::of(bc1),
                    bias_correction2: B::Elem::of(bc2),
                };
                let case = format!("step {t}, weight decay {weight_decay} on {shape}");
                let at = |what: &str| At {
                    op: "adam_update",
                    case: &case,
                    what: what.into(),
                };
                let (param, m, v) = adam_on(self.backend, shape, &values, &step)
                    .map_err(|e| at("update").fail(Side::Backend, e))?;
                // The formula, in f64 (PyTorch's Adam with weight decay added to the gradient).
                let mut want = [vec![], vec![], vec![]];
                let (p0, g0, m0, v0) = (&values[0], &values[1], &values[2], &values[3]);
                for (((&p, &g), &m), &v) in p0.iter().zip(g0).zip(m0).zip(v0) {
                    let g = g + wd * p;
                    let m = beta1 * m + (1.0 - beta1) * g;
                    let v = beta2 * v + (1.0 - beta2) * g * g;
                    want[0].push(p - lr / bc1 * m / (v.sqrt() / bc2.sqrt() + eps));
                    want[1].push(m);
                    want[2].push(v);
                }
                let allow = Allowance {
                    rel: self.tol.rel,
                    norm: self.tol.norm,
                    floor: 0.0,
                };
                for (what, got, want) in [
                    ("updated parameter", param, &want[0]),
                    ("updated first moment", m, &want[1]),
                    ("updated second moment", v, &want[2]),
                ] {
                    let at = at(what);
                    let want = Tensor::from_f64s(&self.reference, shape, want)
                        .map_err(|e| at.fail(Side::Reference, e))?;
                    self.compare(&at, &got, &want, allow)?;
                }
            }
        }
        Ok(())
    }
}

/// The suite's one use of the backend's Adam: `Tensor::adam_update` on uploaded values
/// (parameter, gradient, first and second moment); returns the updated parameter and moments.
fn adam_on<X: Backend>(
    backend: &X,
    shape: Shape,
    values: &[Vec<f64>],
    step: &AdamStep<X::Elem>,
) -> crate::Result<(Tensor<X>, Tensor<X>, Tensor<X>)> {
    let upload = |k: usize| Tensor::from_f64s(backend, shape, &values[k]);
    let (mut param, grad, mut m, mut v) = (upload(0)?, upload(1)?, upload(2)?, upload(3)?);
    param.adam_update(&grad, &mut m, &mut v, step)?;
    Ok((param, m, v))
}

/// The gradients, through `Tape::backward`, of `sum_k <out_k, W_k>` with respect to the
/// case's differentiable inputs, where `out` is the op (or, with `composed`, its composition;
/// `None` when there is none) and `W` are drawn from the case's seed and rounded by `round`
/// (to the element type under test, so that both sides get the same weights). `None` when
/// nothing carries a gradient.
fn gradients<X: Backend>(
    backend: &X,
    case: &Case,
    round: fn(f64) -> f64,
    composed: bool,
) -> crate::Result<Option<Vec<Tensor<X>>>> {
    let (tape, vars) = record(backend, case)?;
    let outputs = if composed {
        match case.op.composed(&vars) {
            Some(outputs) => outputs?,
            None => return Ok(None),
        }
    } else {
        case.op.eval(&vars)?
    };
    let Some(loss) = projection(&tape, &outputs, case.seed, round)? else {
        return Ok(None);
    };
    let grads = tape.backward(&loss)?;
    let grads = differentiable(case, &vars)
        .iter()
        .map(|v| match grads.get(v) {
            Some(g) => Ok(g.clone()),
            None => Tensor::zeros(backend, v.shape()),
        })
        .collect::<crate::Result<_>>()?;
    Ok(Some(grads))
}

/// The recorded first-order gradients and Hessian-vector products of a case on one backend.
struct SecondOrder<X: Backend> {
    grads: Vec<Tensor<X>>,
    products: Vec<Tensor<X>>,
}

/// The gradient of a case's projection recorded with `create_graph` and, differentiated from
/// it, the Hessian-vector products `d/dx <dL/dx, V>` for seeded directions `V`.
fn hessian_products<X: Backend>(
    backend: &X,
    case: &Case,
    round: fn(f64) -> f64,
) -> crate::Result<Option<SecondOrder<X>>> {
    let (tape, vars) = record(backend, case)?;
    let outputs = case.op.eval(&vars)?;
    let Some(loss) = projection(&tape, &outputs, case.seed, round)? else {
        return Ok(None);
    };
    let wrt = differentiable(case, &vars);
    let refs: Vec<&Var<X>> = wrt.iter().collect();
    let grads = tape.grad(&loss, &refs, true)?;
    let shapes: Vec<Shape> = wrt.iter().map(|v| v.shape()).collect();
    let directions = randn(case.seed ^ 0x2ee, &shapes, round);
    let mut total: Option<Var<X>> = None;
    for (g, d) in grads.iter().zip(&directions) {
        let d = tape.constant(Tensor::from_f64s(backend, g.shape(), d)?);
        let term = g.mul(&d)?.sum_all()?;
        total = Some(match total {
            None => term,
            Some(t) => t.add(&term)?,
        });
    }
    let Some(total) = total else {
        return Ok(None);
    };
    let products = tape.grad(&total, &refs, false)?;
    Ok(Some(SecondOrder {
        grads: grads.iter().map(Var::value).collect(),
        products: products.iter().map(Var::value).collect(),
    }))
}
