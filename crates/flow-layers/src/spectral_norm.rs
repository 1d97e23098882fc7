//! Spectral normalisation of linear layers (Miyato et al. 2018), with normflows'
//! `InducedNormLinear` rule for residual flows (Behrmann et al. 2019): the weight used is
//! `W / max(1, sigma / coeff)`, where `sigma = u^T W v` is the spectral norm estimated by
//! power iteration with persistent vectors `u` and `v`, so that the layer's Lipschitz
//! constant is at most `coeff` (as far as the estimate goes).
//!
//! The vectors are buffers ([`ParamStore::add_buffer`]): they live in the model's store (checkpoints save them,
//! so a resumed run repeats bit for bit) but never get a gradient, so optimizers leave them
//! alone. They change only in [`SpectralLinear::power_iterate`], which the residual layer
//! runs after every optimizer step ([`crate::Flow::after_step`]); a forward pass reads them.
//! The iterations run on the host in f64 (a 128 x 128 weight is 64 KiB; two products per
//! iteration), which is faster than a device round trip per tiny product would be.

use crate::error::{Error, Result};
use crate::registry::BuildContext;
use flow_core::{Backend, Element, ParamId, ParamStore, Tensor, Var};

/// Power iterations a new layer runs on its random weight (normflows: 200 at construction).
pub const INIT_ITERATIONS: usize = 200;

/// A linear layer `y = x W^T + b` whose weight is scaled down to spectral norm at most
/// `coeff`. Parameters `{prefix}.weight` (`out x in`) and `{prefix}.bias` (`1 x out`) start as
/// PyTorch's `nn.Linear` (uniform on `[-1/sqrt(in), 1/sqrt(in)]`), the weight divided by
/// 1000 with `zero_init` (normflows' `zero_init` of the last layer); buffers `{prefix}.u`
/// (`1 x out`) and `{prefix}.v` (`1 x in`) start as normalised Gaussian draws, then
/// [`INIT_ITERATIONS`] power iterations run.
///
/// ```
/// use flow_core::{rng, Cpu, ParamStore, Tape, Tensor};
/// use flow_layers::{BuildContext, SpectralLinear};
///
/// let cpu = Cpu::<f64>::new();
/// let mut params = ParamStore::new();
/// let mut r = rng(0);
/// let mut cx = BuildContext::new(&cpu, &mut params, "lin", 3, &mut r);
/// let layer = SpectralLinear::new(&mut cx, "", (3, 4), 0.9, false)?;
/// // Scale the weight up: the layer still uses one of spectral norm 0.9 (once iterated).
/// let w = params.get(layer.weight())?.unary(flow_core::UnaryOp::MulScalar(10.0))?;
/// params.set(layer.weight(), w)?;
/// layer.converge(&mut params, 1e-12, 10_000)?;
/// let tape = Tape::new(&cpu);
/// let used = layer.normalised_weight(&params, &tape)?.value();
/// let sigma = flow_layers::spectral_norm::spectral_norm_of(&used.to_f64s()?, 4, 3);
/// assert!((sigma - 0.9).abs() < 1e-9);
/// # Ok::<(), flow_layers::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct SpectralLinear {
    in_features: usize,
    out_features: usize,
    coeff: f64,
    weight: ParamId,
    bias: ParamId,
    u: ParamId,
    v: ParamId,
}

impl SpectralLinear {
    /// Registers the layer's parameters and buffers under `{cx.prefix}.{name}` (under
    /// `cx.prefix` alone when `name` is empty).
    pub fn new<B: Backend>(
        cx: &mut BuildContext<'_, B>,
        name: &str,
        (in_features, out_features): (usize, usize),
        coeff: f64,
        zero_init: bool,
    ) -> Result<Self> {
        if in_features == 0 || out_features == 0 {
            return Err(Error::Config(format!(
                "a spectrally normalised linear layer needs positive sizes, got {in_features} -> {out_features}"
            )));
        }
        if !(coeff.is_finite() && coeff > 0.0) {
            return Err(Error::Config(format!(
                "the Lipschitz bound of a spectrally normalised layer must be positive, got {coeff}"
            )));
        }
        let prefix = if name.is_empty() {
            cx.prefix.clone()
        } else {
            cx.name(name)
        };
        let full = |suffix: &str| {
            if prefix.is_empty() {
                suffix.to_string()
            } else {
                format!("{prefix}.{suffix}")
            }
        };
        let backend = cx.backend;
        let bound = 1.0 / (in_features as f64).sqrt();
        let mut weight =
            Tensor::rand_uniform(backend, (out_features, in_features), -bound, bound, cx.rng)?;
        if zero_init {
            weight = weight.unary(flow_core::UnaryOp::MulScalar(<B::Elem as Element>::of(
                1e-3,
            )))?;
        }
        let bias = Tensor::rand_uniform(backend, (1, out_features), -bound, bound, cx.rng)?;
        let mut u = flow_core::standard_normals(out_features, cx.rng);
        let mut v = flow_core::standard_normals(in_features, cx.rng);
        normalise(&mut u);
        normalise(&mut v);
        let weight_id = cx.params.add(full("weight"), weight)?;
        let bias_id = cx.params.add(full("bias"), bias)?;
        let u_id = cx.params.add_buffer(
            full("u"),
            Tensor::from_f64s(backend, (1, out_features), &u)?,
        )?;
        let v_id = cx
            .params
            .add_buffer(full("v"), Tensor::from_f64s(backend, (1, in_features), &v)?)?;
        let layer = SpectralLinear {
            in_features,
            out_features,
            coeff,
            weight: weight_id,
            bias: bias_id,
            u: u_id,
            v: v_id,
        };
        layer.power_iterate(cx.params, INIT_ITERATIONS)?;
        Ok(layer)
    }

    pub fn in_features(&self) -> usize {
        self.in_features
    }

    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// The Lipschitz bound.
    pub fn coeff(&self) -> f64 {
        self.coeff
    }

    /// The raw (unnormalised) weight, `out x in`.
    pub fn weight(&self) -> ParamId {
        self.weight
    }

    pub fn bias(&self) -> ParamId {
        self.bias
    }

    /// The power-iteration buffers `u` (`1 x out`) and `v` (`1 x in`).
    pub fn buffers(&self) -> [ParamId; 2] {
        [self.u, self.v]
    }

    /// `iterations` steps of power iteration's Krylov refinement from the stored vectors on
    /// the current weight, storing the new vectors; returns the estimate `u^T W v` of the
    /// spectral norm.
    ///
    /// The steps are Golub-Kahan-Lanczos bidiagonalisation started from `v` (with full
    /// reorthogonalisation), and the vectors kept are the top Ritz pair: the same products
    /// as `iterations` power iterations (`u <- normalise(W v)`, `v <- normalise(W^T u)`),
    /// whose iterates lie in the same Krylov space, so the estimate is never worse, and far
    /// better when the top singular values cluster, as training drives them to (plain power
    /// iteration then underestimates by several per cent, and the bound is exceeded by as
    /// much: normflows' complaint). The estimate is exact once `iterations` reaches the
    /// smaller dimension.
    pub fn power_iterate<B: Backend>(
        &self,
        params: &mut ParamStore<B>,
        iterations: usize,
    ) -> Result<f64> {
        self.iterate_until(params, iterations, None)
    }

    /// Power iterations until the estimate changes by at most `rtol` relatively between two
    /// iterations (or `max_iterations`): the spectral norm "to convergence, on demand".
    /// Returns the estimate.
    pub fn converge<B: Backend>(
        &self,
        params: &mut ParamStore<B>,
        rtol: f64,
        max_iterations: usize,
    ) -> Result<f64> {
        self.iterate_until(params, max_iterations, Some(rtol))
    }

    fn iterate_until<B: Backend>(
        &self,
        params: &mut ParamStore<B>,
        steps: usize,
        rtol: Option<f64>,
    ) -> Result<f64> {
        let w = params.get(self.weight)?.to_f64s()?;
        let mut u = params.get(self.u)?.to_f64s()?;
        let mut v = params.get(self.v)?.to_f64s()?;
        let (rows, cols) = (self.out_features, self.in_features);
        let sigma = match rtol {
            // k + 1 Lanczos steps are 2k + 1 products: k power iterations' 2k and one.
            None if steps > 0 => lanczos(&w, rows, cols, &mut u, &mut v, steps + 1),
            None => estimate(&w, rows, cols, &u, &v),
            Some(rtol) => {
                // Restarted from the best vectors until the estimate settles.
                let mut sigma = estimate(&w, rows, cols, &u, &v);
                for _ in 0..steps.max(1) {
                    let next = lanczos(&w, rows, cols, &mut u, &mut v, LANCZOS_RESTART);
                    let settled = (next - sigma).abs() <= rtol * next.abs();
                    sigma = next;
                    if settled {
                        break;
                    }
                }
                sigma
            }
        };
        let backend = params.get(self.weight)?.backend().clone();
        params.set(self.u, Tensor::from_f64s(&backend, (1, rows), &u)?)?;
        params.set(self.v, Tensor::from_f64s(&backend, (1, cols), &v)?)?;
        Ok(sigma)
    }

    /// The weight the layer uses, on `tape`: `W / max(1, sigma / coeff)` with
    /// `sigma = u^T W v` from the stored vectors (constants), so that the gradient flows
    /// through `sigma` when it divides (normflows' rule).
    pub fn normalised_weight<B: Backend>(
        &self,
        params: &ParamStore<B>,
        tape: &flow_core::Tape<B>,
    ) -> Result<Var<B>> {
        let w = tape.param(params, self.weight)?;
        let u = tape.constant(params.get(self.u)?.clone());
        let v = tape.constant(params.get(self.v)?.clone());
        let sigma = v.matmul_t(false, &w, true)?.mul(&u)?.sum_all()?;
        let ratio = sigma.scalar_value()?.as_f64() / self.coeff;
        if ratio.is_nan() {
            return Err(Error::NotInvertible {
                layer: "SpectralLinear",
                reason: "the spectral-norm estimate u^T W v is NaN".into(),
            });
        }
        if ratio > 1.0 {
            Ok(w.div(&sigma)?.mul_scalar(self.coeff)?)
        } else {
            Ok(w)
        }
    }

    /// `x W_n^T + b` with the normalised weight.
    pub fn forward<B: Backend>(&self, params: &ParamStore<B>, x: &Var<B>) -> Result<Var<B>> {
        let tape = x.tape();
        let w = self.normalised_weight(params, tape)?;
        let b = tape.param(params, self.bias)?;
        Ok(x.linear(&w, &b)?)
    }
}

/// Krylov steps of each restart of [`SpectralLinear::converge`].
const LANCZOS_RESTART: usize = 32;

/// Golub-Kahan-Lanczos bidiagonalisation of `w` (`rows x cols`, row-major) for `steps`
/// steps from the unit vector `v`, with full reorthogonalisation; sets `u`, `v` to the top
/// Ritz pair and returns its value, a lower bound of the spectral norm that is exact when
/// the Krylov space is exhausted.
fn lanczos(w: &[f64], rows: usize, cols: usize, u: &mut [f64], v: &mut [f64], steps: usize) -> f64 {
    // The crate is built for baseline x86-64: flow-core's copies compiled for AVX-512 or
    // AVX2 run the products and reorthogonalisations four to eight lanes wide, with the
    // same bits.
    flow_core::backend::cpu::widest(
        #[inline(always)]
        || lanczos_body(w, rows, cols, u, v, steps),
    )
}

#[inline(always)]
fn lanczos_body(
    w: &[f64],
    rows: usize,
    cols: usize,
    u: &mut [f64],
    v: &mut [f64],
    steps: usize,
) -> f64 {
    // The space is exhausted (a tiny alpha or beta) after at most min(rows, cols) + 1 steps.
    let k_max = steps.min(rows.min(cols) + 1).max(1);
    let mut vs: Vec<Vec<f64>> = Vec::with_capacity(k_max);
    let mut us: Vec<Vec<f64>> = Vec::with_capacity(k_max);
    let (mut alphas, mut betas) = (Vec::with_capacity(k_max), Vec::with_capacity(k_max));
    let mut start = v.to_vec();
    if dot(&start, &start) == 0.0 {
        start[0] = 1.0;
    }
    normalise(&mut start);
    vs.push(start);
    let tiny = 1e-13
        * w.iter()
            .fold(0.0f64, |m, x| m.max(x.abs()))
            .max(f64::MIN_POSITIVE);
    for j in 0..k_max {
        // p = W v_j - beta_{j-1} u_{j-1}, orthogonalised against every u.
        let mut p: Vec<f64> = (0..rows)
            .map(|i| dot(&w[i * cols..(i + 1) * cols], &vs[j]))
            .collect();
        orthogonalise(&mut p, &us);
        let alpha = dot(&p, &p).sqrt();
        if alpha <= tiny {
            break;
        }
        p.iter_mut().for_each(|x| *x /= alpha);
        us.push(p);
        alphas.push(alpha);
        if j + 1 == k_max {
            break;
        }
        // q = W^T u_j - alpha_j v_j, orthogonalised against every v.
        let mut q = vec![0.0; cols];
        for (i, &ui) in us[j].iter().enumerate() {
            for (qc, wic) in q.iter_mut().zip(&w[i * cols..(i + 1) * cols]) {
                *qc += ui * wic;
            }
        }
        orthogonalise(&mut q, &vs);
        let beta = dot(&q, &q).sqrt();
        if beta <= tiny {
            break;
        }
        q.iter_mut().for_each(|x| *x /= beta);
        vs.push(q);
        betas.push(beta);
    }
    let k = alphas.len();
    if k == 0 {
        return 0.0;
    }
    // W V = U B with B k x m (m = k, or k + 1 when a last beta led to one more v): alphas
    // on the diagonal, betas above. The top eigenpair of B B^T gives sigma^2 and the left
    // singular vector x; u = U x, v = V B^T x / sigma.
    let m = vs.len().min(k + 1);
    let beta = |i: usize| if i + 1 < m { betas[i] } else { 0.0 };
    // B B^T is tridiagonal: diagonal alpha_i^2 + beta_i^2, off-diagonal beta_i alpha_{i+1}.
    let diag: Vec<f64> = (0..k)
        .map(|i| alphas[i] * alphas[i] + beta(i) * beta(i))
        .collect();
    let off: Vec<f64> = (0..k.saturating_sub(1))
        .map(|i| beta(i) * alphas[i + 1])
        .collect();
    let x = top_tridiagonal_eigenvector(&diag, &off);
    u.fill(0.0);
    for (ui, &c) in us.iter().zip(&x) {
        for (a, b) in u.iter_mut().zip(ui) {
            *a += c * b;
        }
    }
    normalise(u);
    // (B^T x)_j = alpha_j x_j + beta_{j-1} x_{j-1}.
    let btx: Vec<f64> = (0..m)
        .map(|j| {
            let diag = if j < k { alphas[j] * x[j] } else { 0.0 };
            let above = if j > 0 { beta(j - 1) * x[j - 1] } else { 0.0 };
            diag + above
        })
        .collect();
    v.fill(0.0);
    for (vj, &c) in vs.iter().zip(&btx) {
        for (a, b) in v.iter_mut().zip(vj) {
            *a += c * b;
        }
    }
    normalise(v);
    estimate(w, rows, cols, u, v)
}

/// The unit eigenvector of the largest eigenvalue of the symmetric tridiagonal matrix with
/// diagonal `d` and off-diagonal `e`: the eigenvalue by bisection on Sturm counts, the
/// vector by inverse iteration (O(k) each, where a dense eigensolver would be O(k^3)).
fn top_tridiagonal_eigenvector(d: &[f64], e: &[f64]) -> Vec<f64> {
    let k = d.len();
    if k == 1 {
        return vec![1.0];
    }
    // Gershgorin bounds.
    let radius = |i: usize| {
        (if i > 0 { e[i - 1].abs() } else { 0.0 }) + (if i + 1 < k { e[i].abs() } else { 0.0 })
    };
    let mut lo = (0..k)
        .map(|i| d[i] - radius(i))
        .fold(f64::INFINITY, f64::min);
    let mut hi = (0..k)
        .map(|i| d[i] + radius(i))
        .fold(f64::NEG_INFINITY, f64::max);
    let scale = hi.abs().max(lo.abs()).max(f64::MIN_POSITIVE);
    // The number of eigenvalues below x (Sylvester's law of inertia on LDL^T).
    let below = |x: f64| {
        let mut count = 0;
        let mut q = d[0] - x;
        for i in 0..k {
            if i > 0 {
                let q_prev = if q == 0.0 { f64::EPSILON * scale } else { q };
                q = d[i] - x - e[i - 1] * e[i - 1] / q_prev;
            }
            if q < 0.0 {
                count += 1;
            }
        }
        count
    };
    // The largest eigenvalue: the smallest x with every eigenvalue below it.
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if below(mid) == k {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    let shift = hi + 4.0 * f64::EPSILON * scale;
    // Inverse iteration with (T - shift): Gaussian elimination on the tridiagonal system
    // (no pivoting needed: T - shift is negative definite, shift being above every
    // eigenvalue).
    let mut y = vec![1.0; k];
    for _ in 0..3 {
        let mut diag: Vec<f64> = d.iter().map(|di| di - shift).collect();
        let mut rhs = y.clone();
        for i in 1..k {
            let pivot = if diag[i - 1] == 0.0 {
                -f64::EPSILON * scale
            } else {
                diag[i - 1]
            };
            let m = e[i - 1] / pivot;
            diag[i] -= m * e[i - 1];
            rhs[i] -= m * rhs[i - 1];
        }
        let mut x = vec![0.0; k];
        for i in (0..k).rev() {
            let upper = if i + 1 < k { e[i] * x[i + 1] } else { 0.0 };
            let pivot = if diag[i] == 0.0 {
                -f64::EPSILON * scale
            } else {
                diag[i]
            };
            x[i] = (rhs[i] - upper) / pivot;
        }
        normalise(&mut x);
        y = x;
    }
    y
}

/// Removes from `x` its components along the orthonormal `basis` (twice: classical
/// Gram-Schmidt, repeated, keeps the basis orthogonal to rounding).
#[inline(always)]
fn orthogonalise(x: &mut [f64], basis: &[Vec<f64>]) {
    for _ in 0..2 {
        for b in basis {
            let c = dot(x, b);
            for (xi, bi) in x.iter_mut().zip(b) {
                *xi -= c * bi;
            }
        }
    }
}

/// Scales `x` to unit length (left alone when it is 0, as `F.normalize` with its `eps`).
#[inline(always)]
fn normalise(x: &mut [f64]) {
    let norm = dot(x, x).sqrt().max(1e-12);
    for e in x {
        *e /= norm;
    }
}

/// `a · b` with eight partial sums, so that the loop vectorises.
#[inline(always)]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f64>() + tail
}

/// One power iteration on the row-major `rows x cols` matrix `w` (the reference the
/// Krylov steps are tested against).
#[cfg(test)]
fn power_step(w: &[f64], rows: usize, cols: usize, u: &mut [f64], v: &mut [f64]) {
    for (i, ui) in u.iter_mut().enumerate() {
        *ui = dot(&w[i * cols..(i + 1) * cols], v);
    }
    normalise(u);
    v.fill(0.0);
    for (i, &ui) in u.iter().enumerate() {
        for (vj, wij) in v.iter_mut().zip(&w[i * cols..(i + 1) * cols]) {
            *vj += ui * wij;
        }
    }
    normalise(v);
    let _ = rows;
}

/// `u^T W v`.
#[inline(always)]
fn estimate(w: &[f64], rows: usize, cols: usize, u: &[f64], v: &[f64]) -> f64 {
    (0..rows)
        .map(|i| u[i] * dot(&w[i * cols..(i + 1) * cols], v))
        .sum()
}

/// The largest singular value of the row-major `rows x cols` matrix `w`, computed
/// independently of any stored vectors: the square root of the largest eigenvalue of
/// `W^T W` (or `W W^T`, the smaller), by Jacobi rotations. For tests and reports.
pub fn spectral_norm_of(w: &[f64], rows: usize, cols: usize) -> f64 {
    // The Gram matrix of the smaller side.
    let (n, gram) = if cols <= rows {
        let mut g = vec![0.0; cols * cols];
        for i in 0..cols {
            for j in 0..cols {
                g[i * cols + j] = (0..rows).map(|r| w[r * cols + i] * w[r * cols + j]).sum();
            }
        }
        (cols, g)
    } else {
        let mut g = vec![0.0; rows * rows];
        for i in 0..rows {
            for j in 0..rows {
                g[i * rows + j] = dot(&w[i * cols..(i + 1) * cols], &w[j * cols..(j + 1) * cols]);
            }
        }
        (rows, g)
    };
    symmetric_eigenvalues(gram, n)
        .into_iter()
        .fold(0.0f64, f64::max)
        .max(0.0)
        .sqrt()
}

/// The eigenvalues of the symmetric `n x n` matrix `a` (row-major), by cyclic Jacobi
/// rotations to machine precision.
fn symmetric_eigenvalues(mut a: Vec<f64>, n: usize) -> Vec<f64> {
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        let diag: f64 = (0..n).map(|i| a[i * n + i] * a[i * n + i]).sum();
        if off <= 1e-30 * diag.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = if theta == 0.0 {
                    1.0
                } else {
                    theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt())
                };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
            }
        }
    }
    (0..n).map(|i| a[i * n + i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_finds_the_singular_values_of_a_diagonal_matrix_rotated() {
        // W = R diag(3, 1) with R a rotation: spectral norm 3.
        let (c, s) = (0.6f64, 0.8f64);
        let w = [3.0 * c, -s, 3.0 * s, c];
        assert!((spectral_norm_of(&w, 2, 2) - 3.0).abs() < 1e-12);
        // A 2 x 3 matrix and its transpose agree.
        let a = [1.0, 2.0, 3.0, -1.0, 0.5, 2.0];
        let at = [1.0, -1.0, 2.0, 0.5, 3.0, 2.0];
        let (x, y) = (spectral_norm_of(&a, 2, 3), spectral_norm_of(&at, 3, 2));
        assert!((x - y).abs() < 1e-12, "{x} {y}");
    }

    #[test]
    fn lanczos_is_exact_on_its_full_krylov_space_and_beats_power_iteration() {
        let mut r = flow_core::rng(4);
        let (rows, cols) = (9, 6);
        // Clustered top singular values: W = A with two near-equal top values.
        let w = flow_core::standard_normals(rows * cols, &mut r);
        let exact = spectral_norm_of(&w, rows, cols);
        let start = {
            let mut v = flow_core::standard_normals(cols, &mut r);
            normalise(&mut v);
            v
        };
        let (mut u, mut v) = (vec![0.0; rows], start.clone());
        let full = lanczos(&w, rows, cols, &mut u, &mut v, cols);
        assert!((full - exact).abs() < 1e-10 * exact, "{full} {exact}");
        for steps in 1..cols - 1 {
            let (mut u1, mut v1) = (vec![0.0; rows], start.clone());
            let krylov = lanczos(&w, rows, cols, &mut u1, &mut v1, steps + 1);
            let (mut u2, mut v2) = (vec![0.0; rows], start.clone());
            for _ in 0..steps {
                power_step(&w, rows, cols, &mut u2, &mut v2);
            }
            let power = estimate(&w, rows, cols, &u2, &v2);
            assert!(
                krylov >= power - 1e-12 && krylov <= exact + 1e-12,
                "{steps}: {krylov} {power} {exact}"
            );
        }
    }

    #[test]
    fn power_iteration_converges_to_the_spectral_norm() {
        let mut r = flow_core::rng(3);
        let (rows, cols) = (7, 5);
        let w = flow_core::standard_normals(rows * cols, &mut r);
        let mut u = flow_core::standard_normals(rows, &mut r);
        let mut v = flow_core::standard_normals(cols, &mut r);
        normalise(&mut u);
        normalise(&mut v);
        for _ in 0..2000 {
            power_step(&w, rows, cols, &mut u, &mut v);
        }
        let sigma = estimate(&w, rows, cols, &u, &v);
        let exact = spectral_norm_of(&w, rows, cols);
        assert!((sigma - exact).abs() < 1e-9 * exact, "{sigma} {exact}");
    }
}
