// Counter-based random numbers on the device: Philox4x32-10 (Salmon et al. 2011), keyed by
// a seed and a stream, counted by position, so that a draw depends on (seed, stream,
// position) only, not on the launch's grid. Each counter gives four 32-bit words: four f32
// draws or two f64 draws (KERNELS.md).
#include "common.cuh"

struct FlowWords {
    u32 x[4];
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
    w.x[0] = c0;
    w.x[1] = c1;
    w.x[2] = c2;
    w.x[3] = c3;
    return w;
}

// Draws per counter.
#define FLOW_PER_COUNTER (sizeof(T) == 4 ? 4 : 2)

// Uniform in (0, 1) from word `k` of a counter (f32: 24 bits; f64: 53 bits from two words),
// never 0, so that its logarithm is finite.
FLOW_DEVICE T flow_open_uniform(const FlowWords& w, int k) {
    if (sizeof(T) == 4) {
        return (T)(((double)(w.x[k] >> 8) + 0.5) * (1.0 / 16777216.0));
    }
    const u64 bits = ((u64)w.x[2 * k] << 21) ^ (u64)(w.x[2 * k + 1] >> 11);
    return (T)(((double)bits + 0.5) * (1.0 / 9007199254740992.0));
}

// Uniform in [0, 1).
FLOW_DEVICE T flow_closed_open_uniform(const FlowWords& w, int k) {
    if (sizeof(T) == 4) {
        return (T)((double)(w.x[k] >> 8) * (1.0 / 16777216.0));
    }
    const u64 bits = ((u64)w.x[2 * k] << 21) ^ (u64)(w.x[2 * k + 1] >> 11);
    return (T)((double)bits * (1.0 / 9007199254740992.0));
}

FLOW_KERNEL void FLOW_NAME(randn)(T* out, u64 n, u64 seed, u64 stream, u64 offset) {
    const u64 per = FLOW_PER_COUNTER;
    const u64 counters = (n + per - 1) / per;
    FLOW_FOR_EACH(c, counters) {
        const FlowWords w = flow_philox(offset + c, stream, seed);
        // Box-Muller on pairs of uniforms.
        for (u64 pair = 0; pair < per / 2; ++pair) {
            const T u1 = flow_open_uniform(w, (int)(2 * pair));
            const T u2 = flow_open_uniform(w, (int)(2 * pair + 1));
            const T r = flow_sqrt(T(-2) * flow_log(u1));
            const T theta = T(6.283185307179586476925286766559) * u2;
            const u64 i = c * per + 2 * pair;
            if (i < n) {
                out[i] = r * flow_cos(theta);
            }
            if (i + 1 < n) {
                out[i + 1] = r * flow_sin(theta);
            }
        }
    }
}

FLOW_KERNEL void FLOW_NAME(rand_uniform)(T* out, u64 n, u64 seed, u64 stream, u64 offset, T low,
                                         T high) {
    const u64 per = FLOW_PER_COUNTER;
    const u64 counters = (n + per - 1) / per;
    FLOW_FOR_EACH(c, counters) {
        const FlowWords w = flow_philox(offset + c, stream, seed);
        for (u64 k = 0; k < per; ++k) {
            const u64 i = c * per + k;
            if (i < n) {
                T x = low + (high - low) * flow_closed_open_uniform(w, (int)k);
                // Rounding can reach `high`; the interval is half-open.
                out[i] = x < high ? x : low;
            }
        }
    }
}
