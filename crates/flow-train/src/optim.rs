//! Optimizers over a [`ParamStore`].

use crate::error::Result;
use flow_core::{AdamStep, Backend, Element, Gradients, ParamStore, Tensor};

/// Adam with PyTorch's semantics (`torch.optim.Adam`): L2 weight decay is added to the
/// gradient, bias corrections as in the paper, parameters without a gradient are skipped.
#[derive(Debug)]
pub struct Adam<B: Backend> {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    step: u64,
    moments: Vec<Option<(Tensor<B>, Tensor<B>)>>,
}

impl<B: Backend> Adam<B> {
    /// PyTorch's defaults: betas (0.9, 0.999), eps 1e-8.
    pub fn new(lr: f64, weight_decay: f64) -> Self {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            step: 0,
            moments: Vec::new(),
        }
    }

    /// Number of updates taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Updates every parameter of `params` that has a gradient in `grads`.
    pub fn step(&mut self, params: &mut ParamStore<B>, grads: &Gradients<B>) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let e = |x: f64| <B::Elem as Element>::of(x);
        let h = AdamStep {
            lr: e(self.lr),
            beta1: e(self.beta1),
            beta2: e(self.beta2),
            eps: e(self.eps),
            weight_decay: e(self.weight_decay),
            bias_correction1: e(1.0 - self.beta1.powi(t)),
            bias_correction2: e(1.0 - self.beta2.powi(t)),
        };
        if self.moments.len() < params.len() {
            self.moments.resize(params.len(), None);
        }
        let ids: Vec<_> = params.ids().collect();
        for id in ids {
            let Some(grad) = grads.param(id) else {
                continue;
            };
            let param = params.get(id)?;
            let (mut m, mut v) = match self.moments[id.index()].take() {
                Some(mv) => mv,
                None => (
                    Tensor::zeros(param.backend(), param.shape()),
                    Tensor::zeros(param.backend(), param.shape()),
                ),
            };
            // In place unless a tape still holds the parameter (then it is copied first).
            params.update(id, |p| p.adam_update(grad, &mut m, &mut v, &h))?;
            self.moments[id.index()] = Some((m, v));
        }
        Ok(())
    }
}
