//! One device as the backend uses it: its context, the one stream every operation goes to,
//! the cuBLAS handle on that stream, and the kernels compiled for it (each kernel file
//! compiled once per context and element type on first use, then cached with the functions
//! loaded from it).
//!
//! Every kernel launch goes through [`Device::launch`], which checks the arguments against
//! the kernel's declared parameters (kinds and count, and that every buffer holds the
//! entries the caller says the kernel touches) before the one `unsafe` launch.

use crate::compile;
use crate::kernels::{self, Kernel, Param};
use crate::launch::Launch;
use cudarc::cublas::CudaBlas;
use cudarc::driver::{sys, CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream};
use cudarc::driver::{DeviceRepr, PushKernelArg as _};
use std::collections::HashMap;
use std::fmt;
use std::mem::ManuallyDrop;
use std::sync::{Arc, Mutex, MutexGuard};

/// The first driver API version with `cuFuncGetParamInfo` (CUDA 12.4).
const PARAM_INFO_DRIVER: i32 = 12040;

/// What `Device` methods report: a message, which the backend turns into
/// `flow_core::Error::Backend`.
pub(crate) type DeviceResult<T> = Result<T, String>;

pub(crate) struct Device {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    /// Dropped by `Device`'s `Drop` only while the device is healthy: cudarc's `CudaBlas`
    /// panics when cuBLAS cannot destroy its handle, as after a kernel fault, and a panic
    /// while a failing test unwinds aborts the whole test binary.
    pub blas: ManuallyDrop<CudaBlas>,
    /// `(major, minor)`.
    pub capability: (i32, i32),
    /// The driver's CUDA version as `1000 major + 10 minor`.
    pub driver_version: i32,
    /// "f32" or "f64": the kernels' suffix.
    suffix: &'static str,
    elem_size: usize,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    functions: Mutex<HashMap<&'static str, CudaFunction>>,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("ordinal", &self.ctx.ordinal())
            .field("capability", &self.capability)
            .field("driver_version", &self.driver_version)
            .finish_non_exhaustive()
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        // A device with a sticky error (a kernel fault) fails every call from now on: its
        // cuBLAS handle is left to the process's end rather than dropped into a panic. The
        // handle holds the stream and so the context, which then stays retained (faulted)
        // for the rest of the process: later backends on that GPU in the process fail too.
        if self.stream.synchronize().is_ok() {
            // SAFETY: `blas` is dropped once, here, and not used after.
            unsafe { ManuallyDrop::drop(&mut self.blas) };
        }
    }
}

/// A lock that a panic elsewhere does not poison for us: the maps stay consistent (an entry
/// is inserted whole or not at all).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One argument of a launch. Buffers carry the number of entries the kernel touches in
/// them, which [`Device::launch`] checks against their length.
pub(crate) enum Arg<'a, E> {
    /// A `const T*` of which the kernel reads the first `usize` entries.
    In(&'a CudaSlice<E>, usize),
    /// A `T*` of which the kernel reads or writes the first `usize` entries.
    Out(&'a mut CudaSlice<E>, usize),
    InIndex(&'a CudaSlice<u32>, usize),
    OutIndex(&'a mut CudaSlice<u32>, usize),
    U64(u64),
    I32(i32),
    Elem(E),
}

impl<E> Arg<'_, E> {
    fn param(&self) -> Param {
        match self {
            Arg::In(..) => Param::In,
            Arg::Out(..) => Param::Out,
            Arg::InIndex(..) => Param::InIndex,
            Arg::OutIndex(..) => Param::OutIndex,
            Arg::U64(_) => Param::U64,
            Arg::I32(_) => Param::I32,
            Arg::Elem(_) => Param::Elem,
        }
    }

    /// `(entries the kernel touches, entries the buffer holds)` of a buffer argument.
    fn extent(&self) -> Option<(usize, usize)> {
        match self {
            Arg::In(s, n) => Some((*n, s.len())),
            Arg::Out(s, n) => Some((*n, s.len())),
            Arg::InIndex(s, n) => Some((*n, s.len())),
            Arg::OutIndex(s, n) => Some((*n, s.len())),
            _ => None,
        }
    }
}

/// A size as the kernels' `u64`.
pub(crate) fn u64_of(n: usize) -> u64 {
    // usize is at most 64 bits on every target CUDA supports.
    n as u64
}

impl Device {
    /// The device `ordinal`, its default stream and a cuBLAS handle on it. The caller has
    /// checked that the driver, NVRTC and cuBLAS libraries load.
    pub(crate) fn open(
        ordinal: usize,
        suffix: &'static str,
        elem_size: usize,
    ) -> DeviceResult<Self> {
        let count = CudaContext::device_count()
            .map_err(|e| format!("no CUDA device: the driver reports {e:?}"))?;
        if count <= 0 {
            return Err("no CUDA device: the driver found none".into());
        }
        if ordinal >= count as usize {
            return Err(format!(
                "no CUDA device {ordinal}: the driver found {count} (0 to {})",
                count - 1
            ));
        }
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| format!("creating a context on CUDA device {ordinal}: {e:?}"))?;
        // SAFETY: this backend issues all its work on one stream (`stream` below, which
        // cuBLAS shares), so the events that order buffers across streams are not needed.
        // The flag is per `CudaContext` value, which only this device holds.
        unsafe { ctx.disable_event_tracking() };
        let capability = ctx
            .compute_capability()
            .map_err(|e| format!("reading device {ordinal}'s compute capability: {e:?}"))?;
        let mut driver_version = 0;
        // SAFETY: the driver is loaded (the context exists); `driver_version` is a valid
        // place for the result.
        unsafe { sys::cuDriverGetVersion(&mut driver_version) }
            .result()
            .map_err(|e| format!("reading the CUDA driver's version: {e:?}"))?;
        if ctx.has_async_alloc() {
            // Speed only: where the driver refuses (some shared or virtual GPUs), freed memory
            // goes back at each synchronisation, as by default.
            let _ = keep_freed_memory(&ctx);
        }
        let stream = ctx.default_stream();
        let blas = CudaBlas::new(stream.clone())
            .map_err(|e| format!("creating a cuBLAS handle on device {ordinal}: {e:?}"))?;
        Ok(Device {
            ctx,
            stream,
            blas: ManuallyDrop::new(blas),
            capability,
            driver_version,
            suffix,
            elem_size,
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
        })
    }

    /// The function `kernel` (its element type's variant), compiling and loading its file
    /// on first use.
    pub(crate) fn function(&self, kernel: &Kernel) -> DeviceResult<CudaFunction> {
        let mut functions = lock(&self.functions);
        if let Some(f) = functions.get(kernel.name) {
            return Ok(f.clone());
        }
        let module = self.module(kernel.module)?;
        let symbol = format!("{}_{}", kernel.name, self.suffix);
        let function = module
            .load_function(&symbol)
            .map_err(|e| format!("{}.cu has no kernel {symbol}: {e:?}", kernel.module))?;
        self.check_parameters(&function, kernel, &symbol)?;
        functions.insert(kernel.name, function.clone());
        Ok(function)
    }

    /// The loaded module of `kernels/<name>.cu`, compiled on first use.
    fn module(&self, name: &'static str) -> DeviceResult<Arc<CudaModule>> {
        let mut modules = lock(&self.modules);
        if let Some(m) = modules.get(name) {
            return Ok(m.clone());
        }
        let source = kernels::module_source(name).ok_or_else(|| {
            format!("kernels/{name}.cu was not in flow-cuda's source when it was built")
        })?;
        let common = kernels::common_header()
            .ok_or("kernels/common.cuh was not in flow-cuda's source when it was built")?;
        let text = compile::program_text(name, source, common);
        let options = compile::options(self.capability, self.suffix);
        let file = format!("{name}.cu");
        let image = compile::cubin(&file, &text, &options)?;
        let module = self
            .ctx
            .load_module(cudarc::nvrtc::Ptx::from_binary(image))
            .map_err(|e| {
                format!(
                    "loading {file} compiled for sm_{}{} ({}): {e:?}",
                    self.capability.0, self.capability.1, self.suffix
                )
            })?;
        modules.insert(name, module.clone());
        Ok(module)
    }

    /// Where the driver can report a function's parameters (CUDA 12.4 and later), checks
    /// that they are as many, and as large, as `kernel` declares: a kernel file that
    /// drifted from KERNELS.md is an error, not a launch with the wrong arguments.
    fn check_parameters(
        &self,
        function: &CudaFunction,
        kernel: &Kernel,
        symbol: &str,
    ) -> DeviceResult<()> {
        if self.driver_version < PARAM_INFO_DRIVER {
            return Ok(());
        }
        let info = |index: usize| -> Option<usize> {
            let (mut offset, mut size) = (0usize, 0usize);
            // SAFETY: the function belongs to a module this device holds loaded; `offset`
            // and `size` are valid places for the results. The driver is at least 12.4,
            // which has this entry point.
            let r = unsafe {
                sys::cuFuncGetParamInfo(function.cu_function(), index, &mut offset, &mut size)
            };
            (r == sys::CUresult::CUDA_SUCCESS).then_some(size)
        };
        if info(0).is_none() {
            return Ok(()); // the driver does not report parameters of this function
        }
        for (i, param) in kernel.params.iter().enumerate() {
            let expected = param.size(self.elem_size);
            match info(i) {
                Some(size) if size == expected => {}
                Some(size) => {
                    return Err(format!(
                        "{symbol}'s parameter {i} has {size} bytes; KERNELS.md declares `{}` \
                         ({expected} bytes)",
                        param.spelling()
                    ))
                }
                None => {
                    return Err(format!(
                        "{symbol} has {i} parameters; KERNELS.md declares {}",
                        kernel.params.len()
                    ))
                }
            }
        }
        if info(kernel.params.len()).is_some() {
            return Err(format!(
                "{symbol} has more parameters than the {} KERNELS.md declares",
                kernel.params.len()
            ));
        }
        Ok(())
    }

    /// Launches `kernel` with `args` on the stream. The arguments must match the kernel's
    /// parameters in kind and number, and every buffer must hold the entries its argument
    /// says the kernel touches: both are checked here, so a mistake is an error, not an
    /// out-of-bounds access.
    pub(crate) fn launch<E: DeviceRepr>(
        &self,
        kernel: &Kernel,
        launch: Launch,
        args: &mut [Arg<'_, E>],
    ) -> DeviceResult<()> {
        let symbol = || format!("{}_{}", kernel.name, self.suffix);
        let kinds: Vec<Param> = args.iter().map(Arg::param).collect();
        if kinds != kernel.params {
            return Err(format!(
                "launching {}: the arguments ({}) are not its parameters ({})",
                symbol(),
                spell(&kinds),
                spell(kernel.params)
            ));
        }
        for (i, arg) in args.iter().enumerate() {
            if let Some((needed, len)) = arg.extent() {
                if needed > len {
                    return Err(format!(
                        "launching {}: argument {i} holds {len} entries, the kernel uses {needed}",
                        symbol()
                    ));
                }
            }
        }
        let function = self.function(kernel)?;
        let mut builder = self.stream.launch_builder(&function);
        for arg in args.iter_mut() {
            match arg {
                Arg::In(s, _) => builder.arg(*s),
                Arg::Out(s, _) => builder.arg(&mut **s),
                Arg::InIndex(s, _) => builder.arg(*s),
                Arg::OutIndex(s, _) => builder.arg(&mut **s),
                Arg::U64(v) => builder.arg(&*v),
                Arg::I32(v) => builder.arg(&*v),
                Arg::Elem(v) => builder.arg(&*v),
            };
        }
        // SAFETY: the arguments are, in order, of the kinds KERNELS.md declares for this
        // kernel (checked above; and against the compiled function's parameter sizes where
        // the driver reports them, in `function`), so each value is passed as the type the
        // kernel reads. Every buffer is a live allocation of this context holding at least
        // the entries the caller derived from the kernel's contract and the shapes (checked
        // above), and the kernels touch no others. Scalars and buffers outlive the launch
        // call (borrowed from `args`), and all work is ordered on this one stream.
        unsafe { builder.launch(launch.config()) }
            .map(|_| ())
            .map_err(|e| format!("launching {}: {e:?}", symbol()))
    }
}

/// Lets the device's default memory pool keep what is freed. Buffers are allocated and freed
/// in stream order from that pool (`cuMemAllocAsync`), whose release threshold is 0 by
/// default: every synchronisation (each download, every training step's loss) would hand
/// all freed memory back to the driver, and the next step would map it again. The pool is
/// the device's for the whole process: other users of it in the process keep theirs too.
fn keep_freed_memory(ctx: &CudaContext) -> Result<(), cudarc::driver::DriverError> {
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    let mut threshold = u64::MAX;
    // SAFETY: the context's device supports memory pools (checked by the caller); `pool`
    // is a valid place for the handle, and the release threshold attribute takes a
    // `cuuint64_t`, which `threshold` is.
    unsafe {
        sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()).result()?;
        sys::cuMemPoolSetAttribute(
            pool,
            sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
            (&mut threshold as *mut u64).cast(),
        )
        .result()
    }
}

fn spell(params: &[Param]) -> String {
    params
        .iter()
        .map(|p| p.spelling())
        .collect::<Vec<_>>()
        .join(", ")
}
