//! Element types: f32 for working precision, f64 for gradient checks and references.

use std::fmt::{Debug, Display};

/// A floating-point element type a backend can store: f32 or f64 (sealed, because the
/// GEMM kernels exist for exactly these).
pub trait Element:
    sealed::Sealed
    + crate::backend::cpu::CpuKernels
    + num_traits::Float
    + num_traits::FromPrimitive
    + num_traits::ToPrimitive
    + Debug
    + Display
    + Default
    + Send
    + Sync
    + std::iter::Sum
    + std::ops::AddAssign
    + std::ops::MulAssign
    + 'static
{
    /// The name used in file metadata ("f32" or "f64").
    const NAME: &'static str;

    /// Converts from f64 (rounding to nearest for f32).
    fn of(x: f64) -> Self;

    /// Widens to f64.
    fn as_f64(self) -> f64;

    /// The type's machine epsilon, as f64.
    const EPSILON: f64;
}

impl Element for f32 {
    const NAME: &'static str = "f32";
    const EPSILON: f64 = f32::EPSILON as f64;
    fn of(x: f64) -> Self {
        x as f32
    }
    fn as_f64(self) -> f64 {
        self as f64
    }
}

impl Element for f64 {
    const NAME: &'static str = "f64";
    const EPSILON: f64 = f64::EPSILON;
    fn of(x: f64) -> Self {
        x
    }
    fn as_f64(self) -> f64 {
        self
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}
