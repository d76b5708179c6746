// Shared between gguf_matmul.c (API, portable kernels, dequantisation) and gguf_matmul_avx2.c.
// Block layouts (ggml-common.h; all little-endian, h = fp16; "group" = 32 consecutive weights of a row):
//   Q4_0 18 B: h d, u8 qs[16]                     q = nibble - 8          value = q * d
//   Q4_1 20 B: h d, h m, u8 qs[16]                q = nibble              value = q * d + m
//   Q5_0 22 B: h d, u8 qh[4], u8 qs[16]           q = (nibble | bit<<4) - 16, value = q * d
//   Q5_1 24 B: h d, h m, u8 qh[4], u8 qs[16]      q = nibble | bit<<4     value = q * d + m
//   Q8_0 34 B: h d, i8 qs[32]                                             value = q * d
//     (legacy types: nibble j of qs is element j (low) and j+16 (high); bit j of qh belongs to element j)
//   Q4_K 144 B / 256: h d, h dmin, u8 scales[12] (8 x 6-bit scale + 6-bit min), u8 qs[128]
//     qs[32c + l]: low nibble = element 64c + l (group 2c), high = element 64c + 32 + l (group 2c+1);
//     value = (d * sc_g) * q - (dmin * m_g)
//   Q5_K 176 B / 256: as Q4_K with u8 qh[32] between scales and qs; bit g of qh[l] is bit 4 of group g's l-th q
//   Q6_K 210 B / 256: u8 ql[128], u8 qh[64], i8 scales[16] (one per 16 weights), h d
//     q = (4 low bits | 2 high bits << 4) - 32, value = (d * scales[k]) * q
#pragma once
#include "radial_kernels.h"
#include <string.h>

enum {
    GT_F32 = 0, GT_F16 = 1, GT_Q4_0 = 2, GT_Q4_1 = 3, GT_Q5_0 = 6, GT_Q5_1 = 7, GT_Q8_0 = 8,
    GT_Q4_K = 12, GT_Q5_K = 13, GT_Q6_K = 14, GT_BF16 = 30,
};

// Bytes and weights per block (floats: one element per "block").
static inline int gguf_block_bytes(int t) {
    switch (t) {
    case GT_F32: return 4;
    case GT_F16: case GT_BF16: return 2;
    case GT_Q4_0: return 18;
    case GT_Q4_1: return 20;
    case GT_Q5_0: return 22;
    case GT_Q5_1: return 24;
    case GT_Q8_0: return 34;
    case GT_Q4_K: return 144;
    case GT_Q5_K: return 176;
    case GT_Q6_K: return 210;
    default: return 0;
    }
}
static inline int gguf_block_elems(int t) {
    switch (t) {
    case GT_F32: case GT_F16: case GT_BF16: return 1;
    case GT_Q4_K: case GT_Q5_K: case GT_Q6_K: return 256;
    default: return 32;
    }
}
// Types whose values carry an offset (value = scale * q + min): the fp32 kernels add min * (sum of the inputs
// over the group), the int8 kernels min * xs.
static inline int gguf_has_min(int t) { return t == GT_Q4_1 || t == GT_Q5_1 || t == GT_Q4_K || t == GT_Q5_K; }
static inline int gguf_is_float(int t) { return t == GT_F32 || t == GT_F16 || t == GT_BF16; }

// The 6-bit scale and min of group j of a Q4_K/Q5_K block (ggml's get_scale_min_k4).
static inline void gguf_scale_min_k4(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// SIMD entry points (gguf_matmul_avx2.c); they return 0 when they do not handle the type.
int gguf_matmul_avx2(int type, const uint8_t *w, size_t rb, int cols, int r0, int r1,
                     const float *x, int ldx, int n, float *y, int ldy, int acc);
int gguf_matmul_q8_avx2(int type, const uint8_t *w, size_t rb, int cols, int r0, int r1,
                        const int8_t *xq, int ldq, const float *xd, const float *xs, int n,
                        float *y, int ldy, int acc);
int gguf_kquant_q8_avx2(int type, const uint8_t *w, size_t rb, int cols, int r0, int r1,
                        const int8_t *xq, int ldq, const float *xd, const float *xs, int n,
                        float *y, int ldy, int acc);  // gguf_kquant_avx2.c: Q4_K, Q5_K, Q6_K
int gguf_legacy_q8_avx2(int type, const uint8_t *w, size_t rb, int cols, int r0, int r1,
                        const int8_t *xq, int ldq, const float *xd, const float *xs, int n,
                        float *y, int ldy, int acc);  // gguf_legacy_avx2.c: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0
int gguf_simd(void);
int gguf_vnni(void);  // gguf_simd() and AVX512-VNNI with 256-bit registers (vpdpbusd on ymm)
int radial_kernels_extensions_allowed(void);  // kernels.c: 0 while a test forces plain AVX2
