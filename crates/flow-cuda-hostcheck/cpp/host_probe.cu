// Test-only kernels that probe the host stand-ins themselves (`kernels/host/cuda_host.h`):
// the built-in variables, shuffles, barriers, shared memory and atomics, each against what
// CUDA documents. Written in the kernels' dialect, compiled as they are.
#include "common.cuh"

// Per thread: threadIdx.x, blockIdx.x, blockDim.x, gridDim.x at out[4 * global index ..].
FLOW_KERNEL void FLOW_NAME(probe_ids)(unsigned int* out) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    out[4 * i] = threadIdx.x;
    out[4 * i + 1] = blockIdx.x;
    out[4 * i + 2] = blockDim.x;
    out[4 * i + 3] = gridDim.x;
}

// Per thread, 12 values at out[12 * global index ..]: the thread's value 1000 b + t (b the
// block, t the thread) shuffled by xor with masks 1, 2, 4, 8, 16, then down by 1, 2, 4, 8,
// 16, all with `width`; then an int xor with mask 1 and an unsigned down by 1 (width 32).
FLOW_KERNEL void FLOW_NAME(probe_shuffles)(T* out, int width) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    T v = T(1000 * blockIdx.x + threadIdx.x);
    for (int k = 0; k < 5; ++k) {
        out[12 * i + k] = __shfl_xor_sync(0xFFFFFFFFu, v, 1 << k, width);
    }
    for (int k = 0; k < 5; ++k) {
        out[12 * i + 5 + k] = __shfl_down_sync(0xFFFFFFFFu, v, 1u << k, width);
    }
    out[12 * i + 10] = T(__shfl_xor_sync(0xFFFFFFFFu, (int)threadIdx.x, 1));
    out[12 * i + 11] = T(__shfl_down_sync(0xFFFFFFFFu, threadIdx.x, 1u));
}

// Per thread, 3 values at out[3 * global index ..]: whether the dynamic shared memory was
// NaN before the block wrote it (1 or 0); the value the next thread (cyclically) wrote to
// dynamic shared memory after a barrier; the value the thread `blockDim.x - 1 - t` wrote to
// a static `__shared__` array after a barrier. The odd threads of the second half of the
// block return early, before a third barrier that the others still pass.
FLOW_KERNEL void FLOW_NAME(probe_shared)(T* out) {
    FLOW_SHARED_DYNAMIC(T, dynamic);
    __shared__ T fixed[1024];
    unsigned int t = threadIdx.x, n = blockDim.x;
    u64 i = (u64)blockIdx.x * n + t;
    T before = dynamic[t];
    out[3 * i] = before != before ? T(1) : T(0);
    __syncthreads();  // every thread has read the fresh memory before any writes it
    dynamic[t] = T(1000 * blockIdx.x + t);
    fixed[t] = T(1000 * blockIdx.x + t);
    __syncthreads();
    out[3 * i + 1] = dynamic[(t + 1) % n];
    out[3 * i + 2] = fixed[n - 1 - t];
    if (t >= n / 2 && t % 2 == 1) {
        return;
    }
    __syncthreads();
    __syncwarp();
}

// Every thread adds 1 to `*sum` and 1 to `*count`.
FLOW_KERNEL void FLOW_NAME(probe_atomic)(T* sum, unsigned int* count) {
    atomicAdd(sum, T(1));
    atomicAdd(count, 1u);
}
