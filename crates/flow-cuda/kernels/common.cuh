// The one header every kernel includes: the element type, the kernel naming, and the few
// definitions that differ between NVRTC and the host build (see KERNELS.md).
#pragma once

#ifdef FLOW_HOST
#include "host/cuda_host.h"
#else
// Dynamic shared memory of the launch, as an array of `type`.
#define FLOW_SHARED_DYNAMIC(type, name)                                                    \
    extern __shared__ unsigned char flow_dynamic_shared_[];                                \
    type* name = reinterpret_cast<type*>(flow_dynamic_shared_)
#endif

#ifndef FLOW_T
#error "compile with -DFLOW_T=float -DFLOW_SUFFIX=f32 (or double, f64)"
#endif

typedef FLOW_T T;
typedef unsigned long long u64;
typedef unsigned int u32;

#define FLOW_CONCAT_(a, b) a##_##b
#define FLOW_CONCAT(a, b) FLOW_CONCAT_(a, b)
// `FLOW_NAME(unary)` is `unary_f32` or `unary_f64`.
#define FLOW_NAME(name) FLOW_CONCAT(name, FLOW_SUFFIX)
#define FLOW_KERNEL extern "C" __global__
#define FLOW_DEVICE static __device__ __forceinline__

// Math on T through one spelling (the CUDA math API, or <cmath> on the host).
FLOW_DEVICE float flow_exp(float x) { return expf(x); }
FLOW_DEVICE double flow_exp(double x) { return exp(x); }
FLOW_DEVICE float flow_expm1(float x) { return expm1f(x); }
FLOW_DEVICE double flow_expm1(double x) { return expm1(x); }
FLOW_DEVICE float flow_log(float x) { return logf(x); }
FLOW_DEVICE double flow_log(double x) { return log(x); }
FLOW_DEVICE float flow_log1p(float x) { return log1pf(x); }
FLOW_DEVICE double flow_log1p(double x) { return log1p(x); }
FLOW_DEVICE float flow_sqrt(float x) { return sqrtf(x); }
FLOW_DEVICE double flow_sqrt(double x) { return sqrt(x); }
FLOW_DEVICE float flow_tanh(float x) { return tanhf(x); }
FLOW_DEVICE double flow_tanh(double x) { return tanh(x); }
FLOW_DEVICE float flow_abs(float x) { return fabsf(x); }
FLOW_DEVICE double flow_abs(double x) { return fabs(x); }
// sin(pi x) and cos(pi x): no argument reduction of large angles (whose slow path in sinf
// and cosf uses local memory), and exact at the quarter turns.
#ifdef FLOW_HOST
FLOW_DEVICE float flow_sinpi(float x) { return (float)sin(3.14159265358979323846 * (double)x); }
FLOW_DEVICE double flow_sinpi(double x) { return sin(3.14159265358979323846 * x); }
FLOW_DEVICE float flow_cospi(float x) { return (float)cos(3.14159265358979323846 * (double)x); }
FLOW_DEVICE double flow_cospi(double x) { return cos(3.14159265358979323846 * x); }
#else
FLOW_DEVICE float flow_sinpi(float x) { return sinpif(x); }
FLOW_DEVICE double flow_sinpi(double x) { return sinpi(x); }
FLOW_DEVICE float flow_cospi(float x) { return cospif(x); }
FLOW_DEVICE double flow_cospi(double x) { return cospi(x); }
#endif
FLOW_DEVICE bool flow_isnan(T x) { return x != x; }
FLOW_DEVICE T flow_max(T a, T b) { return a > b ? a : b; }

// The grid-stride loop over `n` items of one thread each.
#define FLOW_FOR_EACH(i, n)                                                                 \
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                        \
         i += (u64)blockDim.x * gridDim.x)

FLOW_DEVICE T flow_sigmoid(T x) {
    if (x >= T(0)) {
        return T(1) / (T(1) + flow_exp(-x));
    }
    T e = flow_exp(x);
    return e / (T(1) + e);
}

FLOW_DEVICE T flow_softplus(T x) {
    return flow_max(x, T(0)) + flow_log1p(flow_exp(-flow_abs(x)));
}

// The sum of `x` over the `lanes` threads of a row group (`lanes` a power of two up to 32,
// the group inside one warp). Every lane of the warp must call it together.
FLOW_DEVICE T flow_group_sum(T x, int lanes) {
    for (int offset = lanes / 2; offset > 0; offset /= 2) {
        x += __shfl_xor_sync(0xffffffffu, x, offset, lanes);
    }
    return x;
}

// Compensated (Kahan) accumulation: `sum - c` is the running total (`c` is what the last
// additions' rounding added too much). Once the sum is no longer finite the compensation is
// dropped (`inf - inf` in it would turn an infinite sum into NaN), so that infinities and
// NaN come out as a plain sum's.
struct FlowKahan {
    T sum;
    T c;
};

FLOW_DEVICE void flow_kahan_add(FlowKahan& acc, T x) {
    T y = x - acc.c;
    T t = acc.sum + y;
    acc.c = t - t == T(0) ? (t - acc.sum) - y : T(0);
    acc.sum = t;
}

FLOW_DEVICE T flow_kahan_value(const FlowKahan& acc) { return acc.sum - acc.c; }
