//! The conformance suite passes on the CPU backend in both element types, and catches a
//! backend that gets one op slightly wrong: `Broken` forwards every `Backend` method to
//! `Cpu<f64>` except one, whose result it perturbs.

use flow_core::backend::{
    Activation, AdamStep, Backend, BinaryOp, CouplingScale, Direction, RationalQuadratic, ReduceOp,
    UnaryOp,
};
use flow_core::conformance::{self, ConformanceError, Failure, Tolerances};
use flow_core::{backend_error, Axis, Cpu, Error, FlowRng, IndexTensor, Shape, Tape, Tensor};
use ndarray::Array2;
use std::time::Instant;

fn run_on<B: Backend>(backend: &B) -> conformance::Report {
    let start = Instant::now();
    let report = conformance::run(backend, Tolerances::for_backend(backend))
        .unwrap_or_else(|e| panic!("{} fails the conformance suite: {e}", backend.name()));
    println!("{report} in {:.2?}", start.elapsed());
    for c in report.checks.iter().filter(|c| c.op.starts_with("rand")) {
        if c.worst_ratio > 0.0 {
            println!(
                "  {} ({}): {} at {:.2} of its bound",
                c.op, c.case, c.what, c.worst_ratio
            );
        }
    }
    report
}

#[test]
fn cpu_f64_conforms() {
    let report = run_on(&Cpu::<f64>::new());
    // Against itself the reference is exact (a composition from primitives rounds otherwise;
    // the random draws' statistics are distances to their distributions).
    assert!(report.checks.iter().all(|c| c.max_abs_error == 0.0
        || c.what.contains("composition")
        || c.op == "adam_update"
        || c.op.starts_with("rand")));
}

/// The ops a run reports on: every `Backend` method but the transfers' reads and the fused
/// ops' backwards (checked through their forwards' gradients).
const REPORTED_OPS: [&str; 29] = [
    "upload",
    "full",
    "upload_index",
    "synchronize",
    "finite_probe",
    "randn",
    "rand_uniform",
    "unary",
    "binary",
    "matmul",
    "reduce",
    "argmax_mask",
    "logsumexp_cols",
    "softmax_cols",
    "broadcast_to",
    "slice_cols",
    "concat_cols",
    "gather_cols",
    "scatter_add_cols",
    "select",
    "reshape",
    "take_per_row",
    "put_per_row",
    "search_sorted_rows",
    "linear",
    "affine_coupling",
    "diag_normal_log_prob",
    "rational_quadratic",
    "adam_update",
];

#[test]
fn cpu_f32_conforms() {
    let report = run_on(&Cpu::<f32>::new());
    let ops = report.ops();
    for op in REPORTED_OPS {
        assert!(ops.contains(&op), "{op} is not checked: {ops:?}");
    }
    for what in [
        "first-order gradient",
        "second-order gradient",
        "composition",
    ] {
        assert!(
            report.checks.iter().any(|c| c.what.contains(what)),
            "no {what} check"
        );
    }
}

/// The one method `Broken` gets wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// A transfer: the last value of every upload off by 1e-12.
    UploadLastEntry,
    /// A primitive: every quotient times `1 + 1e-10`.
    DivScaled,
    /// A primitive: column sums (over rows) off by 1e-10 at their last entry.
    SumRowsLastEntry,
    /// A primitive: every softmax entry times `1 + 1e-6`.
    SoftmaxScaled,
    /// A primitive: one entry of each gather off by 1e-3.
    GatherOneEntry,
    /// A primitive: the last count of each row search one too many.
    SearchSortedOffByOne,
    /// A primitive: one entry of each matrix product times `1 + 1e-9`.
    MatmulOneEntry,
    /// A primitive, at long rows only: row sums of more than 4096 columns off by 1e-7.
    SumColsOfLongRows,
    /// A primitive, over an empty inner dimension only: a product left as a fresh device
    /// buffer may be, holding a freed buffer's values (here ones) instead of zeros.
    EmptyProductStale,
    /// A fused forward, past the first 64 entries only (the CPU kernel's block): the
    /// spline's outputs there times `1 + 1e-9`.
    SplineBeyondFirstBlock,
    /// A primitive: each scatter-add's last entry off by 1e-9.
    ScatterAddLastEntry,
    /// A fused forward: the spline's log-dets times `1 + 1e-7`.
    SplineLogDet,
    /// A fused forward: a linear layer's last output off by 1e-9.
    LinearLastEntry,
    /// A fused forward: the coupling's log-dets times `1 + 1e-9`.
    CouplingLogDet,
    /// A fused backward: the coupling's parameter gradient off by 1e-6 at its last entry.
    CouplingBackward,
    /// A fused backward: the spline's gradients times `1 + 1e-8`.
    SplineBackward,
    /// A fused backward: the bias gradient of a linear layer times `1 + 1e-6`.
    ActivationBackward,
    /// A fused backward: the diagonal Gaussian's log-scale gradient off by 1e-9.
    DiagNormalBackward,
    /// Adam: the second moment off by 1e-9 relative.
    AdamSecondMoment,
    /// A device error: every scatter-add (the backward of a gather) reports out of memory.
    ScatterAddOutOfMemory,
    /// Index storage: the last index read back one too large.
    DownloadIndexLastEntry,
    /// `synchronize` reports a device error.
    SynchronizeFails,
    /// A finiteness probe that is always 0.
    FiniteProbeAlwaysFinite,
    /// Normal draws that do not advance the stream: every draw from one stream repeats.
    RandnKeepsStream,
    /// Normal draws that advance the stream by half of what they used: the next draw repeats
    /// the second half of this one.
    RandnAdvancesHalf,
    /// Normal draws times 1.02.
    RandnScaled,
    /// Uniform draws shifted by 1% of their interval.
    UniformShifted,
}

#[derive(Clone, Copy, Debug)]
struct Broken {
    cpu: Cpu<f64>,
    fault: Fault,
}

type S = Array2<f64>;
type R<T> = flow_core::Result<T>;

/// `a` with its last entry increased by `delta` (when it has one).
fn bump_last(mut a: S, delta: f64) -> S {
    if let Some(x) = a.iter_mut().last() {
        *x += delta;
    }
    a
}

fn scaled(a: S, factor: f64) -> S {
    a.mapv(|x| x * factor)
}

impl Broken {
    fn is(&self, fault: Fault) -> bool {
        self.fault == fault
    }
}

impl Backend for Broken {
    type Elem = f64;
    type Storage = S;
    type Index = Vec<usize>;

    fn name(&self) -> String {
        format!("broken ({:?})", self.fault)
    }
    fn upload(&self, shape: Shape, data: Vec<f64>) -> R<S> {
        let out = self.cpu.upload(shape, data)?;
        if self.is(Fault::UploadLastEntry) {
            return Ok(bump_last(out, 1e-12));
        }
        Ok(out)
    }
    fn download(&self, s: &S) -> R<Vec<f64>> {
        self.cpu.download(s)
    }
    fn full(&self, shape: Shape, value: f64) -> R<S> {
        self.cpu.full(shape, value)
    }
    fn shape(&self, s: &S) -> Shape {
        self.cpu.shape(s)
    }
    fn upload_index(&self, index: &[usize]) -> R<Vec<usize>> {
        self.cpu.upload_index(index)
    }
    fn download_index(&self, index: &Vec<usize>) -> R<Vec<usize>> {
        let mut out = self.cpu.download_index(index)?;
        if self.is(Fault::DownloadIndexLastEntry) {
            if let Some(last) = out.last_mut() {
                *last += 1;
            }
        }
        Ok(out)
    }
    fn synchronize(&self) -> R<()> {
        if self.is(Fault::SynchronizeFails) {
            return Err(backend_error(self, "an earlier launch failed"));
        }
        self.cpu.synchronize()
    }
    fn finite_probe(&self, a: &S) -> R<S> {
        if self.is(Fault::FiniteProbeAlwaysFinite) {
            return self.cpu.full(Shape::new(1, 1), 0.0);
        }
        self.cpu.finite_probe(a)
    }
    fn randn(&self, shape: Shape, rng: &mut FlowRng) -> R<S> {
        if self.is(Fault::RandnKeepsStream) {
            return self.cpu.randn(shape, &mut rng.clone());
        }
        if self.is(Fault::RandnAdvancesHalf) && shape.len() >= 2 {
            let out = self.cpu.randn(shape, &mut rng.clone())?;
            self.cpu.randn(Shape::new(1, shape.len() / 2), rng)?;
            return Ok(out);
        }
        let out = self.cpu.randn(shape, rng)?;
        if self.is(Fault::RandnScaled) {
            return Ok(scaled(out, 1.02));
        }
        Ok(out)
    }
    fn rand_uniform(&self, shape: Shape, low: f64, high: f64, rng: &mut FlowRng) -> R<S> {
        let out = self.cpu.rand_uniform(shape, low, high, rng)?;
        if self.is(Fault::UniformShifted) {
            return Ok(out.mapv(|x| x + 0.01 * (high - low)));
        }
        Ok(out)
    }
    fn matmul(&self, a: &S, ta: bool, b: &S, tb: bool) -> R<S> {
        let out = self.cpu.matmul(a, ta, b, tb)?;
        let inner = if ta { a.nrows() } else { a.ncols() };
        if self.is(Fault::EmptyProductStale) && inner == 0 {
            return Ok(out.mapv(|_| 1.0));
        }
        if self.is(Fault::MatmulOneEntry) {
            let last = out.iter().last().copied().unwrap_or(0.0);
            return Ok(bump_last(out, last * 1e-9));
        }
        Ok(out)
    }
    fn unary(&self, op: UnaryOp<f64>, a: &S) -> R<S> {
        self.cpu.unary(op, a)
    }
    fn binary(&self, op: BinaryOp, a: &S, b: &S) -> R<S> {
        let out = self.cpu.binary(op, a, b)?;
        if self.is(Fault::DivScaled) && op == BinaryOp::Div {
            return Ok(scaled(out, 1.0 + 1e-10));
        }
        Ok(out)
    }
    fn reduce(&self, op: ReduceOp, axis: Axis, a: &S) -> R<S> {
        let out = self.cpu.reduce(op, axis, a)?;
        if self.is(Fault::SumRowsLastEntry) && op == ReduceOp::Sum && axis == Axis::Rows {
            return Ok(bump_last(out, 1e-10));
        }
        let long = a.ncols() > 4096;
        if self.is(Fault::SumColsOfLongRows) && op == ReduceOp::Sum && axis == Axis::Cols && long {
            return Ok(bump_last(out, 1e-7));
        }
        Ok(out)
    }
    fn argmax_mask(&self, axis: Axis, a: &S) -> R<S> {
        self.cpu.argmax_mask(axis, a)
    }
    fn logsumexp_cols(&self, a: &S) -> R<S> {
        self.cpu.logsumexp_cols(a)
    }
    fn softmax_cols(&self, a: &S) -> R<S> {
        let out = self.cpu.softmax_cols(a)?;
        if self.is(Fault::SoftmaxScaled) {
            return Ok(scaled(out, 1.0 + 1e-6));
        }
        Ok(out)
    }
    fn broadcast_to(&self, a: &S, shape: Shape) -> R<S> {
        self.cpu.broadcast_to(a, shape)
    }
    fn slice_cols(&self, a: &S, start: usize, len: usize) -> R<S> {
        self.cpu.slice_cols(a, start, len)
    }
    fn concat_cols(&self, parts: &[&S]) -> R<S> {
        self.cpu.concat_cols(parts)
    }
    fn gather_cols(&self, a: &S, index: &Vec<usize>) -> R<S> {
        let out = self.cpu.gather_cols(a, index)?;
        if self.is(Fault::GatherOneEntry) {
            return Ok(bump_last(out, 1e-3));
        }
        Ok(out)
    }
    fn scatter_add_cols(&self, a: &S, index: &Vec<usize>, width: usize) -> R<S> {
        if self.is(Fault::ScatterAddOutOfMemory) {
            return Err(backend_error(
                self,
                "out of memory allocating the scatter's output",
            ));
        }
        let out = self.cpu.scatter_add_cols(a, index, width)?;
        if self.is(Fault::ScatterAddLastEntry) {
            return Ok(bump_last(out, 1e-9));
        }
        Ok(out)
    }
    fn select(&self, mask: &S, a: &S, b: &S) -> R<S> {
        self.cpu.select(mask, a, b)
    }
    fn reshape(&self, a: &S, shape: Shape) -> R<S> {
        self.cpu.reshape(a, shape)
    }
    fn take_per_row(&self, a: &S, index: &Vec<usize>) -> R<S> {
        self.cpu.take_per_row(a, index)
    }
    fn put_per_row(&self, a: &S, index: &Vec<usize>, width: usize) -> R<S> {
        self.cpu.put_per_row(a, index, width)
    }
    fn search_sorted_rows(&self, sorted: &S, x: &S) -> R<Vec<usize>> {
        let mut counts = self.cpu.search_sorted_rows(sorted, x)?;
        if self.is(Fault::SearchSortedOffByOne) {
            if let Some(c) = counts.last_mut() {
                *c += 1;
            }
        }
        Ok(counts)
    }
    fn rational_quadratic(
        &self,
        x: &S,
        params: &S,
        spec: &RationalQuadratic,
        direction: Direction,
    ) -> R<(S, S)> {
        let (mut out, cache) = self.cpu.rational_quadratic(x, params, spec, direction)?;
        if self.is(Fault::SplineLogDet) {
            // The log-dets are the second half of each row.
            let d = x.ncols();
            out.slice_mut(ndarray::s![.., d..])
                .mapv_inplace(|v| v * (1.0 + 1e-7));
        }
        if self.is(Fault::SplineBeyondFirstBlock) {
            // Output entry `e` (row-major over `x`) is at row `e / d`, column `e % d`.
            let d = x.ncols();
            for e in 64..x.len() {
                out[[e / d, e % d]] *= 1.0 + 1e-9;
            }
        }
        Ok((out, cache))
    }
    fn rational_quadratic_backward(
        &self,
        x: &S,
        params: &S,
        cache: &S,
        spec: &RationalQuadratic,
        direction: Direction,
        g: &S,
    ) -> R<(S, S)> {
        let (gx, gp) = self
            .cpu
            .rational_quadratic_backward(x, params, cache, spec, direction, g)?;
        if self.is(Fault::SplineBackward) {
            return Ok((scaled(gx, 1.0 + 1e-8), scaled(gp, 1.0 + 1e-8)));
        }
        Ok((gx, gp))
    }
    fn linear(&self, x: &S, weight: &S, bias: &S, act: Activation<f64>) -> R<S> {
        let out = self.cpu.linear(x, weight, bias, act)?;
        if self.is(Fault::LinearLastEntry) {
            return Ok(bump_last(out, 1e-9));
        }
        Ok(out)
    }
    fn activation_backward(&self, act: Activation<f64>, g: &mut S, out: &S) -> R<S> {
        let row_sum = self.cpu.activation_backward(act, g, out)?;
        if self.is(Fault::ActivationBackward) {
            return Ok(scaled(row_sum, 1.0 + 1e-6));
        }
        Ok(row_sum)
    }
    fn affine_coupling(
        &self,
        v: &S,
        params: &S,
        scale: CouplingScale,
        direction: Direction,
    ) -> R<(S, S)> {
        let (out, log_det) = self.cpu.affine_coupling(v, params, scale, direction)?;
        if self.is(Fault::CouplingLogDet) {
            return Ok((out, scaled(log_det, 1.0 + 1e-9)));
        }
        Ok((out, log_det))
    }
    fn affine_coupling_backward(
        &self,
        v: &S,
        params: &S,
        out: &S,
        g: &S,
        scale: CouplingScale,
        direction: Direction,
    ) -> R<(S, S)> {
        let (gv, gp) = self
            .cpu
            .affine_coupling_backward(v, params, out, g, scale, direction)?;
        if self.is(Fault::CouplingBackward) {
            return Ok((gv, bump_last(gp, 1e-6)));
        }
        Ok((gv, gp))
    }
    fn diag_normal_log_prob(&self, z: &S, loc: &S, log_scale: &S) -> R<S> {
        self.cpu.diag_normal_log_prob(z, loc, log_scale)
    }
    fn diag_normal_log_prob_backward(&self, z: &S, loc: &S, log_scale: &S, g: &S) -> R<(S, S, S)> {
        let (gz, gl, gs) = self
            .cpu
            .diag_normal_log_prob_backward(z, loc, log_scale, g)?;
        if self.is(Fault::DiagNormalBackward) {
            return Ok((gz, gl, bump_last(gs, 1e-9)));
        }
        Ok((gz, gl, gs))
    }
    fn adam_update(
        &self,
        param: &mut S,
        grad: &S,
        m: &mut S,
        v: &mut S,
        h: &AdamStep<f64>,
    ) -> R<()> {
        self.cpu.adam_update(param, grad, m, v, h)?;
        if self.is(Fault::AdamSecondMoment) {
            v.mapv_inplace(|x| x * (1.0 + 1e-9));
        }
        Ok(())
    }
}

fn failure(fault: Fault) -> ConformanceError {
    let backend = Broken {
        cpu: Cpu::new(),
        fault,
    };
    match conformance::run(&backend, Tolerances::for_backend(&backend)) {
        Ok(report) => panic!("{fault:?} passed the suite: {report}"),
        Err(e) => {
            println!("{fault:?}: {e}");
            e
        }
    }
}

/// Faults that only show at some shapes are caught at those shapes.
#[test]
fn faults_at_awkward_shapes_are_caught_there() {
    let e = failure(Fault::SumColsOfLongRows);
    assert_eq!(e.op, "reduce", "{e}");
    assert!(e.to_string().contains("Sum over Cols on 1x4099"), "{e}");
    let e = failure(Fault::SplineBeyondFirstBlock);
    assert_eq!(e.op, "rational_quadratic", "{e}");
    assert!(e.to_string().contains("on 65x1"), "{e}");
    assert!(e.to_string().contains("entry 64"), "{e}");
    let e = failure(Fault::EmptyProductStale);
    assert_eq!(e.op, "matmul", "{e}");
    assert!(e.to_string().contains("3x0"), "{e}");
}

/// A device error is the suite's failure, naming the op, not a panic.
#[test]
fn a_device_error_fails_the_suite_as_an_error() {
    let e = failure(Fault::ScatterAddOutOfMemory);
    assert_eq!(e.op, "scatter_add_cols", "{e}");
    assert!(
        matches!(*e.failure, Failure::Backend(Error::Backend { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("out of memory"), "{e}");
}

/// A device error inside a backward pass comes back from `Tape::backward`, and one in a
/// forward op from the op itself.
#[test]
fn a_device_error_in_a_backward_pass_is_returned() {
    let backend = Broken {
        cpu: Cpu::new(),
        fault: Fault::ScatterAddOutOfMemory,
    };
    let tape = Tape::new(&backend);
    let x = tape.input(Tensor::from_vec(&backend, (2, 3), vec![1.0; 6]).unwrap());
    let index = IndexTensor::new(&backend, &[2, 0]).unwrap();
    let loss = x.gather_cols(&index).unwrap().sum_all().unwrap();
    match tape.backward(&loss) {
        Err(Error::Backend {
            backend: name,
            message,
        }) => {
            assert!(name.contains("broken"), "{name}");
            assert!(message.contains("out of memory"), "{message}");
        }
        other => panic!("expected the device's error, got {other:?}"),
    }
    let two = Tensor::from_vec(&backend, (1, 2), vec![1.0, 2.0]).unwrap();
    let err = two.scatter_add_cols(&index, 3).unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err}");
}

/// Each fault is reported as the op it breaks; a fault in a backward pass, as a gradient.
#[test]
fn a_perturbed_op_fails_the_suite_naming_it() {
    let expected = [
        (Fault::UploadLastEntry, "upload", "values read back"),
        (Fault::DivScaled, "binary", "value"),
        (Fault::SumRowsLastEntry, "reduce", "value"),
        (Fault::ScatterAddLastEntry, "scatter_add_cols", "value"),
        (Fault::SoftmaxScaled, "softmax_cols", "value"),
        (Fault::GatherOneEntry, "gather_cols", "value"),
        (Fault::SearchSortedOffByOne, "search_sorted_rows", "value"),
        (Fault::MatmulOneEntry, "matmul", "value"),
        (
            Fault::SplineLogDet,
            "rational_quadratic",
            "value of log-det",
        ),
        (Fault::LinearLastEntry, "linear", "value of output"),
        (Fault::CouplingLogDet, "affine_coupling", "value of log-det"),
        (
            Fault::CouplingBackward,
            "affine_coupling",
            "first-order gradient (Backend::affine_coupling_backward) of input 1",
        ),
        (
            Fault::SplineBackward,
            "rational_quadratic",
            "first-order gradient (Backend::rational_quadratic_backward)",
        ),
        (
            Fault::ActivationBackward,
            "linear",
            "first-order gradient (Backend::activation_backward) of input 2",
        ),
        (
            Fault::DiagNormalBackward,
            "diag_normal_log_prob",
            "first-order gradient (Backend::diag_normal_log_prob_backward) of input 2",
        ),
        (Fault::AdamSecondMoment, "adam_update", "second moment"),
    ];
    for (fault, op, what) in expected {
        let e = failure(fault);
        assert_eq!(e.op, op, "{fault:?}: {e}");
        assert!(e.what.contains(what), "{fault:?}: {e}");
        assert!(
            matches!(*e.failure, Failure::Mismatch { .. }),
            "{fault:?}: {e}"
        );
        let message = e.to_string();
        assert!(message.contains(op), "{message}");
        assert!(message.contains("reference"), "{message}");
    }
}

/// The methods held to a contract rather than to the reference's numbers (index storage,
/// `synchronize`, probes, random draws) fail the suite naming the method and what broke.
#[test]
fn a_broken_contract_fails_the_suite_naming_it() {
    let expected = [
        (Fault::DownloadIndexLastEntry, "upload_index", "read back"),
        (Fault::SynchronizeFails, "synchronize", "without an error"),
        (Fault::FiniteProbeAlwaysFinite, "finite_probe", "finiteness"),
        (Fault::RandnKeepsStream, "randn", "the stream advances"),
        (Fault::RandnAdvancesHalf, "randn", "the stream advances"),
        (Fault::RandnScaled, "randn", "variance"),
        (Fault::UniformShifted, "rand_uniform", "within the support"),
    ];
    for (fault, op, what) in expected {
        let e = failure(fault);
        assert_eq!(e.op, op, "{fault:?}: {e}");
        assert!(e.what.contains(what), "{fault:?}: {e}");
    }
    let e = failure(Fault::SynchronizeFails);
    assert!(
        matches!(*e.failure, Failure::Backend(Error::Backend { .. })),
        "{e}"
    );
    // A stream advanced by half the draw is caught by the shifted repeats, not the position.
    let e = failure(Fault::RandnAdvancesHalf);
    assert!(e.to_string().contains("shifted by 3 entries"), "{e}");
    let e = failure(Fault::FiniteProbeAlwaysFinite);
    assert!(e.case.contains("NaN at entry 0"), "{e}");
}

/// `Counted` forwards every method (it passes the suite, and the suite reaches every
/// method through it) and counts each call.
#[test]
fn a_counted_backend_conforms_and_counts_every_method() {
    let counted = flow_core::backend::Counted::new(Cpu::<f64>::new());
    run_on(&counted);
    let calls = counted.calls();
    let reached_through_others = [
        "download",
        "download_index",
        "rational_quadratic_backward",
        "activation_backward",
        "affine_coupling_backward",
        "diag_normal_log_prob_backward",
    ];
    for method in REPORTED_OPS.into_iter().chain(reached_through_others) {
        assert!(calls.get(method) > 0, "{method} was not counted: {calls}");
    }
    assert_eq!(calls.0.len(), 35, "{calls}");
    assert!(calls.reads() >= calls.get("download"));
    let later = counted.calls();
    assert_eq!(later.since(&calls), flow_core::backend::Calls::default());
}
