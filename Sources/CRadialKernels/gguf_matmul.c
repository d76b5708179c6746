// Matrix products with weights in their GGUF block layout, read in place from the mapped file (see
// gguf_internal.h for the layouts). This file: the public entry points, dequantisation (bit for bit ggml's
// dequantize_row_*), and the portable kernels, which are also the reference for the AVX2 ones.
#include "gguf_internal.h"
#include <stdlib.h>

// Products must round separately, as ggml's reference and Dequantize.swift do (y = q*d + m is two roundings,
// not an FMA); clang honours this pragma, and the package builds with clang.
#pragma STDC FP_CONTRACT OFF

int radial_gguf_supported(int t) { return gguf_block_bytes(t) != 0; }

// fp16 and bf16 to fp32, exact (every half is a float), without F16C so this file runs anywhere.
static float half_at(const uint8_t *p) {
    const uint32_t h = (uint32_t)p[0] | (uint32_t)p[1] << 8;
    uint32_t sign = (h & 0x8000) << 16, exp = (h >> 10) & 31, man = h & 0x3FF, bits;
    if (exp == 31) {
        bits = sign | 0x7F800000 | man << 13;
    } else if (exp != 0) {
        bits = sign | (exp + 112) << 23 | man << 13;
    } else if (man == 0) {
        bits = sign;
    } else {  // subnormal half: normalise (value man * 2^-24)
        int e = -1;
        do { e++; man <<= 1; } while (!(man & 0x400));
        bits = sign | (uint32_t)(112 - e) << 23 | (man & 0x3FF) << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
static float bf16_at(const uint8_t *p) {
    const uint32_t bits = ((uint32_t)p[0] | (uint32_t)p[1] << 8) << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
static float f32_at(const uint8_t *p) { float f; memcpy(&f, p, 4); return f; }

// ---- dequantisation: one block to its gguf_block_elems(t) floats, same operations as ggml's reference ----

static void dequant_block(int t, const uint8_t *b, float *y) {
    switch (t) {
    case GT_F32: y[0] = f32_at(b); return;
    case GT_F16: y[0] = half_at(b); return;
    case GT_BF16: y[0] = bf16_at(b); return;
    case GT_Q4_0: {
        const float d = half_at(b);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)((b[2 + j] & 15) - 8) * d;
            y[j + 16] = (float)((b[2 + j] >> 4) - 8) * d;
        }
        return;
    }
    case GT_Q4_1: {
        const float d = half_at(b), m = half_at(b + 2);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)(b[4 + j] & 15) * d + m;
            y[j + 16] = (float)(b[4 + j] >> 4) * d + m;
        }
        return;
    }
    case GT_Q5_0: case GT_Q5_1: {
        const int one = t == GT_Q5_1;  // Q5_1: + m, no -16
        const float d = half_at(b), m = one ? half_at(b + 2) : 0;
        const uint8_t *qh = b + 2 + 2 * one, *qs = qh + 4;
        const uint32_t h = (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
        for (int j = 0; j < 16; j++) {
            const int x0 = (qs[j] & 15) | ((h >> j) << 4 & 16), x1 = (qs[j] >> 4) | ((h >> (j + 12)) & 16);
            if (one) { y[j] = (float)x0 * d + m; y[j + 16] = (float)x1 * d + m; }
            else { y[j] = (float)(x0 - 16) * d; y[j + 16] = (float)(x1 - 16) * d; }
        }
        return;
    }
    case GT_Q8_0: {
        const float d = half_at(b);
        for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[2 + j] * d;
        return;
    }
    case GT_Q4_K: case GT_Q5_K: {
        const int five = t == GT_Q5_K;
        const float d = half_at(b), dmin = half_at(b + 2);
        const uint8_t *qh = b + 16, *q = b + 16 + 32 * five;
        for (int c = 0; c < 4; c++, q += 32) {
            int sc, m;
            gguf_scale_min_k4(2 * c, b + 4, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            gguf_scale_min_k4(2 * c + 1, b + 4, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++) {
                const int h1 = five ? (qh[l] >> (2 * c) & 1) << 4 : 0, h2 = five ? (qh[l] >> (2 * c + 1) & 1) << 4 : 0;
                y[64 * c + l] = d1 * (float)((q[l] & 15) + h1) - m1;
                y[64 * c + 32 + l] = d2 * (float)((q[l] >> 4) + h2) - m2;
            }
        }
        return;
    }
    case GT_Q6_K: {
        const float d = half_at(b + 208);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = b + 64 * h, *qh = b + 128 + 32 * h;
            const int8_t *sc = (const int8_t *)(b + 192 + 8 * h);
            float *o = y + 128 * h;
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 15) | ((qh[l] >> 0) & 3) << 4) - 32;
                const int q2 = ((ql[l + 32] & 15) | ((qh[l] >> 2) & 3) << 4) - 32;
                const int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
                const int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
                o[l] = d * (float)sc[is + 0] * (float)q1;
                o[l + 32] = d * (float)sc[is + 2] * (float)q2;
                o[l + 64] = d * (float)sc[is + 4] * (float)q3;
                o[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
        return;
    }
    }
}

void radial_gguf_dequantize_rows(int t, const void *w, size_t rb, int cols, int r0, int r1, float *out, int ldo) {
    const int be = gguf_block_elems(t), bb = gguf_block_bytes(t);
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * rb;
        float *o = out + (size_t)(r - r0) * ldo;
        for (int c = 0, b = 0; c < cols; c += be, b++) dequant_block(t, row + (size_t)b * bb, o + c);
    }
}

// ---- portable kernels ----

// One quantised row decoded for the portable kernels, per group g of 32 (and half-group k of 16):
//   fp32 inputs:  value[c] = s16[c/16] * q[c] + mn[c/32]
//   int8 inputs:  group dot = (gs[g] * xd) * (is16[2g] * idot(first 16) + is16[2g+1] * idot(last 16)) + mn[g] * xs
// s16 equals gs except for Q6_K (gs = d, s16 = d * scale, is16 = scale); is16 is 1 elsewhere.
typedef struct { int8_t *q; float *s16, *gs, *mn; int *is16; } decoded_row;

static void decode_row(int t, const uint8_t *row, int cols, decoded_row o) {
    const int be = gguf_block_elems(t), bb = gguf_block_bytes(t);
    for (int b = 0; b * be < cols; b++) {
        const uint8_t *p = row + (size_t)b * bb;
        int8_t *q = o.q + b * be;
        const int g0 = b * be / 32;
        if (t == GT_Q6_K) {
            const float d = half_at(p + 208);
            for (int h = 0; h < 2; h++) {
                const uint8_t *ql = p + 64 * h, *qh = p + 128 + 32 * h;
                for (int l = 0; l < 32; l++) {
                    q[128 * h + l] = (int8_t)(((ql[l] & 15) | ((qh[l] >> 0) & 3) << 4) - 32);
                    q[128 * h + l + 32] = (int8_t)(((ql[l + 32] & 15) | ((qh[l] >> 2) & 3) << 4) - 32);
                    q[128 * h + l + 64] = (int8_t)(((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32);
                    q[128 * h + l + 96] = (int8_t)(((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32);
                }
            }
            for (int k = 0; k < 16; k++) {
                const int8_t s = (int8_t)p[192 + k];
                o.s16[2 * g0 + k] = d * (float)s;
                o.is16[2 * g0 + k] = s;
            }
            for (int g = 0; g < 8; g++) { o.gs[g0 + g] = d; o.mn[g0 + g] = 0; }
            continue;
        }
        if (t == GT_Q4_K || t == GT_Q5_K) {
            const int five = t == GT_Q5_K;
            const float d = half_at(p), dmin = half_at(p + 2);
            const uint8_t *qh = p + 16, *qs = p + 16 + 32 * five;
            for (int g = 0; g < 8; g++) {
                int sc, m;
                gguf_scale_min_k4(g, p + 4, &sc, &m);
                o.gs[g0 + g] = d * (float)sc;
                o.mn[g0 + g] = -(dmin * (float)m);
                for (int l = 0; l < 32; l++) {
                    const int nib = g & 1 ? qs[32 * (g / 2) + l] >> 4 : qs[32 * (g / 2) + l] & 15;
                    q[32 * g + l] = (int8_t)(nib | (five ? (qh[l] >> g & 1) << 4 : 0));
                }
            }
        } else {  // the 32-weight types
            o.gs[g0] = half_at(p);
            o.mn[g0] = t == GT_Q4_1 || t == GT_Q5_1 ? half_at(p + 2) : 0;
            if (t == GT_Q8_0) {
                memcpy(q, p + 2, 32);
            } else {
                const int five = t == GT_Q5_0 || t == GT_Q5_1, bias = t == GT_Q4_0 ? 8 : t == GT_Q5_0 ? 16 : 0;
                const uint8_t *qh = p + (t == GT_Q5_1 ? 4 : 2), *qs = p + 2 + 2 * (t == GT_Q4_1) + 4 * five + 2 * (t == GT_Q5_1);
                const uint32_t h = five ? (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24 : 0;
                for (int j = 0; j < 16; j++) {
                    q[j] = (int8_t)(((qs[j] & 15) | ((h >> j) & 1) << 4) - bias);
                    q[j + 16] = (int8_t)(((qs[j] >> 4) | ((h >> (j + 16)) & 1) << 4) - bias);
                }
            }
        }
        for (int g = g0; g < g0 + be / 32; g++) { o.s16[2 * g] = o.s16[2 * g + 1] = o.gs[g]; o.is16[2 * g] = o.is16[2 * g + 1] = 1; }
    }
}

static float float_weight(int t, const uint8_t *row, int c) {
    return t == GT_F32 ? f32_at(row + 4 * (size_t)c) : t == GT_F16 ? half_at(row + 2 * (size_t)c) : bf16_at(row + 2 * (size_t)c);
}

// fp32 inputs: per (row, input) the groups in order; within a group two sums of 16, each scaled, then the
// offset term summed separately and added last.
static void matmul_generic(int t, const uint8_t *w, size_t rb, int cols, int r0, int r1,
                           const float *x, int ldx, int n, float *y, int ldy, int acc) {
    if (gguf_is_float(t)) {
        for (int r = r0; r < r1; r++) {
            const uint8_t *row = w + (size_t)r * rb;
            for (int i = 0; i < n; i++) {
                const float *xi = x + (size_t)i * ldx;
                float s = 0;
                for (int c = 0; c < cols; c++) s += float_weight(t, row, c) * xi[c];
                float *out = y + (size_t)i * ldy + r;
                *out = acc ? *out + s : s;
            }
        }
        return;
    }
    const int ng = cols / 32;
    int8_t q[cols];
    float s16[2 * ng], gs[ng], mn[ng];
    int is16[2 * ng];
    float *xsum = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1) * ng);
    for (int i = 0; i < n; i++)
        for (int g = 0; g < ng; g++) {
            float s = 0;
            for (int j = 0; j < 32; j++) s += x[(size_t)i * ldx + 32 * g + j];
            xsum[(size_t)i * ng + g] = s;
        }
    for (int r = r0; r < r1; r++) {
        decode_row(t, w + (size_t)r * rb, cols, (decoded_row){q, s16, gs, mn, is16});
        for (int i = 0; i < n; i++) {
            const float *xi = x + (size_t)i * ldx;
            float sum = 0, off = 0;
            for (int g = 0; g < ng; g++) {
                float a = 0, b = 0;
                for (int j = 0; j < 16; j++) a += (float)q[32 * g + j] * xi[32 * g + j];
                for (int j = 16; j < 32; j++) b += (float)q[32 * g + j] * xi[32 * g + j];
                sum += s16[2 * g] * a;
                sum += s16[2 * g + 1] * b;
                off += mn[g] * xsum[(size_t)i * ng + g];
            }
            float *out = y + (size_t)i * ldy + r;
            *out = acc ? *out + (sum + off) : sum + off;
        }
    }
    free(xsum);
}

static void matmul_q8_generic(int t, const uint8_t *w, size_t rb, int cols, int r0, int r1,
                              const int8_t *xq, int ldq, const float *xd, const float *xs, int n,
                              float *y, int ldy, int acc) {
    const int ng = cols / 32;
    int8_t q[cols];
    float s16[2 * ng], gs[ng], mn[ng];
    int is16[2 * ng];
    for (int r = r0; r < r1; r++) {
        decode_row(t, w + (size_t)r * rb, cols, (decoded_row){q, s16, gs, mn, is16});
        for (int i = 0; i < n; i++) {
            const int8_t *xi = xq + (size_t)i * ldq;
            float sum = 0, off = 0;
            for (int g = 0; g < ng; g++) {
                int a = 0, b = 0;
                for (int j = 0; j < 16; j++) a += q[32 * g + j] * xi[32 * g + j];
                for (int j = 16; j < 32; j++) b += q[32 * g + j] * xi[32 * g + j];
                const int isum = is16[2 * g] * a + is16[2 * g + 1] * b;
                sum += (gs[g] * xd[(size_t)i * ng + g]) * (float)isum;
                off += mn[g] * xs[(size_t)i * ng + g];
            }
            float *out = y + (size_t)i * ldy + r;
            *out = acc ? *out + (sum + off) : sum + off;
        }
    }
}

void radial_gguf_matmul(int t, const void *w, size_t rb, int cols, int r0, int r1,
                        const float *x, int ldx, int n, float *y, int ldy, int acc) {
    if (r0 >= r1 || n <= 0) return;
    if (gguf_simd() && gguf_matmul_avx2(t, w, rb, cols, r0, r1, x, ldx, n, y, ldy, acc)) return;
    matmul_generic(t, w, rb, cols, r0, r1, x, ldx, n, y, ldy, acc);
}

void radial_gguf_matmul_q8(int t, const void *w, size_t rb, int cols, int r0, int r1,
                           const int8_t *xq, int ldq, const float *xd, const float *xs, int n,
                           float *y, int ldy, int acc) {
    if (r0 >= r1 || n <= 0 || gguf_is_float(t)) return;
    if (gguf_simd() && gguf_matmul_q8_avx2(t, w, rb, cols, r0, r1, xq, ldq, xd, xs, n, y, ldy, acc)) return;
    matmul_q8_generic(t, w, rb, cols, r0, r1, xq, ldq, xd, xs, n, y, ldy, acc);
}
