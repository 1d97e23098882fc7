//! What the suite runs: every op of the public `Var`/`Tensor` API that reaches a backend
//! method, each on a sweep of shapes, with seeded inputs chosen away from the points where
//! the op (or its gradient) jumps.

use crate::backend::{
    Activation, Backend, BinaryOp, CouplingScale, Direction, RationalQuadratic, ReduceOp, UnaryOp,
};
use crate::element::Element;
use crate::error::Result;
use crate::index::IndexTensor;
use crate::random::{rng, FlowRng};
use crate::shape::{Axis, Shape};
use crate::tensor::Tensor;
use crate::Var;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// One operand: its values (already rounded to the element type under test, so that the
/// backend and the reference see the same numbers) and whether its gradient is checked.
#[derive(Clone, Debug)]
pub(super) struct Input {
    pub(super) shape: Shape,
    pub(super) values: Vec<f64>,
    pub(super) differentiable: bool,
}

/// One op on one set of operands.
#[derive(Clone, Debug)]
pub(super) struct Case {
    pub(super) op: Op,
    pub(super) inputs: Vec<Input>,
    /// The length of the longest sum behind any compared entry, forward or backward (1 for
    /// elementwise maps): the tolerance grows with its square root.
    pub(super) terms: usize,
    /// Whether second derivatives (through `Tape::grad` with `create_graph`) are checked.
    pub(super) second_order: bool,
    /// The least magnitude the tolerance's `norm` part scales with: the size of the terms a
    /// result may cancel down from. By default the typical size of a sum of `terms` random
    /// unit terms, `sqrt(terms)` (inputs and weights are of order one); 0 for the sums of
    /// positive terms of a softmax, 1 for a spline (whose log-det sums logarithms).
    pub(super) floor: f64,
    /// How much the op amplifies the rounding of its intermediate results at these inputs
    /// (1 for most; the largest |x| for a softmax, where `x - max x` rounds at the scale of
    /// `x`): multiplies the tolerance.
    pub(super) condition: f64,
    /// Seed of the loss weights and second-order directions.
    pub(super) seed: u64,
}

impl Case {
    /// The op's parameters and the operand shapes, for reports.
    pub(super) fn describe(&self) -> String {
        let shapes: Vec<String> = self.inputs.iter().map(|i| i.shape.to_string()).collect();
        format!("{} on {}", self.op.detail(), shapes.join(", "))
    }
}

/// The ops, as the public API spells them.
#[derive(Clone, Debug)]
pub(super) enum Op {
    Unary(UnaryOp<f64>),
    Binary(BinaryOp),
    Matmul {
        ta: bool,
        tb: bool,
    },
    /// `Var::sum` or `Var::max` (which also reads `argmax_mask`).
    Reduce(ReduceOp, Axis),
    ArgmaxMask(Axis),
    LogSumExpCols,
    SoftmaxCols,
    BroadcastTo(Shape),
    SliceCols {
        start: usize,
        len: usize,
    },
    ConcatCols,
    GatherCols(Vec<usize>),
    ScatterAddCols(Vec<usize>, usize),
    Select,
    Reshape(Shape),
    TakePerRow(Vec<usize>),
    PutPerRow(Vec<usize>, usize),
    SearchSortedRows,
    Linear(Activation<f64>),
    AffineCoupling(CouplingScale, Direction),
    DiagNormalLogProb,
    RationalQuadratic(RationalQuadratic, Direction),
}

impl Op {
    /// The backend method the op reaches (the fused ops' backward methods are reached through
    /// their gradients, which the error's `what` names).
    pub(super) fn name(&self) -> &'static str {
        match self {
            Op::Unary(_) => "unary",
            Op::Binary(_) => "binary",
            Op::Matmul { .. } => "matmul",
            Op::Reduce(..) => "reduce",
            Op::ArgmaxMask(_) => "argmax_mask",
            Op::LogSumExpCols => "logsumexp_cols",
            Op::SoftmaxCols => "softmax_cols",
            Op::BroadcastTo(_) => "broadcast_to",
            Op::SliceCols { .. } => "slice_cols",
            Op::ConcatCols => "concat_cols",
            Op::GatherCols(_) => "gather_cols",
            Op::ScatterAddCols(..) => "scatter_add_cols",
            Op::Select => "select",
            Op::Reshape(_) => "reshape",
            Op::TakePerRow(_) => "take_per_row",
            Op::PutPerRow(..) => "put_per_row",
            Op::SearchSortedRows => "search_sorted_rows",
            Op::Linear(_) => "linear",
            Op::AffineCoupling(..) => "affine_coupling",
            Op::DiagNormalLogProb => "diag_normal_log_prob",
            Op::RationalQuadratic(..) => "rational_quadratic",
        }
    }

    /// The backend method behind the op's first-order backward, where it has one of its own.
    pub(super) fn backward_name(&self) -> Option<&'static str> {
        match self {
            Op::Linear(_) => Some("activation_backward"),
            Op::AffineCoupling(..) => Some("affine_coupling_backward"),
            Op::DiagNormalLogProb => Some("diag_normal_log_prob_backward"),
            Op::RationalQuadratic(..) => Some("rational_quadratic_backward"),
            _ => None,
        }
    }

    fn detail(&self) -> String {
        match self {
            Op::Unary(op) => format!("{op:?}"),
            Op::Binary(op) => format!("{op:?}"),
            Op::Matmul { ta, tb } => format!("transposes ({ta}, {tb})"),
            Op::Reduce(op, axis) => format!("{op:?} over {axis:?}"),
            Op::ArgmaxMask(axis) => format!("over {axis:?}"),
            Op::BroadcastTo(shape) => format!("to {shape}"),
            Op::SliceCols { start, len } => format!("columns {start}..{}", start + len),
            Op::GatherCols(index) => format!("{} indices", index.len()),
            Op::ScatterAddCols(index, width) => format!("{} indices into {width}", index.len()),
            Op::Reshape(shape) => format!("to {shape}"),
            Op::TakePerRow(_) => "one index per row".into(),
            Op::PutPerRow(_, width) => format!("one index per row into {width}"),
            Op::Linear(act) => format!("{act:?}"),
            Op::AffineCoupling(scale, direction) => format!("{scale:?} {direction:?}"),
            Op::RationalQuadratic(spec, direction) => format!("{} bins {direction:?}", spec.bins),
            Op::LogSumExpCols
            | Op::SoftmaxCols
            | Op::ConcatCols
            | Op::Select
            | Op::SearchSortedRows
            | Op::DiagNormalLogProb => "values".into(),
        }
    }

    /// Names of the op's results, in the order [`Op::eval`] returns them.
    pub(super) fn output_name(&self, k: usize) -> &'static str {
        match (self, k) {
            (Op::AffineCoupling(..) | Op::RationalQuadratic(..), 1) => "log-det",
            _ => "output",
        }
    }

    /// The op on `v` (the case's inputs, recorded on one tape), through the public API.
    pub(super) fn eval<X: Backend>(&self, v: &[Var<X>]) -> Result<Vec<Var<X>>> {
        let b = v[0].tape().backend();
        Ok(match self {
            Op::Unary(op) => vec![v[0].unary(unary_op(*op))?],
            Op::Binary(op) => vec![v[0].binary(*op, &v[1])?],
            Op::Matmul { ta, tb } => vec![v[0].matmul_t(*ta, &v[1], *tb)?],
            Op::Reduce(ReduceOp::Sum, axis) => vec![v[0].sum(*axis)?],
            Op::Reduce(ReduceOp::Max, axis) => vec![v[0].max(*axis)?],
            Op::ArgmaxMask(axis) => vec![v[0].tape().constant(v[0].value().argmax_mask(*axis)?)],
            Op::LogSumExpCols => vec![v[0].logsumexp_cols()?],
            Op::SoftmaxCols => vec![v[0].softmax_cols()?],
            Op::BroadcastTo(shape) => vec![v[0].broadcast_to(*shape)?],
            Op::SliceCols { start, len } => vec![v[0].slice_cols(*start, *len)?],
            Op::ConcatCols => vec![Var::concat_cols(&v.iter().collect::<Vec<_>>())?],
            Op::GatherCols(index) => vec![v[0].gather_cols(&IndexTensor::new(b, index)?)?],
            Op::ScatterAddCols(index, width) => {
                vec![v[0].scatter_add_cols(&IndexTensor::new(b, index)?, *width)?]
            }
            Op::Select => vec![Var::select(&v[0], &v[1], &v[2])?],
            Op::Reshape(shape) => vec![v[0].reshape(*shape)?],
            Op::TakePerRow(index) => vec![v[0].take_per_row(&IndexTensor::new(b, index)?)?],
            Op::PutPerRow(index, width) => {
                vec![v[0].put_per_row(&IndexTensor::new(b, index)?, *width)?]
            }
            Op::SearchSortedRows => {
                let counts = v[0].value().search_sorted_rows(&v[1].value())?;
                let counts: Vec<f64> = counts.to_vec()?.iter().map(|&c| c as f64).collect();
                let tape = v[0].tape();
                let t = Tensor::from_f64s(tape.backend(), (counts.len(), 1), &counts)?;
                vec![tape.constant(t)]
            }
            Op::Linear(act) => vec![v[0].linear_activated(&v[1], &v[2], activation(*act))?],
            Op::AffineCoupling(scale, direction) => {
                let (y, log_det) = v[0].affine_coupling(&v[1], *scale, *direction)?;
                vec![y, log_det]
            }
            Op::DiagNormalLogProb => vec![v[0].diag_normal_log_prob(&v[1], &v[2])?],
            Op::RationalQuadratic(spec, direction) => {
                let (y, log_det) = v[0].rational_quadratic(&v[1], spec, *direction)?;
                vec![y, log_det]
            }
        })
    }

    /// The same results written with primitives, for the fused ops.
    pub(super) fn composed<X: Backend>(&self, v: &[Var<X>]) -> Option<Result<Vec<Var<X>>>> {
        match self {
            Op::Linear(act) => Some(linear_composed(v, *act).map(|y| vec![y])),
            Op::AffineCoupling(scale, direction) => Some(
                v[0].affine_coupling_composed(&v[1], *scale, *direction)
                    .map(|(y, log_det)| vec![y, log_det]),
            ),
            Op::DiagNormalLogProb => Some(
                v[0].diag_normal_log_prob_composed(&v[1], &v[2])
                    .map(|y| vec![y]),
            ),
            Op::RationalQuadratic(spec, direction) => Some(
                v[0].rational_quadratic_composed(&v[1], spec, *direction)
                    .map(|(y, log_det)| vec![y, log_det]),
            ),
            _ => None,
        }
    }

    /// Whether the op only moves values (so a backend must reproduce them bit for bit).
    pub(super) fn copies(&self) -> bool {
        matches!(
            self,
            Op::Unary(UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Relu | UnaryOp::Sign | UnaryOp::Step)
                | Op::Binary(BinaryOp::Gate)
                | Op::Reduce(ReduceOp::Max, _)
                | Op::ArgmaxMask(_)
                | Op::BroadcastTo(_)
                | Op::SliceCols { .. }
                | Op::ConcatCols
                | Op::GatherCols(_)
                | Op::Select
                | Op::Reshape(_)
                | Op::TakePerRow(_)
                | Op::PutPerRow(..)
                | Op::SearchSortedRows
        )
    }
}

pub(super) fn unary_op<E: Element>(op: UnaryOp<f64>) -> UnaryOp<E> {
    match op {
        UnaryOp::Neg => UnaryOp::Neg,
        UnaryOp::Exp => UnaryOp::Exp,
        UnaryOp::Log => UnaryOp::Log,
        UnaryOp::Log1p => UnaryOp::Log1p,
        UnaryOp::Sqrt => UnaryOp::Sqrt,
        UnaryOp::Square => UnaryOp::Square,
        UnaryOp::Abs => UnaryOp::Abs,
        UnaryOp::Tanh => UnaryOp::Tanh,
        UnaryOp::Sigmoid => UnaryOp::Sigmoid,
        UnaryOp::Softplus => UnaryOp::Softplus,
        UnaryOp::Relu => UnaryOp::Relu,
        UnaryOp::LeakyRelu(s) => UnaryOp::LeakyRelu(E::of(s)),
        UnaryOp::Elu(a) => UnaryOp::Elu(E::of(a)),
        UnaryOp::AddScalar(s) => UnaryOp::AddScalar(E::of(s)),
        UnaryOp::MulScalar(s) => UnaryOp::MulScalar(E::of(s)),
        UnaryOp::Powi(n) => UnaryOp::Powi(n),
        UnaryOp::Sign => UnaryOp::Sign,
        UnaryOp::Step => UnaryOp::Step,
        UnaryOp::Swish(k) => UnaryOp::Swish(k),
        UnaryOp::EluDerivative(a) => UnaryOp::EluDerivative(E::of(a)),
    }
}

fn activation<E: Element>(act: Activation<f64>) -> Activation<E> {
    match act {
        Activation::Identity => Activation::Identity,
        Activation::Relu => Activation::Relu,
        Activation::LeakyRelu(s) => Activation::LeakyRelu(E::of(s)),
    }
}

/// `act(x @ weight^T + bias)` from a product, a broadcast add and a unary map.
fn linear_composed<X: Backend>(v: &[Var<X>], act: Activation<f64>) -> Result<Var<X>> {
    let pre = v[0].matmul_t(false, &v[1], true)?.add(&v[2])?;
    Ok(match act {
        Activation::Identity => pre,
        Activation::Relu => pre.relu()?,
        Activation::LeakyRelu(slope) => pre.leaky_relu(slope)?,
    })
}

// ---- inputs ----

/// Seeded values, rounded to the element type under test.
struct Gen<E> {
    rng: FlowRng,
    _elem: std::marker::PhantomData<E>,
}

impl<E: Element> Gen<E> {
    fn new(seed: u64) -> Self {
        Gen {
            rng: rng(seed),
            _elem: std::marker::PhantomData,
        }
    }

    fn round(x: f64) -> f64 {
        E::of(x).as_f64()
    }

    fn input(&self, shape: Shape, values: Vec<f64>, differentiable: bool) -> Input {
        Input {
            shape,
            values: values.into_iter().map(Self::round).collect(),
            differentiable,
        }
    }

    fn draw(&mut self, n: usize, f: impl Fn(&mut FlowRng) -> f64) -> Vec<f64> {
        (0..n).map(|_| f(&mut self.rng)).collect()
    }

    fn normal(&mut self, shape: Shape, scale: f64) -> Vec<f64> {
        self.draw(shape.len(), |r| {
            let z: f64 = StandardNormal.sample(r);
            scale * z
        })
    }

    fn uniform(&mut self, shape: Shape, low: f64, high: f64) -> Vec<f64> {
        self.draw(shape.len(), |r| r.random_range(low..high))
    }

    /// Magnitudes in `[low, high)`, either sign.
    fn away_from_zero(&mut self, shape: Shape, low: f64, high: f64) -> Vec<f64> {
        self.draw(shape.len(), |r| {
            let m: f64 = r.random_range(low..high);
            if r.random_bool(0.5) {
                m
            } else {
                -m
            }
        })
    }

    /// Small integers: many ties, for maxima.
    fn integers(&mut self, shape: Shape, below: u32) -> Vec<f64> {
        self.draw(shape.len(), |r| f64::from(r.random_range(0..below)))
    }

    fn index(&mut self, n: usize, below: usize) -> Vec<usize> {
        (0..n).map(|_| self.rng.random_range(0..below)).collect()
    }

    fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        p.shuffle(&mut self.rng);
        p
    }
}

fn sh(rows: usize, cols: usize) -> Shape {
    Shape::new(rows, cols)
}

/// Collects cases, giving each its own seed.
struct Cases<E> {
    list: Vec<Case>,
    gen: Gen<E>,
}

impl<E: Element> Cases<E> {
    fn push(&mut self, op: Op, inputs: Vec<Input>, terms: usize, second_order: bool) {
        let seed = 0xc0f0_0000 + self.list.len() as u64;
        self.list.push(Case {
            op,
            inputs,
            terms: terms.max(1),
            second_order,
            floor: (terms.max(1) as f64).sqrt(),
            condition: 1.0,
            seed,
        });
    }

    /// Sets the last case's condition factor.
    fn condition(&mut self, condition: f64) {
        if let Some(case) = self.list.last_mut() {
            case.condition = condition;
        }
    }

    /// Sets the last case's condition factor to the largest magnitude of its first input.
    fn conditioned_by_input(&mut self) {
        if let Some(case) = self.list.last_mut() {
            let max = case.inputs[0]
                .values
                .iter()
                .fold(1.0f64, |m, x| m.max(x.abs()));
            case.condition = max;
        }
    }

    /// Sets the last case's magnitude floor.
    fn floor(&mut self, floor: f64) {
        if let Some(case) = self.list.last_mut() {
            case.floor = floor;
        }
    }
}

/// Shapes for elementwise maps: one row, one column, odd sizes, a long row.
const ELEMENTWISE: [(usize, usize); 7] = [
    (1, 1),
    (1, 7),
    (3, 1),
    (7, 33),
    (65, 3),
    (1, 4099),
    (127, 65),
];

/// Shapes for reductions along rows or columns: long rows, long columns, odd sizes.
const REDUCTION: [(usize, usize); 7] = [
    (1, 1),
    (1, 4099),
    (4099, 1),
    (2049, 3),
    (3, 2049),
    (33, 65),
    (7, 127),
];

/// Shapes for column operations.
const COLUMNS: [(usize, usize); 5] = [(1, 1), (3, 7), (2049, 5), (1, 4099), (65, 33)];

/// Every case, with inputs rounded to `E`.
pub(super) fn all<E: Element>() -> Vec<Case> {
    let mut c = Cases::<E> {
        list: Vec::new(),
        gen: Gen::new(0x5eed_c0f0),
    };
    unary(&mut c);
    binary(&mut c);
    matmul(&mut c);
    reductions(&mut c);
    columns(&mut c);
    per_row(&mut c);
    linear(&mut c);
    affine_coupling(&mut c);
    diag_normal(&mut c);
    rational_quadratic(&mut c);
    // Added after the others, so that their seeded inputs stay as they were.
    swish(&mut c);
    empty_inner_products(&mut c);
    tall_column_reductions(&mut c);
    c.list
}

fn unary<E: Element>(c: &mut Cases<E>) {
    use UnaryOp::*;
    #[derive(Clone, Copy)]
    enum Domain {
        Any,
        Positive,
        AwayFromZero,
    }
    let ops = [
        (Neg, Domain::Any),
        (Exp, Domain::Any),
        (Log, Domain::Positive),
        (Log1p, Domain::Positive),
        (Sqrt, Domain::Positive),
        (Square, Domain::Any),
        (Abs, Domain::AwayFromZero),
        (Tanh, Domain::Any),
        (Sigmoid, Domain::Any),
        (Softplus, Domain::Any),
        (Relu, Domain::AwayFromZero),
        (LeakyRelu(0.2), Domain::AwayFromZero),
        (Elu(1.3), Domain::AwayFromZero),
        (EluDerivative(1.3), Domain::AwayFromZero),
        (AddScalar(0.7), Domain::Any),
        (MulScalar(-1.7), Domain::Any),
        (Powi(3), Domain::Any),
        (Powi(-2), Domain::AwayFromZero),
        (Sign, Domain::AwayFromZero),
        (Step, Domain::AwayFromZero),
    ];
    for (op, domain) in ops {
        for (r, cols) in ELEMENTWISE {
            let shape = sh(r, cols);
            let values = match domain {
                Domain::Any => c.gen.uniform(shape, -3.0, 3.0),
                Domain::Positive => c.gen.uniform(shape, 0.1, 4.0),
                Domain::AwayFromZero => c.gen.away_from_zero(shape, 0.05, 3.0),
            };
            let input = c.gen.input(shape, values, true);
            c.push(Op::Unary(op), vec![input], 1, true);
        }
    }
    // Large arguments, where a naive formula overflows or cancels.
    for op in [
        Exp,
        Tanh,
        Sigmoid,
        Softplus,
        Log1p,
        Elu(1.3),
        EluDerivative(1.3),
    ] {
        let shape = sh(3, 65);
        let values = match op {
            Exp => c.gen.uniform(shape, -60.0, 60.0),
            Log1p => c.gen.uniform(shape, -0.99, 1e6),
            _ => c.gen.uniform(shape, -90.0, 90.0),
        };
        let input = c.gen.input(shape, values, true);
        c.push(Op::Unary(op), vec![input], 1, true);
    }
}

/// Swish and its derivatives (each gradient-checked, so each is held to be the derivative
/// of the one before), on ordinary and large arguments.
fn swish<E: Element>(c: &mut Cases<E>) {
    use UnaryOp::Swish;
    for k in 0..crate::backend::MAX_SWISH_DERIVATIVE {
        for (r, cols) in ELEMENTWISE {
            let shape = sh(r, cols);
            let values = c.gen.uniform(shape, -6.0, 6.0);
            let input = c.gen.input(shape, values, true);
            // Second order needs derivative k + 2.
            let second = k + 2 <= crate::backend::MAX_SWISH_DERIVATIVE;
            c.push(Op::Unary(Swish(k)), vec![input], 1, second);
        }
        let shape = sh(3, 65);
        let values = c.gen.uniform(shape, -90.0, 90.0);
        let input = c.gen.input(shape, values, true);
        let second = k + 2 <= crate::backend::MAX_SWISH_DERIVATIVE;
        c.push(Op::Unary(Swish(k)), vec![input], 1, second);
    }
}

fn binary<E: Element>(c: &mut Cases<E>) {
    let ops = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Gate,
    ];
    for op in ops {
        for (r, cols) in [(1, 1), (3, 7), (33, 65), (1, 4099), (2049, 3)] {
            // Operand shapes: equal, each side broadcast along rows, columns or both, and an
            // outer broadcast of a column against a row.
            let pairs = [
                (sh(r, cols), sh(r, cols)),
                (sh(r, cols), sh(1, cols)),
                (sh(r, cols), sh(r, 1)),
                (sh(r, cols), sh(1, 1)),
                (sh(1, cols), sh(r, cols)),
                (sh(r, 1), sh(r, cols)),
                (sh(1, 1), sh(r, cols)),
                (sh(r, 1), sh(1, cols)),
            ];
            for (sa, sb) in pairs {
                if (sa == sh(1, 1) || sb == sh(1, 1)) && (r, cols) == (1, 1) && sa != sb {
                    continue;
                }
                let a = c.gen.uniform(sa, -3.0, 3.0);
                let b = match op {
                    BinaryOp::Div | BinaryOp::Gate => c.gen.away_from_zero(sb, 0.3, 3.0),
                    _ => c.gen.uniform(sb, -3.0, 3.0),
                };
                let inputs = vec![c.gen.input(sa, a, true), c.gen.input(sb, b, true)];
                c.push(Op::Binary(op), inputs, r.max(cols), true);
            }
        }
    }
}

fn matmul<E: Element>(c: &mut Cases<E>) {
    // (m, k, n): scalars, vectors, thin products (k <= 4, n <= 8, small m), `gemm`-sized
    // ones, a long inner dimension.
    let dims = [
        (1, 1, 1),
        (1, 7, 1),
        (3, 1, 5),
        (7, 3, 33),
        (65, 33, 2),
        (5, 65, 127),
        (33, 65, 127),
        (127, 9, 65),
        (1, 4099, 3),
        (2049, 5, 7),
    ];
    for (m, k, n) in dims {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let sa = if ta { sh(k, m) } else { sh(m, k) };
            let sb = if tb { sh(n, k) } else { sh(k, n) };
            let a = c.gen.uniform(sa, -1.0, 1.0);
            let b = c.gen.uniform(sb, -1.0, 1.0);
            let inputs = vec![c.gen.input(sa, a, true), c.gen.input(sb, b, true)];
            let second = m * k * n <= 100_000;
            c.push(Op::Matmul { ta, tb }, inputs, m.max(k).max(n), second);
        }
    }
}

/// Products over an empty inner dimension: all zeros, which a device must write itself (a
/// fresh buffer may hold a freed one's values), and empty gradients.
fn empty_inner_products<E: Element>(c: &mut Cases<E>) {
    for (ta, tb) in [(false, false), (true, true)] {
        let (m, n) = (3, 5);
        let sa = if ta { sh(0, m) } else { sh(m, 0) };
        let sb = if tb { sh(n, 0) } else { sh(0, n) };
        let inputs = vec![
            c.gen.input(sa, Vec::new(), true),
            c.gen.input(sb, Vec::new(), true),
        ];
        c.push(Op::Matmul { ta, tb }, inputs, 1, true);
    }
}

/// Column reductions over many rows, a power of two of them or a multiple of one (a
/// device may split such rows into classes and reduce the classes' partials again), with a
/// NaN in one column (skipped by a maximum, kept by a sum).
fn tall_column_reductions<E: Element>(c: &mut Cases<E>) {
    for op in [ReduceOp::Sum, ReduceOp::Max] {
        for (r, cols) in [(4096, 5), (6144, 3), (65536, 2)] {
            let shape = sh(r, cols);
            let mut values = c.gen.normal(shape, 1.0);
            values[r * cols / 2 + 1] = f64::NAN;
            let input = c.gen.input(shape, values, true);
            c.push(Op::Reduce(op, Axis::Rows), vec![input], r, false);
        }
    }
}

fn reductions<E: Element>(c: &mut Cases<E>) {
    for op in [ReduceOp::Sum, ReduceOp::Max] {
        for axis in [Axis::Rows, Axis::Cols, Axis::All] {
            for (r, cols) in REDUCTION {
                let shape = sh(r, cols);
                let values = c.gen.normal(shape, 1.0);
                let input = c.gen.input(shape, values, true);
                c.push(Op::Reduce(op, axis), vec![input], r * cols, true);
            }
        }
        // Ties: the gradient of a maximum goes to the first maximal entry.
        if op == ReduceOp::Max {
            for axis in [Axis::Rows, Axis::Cols, Axis::All] {
                let shape = sh(33, 7);
                let values = c.gen.integers(shape, 3);
                let input = c.gen.input(shape, values, true);
                c.push(Op::Reduce(op, axis), vec![input], 231, true);
            }
        }
    }
    for axis in [Axis::Rows, Axis::Cols, Axis::All] {
        for (r, cols) in REDUCTION {
            let shape = sh(r, cols);
            let values = c.gen.normal(shape, 1.0);
            let input = c.gen.input(shape, values, false);
            c.push(Op::ArgmaxMask(axis), vec![input], 1, false);
        }
        let shape = sh(33, 7);
        let values = c.gen.integers(shape, 3);
        let input = c.gen.input(shape, values, false);
        c.push(Op::ArgmaxMask(axis), vec![input], 1, false);
    }
    for op in [Op::LogSumExpCols, Op::SoftmaxCols] {
        let shapes = REDUCTION.iter().chain(&[(65, 8), (2049, 7)]);
        for &(r, cols) in shapes {
            let shape = sh(r, cols);
            let values = c.gen.normal(shape, 3.0);
            let input = c.gen.input(shape, values, true);
            c.push(op.clone(), vec![input], cols, r * cols <= 20_000);
            c.conditioned_by_input();
            c.floor(0.0);
        }
        // Entries whose exponentials overflow: a stable kernel subtracts the row maximum.
        let shape = sh(3, 33);
        let values = c.gen.uniform(shape, -500.0, 500.0);
        let input = c.gen.input(shape, values, true);
        c.push(op, vec![input], 33, true);
        c.conditioned_by_input();
        // Saturated rows: every probability is about 0 or 1, and rounds at the scale of 1.
        c.floor(1.0);
    }
    for (r, cols) in [(1, 1), (3, 7), (2049, 3), (1, 4099), (65, 33)] {
        for from in [sh(1, cols), sh(r, 1), sh(1, 1), sh(r, cols)] {
            let values = c.gen.normal(from, 1.0);
            let input = c.gen.input(from, values, true);
            c.push(Op::BroadcastTo(sh(r, cols)), vec![input], r.max(cols), true);
        }
    }
}

fn columns<E: Element>(c: &mut Cases<E>) {
    for (r, cols) in COLUMNS {
        let shape = sh(r, cols);
        let mut ranges = vec![(0, cols), (0, 1), (cols - 1, 1)];
        if cols > 2 {
            ranges.push((1, cols - 2));
            ranges.push((cols / 2, cols - cols / 2));
        }
        for (start, len) in ranges {
            let values = c.gen.normal(shape, 1.0);
            let input = c.gen.input(shape, values, true);
            c.push(Op::SliceCols { start, len }, vec![input], 1, true);
        }
    }
    for r in [1, 3, 2049] {
        let layouts: [&[usize]; 4] = [&[1], &[1, 3], &[7, 1, 33], &[4099, 1]];
        for widths in layouts {
            if r > 1 && widths[0] == 4099 {
                continue;
            }
            let inputs = widths
                .iter()
                .map(|&w| {
                    let values = c.gen.normal(sh(r, w), 1.0);
                    c.gen.input(sh(r, w), values, true)
                })
                .collect();
            c.push(Op::ConcatCols, inputs, 1, true);
        }
    }
    for (r, cols) in COLUMNS {
        let shape = sh(r, cols);
        // A permutation, a selection with repeats (whose gradient collides), a single column,
        // and more columns than the input has.
        let indices = [
            c.gen.permutation(cols),
            c.gen.index(cols.div_ceil(2), cols),
            vec![cols - 1],
            c.gen.index(2 * cols + 1, cols),
        ];
        for index in indices {
            let values = c.gen.normal(shape, 1.0);
            let input = c.gen.input(shape, values, true);
            let terms = multiplicity(&index);
            c.push(Op::GatherCols(index), vec![input], terms, true);
        }
        // Scatter-adds: repeated targets (sums), a permutation, a wider output.
        let scatters = [
            (c.gen.index(cols, cols), cols),
            (c.gen.permutation(cols), cols),
            (c.gen.index(cols, 2 * cols + 3), 2 * cols + 3),
            (c.gen.index(cols, 1), 1),
        ];
        for (index, width) in scatters {
            let values = c.gen.normal(shape, 1.0);
            let input = c.gen.input(shape, values, true);
            let terms = multiplicity(&index);
            c.push(Op::ScatterAddCols(index, width), vec![input], terms, true);
        }
        // Select: masks of zeros and of non-zero values of either sign, and NaN (set: not 0).
        let mask: Vec<f64> = c
            .gen
            .integers(shape, 5)
            .into_iter()
            .map(|m| [0.0, 1.0, -1.0, 0.5, f64::NAN][m as usize])
            .collect();
        let a = c.gen.normal(shape, 1.0);
        let b = c.gen.normal(shape, 1.0);
        let inputs = vec![
            c.gen.input(shape, mask, false),
            c.gen.input(shape, a, true),
            c.gen.input(shape, b, true),
        ];
        c.push(Op::Select, inputs, 1, true);
    }
}

/// How often the most repeated index repeats: the longest sum of a scatter-add.
fn multiplicity(index: &[usize]) -> usize {
    let mut counts = std::collections::HashMap::new();
    for &i in index {
        *counts.entry(i).or_insert(0usize) += 1;
    }
    counts.into_values().max().unwrap_or(1)
}

fn per_row<E: Element>(c: &mut Cases<E>) {
    for (r, cols) in [(1, 1), (3, 7), (2049, 3), (1, 4099)] {
        let shape = sh(r, cols);
        for to in [sh(cols, r), sh(1, r * cols), sh(r * cols, 1)] {
            let values = c.gen.normal(shape, 1.0);
            let input = c.gen.input(shape, values, true);
            c.push(Op::Reshape(to), vec![input], 1, true);
        }
    }
    for (r, cols) in [(1, 1), (3, 7), (2049, 9), (4099, 2), (1, 4099)] {
        let shape = sh(r, cols);
        let index = c.gen.index(r, cols);
        let values = c.gen.normal(shape, 1.0);
        let input = c.gen.input(shape, values, true);
        c.push(Op::TakePerRow(index.clone()), vec![input], 1, true);
        let values = c.gen.normal(sh(r, 1), 1.0);
        let input = c.gen.input(sh(r, 1), values, true);
        c.push(Op::PutPerRow(index, cols), vec![input], 1, true);
    }
    // Sorted rows with repeated entries; values below, above, between and equal to them, and
    // NaN (which counts none).
    for (r, k) in [(1, 1), (3, 7), (2049, 9), (65, 1), (1, 4099)] {
        let mut sorted = Vec::with_capacity(r * k);
        let mut x = Vec::with_capacity(r);
        for i in 0..r {
            let mut row: Vec<f64> = c
                .gen
                .integers(sh(1, k), 8)
                .into_iter()
                .map(|v| v * 0.5 - 2.0)
                .collect();
            row.sort_by(f64::total_cmp);
            let v = match i % 5 {
                0 => row[c.gen.rng.random_range(0..k)],
                1 => -3.0,
                2 => 3.0,
                3 if i % 15 == 3 => f64::NAN,
                _ => c.gen.rng.random_range(-2.5..2.5),
            };
            sorted.extend(row);
            x.push(v);
        }
        let inputs = vec![
            c.gen.input(sh(r, k), sorted, false),
            c.gen.input(sh(r, 1), x, false),
        ];
        c.push(Op::SearchSortedRows, inputs, 1, false);
    }
}

fn linear<E: Element>(c: &mut Cases<E>) {
    // (rows, in, out): thin products (one input, two outputs), `gemm`-sized ones, a long row.
    let dims = [
        (1, 1, 1),
        (3, 7, 1),
        (65, 1, 64),
        (2049, 3, 7),
        (33, 65, 127),
        (1, 4099, 3),
        (127, 64, 2),
    ];
    let acts = [
        Activation::Identity,
        Activation::Relu,
        Activation::LeakyRelu(0.2),
    ];
    for act in acts {
        for (n, d_in, d_out) in dims {
            let (sx, sw, sb) = (sh(n, d_in), sh(d_out, d_in), sh(1, d_out));
            let w: Vec<f64> = c
                .gen
                .uniform(sw, -1.0, 1.0)
                .into_iter()
                .map(Gen::<E>::round)
                .collect();
            let b: Vec<f64> = c
                .gen
                .uniform(sb, -1.0, 1.0)
                .into_iter()
                .map(Gen::<E>::round)
                .collect();
            let mut x: Vec<f64> = Vec::with_capacity(n * d_in);
            for _ in 0..n {
                x.extend(clear_row(&mut c.gen, &w, &b, d_in));
            }
            let inputs = vec![
                c.gen.input(sx, x, true),
                c.gen.input(sw, w, true),
                c.gen.input(sb, b, true),
            ];
            let second = n * d_in * d_out <= 300_000;
            c.push(Op::Linear(act), inputs, n.max(d_in).max(d_out), second);
        }
    }
}

/// A row of inputs whose pre-activations are all clear of zero (relative to the size of their
/// terms), so that rounding cannot flip which side of the activation's kink they are on.
fn clear_row<E: Element>(gen: &mut Gen<E>, w: &[f64], b: &[f64], d_in: usize) -> Vec<f64> {
    let mut row = Vec::new();
    for _ in 0..100 {
        row = gen
            .uniform(sh(1, d_in), -1.0, 1.0)
            .into_iter()
            .map(Gen::<E>::round)
            .collect();
        let clear = b.iter().enumerate().all(|(j, &bj)| {
            let wj = &w[j * d_in..(j + 1) * d_in];
            let pre: f64 = bj + row.iter().zip(wj).map(|(x, w)| x * w).sum::<f64>();
            let size: f64 = bj.abs() + row.iter().zip(wj).map(|(x, w)| (x * w).abs()).sum::<f64>();
            pre.abs() > 1e-4 * size
        });
        if clear {
            break;
        }
    }
    row
}

fn affine_coupling<E: Element>(c: &mut Cases<E>) {
    // (rows, d, d2): one transformed column, all columns transformed, odd splits, long rows.
    let dims = [
        (1, 1, 1),
        (3, 2, 1),
        (3, 3, 3),
        (65, 7, 3),
        (2049, 4, 2),
        (1, 4099, 2049),
    ];
    for scale in [CouplingScale::Exp, CouplingScale::Sigmoid] {
        for direction in [Direction::Forward, Direction::Inverse] {
            for (n, d, d2) in dims {
                let (sv, sp) = (sh(n, d), sh(n, 2 * d2));
                let v = c.gen.normal(sv, 1.0);
                let p = c.gen.normal(sp, 0.7);
                let inputs = vec![c.gen.input(sv, v, true), c.gen.input(sp, p, true)];
                let second = n * d <= 10_000;
                c.push(
                    Op::AffineCoupling(scale, direction),
                    inputs,
                    n.max(d),
                    second,
                );
            }
        }
    }
}

fn diag_normal<E: Element>(c: &mut Cases<E>) {
    for (n, d) in [(1, 1), (3, 7), (2049, 3), (1, 4099), (65, 33), (4099, 1)] {
        let z = c.gen.normal(sh(n, d), 1.5);
        let loc = c.gen.normal(sh(1, d), 0.5);
        let log_scale = c.gen.uniform(sh(1, d), -1.0, 1.0);
        let inputs = vec![
            c.gen.input(sh(n, d), z, true),
            c.gen.input(sh(1, d), loc, true),
            c.gen.input(sh(1, d), log_scale, true),
        ];
        c.push(Op::DiagNormalLogProb, inputs, n.max(d), true);
    }
}

fn rational_quadratic<E: Element>(c: &mut Cases<E>) {
    let spec = |bins| RationalQuadratic {
        bins,
        tail_bound: 3.0,
        min_bin_width: 1e-3,
        min_bin_height: 1e-3,
        min_derivative: 1e-3,
    };
    // Entries: one, a few, 65 and 66 (a block of 64 and a tail), and thousands (6147 = 96
    // blocks and 3 entries; a row of 4099), with one, a few and many bins.
    let cases = [
        (1, 1, 8),
        (3, 7, 8),
        (65, 1, 8),
        (33, 2, 8),
        (2049, 3, 8),
        (1, 127, 8),
        (1, 4099, 8),
        (4099, 1, 2),
        (7, 3, 1),
        (3, 33, 2),
        (65, 1, 3),
    ];
    for direction in [Direction::Forward, Direction::Inverse] {
        for (n, d, bins) in cases {
            let spec = spec(bins);
            let p = spec.params_per_feature();
            let params = c.gen.normal(sh(n, d * p), 1.0);
            let params: Vec<f64> = params.into_iter().map(Gen::<E>::round).collect();
            let bound = spec.tail_bound;
            let mut x = c.gen.uniform(sh(n, d), -1.2 * bound, 1.2 * bound);
            // The tail bound itself, just outside it, and zero.
            for (slot, v) in x
                .iter_mut()
                .zip([-bound, bound, 1.1 * bound, -1.1 * bound, 0.0])
            {
                *slot = v;
            }
            for (e, xe) in x.iter_mut().enumerate() {
                *xe = clear_of_knots(
                    Gen::<E>::round(*xe),
                    &params[e * p..(e + 1) * p],
                    &spec,
                    direction,
                );
            }
            let inputs = vec![
                c.gen.input(sh(n, d), x, true),
                c.gen.input(sh(n, d * p), params, true),
            ];
            let second = n * d <= 200;
            c.push(
                Op::RationalQuadratic(spec, direction),
                inputs,
                8 * bins,
                second,
            );
            c.floor(1.0);
            // Knot derivatives range over (1e-3, 1e3), and the inverse solves a quadratic.
            c.condition(4.0);
        }
    }
}

/// `x` moved off the inner knots of its spline (on the input's side of `direction`), so that
/// rounding in the backend's knots cannot move it into the next bin (where the gradient with
/// respect to the parameters is another).
fn clear_of_knots(x: f64, params: &[f64], spec: &RationalQuadratic, direction: Direction) -> f64 {
    let k = spec.bins;
    let (raw, min) = match direction {
        Direction::Forward => (&params[..k], spec.min_bin_width),
        Direction::Inverse => (&params[k..2 * k], spec.min_bin_height),
    };
    let max = raw.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let total: f64 = raw.iter().map(|r| (r - max).exp()).sum();
    let bound = spec.tail_bound;
    let gap = 1e-4 * bound;
    let mut acc = 0.0;
    let mut x = x;
    for r in &raw[..k - 1] {
        acc += min + (1.0 - min * k as f64) * (r - max).exp() / total;
        let knot = -bound + 2.0 * bound * acc;
        if (x - knot).abs() < gap {
            // Bins are at least `2 B min` = 20 gaps wide, so this stays within one.
            x = if x >= knot {
                knot + 4.0 * gap
            } else {
                knot - 4.0 * gap
            };
        }
    }
    x
}
