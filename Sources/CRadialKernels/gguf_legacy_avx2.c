// Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 times int8 inputs (radial_gguf_matmul_q8), AVX2 with AVX512-VNNI dot
// products where the CPU has them. Eight consecutive blocks (groups) are handled as one unit the way a K-quant
// block is in gguf_kquant_avx2.c: weights transposed so that each 32-bit lane only meets one block's bytes,
// inputs transposed the same way once per call, so eight dpbusd per unit and input leave block j's exact
// integer dot in one lane, then one conversion and one or two FMAs. A row's last unit, when the groups do not
// fill it, is padded with zero blocks (and zero inputs), which add exact zeros.
#include "gguf_avx2.h"
#include <stdlib.h>

// Each product rounds on its own, as in gguf_matmul_avx2.c.
#pragma STDC FP_CONTRACT OFF

#if defined(__x86_64__)

// Lane j of a unit holds block lq_block[j] (transpose4 over block pairs: lanes 0-3 the first of each pair).
static const int lq_block[8] = {0, 2, 4, 6, 1, 3, 5, 7};

// The first 16 bytes at lo, then the first 16 at hi.
SIMD_FN INLINE __m256i pair16(const uint8_t *lo, const uint8_t *hi) {
    return _mm256_loadu2_m128i((const __m128i *)hi, (const __m128i *)lo);
}

// Group g's 32 inputs are elements 0-15 (x[0]) and 16-31 (x[1]), as the weights' low and high nibbles are.
SIMD_FN INLINE void lq_prepare(const int vnni, const int8_t *xq, const float *xd, const float *xs, int ng,
                               kq_input *out) {
    const __m256i order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    for (int u = 0; u * 8 < ng; u++) {
        const int n = ng - 8 * u < 8 ? ng - 8 * u : 8;
        __m256i g[8], lo[4], hi[4], t[2][4];
        float d[8] = {0}, s[8] = {0};
        for (int j = 0; j < 8; j++)
            g[j] = j < n ? _mm256_loadu_si256((const __m256i *)(xq + 32 * (8 * u + j))) : _mm256_setzero_si256();
        memcpy(d, xd + 8 * u, sizeof(float) * n);
        memcpy(s, xs + 8 * u, sizeof(float) * n);
        for (int p = 0; p < 4; p++) {
            lo[p] = _mm256_permute2x128_si256(g[2 * p], g[2 * p + 1], 0x20);
            hi[p] = _mm256_permute2x128_si256(g[2 * p], g[2 * p + 1], 0x31);
        }
        transpose4(lo[0], lo[1], lo[2], lo[3], t[0]);
        transpose4(hi[0], hi[1], hi[2], hi[3], t[1]);
        kq_input *o = out + u;
        __m256i sum = _mm256_setzero_si256();  // each block's sum of q, for the types whose q carry a bias
        for (int h = 0; h < 2; h++)
            for (int m = 0; m < 4; m++) {
                _mm256_storeu_si256((__m256i *)o->x[h][m], t[h][m]);
                sum = dot4(vnni, sum, _mm256_set1_epi8(1), t[h][m]);
            }
        _mm256_storeu_si256((__m256i *)o->s32[0], sum);
        _mm256_storeu_ps(o->xd, _mm256_permutevar8x32_ps(_mm256_loadu_ps(d), order));
        _mm256_storeu_ps(o->xs, _mm256_permutevar8x32_ps(_mm256_loadu_ps(s), order));
    }
}

// 0x10 in byte k of each 32-bit lane where bit s + k of the lane is set (k < 4): four elements' fifth bits.
SIMD_FN INLINE __m256i fifth_bits(__m256i h, int s) {
    const __m256i spread = _mm256_shuffle_epi8(_mm256_srl_epi32(h, _mm_cvtsi32_si128(s)),
        _mm256_setr_epi8(0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12, 0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12));
    const __m256i bit = _mm256_set1_epi32(0x08040201);
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(16));
}

// fp16 at byte off of each of the unit's blocks, in lane order.
SIMD_FN INLINE __m256 lq_halves(const uint8_t *u, int bb, int off) {
    uint16_t h[8];
    for (int j = 0; j < 8; j++) memcpy(h + j, u + lq_block[j] * bb + off, 2);
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h));
}

// The unit's weights, transposed: wl elements 0-15 of each block, wh 16-31. Unsigned (nibble, or nibble | fifth
// bit) except Q8_0's, which stay signed.
SIMD_FN INLINE void lq_weights(const int T, const uint8_t *u, __m256i wl[4], __m256i wh[4]) {
    const int BB = gguf_block_bytes(T);
    if (T == GT_Q8_0) {
        __m256i lo[4], hi[4];
        for (int p = 0; p < 4; p++) {
            lo[p] = pair16(u + 2 * p * BB + 2, u + (2 * p + 1) * BB + 2);
            hi[p] = pair16(u + 2 * p * BB + 18, u + (2 * p + 1) * BB + 18);
        }
        transpose4(lo[0], lo[1], lo[2], lo[3], wl);
        transpose4(hi[0], hi[1], hi[2], hi[3], wh);
        return;
    }
    const int qs = T == GT_Q4_0 ? 2 : T == GT_Q4_1 ? 4 : T == GT_Q5_0 ? 6 : 8, five = T == GT_Q5_0 || T == GT_Q5_1;
    __m256i v[4], t[4];
    for (int p = 0; p < 4; p++) v[p] = pair16(u + 2 * p * BB + qs, u + (2 * p + 1) * BB + qs);
    transpose4(v[0], v[1], v[2], v[3], t);
    __m256i h = _mm256_setzero_si256();
    if (five) {  // each block's 32-bit qh in its lane (bit e: element e)
        uint32_t q[8];
        for (int j = 0; j < 8; j++) memcpy(q + j, u + lq_block[j] * BB + qs - 4, 4);
        h = _mm256_loadu_si256((const __m256i *)q);
    }
    const __m256i f = _mm256_set1_epi8(15);
    for (int m = 0; m < 4; m++) {  // dword m of a block's qs: elements 4m..4m+3 (low nibbles), 16 + 4m.. (high)
        wl[m] = _mm256_and_si256(t[m], f);
        wh[m] = _mm256_and_si256(_mm256_srli_epi16(t[m], 4), f);
        if (five) {
            wl[m] = _mm256_or_si256(wl[m], fifth_bits(h, 4 * m));
            wh[m] = _mm256_or_si256(wh[m], fifth_bits(h, 16 + 4 * m));
        }
    }
}

SIMD_FN INLINE void rows_q8_legacy(const int T, const int K, const int vnni, const q8_tile *a) {
    const int BB = gguf_block_bytes(T), ng = a->ng, full = ng / 8, mins = gguf_has_min(T);
    // Q8_0 with VNNI: q + 128 on the unsigned side; without, |q| there and q's sign moved onto the input (maddubs
    // would saturate on q + 128). The biased types subtract bias * (the input's sum) from the unit's dots.
    const int signs = T == GT_Q8_0 && !vnni;
    const int bias_shift = T == GT_Q4_0 ? 3 : T == GT_Q5_0 ? 4 : T == GT_Q8_0 && vnni ? 7 : 0;
    uint8_t pad[8 * 34];
    for (int r = a->r0; r < a->r1; r++) {
        const uint8_t *row = a->w + (size_t)r * a->rb;
        __m256 sum[K];
        for (int i = 0; i < K; i++) sum[i] = _mm256_setzero_ps();
        for (int un = 0; un < a->nsb; un++) {
            const uint8_t *u = row + (size_t)un * 8 * BB;
            prefetch_ahead(u, 8 * BB);
            if (un == full) {  // the last groups, padded to eight with zero blocks
                memset(pad, 0, sizeof pad);
                memcpy(pad, u, (size_t)(ng - 8 * full) * BB);
                u = pad;
            }
            __m256i wl[4], wh[4];
            lq_weights(T, u, wl, wh);
            if (T == GT_Q8_0 && vnni)
                for (int m = 0; m < 4; m++) {
                    wl[m] = _mm256_xor_si256(wl[m], _mm256_set1_epi8((char)0x80));
                    wh[m] = _mm256_xor_si256(wh[m], _mm256_set1_epi8((char)0x80));
                }
            const __m256 gs = lq_halves(u, BB, 0), mn = mins ? lq_halves(u, BB, 2) : _mm256_setzero_ps();
            for (int i = 0; i < K; i++) {
                const kq_input *x = a->xp + (size_t)i * a->nsb + un;
                __m256i al = _mm256_setzero_si256(), ah = _mm256_setzero_si256();
                for (int m = 0; m < 4; m++) {
                    if (signs) {
                        const __m256i xl = _mm256_loadu_si256((const __m256i *)x->x[0][m]);
                        const __m256i xh = _mm256_loadu_si256((const __m256i *)x->x[1][m]);
                        al = dot4(0, al, _mm256_sign_epi8(wl[m], wl[m]), _mm256_sign_epi8(xl, wl[m]));
                        ah = dot4(0, ah, _mm256_sign_epi8(wh[m], wh[m]), _mm256_sign_epi8(xh, wh[m]));
                    } else {
                        al = dot4_at(vnni, al, wl[m], x->x[0][m]);
                        ah = dot4_at(vnni, ah, wh[m], x->x[1][m]);
                    }
                }
                __m256i dot = _mm256_add_epi32(al, ah);
                if (bias_shift)
                    dot = _mm256_sub_epi32(dot, _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)x->s32[0]), bias_shift));
                sum[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(gs, _mm256_loadu_ps(x->xd)), sum[i]);
                if (mins) sum[i] = _mm256_fmadd_ps(mn, _mm256_loadu_ps(x->xs), sum[i]);
            }
        }
        for (int i = 0; i < K; i++) {
            const float v = hsum8(sum[i]);
            float *out = a->y + (size_t)i * a->ldy + r;
            *out = a->acc ? *out + v : v;
        }
    }
}

// ---- one copy per tile size K and dot product, a switch over the five types ----

SIMD_FN INLINE void lq_tile(const int K, const int vnni, int t, const q8_tile *a) {
    switch (t) {
    case GT_Q4_0: rows_q8_legacy(GT_Q4_0, K, vnni, a); break;
    case GT_Q4_1: rows_q8_legacy(GT_Q4_1, K, vnni, a); break;
    case GT_Q5_0: rows_q8_legacy(GT_Q5_0, K, vnni, a); break;
    case GT_Q5_1: rows_q8_legacy(GT_Q5_1, K, vnni, a); break;
    case GT_Q8_0: rows_q8_legacy(GT_Q8_0, K, vnni, a); break;
    }
}

SIMD_FN static void lq_tile_1(int t, const q8_tile *a) { lq_tile(1, 0, t, a); }
SIMD_FN static void lq_tile_2(int t, const q8_tile *a) { lq_tile(2, 0, t, a); }
SIMD_FN static void lq_tile_3(int t, const q8_tile *a) { lq_tile(3, 0, t, a); }
SIMD_FN static void lq_tile_4(int t, const q8_tile *a) { lq_tile(4, 0, t, a); }
SIMD_FN static void lq_tile_5(int t, const q8_tile *a) { lq_tile(5, 0, t, a); }
SIMD_FN static void lq_tile_6(int t, const q8_tile *a) { lq_tile(6, 0, t, a); }
SIMD_FN static void lq_tile_7(int t, const q8_tile *a) { lq_tile(7, 0, t, a); }
SIMD_FN static void lq_tile_8(int t, const q8_tile *a) { lq_tile(8, 0, t, a); }
SIMD_FN static void lq_tilev_1(int t, const q8_tile *a) { lq_tile(1, 1, t, a); }
SIMD_FN static void lq_tilev_2(int t, const q8_tile *a) { lq_tile(2, 1, t, a); }
SIMD_FN static void lq_tilev_3(int t, const q8_tile *a) { lq_tile(3, 1, t, a); }
SIMD_FN static void lq_tilev_4(int t, const q8_tile *a) { lq_tile(4, 1, t, a); }
SIMD_FN static void lq_tilev_5(int t, const q8_tile *a) { lq_tile(5, 1, t, a); }
SIMD_FN static void lq_tilev_6(int t, const q8_tile *a) { lq_tile(6, 1, t, a); }
SIMD_FN static void lq_tilev_7(int t, const q8_tile *a) { lq_tile(7, 1, t, a); }
SIMD_FN static void lq_tilev_8(int t, const q8_tile *a) { lq_tile(8, 1, t, a); }

static void (*const lq_tiles[2][8])(int, const q8_tile *) = {
    { lq_tile_1, lq_tile_2, lq_tile_3, lq_tile_4, lq_tile_5, lq_tile_6, lq_tile_7, lq_tile_8 },
    { lq_tilev_1, lq_tilev_2, lq_tilev_3, lq_tilev_4, lq_tilev_5, lq_tilev_6, lq_tilev_7, lq_tilev_8 },
};

SIMD_FN int gguf_legacy_q8_avx2(int t, const uint8_t *w, size_t rb, int cols, int r0, int r1,
                                const int8_t *xq, int ldq, const float *xd, const float *xs, int n,
                                float *y, int ldy, int acc) {
    const int ng = cols / 32, nsb = (ng + 7) / 8, vnni = gguf_vnni();
    kq_input *xp = malloc(sizeof(kq_input) * (size_t)(n < 8 ? n : 8) * (size_t)(nsb > 0 ? nsb : 1));
    if (!xp) return 0;  // out of memory: the portable kernel, which needs none
    for (int i0 = 0; i0 < n; i0 += 8) {
        const int k = n - i0 < 8 ? n - i0 : 8;
        for (int i = 0; i < k; i++)  // the inputs prepared once per call, whatever the rows
            lq_prepare(vnni, xq + (size_t)(i0 + i) * ldq, xd + (size_t)(i0 + i) * ng, xs + (size_t)(i0 + i) * ng,
                       ng, xp + (size_t)i * nsb);
        const q8_tile a = { w, rb, ng, nsb, r0, r1, xp, y + (size_t)i0 * ldy, ldy, acc };
        lq_tiles[vnni][k - 1](t, &a);
    }
    free(xp);
    return 1;
}
#else
int gguf_legacy_q8_avx2(int t, const uint8_t *w, size_t rb, int cols, int r0, int r1,
                        const int8_t *xq, int ldq, const float *xd, const float *xs, int n,
                        float *y, int ldy, int acc) { return 0; }
#endif
