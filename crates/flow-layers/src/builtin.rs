//! The registration of every built-in layer kind: a new layer lives in its own file and adds
//! one line here.

use crate::error::Result;
use crate::registry::Registry;
use flow_core::Backend;

pub(crate) fn register_all<B: Backend>(registry: &mut Registry<B>) -> Result<()> {
    registry
        .register::<crate::AffineCouplingBlock>()?
        .register::<crate::SplineCoupling>()?
        .register::<crate::MaskedAffineAutoregressive>()?
        .register::<crate::MaskedSplineAutoregressive>()?
        .register::<crate::Permute>()?
        .register::<crate::ActNorm>()?
        .register::<crate::InvertibleLinearLu>()?
        .register::<crate::Planar>()?
        .register::<crate::Radial>()?
        .register::<crate::Residual>()?
        .register::<crate::Cnf>()?;
    Ok(())
}
