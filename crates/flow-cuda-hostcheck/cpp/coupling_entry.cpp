// Host entry points of the kernels in `flow-cuda/kernels/coupling.cu`.
#include "entry.h"

FLOW_HOST_ENTRY(affine_coupling,
                (const T* v, const T* params, T* out, T* log_det, u64 rows, u64 d, u64 d2,
                 int scale, int direction, int lanes),
                (v, params, out, log_det, rows, d, d2, scale, direction, lanes))
FLOW_HOST_ENTRY(affine_coupling_backward,
                (const T* params, const T* out, const T* g, T* g_v, T* g_params, u64 rows,
                 u64 d, u64 d2, int scale, int direction),
                (params, out, g, g_v, g_params, rows, d, d2, scale, direction))
