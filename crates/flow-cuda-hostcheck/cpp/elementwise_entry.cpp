// Host entry points of the kernels in `flow-cuda/kernels/elementwise.cu`.
#include "entry.h"

FLOW_HOST_ENTRY(fill, (T * out, u64 n, T value), (out, n, value))
FLOW_HOST_ENTRY(unary, (const T* x, T* out, u64 n, int op, T p, int k), (x, out, n, op, p, k))
FLOW_HOST_ENTRY(binary,
                (const T* a, const T* b, T* out, u64 rows, u64 cols, u64 a_rows, u64 a_cols,
                 u64 b_rows, u64 b_cols, int op),
                (a, b, out, rows, cols, a_rows, a_cols, b_rows, b_cols, op))
FLOW_HOST_ENTRY(select, (const T* mask, const T* a, const T* b, T* out, u64 n),
                (mask, a, b, out, n))
FLOW_HOST_ENTRY(broadcast_to, (const T* x, T* out, u64 rows, u64 cols, u64 x_rows, u64 x_cols),
                (x, out, rows, cols, x_rows, x_cols))
FLOW_HOST_ENTRY(linear_epilogue, (T * y, const T* bias, u64 rows, u64 cols, int act, T slope),
                (y, bias, rows, cols, act, slope))
FLOW_HOST_ENTRY(activation_backward, (T * g, const T* out, u64 n, int act, T slope),
                (g, out, n, act, slope))
FLOW_HOST_ENTRY(adam,
                (T * param, const T* grad, T* m, T* v, u64 n, T lr, T beta1, T beta2, T eps,
                 T weight_decay, T bias_correction1, T bias_correction2),
                (param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, bias_correction1,
                 bias_correction2))
