//! `NormalizingFlow`: a base distribution pushed through a stack of flows.

use crate::actnorm::ActNorm;
use crate::autoregressive::MaskedAffineAutoregressive;
use crate::coupling::AffineCouplingBlock;
use crate::distribution::{DiagGaussian, Target};
use crate::error::{Error, Result};
use crate::flow::Flow;
use crate::lu_linear::InvertibleLinearLu;
use crate::permute::Permute;
use crate::spec::{BaseSpec, FlowSpec, LayerSpec};
use flow_core::{Backend, FlowRng, ParamStore, Tape, Tensor, Var};

/// A normalizing flow with normflows' semantics: `forward` maps latent to data,
/// `log_prob(x) = log q0(f^-1(x)) + sum of inverse log-dets`.
///
/// Parameter names are normflows' state_dict names (`q0.loc`, `flows.{k}.flows.1.param_map.net.{j}.weight`, ...).
#[derive(Debug)]
pub struct NormalizingFlow<B: Backend> {
    backend: B,
    spec: FlowSpec,
    base: DiagGaussian,
    flows: Vec<Box<dyn Flow<B>>>,
    params: ParamStore<B>,
}

impl<B: Backend> NormalizingFlow<B> {
    /// Builds `spec` with freshly initialised parameters (PyTorch's `nn.Linear` init drawn
    /// from `seed`; the last layer of every conditioner zeroed, as normflows' examples do, so
    /// that the flow starts as the identity).
    pub fn new(backend: &B, spec: FlowSpec, seed: u64) -> Result<Self> {
        Self::build(backend, spec, seed, true)
    }

    /// As [`NormalizingFlow::new`], but with every layer random: the flow does not start as
    /// the identity. For tests of the layers' algebra.
    pub fn new_random(backend: &B, spec: FlowSpec, seed: u64) -> Result<Self> {
        Self::build(backend, spec, seed, false)
    }

    fn build(backend: &B, spec: FlowSpec, seed: u64, init_zeros: bool) -> Result<Self> {
        let mut params = ParamStore::new();
        let mut rng = flow_core::rng(seed);
        let base = match spec.base {
            BaseSpec::DiagGaussian => DiagGaussian::new(&mut params, backend, spec.dim)?,
        };
        let mut flows: Vec<Box<dyn Flow<B>>> = Vec::with_capacity(spec.layers.len());
        for (k, layer) in spec.layers.iter().enumerate() {
            let flow: Box<dyn Flow<B>> = match layer {
                LayerSpec::AffineCoupling {
                    hidden,
                    leaky,
                    scale_map,
                } => Box::new(AffineCouplingBlock::new(
                    &mut params,
                    backend,
                    &format!("flows.{k}"),
                    spec.dim,
                    hidden,
                    *leaky,
                    *scale_map,
                    init_zeros,
                    &mut rng,
                )?),
                LayerSpec::MaskedAffineAutoregressive {
                    hidden,
                    degrees,
                    leaky,
                    iaf,
                } => Box::new(MaskedAffineAutoregressive::new(
                    &mut params,
                    backend,
                    &format!("flows.{k}"),
                    spec.dim,
                    hidden,
                    degrees.clone(),
                    *leaky,
                    *iaf,
                    init_zeros,
                    &mut rng,
                )?),
                LayerSpec::Permute { mode, perm } => {
                    if perm.len() != spec.dim {
                        return Err(Error::Config(format!(
                            "layer {k}: permutation of {} features in a flow of {}",
                            perm.len(),
                            spec.dim
                        )));
                    }
                    Box::new(Permute::from_perm(perm.clone(), *mode)?)
                }
                LayerSpec::ActNorm => Box::new(ActNorm::new(
                    &mut params,
                    backend,
                    &format!("flows.{k}"),
                    spec.dim,
                    init_zeros,
                    &mut rng,
                )?),
                LayerSpec::InvertibleLinearLu { perm, sign } => {
                    Box::new(InvertibleLinearLu::from_spec(
                        &mut params,
                        backend,
                        &format!("flows.{k}"),
                        spec.dim,
                        perm.clone(),
                        sign.clone(),
                        init_zeros,
                        &mut rng,
                    )?)
                }
            };
            flows.push(flow);
        }
        Ok(NormalizingFlow {
            backend: backend.clone(),
            spec,
            base,
            flows,
            params,
        })
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn spec(&self) -> &FlowSpec {
        &self.spec
    }

    pub fn dim(&self) -> usize {
        self.spec.dim
    }

    pub fn params(&self) -> &ParamStore<B> {
        &self.params
    }

    pub fn params_mut(&mut self) -> &mut ParamStore<B> {
        &mut self.params
    }

    pub fn flows(&self) -> &[Box<dyn Flow<B>>] {
        &self.flows
    }

    fn check_width(&self, what: &'static str, v: &Var<B>) -> Result<()> {
        let got = v.shape().cols;
        if got != self.dim() {
            return Err(Error::Width {
                what,
                expected: self.dim(),
                got,
            });
        }
        Ok(())
    }

    /// Latent to data, with the summed forward log-dets per sample.
    pub fn forward_and_log_det(&self, z: &Var<B>) -> Result<(Var<B>, Var<B>)> {
        self.check_width("forward", z)?;
        self.chain(z, self.flows.iter(), |flow, v| {
            flow.forward(&self.params, v)
        })
    }

    /// Data to latent, with the summed inverse log-dets per sample.
    pub fn inverse_and_log_det(&self, x: &Var<B>) -> Result<(Var<B>, Var<B>)> {
        self.check_width("inverse", x)?;
        self.chain(x, self.flows.iter().rev(), |flow, v| {
            flow.inverse(&self.params, v)
        })
    }

    /// Applies `step` through `flows` in order, summing the log-dets.
    fn chain<'a>(
        &'a self,
        input: &Var<B>,
        flows: impl Iterator<Item = &'a Box<dyn Flow<B>>>,
        step: impl Fn(&dyn Flow<B>, &Var<B>) -> Result<(Var<B>, Var<B>)>,
    ) -> Result<(Var<B>, Var<B>)> {
        let mut v = input.clone();
        let mut log_det: Option<Var<B>> = None;
        for flow in flows {
            let (y, ld) = step(flow.as_ref(), &v)?;
            log_det = Some(match log_det {
                None => ld,
                Some(acc) => acc.add(&ld)?,
            });
            v = y;
        }
        let log_det = log_det.unwrap_or_else(|| zeros_like_rows(&v));
        Ok((v, log_det))
    }

    /// log q(x) per row (`rows x 1`).
    pub fn log_prob(&self, x: &Var<B>) -> Result<Var<B>> {
        let (z, log_det) = self.inverse_and_log_det(x)?;
        Ok(self.base.log_prob(&self.params, &z)?.add(&log_det)?)
    }

    /// The forward KL divergence estimate from target samples `x`: `-mean(log q(x))`.
    pub fn forward_kld(&self, x: &Var<B>) -> Result<Var<B>> {
        Ok(self.log_prob(x)?.mean_all().neg())
    }

    /// The reverse KL divergence estimate from `n` model samples:
    /// `mean(log q(x)) - beta * mean(log p(x))`, reparametrised (score function included).
    pub fn reverse_kld(
        &self,
        tape: &Tape<B>,
        target: &dyn Target<B>,
        n: usize,
        beta: f64,
        rng: &mut FlowRng,
    ) -> Result<Var<B>> {
        let (x, log_q) = self.sample_on(tape, n, rng)?;
        let log_p = target.log_prob(&x)?;
        Ok(log_q.mean_all().sub(&log_p.mean_all().mul_scalar(beta))?)
    }

    /// `n` samples on `tape` and their log-density under the model.
    pub fn sample_on(
        &self,
        tape: &Tape<B>,
        n: usize,
        rng: &mut FlowRng,
    ) -> Result<(Var<B>, Var<B>)> {
        let (z, log_q0) = self.base.sample(&self.params, tape, n, rng)?;
        let (x, log_det) = self.forward_and_log_det(&z)?;
        Ok((x, log_q0.sub(&log_det)?))
    }

    /// `n` samples and their log-density, as tensors.
    pub fn sample(&self, n: usize, rng: &mut FlowRng) -> Result<(Tensor<B>, Tensor<B>)> {
        let tape = Tape::new(&self.backend);
        let (x, log_q) = self.sample_on(&tape, n, rng)?;
        Ok((x.value(), log_q.value()))
    }

    /// log q(x) per row of a data tensor.
    pub fn log_prob_of(&self, x: &Tensor<B>) -> Result<Tensor<B>> {
        let tape = Tape::new(&self.backend);
        Ok(self.log_prob(&tape.constant(x.clone()))?.value())
    }
}

fn zeros_like_rows<B: Backend>(v: &Var<B>) -> Var<B> {
    v.tape()
        .constant(Tensor::zeros(v.tape().backend(), (v.shape().rows, 1)))
}
