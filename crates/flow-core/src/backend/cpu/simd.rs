//! Run-time detection of the vector instructions some kernels are compiled for: the crate
//! is built for baseline x86-64 (SSE2), so kernels that gain from wider vectors carry more
//! copies compiled with `#[target_feature]`, chosen here once per process.

/// Whether the CPU has AVX2 and FMA (detected once).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2() -> bool {
    static AVX2_FMA: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX2_FMA.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

/// Whether the CPU has AVX-512 F and DQ besides AVX2 and FMA (detected once).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx512() -> bool {
    static AVX512: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX512.get_or_init(|| {
        has_avx2() && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq")
    })
}

/// Runs `kernel` compiled for the widest vectors the CPU has (AVX-512, AVX2 or the
/// baseline). The kernel must be an `#[inline(always)]` closure over `#[inline(always)]`
/// code, so that it is compiled into each of the copies below. Without fast-math nothing is
/// contracted into FMAs, so every copy gives bit-identical results. Public for host-side
/// kernels of other crates (flow-layers' spectral-norm iterations), which are built for
/// the baseline too.
///
/// ```
/// let xs = vec![1.0f64; 1000];
/// let total = flow_core::backend::cpu::widest(
///     #[inline(always)]
///     || xs.iter().sum::<f64>(),
/// );
/// assert_eq!(total, 1000.0);
/// ```
#[inline(always)]
pub fn widest<R>(kernel: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx512() {
            // SAFETY: the CPU has these features, checked at run time.
            return unsafe { with_avx512(kernel) };
        }
        if has_avx2() {
            // SAFETY: as above.
            return unsafe { with_avx2(kernel) };
        }
    }
    kernel()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
unsafe fn with_avx512<R>(kernel: impl FnOnce() -> R) -> R {
    kernel()
}

/// `kernel` compiled for AVX2 and FMA (also called by tests, to check that copy on CPUs that
/// have AVX-512). Safety: the CPU must have both.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn with_avx2<R>(kernel: impl FnOnce() -> R) -> R {
    kernel()
}
