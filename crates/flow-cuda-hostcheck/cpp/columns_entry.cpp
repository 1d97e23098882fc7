// Host entry points of the kernels in `flow-cuda/kernels/columns.cu`.
#include "entry.h"

FLOW_HOST_ENTRY(slice_cols, (const T* x, T* out, u64 rows, u64 x_cols, u64 start, u64 len),
                (x, out, rows, x_cols, start, len))
FLOW_HOST_ENTRY(copy_cols,
                (const T* part, T* out, u64 rows, u64 part_cols, u64 out_cols, u64 offset),
                (part, out, rows, part_cols, out_cols, offset))
FLOW_HOST_ENTRY(gather_cols,
                (const T* x, const unsigned int* index, T* out, u64 rows, u64 x_cols,
                 u64 out_cols),
                (x, index, out, rows, x_cols, out_cols))
FLOW_HOST_ENTRY(scatter_add_cols,
                (const T* x, const unsigned int* index, T* out, u64 rows, u64 x_cols,
                 u64 width),
                (x, index, out, rows, x_cols, width))
FLOW_HOST_ENTRY(take_per_row, (const T* x, const unsigned int* index, T* out, u64 rows, u64 cols),
                (x, index, out, rows, cols))
FLOW_HOST_ENTRY(put_per_row,
                (const T* x, const unsigned int* index, T* out, u64 rows, u64 width),
                (x, index, out, rows, width))
FLOW_HOST_ENTRY(search_sorted_rows,
                (const T* sorted, const T* x, unsigned int* out, u64 rows, u64 cols),
                (sorted, x, out, rows, cols))
