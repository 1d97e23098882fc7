//! Arbitrary bytes to the checkpoint reader (`TensorFile::from_bytes`, then the whole
//! `load_bytes` on the f32 CPU backend): it returns Ok or Err, never panics.
#![no_main]

use flow_core::Cpu;
use flow_train::checkpoint::{load_bytes, TensorFile};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.safetensors");
    if let Ok(file) = TensorFile::from_bytes(data, path) {
        for (shape, values) in file.tensors.values() {
            // A shape's product overflowing usize would not have matched the data.
            let n = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
            assert_eq!(n, Some(values.len()));
        }
    }
    let _ = load_bytes::<Cpu<f32>>(&Cpu::new(), data, path);
});
