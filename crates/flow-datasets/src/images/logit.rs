//! RealNVP's logit preprocessing of dequantised pixels, its log-determinant, and bits/dim.

use super::error::{Error, Result};

/// The default `alpha` for MNIST-like data: `1e-6`, as in MAF (Papamakarios et al. 2017) for
/// MNIST. It only keeps `logit` finite at `x = 0` and `x → 256`; a larger `alpha` squeezes
/// the pixel range more and lowers the log-determinant's spread.
pub const MNIST_ALPHA: f64 = 1e-6;
/// RealNVP's `alpha` for CIFAR-10 and the other natural-image sets: `0.05`.
pub const CIFAR_ALPHA: f64 = 0.05;

/// The largest `f64` below 256: the top of the dequantised pixel range `[0, 256)`.
const BELOW_256: f64 = f64::from_bits(256f64.to_bits() - 1);

/// The logit transform of RealNVP (Dinh et al. 2017, section 4.1) in pixel units:
/// `y = logit(s)`, `s = alpha + (1 - 2 alpha) x / 256`, for dequantised pixels `x` in
/// `[0, 256)`, elementwise.
///
/// RealNVP writes `alpha + (1 - alpha) x/256`; this is the symmetric form of MAF and most
/// later code, `alpha + (1 - 2 alpha) x/256`, which maps `[0, 256]` onto
/// `[alpha, 1 - alpha]`, keeps `logit` finite at both ends and is odd about `x = 128`.
///
/// The derivative is `dy/dx = (1 - 2 alpha) / (256 s (1 - s))`, positive, so the Jacobian
/// of the elementwise map is diagonal and
/// `log |det dy/dx| = Σ_features [log(1 - 2 alpha) - log 256 - log s - log(1 - s)]`
/// ([`log_det_rows`](Self::log_det_rows)). A flow's density of `y` gives the density of `x`
/// in pixel units by the change of variables, `log p(x) = log p_model(y) + log_det`, and
/// since each pixel's dequantisation bin `[k, k + 1)` has width 1, `-log p(x)` (in nats, per
/// image) is the standard discrete NLL bound, reported as [`bits_per_dim`].
///
/// Values of `x` outside `[0, 256]` give NaN (`s` outside `[0, 1]`); with `alpha = 0`,
/// `x = 0` gives `-inf`.
///
/// ```
/// use flow_datasets::images::{LogitTransform, bits_per_dim};
/// let t = LogitTransform::default();                // alpha = 1e-6
/// let mut x = vec![0.5, 128.0, 255.5];              // one row of 3 dequantised pixels
/// let log_det = t.log_det_rows(&x, 3);              // at x, before the transform
/// t.forward_rows(&mut x);
/// assert!(x[1].abs() < 1e-12);                      // the middle of the range maps to 0
/// // With a model's log p_model(y) = lp, the image's NLL in pixel units is
/// let lp = -10.0;
/// let bpd = bits_per_dim(-(lp + log_det[0]), 3);
/// t.inverse_rows(&mut x);
/// assert!((x[2] - 255.5).abs() < 1e-9);
/// # let _ = bpd;
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogitTransform {
    /// The margin kept from 0 and 1 before the logit, in `[0, 0.5)`.
    pub alpha: f64,
}

impl Default for LogitTransform {
    /// `alpha = `[`MNIST_ALPHA`]` = 1e-6`.
    fn default() -> Self {
        Self { alpha: MNIST_ALPHA }
    }
}

impl LogitTransform {
    /// The transform with margin `alpha`, which must be finite and in `[0, 0.5)`.
    pub fn new(alpha: f64) -> Result<Self> {
        if !(0.0..0.5).contains(&alpha) {
            return Err(Error::Invalid(format!(
                "logit transform: alpha = {alpha} is not in [0, 0.5)"
            )));
        }
        Ok(Self { alpha })
    }

    /// `(s, 1 - s)` at `x`, the second computed directly for accuracy near 1.
    fn s_pair(&self, x: f64) -> (f64, f64) {
        let t = (1.0 - 2.0 * self.alpha) * x / 256.0;
        (self.alpha + t, (1.0 - self.alpha) - t)
    }

    /// `y = logit(alpha + (1 - 2 alpha) x / 256)` for one value.
    pub fn forward(&self, x: f64) -> f64 {
        let (s, one_minus_s) = self.s_pair(x);
        s.ln() - one_minus_s.ln()
    }

    /// `x = 256 (sigmoid(y) - alpha) / (1 - 2 alpha)`, clamped into `[0, 256)`, for one value
    /// (NaN stays NaN).
    pub fn inverse(&self, y: f64) -> f64 {
        let s = if y >= 0.0 {
            1.0 / (1.0 + (-y).exp())
        } else {
            let e = y.exp();
            e / (1.0 + e)
        };
        let x = (s - self.alpha) * 256.0 / (1.0 - 2.0 * self.alpha);
        x.clamp(0.0, BELOW_256)
    }

    /// `log |dy/dx| = log(1 - 2 alpha) - log 256 - log s - log(1 - s)` at one value `x`.
    pub fn log_det(&self, x: f64) -> f64 {
        let (s, one_minus_s) = self.s_pair(x);
        (1.0 - 2.0 * self.alpha).ln() - 256f64.ln() - s.ln() - one_minus_s.ln()
    }

    /// Applies [`forward`](Self::forward) to every value, in place (rows of any width).
    pub fn forward_rows(&self, data: &mut [f64]) {
        for v in data {
            *v = self.forward(*v);
        }
    }

    /// Applies [`inverse`](Self::inverse) to every value, in place: back to pixel units in
    /// `[0, 256)`.
    pub fn inverse_rows(&self, data: &mut [f64]) {
        for v in data {
            *v = self.inverse(*v);
        }
    }

    /// Per row of `dim` features of `x` (pixel units, before the transform), the
    /// log-determinant of the transform's Jacobian: the sum over the row of
    /// [`log_det`](Self::log_det). Add it to a model's `log p_model(y)` to get `log p(x)`.
    ///
    /// Panics when `dim` is zero or `x.len()` is not a multiple of `dim`.
    pub fn log_det_rows(&self, x: &[f64], dim: usize) -> Vec<f64> {
        assert!(
            dim > 0 && x.len() % dim == 0,
            "log_det_rows: {} values do not fill rows of {dim} features",
            x.len()
        );
        x.chunks_exact(dim)
            .map(|row| row.iter().map(|&v| self.log_det(v)).sum())
            .collect()
    }
}

/// Bits per dimension of a negative log-likelihood `nll_nats` (natural log, of one image of
/// `dim` pixels, in pixel units over `[0, 256)^dim`): `nll / (dim ln 2)`. This is the
/// standard discrete bits/dim; for data scaled to `[0, 1)` one would first add
/// `dim ln 256` to the NLL (8 bits per dimension).
///
/// ```
/// use flow_datasets::images::bits_per_dim;
/// // A uniform density over [0, 256)^784 costs exactly 8 bits per pixel.
/// let nll = 784.0 * 256f64.ln();
/// assert!((bits_per_dim(nll, 784) - 8.0).abs() < 1e-12);
/// ```
pub fn bits_per_dim(nll_nats: f64, dim: usize) -> f64 {
    nll_nats / (dim as f64 * std::f64::consts::LN_2)
}
