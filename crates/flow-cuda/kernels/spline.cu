// The monotonic rational-quadratic spline (Durkan et al. 2019) of every entry, forward or
// inverse, with its log-derivative, and the first-order backward: one thread per entry, in
// double precision whatever T is (the inverse's quadratic formula loses digits in f32), as
// the CPU backend (`cpu/spline.rs`, whose notation this follows).
//
// No per-thread arrays: the knots are cumulative sums of softmaxes, walked in order from
// the entry's raw parameters in global memory, so the bin count is a run-time value and
// nothing spills. The cache keeps 8 values per entry (bin, theta, w, h, d0, d1 and the two
// knot derivatives' slopes); the backward recomputes the softmaxes from the parameters.
#include "common.cuh"

#define FLOW_SPLINE_CACHE 8

// max and sum(exp(raw - max)) of `k` logits.
FLOW_DEVICE void flow_softmax_stats(const T* raw, int k, double* max, double* total) {
    double m = -1.0 / 0.0;
    for (int j = 0; j < k; ++j) {
        m = fmax(m, (double)raw[j]);
    }
    double t = 0.0;
    for (int j = 0; j < k; ++j) {
        t += exp((double)raw[j] - m);
    }
    *max = m;
    *total = t;
}

// Knot `index` (0..=k) of the positions -B + 2B cumsum(min + (1 - k min) softmax).
FLOW_DEVICE double flow_knot(const T* raw, int k, int index, double max, double total, double min,
                             double bound) {
    if (index == k) {
        return bound;
    }
    const double scale = 1.0 - min * k;
    const double inverse_total = 1.0 / total;
    double acc = 0.0;
    double knot = -bound;
    for (int j = 0; j < index; ++j) {
        acc += min + scale * (exp((double)raw[j] - max) * inverse_total);
        knot = -bound + 2.0 * bound * acc;
    }
    return knot;
}

// exp(a / (1 + |a| / L)) and its derivative in a (inverse_bound = 1 / L).
FLOW_DEVICE double flow_clamped_exp(double a, double inverse_bound, double* slope) {
    const double q = 1.0 + fabs(a) * inverse_bound;
    const double d = exp(a / q);
    *slope = d / (q * q);
    return d;
}

struct FlowBin {
    double theta, h, s, d0, d1, num, den, m;
};

FLOW_DEVICE void flow_bin_at(FlowBin& b, double theta) {
    const double t = theta * (1.0 - theta);
    b.theta = theta;
    b.num = b.s * theta * theta + b.d0 * t;
    b.den = b.s + (b.d0 + b.d1 - 2.0 * b.s) * t;
    b.m = b.d1 * theta * theta + 2.0 * b.s * t + b.d0 * (1.0 - theta) * (1.0 - theta);
}

// theta solving y0 + h num / den = y0 + offset: the root in [0, 1], in the form that does not
// cancel.
FLOW_DEVICE double flow_bin_solve(const FlowBin& b, double offset) {
    const double c = b.d0 + b.d1 - 2.0 * b.s;
    const double qa = b.h * (b.s - b.d0) + offset * c;
    const double qb = b.h * b.d0 - offset * c;
    const double qc = -b.s * offset;
    const double disc = fmax(qb * qb - 4.0 * qa * qc, 0.0);
    return 2.0 * qc / (-qb - sqrt(disc));
}

FLOW_KERNEL void FLOW_NAME(rational_quadratic)(const T* x, const T* params, T* out, T* cache,
                                               u64 rows, u64 d, int bins, T tail_bound,
                                               T min_bin_width, T min_bin_height,
                                               T min_derivative, int direction) {
    const int k = bins;
    const u64 p = 3 * (u64)k - 1;
    const double bound = (double)tail_bound;
    const double inverse_log_bound = 1.0 / -log((double)min_derivative);
    const bool inverse = direction == 1;
    FLOW_FOR_EACH(e, rows * d) {
        const u64 row = e / d;
        const u64 col = e - row * d;
        const T* raw = params + e * p;
        const T* widths = raw;
        const T* heights = raw + k;
        const T* derivatives = raw + 2 * k;
        const double v = (double)x[e];
        double wmax, wtotal, hmax, htotal;
        flow_softmax_stats(widths, k, &wmax, &wtotal);
        flow_softmax_stats(heights, k, &hmax, &htotal);
        // The bin: how many inner knots of the searched side are at or below v (walked in
        // order; the knots increase, so the first one above v ends the count).
        const T* searched = inverse ? heights : widths;
        const double smax = inverse ? hmax : wmax;
        const double stotal = inverse ? htotal : wtotal;
        const double smin = inverse ? (double)min_bin_height : (double)min_bin_width;
        const double scale = 1.0 - smin * k;
        int bin = 0;
        {
            double acc = 0.0;
            for (int j = 0; j + 1 < k; ++j) {
                acc += smin + scale * (exp((double)searched[j] - smax) * (1.0 / stotal));
                const double knot = -bound + 2.0 * bound * acc;
                bin += knot <= v ? 1 : 0;
            }
        }
        const double mw = (double)min_bin_width;
        const double mh = (double)min_bin_height;
        const double x0 = flow_knot(widths, k, bin, wmax, wtotal, mw, bound);
        const double x1 = flow_knot(widths, k, bin + 1, wmax, wtotal, mw, bound);
        const double y0 = flow_knot(heights, k, bin, hmax, htotal, mh, bound);
        const double y1 = flow_knot(heights, k, bin + 1, hmax, htotal, mh, bound);
        const double a0 = bin == 0 ? 0.0 : (double)derivatives[bin - 1];
        const double a1 = bin == k - 1 ? 0.0 : (double)derivatives[bin];
        double slope0, slope1;
        const double d0 = flow_clamped_exp(a0, inverse_log_bound, &slope0);
        const double d1 = flow_clamped_exp(a1, inverse_log_bound, &slope1);
        if (bin == 0) {
            slope0 = 0.0;
        }
        if (bin == k - 1) {
            slope1 = 0.0;
        }
        const double w = x1 - x0;
        const double h = y1 - y0;
        FlowBin b;
        b.h = h;
        b.s = h / w;
        b.d0 = d0;
        b.d1 = d1;
        double y;
        if (inverse) {
            flow_bin_at(b, flow_bin_solve(b, v - y0));
            y = x0 + b.theta * w;
        } else {
            flow_bin_at(b, (v - x0) / w);
            y = y0 + h * b.num / b.den;
        }
        const double ratio = b.s / b.den;
        const double log_derivative = log(ratio * ratio * b.m);
        // Outside the bound, or NaN: the identity (the input's own bits), and a harmless bin
        // marked -1 for the backward.
        const bool inside = fabs(v) <= bound;
        T* out_row = out + row * 2 * d;
        out_row[col] = inside ? (T)y : x[e];
        out_row[d + col] = inside ? (T)(inverse ? -log_derivative : log_derivative) : T(0);
        T* c = cache + e * FLOW_SPLINE_CACHE;
        c[0] = inside ? (T)bin : T(-1);
        c[1] = inside ? (T)b.theta : T(0);
        c[2] = inside ? (T)w : T(1);
        c[3] = inside ? (T)h : T(1);
        c[4] = inside ? (T)d0 : T(1);
        c[5] = inside ? (T)d1 : T(1);
        c[6] = inside ? (T)slope0 : T(0);
        c[7] = inside ? (T)slope1 : T(0);
    }
}

// Gradients of y (as F(theta, s, h, d0, d1), plus 1 in y0) and of L = log dy/dx in
// (theta, s, h, d0, d1).
FLOW_DEVICE void flow_bin_partials(const FlowBin& b, double f[5], double l[5]) {
    const double theta = b.theta, h = b.h, s = b.s, d0 = b.d0, d1 = b.d1;
    const double t = theta * (1.0 - theta);
    const double c = d0 + d1 - 2.0 * s;
    const double num_theta = 2.0 * s * theta + d0 * (1.0 - 2.0 * theta);
    const double den_theta = c * (1.0 - 2.0 * theta);
    const double den_s = 1.0 - 2.0 * t;
    const double inv_den = 1.0 / b.den, inv_m = 1.0 / b.m;
    const double h_over_den2 = h * inv_den * inv_den;
    f[0] = h_over_den2 * (num_theta * b.den - b.num * den_theta);
    f[1] = h_over_den2 * (theta * theta * b.den - b.num * den_s);
    f[2] = b.num * inv_den;
    f[3] = h_over_den2 * (t * b.den - b.num * t);
    f[4] = h_over_den2 * (0.0 * b.den - b.num * t);
    const double m_theta = 2.0 * d1 * theta + 2.0 * s * (1.0 - 2.0 * theta) - 2.0 * d0 * (1.0 - theta);
    const double two_t_den = 2.0 * t * inv_den;
    l[0] = m_theta * inv_m - 2.0 * den_theta * inv_den;
    l[1] = 2.0 / s + 2.0 * t * inv_m - 2.0 * den_s * inv_den;
    l[2] = 0.0;
    l[3] = (1.0 - theta) * (1.0 - theta) * inv_m - two_t_den;
    l[4] = theta * theta * inv_m - two_t_den;
}

// From the gradients of the bin's two knots (g0 at knot `bin`, g1 at `bin + 1`) to those of
// the `k` raw logits of the softmax behind the knots: d/ds_j = 2B (1 - k min) (g1 + g0 for
// j < bin, g1 for j = bin), then through the softmax.
FLOW_DEVICE void flow_raw_grads(const T* raw, int k, int bin, double g0, double g1, double min,
                                double bound, T* out) {
    double max, total;
    flow_softmax_stats(raw, k, &max, &total);
    const double scale = 2.0 * bound * (1.0 - min * k);
    double dot = 0.0;
    for (int j = 0; j < k; ++j) {
        const double s = exp((double)raw[j] - max) * (1.0 / total);
        const double o = scale * (j < bin ? g1 + g0 : (j == bin ? g1 : 0.0));
        dot += o * s;
    }
    for (int j = 0; j < k; ++j) {
        const double s = exp((double)raw[j] - max) * (1.0 / total);
        const double o = scale * (j < bin ? g1 + g0 : (j == bin ? g1 : 0.0));
        out[j] = (T)(s * (o - dot));
    }
}

// `g` is `rows x 2d` (the outputs' gradients, then the log-dets'); writes `g_x` (`rows x d`)
// and every entry of `g_params` (`rows x d (3 bins - 1)`).
FLOW_KERNEL void FLOW_NAME(rational_quadratic_backward)(
    const T* params, const T* cache, const T* g, T* g_x, T* g_params, u64 rows, u64 d, int bins,
    T tail_bound, T min_bin_width, T min_bin_height, int direction) {
    const int k = bins;
    const u64 p = 3 * (u64)k - 1;
    const double bound = (double)tail_bound;
    const bool inverse = direction == 1;
    FLOW_FOR_EACH(e, rows * d) {
        const u64 row = e / d;
        const u64 col = e - row * d;
        const T* c = cache + e * FLOW_SPLINE_CACHE;
        const double gy = (double)g[row * 2 * d + col];
        const double gl = (double)g[row * 2 * d + d + col];
        T* gp = g_params + e * p;
        const int bin = (int)c[0];
        if (bin < 0) {
            g_x[e] = (T)gy;
            for (u64 j = 0; j < p; ++j) {
                gp[j] = T(0);
            }
            continue;
        }
        const double w = (double)c[2], h = (double)c[3];
        FlowBin b;
        b.h = h;
        b.s = h / w;
        b.d0 = (double)c[4];
        b.d1 = (double)c[5];
        flow_bin_at(b, (double)c[1]);
        double f[5], l[5];
        flow_bin_partials(b, f, l);
        double g_input, g_x0, g_w, g_y0, g_h, g_s, g_d0, g_d1;
        if (inverse) {
            // x = x0 + theta w and -L, with theta(y, ...) implicit in F(theta, ...) = y.
            const double g_theta = gy * w - gl * l[0];
            const double through = g_theta / f[0];
            g_input = through;
            g_x0 = gy;
            g_w = gy * b.theta;
            g_y0 = -through;
            g_h = -through * f[2];
            g_s = -through * f[1] - gl * l[1];
            g_d0 = -through * f[3] - gl * l[3];
            g_d1 = -through * f[4] - gl * l[4];
        } else {
            const double g_theta = gy * f[0] + gl * l[0];
            g_input = g_theta / w;
            g_x0 = -g_input;
            g_w = -g_theta * b.theta / w;
            g_y0 = gy;
            g_h = gy * f[2];
            g_s = gy * f[1] + gl * l[1];
            g_d0 = gy * f[3] + gl * l[3];
            g_d1 = gy * f[4] + gl * l[4];
        }
        // s = h / w.
        g_h += g_s / w;
        g_w -= g_s * b.s / w;
        g_x[e] = (T)g_input;
        const T* raw = params + e * p;
        flow_raw_grads(raw, k, bin, g_x0 - g_w, g_w, (double)min_bin_width, bound, gp);
        flow_raw_grads(raw + k, k, bin, g_y0 - g_h, g_h, (double)min_bin_height, bound, gp + k);
        // Only the bin's two knot derivatives were read (the end ones are constant).
        for (int j = 0; j + 1 < k; ++j) {
            const int knot = j + 1;
            gp[2 * k + j] = (T)(bin == knot ? g_d0 * (double)c[6]
                                            : (bin + 1 == knot ? g_d1 * (double)c[7] : 0.0));
        }
    }
}
