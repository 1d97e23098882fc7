//! # flow-layers
//!
//! Flows and distributions, written once over the [`flow_core::Backend`] trait. Conventions
//! follow normflows: [`Flow::forward`] maps latent `z` to data `x` and returns
//! log|det dx/dz| per sample; [`NormalizingFlow::log_prob`] runs the inverse.
//!
//! ```
//! use flow_core::{rng, Cpu, Tensor};
//! use flow_layers::{NormalizingFlow, RealNvpConfig};
//!
//! let cpu = Cpu::<f64>::new();
//! let spec = RealNvpConfig { dim: 2, transforms: 2, hidden: vec![64, 64], ..Default::default() }.spec()?;
//! let model = NormalizingFlow::new(&cpu, spec, 0)?;
//! let (x, log_q) = model.sample(5, None, &mut rng(1))?;                // forward: z -> x
//! let log_p = model.log_prob(&x, None)?;                             // inverse: x -> z
//! assert!(log_p.max_abs_diff(&log_q)? < 1e-9);
//! # Ok::<(), flow_layers::Error>(())
//! ```
//!
//! ## Residual flows
//!
//! [`Residual`] blocks `z = x + g(x)` with `g` a [`LipschitzMlp`] (spectrally normalised,
//! [`SpectralLinear`]) are invertible ResNets; their log-determinants are exact, truncated
//! series or unbiased Russian-roulette estimates ([`logdet`]), and their spectral norms and
//! random draws are kept current by [`Flow::after_step`], which
//! [`NormalizingFlow::after_step`] runs after each optimizer step. See [`Residual`] and
//! [`ResidualConfig`] (normflows' example).
//!
//! ## Non-finite values
//!
//! The model refuses data it cannot give a density to: every [`NormalizingFlow`] call that
//! takes rows ([`log_prob`](NormalizingFlow::log_prob),
//! [`forward_kld`](NormalizingFlow::forward_kld), [`inverse`](NormalizingFlow::inverse),
//! [`forward`](NormalizingFlow::forward), [`init_from_data`](NormalizingFlow::init_from_data),
//! and the context of [`sample`](NormalizingFlow::sample)), on tensors or tape variables,
//! returns [`Error::NonFinite`] for a NaN or an infinity in its input or its context, naming
//! the call, the argument, the row, the column and the value of the first one, instead of a
//! NaN or `-inf` log-density that would flow on into a loss and its gradients. A layer called
//! on its own ([`Flow::inverse`]) does not check.
//!
//! ```
//! # use flow_core::{Cpu, Tensor};
//! # use flow_layers::{NormalizingFlow, RealNvpConfig};
//! # let cpu = Cpu::<f64>::new();
//! # let model = NormalizingFlow::new(&cpu, RealNvpConfig::default().spec()?, 0)?;
//! let x = Tensor::from_vec(&cpu, (2, 2), vec![0.5, -1.0, f64::NEG_INFINITY, 0.0])?;
//! let err = model.forward_kld(&x, None).unwrap_err();
//! assert_eq!(err.to_string(), "forward_kld: x has a non-finite value -inf at row 1, column 0");
//! # Ok::<(), flow_layers::Error>(())
//! ```

pub mod actnorm;
pub mod assignment;
pub mod autoregressive;
mod builtin;
pub mod cnf;
pub mod coupling;
pub mod distribution;
pub mod draws;
pub mod error;
pub mod flow;
pub mod flow_matching;
pub mod lipschitz_mlp;
pub mod logdet;
pub mod lu_linear;
pub mod made;
pub mod mlp;
pub mod model;
pub mod ode;
pub mod permute;
pub mod planar;
pub mod radial;
pub mod registry;
pub mod residual;
pub mod spec;
pub mod spectral_norm;
pub mod spline;
#[cfg(feature = "testing")]
pub mod testing;

pub use actnorm::ActNorm;
pub use autoregressive::{
    AutoregressiveConfig, MaskedAffineAutoregressive, MaskedAutoregressive,
    MaskedSplineAutoregressive, SplineAutoregressiveConfig, Transformer,
};
pub use cnf::{Cnf, CnfConfig, CnfLayerConfig, FieldActivation, TimeInput};
pub use coupling::{
    AffineCouplingBlock, AffineCouplingConfig, Coupling, CouplingTransformer, ScaleMap,
    SplineCoupling, SplineCouplingConfig,
};
pub use distribution::{Base, DiagGaussian, GaussianMixture, StandardNormal, Target, Uniform};
pub use error::{Error, Result};
pub use flow::{check_width, with_context, zero_log_det, Flow, LogDetKind};
pub use flow_matching::{FlowMatching, Pairing};
pub use lipschitz_mlp::LipschitzMlp;
pub use logdet::{LogDetEstimator, Probe, TermDistribution};
pub use lu_linear::{InvertibleLinearLu, InvertibleLinearLuConfig};
pub use made::{Made, MadeConfig, Ordering};
pub use mlp::Mlp;
pub use model::{FlowBuilder, FlowValue, NormalizingFlow};
pub use permute::{Permute, PermuteConfig, PermuteMode};
pub use planar::{Planar, PlanarActivation, PlanarConfig, PlanarLayerConfig, PLANAR_LEAKY_SLOPE};
pub use radial::{Radial, RadialConfig};
pub use registry::{BuildContext, Init, LayerKind, LayerSpec, NoConfig, Registry};
pub use residual::{Residual, ResidualConfig, ResidualLayerConfig};
pub use spec::{BaseSpec, FlowSpec, GlowConfig, MafConfig, NsfConfig, RealNvpConfig};
pub use spectral_norm::SpectralLinear;
pub use spline::SplineConfig;
