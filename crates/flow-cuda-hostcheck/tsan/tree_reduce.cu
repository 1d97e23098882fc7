// Test-only: a block-wide tree reduction in shared memory, twice: `tree_sum` with its
// barriers, and `broken_tree_sum`, the same with the barrier between the tree's steps
// deleted, so that a step reads what other threads wrote in the step before without
// waiting for them. ThreadSanitizer must report the second (`tests/tsan.rs`).
#include "common.cuh"

// Block b's sum of its grid-stride share of `x`, into out[b]. Dynamic shared memory:
// `blockDim.x` values.
#define FLOW_TREE_SUM(name, STEP_BARRIER)                                                   \
    FLOW_KERNEL void FLOW_NAME(name)(const T* x, T* out, u64 n) {                           \
        FLOW_SHARED_DYNAMIC(T, partial);                                                    \
        T acc = T(0);                                                                       \
        FLOW_FOR_EACH(i, n) { acc += x[i]; }                                                \
        partial[threadIdx.x] = acc;                                                         \
        __syncthreads();                                                                    \
        for (unsigned int s = blockDim.x / 2; s > 0; s /= 2) {                              \
            if (threadIdx.x < s) {                                                          \
                partial[threadIdx.x] += partial[threadIdx.x + s];                           \
            }                                                                               \
            STEP_BARRIER;                                                                   \
        }                                                                                   \
        if (threadIdx.x == 0) {                                                             \
            out[blockIdx.x] = partial[0];                                                   \
        }                                                                                   \
    }

FLOW_TREE_SUM(tree_sum, __syncthreads())
FLOW_TREE_SUM(broken_tree_sum, (void)0 /* the barrier, deleted */)
