//! Matrix products through cuBLAS (the row-major to column-major mapping is `blas.rs`'s).

use crate::backend::{CudaBackend, CudaElement};
use crate::blas;
use crate::storage::CudaStorage;
use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::GemmConfig;
use flow_core::Result;

fn op(transpose: bool) -> cublasOperation_t {
    if transpose {
        cublasOperation_t::CUBLAS_OP_T
    } else {
        cublasOperation_t::CUBLAS_OP_N
    }
}

impl<E: CudaElement> CudaBackend<E> {
    pub(crate) fn gemm(
        &self,
        a: &CudaStorage<E>,
        ta: bool,
        b: &CudaStorage<E>,
        tb: bool,
    ) -> Result<CudaStorage<E>> {
        let p = blas::plan(a.shape, ta, b.shape, tb).ok_or_else(|| {
            self.error(format!(
                "matmul: the inner dimensions of {}{} and {}{} differ",
                a.shape,
                if ta { "^T" } else { "" },
                b.shape,
                if tb { "^T" } else { "" }
            ))
        })?;
        // A product over an empty inner dimension is all zeros, and no kernel writes it: its
        // buffer is zeroed (a fresh one may hold a freed buffer's values).
        if p.k == 0 {
            return self.zeros_of(p.out);
        }
        let mut out = self.output(p.out.len())?;
        if !p.out.is_empty() {
            let int = |v: usize, what: &str| {
                i32::try_from(v).map_err(|_| {
                    self.error(format!("matmul: {what} {v} exceeds cuBLAS's 32-bit sizes"))
                })
            };
            let cfg = GemmConfig {
                transa: op(p.trans_first),
                transb: op(p.trans_second),
                m: int(p.m, "dimension")?,
                n: int(p.n, "dimension")?,
                k: int(p.k, "dimension")?,
                alpha: E::one(),
                lda: int(p.ld_first, "leading dimension")?,
                ldb: int(p.ld_second, "leading dimension")?,
                beta: E::zero(),
                ldc: int(p.ld_out, "leading dimension")?,
            };
            // cuBLAS calls do not make the context current themselves.
            self.device
                .ctx
                .bind_to_thread()
                .map_err(|e| self.error(format!("matmul: binding the context: {e:?}")))?;
            // SAFETY: `blas::plan` maps the row-major shapes onto cuBLAS's column-major
            // arguments (unit-tested against a reference product), so cuBLAS reads
            // `ld_first * (cols of its first operand)` <= b's `rows x cols` entries of b,
            // likewise of a, and writes the `m x n` = `out.len()` entries of `out`; every
            // buffer holds at least its shape's entries.
            unsafe { E::gemm(&self.device.blas, cfg, &b.data, &a.data, &mut out) }
                .map_err(|e| self.error(format!("matmul (cuBLAS gemm): {e:?}")))?;
        }
        Ok(CudaStorage::new(out, p.out))
    }
}
