#include "radial_kernels.h"
#include <math.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define RADIAL_X86 1
#endif

// ---- portable versions (any CPU; also the reference the SIMD versions are tested against) ----

static void matmul_q4_generic(const uint8_t *qs, const float *d, const float *m, int nb, int r0, int r1,
                              const float *x, int ldx, int n, float *y, int ldy, int acc) {
    for (int r = r0; r < r1; r++) {
        for (int i = 0; i < n; i++) {
            const float *xi = x + (size_t)i * ldx;
            float sum = 0;
            for (int b = 0; b < nb; b++) {
                const uint8_t *q = qs + ((size_t)r * nb + b) * 16;
                const float *xb = xi + b * 32;
                float s = 0, xs = 0;
                for (int j = 0; j < 16; j++) {
                    s += (float)(q[j] & 15) * xb[j] + (float)(q[j] >> 4) * xb[j + 16];
                    xs += xb[j] + xb[j + 16];
                }
                sum += d[(size_t)r * nb + b] * s + m[(size_t)r * nb + b] * xs;
            }
            float *out = y + (size_t)i * ldy + r;
            *out = acc ? *out + sum : sum;
        }
    }
}

static void matmul_q8_generic(const int8_t *qs, const float *d, int nb, int r0, int r1,
                              const float *x, int ldx, int n, float *y, int ldy, int acc) {
    for (int r = r0; r < r1; r++) {
        for (int i = 0; i < n; i++) {
            const float *xi = x + (size_t)i * ldx;
            float sum = 0;
            for (int b = 0; b < nb; b++) {
                const int8_t *q = qs + ((size_t)r * nb + b) * 32;
                float s = 0;
                for (int j = 0; j < 32; j++) s += (float)q[j] * xi[b * 32 + j];
                sum += d[(size_t)r * nb + b] * s;
            }
            float *out = y + (size_t)i * ldy + r;
            *out = acc ? *out + sum : sum;
        }
    }
}


// int8 activations: the quantiser (one version for every path, so all of them see the same bits).
static void quantize_q8_generic(const float *x, int ldx, int n, int nb, int8_t *xq, int ldq, float *xd, float *xs) {
    for (int i = 0; i < n; i++) {
        for (int b = 0; b < nb; b++) {
            const float *xb = x + (size_t)i * ldx + b * 32;
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(xb[j]));
            const float dd = amax / 127.0f, id = dd != 0 ? 1.0f / dd : 0.0f;
            int8_t *q = xq + (size_t)i * ldq + b * 32;
            int sum = 0;
            for (int j = 0; j < 32; j++) {
                long v = lrintf(xb[j] * id);
                v = v > 127 ? 127 : v < -127 ? -127 : v;
                q[j] = (int8_t)v;
                sum += (int)v;
            }
            xd[(size_t)i * nb + b] = dd;
            xs[(size_t)i * nb + b] = dd * (float)sum;
        }
    }
}

static void matmul_q4_q8_generic(const uint8_t *qs, const float *d, const float *m, int nb, int r0, int r1,
                                 const int8_t *xq, int ldq, const float *xd, const float *xs, int n,
                                 float *y, int ldy, int acc) {
    for (int r = r0; r < r1; r++) {
        for (int i = 0; i < n; i++) {
            float sum = 0, off = 0;
            for (int b = 0; b < nb; b++) {
                const uint8_t *q = qs + ((size_t)r * nb + b) * 16;
                const int8_t *xb = xq + (size_t)i * ldq + b * 32;
                int isum = 0;
                for (int j = 0; j < 16; j++) isum += (q[j] & 15) * xb[j] + (q[j] >> 4) * xb[j + 16];
                sum += d[(size_t)r * nb + b] * xd[(size_t)i * nb + b] * (float)isum;
                off += m[(size_t)r * nb + b] * xs[(size_t)i * nb + b];
            }
            float *out = y + (size_t)i * ldy + r;
            *out = acc ? *out + sum + off : sum + off;
        }
    }
}

static void matmul_q8_q8_generic(const int8_t *qs, const float *d, int nb, int r0, int r1,
                                 const int8_t *xq, int ldq, const float *xd, int n, float *y, int ldy, int acc) {
    for (int r = r0; r < r1; r++) {
        for (int i = 0; i < n; i++) {
            float sum = 0;
            for (int b = 0; b < nb; b++) {
                const int8_t *q = qs + ((size_t)r * nb + b) * 32, *xb = xq + (size_t)i * ldq + b * 32;
                int isum = 0;
                for (int j = 0; j < 32; j++) isum += q[j] * xb[j];
                sum += d[(size_t)r * nb + b] * xd[(size_t)i * nb + b] * (float)isum;
            }
            float *out = y + (size_t)i * ldy + r;
            *out = acc ? *out + sum : sum;
        }
    }
}

static void attend_generic(const float *q, int g, int hd, const float *keys, const float *values, int ks,
                           int npos, const uint8_t *present, float scale, float *scores, float *out) {
    for (int h = 0; h < g; h++) {
        const float *qh = q + (size_t)h * hd;
        float *sc = scores + (size_t)h * npos;
        float mx = -INFINITY;
        for (int p = 0; p < npos; p++) {
            if (present && !present[p]) { sc[p] = -INFINITY; continue; }
            const float *k = keys + (size_t)p * ks;
            float s = 0;
            for (int j = 0; j < hd; j++) s += qh[j] * k[j];
            sc[p] = s * scale;
            if (sc[p] > mx) mx = sc[p];
        }
        float sum = 0;
        for (int p = 0; p < npos; p++) { sc[p] = sc[p] == -INFINITY ? 0 : expf(sc[p] - mx); sum += sc[p]; }
        float inv = sum > 0 ? 1 / sum : 0;
        float *o = out + (size_t)h * hd;
        for (int j = 0; j < hd; j++) o[j] = 0;
        for (int p = 0; p < npos; p++) {
            float w = sc[p] * inv;
            if (w == 0) continue;
            const float *v = values + (size_t)p * ks;
            for (int j = 0; j < hd; j++) o[j] += w * v[j];
        }
    }
}

#ifdef RADIAL_X86
// ---- AVX2 + FMA: each weight block is widened to fp32 once and used for up to 4 inputs ----

#define SIMD_FN __attribute__((target("avx2,fma")))

// Asks for row r + ahead's quants and scales as row r starts, ahead = rows in ~2 KiB of quants: the hardware
// prefetchers alone fall behind a row stream from DRAM on some machines (an AMD EPYC VM: see prefetch_ahead in
// gguf_avx2.h). A prefetch never faults, so rows past the matrix's end are harmless to ask for.
SIMD_FN static inline void prefetch_row(const void *qs, const float *d, int nb, int stride, int r) {
    const size_t qbytes = (size_t)nb * stride, ahead = 2048 / qbytes + 1;
    const char *q = (const char *)qs + (r + ahead) * qbytes, *dd = (const char *)(d + (r + ahead) * nb);
    for (size_t o = 0; o < qbytes; o += 64) _mm_prefetch(q + o, _MM_HINT_T0);
    for (size_t o = 0; o < (size_t)nb * 4; o += 64) _mm_prefetch(dd + o, _MM_HINT_T0);
}

SIMD_FN static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// The 32 values of a Q4 block as four vectors of 8 (before scale and offset).
SIMD_FN static inline void widen_q4(const uint8_t *q, __m256 w[4]) {
    __m128i v = _mm_loadu_si128((const __m128i *)q);
    __m128i lo = _mm_and_si128(v, _mm_set1_epi8(15));
    __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(15));
    w[0] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));
    w[1] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)));
    w[2] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
    w[3] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)));
}

SIMD_FN static inline void widen_q8(const int8_t *q, __m256 w[4]) {
    __m256i v = _mm256_loadu_si256((const __m256i *)q);
    __m128i a = _mm256_castsi256_si128(v), b = _mm256_extracti128_si256(v, 1);
    w[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(a));
    w[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(a, 8)));
    w[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
    w[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b, 8)));
}

// Dot products of one row with its offset term: sum over blocks of m[b] * (sum of x over block b).
SIMD_FN static inline float offset_dot(const float *m, const float *xs, int nb) {
    __m256 a = _mm256_setzero_ps();
    int b = 0;
    for (; b + 8 <= nb; b += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(m + b), _mm256_loadu_ps(xs + b), a);
    float t = hsum(a);
    for (; b < nb; b++) t += m[b] * xs[b];
    return t;
}

// K inputs (a batch of sequences, K = 1...8 per tile): each block of weights is widened once, then used by all
// K inputs, so the batch streams the weights once; the block's scale multiplies each input's block sum (one FMA)
// rather than the 32 weights (four multiplies): at one input the widening, not the memory, is the bound. K is a constant in each generated copy, which keeps
// the accumulators in registers. Every input is summed in the same order whatever K is, so a row's result does
// not depend on how many rows share its tile: a token gets the same bits alone, batched with other sessions, or
// split over workers (what makes the cluster equal the in-process engine exactly). Consecutive blocks' products
// are independent, so the single-input case still overlaps FMA latency across blocks.
#define MULTI_BODY(K, WIDEN, QSTRIDE, QTYPE) \
    for (int r = r0; r < r1; r++) { \
        prefetch_row(qs, d, nb, QSTRIDE, r); \
        const QTYPE *qr = qs + (size_t)r * nb * QSTRIDE; \
        const float *dr = d + (size_t)r * nb; \
        __m256 sum[K]; \
        for (int i = 0; i < K; i++) sum[i] = _mm256_setzero_ps(); \
        for (int b = 0; b < nb; b++) { \
            __m256 w[4]; \
            WIDEN(qr + b * QSTRIDE, w); \
            const __m256 db = _mm256_set1_ps(dr[b]); \
            const float *xb = x + b * 32; \
            for (int i = 0; i < K; i++) { \
                const float *xk = xb + (size_t)i * ldx; \
                __m256 s = _mm256_mul_ps(w[0], _mm256_loadu_ps(xk)); \
                s = _mm256_fmadd_ps(w[1], _mm256_loadu_ps(xk + 8), s); \
                s = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(xk + 16), s); \
                s = _mm256_fmadd_ps(w[3], _mm256_loadu_ps(xk + 24), s); \
                sum[i] = _mm256_fmadd_ps(s, db, sum[i]); \
            } \
        } \
        for (int i = 0; i < K; i++) { \
            float v = hsum(sum[i]) + OFFSET(i); \
            float *out = y + (size_t)i * ldy + r; \
            *out = acc ? *out + v : v; \
        } \
    }

// Calls the copy of a tile kernel generated for k inputs (1...8): name_1 ... name_8.
#define FOR_TILE(k, name, ...) \
    switch (k) { \
    case 1: name##_1(__VA_ARGS__); break; case 2: name##_2(__VA_ARGS__); break; \
    case 3: name##_3(__VA_ARGS__); break; case 4: name##_4(__VA_ARGS__); break; \
    case 5: name##_5(__VA_ARGS__); break; case 6: name##_6(__VA_ARGS__); break; \
    case 7: name##_7(__VA_ARGS__); break; default: name##_8(__VA_ARGS__); break; \
    }

#define OFFSET(i) offset_dot(m + (size_t)r * nb, xsum + (i) * nb, nb)
#define Q4_MULTI(K) \
SIMD_FN static void q4_rows_##K(const uint8_t *qs, const float *d, const float *m, int nb, int r0, int r1, \
                                const float *x, int ldx, const float *xsum, float *y, int ldy, int acc) { \
    MULTI_BODY(K, widen_q4, 16, uint8_t) }
Q4_MULTI(1) Q4_MULTI(2) Q4_MULTI(3) Q4_MULTI(4) Q4_MULTI(5) Q4_MULTI(6) Q4_MULTI(7) Q4_MULTI(8)
#undef OFFSET

#define OFFSET(i) 0.0f
#define Q8_MULTI(K) \
SIMD_FN static void q8_rows_##K(const int8_t *qs, const float *d, int nb, int r0, int r1, \
                                const float *x, int ldx, float *y, int ldy, int acc) { \
    MULTI_BODY(K, widen_q8, 32, int8_t) }
Q8_MULTI(1) Q8_MULTI(2) Q8_MULTI(3) Q8_MULTI(4) Q8_MULTI(5) Q8_MULTI(6) Q8_MULTI(7) Q8_MULTI(8)
#undef OFFSET

SIMD_FN static void matmul_q4_avx2(const uint8_t *qs, const float *d, const float *m, int nb, int r0, int r1,
                                   const float *x, int ldx, int n, float *y, int ldy, int acc) {
    float xsum[8 * nb];
    for (int i0 = 0; i0 < n; i0 += 8) {
        int k = n - i0 < 8 ? n - i0 : 8;
        const float *xi = x + (size_t)i0 * ldx;
        for (int i = 0; i < k; i++) {
            for (int b = 0; b < nb; b++) {
                const float *xb = xi + (size_t)i * ldx + b * 32;
                __m256 t = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(xb), _mm256_loadu_ps(xb + 8)),
                                         _mm256_add_ps(_mm256_loadu_ps(xb + 16), _mm256_loadu_ps(xb + 24)));
                xsum[i * nb + b] = hsum(t);
            }
        }
        float *yi = y + (size_t)i0 * ldy;
        FOR_TILE(k, q4_rows, qs, d, m, nb, r0, r1, xi, ldx, xsum, yi, ldy, acc);
    }
}

SIMD_FN static void matmul_q8_avx2(const int8_t *qs, const float *d, int nb, int r0, int r1,
                                   const float *x, int ldx, int n, float *y, int ldy, int acc) {
    for (int i0 = 0; i0 < n; i0 += 8) {
        int k = n - i0 < 8 ? n - i0 : 8;
        const float *xi = x + (size_t)i0 * ldx;
        float *yi = y + (size_t)i0 * ldy;
        FOR_TILE(k, q8_rows, qs, d, nb, r0, r1, xi, ldx, yi, ldy, acc);
    }
}

// int8 activations, K inputs per tile as above: per block and input one maddubs (32 byte products summed in
// pairs), one madd (pairs to 8 int32), a conversion and an FMA with the two blocks' scales: the integer work
// runs on ports the fp32 version leaves idle, and each input's block is one 32-byte load instead of four.
SIMD_FN static inline __m256 int_block_dot(__m256i wu, __m256i xs8) {  // wu unsigned bytes, xs8 signed
    const __m256i p16 = _mm256_maddubs_epi16(wu, xs8);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

#define Q8X_BODY(K, QSTRIDE, PREP, DOT) \
    for (int r = r0; r < r1; r++) { \
        prefetch_row(qs, d, nb, QSTRIDE, r); \
        const float *dr = d + (size_t)r * nb; \
        __m256 sum[K]; \
        for (int i = 0; i < K; i++) sum[i] = _mm256_setzero_ps(); \
        for (int b = 0; b < nb; b++) { \
            PREP \
            const __m256 dw = _mm256_set1_ps(dr[b]); \
            for (int i = 0; i < K; i++) { \
                const __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + (size_t)i * ldq + b * 32)); \
                const __m256 scale = _mm256_mul_ps(dw, _mm256_broadcast_ss(xd + (size_t)i * nb + b)); \
                sum[i] = _mm256_fmadd_ps(scale, DOT, sum[i]); \
            } \
        } \
        for (int i = 0; i < K; i++) { \
            float v = hsum(sum[i]) + OFFSET(i); \
            float *out = y + (size_t)i * ldy + r; \
            *out = acc ? *out + v : v; \
        } \
    }

#define Q4_PREP \
    const __m128i v4 = _mm_loadu_si128((const __m128i *)(qs + ((size_t)r * nb + b) * 16)); \
    const __m256i wu = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v4, 4), _mm_set1_epi8(15)), \
                                        _mm_and_si128(v4, _mm_set1_epi8(15)));
#define Q8_PREP \
    const __m256i w8 = _mm256_loadu_si256((const __m256i *)(qs + ((size_t)r * nb + b) * 32)); \
    const __m256i wu = _mm256_sign_epi8(w8, w8);
#define OFFSET(i) offset_dot(m + (size_t)r * nb, xs + (size_t)(i) * nb, nb)
#define Q4Q8(K) \
SIMD_FN static void q4q8_rows_##K(const uint8_t *qs, const float *d, const float *m, int nb, int r0, int r1, \
                                  const int8_t *xq, int ldq, const float *xd, const float *xs, float *y, int ldy, int acc) { \
    Q8X_BODY(K, 16, Q4_PREP, int_block_dot(wu, xv)) }
Q4Q8(1) Q4Q8(2) Q4Q8(3) Q4Q8(4) Q4Q8(5) Q4Q8(6) Q4Q8(7) Q4Q8(8)
#undef OFFSET
#define OFFSET(i) 0.0f
#define Q8Q8(K) \
SIMD_FN static void q8q8_rows_##K(const int8_t *qs, const float *d, int nb, int r0, int r1, \
                                  const int8_t *xq, int ldq, const float *xd, float *y, int ldy, int acc) { \
    Q8X_BODY(K, 32, Q8_PREP, int_block_dot(wu, _mm256_sign_epi8(xv, w8))) }
Q8Q8(1) Q8Q8(2) Q8Q8(3) Q8Q8(4) Q8Q8(5) Q8Q8(6) Q8Q8(7) Q8Q8(8)
#undef OFFSET

SIMD_FN static void matmul_q4_q8_avx2(const uint8_t *qs, const float *d, const float *m, int nb, int r0, int r1,
                                      const int8_t *xq, int ldq, const float *xd, const float *xs, int n,
                                      float *y, int ldy, int acc) {
    for (int i0 = 0; i0 < n; i0 += 8) {
        const int k = n - i0 < 8 ? n - i0 : 8;
        const int8_t *q = xq + (size_t)i0 * ldq;
        const float *dd = xd + (size_t)i0 * nb, *ss = xs + (size_t)i0 * nb;
        float *yi = y + (size_t)i0 * ldy;
        FOR_TILE(k, q4q8_rows, qs, d, m, nb, r0, r1, q, ldq, dd, ss, yi, ldy, acc);
    }
}

SIMD_FN static void matmul_q8_q8_avx2(const int8_t *qs, const float *d, int nb, int r0, int r1,
                                      const int8_t *xq, int ldq, const float *xd, int n, float *y, int ldy, int acc) {
    for (int i0 = 0; i0 < n; i0 += 8) {
        const int k = n - i0 < 8 ? n - i0 : 8;
        const int8_t *q = xq + (size_t)i0 * ldq;
        const float *dd = xd + (size_t)i0 * nb;
        float *yi = y + (size_t)i0 * ldy;
        FOR_TILE(k, q8q8_rows, qs, d, nb, r0, r1, q, ldq, dd, yi, ldy, acc);
    }
}

// Eight horizontal sums at once: r[j] = sum of the lanes of a[j].
// Four horizontal sums at once: lane i of the result is the sum of a_i's eight lanes.
SIMD_FN static inline __m128 hsum4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

// e^x for x <= 0 (softmax after subtracting the maximum), eight at a time: x = n·ln2 + r with |r| <= ln2/2, e^r by
// its degree-6 Taylor polynomial (relative error < 2e-7, about 1 ulp of the libm value), 2^n through the exponent
// bits. Below -87 the result is flushed to 0 (the weight of such a position is below fp32's resolution anyway).
// The scalar expf took ~4% of batched decode as a libm call per score.
SIMD_FN static inline __m256 exp_nonpositive(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.0f);
    const __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);        // ln2 split: exact high part
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(bits)));
}

// Attention for the G query heads that share one K/V head (grouped-query attention). Each key and value row is
// loaded once for all G heads instead of once per head: the loads, not the multiplies, bound this loop.
// G is a compile-time constant in each caller below, so the per-head loops unroll into registers.
SIMD_FN static inline __attribute__((always_inline))
void attend_group(const int G, const float *q, int hd, const float *keys, const float *values, int ks,
                  int npos, const uint8_t *present, float scale, float *scores, float *out) {
    const __m128 vscale = _mm_set1_ps(scale);
    int p = 0;
    // Scores, four positions at a time.
    for (; p + 4 <= npos; p += 4) {
        __m256 a[4][4];
        for (int h = 0; h < G; h++) for (int t = 0; t < 4; t++) a[h][t] = _mm256_setzero_ps();
        for (int j = 0; j < hd; j += 8) {
            __m256 k0 = _mm256_loadu_ps(keys + (size_t)(p + 0) * ks + j);
            __m256 k1 = _mm256_loadu_ps(keys + (size_t)(p + 1) * ks + j);
            __m256 k2 = _mm256_loadu_ps(keys + (size_t)(p + 2) * ks + j);
            __m256 k3 = _mm256_loadu_ps(keys + (size_t)(p + 3) * ks + j);
            for (int h = 0; h < G; h++) {
                __m256 qv = _mm256_loadu_ps(q + (size_t)h * hd + j);
                a[h][0] = _mm256_fmadd_ps(qv, k0, a[h][0]);
                a[h][1] = _mm256_fmadd_ps(qv, k1, a[h][1]);
                a[h][2] = _mm256_fmadd_ps(qv, k2, a[h][2]);
                a[h][3] = _mm256_fmadd_ps(qv, k3, a[h][3]);
            }
        }
        for (int h = 0; h < G; h++)
            _mm_storeu_ps(scores + (size_t)h * npos + p, _mm_mul_ps(hsum4(a[h][0], a[h][1], a[h][2], a[h][3]), vscale));
    }
    for (; p < npos; p++) {
        const float *k = keys + (size_t)p * ks;
        for (int h = 0; h < G; h++) {
            __m256 a = _mm256_setzero_ps();
            for (int j = 0; j < hd; j += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(q + (size_t)h * hd + j), _mm256_loadu_ps(k + j), a);
            scores[(size_t)h * npos + p] = hsum(a) * scale;
        }
    }
    // Softmax per head; a masked position (no K/V entry) weighs 0.
    float inv[4];
    for (int h = 0; h < G; h++) {
        float *sc = scores + (size_t)h * npos, mx = -INFINITY, sum = 0;
        for (p = 0; p < npos; p++) {
            if (present && !present[p]) sc[p] = -INFINITY;
            else if (sc[p] > mx) mx = sc[p];
        }
        const __m256 vmx = _mm256_set1_ps(mx), ninf = _mm256_set1_ps(-INFINITY);
        __m256 vsum = _mm256_setzero_ps();
        for (p = 0; p + 8 <= npos; p += 8) {
            const __m256 v = _mm256_loadu_ps(sc + p);
            const __m256 e = _mm256_andnot_ps(_mm256_cmp_ps(v, ninf, _CMP_EQ_OQ), exp_nonpositive(_mm256_sub_ps(v, vmx)));
            _mm256_storeu_ps(sc + p, e);
            vsum = _mm256_add_ps(vsum, e);
        }
        sum = hsum(vsum);
        for (; p < npos; p++) { sc[p] = sc[p] == -INFINITY ? 0 : expf(sc[p] - mx); sum += sc[p]; }
        inv[h] = sum > 0 ? 1 / sum : 0;
    }
    // Weighted values, sixteen dimensions at a time; masked positions are skipped (their memory may be stale).
    for (int j0 = 0; j0 < hd; j0 += 16) {
        const int w8 = hd - j0 >= 16 ? 2 : 1;
        __m256 acc[4][2];
        for (int h = 0; h < G; h++) { acc[h][0] = _mm256_setzero_ps(); acc[h][1] = _mm256_setzero_ps(); }
        for (p = 0; p < npos; p++) {
            if (present && !present[p]) continue;
            const float *v = values + (size_t)p * ks + j0;
            __m256 v0 = _mm256_loadu_ps(v), v1 = w8 == 2 ? _mm256_loadu_ps(v + 8) : _mm256_setzero_ps();
            for (int h = 0; h < G; h++) {
                __m256 w = _mm256_set1_ps(scores[(size_t)h * npos + p] * inv[h]);
                acc[h][0] = _mm256_fmadd_ps(w, v0, acc[h][0]);
                acc[h][1] = _mm256_fmadd_ps(w, v1, acc[h][1]);
            }
        }
        for (int h = 0; h < G; h++) {
            _mm256_storeu_ps(out + (size_t)h * hd + j0, acc[h][0]);
            if (w8 == 2) _mm256_storeu_ps(out + (size_t)h * hd + j0 + 8, acc[h][1]);
        }
    }
}

SIMD_FN static void attend_g1(const float *q, int hd, const float *k, const float *v, int ks, int n, const uint8_t *pr, float sc, float *s, float *o) { attend_group(1, q, hd, k, v, ks, n, pr, sc, s, o); }
SIMD_FN static void attend_g2(const float *q, int hd, const float *k, const float *v, int ks, int n, const uint8_t *pr, float sc, float *s, float *o) { attend_group(2, q, hd, k, v, ks, n, pr, sc, s, o); }
SIMD_FN static void attend_g3(const float *q, int hd, const float *k, const float *v, int ks, int n, const uint8_t *pr, float sc, float *s, float *o) { attend_group(3, q, hd, k, v, ks, n, pr, sc, s, o); }
SIMD_FN static void attend_g4(const float *q, int hd, const float *k, const float *v, int ks, int n, const uint8_t *pr, float sc, float *s, float *o) { attend_group(4, q, hd, k, v, ks, n, pr, sc, s, o); }

// Any group size, in chunks of up to four heads (the score buffer holds g rows of npos).
SIMD_FN static void attend_avx2(const float *q, int g, int hd, const float *keys, const float *values, int ks,
                                int npos, const uint8_t *present, float scale, float *scores, float *out) {
    for (int h0 = 0; h0 < g; h0 += 4) {
        const int G = g - h0 < 4 ? g - h0 : 4;
        const float *qh = q + (size_t)h0 * hd;
        float *sc = scores + (size_t)h0 * npos, *o = out + (size_t)h0 * hd;
        switch (G) {
        case 1: attend_g1(qh, hd, keys, values, ks, npos, present, scale, sc, o); break;
        case 2: attend_g2(qh, hd, keys, values, ks, npos, present, scale, sc, o); break;
        case 3: attend_g3(qh, hd, keys, values, ks, npos, present, scale, sc, o); break;
        default: attend_g4(qh, hd, keys, values, ks, npos, present, scale, sc, o); break;
        }
    }
}

// quantize_q8_generic, 32 values per step: the same bits (max is exact in any order, x * id is one rounding,
// cvtps rounds to nearest even as lrintf does in the default mode, and the clamp, the sum and dd * sum are the
// generic's). Every decode matmul quantises its input on the calling thread before the rows are split, so the
// scalar loop (lrintf is a libm call) was ~2% of a Qwen2.5-1.5B decode step spent on one thread (perf).
SIMD_FN static void quantize_q8_avx2(const float *x, int ldx, int n, int nb, int8_t *xq, int ldq, float *xd, float *xs) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i lim = _mm256_set1_epi32(127), nlim = _mm256_set1_epi32(-127);
    for (int i = 0; i < n; i++) {
        for (int b = 0; b < nb; b++) {
            const float *xb = x + (size_t)i * ldx + b * 32;
            __m256 v[4], m = _mm256_setzero_ps();
            for (int k = 0; k < 4; k++) {
                v[k] = _mm256_loadu_ps(xb + 8 * k);
                m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[k]));
            }
            __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
            m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
            const float amax = _mm_cvtss_f32(m4);
            const float dd = amax / 127.0f, id = dd != 0 ? 1.0f / dd : 0.0f;
            const __m256 idv = _mm256_set1_ps(id);
            __m256i q[4], s = _mm256_setzero_si256();
            for (int k = 0; k < 4; k++) {
                q[k] = _mm256_min_epi32(lim, _mm256_max_epi32(nlim, _mm256_cvtps_epi32(_mm256_mul_ps(v[k], idv))));
                s = _mm256_add_epi32(s, q[k]);
            }
            // packs work within 128-bit lanes: bytes come out as 0-3, 8-11, 16-19, 24-27 | 4-7, ...; permute back
            const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
            _mm256_storeu_si256((__m256i *)(xq + (size_t)i * ldq + b * 32),
                                _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
            __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
            xd[(size_t)i * nb + b] = dd;
            xs[(size_t)i * nb + b] = dd * (float)_mm_cvtsi128_si32(s4);
        }
    }
}
#endif

static int simd_state = -1;  // benign race: every thread computes the same answer
// Per thread, so a test comparing the generic kernels cannot change the arithmetic of work on other threads.
static _Thread_local int forced_generic = 0;

void radial_kernels_force_generic(int on) { forced_generic = on; }

// For gguf_vnni(): the calling thread may run extensions beyond AVX2 (not when tests force plain AVX2).
int radial_kernels_extensions_allowed(void) { return forced_generic == 0; }

int radial_kernels_simd(void) {
    if (forced_generic == 1) return 0;
#ifdef RADIAL_X86
    if (simd_state < 0) {
        __builtin_cpu_init();
        simd_state = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return simd_state;
#else
    return 0;
#endif
}

void radial_matmul_q4(const uint8_t *qs, const float *d, const float *m, int nb, int r0, int r1,
                      const float *x, int ldx, int n, float *y, int ldy, int acc) {
#ifdef RADIAL_X86
    if (radial_kernels_simd()) { matmul_q4_avx2(qs, d, m, nb, r0, r1, x, ldx, n, y, ldy, acc); return; }
#endif
    matmul_q4_generic(qs, d, m, nb, r0, r1, x, ldx, n, y, ldy, acc);
}

void radial_matmul_q8(const int8_t *qs, const float *d, int nb, int r0, int r1,
                      const float *x, int ldx, int n, float *y, int ldy, int acc) {
#ifdef RADIAL_X86
    if (radial_kernels_simd()) { matmul_q8_avx2(qs, d, nb, r0, r1, x, ldx, n, y, ldy, acc); return; }
#endif
    matmul_q8_generic(qs, d, nb, r0, r1, x, ldx, n, y, ldy, acc);
}

void radial_attend(const float *q, int g, int hd, const float *keys, const float *values, int kv_stride,
                   int npos, const uint8_t *present, float scale, float *scores, float *out) {
#ifdef RADIAL_X86
    if (hd % 8 == 0 && radial_kernels_simd()) {
        attend_avx2(q, g, hd, keys, values, kv_stride, npos, present, scale, scores, out);
        return;
    }
#endif
    attend_generic(q, g, hd, keys, values, kv_stride, npos, present, scale, scores, out);
}

void radial_quantize_q8(const float *x, int ldx, int n, int nb, int8_t *xq, int ldq, float *xd, float *xs) {
#ifdef RADIAL_X86
    if (radial_kernels_simd()) { quantize_q8_avx2(x, ldx, n, nb, xq, ldq, xd, xs); return; }
#endif
    quantize_q8_generic(x, ldx, n, nb, xq, ldq, xd, xs);
}

void radial_matmul_q4_q8(const uint8_t *qs, const float *d, const float *m, int nb, int r0, int r1,
                         const int8_t *xq, int ldq, const float *xd, const float *xs, int n,
                         float *y, int ldy, int acc) {
#ifdef RADIAL_X86
    if (radial_kernels_simd()) { matmul_q4_q8_avx2(qs, d, m, nb, r0, r1, xq, ldq, xd, xs, n, y, ldy, acc); return; }
#endif
    matmul_q4_q8_generic(qs, d, m, nb, r0, r1, xq, ldq, xd, xs, n, y, ldy, acc);
}

void radial_matmul_q8_q8(const int8_t *qs, const float *d, int nb, int r0, int r1,
                         const int8_t *xq, int ldq, const float *xd, int n, float *y, int ldy, int acc) {
#ifdef RADIAL_X86
    if (radial_kernels_simd()) { matmul_q8_q8_avx2(qs, d, nb, r0, r1, xq, ldq, xd, n, y, ldy, acc); return; }
#endif
    matmul_q8_q8_generic(qs, d, nb, r0, r1, xq, ldq, xd, n, y, ldy, acc);
}
