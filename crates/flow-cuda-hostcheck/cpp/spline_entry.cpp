// Host entry points of the kernels in `flow-cuda/kernels/spline.cu`.
#include "entry.h"

FLOW_HOST_ENTRY(rational_quadratic,
                (const T* x, const T* params, T* out, T* cache, u64 rows, u64 d, int bins,
                 T tail_bound, T min_bin_width, T min_bin_height, T min_derivative,
                 int direction),
                (x, params, out, cache, rows, d, bins, tail_bound, min_bin_width,
                 min_bin_height, min_derivative, direction))
FLOW_HOST_ENTRY(rational_quadratic_backward,
                (const T* params, const T* cache, const T* g, T* g_x, T* g_params, u64 rows,
                 u64 d, int bins, T tail_bound, T min_bin_width, T min_bin_height,
                 int direction),
                (params, cache, g, g_x, g_params, rows, d, bins, tail_bound, min_bin_width,
                 min_bin_height, direction))
