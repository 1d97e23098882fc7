//! Models trained elsewhere, turned into our checkpoints: normflows' RealNVP
//! ([`import_normflows`]) and torchcfm's flow-matching MLP ([`import_torchcfm`]).

mod normflows;
mod torchcfm;

pub use normflows::{import_normflows, ImportOptions};
pub use torchcfm::import_torchcfm;
