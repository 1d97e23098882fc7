// Elementwise maps: fill, unary and broadcasting binary maps, select, broadcasts, a linear
// layer's bias-and-activation epilogue and its backward, and Adam's update.
#include "common.cuh"

FLOW_KERNEL void FLOW_NAME(fill)(T* out, u64 n, T value) {
    FLOW_FOR_EACH(i, n) { out[i] = value; }
}

FLOW_DEVICE T flow_powi(T x, int k) {
    // As Rust's powi: repeated squaring, 1/x^|k| for negative k.
    bool invert = k < 0;
    unsigned int e = invert ? (unsigned int)(-(long long)k) : (unsigned int)k;
    T result = T(1);
    T base = x;
    while (e) {
        if (e & 1u) {
            result *= base;
        }
        base *= base;
        e >>= 1;
    }
    return invert ? T(1) / result : result;
}

// The k-th derivative of x sigmoid(x), 0 <= k <= 4 (NaN beyond): g^(k) = k sigma^(k-1) +
// x sigma^(k), in s1 = s(1-s) and d = 1-2s, with s and 1-s each from its own sigmoid (both
// tails keep their precision).
FLOW_DEVICE T flow_swish(T x, int k) {
    T s = flow_sigmoid(x);
    T q = flow_sigmoid(-x);
    T s1 = s * q;
    T d = q - s;
    switch (k) {
    case 0: return x * s;
    case 1: return s + x * s1;
    case 2: return T(2) * s1 + x * s1 * d;
    case 3: return T(3) * s1 * d + x * s1 * (T(1) - T(6) * s1);
    case 4: return T(4) * s1 * (T(1) - T(6) * s1) + x * s1 * d * (T(1) - T(12) * s1);
    default: return flow_sqrt(T(-1));
    }
}

FLOW_DEVICE T flow_unary(int op, T x, T p, int k) {
    switch (op) {
    case 0: return -x;
    case 1: return flow_exp(x);
    case 2: return flow_log(x);
    case 3: return flow_log1p(x);
    case 4: return flow_sqrt(x);
    case 5: return x * x;
    case 6: return flow_abs(x);
    case 7: return flow_tanh(x);
    case 8: return flow_sigmoid(x);
    case 9: return flow_softplus(x);
    case 10: return x > T(0) ? x : T(0);
    case 11: return x > T(0) ? x : p * x;
    case 12: return x > T(0) ? x : p * flow_expm1(x);
    case 13: return x + p;
    case 14: return x * p;
    case 15: return flow_powi(x, k);
    case 16: return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
    case 18: return flow_swish(x, k);
    case 19: return x > T(0) ? T(1) : p * flow_exp(x);
    default: return x > T(0) ? T(1) : T(0);
    }
}

FLOW_KERNEL void FLOW_NAME(unary)(const T* x, T* out, u64 n, int op, T p, int k) {
    FLOW_FOR_EACH(i, n) { out[i] = flow_unary(op, x[i], p, k); }
}

FLOW_DEVICE T flow_binary(int op, T a, T b) {
    switch (op) {
    case 0: return a + b;
    case 1: return a - b;
    case 2: return a * b;
    case 3: return a / b;
    default: return b > T(0) ? a : T(0);
    }
}

FLOW_KERNEL void FLOW_NAME(binary)(const T* a, const T* b, T* out, u64 rows, u64 cols,
                                   u64 a_rows, u64 a_cols, u64 b_rows, u64 b_cols, int op) {
    FLOW_FOR_EACH(i, rows * cols) {
        u64 r = i / cols;
        u64 c = i - r * cols;
        T x = a[(a_rows == 1 ? 0 : r) * a_cols + (a_cols == 1 ? 0 : c)];
        T y = b[(b_rows == 1 ? 0 : r) * b_cols + (b_cols == 1 ? 0 : c)];
        out[i] = flow_binary(op, x, y);
    }
}

FLOW_KERNEL void FLOW_NAME(select)(const T* mask, const T* a, const T* b, T* out, u64 n) {
    FLOW_FOR_EACH(i, n) { out[i] = mask[i] != T(0) ? a[i] : b[i]; }
}

FLOW_KERNEL void FLOW_NAME(broadcast_to)(const T* x, T* out, u64 rows, u64 cols, u64 x_rows,
                                         u64 x_cols) {
    FLOW_FOR_EACH(i, rows * cols) {
        u64 r = i / cols;
        u64 c = i - r * cols;
        out[i] = x[(x_rows == 1 ? 0 : r) * x_cols + (x_cols == 1 ? 0 : c)];
    }
}

FLOW_DEVICE T flow_activate(int act, T x, T slope) {
    if (act == 1) {
        return x > T(0) ? x : T(0);
    }
    if (act == 2) {
        return x > T(0) ? x : slope * x;
    }
    return x;
}

FLOW_KERNEL void FLOW_NAME(linear_epilogue)(T* y, const T* bias, u64 rows, u64 cols, int act,
                                            T slope) {
    FLOW_FOR_EACH(i, rows * cols) {
        u64 c = i % cols;
        y[i] = flow_activate(act, y[i] + bias[c], slope);
    }
}

// Both activations have a positive slope on each side of zero, so the output's sign is the
// pre-activation's: the derivative is read from the output.
FLOW_KERNEL void FLOW_NAME(activation_backward)(T* g, const T* out, u64 n, int act, T slope) {
    FLOW_FOR_EACH(i, n) {
        if (act == 1) {
            g[i] = out[i] > T(0) ? g[i] : T(0);
        } else if (act == 2) {
            g[i] = out[i] > T(0) ? g[i] : g[i] * slope;
        }
    }
}

FLOW_KERNEL void FLOW_NAME(adam)(T* param, const T* grad, T* m, T* v, u64 n, T lr, T beta1,
                                 T beta2, T eps, T weight_decay, T bias_correction1,
                                 T bias_correction2) {
    T step_size = lr / bias_correction1;
    T inv_sqrt_bc2 = T(1) / flow_sqrt(bias_correction2);
    FLOW_FOR_EACH(i, n) {
        T g = grad[i] + weight_decay * param[i];
        T mi = beta1 * m[i] + (T(1) - beta1) * g;
        T vi = beta2 * v[i] + (T(1) - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        param[i] -= step_size * (mi / (flow_sqrt(vi) * inv_sqrt_bc2 + eps));
    }
}
