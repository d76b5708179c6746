// The GGUF in-place kernels alone, one thread: GB/s of weights streamed and ns per row, per type, for 1 and 8
// inputs, fp32 and int8 activations, next to the repacked Q4_1 kernel (radial_matmul_q4 / _q4_q8).
//   clang -O3 -I Sources/CRadialKernels/include bench/gguf_bench.c Sources/CRadialKernels/*.c -lm -o /tmp/gb
//   taskset -c 1 /tmp/gb [ROWS COLS [TYPE...]]   (default 1024 x 4096, every type: weights larger than L2, and
//   calls short enough (under 1 ms at batch 8) that some of them run between the scheduler's interruptions)
//   LEVEL=2 measures plain AVX2 on a CPU with AVX512-VNNI (1: the portable kernels; radial_kernels_force_generic)
// GB/s counts the weight bytes only (for the repacked Q4_1: 16 B of nibbles + two fp32 per 32 weights).
#include "radial_kernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

static const struct { int id, bytes, elems; const char *name; } types[] = {
    {2, 18, 32, "Q4_0"}, {3, 20, 32, "Q4_1"}, {6, 22, 32, "Q5_0"}, {7, 24, 32, "Q5_1"}, {8, 34, 32, "Q8_0"},
    {12, 144, 256, "Q4_K"}, {13, 176, 256, "Q5_K"}, {14, 210, 256, "Q6_K"}, {1, 2, 1, "F16"}, {30, 2, 1, "BF16"},
    {0, 4, 1, "F32"},
};

static const int rows_default = 1024, cols_default = 4096;
static int rows, cols;
static float *x, *y, *xd, *xs;
static int8_t *xq;

// Seconds of the fastest call of expr over 0.3 s of calls: the machine is shared and noisy, and the fastest call
// is the kernel's own speed (every call streams the same weights, larger than L2).
#define TIME(expr) ({ double best_ = 1e9, t0_ = now(), t1_ = t0_, t_; \
    do { expr; t_ = now(); if (t_ - t1_ < best_) best_ = t_ - t1_; t1_ = t_; } while (t_ - t0_ < 0.3); best_; })

static void report(const char *name, const char *arith, int k, double sec, double bytes) {
    printf("%-12s %-4s %2d  %7.2f GB/s  %8.1f ns/row  %7.1f ns/row/input\n", name, arith, k, bytes / sec * 1e-9,
           sec / rows * 1e9, sec / rows / k * 1e9);
}

int main(int argc, char **argv) {
    rows = argc > 2 ? atoi(argv[1]) : rows_default;
    cols = argc > 2 ? atoi(argv[2]) : cols_default;
    const int nb = cols / 32;
    x = malloc(sizeof(float) * cols * 8); y = malloc(sizeof(float) * rows * 8);
    xq = malloc((size_t)cols * 8); xd = malloc(sizeof(float) * nb * 8); xs = malloc(sizeof(float) * nb * 8);
    for (int i = 0; i < cols * 8; i++) x[i] = rand() / (float)RAND_MAX - 0.5f;
    radial_quantize_q8(x, cols, 8, nb, xq, cols, xd, xs);
    if (getenv("LEVEL")) radial_kernels_force_generic(atoi(getenv("LEVEL")));
    printf("%d x %d, simd %d, 1 thread\n", rows, cols, radial_kernels_simd());

    // the repacked Q4_1 kernel (kernels.c)
    uint8_t *qs = aligned_alloc(64, (size_t)rows * nb * 16);
    float *d = malloc(sizeof(float) * rows * nb), *m = malloc(sizeof(float) * rows * nb);
    for (size_t i = 0; i < (size_t)rows * nb * 16; i++) qs[i] = (uint8_t)rand();
    for (int i = 0; i < rows * nb; i++) { d[i] = 0.01f; m[i] = -0.08f; }
    const double rbytes = (double)rows * nb * 24;
    for (int k = 1; k <= 8 && argc <= 3; k += 7) {  // only when every type is measured
        report("repacked Q4", "f32", k, TIME(radial_matmul_q4(qs, d, m, nb, 0, rows, x, cols, k, y, rows, 0)), rbytes);
        report("repacked Q4", "q8", k, TIME(radial_matmul_q4_q8(qs, d, m, nb, 0, rows, xq, cols, xd, xs, k, y, rows, 0)), rbytes);
    }
    free(qs); free(d); free(m);

    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        const int t = types[ti].id;
        int wanted = argc <= 3;
        for (int a = 3; a < argc; a++) wanted |= strcmp(argv[a], types[ti].name) == 0;
        if (!wanted) continue;
        const size_t rb = (size_t)cols / types[ti].elems * types[ti].bytes;
        uint8_t *w = aligned_alloc(64, rb * rows);
        for (size_t i = 0; i < rb * rows; i++) w[i] = (uint8_t)rand();
        // finite values: every fp16 (and the f32 high halves) below 2^-3, so no scale is inf or nan
        if (t == 0 || t == 1) for (size_t i = 0; i < rb * rows; i += 2) w[i + 1] &= 0x2F;
        const int half_at[] = {[2] = 0, [3] = 0, [6] = 0, [7] = 0, [8] = 0, [12] = 0, [13] = 0, [14] = 208};
        if (types[ti].elems > 1)
            for (size_t b = 0; b < rb * rows; b += types[ti].bytes) {
                w[b + half_at[t] + 1] &= 0x2F;
                if (t == 3 || t == 7 || t == 12 || t == 13) w[b + 3] &= 0x2F;
            }
        const double bytes = (double)rb * rows;
        for (int k = 1; k <= 8; k += 7) {
            report(types[ti].name, "f32", k, TIME(radial_gguf_matmul(t, w, rb, cols, 0, rows, x, cols, k, y, rows, 0)), bytes);
            if (types[ti].elems > 1)
                report(types[ti].name, "q8", k, TIME(radial_gguf_matmul_q8(t, w, rb, cols, 0, rows, xq, cols, xd, xs, k, y, rows, 0)), bytes);
        }
        free(w);
    }
    return 0;
}
