// Host entry points of the kernels in `flow-cuda/kernels/diag_normal.cu`.
#include "entry.h"

FLOW_HOST_ENTRY(diag_normal_log_prob,
                (const T* z, const T* loc, const T* log_scale, T* out, u64 rows, u64 d,
                 int lanes),
                (z, loc, log_scale, out, rows, d, lanes))
FLOW_HOST_ENTRY(diag_normal_backward,
                (const T* z, const T* loc, const T* log_scale, const T* g, T* w, T* t,
                 u64 rows, u64 d),
                (z, loc, log_scale, g, w, t, rows, d))
