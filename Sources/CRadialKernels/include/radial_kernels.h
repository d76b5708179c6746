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

// Rows [row_begin, row_end) of a repacked Q4 / Q8 matrix as fp32: out[(r - row_begin)*ldo + c]. Bit for bit the
// file's dequantisation (q*d + m as a multiply then an add). For prefill tiles that sgemm then multiplies.
void radial_dequantize_q4(const uint8_t *qs, const float *d, const float *m, int nb, int row_begin, int row_end,
                          float *out, int ldo);
void radial_dequantize_q8(const int8_t *qs, const float *d, int nb, int row_begin, int row_end, float *out, int ldo);

// Attention of `g` query heads (q: g rows of hd, contiguous) sharing one K/V head, over positions [0, npos):
// keys[p*kv_stride .. +hd], values likewise. present[p] == 0 excludes a position (NULL: all present).
// scores: scratch of g*npos floats. out: g rows of hd.
void radial_attend(const float *q, int g, int hd, const float *keys, const float *values, int kv_stride,
                   int npos, const uint8_t *present, float scale, float *scores, float *out);

// ---- GGUF weights in place ----
// A matrix of `rows` rows and `cols` columns stored in its GGUF file's own layout: row r starts at
// (const char *)w + r * row_bytes and holds cols / block_elems blocks of the ggml type `type` (ggml ids:
// F32 0, F16 1, Q4_0 2, Q4_1 3, Q5_0 6, Q5_1 7, Q8_0 8, Q4_K 12, Q5_K 13, Q6_K 14, BF16 30), read straight
// from the memory-mapped file (no repacking). cols must be a multiple of the block size (32 or 256; any for
// the float types). Outputs are indexed as in radial_matmul_q4: y[i*ldy + r] for r in [row_begin, row_end)
// (r counts from w, so a caller wanting a tile passes w and y already offset).
// Exactness contract: each (input, row) dot product is summed in one fixed order, so a row's result does not
// depend on n_inputs, on row_begin/row_end or on which other rows are in the call (within each of the generic
// and the AVX2 versions; the two differ in the last bits).

// 1 when `type` is one of the ids above.
int radial_gguf_supported(int type);

// fp32 activations: y[i*ldy + r] (+)= sum_c W[r][c] * x[i*ldx + c], i in [0, n_inputs). Per group of 32
// weights the integer values are dotted with x and the dot scaled (Q6_K: per 16); the offset of the types that
// have one (Q4_1, Q5_1, Q4_K, Q5_K) is applied as min * (sum of x over the group), added after the dots.
// Up to 8 inputs are served per pass over a weight row, so a small batch streams the weights once.
void radial_gguf_matmul(int type, const void *w, size_t row_bytes, int cols, int row_begin, int row_end,
                        const float *x, int ldx, int n_inputs, float *y, int ldy, int accumulate);

// int8 activations (llama.cpp-style): xq, xd, xs exactly as radial_quantize_q8 makes them (nb = cols / 32
// blocks per input; xd, xs rows of stride nb), whatever the weight type. Per group of 32: an integer dot
// product (Q6_K: per 16, each times its int8 scale, summed in integers), scaled by (group scale * xd); K-quant
// and Q4_1/Q5_1 offsets as min * xs. Block types only: for F32/F16/BF16 this does nothing, and callers use
// radial_gguf_matmul with the fp32 inputs (float weights gain nothing from int8 inputs).
void radial_gguf_matmul_q8(int type, const void *w, size_t row_bytes, int cols, int row_begin, int row_end,
                           const int8_t *xq, int ldq, const float *xd, const float *xs, int n_inputs,
                           float *y, int ldy, int accumulate);

// Rows [row_begin, row_end) as fp32 into out[(r - row_begin)*ldo + c] (a scratch tile for prefill's sgemm),
// bit for bit ggml's dequantize_row_* (same operations and order, e.g. Q4_K: (d*sc)*q - (dmin*m)).
void radial_gguf_dequantize_rows(int type, const void *w, size_t row_bytes, int cols, int row_begin, int row_end,
                                 float *out, int ldo);

// 1 when the AVX2/FMA versions run on this CPU (otherwise portable C).
int radial_kernels_simd(void);
// Tests: 1 forces the portable versions on the calling thread only, 2 the AVX2 versions without the AVX512-VNNI
// dot products (where the CPU has them), 0 restores detection.
void radial_kernels_force_generic(int on);

#ifdef __cplusplus
}
#endif
