//! The typed FFI surface: every host entry point of `cpp/*_entry.cpp`, once.
//!
//! Each kernel `name` of the `.cu` files has two entry points, `host_name_f32` and
//! `host_name_f64`, which run it through `flow_host::launch` on `grid` blocks of `block`
//! threads with `shared` bytes of dynamic shared memory. Here each becomes a method of
//! [`Kernels<T>`], implemented for `f32` and `f64` (`T::name(launch, args..)`).
//!
//! The list below is written once with `T` for the element type: the macro declares it in
//! two modules in which `T` is an alias of `f32` and of `f64`.

/// Grid, block and dynamic shared memory (bytes) of one launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Launch {
    pub grid: u32,
    pub block: u32,
    pub shared: u64,
}

impl Launch {
    /// `grid` blocks of `block` threads, no dynamic shared memory.
    pub const fn new(grid: u32, block: u32) -> Self {
        Launch {
            grid,
            block,
            shared: 0,
        }
    }

    /// The same launch with `bytes` of dynamic shared memory per block.
    pub const fn with_shared(self, bytes: u64) -> Self {
        Launch {
            shared: bytes,
            ..self
        }
    }
}

macro_rules! kernels {
    ($(fn $name:ident($($arg:ident: $ty:ty),* $(,)?) = $f32:ident, $f64:ident;)*) => {
        /// The kernels for element type `T`, as `T::kernel(launch, args..)`.
        ///
        /// # Safety
        /// Every method runs a kernel on raw pointers: each must point to as many elements
        /// as the kernel reads or writes for the given sizes (see `KERNELS.md`), the output
        /// not aliasing an input unless the kernel works in place.
        pub trait Kernels<T> {
            $(
                #[allow(clippy::too_many_arguments, clippy::missing_safety_doc)]
                unsafe fn $name(launch: Launch, $($arg: $ty),*);
            )*
        }

        kernels!(@element f32_entries, f32, $($name($($arg: $ty),*) = $f32;)*);
        kernels!(@element f64_entries, f64, $($name($($arg: $ty),*) = $f64;)*);
    };
    (@element $module:ident, $elem:ty, $($name:ident($($arg:ident: $ty:ty),*) = $symbol:ident;)*) => {
        mod $module {
            use super::{Kernels, Launch};
            // The `T` of the kernel list above, for this module's declarations.
            type T = $elem;

            extern "C" {
                $(
                    #[allow(clippy::too_many_arguments)]
                    fn $symbol(grid: u32, block: u32, shared: u64, $($arg: $ty),*);
                )*
            }

            impl Kernels<T> for T {
                $(
                    unsafe fn $name(launch: Launch, $($arg: $ty),*) {
                        // SAFETY: the caller's promise (see `Kernels`).
                        unsafe { $symbol(launch.grid, launch.block, launch.shared, $($arg),*) }
                    }
                )*
            }
        }
    };
}

kernels! {
    // elementwise.cu
    fn fill(out: *mut T, n: u64, value: T) = host_fill_f32, host_fill_f64;
    fn unary(x: *const T, out: *mut T, n: u64, op: i32, p: T, k: i32)
        = host_unary_f32, host_unary_f64;
    fn binary(a: *const T, b: *const T, out: *mut T, rows: u64, cols: u64, a_rows: u64,
        a_cols: u64, b_rows: u64, b_cols: u64, op: i32) = host_binary_f32, host_binary_f64;
    fn select(mask: *const T, a: *const T, b: *const T, out: *mut T, n: u64)
        = host_select_f32, host_select_f64;
    fn broadcast_to(x: *const T, out: *mut T, rows: u64, cols: u64, x_rows: u64, x_cols: u64)
        = host_broadcast_to_f32, host_broadcast_to_f64;
    fn linear_epilogue(y: *mut T, bias: *const T, rows: u64, cols: u64, act: i32, slope: T)
        = host_linear_epilogue_f32, host_linear_epilogue_f64;
    fn activation_backward(g: *mut T, out: *const T, n: u64, act: i32, slope: T)
        = host_activation_backward_f32, host_activation_backward_f64;
    fn adam(param: *mut T, grad: *const T, m: *mut T, v: *mut T, n: u64, lr: T, beta1: T,
        beta2: T, eps: T, weight_decay: T, bias_correction1: T, bias_correction2: T)
        = host_adam_f32, host_adam_f64;

    // reduce.cu
    fn reduce_rows(x: *const T, out: *mut T, rows: u64, cols: u64, op: i32)
        = host_reduce_rows_f32, host_reduce_rows_f64;
    fn reduce_cols(x: *const T, out: *mut T, rows: u64, cols: u64, op: i32)
        = host_reduce_cols_f32, host_reduce_cols_f64;
    fn reduce_all(x: *const T, out: *mut T, n: u64, op: i32)
        = host_reduce_all_f32, host_reduce_all_f64;
    fn argmax_mask(x: *const T, out: *mut T, rows: u64, cols: u64, axis: i32)
        = host_argmax_mask_f32, host_argmax_mask_f64;
    fn logsumexp_cols(x: *const T, out: *mut T, rows: u64, cols: u64)
        = host_logsumexp_cols_f32, host_logsumexp_cols_f64;
    fn softmax_cols(x: *const T, out: *mut T, rows: u64, cols: u64)
        = host_softmax_cols_f32, host_softmax_cols_f64;

    // columns.cu
    fn slice_cols(x: *const T, out: *mut T, rows: u64, x_cols: u64, start: u64, len: u64)
        = host_slice_cols_f32, host_slice_cols_f64;
    fn copy_cols(part: *const T, out: *mut T, rows: u64, part_cols: u64, out_cols: u64,
        offset: u64) = host_copy_cols_f32, host_copy_cols_f64;
    fn gather_cols(x: *const T, index: *const u32, out: *mut T, rows: u64, x_cols: u64,
        out_cols: u64) = host_gather_cols_f32, host_gather_cols_f64;
    fn scatter_add_cols(x: *const T, index: *const u32, out: *mut T, rows: u64, x_cols: u64,
        width: u64) = host_scatter_add_cols_f32, host_scatter_add_cols_f64;
    fn take_per_row(x: *const T, index: *const u32, out: *mut T, rows: u64, cols: u64)
        = host_take_per_row_f32, host_take_per_row_f64;
    fn put_per_row(x: *const T, index: *const u32, out: *mut T, rows: u64, width: u64)
        = host_put_per_row_f32, host_put_per_row_f64;
    fn search_sorted_rows(sorted: *const T, x: *const T, out: *mut u32, rows: u64, cols: u64)
        = host_search_sorted_rows_f32, host_search_sorted_rows_f64;

    // coupling.cu
    fn affine_coupling(v: *const T, params: *const T, out: *mut T, log_det: *mut T, rows: u64,
        d: u64, d2: u64, scale: i32, direction: i32, lanes: i32)
        = host_affine_coupling_f32, host_affine_coupling_f64;
    fn affine_coupling_backward(params: *const T, out: *const T, g: *const T, g_v: *mut T,
        g_params: *mut T, rows: u64, d: u64, d2: u64, scale: i32, direction: i32)
        = host_affine_coupling_backward_f32, host_affine_coupling_backward_f64;

    // diag_normal.cu
    fn diag_normal_log_prob(z: *const T, loc: *const T, log_scale: *const T, out: *mut T,
        rows: u64, d: u64, lanes: i32)
        = host_diag_normal_log_prob_f32, host_diag_normal_log_prob_f64;
    fn diag_normal_backward(z: *const T, loc: *const T, log_scale: *const T, g: *const T,
        w: *mut T, t: *mut T, rows: u64, d: u64)
        = host_diag_normal_backward_f32, host_diag_normal_backward_f64;

    // random.cu
    fn randn(out: *mut T, n: u64, seed: u64, stream: u64, offset: u64)
        = host_randn_f32, host_randn_f64;
    fn rand_uniform(out: *mut T, n: u64, seed: u64, stream: u64, offset: u64, low: T, high: T)
        = host_rand_uniform_f32, host_rand_uniform_f64;

    // spline.cu
    fn rational_quadratic(x: *const T, params: *const T, out: *mut T, cache: *mut T, rows: u64,
        d: u64, bins: i32, tail_bound: T, min_bin_width: T, min_bin_height: T,
        min_derivative: T, direction: i32)
        = host_rational_quadratic_f32, host_rational_quadratic_f64;
    fn rational_quadratic_backward(params: *const T, cache: *const T, g: *const T,
        g_x: *mut T, g_params: *mut T, rows: u64, d: u64, bins: i32, tail_bound: T,
        min_bin_width: T, min_bin_height: T, direction: i32)
        = host_rational_quadratic_backward_f32, host_rational_quadratic_backward_f64;

    // cpp/philox_probe.cu: random.cu's Philox4x32-10 words (the same in both libraries)
    fn philox_words(counters: *const u64, streams: *const u64, seeds: *const u64,
        out: *mut u32, n: u64) = host_philox_words_f32, host_philox_words_f64;

    // cpp/host_probe.cu: the host stand-ins themselves
    fn probe_ids(out: *mut u32) = host_probe_ids_f32, host_probe_ids_f64;
    fn probe_shuffles(out: *mut T, width: i32) = host_probe_shuffles_f32, host_probe_shuffles_f64;
    fn probe_shared(out: *mut T) = host_probe_shared_f32, host_probe_shared_f64;
    fn probe_atomic(sum: *mut T, count: *mut u32) = host_probe_atomic_f32, host_probe_atomic_f64;
}
