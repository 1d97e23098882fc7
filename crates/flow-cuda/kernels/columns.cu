// Column slicing and concatenation, gathers and scatters of whole columns, one entry per
// row taken or put, and the sorted search along rows: the CPU backend's `cpu/columns.rs`
// and the per-row defaults of `Backend`. Every kernel writes every entry of its output.
#include "common.cuh"

FLOW_KERNEL void FLOW_NAME(slice_cols)(const T* x, T* out, u64 rows, u64 x_cols, u64 start,
                                       u64 len) {
    FLOW_FOR_EACH(i, rows * len) {
        u64 r = i / len;
        u64 c = i - r * len;
        out[i] = x[r * x_cols + start + c];
    }
}

// One part of a concatenation: `part` (rows x part_cols) into columns `offset ..` of `out`.
FLOW_KERNEL void FLOW_NAME(copy_cols)(const T* part, T* out, u64 rows, u64 part_cols,
                                      u64 out_cols, u64 offset) {
    FLOW_FOR_EACH(i, rows * part_cols) {
        u64 r = i / part_cols;
        u64 c = i - r * part_cols;
        out[r * out_cols + offset + c] = part[i];
    }
}

// Output column j is column index[j] of `x`.
FLOW_KERNEL void FLOW_NAME(gather_cols)(const T* x, const unsigned int* index, T* out, u64 rows,
                                        u64 x_cols, u64 out_cols) {
    FLOW_FOR_EACH(i, rows * out_cols) {
        u64 r = i / out_cols;
        u64 c = i - r * out_cols;
        out[i] = x[r * x_cols + index[c]];
    }
}

// Column j of `x` added into column index[j] of a zero `rows x width` output. One thread
// per row adds the row's entries in column order, as the CPU backend does: no atomics, the
// same sums (bit for bit) for repeated indices, every entry written.
FLOW_KERNEL void FLOW_NAME(scatter_add_cols)(const T* x, const unsigned int* index, T* out,
                                             u64 rows, u64 x_cols, u64 width) {
    FLOW_FOR_EACH(r, rows) {
        T* out_row = out + r * width;
        for (u64 j = 0; j < width; ++j) {
            out_row[j] = T(0);
        }
        for (u64 c = 0; c < x_cols; ++c) {
            out_row[index[c]] += x[r * x_cols + c];
        }
    }
}

// `out` (rows x 1): entry index[r] of row r.
FLOW_KERNEL void FLOW_NAME(take_per_row)(const T* x, const unsigned int* index, T* out,
                                         u64 rows, u64 cols) {
    FLOW_FOR_EACH(r, rows) { out[r] = x[r * cols + index[r]]; }
}

// `out` (rows x width): x[r] at column index[r] of row r, zero elsewhere.
FLOW_KERNEL void FLOW_NAME(put_per_row)(const T* x, const unsigned int* index, T* out, u64 rows,
                                        u64 width) {
    FLOW_FOR_EACH(i, rows * width) {
        u64 r = i / width;
        u64 c = i - r * width;
        out[i] = c == index[r] ? x[r] : T(0);
    }
}

// How many entries of row r of `sorted` (ascending) are <= x[r]: a binary search for the
// first entry greater than x[r]. `k <= NaN` is false for every k, so a NaN counts none.
FLOW_KERNEL void FLOW_NAME(search_sorted_rows)(const T* sorted, const T* x, unsigned int* out,
                                               u64 rows, u64 cols) {
    FLOW_FOR_EACH(r, rows) {
        const T* row = sorted + r * cols;
        T v = x[r];
        u64 lo = 0, hi = cols;
        while (lo < hi) {
            u64 mid = lo + (hi - lo) / 2;
            if (row[mid] <= v) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        out[r] = (unsigned int)lo;
    }
}
