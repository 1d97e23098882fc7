//! Central finite-difference gradient checks, first and second order, for any function
//! built from tape operations. Public so that every crate checks its own ops the same way.
//!
//! The function's output (any shape) is reduced to a scalar with fixed random weights,
//! `L = sum(f(x) * W)`, so one check covers the whole Jacobian through a random projection.
//! Second order checks the Hessian-vector product `d/dx <dL/dx, V>` recorded by
//! [`Tape::grad`] with `create_graph = true` against central differences of the
//! first-order gradient.
//!
//! ```
//! use flow_core::{gradcheck::GradCheck, Cpu, Tensor};
//! let cpu = Cpu::<f64>::new();
//! let x = Tensor::from_vec(&cpu, (2, 2), vec![0.1, -0.4, 0.7, 1.3])?;
//! GradCheck::default().check(&cpu, &[x.clone()], |v| v[0].tanh()?.exp())?;
//! GradCheck::default().check_second_order(&cpu, &[x], |v| v[0].tanh()?.exp())?;
//! # Ok::<(), flow_core::gradcheck::GradCheckError>(())
//! ```

use crate::autodiff::{Tape, Var};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::random::rng;
use crate::shape::Shape;
use crate::tensor::Tensor;

/// Tolerances and the seed of the projection weights.
#[derive(Clone, Copy, Debug)]
pub struct GradCheck {
    /// Finite-difference step.
    pub eps: f64,
    /// Relative tolerance (of the larger magnitude).
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Seed of the random projection weights.
    pub seed: u64,
}

impl Default for GradCheck {
    fn default() -> Self {
        GradCheck {
            eps: 1e-6,
            rtol: 1e-5,
            atol: 1e-7,
            seed: 0x5eed,
        }
    }
}

/// A failed check.
#[derive(Debug, thiserror::Error)]
pub enum GradCheckError {
    #[error(transparent)]
    Op(#[from] Error),
    #[error(
        "{order} gradient of input {input} at row {row}, column {col}: \
         analytic {analytic:e}, finite differences {numeric:e}"
    )]
    Mismatch {
        order: &'static str,
        input: usize,
        row: usize,
        col: usize,
        analytic: f64,
        numeric: f64,
    },
}

/// What a passing check compared.
#[derive(Clone, Copy, Debug, Default)]
pub struct GradCheckReport {
    /// Number of partial derivatives compared.
    pub checked: usize,
    pub max_abs_error: f64,
}

type Func<'a, B> = dyn Fn(&[Var<B>]) -> Result<Var<B>> + 'a;

/// A tape, its input variables, and a scalar computed from them.
type Recorded<B> = (Tape<B>, Vec<Var<B>>, Var<B>);

impl GradCheck {
    /// Checks the first derivatives of `f` at `inputs`.
    pub fn check<B, F>(
        &self,
        backend: &B,
        inputs: &[Tensor<B>],
        f: F,
    ) -> Result<GradCheckReport, GradCheckError>
    where
        B: Backend<Elem = f64>,
        F: Fn(&[Var<B>]) -> Result<Var<B>>,
    {
        let weights = self.weights(backend, inputs, &f)?;
        let analytic = gradient_values(projected_loss(backend, inputs, &f, &weights)?)?;
        let numeric = |x: &[Tensor<B>]| -> Result<f64> {
            projected_loss(backend, x, &f, &weights)?.2.scalar_value()
        };
        self.compare("first-order", inputs, &analytic, numeric)
    }

    /// Checks the second derivatives of `f` at `inputs` (as Hessian-vector products).
    pub fn check_second_order<B, F>(
        &self,
        backend: &B,
        inputs: &[Tensor<B>],
        f: F,
    ) -> Result<GradCheckReport, GradCheckError>
    where
        B: Backend<Elem = f64>,
        F: Fn(&[Var<B>]) -> Result<Var<B>>,
    {
        let weights = self.weights(backend, inputs, &f)?;
        let mut r = rng(self.seed ^ 0x2ee);
        let directions: Vec<Tensor<B>> = inputs
            .iter()
            .map(|x| Tensor::randn(backend, x.shape(), &mut r))
            .collect::<Result<_>>()?;
        // <dL/dx, V>, with the gradient recorded (create_graph) when `record` is set.
        let directional = |x: &[Tensor<B>], record: bool| -> Result<Recorded<B>> {
            let (tape, vars, loss) = projected_loss(backend, x, &f, &weights)?;
            let refs: Vec<&Var<B>> = vars.iter().collect();
            let grads = tape.grad(&loss, &refs, record)?;
            let mut total = tape.constant(Tensor::zeros(backend, Shape::SCALAR)?);
            for (g, v) in grads.iter().zip(&directions) {
                total = total.add(&g.mul(&tape.constant(v.clone()))?.sum_all()?)?;
            }
            Ok((tape, vars, total))
        };
        let analytic = gradient_values(directional(inputs, true)?)?;
        self.compare("second-order", inputs, &analytic, |x| {
            directional(x, false)?.2.scalar_value()
        })
    }

    fn weights<B: Backend<Elem = f64>>(
        &self,
        backend: &B,
        inputs: &[Tensor<B>],
        f: &Func<'_, B>,
    ) -> Result<Tensor<B>> {
        let tape = Tape::new(backend);
        let vars: Vec<Var<B>> = inputs.iter().map(|x| tape.constant(x.clone())).collect();
        let shape = f(&vars)?.shape();
        Tensor::randn(backend, shape, &mut rng(self.seed))
    }

    fn compare<B: Backend<Elem = f64>>(
        &self,
        order: &'static str,
        inputs: &[Tensor<B>],
        analytic: &[Vec<f64>],
        loss_at: impl Fn(&[Tensor<B>]) -> Result<f64>,
    ) -> Result<GradCheckReport, GradCheckError> {
        let mut report = GradCheckReport::default();
        for (i, x) in inputs.iter().enumerate() {
            let base = x.to_vec()?;
            for k in 0..base.len() {
                let at = |delta: f64| -> Result<f64> {
                    let mut moved = base.clone();
                    moved[k] += delta;
                    let mut xs = inputs.to_vec();
                    xs[i] = Tensor::from_vec(x.backend(), x.shape(), moved)?;
                    loss_at(&xs)
                };
                let numeric = (at(self.eps)? - at(-self.eps)?) / (2.0 * self.eps);
                let a = analytic[i][k];
                let err = (a - numeric).abs();
                let bound = self.atol + self.rtol * a.abs().max(numeric.abs());
                if err.is_nan() || err > bound {
                    return Err(GradCheckError::Mismatch {
                        order,
                        input: i,
                        row: k / x.cols().max(1),
                        col: k % x.cols().max(1),
                        analytic: a,
                        numeric,
                    });
                }
                report.checked += 1;
                report.max_abs_error = report.max_abs_error.max(err);
            }
        }
        Ok(report)
    }
}

/// The gradient of a recorded scalar with respect to each recorded input, as values.
fn gradient_values<B: Backend<Elem = f64>>(
    (tape, vars, scalar): Recorded<B>,
) -> Result<Vec<Vec<f64>>> {
    let refs: Vec<&Var<B>> = vars.iter().collect();
    tape.grad(&scalar, &refs, false)?
        .iter()
        .map(|g| g.value().to_vec())
        .collect::<Result<_>>()
}

/// `sum(f(x) * W)` on a fresh tape whose inputs ask for gradients.
fn projected_loss<B: Backend<Elem = f64>>(
    backend: &B,
    inputs: &[Tensor<B>],
    f: &Func<'_, B>,
    weights: &Tensor<B>,
) -> Result<Recorded<B>> {
    let tape = Tape::new(backend);
    let vars: Vec<Var<B>> = inputs.iter().map(|x| tape.input(x.clone())).collect();
    let out = f(&vars)?;
    let loss = out.mul(&tape.constant(weights.clone()))?.sum_all();
    Ok((tape, vars, loss?))
}
