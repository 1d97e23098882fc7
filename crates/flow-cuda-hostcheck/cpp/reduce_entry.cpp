// Host entry points of the kernels in `flow-cuda/kernels/reduce.cu`.
#include "entry.h"

FLOW_HOST_ENTRY(reduce_rows, (const T* x, T* out, u64 rows, u64 cols, int op),
                (x, out, rows, cols, op))
FLOW_HOST_ENTRY(reduce_cols, (const T* x, T* out, u64 rows, u64 cols, int op),
                (x, out, rows, cols, op))
FLOW_HOST_ENTRY(reduce_all, (const T* x, T* out, u64 n, int op), (x, out, n, op))
FLOW_HOST_ENTRY(argmax_mask, (const T* x, T* out, u64 rows, u64 cols, int axis),
                (x, out, rows, cols, axis))
FLOW_HOST_ENTRY(logsumexp_cols, (const T* x, T* out, u64 rows, u64 cols), (x, out, rows, cols))
FLOW_HOST_ENTRY(softmax_cols, (const T* x, T* out, u64 rows, u64 cols), (x, out, rows, cols))
