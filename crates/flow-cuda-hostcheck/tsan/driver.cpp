// Test-only: runs kernels under ThreadSanitizer (`tests/tsan.rs` compiles this with
// `-fsanitize=thread`, together with `kernels/reduce.cu` and `tree_reduce.cu`, with
// FLOW_T=double, and reads the report).
//
//   driver clean    the reduce.cu kernels that use barriers and shuffles, and tree_sum:
//                   no report is expected; exits 1 if a result is wrong.
//   driver broken   broken_tree_sum: a report is expected.
#include "common.cuh"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

FLOW_KERNEL void FLOW_NAME(reduce_rows)(const T* x, T* out, u64 rows, u64 cols, int op);
FLOW_KERNEL void FLOW_NAME(reduce_cols)(const T* x, T* out, u64 rows, u64 cols, int op);
FLOW_KERNEL void FLOW_NAME(reduce_all)(const T* x, T* out, u64 n, int op);
FLOW_KERNEL void FLOW_NAME(argmax_mask)(const T* x, T* out, u64 rows, u64 cols, int axis);
FLOW_KERNEL void FLOW_NAME(softmax_cols)(const T* x, T* out, u64 rows, u64 cols);
FLOW_KERNEL void FLOW_NAME(tree_sum)(const T* x, T* out, u64 n);
FLOW_KERNEL void FLOW_NAME(broken_tree_sum)(const T* x, T* out, u64 n);

static int failures = 0;

static void expect(const char* what, T got, T want) {
    if (!(std::fabs(got - want) <= 1e-9 * (std::fabs(want) + 1))) {
        std::fprintf(stderr, "driver: %s is %.17g, expected %.17g\n", what, got, want);
        ++failures;
    }
}

int main(int argc, char** argv) {
    bool broken = argc > 1 && std::strcmp(argv[1], "broken") == 0;
    // x = 1, 2, ..., n: known sums and maxima. As a matrix of `rows x cols`, row-major.
    const u64 rows = 96, cols = 100, n = rows * cols;
    std::vector<T> x(n);
    for (u64 i = 0; i < n; ++i) {
        x[i] = T(i + 1);
    }
    const T total = T(n) * T(n + 1) / 2;
    std::vector<T> out(n), partials(4);
    if (broken) {
        for (int run = 0; run < 3; ++run) {
            flow_host::launch(2, 64, 64 * sizeof(T), FLOW_NAME(broken_tree_sum), x.data(),
                              partials.data(), n);
        }
        std::printf("driver: broken_tree_sum ran\n");
        return 0;
    }
    flow_host::launch(2, 64, 64 * sizeof(T), FLOW_NAME(tree_sum), x.data(), partials.data(), n);
    expect("tree_sum", partials[0] + partials[1], total);

    // reduce_all, both passes: __syncthreads and warp shuffles.
    for (int op = 0; op < 2; ++op) {
        const unsigned int block = 128;
        const std::size_t shared = block * sizeof(T) * (op == 0 ? 2 : 1);
        flow_host::launch(3, block, shared, FLOW_NAME(reduce_all), x.data(), partials.data(), n,
                          op);
        flow_host::launch(1, 64, shared, FLOW_NAME(reduce_all), (const T*)partials.data(),
                          out.data(), u64(3), op);
        expect(op == 0 ? "reduce_all sum" : "reduce_all max", out[0], op == 0 ? total : T(n));
    }
    // reduce_rows and argmax_mask along rows: static shared memory between barriers, one
    // block over several tiles of 32 columns.
    flow_host::launch(1, 128, 0, FLOW_NAME(reduce_rows), x.data(), out.data(), rows, cols, 0);
    expect("reduce_rows sum of column 0", out[0], T(rows) * T(1) + T(cols) * T(rows) * T(rows - 1) / 2);
    flow_host::launch(1, 64, 0, FLOW_NAME(argmax_mask), x.data(), out.data(), rows, cols, 0);
    expect("argmax_mask along rows, last row", out[(rows - 1) * cols], T(1));
    // reduce_cols, argmax_mask along columns and softmax: shuffles within rows.
    flow_host::launch(2, 64, 0, FLOW_NAME(reduce_cols), x.data(), out.data(), rows, cols, 1);
    expect("reduce_cols max of row 0", out[0], T(cols));
    flow_host::launch(2, 64, 0, FLOW_NAME(argmax_mask), x.data(), out.data(), rows, cols, 1);
    expect("argmax_mask along columns, row 0", out[cols - 1], T(1));
    flow_host::launch(2, 64, 0, FLOW_NAME(softmax_cols), x.data(), out.data(), rows, cols);
    T row_sum = 0;
    for (u64 j = 0; j < cols; ++j) {
        row_sum += out[j];
    }
    expect("softmax row 0 sums to", row_sum, T(1));
    std::printf("driver: clean kernels ran, %d wrong\n", failures);
    return failures == 0 ? 0 : 1;
}
