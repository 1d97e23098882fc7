// Stand-ins for the CUDA built-ins, so that the kernels compile as host C++ (g++ 12,
// `-std=c++20 -DFLOW_HOST -pthread`) and run on the CPU in the test-only crate
// `flow-cuda-hostcheck`. `common.cuh` includes this file when `FLOW_HOST` is defined.
//
// The execution model, kept as close to the GPU's as a check needs:
// - `flow_host::launch` runs the blocks of a grid one after the other. The threads of a
//   block are real threads (`std::jthread`), so a missing `__syncthreads()` is a real data
//   race: results go wrong now and then, and ThreadSanitizer reports it every time.
// - `__syncthreads()` is a `std::barrier` of the block's threads. A thread that returns from
//   the kernel leaves the barrier (as an exited thread does on the GPU).
// - A warp is 32 consecutive threads of the block. A shuffle writes the lane's value into a
//   per-warp exchange buffer, waits on a per-warp barrier and reads the source lane's value.
//   Shuffles alternate between two buffers: a lane can only write a buffer again two
//   shuffles later, after the barrier of the shuffle in between, which every lane reaches
//   only once done reading. Every lane of the warp must call each shuffle, as on the GPU.
// - Shared memory: `__shared__ T buf[N];` in a kernel is a function-local `static`, one
//   object that every thread running the kernel sees. That is one block's shared memory
//   because blocks run one at a time, and launches run one at a time process-wide (the Rust
//   test harness runs tests on several threads). The launch's dynamic shared memory
//   (`FLOW_SHARED_DYNAMIC`) is a fresh buffer per block, filled with 0xFF bytes (NaN as
//   floating point) so that a kernel that reads before it writes shows it.
#pragma once

#include <math.h>  // expf, logf, exp, ...: the CUDA math API's names, in the global namespace

#include <atomic>
#include <barrier>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

namespace flow_host {

// `threadIdx`, `blockIdx`, `blockDim` and `gridDim`: `dim3` on the GPU (`uint3` for the
// indices); the grids and blocks here are one-dimensional, `y` and `z` stay 0 or 1.
struct dim3 {
    unsigned int x = 0, y = 0, z = 0;
};

}  // namespace flow_host

// The built-in variables: per thread, set by the launcher.
inline thread_local flow_host::dim3 threadIdx;
inline thread_local flow_host::dim3 blockIdx;
inline thread_local flow_host::dim3 blockDim;
inline thread_local flow_host::dim3 gridDim;
inline constexpr int warpSize = 32;

namespace flow_host {

inline constexpr unsigned int kWarpSize = 32;

struct Warp {
    explicit Warp(unsigned int lanes) : lanes(lanes), barrier(lanes) {}
    unsigned int lanes;  // 32, or fewer in a block smaller than a warp
    std::barrier<> barrier;
    unsigned long long slot[2][kWarpSize];  // each lane's shuffled value, as bits
};

// One block's synchronisation objects and dynamic shared memory.
struct Block {
    Block(unsigned int threads, std::size_t dynamic_shared_bytes)
        : barrier(threads),
          shared((dynamic_shared_bytes + sizeof(std::max_align_t) - 1) /
                 sizeof(std::max_align_t)) {
        for (unsigned int first = 0; first < threads; first += kWarpSize) {
            unsigned int lanes = threads - first < kWarpSize ? threads - first : kWarpSize;
            warps.push_back(std::make_unique<Warp>(lanes));
        }
        std::memset(shared.data(), 0xFF, shared.size() * sizeof(std::max_align_t));
    }
    std::barrier<> barrier;
    std::vector<std::unique_ptr<Warp>> warps;
    std::vector<std::max_align_t> shared;  // max_align_t: aligned for any element type
};

// What a running thread knows of its block.
struct ThreadContext {
    Block* block = nullptr;
    unsigned int warp = 0;
    unsigned int lane = 0;
    unsigned int shuffles = 0;  // the shuffles this thread has made in this block
};

inline thread_local ThreadContext context;

[[noreturn]] inline void fail(const char* what) {
    std::fprintf(stderr, "flow_host: %s\n", what);
    std::abort();
}

inline Block& block() {
    if (context.block == nullptr) {
        fail("a CUDA built-in was used outside flow_host::launch");
    }
    return *context.block;
}

inline Warp& warp() { return *block().warps[context.warp]; }

inline void* dynamic_shared() { return block().shared.data(); }

// The value `v` of lane `src` of the calling thread's warp (every lane calls this together).
template <class V>
V shuffle_from(unsigned int mask, V v, unsigned int src) {
    static_assert(std::is_arithmetic_v<V> && sizeof(V) <= sizeof(unsigned long long),
                  "shuffles move float, double and integers of up to 64 bits");
    Warp& w = warp();
    unsigned int all = w.lanes == 32 ? 0xFFFFFFFFu : (1u << w.lanes) - 1;
    if ((mask & all) != all) {
        fail("a shuffle's mask leaves out lanes of the warp: here every lane must take part");
    }
    if (src >= w.lanes) {
        src = context.lane;  // a lane the warp does not have: undefined on the GPU
    }
    unsigned long long* slot = w.slot[context.shuffles++ % 2];
    std::memcpy(&slot[context.lane], &v, sizeof v);
    w.barrier.arrive_and_wait();  // every lane has written its value
    V out;
    std::memcpy(&out, &slot[src], sizeof out);
    return out;
}

// Serialises launches: `__shared__` arrays are statics of the kernel, not of the launch.
inline std::mutex launch_mutex;

// Runs `kernel(args...)` on `grid` blocks of `block` threads, one block after the other,
// with `dynamic_shared_bytes` of `FLOW_SHARED_DYNAMIC` memory per block. The block's
// threads are created once per launch and run every block in turn.
template <class Kernel, class... Args>
void launch(unsigned int grid, unsigned int block, std::size_t dynamic_shared_bytes,
            Kernel kernel, Args... args) {
    if (grid == 0 || block == 0 || block > 1024) {
        fail("a launch needs 1 to 1024 threads per block and at least one block");
    }
    std::lock_guard<std::mutex> lock(launch_mutex);
    std::unique_ptr<Block> current = std::make_unique<Block>(block, dynamic_shared_bytes);
    unsigned int current_index = 0;
    // When every thread is done with a block, the barrier's completion step (which runs
    // before any thread is released) sets up the next block.
    auto next_block = [&]() noexcept {
        ++current_index;
        current = current_index < grid ? std::make_unique<Block>(block, dynamic_shared_bytes)
                                       : nullptr;
    };
    std::barrier<decltype(next_block)> between_blocks(block, next_block);
    {
        std::vector<std::jthread> threads;
        threads.reserve(block);
        for (unsigned int t = 0; t < block; ++t) {
            threads.emplace_back([&, t] {
                for (unsigned int b = 0; b < grid; ++b) {
                    Block* blk = current.get();
                    context = ThreadContext{blk, t / kWarpSize, t % kWarpSize, 0};
                    ::threadIdx = dim3{t, 0, 0};
                    ::blockIdx = dim3{b, 0, 0};
                    ::blockDim = dim3{block, 1, 1};
                    ::gridDim = dim3{grid, 1, 1};
                    kernel(args...);
                    // Done with this block: leave its barriers, so that threads still in the
                    // kernel are not held up by one that returned.
                    blk->barrier.arrive_and_drop();
                    blk->warps[t / kWarpSize]->barrier.arrive_and_drop();
                    context = ThreadContext{};
                    between_blocks.arrive_and_wait();
                }
            });
        }
    }  // the jthreads join here
}

}  // namespace flow_host

// The launch's dynamic shared memory, as an array of `type` (`extern __shared__` on the GPU).
#define FLOW_SHARED_DYNAMIC(type, name) type* name = static_cast<type*>(flow_host::dynamic_shared())

inline void __syncthreads() { flow_host::block().barrier.arrive_and_wait(); }

inline void __syncwarp(unsigned int mask = 0xFFFFFFFFu) {
    (void)mask;
    flow_host::warp().barrier.arrive_and_wait();
}

// As CUDA: the source lane is `lane ^ lane_mask`; a lane may read from its own group of
// `width` lanes or an earlier one, and gets its own value back for a later group.
template <class V>
V __shfl_xor_sync(unsigned int mask, V v, int lane_mask, int width = warpSize) {
    unsigned int lane = flow_host::context.lane;
    unsigned int src = lane ^ static_cast<unsigned int>(lane_mask);
    unsigned int group_end = (lane / width + 1) * width;
    return flow_host::shuffle_from(mask, v, src < group_end ? src : lane);
}

// As CUDA: the source lane is `lane + delta` within the lane's group of `width` lanes; the
// last `delta` lanes of a group get their own value back.
template <class V>
V __shfl_down_sync(unsigned int mask, V v, unsigned int delta, int width = warpSize) {
    unsigned int lane = flow_host::context.lane;
    bool inside = lane % width + delta < static_cast<unsigned int>(width);
    return flow_host::shuffle_from(mask, v, inside ? lane + delta : lane);
}

// Returns the old value, as CUDA's.
template <class V>
V atomicAdd(V* address, V value) {
    static_assert(std::is_same_v<V, float> || std::is_same_v<V, double> ||
                      std::is_same_v<V, unsigned int> || std::is_same_v<V, int> ||
                      std::is_same_v<V, unsigned long long>,
                  "atomicAdd on float, double, int, unsigned int, unsigned long long");
    return std::atomic_ref<V>(*address).fetch_add(value);
}

// CUDA math functions that the C library lacks.
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
