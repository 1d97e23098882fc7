// The affine coupling of RealNVP and Glow on whole rows, with each row's log-determinant,
// in one launch; and its backward. `lanes` threads share a row (1 for narrow rows, up to a
// warp for wide ones) and add their log-scales with warp shuffles.
#include "common.cuh"

// The log-scale `s` of a raw scale `r`, and `ds/dr` (KERNELS.md: scale 0 exp, 1 sigmoid).
FLOW_DEVICE T flow_log_scale(T r, int scale, T* ds) {
    if (scale == 0) {
        *ds = T(1);
        return r;
    }
    T a = -(r + T(2));
    *ds = -flow_sigmoid(a);
    return flow_softplus(a);
}

FLOW_KERNEL void FLOW_NAME(affine_coupling)(const T* v, const T* params, T* out, T* log_det,
                                            u64 rows, u64 d, u64 d2, int scale, int direction,
                                            int lanes) {
    const u64 d1 = d - d2;
    const u64 groups = blockDim.x / lanes;
    const u64 lane = threadIdx.x % lanes;
    const u64 group = threadIdx.x / lanes;
    // The loop bound is the same for every thread of the block, so whole warps stay
    // together for the shuffles, also past the last row.
    for (u64 base = (u64)blockIdx.x * groups; base < rows; base += groups * gridDim.x) {
        const u64 row = base + group;
        FlowKahan acc = {T(0), T(0)};
        if (row < rows) {
            const T* vr = v + row * d;
            const T* pr = params + row * 2 * d2;
            T* yr = out + row * d;
            for (u64 j = lane; j < d1; j += lanes) {
                yr[j] = vr[j];
            }
            for (u64 j = lane; j < d2; j += lanes) {
                T ds;
                const T shift = pr[2 * j];
                const T s = flow_log_scale(pr[2 * j + 1], scale, &ds);
                const T x = vr[d1 + j];
                yr[d1 + j] = direction == 0 ? x * flow_exp(s) + shift : (x - shift) * flow_exp(-s);
                flow_kahan_add(acc, s);
            }
        }
        const T sum = flow_group_sum(flow_kahan_value(acc), lanes);
        if (row < rows && lane == 0) {
            log_det[row] = direction == 0 ? sum : -sum;
        }
    }
}

// With e = exp(±s): dv1 = g1, dv2 = g2 e; forward dshift = g2, ds = g2 (y2 - shift);
// inverse dshift = -g2 e, ds = -g2 y2; and draw = ds * ds/draw. One thread per entry of
// the rows; the output `out` stands in for the input.
FLOW_KERNEL void FLOW_NAME(affine_coupling_backward)(const T* params, const T* out, const T* g,
                                                     T* g_v, T* g_params, u64 rows, u64 d,
                                                     u64 d2, int scale, int direction) {
    const u64 d1 = d - d2;
    FLOW_FOR_EACH(i, rows * d) {
        const u64 row = i / d;
        const u64 col = i - row * d;
        if (col < d1) {
            g_v[i] = g[i];
            continue;
        }
        const u64 j = col - d1;
        const T* pr = params + row * 2 * d2;
        T ds;
        const T shift = pr[2 * j];
        const T s = flow_log_scale(pr[2 * j + 1], scale, &ds);
        const T g2 = g[i];
        const T y2 = out[i];
        T gv, gshift, gs;
        if (direction == 0) {
            gv = g2 * flow_exp(s);
            gshift = g2;
            gs = g2 * (y2 - shift);
        } else {
            gv = g2 * flow_exp(-s);
            gshift = -gv;
            gs = -(g2 * y2);
        }
        g_v[i] = gv;
        T* gp = g_params + row * 2 * d2;
        gp[2 * j] = gshift;
        gp[2 * j + 1] = gs * ds;
    }
}
