//! The target of reverse-KL training: a log-density known up to a constant.

use crate::{Backend, Result, Var};

/// A (possibly unnormalised) log-density that can be differentiated: the `p` of a reverse
/// KL divergence `KL(q || p)` estimated from model samples (`reverse_kld` in flow-layers).
///
/// ```
/// use flow_core::{Axis, Backend, Cpu, Result, Tape, Target, Tensor, Var};
///
/// /// The standard normal in `d` dimensions, without its normalising constant.
/// struct Gaussian(usize);
///
/// impl<B: Backend> Target<B> for Gaussian {
///     fn dim(&self) -> usize {
///         self.0
///     }
///     fn log_prob(&self, x: &Var<B>) -> Result<Var<B>> {
///         x.square()?.sum(Axis::Cols)?.mul_scalar(-0.5)
///     }
/// }
///
/// let cpu = Cpu::<f64>::new();
/// let tape = Tape::new(&cpu);
/// let x = tape.input(Tensor::from_vec(&cpu, (1, 2), vec![1.0, 2.0])?);
/// let log_p = Gaussian(2).log_prob(&x)?;
/// assert_eq!(log_p.value().to_vec()?, vec![-2.5]);
/// # Ok::<(), flow_core::Error>(())
/// ```
pub trait Target<B: Backend> {
    /// The dimension of the points, the number of columns of `x`.
    fn dim(&self) -> usize;
    /// log p(x) per row (`rows x 1`), recorded on `x`'s tape so that it can be differentiated.
    fn log_prob(&self, x: &Var<B>) -> Result<Var<B>>;
}
