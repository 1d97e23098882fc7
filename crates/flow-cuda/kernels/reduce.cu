// Reductions: along the rows (one value per column), along the columns (one per row), of a
// whole tensor (two passes through block partials); the one-hot mask of the first maximum;
// the row-wise logsumexp and softmax.
//
// The semantics are the CPU backend's (`cpu/reduce.rs`):
// - max starts at -inf and takes an entry only where it is greater (`x > m`): a NaN entry
//   never becomes the maximum, so NaN are skipped, and a row of -inf or NaN gives -inf;
// - argmax takes the first maximum (ties go to the lowest index, NaN entries are skipped),
//   except that a NaN first entry is taken (the CPU's scan starts from the first entry and
//   nothing compares greater than NaN);
// - logsumexp and softmax subtract the maximum as above; a non-finite maximum is
//   logsumexp's result.
//
// Sums, in both precisions, are compensated (Kahan) per thread and merged across threads
// with the merge's rounding error kept (`flow_kahan_merge`), so the error does not grow with
// the length. Every merge happens in a fixed order: the results are deterministic.
//
// Block sizes: any power of two from 32 to 1024 (every kernel here needs whole warps).
#include "common.cuh"

#define FLOW_FULL_MASK 0xFFFFFFFFu
// An argmax that has seen no candidate yet (only NaN).
#define FLOW_NO_INDEX (~0ull)

FLOW_DEVICE T flow_neg_inf() { return -T(1) / T(0); }
FLOW_DEVICE bool flow_isfinite(T x) { return x - x == T(0); }

// The running maximum `m` (never NaN) with `x`; a NaN `x` leaves `m`.
FLOW_DEVICE T flow_max_skip_nan(T m, T x) { return x > m ? x : m; }

FLOW_DEVICE FlowKahan flow_kahan_zero() {
    FlowKahan k;
    k.sum = T(0);
    k.c = T(0);
    return k;
}

FLOW_DEVICE T flow_kahan_total(FlowKahan k) { return k.sum - k.c; }

// Two compensated sums as one: the leading parts' rounding error (exact, by TwoSum) goes
// into the compensation. Symmetric: merge(a, b) and merge(b, a) are the same bits.
FLOW_DEVICE FlowKahan flow_kahan_merge(FlowKahan a, FlowKahan b) {
    FlowKahan r;
    r.sum = a.sum + b.sum;
    if (flow_isfinite(r.sum)) {
        T b_part = r.sum - a.sum;
        T error = (a.sum - (r.sum - b_part)) + (b.sum - b_part);  // a.sum + b.sum - r.sum
        r.c = (a.c + b.c) - error;
    } else {
        r.c = T(0);  // as in flow_kahan_add: infinities and NaN as a plain sum's
    }
    return r;
}

// Merges over each group of `width` lanes (a power of two up to 32, the groups aligned);
// every lane of a group gets the group's result. Every lane of the warp calls these.
FLOW_DEVICE FlowKahan flow_group_sum(FlowKahan v, unsigned int width) {
    for (unsigned int m = width / 2; m > 0; m /= 2) {
        FlowKahan other;
        other.sum = __shfl_xor_sync(FLOW_FULL_MASK, v.sum, m, width);
        other.c = __shfl_xor_sync(FLOW_FULL_MASK, v.c, m, width);
        v = flow_kahan_merge(v, other);
    }
    return v;
}

FLOW_DEVICE T flow_group_max(T v, unsigned int width) {
    for (unsigned int m = width / 2; m > 0; m /= 2) {
        v = flow_max_skip_nan(v, __shfl_xor_sync(FLOW_FULL_MASK, v, m, width));
    }
    return v;
}

// Block-wide merges for reduce_all: each warp merges by shuffles, lane 0 of each warp puts
// its warp's value in `shared` (the launch's dynamic shared memory), warp 0 merges those.
// The block's result is in thread 0.
FLOW_DEVICE FlowKahan flow_block_sum(FlowKahan v, T* shared) {
    unsigned int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    v = flow_group_sum(v, 32);
    if (lane == 0) {
        shared[warp] = v.sum;
        shared[warps + warp] = v.c;
    }
    __syncthreads();
    if (warp == 0) {
        v = flow_kahan_zero();
        if (lane < warps) {
            v.sum = shared[lane];
            v.c = shared[warps + lane];
        }
        v = flow_group_sum(v, 32);
    }
    return v;
}

FLOW_DEVICE T flow_block_max(T v, T* shared) {
    unsigned int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    v = flow_group_max(v, 32);
    if (lane == 0) {
        shared[warp] = v;
    }
    __syncthreads();
    if (warp == 0) {
        v = lane < warps ? shared[lane] : flow_neg_inf();
        v = flow_group_max(v, 32);
    }
    return v;
}

// How many lanes share a row of `cols` entries in the per-row kernels: about 8 entries a
// lane, a power of two up to 32 (1 for narrow rows: no shuffles at all).
FLOW_DEVICE unsigned int flow_row_lanes(u64 cols) {
    unsigned int lanes = 1;
    while (lanes < 32 && (u64)lanes * 8 < cols) {
        lanes *= 2;
    }
    return lanes;
}

// The per-row kernels' loop: each warp takes `32 / lanes` consecutive rows at a time, one
// per group of `lanes` lanes, grid-stride. Every lane of a warp runs the loop the same
// number of times (so the lanes may shuffle in it); on the last pass some groups' `row` may
// be past the end: `active` says whether it is a row.
#define FLOW_FOR_EACH_ROW_GROUP(base, lanes, rows)                                          \
    for (u64 base = ((u64)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32) * (32 / (lanes)); \
         base < (rows); base += (u64)gridDim.x * (blockDim.x / 32) * (32 / (lanes)))

// ---- reduce_rows: `out` (1 x cols) reduces each column over the rows ----
//
// A block takes 32 columns at a time (a tile): lane l of every warp reads column l of the
// tile (a warp reads 32 consecutive entries of a row), warp w the rows w, w + warps, ...;
// the warps' results meet in shared memory and warp 0 merges them in order.
FLOW_KERNEL void FLOW_NAME(reduce_rows)(const T* x, T* out, u64 rows, u64 cols, int op) {
    __shared__ T part_sum[1024];
    __shared__ T part_c[1024];
    unsigned int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    u64 tiles = (cols + 31) / 32;
    for (u64 tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        u64 c = tile * 32 + lane;
        bool active = c < cols;
        if (op == 0) {
            FlowKahan acc = flow_kahan_zero();
            for (u64 r = warp; active && r < rows; r += warps) {
                flow_kahan_add(acc, x[r * cols + c]);
            }
            part_sum[threadIdx.x] = acc.sum;
            part_c[threadIdx.x] = acc.c;
        } else {
            T m = flow_neg_inf();
            for (u64 r = warp; active && r < rows; r += warps) {
                m = flow_max_skip_nan(m, x[r * cols + c]);
            }
            part_sum[threadIdx.x] = m;
        }
        __syncthreads();
        if (warp == 0 && active) {
            if (op == 0) {
                FlowKahan acc = flow_kahan_zero();
                for (unsigned int w = 0; w < warps; ++w) {
                    FlowKahan part;
                    part.sum = part_sum[w * 32 + lane];
                    part.c = part_c[w * 32 + lane];
                    acc = flow_kahan_merge(acc, part);
                }
                out[c] = flow_kahan_total(acc);
            } else {
                T m = flow_neg_inf();
                for (unsigned int w = 0; w < warps; ++w) {
                    m = flow_max_skip_nan(m, part_sum[w * 32 + lane]);
                }
                out[c] = m;
            }
        }
        __syncthreads();  // warp 0 has read the parts before the next tile writes them
    }
}

// ---- reduce_cols: `out` (rows x 1) reduces each row over its columns ----
FLOW_KERNEL void FLOW_NAME(reduce_cols)(const T* x, T* out, u64 rows, u64 cols, int op) {
    unsigned int lanes = flow_row_lanes(cols);
    unsigned int sub = threadIdx.x % lanes;
    FLOW_FOR_EACH_ROW_GROUP(base, lanes, rows) {
        u64 row = base + threadIdx.x % 32 / lanes;
        bool active = row < rows;
        T result;
        if (op == 0) {
            FlowKahan acc = flow_kahan_zero();
            for (u64 j = sub; active && j < cols; j += lanes) {
                flow_kahan_add(acc, x[row * cols + j]);
            }
            result = flow_kahan_total(flow_group_sum(acc, lanes));
        } else {
            T m = flow_neg_inf();
            for (u64 j = sub; active && j < cols; j += lanes) {
                m = flow_max_skip_nan(m, x[row * cols + j]);
            }
            result = flow_group_max(m, lanes);
        }
        if (active && sub == 0) {
            out[row] = result;
        }
    }
}

// ---- reduce_all: block b writes the reduction of its grid-stride share to out[b] ----
//
// The launch runs it again on the partials with one block. Dynamic shared memory:
// `blockDim.x * sizeof(T)`, twice that for sums (it uses `blockDim.x / 32` values, twice
// that for sums).
FLOW_KERNEL void FLOW_NAME(reduce_all)(const T* x, T* out, u64 n, int op) {
    FLOW_SHARED_DYNAMIC(T, shared);
    if (op == 0) {
        FlowKahan acc = flow_kahan_zero();
        FLOW_FOR_EACH(i, n) { flow_kahan_add(acc, x[i]); }
        acc = flow_block_sum(acc, shared);
        if (threadIdx.x == 0) {
            out[blockIdx.x] = flow_kahan_total(acc);
        }
    } else {
        T m = flow_neg_inf();
        FLOW_FOR_EACH(i, n) { m = flow_max_skip_nan(m, x[i]); }
        m = flow_block_max(m, shared);
        if (threadIdx.x == 0) {
            out[blockIdx.x] = m;
        }
    }
}

// ---- argmax_mask: one-hot of the first maximum along `axis` ----

// The best entry seen: its value and index (FLOW_NO_INDEX before any non-NaN entry).
struct FlowArgmax {
    T value;
    u64 index;
};

FLOW_DEVICE FlowArgmax flow_argmax_none() {
    FlowArgmax a;
    a.value = flow_neg_inf();
    a.index = FLOW_NO_INDEX;
    return a;
}

// Entry `index` with value `v`, seen after every index `a` has seen.
FLOW_DEVICE void flow_argmax_add(FlowArgmax& a, T v, u64 index) {
    if (!flow_isnan(v) && (a.index == FLOW_NO_INDEX || v > a.value)) {
        a.value = v;
        a.index = index;
    }
}

// The greater value; on equal values the lower index. Symmetric.
FLOW_DEVICE FlowArgmax flow_argmax_merge(FlowArgmax a, FlowArgmax b) {
    if (b.index == FLOW_NO_INDEX) {
        return a;
    }
    if (a.index == FLOW_NO_INDEX) {
        return b;
    }
    if (b.value > a.value || (b.value == a.value && b.index < a.index)) {
        return b;
    }
    return a;
}

FLOW_KERNEL void FLOW_NAME(argmax_mask)(const T* x, T* out, u64 rows, u64 cols, int axis) {
    if (axis == 0) {
        // Per column, tiled as reduce_rows; then the block writes the tile's columns.
        __shared__ T part_value[1024];
        __shared__ u64 part_index[1024];
        __shared__ u64 best_row[32];
        unsigned int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
        u64 tiles = (cols + 31) / 32;
        for (u64 tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
            u64 c = tile * 32 + lane;
            bool active = c < cols;
            FlowArgmax a = flow_argmax_none();
            for (u64 r = warp; active && r < rows; r += warps) {
                flow_argmax_add(a, x[r * cols + c], r);
            }
            part_value[threadIdx.x] = a.value;
            part_index[threadIdx.x] = a.index;
            __syncthreads();
            if (warp == 0 && active) {
                a = flow_argmax_none();
                for (unsigned int w = 0; w < warps; ++w) {
                    FlowArgmax part;
                    part.value = part_value[w * 32 + lane];
                    part.index = part_index[w * 32 + lane];
                    a = flow_argmax_merge(a, part);
                }
                best_row[lane] = rows > 0 && flow_isnan(x[c]) ? 0 : a.index;
            }
            __syncthreads();
            for (u64 r = warp; active && r < rows; r += warps) {
                out[r * cols + c] = r == best_row[lane] ? T(1) : T(0);
            }
            __syncthreads();  // every warp has read best_row before the next tile writes it
        }
    } else {
        // Per row, as reduce_cols.
        unsigned int lanes = flow_row_lanes(cols);
        unsigned int sub = threadIdx.x % lanes;
        FLOW_FOR_EACH_ROW_GROUP(base, lanes, rows) {
            u64 row = base + threadIdx.x % 32 / lanes;
            bool active = row < rows;
            FlowArgmax a = flow_argmax_none();
            for (u64 j = sub; active && j < cols; j += lanes) {
                flow_argmax_add(a, x[row * cols + j], j);
            }
            for (unsigned int m = lanes / 2; m > 0; m /= 2) {
                FlowArgmax other;
                other.value = __shfl_xor_sync(FLOW_FULL_MASK, a.value, m, lanes);
                other.index = __shfl_xor_sync(FLOW_FULL_MASK, a.index, m, lanes);
                a = flow_argmax_merge(a, other);
            }
            if (active && cols > 0) {
                u64 best = flow_isnan(x[row * cols]) ? 0 : a.index;
                for (u64 j = sub; j < cols; j += lanes) {
                    out[row * cols + j] = j == best ? T(1) : T(0);
                }
            }
        }
    }
}

// ---- logsumexp_cols and softmax_cols: per row, stable (the row's maximum subtracted) ----

// The row's maximum (NaN skipped) and the compensated sum of exp(x - max), merged over the
// row's lanes; every lane of the group gets both.
FLOW_DEVICE void flow_row_max_and_sum(const T* row, u64 cols, bool active, unsigned int sub,
                                      unsigned int lanes, T& max, T& sum) {
    T m = flow_neg_inf();
    for (u64 j = sub; active && j < cols; j += lanes) {
        m = flow_max_skip_nan(m, row[j]);
    }
    m = flow_group_max(m, lanes);
    FlowKahan acc = flow_kahan_zero();
    for (u64 j = sub; active && j < cols; j += lanes) {
        flow_kahan_add(acc, flow_exp(row[j] - m));
    }
    max = m;
    sum = flow_kahan_total(flow_group_sum(acc, lanes));
}

FLOW_KERNEL void FLOW_NAME(logsumexp_cols)(const T* x, T* out, u64 rows, u64 cols) {
    unsigned int lanes = flow_row_lanes(cols);
    unsigned int sub = threadIdx.x % lanes;
    FLOW_FOR_EACH_ROW_GROUP(base, lanes, rows) {
        u64 row = base + threadIdx.x % 32 / lanes;
        bool active = row < rows;
        T m, sum;
        flow_row_max_and_sum(x + (active ? row * cols : 0), cols, active, sub, lanes, m, sum);
        if (active && sub == 0) {
            // All -inf (or NaN, or no entries) stays -inf; +inf propagates.
            out[row] = flow_isfinite(m) ? m + flow_log(sum) : m;
        }
    }
}

FLOW_KERNEL void FLOW_NAME(softmax_cols)(const T* x, T* out, u64 rows, u64 cols) {
    unsigned int lanes = flow_row_lanes(cols);
    unsigned int sub = threadIdx.x % lanes;
    FLOW_FOR_EACH_ROW_GROUP(base, lanes, rows) {
        u64 row = base + threadIdx.x % 32 / lanes;
        bool active = row < rows;
        T m, sum;
        flow_row_max_and_sum(x + (active ? row * cols : 0), cols, active, sub, lanes, m, sum);
        for (u64 j = sub; active && j < cols; j += lanes) {
            out[row * cols + j] = flow_exp(x[row * cols + j] - m) / sum;
        }
    }
}
