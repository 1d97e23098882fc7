// Host entry points of the kernels in `flow-cuda/kernels/random.cu`, and of the Philox probe
// in `philox_probe.cu`.
#include "entry.h"

FLOW_HOST_ENTRY(randn, (T * out, u64 n, u64 seed, u64 stream, u64 offset),
                (out, n, seed, stream, offset))
FLOW_HOST_ENTRY(rand_uniform, (T * out, u64 n, u64 seed, u64 stream, u64 offset, T low, T high),
                (out, n, seed, stream, offset, low, high))
FLOW_HOST_ENTRY(philox_words,
                (const u64* counters, const u64* streams, const u64* seeds, unsigned int* out,
                 u64 n),
                (counters, streams, seeds, out, n))
