// The decode kernels alone, single thread: fp32-activation vs int8-activation Q4 matmul for 1-8 and 16 inputs.
//   cc -O2 -I Sources/CRadialKernels/include bench/kernel_bench.c Sources/CRadialKernels/kernels.c -lm -o /tmp/kb
//   taskset -c 1 /tmp/kb [ROWS COLS]        (default 3072 x 576: SmolLM2's fused gate/up matrix)
// Prints nanoseconds per 32-weight block and per block and input; the ratio is what matters (noisy VM).
#include "radial_kernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

int main(int argc, char **argv) {
    const int rows = argc > 2 ? atoi(argv[1]) : 3072, cols = argc > 2 ? atoi(argv[2]) : 576, nb = cols / 32;
    const int iters = 200;
    uint8_t *qs = aligned_alloc(64, (size_t)rows * nb * 16);
    float *d = malloc(sizeof(float) * rows * nb), *m = malloc(sizeof(float) * rows * nb);
    for (size_t i = 0; i < (size_t)rows * nb * 16; i++) qs[i] = (uint8_t)rand();
    for (int i = 0; i < rows * nb; i++) { d[i] = 0.01f; m[i] = -0.08f; }
    float *x = malloc(sizeof(float) * cols * 16), *y = malloc(sizeof(float) * rows * 16);
    for (int i = 0; i < cols * 16; i++) x[i] = rand() / (float)RAND_MAX - 0.5f;
    int8_t *xq = aligned_alloc(64, (size_t)cols * 16);
    float *xd = malloc(sizeof(float) * nb * 16), *xs = malloc(sizeof(float) * nb * 16);
    printf("%d x %d, simd %d\ninputs  f32 ns/block  q8 ns/block  f32 ns/(block*input)  q8 ns/(block*input)\n",
           rows, cols, radial_kernels_simd());
    for (int k = 1; k <= 16; k = k < 8 ? k + 1 : 2 * k) {
        double t = now();
        for (int it = 0; it < iters; it++) radial_matmul_q4(qs, d, m, nb, 0, rows, x, cols, k, y, rows, 0);
        const double f32 = (now() - t) / ((double)rows * nb * iters) * 1e9;
        t = now();
        for (int it = 0; it < iters; it++) {
            radial_quantize_q8(x, cols, k, nb, xq, cols, xd, xs);
            radial_matmul_q4_q8(qs, d, m, nb, 0, rows, xq, cols, xd, xs, k, y, rows, 0);
        }
        const double q8 = (now() - t) / ((double)rows * nb * iters) * 1e9;
        printf("%6d  %12.2f  %11.2f  %20.2f  %19.2f\n", k, f32, q8, f32 / k, q8 / k);
    }
    return 0;
}
