// Helpers shared by the AVX2 GGUF kernels (gguf_matmul_avx2.c: every type; gguf_kquant_avx2.c: K-quants times
// int8 inputs). x86-64 only; every function carries its target, so the files build without -mavx2.
#pragma once
#include "gguf_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define SIMD_FN __attribute__((target("avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))

SIMD_FN INLINE float h2f(const uint8_t *p) { uint16_t h; memcpy(&h, p, 2); return _cvtsh_ss(h); }

SIMD_FN INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// Per-block scales, one entry per group (per 16 for Q6_K): see decode_row in gguf_matmul.c, same values.
typedef struct { float gs[8], mn[8], s16[16]; int8_t is16[16]; } block_scales;

SIMD_FN INLINE void scales_of(const int T, const uint8_t *b, block_scales *s) {
    if (T == GT_Q4_K || T == GT_Q5_K) {
        // The 12 packed bytes to 8 scale bytes and 8 min bytes in two words each (gguf_scale_min_k4 for all
        // eight groups at once, as llama.cpp's kmask shuffle), then d * sc and -(dmin * m) eight at a time.
        uint32_t u[4];
        memcpy(u, b + 4, 12);
        u[3] = ((u[2] >> 4) & 0x0F0F0F0F) | (((u[1] >> 6) & 0x03030303) << 4);
        const uint32_t mins_lo = u[1] & 0x3F3F3F3F;
        u[1] = (u[2] & 0x0F0F0F0F) | (((u[0] >> 6) & 0x03030303) << 4);
        u[2] = mins_lo;
        u[0] &= 0x3F3F3F3F;
        const __m256 sc = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)u)));
        const __m256 mn = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(u + 2))));
        _mm256_storeu_ps(s->gs, _mm256_mul_ps(_mm256_set1_ps(h2f(b)), sc));
        _mm256_storeu_ps(s->mn, _mm256_xor_ps(_mm256_mul_ps(_mm256_set1_ps(h2f(b + 2)), mn), _mm256_set1_ps(-0.0f)));
    } else if (T == GT_Q6_K) {
        const float d = h2f(b + 208);
        memcpy(s->is16, b + 192, 16);
        for (int k = 0; k < 16; k++) s->s16[k] = d * (float)s->is16[k];
        s->gs[0] = d;
    } else {
        s->gs[0] = h2f(b);
        s->mn[0] = T == GT_Q4_1 || T == GT_Q5_1 ? h2f(b + 2) : 0.0f;
    }
}

// vpdpbusd (AVX512-VNNI on 256-bit registers): acc + the sums of four u8 x s8 products per 32-bit lane, one
// instruction for maddubs + madd. Written as asm so the kernels around it stay compiled for plain AVX2 and one
// body serves both paths; only reached when gguf_vnni() said the CPU has it.
SIMD_FN INLINE __m256i dpbusd(__m256i acc, __m256i u, __m256i s) {
    __asm__("vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(u), "x"(s));
    return acc;
}

// acc + in lane j the sum of u[4j..4j+3] * s[4j..4j+3] (u unsigned, s signed bytes), exact in int32
// (maddubs' pair sums stay below 2^15 for the weights here: u <= 128, |s| <= 127).
SIMD_FN INLINE __m256i dot4(const int vnni, __m256i acc, __m256i u, __m256i s) {
    if (vnni) return dpbusd(acc, u, s);
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}

// The same with the signed bytes read from memory (32 bytes at p), folded into the instruction.
SIMD_FN INLINE __m256i dot4_at(const int vnni, __m256i acc, __m256i u, const int8_t *p) {
    if (!vnni) return dot4(0, acc, u, _mm256_loadu_si256((const __m256i *)p));
    __asm__("vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(u), "m"(*(const __m256i *)p));
    return acc;
}

// Asks for the weights 2 KiB past [p, p + n), one request per 64 bytes, as the kernel reaches p. The hardware
// prefetchers alone do not keep one row stream far enough ahead: on an AMD EPYC (Zen 3) VM a one-thread Q4_K x
// int8 pass over weights in DRAM streamed 6.2 GB/s without this and 8.6-9.2 GB/s with 2-4 KiB ahead, Q6_K 6.1 ->
// 9 GB/s (bench/gguf_bench.c 32768 4096); weights that sit in L3 run as before. A prefetch never faults, so asking
// past the end of the mapping is harmless.
SIMD_FN INLINE void prefetch_ahead(const uint8_t *p, int n) {
    for (int o = 0; o < n; o += 64) _mm_prefetch((const char *)p + 2048 + o, _MM_HINT_T0);
}

// ---- shared by the int8-input kernels (gguf_kquant_avx2.c, gguf_legacy_avx2.c) ----

// out[m], 32-bit lane j: dword m + 4 * (j / 4) of v[j % 4]. Over m = 0..3, lane j < 4 meets dwords 0-3
// (elements 0-15) of v[j], lane j + 4 dwords 4-7 (elements 16-31): two lanes per source, one per 16.
SIMD_FN INLINE void transpose4(__m256i a, __m256i b, __m256i c, __m256i d, __m256i out[4]) {
    const __m256i ab0 = _mm256_unpacklo_epi32(a, b), ab1 = _mm256_unpackhi_epi32(a, b);
    const __m256i cd0 = _mm256_unpacklo_epi32(c, d), cd1 = _mm256_unpackhi_epi32(c, d);
    out[0] = _mm256_unpacklo_epi64(ab0, cd0);
    out[1] = _mm256_unpackhi_epi64(ab0, cd0);
    out[2] = _mm256_unpacklo_epi64(ab1, cd1);
    out[3] = _mm256_unpackhi_epi64(ab1, cd1);
}

// Eight groups of one input (a K-quant block, or eight consecutive 32-weight blocks) as the int8 kernels read
// them, prepared once per call.
typedef struct {
    int8_t x[2][4][32];  // [accumulator][m]: the groups transposed as the kernel's weights are
    float xd[8], xs[8];  // scale and d * sum(q) per lane of the final vector
    int32_t s32[2][8];   // integer sums per lane (Q6_K: 32 * each 16's; the 32-weight types: each group's)
} kq_input;

// One call's tile: rows [r0, r1) of w times K prepared inputs (nsb prepared blocks per input).
typedef struct {
    const uint8_t *w; size_t rb; int ng, nsb, r0, r1;
    const kq_input *xp;
    float *y; int ldy, acc;
} q8_tile;
#endif
