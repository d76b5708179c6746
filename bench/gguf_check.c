// Quick C-only check of the GGUF kernels (the Swift tests are the real ones; this runs in seconds):
//   clang -O2 -I Sources/CRadialKernels/include bench/gguf_check.c Sources/CRadialKernels/*.c -lm -o /tmp/gc && /tmp/gc
// Per type: random blocks (valid fp16 scales), products against a Double reference over the dequantised
// weights, int8 products against the same reference with dequantised int8 inputs, and batch/row-range
// invariance (bit-equal), for the generic, the AVX2 and the AVX512-VNNI versions.
#include "radial_kernels.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 88172645463325252ULL;
static uint64_t next(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }
static float unit(void) { return (float)((next() >> 11) * (1.0 / 9007199254740992.0)) * 2 - 1; }

static uint16_t to_half(float f) { _Float16 h = (_Float16)f; uint16_t u; memcpy(&u, &h, 2); return u; }
static void put_half(uint8_t *p, float f) { uint16_t u = to_half(f); memcpy(p, &u, 2); }

static const int types[] = {0, 1, 30, 2, 3, 6, 7, 8, 12, 13, 14};
static int bytes_of(int t) { switch (t) { case 0: return 4; case 1: case 30: return 2; case 2: return 18; case 3: return 20; case 6: return 22; case 7: return 24; case 8: return 34; case 12: return 144; case 13: return 176; default: return 210; } }
static int elems_of(int t) { return t == 0 || t == 1 || t == 30 ? 1 : t >= 12 && t <= 14 ? 256 : 32; }

static void fill(int t, uint8_t *p, size_t nblocks) {
    const int bb = bytes_of(t);
    for (size_t b = 0; b < nblocks; b++) {
        uint8_t *q = p + b * bb;
        for (int j = 0; j < bb; j++) q[j] = (uint8_t)next();
        switch (t) {
        case 0: { float f = unit(); memcpy(q, &f, 4); break; }
        case 1: put_half(q, unit()); break;
        case 30: { float f = unit(); uint32_t u; memcpy(&u, &f, 4); q[0] = u >> 16; q[1] = u >> 24; break; }
        case 2: case 6: case 8: put_half(q, unit() * 0.05f); break;
        case 3: case 7: case 12: case 13: put_half(q, unit() * 0.05f); put_half(q + 2, unit() * 0.05f); break;
        case 14: put_half(q + 208, unit() * 0.01f); break;
        }
    }
}

int main(void) {
    const int rows = 37, n = 8;
    int fails = 0;
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        const int t = types[ti], be = elems_of(t);
        const int cols = be == 256 ? 512 : t == 0 || t == 1 || t == 30 ? 200 : 320;  // 200: float tail path
        const size_t rb = (size_t)cols / be * bytes_of(t);
        uint8_t *w = malloc(rb * rows);
        fill(t, w, (size_t)rows * cols / be);
        float *wf = malloc(sizeof(float) * rows * cols);
        radial_gguf_dequantize_rows(t, w, rb, cols, 0, rows, wf, cols);
        float x[n * 512];
        for (int i = 0; i < n * cols; i++) x[i] = unit();
        const int nb = cols / 32;
        int8_t xq[n * 512];
        float xd[n * 16], xs[n * 16], xdq[n * 512];
        const int q8 = t != 0 && t != 1 && t != 30 && cols % 32 == 0;
        if (q8) {
            radial_quantize_q8(x, cols, n, nb, xq, cols, xd, xs);
            for (int i = 0; i < n; i++) for (int c = 0; c < cols; c++) xdq[i * cols + c] = xd[i * nb + c / 32] * xq[i * cols + c];
        }
        // per arithmetic (f32, q8): the generic kernels, AVX2 alone, and the best this CPU has (AVX512-VNNI)
        static const int force[3] = {1, 2, 0};
        static const char *const level_name[3] = {"generic", "avx2", "best"};
        for (int mode = 0; mode < 6; mode++) {
            const int useq8 = mode >= 3, level = mode % 3;
            if (useq8 && !q8) continue;
            radial_kernels_force_generic(force[level]);
            float y[n * 40], y1[40], y3[3 * 40];
            if (useq8) radial_gguf_matmul_q8(t, w, rb, cols, 0, rows, xq, cols, xd, xs, n, y, rows, 0);
            else radial_gguf_matmul(t, w, rb, cols, 0, rows, x, cols, n, y, rows, 0);
            double worst = 0;
            for (int i = 0; i < n; i++) for (int r = 0; r < rows; r++) {
                double s = 0, mag = 0;
                const float *xi = useq8 ? xdq + i * cols : x + i * cols;
                for (int c = 0; c < cols; c++) { s += (double)wf[r * cols + c] * xi[c]; mag += fabs((double)wf[r * cols + c] * xi[c]); }
                const double e = fabs(y[i * rows + r] - s) / (mag + 1e-30);
                if (e > worst) worst = e;
            }
            // invariance: input i alone, and inputs 5..7 over rows 3..29 (y offset so row r lands at r)
            int same = 1;
            for (int i = 0; i < n; i++) {
                if (useq8) radial_gguf_matmul_q8(t, w, rb, cols, 0, rows, xq + i * cols, cols, xd + i * nb, xs + i * nb, 1, y1, rows, 0);
                else radial_gguf_matmul(t, w, rb, cols, 0, rows, x + i * cols, cols, 1, y1, rows, 0);
                same &= memcmp(y1, y + i * rows, sizeof(float) * rows) == 0;
            }
            if (useq8) radial_gguf_matmul_q8(t, w, rb, cols, 3, 29, xq + 5 * cols, cols, xd + 5 * nb, xs + 5 * nb, 3, y3, 40, 0);
            else radial_gguf_matmul(t, w, rb, cols, 3, 29, x + 5 * cols, cols, 3, y3, 40, 0);
            for (int i = 0; i < 3; i++) same &= memcmp(y3 + i * 40 + 3, y + (5 + i) * rows + 3, sizeof(float) * 26) == 0;
            const int ok = worst < 2e-6 && same;
            fails += !ok;
            printf("type %2d %-8s %-4s rel.err %.2e  invariant %d  %s\n", t, level_name[level], useq8 ? "q8" : "f32", worst, same, ok ? "ok" : "FAIL");
        }
        radial_kernels_force_generic(0);
        free(w); free(wf);
    }
    printf(fails ? "%d FAILED\n" : "all ok\n", fails);
    return fails != 0;
}
