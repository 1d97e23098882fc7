// The log-density of a diagonal Gaussian at each row, with the row's reduction in the same
// launch, and the per-entry terms of its backward (the launch code sums them over rows).
#include "common.cuh"

// -d/2 ln(2 pi), in double then rounded, as the CPU backend.
FLOW_DEVICE T flow_gauss_constant(u64 d) {
    return (T)(-0.5 * (double)d * 1.8378770664093454835606594728112);
}

FLOW_KERNEL void FLOW_NAME(diag_normal_log_prob)(const T* z, const T* loc, const T* log_scale,
                                                 T* out, u64 rows, u64 d, int lanes) {
    const u64 groups = blockDim.x / lanes;
    const u64 lane = threadIdx.x % lanes;
    const u64 group = threadIdx.x / lanes;
    const T constant = flow_gauss_constant(d);
    for (u64 base = (u64)blockIdx.x * groups; base < rows; base += groups * gridDim.x) {
        const u64 row = base + group;
        FlowKahan quad = {T(0), T(0)};
        FlowKahan norm = {T(0), T(0)};
        if (row < rows) {
            const T* zr = z + row * d;
            for (u64 j = lane; j < d; j += lanes) {
                const T u = (zr[j] - loc[j]) * flow_exp(-log_scale[j]);
                flow_kahan_add(quad, u * u);
                flow_kahan_add(norm, log_scale[j]);
            }
        }
        const T q = flow_group_sum(flow_kahan_value(quad), lanes);
        const T n = flow_group_sum(flow_kahan_value(norm), lanes);
        if (row < rows && lane == 0) {
            out[row] = -(T(0.5) * q + n) + constant;
        }
    }
}

FLOW_KERNEL void FLOW_NAME(diag_normal_backward)(const T* z, const T* loc, const T* log_scale,
                                                 const T* g, T* w, T* t, u64 rows, u64 d) {
    FLOW_FOR_EACH(i, rows * d) {
        const u64 row = i / d;
        const u64 j = i - row * d;
        const T k = flow_exp(-log_scale[j]);
        const T u = (z[i] - loc[j]) * k;
        const T gi = g[row];
        w[i] = gi * u * k;
        t[i] = gi * (u * u - T(1));
    }
}
