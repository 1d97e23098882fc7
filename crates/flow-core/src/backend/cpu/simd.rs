//! Run-time detection of the vector instructions some kernels are compiled for: the crate
//! is built for baseline x86-64 (SSE2), so kernels that gain from wider vectors carry a
//! second copy compiled with `#[target_feature]`, chosen here once per process.

/// Whether the CPU has AVX2 and FMA (detected once).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2() -> bool {
    static AVX2_FMA: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX2_FMA.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}
