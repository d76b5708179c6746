// Dequantisation of the repacked Q4/Q8 layouts (radial_kernels.h) to fp32 rows, for prefill tiles: sgemm runs on
// the result. value = q * d (+ m), as a multiply then an add (never fused), so the floats equal the file's own
// dequantisation bit for bit on every path.
#include "radial_kernels.h"

#pragma STDC FP_CONTRACT OFF

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define RADIAL_X86 1
#endif

static void dequantize_q4_generic(const uint8_t *qs, const float *d, const float *m, int nb, int r0, int r1,
                                  float *out, int ldo) {
    for (int r = r0; r < r1; r++) {
        float *y = out + (size_t)(r - r0) * ldo;
        for (int b = 0; b < nb; b++) {
            const size_t k = (size_t)r * nb + b;
            const uint8_t *q = qs + k * 16;
            const float s = d[k], o = m[k];
            for (int j = 0; j < 16; j++) {
                float lo = (float)(q[j] & 0x0F) * s, hi = (float)(q[j] >> 4) * s;
                y[b * 32 + j] = lo + o;
                y[b * 32 + j + 16] = hi + o;
            }
        }
    }
}

static void dequantize_q8_generic(const int8_t *qs, const float *d, int nb, int r0, int r1, float *out, int ldo) {
    for (int r = r0; r < r1; r++) {
        float *y = out + (size_t)(r - r0) * ldo;
        for (int b = 0; b < nb; b++) {
            const size_t k = (size_t)r * nb + b;
            for (int j = 0; j < 32; j++) y[b * 32 + j] = (float)qs[k * 32 + j] * d[k];
        }
    }
}

#ifdef RADIAL_X86
#define SIMD_FN __attribute__((target("avx2,fma")))

// 8 unsigned bytes → 8 floats.
SIMD_FN static inline __m256 bytes_to_floats(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)); }

SIMD_FN static void dequantize_q4_avx2(const uint8_t *qs, const float *d, const float *m, int nb, int r0, int r1,
                                       float *out, int ldo) {
    const __m128i low = _mm_set1_epi8(0x0F);
    for (int r = r0; r < r1; r++) {
        float *y = out + (size_t)(r - r0) * ldo;
        for (int b = 0; b < nb; b++) {
            const size_t k = (size_t)r * nb + b;
            const __m128i q = _mm_loadu_si128((const __m128i *)(qs + k * 16));
            const __m128i lo = _mm_and_si128(q, low), hi = _mm_and_si128(_mm_srli_epi16(q, 4), low);
            const __m256 s = _mm256_set1_ps(d[k]), o = _mm256_set1_ps(m[k]);
            float *yb = y + b * 32;
            _mm256_storeu_ps(yb, _mm256_add_ps(_mm256_mul_ps(bytes_to_floats(lo), s), o));
            _mm256_storeu_ps(yb + 8, _mm256_add_ps(_mm256_mul_ps(bytes_to_floats(_mm_srli_si128(lo, 8)), s), o));
            _mm256_storeu_ps(yb + 16, _mm256_add_ps(_mm256_mul_ps(bytes_to_floats(hi), s), o));
            _mm256_storeu_ps(yb + 24, _mm256_add_ps(_mm256_mul_ps(bytes_to_floats(_mm_srli_si128(hi, 8)), s), o));
        }
    }
}

SIMD_FN static void dequantize_q8_avx2(const int8_t *qs, const float *d, int nb, int r0, int r1, float *out, int ldo) {
    for (int r = r0; r < r1; r++) {
        float *y = out + (size_t)(r - r0) * ldo;
        for (int b = 0; b < nb; b++) {
            const size_t k = (size_t)r * nb + b;
            const __m256 s = _mm256_set1_ps(d[k]);
            for (int j = 0; j < 32; j += 8) {
                const __m128i q = _mm_loadl_epi64((const __m128i *)(qs + k * 32 + j));
                _mm256_storeu_ps(y + b * 32 + j, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), s));
            }
        }
    }
}
#endif

void radial_dequantize_q4(const uint8_t *qs, const float *d, const float *m, int nb, int row_begin, int row_end,
                          float *out, int ldo) {
#ifdef RADIAL_X86
    if (radial_kernels_simd()) { dequantize_q4_avx2(qs, d, m, nb, row_begin, row_end, out, ldo); return; }
#endif
    dequantize_q4_generic(qs, d, m, nb, row_begin, row_end, out, ldo);
}

void radial_dequantize_q8(const int8_t *qs, const float *d, int nb, int row_begin, int row_end, float *out, int ldo) {
#ifdef RADIAL_X86
    if (radial_kernels_simd()) { dequantize_q8_avx2(qs, d, nb, row_begin, row_end, out, ldo); return; }
#endif
    dequantize_q8_generic(qs, d, nb, row_begin, row_end, out, ldo);
}
