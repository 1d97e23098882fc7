//! Glow's invertible 1x1 convolution as a dense layer, in its LU parametrisation:
//! `W = P L (U + diag(sign * exp(log_s)))`.

use crate::error::{Error, Result};
use crate::flow::{check_width, Flow};
use crate::registry::{BuildContext, LayerKind, LayerSpec};
use flow_core::{Axis, Backend, FlowRng, ParamId, ParamStore, Resident, Shape, Tape, Tensor, Var};
use serde::{Deserialize, Serialize};

/// An [`InvertibleLinearLu`]'s fixed parts (stored as `"invertible_linear_lu"`): the
/// permutation (`P[perm[j]][j] = 1`) and the signs of `U`'s diagonal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InvertibleLinearLuConfig {
    pub perm: Vec<usize>,
    pub sign: Vec<f64>,
}

/// An invertible linear map `x = z W^T` (rows are samples) with
/// `W = P L (U + diag(sign * exp(log_s)))`: `P` a fixed permutation matrix, `L` lower
/// triangular with a unit diagonal, `U` strictly upper triangular and `sign` fixed signs, so
/// that log|det W| = `sum(log_s)` costs `O(d)`.
///
/// `P` is stored as `perm`: `P[i][j] = 1` exactly when `i = perm[j]`. Parameters:
/// `{prefix}.lower` and `{prefix}.upper` (`dim x dim`; only their strictly lower and strictly
/// upper parts are used, the rest is masked out and gets no gradient) and `{prefix}.log_s`
/// (`1 x dim`).
///
/// The inverse needs `L^{-1}` and `(U + D)^{-1}`; both are exact finite Neumann series of
/// nilpotent matrices (`L = I + N` with `N^d = 0`, and `U + D = (I + U D^{-1}) D`), so they
/// are written with matrix products and stay differentiable with the ops flow-core has.
#[derive(Clone, Debug)]
pub struct InvertibleLinearLu {
    dim: usize,
    perm: Resident<Vec<usize>>,
    inverse_perm: Resident<Vec<usize>>,
    sign: Resident<(Shape, Vec<f64>)>,
    /// The identity and the strictly lower and upper 0/1 masks, `dim x dim`.
    masks: [Resident<(Shape, Vec<f64>)>; 3],
    lower: ParamId,
    upper: ParamId,
    log_s: ParamId,
}

/// `P L U` factors of a square matrix `A` (row-major), with `P[i][j] = 1` iff
/// `i = perm[j]`, `L` unit lower triangular and `U` upper triangular: `A = P L U`.
#[derive(Clone, Debug, PartialEq)]
pub struct LuFactors {
    pub perm: Vec<usize>,
    /// `n x n`, row-major, unit diagonal.
    pub lower: Vec<f64>,
    /// `n x n`, row-major, diagonal included.
    pub upper: Vec<f64>,
}

/// LU decomposition with partial pivoting, in `f64`. `None` when `a` is singular (a zero
/// pivot) or not `n x n`.
pub fn lu_decompose(a: &[f64], n: usize) -> Option<LuFactors> {
    if a.len() != n * n {
        return None;
    }
    let mut a = a.to_vec();
    let mut perm: Vec<usize> = (0..n).collect();
    for c in 0..n {
        let p = (c..n).max_by(|&i, &j| a[i * n + c].abs().total_cmp(&a[j * n + c].abs()))?;
        if a[p * n + c] == 0.0 {
            return None;
        }
        if p != c {
            for k in 0..n {
                a.swap(c * n + k, p * n + k);
            }
            perm.swap(c, p);
        }
        let pivot = a[c * n + c];
        for r in c + 1..n {
            let f = a[r * n + c] / pivot;
            a[r * n + c] = f;
            for k in c + 1..n {
                a[r * n + k] -= f * a[c * n + k];
            }
        }
    }
    let mut lower = vec![0.0; n * n];
    let mut upper = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            match i.cmp(&j) {
                std::cmp::Ordering::Greater => lower[i * n + j] = a[i * n + j],
                std::cmp::Ordering::Equal => {
                    lower[i * n + j] = 1.0;
                    upper[i * n + j] = a[i * n + j];
                }
                std::cmp::Ordering::Less => upper[i * n + j] = a[i * n + j],
            }
        }
    }
    Some(LuFactors { perm, lower, upper })
}

/// A random `n x n` orthogonal matrix (row-major): the `Q` of a QR decomposition of a
/// standard Gaussian matrix (modified Gram-Schmidt on its columns, twice), in `f64`.
pub fn random_orthogonal(n: usize, rng: &mut FlowRng) -> Vec<f64> {
    loop {
        let g = flow_core::standard_normals(n * n, rng);
        // Columns of g.
        let mut cols: Vec<Vec<f64>> = (0..n)
            .map(|j| (0..n).map(|i| g[i * n + j]).collect())
            .collect();
        let mut ok = true;
        for j in 0..n {
            let (done, rest) = cols.split_at_mut(j);
            let col = &mut rest[0];
            for _pass in 0..2 {
                for q in done.iter() {
                    let dot: f64 = q.iter().zip(col.iter()).map(|(a, b)| a * b).sum();
                    for (c, qv) in col.iter_mut().zip(q) {
                        *c -= dot * qv;
                    }
                }
            }
            let norm = cols[j].iter().map(|v| v * v).sum::<f64>().sqrt();
            if norm < 1e-8 {
                ok = false;
                break;
            }
            cols[j].iter_mut().for_each(|v| *v /= norm);
        }
        if ok {
            let mut q = vec![0.0; n * n];
            for (j, col) in cols.iter().enumerate() {
                for (i, v) in col.iter().enumerate() {
                    q[i * n + j] = *v;
                }
            }
            return q;
        }
    }
}

impl InvertibleLinearLu {
    /// Glow's initialisation: `W0` a random orthogonal matrix drawn from `rng`, decomposed as
    /// `W0 = P L (U + diag(sign * exp(log_s)))` (LU with partial pivoting), which fixes `P`
    /// and `sign` and gives the parameters' starting values.
    pub fn new<B: Backend>(cx: &mut BuildContext<'_, B>) -> Result<Self> {
        let dim = cx.dim;
        if dim == 0 {
            return Err(Error::Config(
                "an invertible linear layer needs at least 1 feature".into(),
            ));
        }
        let w0 = random_orthogonal(dim, cx.rng);
        let lu = lu_decompose(&w0, dim)
            .ok_or_else(|| Error::Config("a random orthogonal matrix is singular".into()))?;
        let mut upper = lu.upper;
        let mut sign = vec![0.0; dim];
        let mut log_s = vec![0.0; dim];
        for i in 0..dim {
            let u = upper[i * dim + i];
            sign[i] = if u < 0.0 { -1.0 } else { 1.0 };
            log_s[i] = u.abs().ln();
            upper[i * dim + i] = 0.0;
        }
        let mut lower = lu.lower;
        for i in 0..dim {
            lower[i * dim + i] = 0.0;
        }
        Self::with_values(cx, lu.perm, sign, &lower, &upper, &log_s)
    }

    /// The layer an [`InvertibleLinearLuConfig`] describes (fixed `perm` and `sign` of
    /// `cx.dim` features). A spec does not record Glow's random `W0`, so with `init_zeros` the
    /// layer starts at the signed permutation `W = P diag(sign)` (`L = I`, `U = 0`,
    /// `log_s = 0`; orthogonal too), to be overwritten by a checkpoint's parameters; without
    /// it the triangular parts and `log_s` are drawn from `N(0, 0.3^2)` (for tests).
    pub fn from_config<B: Backend>(
        cx: &mut BuildContext<'_, B>,
        config: &InvertibleLinearLuConfig,
    ) -> Result<Self> {
        let (dim, init_zeros) = (cx.dim, cx.init_zeros());
        let (perm, sign) = (config.perm.clone(), config.sign.clone());
        let rng: &mut FlowRng = cx.rng;
        if perm.len() != dim || sign.len() != dim {
            return Err(Error::Config(format!(
                "an invertible linear layer of {dim} features with {} permutation entries and {} signs",
                perm.len(),
                sign.len()
            )));
        }
        let (lower, upper, log_s) = if init_zeros {
            (vec![0.0; dim * dim], vec![0.0; dim * dim], vec![0.0; dim])
        } else {
            let mut draw = |n: usize| -> Vec<f64> {
                flow_core::standard_normals(n, rng)
                    .into_iter()
                    .map(|v| 0.3 * v)
                    .collect()
            };
            let mut lower = draw(dim * dim);
            let mut upper = draw(dim * dim);
            for i in 0..dim {
                for j in 0..dim {
                    if j >= i {
                        lower[i * dim + j] = 0.0;
                    }
                    if j <= i {
                        upper[i * dim + j] = 0.0;
                    }
                }
            }
            (lower, upper, draw(dim))
        };
        Self::with_values(cx, perm, sign, &lower, &upper, &log_s)
    }

    fn with_values<B: Backend>(
        cx: &mut BuildContext<'_, B>,
        perm: Vec<usize>,
        sign: Vec<f64>,
        lower: &[f64],
        upper: &[f64],
        log_s: &[f64],
    ) -> Result<Self> {
        let dim = perm.len();
        let mut inverse_perm = vec![usize::MAX; dim];
        for (j, &p) in perm.iter().enumerate() {
            if p >= dim || inverse_perm[p] != usize::MAX {
                return Err(Error::Config(format!("{perm:?} is not a permutation")));
            }
            inverse_perm[p] = j;
        }
        if sign.iter().any(|&s| s != 1.0 && s != -1.0) {
            return Err(Error::Config(format!(
                "signs must be 1 or -1, got {sign:?}"
            )));
        }
        let backend = cx.backend;
        let lower = cx.params.add(
            cx.name("lower"),
            Tensor::from_f64s(backend, (dim, dim), lower)?,
        )?;
        let upper = cx.params.add(
            cx.name("upper"),
            Tensor::from_f64s(backend, (dim, dim), upper)?,
        )?;
        let log_s = cx.params.add(
            cx.name("log_s"),
            Tensor::from_f64s(backend, (1, dim), log_s)?,
        )?;
        let mask = |keep: fn(usize, usize) -> bool| {
            let v: Vec<f64> = (0..dim * dim)
                .map(|k| if keep(k / dim, k % dim) { 1.0 } else { 0.0 })
                .collect();
            Resident::new((Shape::new(dim, dim), v))
        };
        Ok(InvertibleLinearLu {
            dim,
            perm: Resident::new(perm),
            inverse_perm: Resident::new(inverse_perm),
            sign: Resident::new((Shape::new(1, dim), sign)),
            masks: [mask(|i, j| i == j), mask(|i, j| i > j), mask(|i, j| i < j)],
            lower,
            upper,
            log_s,
        })
    }

    pub fn perm(&self) -> &[usize] {
        self.perm.host()
    }

    pub fn sign(&self) -> &[f64] {
        &self.sign.host().1
    }

    /// Handles of `lower`, `upper` and `log_s`.
    pub fn param_ids(&self) -> [ParamId; 3] {
        [self.lower, self.upper, self.log_s]
    }

    /// `W = P L (U + diag(sign * exp(log_s)))` from the current parameters (`dim x dim`).
    pub fn weight<B: Backend>(&self, params: &ParamStore<B>) -> Result<Tensor<B>> {
        let backend = params.get(self.lower)?.backend().clone();
        let tape = Tape::new(&backend);
        let parts = self.parts(params, &tape)?;
        // P M: row perm[j] of the product is row j of M.
        let lu = parts.lower.matmul(&parts.upper_diag()?)?.value();
        let lu = lu.to_f64s()?;
        let d = self.dim;
        let mut w = vec![0.0; d * d];
        for j in 0..d {
            let p = self.perm.host()[j];
            w[p * d..(p + 1) * d].copy_from_slice(&lu[j * d..(j + 1) * d]);
        }
        Ok(Tensor::from_f64s(&backend, (d, d), &w)?)
    }

    /// The masked factors bound on `tape`.
    fn parts<B: Backend>(&self, params: &ParamStore<B>, tape: &Tape<B>) -> Result<Parts<B>> {
        let backend = tape.backend();
        let [eye, lower_mask, upper_mask] = &self.masks;
        let eye = tape.constant(eye.tensor(backend)?);
        let strict_lower = tape
            .param(params, self.lower)?
            .mul(&tape.constant(lower_mask.tensor(backend)?))?;
        let strict_upper = tape
            .param(params, self.upper)?
            .mul(&tape.constant(upper_mask.tensor(backend)?))?;
        let log_s = tape.param(params, self.log_s)?;
        let sign = tape.constant(self.sign.tensor(backend)?);
        Ok(Parts {
            lower: strict_lower.add(&eye)?,
            strict_lower,
            strict_upper,
            log_s,
            sign,
            eye,
        })
    }
}

/// `L`, `U` (strict), `log_s` and `sign` of one pass, masked, on one tape.
struct Parts<B: Backend> {
    lower: Var<B>,
    strict_lower: Var<B>,
    strict_upper: Var<B>,
    log_s: Var<B>,
    sign: Var<B>,
    eye: Var<B>,
}

impl<B: Backend> Parts<B> {
    /// `U + diag(sign * exp(log_s))`.
    fn upper_diag(&self) -> Result<Var<B>> {
        let s = self.sign.mul(&self.log_s.exp()?)?;
        Ok(self.strict_upper.add(&self.eye.mul(&s)?)?)
    }

    /// `(I + N)^{-1} = sum_{k<d} (-N)^k` for a nilpotent `N`, by Horner's rule.
    fn unit_inverse(&self, n: &Var<B>) -> Result<Var<B>> {
        let d = self.eye.shape().rows;
        let mut inv = self.eye.clone();
        for _ in 1..d {
            inv = self.eye.sub(&n.matmul(&inv)?)?;
        }
        Ok(inv)
    }

    /// `sum(log_s)` times `sign` as a `rows x 1` column.
    fn log_det(&self, rows: usize, sign: f64) -> Result<Var<B>> {
        Ok(self
            .log_s
            .sum(Axis::All)?
            .mul_scalar(sign)?
            .broadcast_to((rows, 1))?)
    }
}

impl<B: Backend> Flow<B> for InvertibleLinearLu {
    fn dim(&self) -> usize {
        self.dim
    }

    /// `x = z W^T = z (U + D)^T L^T P^T`.
    fn forward(
        &self,
        params: &ParamStore<B>,
        z: &Var<B>,
        _: Option<&Var<B>>,
    ) -> Result<(Var<B>, Var<B>)> {
        check_width("InvertibleLinearLu forward", self.dim, z)?;
        let parts = self.parts(params, z.tape())?;
        let y =
            z.matmul_t(false, &parts.upper_diag()?, true)?
                .matmul_t(false, &parts.lower, true)?;
        // y P^T: column j is column inverse_perm[j] of y.
        let x = y.gather_cols(&self.inverse_perm.index(z.tape().backend())?)?;
        Ok((x, parts.log_det(z.shape().rows, 1.0)?))
    }

    /// `z = x W^{-T} = x P L^{-T} (I + U D^{-1})^{-T} D^{-1}`.
    fn inverse(
        &self,
        params: &ParamStore<B>,
        x: &Var<B>,
        _: Option<&Var<B>>,
    ) -> Result<(Var<B>, Var<B>)> {
        check_width("InvertibleLinearLu inverse", self.dim, x)?;
        let parts = self.parts(params, x.tape())?;
        // 1 / (sign * exp(log_s)) = sign * exp(-log_s).
        let inv_s = parts.sign.mul(&parts.log_s.neg()?.exp()?)?;
        let lower_inv = parts.unit_inverse(&parts.strict_lower)?;
        let upper_inv = parts.unit_inverse(&parts.strict_upper.mul(&inv_s)?)?;
        let z = x
            .gather_cols(&self.perm.index(x.tape().backend())?)?
            .matmul_t(false, &lower_inv, true)?
            .matmul_t(false, &upper_inv, true)?
            .mul(&inv_s)?;
        Ok((z, parts.log_det(x.shape().rows, -1.0)?))
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::of::<Self>(&InvertibleLinearLuConfig {
            perm: self.perm.host().clone(),
            sign: self.sign.host().1.clone(),
        })
    }
}

impl LayerKind for InvertibleLinearLu {
    const NAME: &'static str = "invertible_linear_lu";
    type Config = InvertibleLinearLuConfig;

    fn build<B: Backend>(
        config: &Self::Config,
        cx: &mut BuildContext<'_, B>,
    ) -> Result<Box<dyn Flow<B>>> {
        Ok(Box::new(Self::from_config(cx, config)?))
    }

    /// `lower` and `upper` (`dim x dim` each) and `log_s` (`dim`).
    fn num_scalars(_: &Self::Config, dim: usize, _: usize) -> Option<usize> {
        dim.checked_mul(dim)?.checked_mul(2)?.checked_add(dim)
    }
}
