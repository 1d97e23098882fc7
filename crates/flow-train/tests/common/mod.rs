//! What the training tests share: comparing a model's parameters bit for bit.

use flow_core::Cpu;
use flow_layers::NormalizingFlow;

/// Every parameter of `model` by name, as the bits of its values: equal only when a resumed
/// run matches an uninterrupted one exactly.
pub fn params_of(model: &NormalizingFlow<Cpu<f32>>) -> Vec<(String, Vec<u32>)> {
    model
        .params()
        .iter()
        .map(|(_, name, t)| {
            (
                name.to_string(),
                t.to_vec().unwrap().iter().map(|v| v.to_bits()).collect(),
            )
        })
        .collect()
}
