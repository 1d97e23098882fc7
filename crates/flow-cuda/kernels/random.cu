// Counter-based random numbers on the device: Philox4x32-10 (Salmon et al. 2011), keyed by
// a seed and a stream, counted by position, so that a draw depends on (seed, stream,
// position) only, not on the launch's grid. Each counter gives four 32-bit words: four f32
// draws or two f64 draws (KERNELS.md).
#include "common.cuh"

struct FlowWords {
    u32 x0, x1, x2, x3;
};

FLOW_DEVICE void flow_mulhilo(u32 a, u32 b, u32* hi, u32* lo) {
    const u64 product = (u64)a * (u64)b;
    *hi = (u32)(product >> 32);
    *lo = (u32)product;
}

FLOW_DEVICE FlowWords flow_philox(u64 counter, u64 stream, u64 seed) {
    u32 c0 = (u32)counter, c1 = (u32)(counter >> 32);
    u32 c2 = (u32)stream, c3 = (u32)(stream >> 32);
    u32 k0 = (u32)seed, k1 = (u32)(seed >> 32);
    for (int round = 0; round < 10; ++round) {
        u32 hi0, lo0, hi1, lo1;
        flow_mulhilo(0xD2511F53u, c0, &hi0, &lo0);
        flow_mulhilo(0xCD9E8D57u, c2, &hi1, &lo1);
        const u32 n0 = hi1 ^ c1 ^ k0;
        const u32 n1 = lo1;
        const u32 n2 = hi0 ^ c3 ^ k1;
        const u32 n3 = lo0;
        c0 = n0;
        c1 = n1;
        c2 = n2;
        c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    FlowWords w;
    w.x0 = c0;
    w.x1 = c1;
    w.x2 = c2;
    w.x3 = c3;
    return w;
}

// Draws per counter.
#define FLOW_PER_COUNTER (sizeof(T) == 4 ? 4 : 2)

// A uniform in [0, 1) from one word (f32: its top 24 bits) or two words (f64: 53 bits), or
// with `open` one in (0, 1): one bit fewer, half a step up, so that it is neither 0 (its
// logarithm is finite) nor rounded up to 1 in T (the largest, 1 - 2^-24 in f32 and 1 - 2^-53
// in f64, is exact). Named words, not an indexed array, so that nothing goes to local memory.
FLOW_DEVICE T flow_uniform32(u32 w, bool open) {
    if (open) {
        return (T)(((double)(w >> 9) + 0.5) * (1.0 / 8388608.0));
    }
    return (T)((double)(w >> 8) * (1.0 / 16777216.0));
}

FLOW_DEVICE T flow_uniform64(u32 hi, u32 lo, bool open) {
    if (open) {
        const u64 bits = ((u64)hi << 20) ^ (u64)(lo >> 12);
        return (T)(((double)bits + 0.5) * (1.0 / 4503599627370496.0));
    }
    const u64 bits = ((u64)hi << 21) ^ (u64)(lo >> 11);
    return (T)((double)bits * (1.0 / 9007199254740992.0));
}

// Box-Muller: two standard normals from two uniforms in (0, 1), written where in range.
FLOW_DEVICE void flow_box_muller(T u1, T u2, T* out, u64 i, u64 n) {
    const T r = flow_sqrt(T(-2) * flow_log(u1));
    // The angle 2 pi u2, as a multiple of pi.
    const T turns = T(2) * u2;
    if (i < n) {
        out[i] = r * flow_cospi(turns);
    }
    if (i + 1 < n) {
        out[i + 1] = r * flow_sinpi(turns);
    }
}

FLOW_KERNEL void FLOW_NAME(randn)(T* out, u64 n, u64 seed, u64 stream, u64 offset) {
    const u64 per = FLOW_PER_COUNTER;
    const u64 counters = (n + per - 1) / per;
    FLOW_FOR_EACH(c, counters) {
        const FlowWords w = flow_philox(offset + c, stream, seed);
        const u64 i = c * per;
        if (sizeof(T) == 4) {
            flow_box_muller(flow_uniform32(w.x0, true), flow_uniform32(w.x1, true), out, i, n);
            flow_box_muller(flow_uniform32(w.x2, true), flow_uniform32(w.x3, true), out, i + 2,
                            n);
        } else {
            flow_box_muller(flow_uniform64(w.x0, w.x1, true), flow_uniform64(w.x2, w.x3, true),
                            out, i, n);
        }
    }
}

// `low + (high - low) u`, kept below `high` (rounding can reach it; the interval is
// half-open).
FLOW_DEVICE void flow_scaled(T u, T low, T high, T* out, u64 i, u64 n) {
    if (i < n) {
        const T x = low + (high - low) * u;
        out[i] = x < high ? x : low;
    }
}

FLOW_KERNEL void FLOW_NAME(rand_uniform)(T* out, u64 n, u64 seed, u64 stream, u64 offset, T low,
                                         T high) {
    const u64 per = FLOW_PER_COUNTER;
    const u64 counters = (n + per - 1) / per;
    FLOW_FOR_EACH(c, counters) {
        const FlowWords w = flow_philox(offset + c, stream, seed);
        const u64 i = c * per;
        if (sizeof(T) == 4) {
            flow_scaled(flow_uniform32(w.x0, false), low, high, out, i, n);
            flow_scaled(flow_uniform32(w.x1, false), low, high, out, i + 1, n);
            flow_scaled(flow_uniform32(w.x2, false), low, high, out, i + 2, n);
            flow_scaled(flow_uniform32(w.x3, false), low, high, out, i + 3, n);
        } else {
            flow_scaled(flow_uniform64(w.x0, w.x1, false), low, high, out, i, n);
            flow_scaled(flow_uniform64(w.x2, w.x3, false), low, high, out, i + 1, n);
        }
    }
}
