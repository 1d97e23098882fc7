// Test-only: the words of `random.cu`'s Philox4x32-10 (`flow_philox`), so that the host
// checks can compare them with the Random123 known-answer vectors and derive each draw of
// `randn` and `rand_uniform` from them.
//
// `random.cu` is included whole, for its `static` device functions; its two kernels are
// renamed here (their `extern "C"` names would clash with those of `random.cu`'s own object
// in the same library) and left unused.
#define randn philox_probe_unused_randn
#define rand_uniform philox_probe_unused_rand_uniform
#include "random.cu"
#undef randn
#undef rand_uniform

// Entry i: the four words of flow_philox(counters[i], streams[i], seeds[i]) at out[4 i ..].
FLOW_KERNEL void FLOW_NAME(philox_words)(const u64* counters, const u64* streams,
                                         const u64* seeds, unsigned int* out, u64 n) {
    FLOW_FOR_EACH(i, n) {
        const FlowWords w = flow_philox(counters[i], streams[i], seeds[i]);
        out[4 * i] = w.x0;
        out[4 * i + 1] = w.x1;
        out[4 * i + 2] = w.x2;
        out[4 * i + 3] = w.x3;
    }
}
