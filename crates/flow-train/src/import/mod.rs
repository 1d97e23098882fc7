//! Models trained elsewhere, turned into our checkpoints: normflows' RealNVP
//! ([`import_normflows`]) and torchcfm's flow-matching MLP ([`import_torchcfm`]).

mod normflows;
mod torchcfm;

pub use normflows::{import_normflows, ImportOptions};
pub use torchcfm::import_torchcfm;

use crate::checkpoint::TensorFile;
use crate::error::{Error, Result};
use std::path::Path;

/// Reads a state_dict to import, refusing one of our own checkpoints: it would parse (our
/// names are the anchors'), but what a state_dict cannot record would be guessed.
fn read_state_dict(path: &Path) -> Result<TensorFile> {
    let file = TensorFile::read(path)?;
    if file.metadata.get("format").map(String::as_str) == Some(crate::checkpoint::FORMAT) {
        return Err(Error::format(
            path,
            "already a flows checkpoint (format: flows-checkpoint); use it directly, no import needed",
        ));
    }
    Ok(file)
}
