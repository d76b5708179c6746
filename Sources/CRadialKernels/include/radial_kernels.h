// Quantised matrix × vector kernels for the decode hot path. Weights stay 4 or 8 bits per value (the bytes
// per token a decode step streams from memory are what bound its speed); activations stay fp32, so results
// equal an fp32 product over the dequantised weights up to summation order.
//
// Layouts (repacked at load from GGUF blocks of 32; nb = columns / 32):
//   Q4: qs[rows][nb][16] nibbles (low nibble = element j, high = element j+16), d[rows][nb], m[rows][nb];
//       value = q * d + m   (GGUF Q4_1 as is; Q4_0 becomes d, m = -8d, which is exact)
//   Q8: qs[rows][nb][32] int8, d[rows][nb]; value = q * d   (GGUF Q8_0)
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// y[i*ldy + r] = sum_c W[r][c] * x[i*ldx + c] for rows r in [row_begin, row_end) and inputs i in [0, n_inputs).
void radial_matmul_q4(const uint8_t *qs, const float *d, const float *m, int nb,
                      int row_begin, int row_end, const float *x, int ldx, int n_inputs,
                      float *y, int ldy, int accumulate);
void radial_matmul_q8(const int8_t *qs, const float *d, int nb,
                      int row_begin, int row_end, const float *x, int ldx, int n_inputs,
                      float *y, int ldy, int accumulate);

// int8 activations (the opt-in `q8` arithmetic, llama.cpp's): each input row quantised per block of 32 to
// q[32] int8 with scale d = max|x|/127 (q = round-to-nearest-even(x/d)) and s = d * sum(q); weights times those
// in integer dot products, scaled per block in fp32. Results are no longer the fp32 product (activations carry
// ~0.4% error per block), but every row is still summed in one order whatever the batch.
//   xq: n_inputs rows of nb*32 int8 (row stride ldq bytes); xd, xs: n_inputs rows of nb floats (stride nb).
void radial_quantize_q8(const float *x, int ldx, int n_inputs, int nb, int8_t *xq, int ldq, float *xd, float *xs);
void radial_matmul_q4_q8(const uint8_t *qs, const float *d, const float *m, int nb, int row_begin, int row_end,
                         const int8_t *xq, int ldq, const float *xd, const float *xs, int n_inputs,
                         float *y, int ldy, int accumulate);
void radial_matmul_q8_q8(const int8_t *qs, const float *d, int nb, int row_begin, int row_end,
                         const int8_t *xq, int ldq, const float *xd, int n_inputs,
                         float *y, int ldy, int accumulate);

// Attention of `g` query heads (q: g rows of hd, contiguous) sharing one K/V head, over positions [0, npos):
// keys[p*kv_stride .. +hd], values likewise. present[p] == 0 excludes a position (NULL: all present).
// scores: scratch of g*npos floats. out: g rows of hd.
void radial_attend(const float *q, int g, int hd, const float *keys, const float *values, int kv_stride,
                   int npos, const uint8_t *present, float scale, float *scores, float *out);

// 1 when the AVX2/FMA versions run on this CPU (otherwise portable C).
int radial_kernels_simd(void);
// Tests: 1 forces the portable versions on the calling thread only, 0 restores detection.
void radial_kernels_force_generic(int on);

#ifdef __cplusplus
}
#endif
