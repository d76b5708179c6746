// Q4_K, Q5_K and Q6_K times int8 inputs (radial_gguf_matmul_q8), AVX2 with AVX512-VNNI dot products where the
// CPU has them (gguf_vnni()).
#include "gguf_avx2.h"
#include <stdlib.h>

// Each product rounds on its own, as in gguf_matmul_avx2.c.
#pragma STDC FP_CONTRACT OFF

#if defined(__x86_64__)
// A block's eight groups each need their own float scale (group scale * the input's xd), so their integer dots
// must come out separately. Converting and scaling each group's 8-lane dot vector on its own (the 32-weight
// kernels' way) costs two float operations per group and input, and batch 1 waits on one FMA per group; summing
// eight such vectors across lanes costs more still. So the weights are transposed once per block, and the
// inputs once per call the same way (kq_input), such that each 32-bit lane only ever meets one group's bytes:
// per block and input, eight dpbusd (or maddubs + madd) accumulate straight into two vectors, one add joins
// them into group g's exact integer dot in one lane, then one conversion and two FMAs. The integer dots are
// exact, so how they are formed changes no bit of the result.

// Which groups feed the two accumulators of a block (lane j: group src[j % 4]), following where each type keeps
// a group's low bits: Q4_K/Q5_K pair groups 2c and 2c+1 in the nibbles of one 32-byte run; Q6_K pairs g and g+2.
// The final vector holds the low accumulator's groups in lanes 0-3 and the high one's in 4-7.
static const int kq_groups[2][2][4] = { { {0, 2, 4, 6}, {1, 3, 5, 7} }, { {0, 1, 4, 5}, {2, 3, 6, 7} } };
SIMD_FN INLINE __m256i kq_lane_order(const int T) {
    return T == GT_Q6_K ? _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7) : _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
}

SIMD_FN INLINE void kq_prepare(const int T, const int vnni, const int8_t *xq, const float *xd, const float *xs,
                               int nblk, kq_input *out) {
    const int six = T == GT_Q6_K;
    const __m256i order = kq_lane_order(T);
    for (int b = 0; b < nblk; b++) {
        kq_input *o = out + b;
        const int8_t *xb = xq + 256 * b;
        for (int h = 0; h < 2; h++) {
            const int *g = kq_groups[six][h];
            __m256i t[4];
            transpose4(_mm256_loadu_si256((const __m256i *)(xb + 32 * g[0])), _mm256_loadu_si256((const __m256i *)(xb + 32 * g[1])),
                       _mm256_loadu_si256((const __m256i *)(xb + 32 * g[2])), _mm256_loadu_si256((const __m256i *)(xb + 32 * g[3])), t);
            __m256i s = _mm256_setzero_si256();
            for (int m = 0; m < 4; m++) {
                _mm256_storeu_si256((__m256i *)o->x[h][m], t[m]);
                if (six) s = dot4(vnni, s, _mm256_set1_epi8(32), t[m]);
            }
            _mm256_storeu_si256((__m256i *)o->s32[h], s);
        }
        _mm256_storeu_ps(o->xd, _mm256_permutevar8x32_ps(_mm256_loadu_ps(xd + 8 * b), order));
        _mm256_storeu_ps(o->xs, _mm256_permutevar8x32_ps(_mm256_loadu_ps(xs + 8 * b), order));
    }
}

// The block's weights as unsigned bytes in the transposed layout (Q6_K: q + 32, so 0..63).
SIMD_FN INLINE void kq_weights(const int T, const uint8_t *blk, __m256i wl[4], __m256i wh[4]) {
    const __m256i f = _mm256_set1_epi8(15);
    __m256i t[4], hb[4];
    if (T == GT_Q6_K) {
        const uint8_t *ql = blk, *qh = blk + 128;
        transpose4(_mm256_loadu_si256((const __m256i *)ql), _mm256_loadu_si256((const __m256i *)(ql + 32)),
                   _mm256_loadu_si256((const __m256i *)(ql + 64)), _mm256_loadu_si256((const __m256i *)(ql + 96)), t);
        const __m256i h0 = _mm256_loadu_si256((const __m256i *)qh), h1 = _mm256_loadu_si256((const __m256i *)(qh + 32));
        transpose4(h0, h0, h1, h1, hb);
        // group g = 4h + k takes bits 2k, 2k+1 of qh: k = 0, 1 for the low accumulator's groups, 2, 3 for the high
        const __m256i sl = _mm256_setr_epi32(0, 2, 0, 2, 0, 2, 0, 2), sh = _mm256_setr_epi32(4, 6, 4, 6, 4, 6, 4, 6);
        const __m256i three = _mm256_set1_epi8(3);
        for (int m = 0; m < 4; m++) {
            wl[m] = _mm256_or_si256(_mm256_and_si256(t[m], f), _mm256_slli_epi16(_mm256_and_si256(_mm256_srlv_epi32(hb[m], sl), three), 4));
            wh[m] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(t[m], 4), f),
                                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srlv_epi32(hb[m], sh), three), 4));
        }
        return;
    }
    const int five = T == GT_Q5_K;
    const uint8_t *qs = blk + 16 + 32 * five;
    transpose4(_mm256_loadu_si256((const __m256i *)qs), _mm256_loadu_si256((const __m256i *)(qs + 32)),
               _mm256_loadu_si256((const __m256i *)(qs + 64)), _mm256_loadu_si256((const __m256i *)(qs + 96)), t);
    if (five) {
        const __m256i h = _mm256_loadu_si256((const __m256i *)(blk + 16));
        transpose4(h, h, h, h, hb);
    }
    for (int m = 0; m < 4; m++) {
        wl[m] = _mm256_and_si256(t[m], f);
        wh[m] = _mm256_and_si256(_mm256_srli_epi16(t[m], 4), f);
        if (five) {  // bit g of qh is group g's fifth bit: groups 0, 2, 4, 6 low, 1, 3, 5, 7 high
            const __m256i one = _mm256_set1_epi8(1);
            wl[m] = _mm256_or_si256(wl[m], _mm256_slli_epi16(_mm256_and_si256(_mm256_srlv_epi32(hb[m], _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6)), one), 4));
            wh[m] = _mm256_or_si256(wh[m], _mm256_slli_epi16(_mm256_and_si256(_mm256_srlv_epi32(hb[m], _mm256_setr_epi32(1, 3, 5, 7, 1, 3, 5, 7)), one), 4));
        }
    }
}

// Lanes j and j + 4 of a and c summed: a's four in lanes 0-3, c's in 4-7.
SIMD_FN INLINE __m256i join_halves(__m256i a, __m256i c) {
    return _mm256_add_epi32(_mm256_permute2x128_si256(a, c, 0x20), _mm256_permute2x128_si256(a, c, 0x31));
}

SIMD_FN INLINE void rows_q8_k(const int T, const int K, const int vnni, const q8_tile *a) {
    const int BB = gguf_block_bytes(T), six = T == GT_Q6_K, nblk = a->nsb;
    const __m256i order = kq_lane_order(T);
    for (int r = a->r0; r < a->r1; r++) {
        const uint8_t *row = a->w + (size_t)r * a->rb;
        __m256 sum[K];
        for (int i = 0; i < K; i++) sum[i] = _mm256_setzero_ps();
        for (int b = 0; b < nblk; b++) {
            const uint8_t *blk = row + (size_t)b * BB;
            prefetch_ahead(blk, BB);
            __m256i wl[4], wh[4];
            kq_weights(T, blk, wl, wh);
            __m256 gs, mn = _mm256_setzero_ps();
            __m256i scl = _mm256_setzero_si256(), sch = _mm256_setzero_si256();
            if (six) {  // Q6_K: d, and the int8 scale of each accumulator lane's 16 (scale 2g + half)
                gs = _mm256_set1_ps(h2f(blk + 208));
                const __m128i s = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(blk + 192)),
                                                   _mm_setr_epi8(0, 2, 8, 10, 1, 3, 9, 11, 4, 6, 12, 14, 5, 7, 13, 15));
                scl = _mm256_cvtepi8_epi32(s);
                sch = _mm256_cvtepi8_epi32(_mm_srli_si128(s, 8));
            } else {
                block_scales s;
                scales_of(T, blk, &s);
                gs = _mm256_permutevar8x32_ps(_mm256_loadu_ps(s.gs), order);
                mn = _mm256_permutevar8x32_ps(_mm256_loadu_ps(s.mn), order);
            }
            for (int i = 0; i < K; i++) {
                const kq_input *x = a->xp + (size_t)i * nblk + b;
                __m256i al = _mm256_setzero_si256(), ah = _mm256_setzero_si256();
                for (int m = 0; m < 4; m++) {
                    al = dot4_at(vnni, al, wl[m], x->x[0][m]);
                    ah = dot4_at(vnni, ah, wh[m], x->x[1][m]);
                }
                if (six) {
                    al = _mm256_mullo_epi32(_mm256_sub_epi32(al, _mm256_loadu_si256((const __m256i *)x->s32[0])), scl);
                    ah = _mm256_mullo_epi32(_mm256_sub_epi32(ah, _mm256_loadu_si256((const __m256i *)x->s32[1])), sch);
                }
                const __m256 dots = _mm256_cvtepi32_ps(join_halves(al, ah));
                sum[i] = _mm256_fmadd_ps(dots, _mm256_mul_ps(gs, _mm256_loadu_ps(x->xd)), sum[i]);
                if (!six) sum[i] = _mm256_fmadd_ps(mn, _mm256_loadu_ps(x->xs), sum[i]);
            }
        }
        for (int i = 0; i < K; i++) {
            const float v = hsum8(sum[i]);
            float *out = a->y + (size_t)i * a->ldy + r;
            *out = a->acc ? *out + v : v;
        }
    }
}

// ---- one copy per tile size K and dot product, a switch over the three types ----

SIMD_FN INLINE void kq_tile(const int K, const int vnni, int t, const q8_tile *a) {
    switch (t) {
    case GT_Q4_K: rows_q8_k(GT_Q4_K, K, vnni, a); break;
    case GT_Q5_K: rows_q8_k(GT_Q5_K, K, vnni, a); break;
    case GT_Q6_K: rows_q8_k(GT_Q6_K, K, vnni, a); break;
    }
}

SIMD_FN static void kq_tile_1(int t, const q8_tile *a) { kq_tile(1, 0, t, a); }
SIMD_FN static void kq_tile_2(int t, const q8_tile *a) { kq_tile(2, 0, t, a); }
SIMD_FN static void kq_tile_3(int t, const q8_tile *a) { kq_tile(3, 0, t, a); }
SIMD_FN static void kq_tile_4(int t, const q8_tile *a) { kq_tile(4, 0, t, a); }
SIMD_FN static void kq_tile_5(int t, const q8_tile *a) { kq_tile(5, 0, t, a); }
SIMD_FN static void kq_tile_6(int t, const q8_tile *a) { kq_tile(6, 0, t, a); }
SIMD_FN static void kq_tile_7(int t, const q8_tile *a) { kq_tile(7, 0, t, a); }
SIMD_FN static void kq_tile_8(int t, const q8_tile *a) { kq_tile(8, 0, t, a); }
SIMD_FN static void kq_tilev_1(int t, const q8_tile *a) { kq_tile(1, 1, t, a); }
SIMD_FN static void kq_tilev_2(int t, const q8_tile *a) { kq_tile(2, 1, t, a); }
SIMD_FN static void kq_tilev_3(int t, const q8_tile *a) { kq_tile(3, 1, t, a); }
SIMD_FN static void kq_tilev_4(int t, const q8_tile *a) { kq_tile(4, 1, t, a); }
SIMD_FN static void kq_tilev_5(int t, const q8_tile *a) { kq_tile(5, 1, t, a); }
SIMD_FN static void kq_tilev_6(int t, const q8_tile *a) { kq_tile(6, 1, t, a); }
SIMD_FN static void kq_tilev_7(int t, const q8_tile *a) { kq_tile(7, 1, t, a); }
SIMD_FN static void kq_tilev_8(int t, const q8_tile *a) { kq_tile(8, 1, t, a); }

static void (*const kq_tiles[2][8])(int, const q8_tile *) = {
    { kq_tile_1, kq_tile_2, kq_tile_3, kq_tile_4, kq_tile_5, kq_tile_6, kq_tile_7, kq_tile_8 },
    { kq_tilev_1, kq_tilev_2, kq_tilev_3, kq_tilev_4, kq_tilev_5, kq_tilev_6, kq_tilev_7, kq_tilev_8 },
};

SIMD_FN int gguf_kquant_q8_avx2(int t, const uint8_t *w, size_t rb, int cols, int r0, int r1,
                                const int8_t *xq, int ldq, const float *xd, const float *xs, int n,
                                float *y, int ldy, int acc) {
    const int ng = cols / 32, nblk = cols / 256, vnni = gguf_vnni();
    kq_input *xp = malloc(sizeof(kq_input) * (size_t)(n < 8 ? n : 8) * (size_t)(nblk > 0 ? nblk : 1));
    if (!xp) return 0;  // out of memory: the portable kernel, which needs none
    for (int i0 = 0; i0 < n; i0 += 8) {
        const int k = n - i0 < 8 ? n - i0 : 8;
        for (int i = 0; i < k; i++) {  // the inputs prepared once per call, whatever the rows
            const int8_t *q = xq + (size_t)(i0 + i) * ldq;
            const float *d = xd + (size_t)(i0 + i) * ng, *s = xs + (size_t)(i0 + i) * ng;
            if (t == GT_Q6_K) kq_prepare(GT_Q6_K, vnni, q, d, s, nblk, xp + (size_t)i * nblk);
            else kq_prepare(GT_Q4_K, vnni, q, d, s, nblk, xp + (size_t)i * nblk);  // Q5_K's groups sit as Q4_K's
        }
        const q8_tile a = { w, rb, ng, nblk, r0, r1, xp, y + (size_t)i0 * ldy, ldy, acc };
        kq_tiles[vnni][k - 1](t, &a);
    }
    free(xp);
    return 1;
}
#else
int gguf_kquant_q8_avx2(int t, const uint8_t *w, size_t rb, int cols, int r0, int r1,
                        const int8_t *xq, int ldq, const float *xd, const float *xs, int n,
                        float *y, int ldy, int acc) { return 0; }
#endif
