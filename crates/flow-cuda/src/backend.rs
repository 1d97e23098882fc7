//! [`CudaBackend`]: construction (with the checks for the driver, NVRTC and cuBLAS), the
//! helpers every operation shares (allocation, launches, errors), and the `Backend` trait's
//! methods, each forwarding to the module of `ops` that implements it.

use crate::device::{Arg, Device};
use crate::kernels::Kernel;
use crate::launch::Launch;
use crate::storage::{capacity, CudaIndex, CudaStorage};
use cudarc::cublas::{result::CublasError, CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{CudaSlice, DeviceRepr, ValidAsZeroBits};
use flow_core::backend::{
    Activation, AdamStep, Backend, BinaryOp, CouplingScale, Direction, RationalQuadratic, ReduceOp,
    UnaryOp,
};
use flow_core::{backend_error, Axis, Element, Error, FlowRng, Result, Shape};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

/// The element types the CUDA backend stores: `f32` and `f64` (the kernels are compiled for
/// exactly these; [`Element`] is sealed, so there are no others).
pub trait CudaElement: Element + DeviceRepr + ValidAsZeroBits + Unpin {
    /// cuBLAS's `gemm` for this type.
    ///
    /// # Safety
    ///
    /// As [`Gemm::gemm`]: `cfg` describes matrices that lie within `a`, `b` and `c`.
    #[doc(hidden)]
    unsafe fn gemm(
        blas: &CudaBlas,
        cfg: GemmConfig<Self>,
        a: &CudaSlice<Self>,
        b: &CudaSlice<Self>,
        c: &mut CudaSlice<Self>,
    ) -> std::result::Result<(), CublasError>;
}

macro_rules! cuda_element {
    ($t:ty) => {
        impl CudaElement for $t {
            unsafe fn gemm(
                blas: &CudaBlas,
                cfg: GemmConfig<Self>,
                a: &CudaSlice<Self>,
                b: &CudaSlice<Self>,
                c: &mut CudaSlice<Self>,
            ) -> std::result::Result<(), CublasError> {
                // SAFETY: the caller upholds `Gemm::gemm`'s contract (this function's own).
                unsafe { blas.gemm(cfg, a, b, c) }
            }
        }
    };
}

cuda_element!(f32);
cuda_element!(f64);

/// The CUDA backend for element type `E` on one device: hand-written kernels
/// (`kernels/*.cu`, compiled by NVRTC for the device on first use) and cuBLAS for matrix
/// products, all on one stream. Cloning shares the device.
///
/// Operations are asynchronous: a failure the device reports late comes back from a later
/// call, at the latest from [`Backend::synchronize`] or a download.
pub struct CudaBackend<E> {
    pub(crate) device: Arc<Device>,
    _elem: PhantomData<fn() -> E>,
}

impl<E> Clone for CudaBackend<E> {
    fn clone(&self) -> Self {
        CudaBackend {
            device: self.device.clone(),
            _elem: PhantomData,
        }
    }
}

impl<E: Element> fmt::Debug for CudaBackend<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudaBackend")
            .field("elem", &E::NAME)
            .field("device", &self.device)
            .finish()
    }
}

/// Which of the libraries the backend loads at run time are missing, by what it needs them
/// for (`present` answers for the driver, NVRTC and cuBLAS, in that order).
pub(crate) fn missing_libraries(present: [bool; 3]) -> Option<String> {
    const NEEDED: [&str; 3] = [
        "the CUDA driver (libcuda, installed with the NVIDIA driver)",
        "NVRTC (libnvrtc, from CUDA 12 or 13, to compile the kernels)",
        "cuBLAS (libcublas, from CUDA 12 or 13, for matrix products)",
    ];
    let missing: Vec<&str> = NEEDED
        .iter()
        .zip(present)
        .filter(|(_, here)| !here)
        .map(|(what, _)| *what)
        .collect();
    let them = if missing.len() == 1 { "it" } else { "them" };
    (!missing.is_empty()).then(|| {
        format!(
            "cannot load {}; install {them} or add {them} to the library path (LD_LIBRARY_PATH)",
            missing.join("; ")
        )
    })
}

impl<E: CudaElement> CudaBackend<E> {
    /// The backend on CUDA device `ordinal` (0 is the first).
    ///
    /// An [`Error::Backend`] says what is missing when the driver, NVRTC or cuBLAS cannot be
    /// loaded, when there is no device `ordinal`, or when the device cannot be opened.
    /// Nothing is compiled yet: each kernel file is compiled on its first use.
    pub fn new(ordinal: usize) -> Result<Self> {
        let name = format!("cuda:{ordinal}-{}", E::NAME);
        let fail = |message: String| Error::Backend {
            backend: name.clone(),
            message,
        };
        // cudarc panics when a library it calls into is absent: look before any call.
        // SAFETY: these only try to load the libraries (and unload them again).
        let present = unsafe {
            [
                cudarc::driver::sys::is_culib_present(),
                cudarc::nvrtc::sys::is_culib_present(),
                cudarc::cublas::sys::is_culib_present(),
            ]
        };
        if let Some(message) = missing_libraries(present) {
            return Err(fail(message));
        }
        let device = Device::open(ordinal, E::NAME, std::mem::size_of::<E>()).map_err(fail)?;
        Ok(CudaBackend {
            device: Arc::new(device),
            _elem: PhantomData,
        })
    }

    /// The device's ordinal.
    pub fn ordinal(&self) -> usize {
        self.device.ctx.ordinal()
    }

    /// The device's compute capability, `(major, minor)`: the kernels are compiled for
    /// `sm_{major}{minor}`.
    pub fn compute_capability(&self) -> (i32, i32) {
        self.device.capability
    }

    /// The device's name, as the driver reports it.
    pub fn device_name(&self) -> Result<String> {
        self.device
            .ctx
            .name()
            .map_err(|e| self.error(format!("reading the device's name: {e:?}")))
    }

    /// Compiles and loads every kernel now rather than on first use (for timings that
    /// should not include compilation, or to find a compilation problem early).
    pub fn compile_all(&self) -> Result<()> {
        for kernel in crate::kernels::EVERY {
            self.device
                .function(kernel)
                .map_err(|message| self.error(message))?;
        }
        Ok(())
    }

    // ---- shared by the ops ----

    /// An [`Error::Backend`] of this backend.
    pub(crate) fn error(&self, message: impl fmt::Display) -> Error {
        backend_error(self, message)
    }

    /// A zeroed buffer for `len` values (at least one element).
    pub(crate) fn zeros(&self, len: usize) -> Result<CudaSlice<E>> {
        self.device
            .stream
            .alloc_zeros::<E>(capacity(len))
            .map_err(|e| self.error(format!("allocating {len} values: {e:?}")))
    }

    /// A buffer for `len` values (at least one) that a kernel is about to write, left
    /// uninitialised: no memset before every op. Every kernel writes every entry of its
    /// outputs (KERNELS.md; the host checks fill outputs with NaN first to hold them to it),
    /// and an empty result is never read.
    pub(crate) fn output(&self, len: usize) -> Result<CudaSlice<E>> {
        // SAFETY: the buffer's contents are only read after a kernel has written all `len`
        // entries (see above); `E` is a plain float, valid for any bits.
        unsafe { self.device.stream.alloc::<E>(capacity(len)) }
            .map_err(|e| self.error(format!("allocating {len} values: {e:?}")))
    }

    /// A zeroed index buffer for `len` indices (at least one).
    pub(crate) fn index_zeros(&self, len: usize) -> Result<CudaSlice<u32>> {
        self.device
            .stream
            .alloc_zeros::<u32>(capacity(len))
            .map_err(|e| self.error(format!("allocating {len} indices: {e:?}")))
    }

    /// Storage of `shape` holding zeros.
    pub(crate) fn zeros_of(&self, shape: Shape) -> Result<CudaStorage<E>> {
        Ok(CudaStorage::new(self.zeros(shape.len())?, shape))
    }

    /// Launches `kernel` (see [`Device::launch`]).
    pub(crate) fn launch(
        &self,
        kernel: &Kernel,
        launch: Launch,
        args: &mut [Arg<'_, E>],
    ) -> Result<()> {
        self.device
            .launch(kernel, launch, args)
            .map_err(|message| self.error(message))
    }

    /// The buffer of `s`, copied first if another storage shares it, for writing in place.
    pub(crate) fn unique<'s>(&self, s: &'s mut CudaStorage<E>) -> Result<&'s mut CudaSlice<E>> {
        if Arc::get_mut(&mut s.data).is_none() {
            let copy = self
                .device
                .stream
                .clone_dtod(&*s.data)
                .map_err(|e| self.error(format!("copying {} values: {e:?}", s.shape.len())))?;
            s.data = Arc::new(copy);
        }
        Arc::get_mut(&mut s.data).ok_or_else(|| self.error("a fresh copy is shared"))
    }
}

impl<E: CudaElement> Backend for CudaBackend<E> {
    type Elem = E;
    type Storage = CudaStorage<E>;
    type Index = CudaIndex;

    /// `cuda:ORDINAL-ELEM` ("cuda:0-f32"): names differ per device, so copies kept per
    /// backend ([`flow_core::Resident`]) are never shared across devices.
    fn name(&self) -> String {
        format!("cuda:{}-{}", self.ordinal(), E::NAME)
    }

    fn upload(&self, shape: Shape, data: Vec<E>) -> Result<CudaStorage<E>> {
        self.upload_values(shape, &data)
    }

    fn download(&self, s: &CudaStorage<E>) -> Result<Vec<E>> {
        self.download_values(s)
    }

    fn full(&self, shape: Shape, value: E) -> Result<CudaStorage<E>> {
        self.fill(shape, value)
    }

    fn shape(&self, s: &CudaStorage<E>) -> Shape {
        s.shape
    }

    fn upload_index(&self, index: &[usize]) -> Result<CudaIndex> {
        self.upload_indices(index)
    }

    fn download_index(&self, index: &CudaIndex) -> Result<Vec<usize>> {
        self.download_indices(index)
    }

    fn synchronize(&self) -> Result<()> {
        self.sync()
    }

    fn randn(&self, shape: Shape, rng: &mut FlowRng) -> Result<CudaStorage<E>> {
        self.draw_normal(shape, rng)
    }

    fn rand_uniform(
        &self,
        shape: Shape,
        low: f64,
        high: f64,
        rng: &mut FlowRng,
    ) -> Result<CudaStorage<E>> {
        self.draw_uniform(shape, low, high, rng)
    }

    fn matmul(
        &self,
        a: &CudaStorage<E>,
        ta: bool,
        b: &CudaStorage<E>,
        tb: bool,
    ) -> Result<CudaStorage<E>> {
        self.gemm(a, ta, b, tb)
    }

    fn unary(&self, op: UnaryOp<E>, a: &CudaStorage<E>) -> Result<CudaStorage<E>> {
        self.map_unary(op, a)
    }

    fn binary(
        &self,
        op: BinaryOp,
        a: &CudaStorage<E>,
        b: &CudaStorage<E>,
    ) -> Result<CudaStorage<E>> {
        self.map_binary(op, a, b)
    }

    fn reduce(&self, op: ReduceOp, axis: Axis, a: &CudaStorage<E>) -> Result<CudaStorage<E>> {
        self.reduce_along(op, axis, a)
    }

    fn argmax_mask(&self, axis: Axis, a: &CudaStorage<E>) -> Result<CudaStorage<E>> {
        self.argmax_along(axis, a)
    }

    fn logsumexp_cols(&self, a: &CudaStorage<E>) -> Result<CudaStorage<E>> {
        self.logsumexp_rows(a)
    }

    fn softmax_cols(&self, a: &CudaStorage<E>) -> Result<CudaStorage<E>> {
        self.softmax_rows(a)
    }

    fn broadcast_to(&self, a: &CudaStorage<E>, shape: Shape) -> Result<CudaStorage<E>> {
        self.broadcast(a, shape)
    }

    fn slice_cols(&self, a: &CudaStorage<E>, start: usize, len: usize) -> Result<CudaStorage<E>> {
        self.columns(a, start, len)
    }

    fn concat_cols(&self, parts: &[&CudaStorage<E>]) -> Result<CudaStorage<E>> {
        self.concat(parts)
    }

    fn gather_cols(&self, a: &CudaStorage<E>, index: &CudaIndex) -> Result<CudaStorage<E>> {
        self.gather(a, index)
    }

    fn scatter_add_cols(
        &self,
        a: &CudaStorage<E>,
        index: &CudaIndex,
        width: usize,
    ) -> Result<CudaStorage<E>> {
        self.scatter_add(a, index, width)
    }

    fn select(
        &self,
        mask: &CudaStorage<E>,
        a: &CudaStorage<E>,
        b: &CudaStorage<E>,
    ) -> Result<CudaStorage<E>> {
        self.choose(mask, a, b)
    }

    fn reshape(&self, a: &CudaStorage<E>, shape: Shape) -> Result<CudaStorage<E>> {
        // The same row-major values: the buffer is shared, not copied.
        Ok(CudaStorage {
            data: a.data.clone(),
            shape,
        })
    }

    fn take_per_row(&self, a: &CudaStorage<E>, index: &CudaIndex) -> Result<CudaStorage<E>> {
        self.take(a, index)
    }

    fn put_per_row(
        &self,
        a: &CudaStorage<E>,
        index: &CudaIndex,
        width: usize,
    ) -> Result<CudaStorage<E>> {
        self.put(a, index, width)
    }

    fn search_sorted_rows(&self, sorted: &CudaStorage<E>, x: &CudaStorage<E>) -> Result<CudaIndex> {
        self.search_sorted(sorted, x)
    }

    fn rational_quadratic(
        &self,
        x: &CudaStorage<E>,
        params: &CudaStorage<E>,
        spec: &RationalQuadratic,
        direction: Direction,
    ) -> Result<(CudaStorage<E>, CudaStorage<E>)> {
        self.spline(x, params, spec, direction)
    }

    fn rational_quadratic_backward(
        &self,
        x: &CudaStorage<E>,
        params: &CudaStorage<E>,
        cache: &CudaStorage<E>,
        spec: &RationalQuadratic,
        direction: Direction,
        g: &CudaStorage<E>,
    ) -> Result<(CudaStorage<E>, CudaStorage<E>)> {
        self.spline_backward(x, params, cache, spec, direction, g)
    }

    fn linear(
        &self,
        x: &CudaStorage<E>,
        weight: &CudaStorage<E>,
        bias: &CudaStorage<E>,
        act: Activation<E>,
    ) -> Result<CudaStorage<E>> {
        self.linear_layer(x, weight, bias, act)
    }

    fn activation_backward(
        &self,
        act: Activation<E>,
        g: &mut CudaStorage<E>,
        out: &CudaStorage<E>,
    ) -> Result<CudaStorage<E>> {
        self.activation_grad(act, g, out)
    }

    fn affine_coupling(
        &self,
        v: &CudaStorage<E>,
        params: &CudaStorage<E>,
        scale: CouplingScale,
        direction: Direction,
    ) -> Result<(CudaStorage<E>, CudaStorage<E>)> {
        self.coupling(v, params, scale, direction)
    }

    fn affine_coupling_backward(
        &self,
        _v: &CudaStorage<E>,
        params: &CudaStorage<E>,
        out: &CudaStorage<E>,
        g: &CudaStorage<E>,
        scale: CouplingScale,
        direction: Direction,
    ) -> Result<(CudaStorage<E>, CudaStorage<E>)> {
        self.coupling_backward(params, out, g, scale, direction)
    }

    fn diag_normal_log_prob(
        &self,
        z: &CudaStorage<E>,
        loc: &CudaStorage<E>,
        log_scale: &CudaStorage<E>,
    ) -> Result<CudaStorage<E>> {
        self.normal_log_prob(z, loc, log_scale)
    }

    fn diag_normal_log_prob_backward(
        &self,
        z: &CudaStorage<E>,
        loc: &CudaStorage<E>,
        log_scale: &CudaStorage<E>,
        g: &CudaStorage<E>,
    ) -> Result<(CudaStorage<E>, CudaStorage<E>, CudaStorage<E>)> {
        self.normal_log_prob_backward(z, loc, log_scale, g)
    }

    fn adam_update(
        &self,
        param: &mut CudaStorage<E>,
        grad: &CudaStorage<E>,
        m: &mut CudaStorage<E>,
        v: &mut CudaStorage<E>,
        h: &AdamStep<E>,
    ) -> Result<()> {
        self.adam(param, grad, m, v, h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_libraries_are_named() {
        assert_eq!(missing_libraries([true, true, true]), None);
        let m = missing_libraries([false, true, true]).unwrap();
        assert!(m.contains("CUDA driver") && !m.contains("NVRTC"), "{m}");
        let m = missing_libraries([true, false, false]).unwrap();
        assert!(
            m.contains("NVRTC") && m.contains("cuBLAS") && !m.contains("driver ("),
            "{m}"
        );
    }
}
