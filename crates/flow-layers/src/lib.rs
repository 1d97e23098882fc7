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
//! let (x, log_q) = model.sample(5, &mut rng(1))?;                // forward: z -> x
//! let log_p = model.log_prob_of(&x)?;                             // inverse: x -> z
//! assert!(log_p.max_abs_diff(&log_q)? < 1e-9);
//! # Ok::<(), flow_layers::Error>(())
//! ```

pub mod actnorm;
pub mod autoregressive;
pub mod coupling;
pub mod distribution;
pub mod error;
pub mod flow;
pub mod lu_linear;
pub mod made;
pub mod mlp;
pub mod model;
pub mod permute;
pub mod planar;
pub mod radial;
pub mod spec;
pub mod spline;
pub mod spline_coupling;

pub use actnorm::ActNorm;
pub use autoregressive::{MaskedAutoregressive, Transformer};
pub use coupling::{AffineCouplingBlock, ScaleMap};
pub use distribution::{Base, DiagGaussian, GaussianMixture, StandardNormal, Target, Uniform};
pub use error::{Error, Result};
pub use flow::Flow;
pub use lu_linear::InvertibleLinearLu;
pub use made::{Made, MadeConfig, Ordering};
pub use mlp::Mlp;
pub use model::NormalizingFlow;
pub use permute::{Permute, PermuteMode};
pub use planar::{Planar, PlanarActivation, PlanarConfig, PLANAR_LEAKY_SLOPE};
pub use radial::{Radial, RadialConfig};
pub use spec::{BaseSpec, FlowSpec, GlowConfig, LayerSpec, MafConfig, NsfConfig, RealNvpConfig};
pub use spline::SplineConfig;
pub use spline_coupling::SplineCoupling;
