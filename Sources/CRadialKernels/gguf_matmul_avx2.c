// AVX2 + FMA (+ F16C for the fp16 scales) kernels over GGUF blocks read in place, fp32 inputs (the int8-input
// kernels are in gguf_kquant_avx2.c and gguf_legacy_avx2.c). Every quantised type is handled by one pattern:
// per group of 32 weights, the integer values q as 4 x 8 floats (group_q widened; Q4_K: q4k_group), dotted with
// each input, the dot scaled by the group's scale (Q6_K: two dots of 16, each by its own scale) into an 8-lane
// accumulator per input. Offsets (Q4_1, Q5_1, Q4_K, Q5_K: value = scale * q + min) are summed after the row's
// dots, per input, as the dot of the row's mins with the inputs' group sums. Up to 8 inputs share each decoded
// group, so a batch streams the weights once. The arithmetic of an (input, row) pair is the same whatever the
// tile size K and whatever other rows are in the call, so results do not depend on batching or on how rows are
// split.
#include "gguf_avx2.h"
#include <stdlib.h>

// Each product rounds on its own (no contraction into FMAs beyond the explicit ones), so what an expression
// computes is visible in the source.
#pragma STDC FP_CONTRACT OFF

#if defined(__x86_64__)

// sum over g < ng of m[g] * xs[g]: the offset term of one (input, row), after the row's dots (one vector FMA
// per 8 groups instead of a scalar one per group and input).
SIMD_FN INLINE float offset_dot(const float *m, const float *xs, int ng) {
    __m256 a = _mm256_setzero_ps();
    int g = 0;
    for (; g + 8 <= ng; g += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(m + g), _mm256_loadu_ps(xs + g), a);
    float t = hsum8(a);
    for (; g < ng; g++) t += m[g] * xs[g];
    return t;
}

// 0xFF in byte j where bit j of the 32-bit little-endian word at p is set.
SIMD_FN INLINE __m256i bits_to_bytes(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)v),
        _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
    const __m256i m = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    return _mm256_cmpeq_epi8(_mm256_and_si256(spread, m), m);
}

// Low and high nibbles of 16 bytes as elements 0-15 and 16-31 (the legacy layout).
SIMD_FN INLINE __m256i nibbles16(const uint8_t *p) {
    const __m128i v = _mm_loadu_si128((const __m128i *)p), f = _mm_set1_epi8(15);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), f), _mm_and_si128(v, f));
}

// The 32 integer weights of group g of block b as signed bytes.
SIMD_FN INLINE __m256i group_q(const int T, const uint8_t *b, int g) {
    const __m256i f = _mm256_set1_epi8(15);
    switch (T) {
    case GT_Q4_0: return _mm256_sub_epi8(nibbles16(b + 2), _mm256_set1_epi8(8));
    case GT_Q4_1: return nibbles16(b + 4);
    // q - 16 = nibble | (bit ? 0 : 0xF0) as a signed byte
    case GT_Q5_0: return _mm256_or_si256(nibbles16(b + 6), _mm256_andnot_si256(bits_to_bytes(b + 2), _mm256_set1_epi8((char)0xF0)));
    case GT_Q5_1: return _mm256_or_si256(nibbles16(b + 8), _mm256_and_si256(bits_to_bytes(b + 4), _mm256_set1_epi8(16)));
    case GT_Q8_0: return _mm256_loadu_si256((const __m256i *)(b + 2));
    case GT_Q4_K: case GT_Q5_K: {
        const int five = T == GT_Q5_K;
        const __m256i v = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * five + 32 * (g / 2)));
        __m256i q = _mm256_and_si256(g & 1 ? _mm256_srli_epi16(v, 4) : v, f);
        if (five) {
            const __m256i h = _mm256_loadu_si256((const __m256i *)(b + 16));
            q = _mm256_or_si256(q, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(h, _mm_cvtsi32_si128(g)), _mm256_set1_epi8(1)), 4));
        }
        return q;
    }
    default: {  // Q6_K: half g/4, k = g%4 picks ql (low/high 32 bytes, low/high nibble) and the 2 bits of qh
        const int h = g / 4, k = g % 4;
        const __m256i ql = _mm256_loadu_si256((const __m256i *)(b + 64 * h + 32 * (k & 1)));
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * h));
        const __m256i lo = _mm256_and_si256(k >= 2 ? _mm256_srli_epi16(ql, 4) : ql, f);
        const __m256i hi = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * k)), _mm256_set1_epi8(3));
        return _mm256_sub_epi8(_mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)), _mm256_set1_epi8(32));
    }
    }
}

SIMD_FN INLINE void widen(__m256i q, __m256 w[4]) {
    const __m128i a = _mm256_castsi256_si128(q), b = _mm256_extracti128_si256(q, 1);
    w[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(a));
    w[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(a, 8)));
    w[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
    w[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b, 8)));
}

// ---- fp32 inputs ----

// Q4_K's group g as 4 x 8 floats without byte shuffles: in 32-bit lane j of its 32-byte run, nibble h + 2t
// (h = g % 2: low or high nibbles) is element 4j + t, so a shift and a mask give 8 weights ready to convert.
// Widening bytes instead takes three shuffles per 8 weights, and shuffles run on only two of the four vector
// pipes. The inputs are permuted to match (q4k_permute): element 4j + t of each group at 8t + j.
SIMD_FN INLINE void q4k_group(const uint8_t *blk, int g, __m256 w[4]) {
    const __m256i v = _mm256_loadu_si256((const __m256i *)(blk + 16 + 32 * (g / 2))), f = _mm256_set1_epi32(15);
    for (int t = 0; t < 4; t++)
        w[t] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srl_epi32(v, _mm_cvtsi32_si128(4 * (g % 2 + 2 * t))), f));
}

// k inputs (stride ldx) to xt (stride cols) with each group of 32 as a 4 x 8 transpose: xt[8t + j] = x[4j + t].
static void q4k_permute(const float *x, int ldx, int k, int cols, float *xt) {
    for (int i = 0; i < k; i++)
        for (int g = 0; g < cols; g += 32)
            for (int t = 0; t < 4; t++)
                for (int j = 0; j < 8; j++) xt[(size_t)i * cols + g + 8 * t + j] = x[(size_t)i * ldx + g + 4 * j + t];
}
// K inputs (x: K rows, stride ldx; xsum: K rows of ng group sums, used by types with an offset) times rows
// [r0, r1) of a quantised matrix of type T; nblk blocks per row.
SIMD_FN INLINE void rows_f32(const int T, const int K, const uint8_t *w, size_t rb, int nblk, int r0, int r1,
                             const float *x, int ldx, const float *xsum, int ng, float *y, int ldy, int acc) {
    const int G = gguf_block_elems(T) / 32, BB = gguf_block_bytes(T);
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = w + (size_t)r * rb;
        __m256 sum[K];
        float mrow[gguf_has_min(T) ? ng : 1];  // the row's group offsets, for offset_dot
        for (int i = 0; i < K; i++) sum[i] = _mm256_setzero_ps();
        for (int b = 0; b < nblk; b++) {
            const uint8_t *blk = row + (size_t)b * BB;
            block_scales s;
            scales_of(T, blk, &s);
            if (gguf_has_min(T)) memcpy(mrow + b * G, s.mn, sizeof(float) * G);
            for (int g = 0; g < G; g++) {
                const int gi = b * G + g;
                __m256 wv[4];
                if (T == GT_Q4_K) q4k_group(blk, g, wv);
                else widen(group_q(T, blk, g), wv);
                for (int i = 0; i < K; i++) {
                    const float *xk = x + (size_t)i * ldx + 32 * gi;
                    if (T == GT_Q6_K) {
                        const __m256 a = _mm256_fmadd_ps(wv[1], _mm256_loadu_ps(xk + 8), _mm256_mul_ps(wv[0], _mm256_loadu_ps(xk)));
                        const __m256 c = _mm256_fmadd_ps(wv[3], _mm256_loadu_ps(xk + 24), _mm256_mul_ps(wv[2], _mm256_loadu_ps(xk + 16)));
                        sum[i] = _mm256_fmadd_ps(a, _mm256_set1_ps(s.s16[2 * (g % 8)]), sum[i]);
                        sum[i] = _mm256_fmadd_ps(c, _mm256_set1_ps(s.s16[2 * (g % 8) + 1]), sum[i]);
                    } else {
                        __m256 d = _mm256_mul_ps(wv[0], _mm256_loadu_ps(xk));
                        d = _mm256_fmadd_ps(wv[1], _mm256_loadu_ps(xk + 8), d);
                        d = _mm256_fmadd_ps(wv[2], _mm256_loadu_ps(xk + 16), d);
                        d = _mm256_fmadd_ps(wv[3], _mm256_loadu_ps(xk + 24), d);
                        sum[i] = _mm256_fmadd_ps(d, _mm256_set1_ps(s.gs[g]), sum[i]);
                    }
                }
            }
        }
        for (int i = 0; i < K; i++) {
            const float v = hsum8(sum[i]) + (gguf_has_min(T) ? offset_dot(mrow, xsum + (size_t)i * ng, ng) : 0.0f);
            float *out = y + (size_t)i * ldy + r;
            *out = acc ? *out + v : v;
        }
    }
}

// Float weights (F32, F16, BF16): 32 columns at a time as above (the running sum waits on one FMA per 32),
// the last cols % 32 in scalar.
SIMD_FN INLINE __m256 load8(const int T, const uint8_t *row, int c) {
    if (T == GT_F32) return _mm256_loadu_ps((const float *)(row + 4 * (size_t)c));
    const __m128i h = _mm_loadu_si128((const __m128i *)(row + 2 * (size_t)c));
    if (T == GT_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
SIMD_FN INLINE float load1(const int T, const uint8_t *row, int c) {
    if (T == GT_F32) { float f; memcpy(&f, row + 4 * (size_t)c, 4); return f; }
    if (T == GT_F16) return h2f(row + 2 * (size_t)c);
    uint32_t b = (uint32_t)row[2 * (size_t)c] << 16 | (uint32_t)row[2 * (size_t)c + 1] << 24;
    float f;
    memcpy(&f, &b, 4);
    return f;
}
SIMD_FN INLINE void rows_float(const int T, const int K, const uint8_t *w, size_t rb, int cols, int r0, int r1,
                               const float *x, int ldx, float *y, int ldy, int acc) {
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = w + (size_t)r * rb;
        __m256 sum[K];
        float tail[K];
        for (int i = 0; i < K; i++) { sum[i] = _mm256_setzero_ps(); tail[i] = 0; }
        int c = 0;
        for (; c + 32 <= cols; c += 32) {
            const __m256 w0 = load8(T, row, c), w1 = load8(T, row, c + 8), w2 = load8(T, row, c + 16), w3 = load8(T, row, c + 24);
            for (int i = 0; i < K; i++) {
                const float *xk = x + (size_t)i * ldx + c;
                __m256 d = _mm256_mul_ps(w0, _mm256_loadu_ps(xk));
                d = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xk + 8), d);
                d = _mm256_fmadd_ps(w2, _mm256_loadu_ps(xk + 16), d);
                d = _mm256_fmadd_ps(w3, _mm256_loadu_ps(xk + 24), d);
                sum[i] = _mm256_add_ps(sum[i], d);
            }
        }
        for (; c < cols; c++) {
            const float wc = load1(T, row, c);
            for (int i = 0; i < K; i++) tail[i] += wc * x[(size_t)i * ldx + c];
        }
        for (int i = 0; i < K; i++) {
            const float v = hsum8(sum[i]) + tail[i];
            float *out = y + (size_t)i * ldy + r;
            *out = acc ? *out + v : v;
        }
    }
}

// ---- one copy per tile size K (constant, so the accumulators stay in registers), a switch over types ----

typedef struct {
    const uint8_t *w; size_t rb; int cols, r0, r1;
    const float *x; int ldx; const float *xsum;
    float *y; int ldy, acc;
} tile_args;

SIMD_FN INLINE void tile_f32(const int K, int t, const tile_args *a) {
    const int nblk = a->cols / gguf_block_elems(t), ng = a->cols / 32;
#define F32_CASE(T) case T: rows_f32(T, K, a->w, a->rb, nblk, a->r0, a->r1, a->x, a->ldx, a->xsum, ng, a->y, a->ldy, a->acc); break;
#define FLT_CASE(T) case T: rows_float(T, K, a->w, a->rb, a->cols, a->r0, a->r1, a->x, a->ldx, a->y, a->ldy, a->acc); break;
    switch (t) {
    F32_CASE(GT_Q4_0) F32_CASE(GT_Q4_1) F32_CASE(GT_Q5_0) F32_CASE(GT_Q5_1) F32_CASE(GT_Q8_0)
    F32_CASE(GT_Q4_K) F32_CASE(GT_Q5_K) F32_CASE(GT_Q6_K)
    FLT_CASE(GT_F32) FLT_CASE(GT_F16) FLT_CASE(GT_BF16)
    }
#undef F32_CASE
#undef FLT_CASE
}

SIMD_FN static void tile_f32_1(int t, const tile_args *a) { tile_f32(1, t, a); }
SIMD_FN static void tile_f32_2(int t, const tile_args *a) { tile_f32(2, t, a); }
SIMD_FN static void tile_f32_3(int t, const tile_args *a) { tile_f32(3, t, a); }
SIMD_FN static void tile_f32_4(int t, const tile_args *a) { tile_f32(4, t, a); }
SIMD_FN static void tile_f32_5(int t, const tile_args *a) { tile_f32(5, t, a); }
SIMD_FN static void tile_f32_6(int t, const tile_args *a) { tile_f32(6, t, a); }
SIMD_FN static void tile_f32_7(int t, const tile_args *a) { tile_f32(7, t, a); }
SIMD_FN static void tile_f32_8(int t, const tile_args *a) { tile_f32(8, t, a); }

static void (*const f32_tiles[8])(int, const tile_args *) = {
    tile_f32_1, tile_f32_2, tile_f32_3, tile_f32_4, tile_f32_5, tile_f32_6, tile_f32_7, tile_f32_8,
};

// Group sums of each input, for the offset term: the same additions whatever the tile.
SIMD_FN static void group_sums(const float *x, int ldx, int k, int ng, float *xsum) {
    for (int i = 0; i < k; i++)
        for (int g = 0; g < ng; g++) {
            const float *xg = x + (size_t)i * ldx + 32 * g;
            const __m256 t = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(xg), _mm256_loadu_ps(xg + 8)),
                                           _mm256_add_ps(_mm256_loadu_ps(xg + 16), _mm256_loadu_ps(xg + 24)));
            xsum[(size_t)i * ng + g] = hsum8(t);
        }
}

SIMD_FN int gguf_matmul_avx2(int t, const uint8_t *w, size_t rb, int cols, int r0, int r1,
                             const float *x, int ldx, int n, float *y, int ldy, int acc) {
    if (!radial_gguf_supported(t)) return 0;
    const int ng = cols / 32, mins = gguf_has_min(t), q4k = t == GT_Q4_K;
    float xsum[mins ? 8 * ng : 1];
    float *xt = q4k ? malloc(sizeof(float) * (size_t)(n < 8 ? n : 8) * cols) : 0;
    if (q4k && !xt) return 0;  // out of memory: the portable kernel, which needs none
    for (int i0 = 0; i0 < n; i0 += 8) {
        const int k = n - i0 < 8 ? n - i0 : 8;
        const float *xi = x + (size_t)i0 * ldx;
        if (mins) group_sums(xi, ldx, k, ng, xsum);  // from x as given, so the sums do not depend on the layout
        if (q4k) q4k_permute(xi, ldx, k, cols, xt);
        const tile_args a = { w, rb, cols, r0, r1, q4k ? xt : xi, q4k ? cols : ldx, xsum, y + (size_t)i0 * ldy, ldy, acc };
        f32_tiles[k - 1](t, &a);
    }
    free(xt);
    return 1;
}

// int8 inputs: gguf_kquant_avx2.c and gguf_legacy_avx2.c.
int gguf_matmul_q8_avx2(int t, const uint8_t *w, size_t rb, int cols, int r0, int r1,
                        const int8_t *xq, int ldq, const float *xd, const float *xs, int n,
                        float *y, int ldy, int acc) {
    if (!radial_gguf_supported(t) || gguf_is_float(t)) return 0;
    if (gguf_block_elems(t) == 256) return gguf_kquant_q8_avx2(t, w, rb, cols, r0, r1, xq, ldq, xd, xs, n, y, ldy, acc);
    return gguf_legacy_q8_avx2(t, w, rb, cols, r0, r1, xq, ldq, xd, xs, n, y, ldy, acc);
}

static int f16c_state = -1;  // benign race, as in kernels.c
int gguf_simd(void) {
    if (!radial_kernels_simd()) return 0;
    if (f16c_state < 0) { __builtin_cpu_init(); f16c_state = __builtin_cpu_supports("f16c"); }
    return f16c_state;
}
static int vnni_state = -1;
int gguf_vnni(void) {
    if (!gguf_simd() || !radial_kernels_extensions_allowed()) return 0;
    if (vnni_state < 0) vnni_state = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl");
    return vnni_state;
}
#else
int gguf_matmul_avx2(int t, const uint8_t *w, size_t rb, int cols, int r0, int r1,
                     const float *x, int ldx, int n, float *y, int ldy, int acc) { return 0; }
int gguf_matmul_q8_avx2(int t, const uint8_t *w, size_t rb, int cols, int r0, int r1,
                        const int8_t *xq, int ldq, const float *xd, const float *xs, int n,
                        float *y, int ldy, int acc) { return 0; }
int gguf_simd(void) { return 0; }
int gguf_vnni(void) { return 0; }
#endif
