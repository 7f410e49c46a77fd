// Paged decode attention over a block table, reading keys/values in place (no gather copy).
// q, out: (N, Hq, D) float32; k_cache, v_cache: (num_blocks, bs, Hkv, D) float32 or bfloat16
// (`kv_bf16`: widened to float32 as read, exactly; all arithmetic in float32).
// Row i attends positions [max(0, len_i - window), len_i) of its sequence. D must be a multiple of 8.
//
// One task per (sequence, kv head): the g = Hq / Hkv query heads that share the kv head read each
// key and value once. Keys go 8 at a time: eight 8-lane partial dots are folded into one vector
// of 8 scores (no horizontal sum per key), and the softmax exponentials are taken 8 at a time.
// Measured on 64 sequences of ~340 tokens (smollm2 and qwen2.5-0.5b shapes, 2 cores): 2.5-3x
// faster than one horizontal sum and one libm expf per score.
//
// With AVX-512 and head_dim 32-256 a wider form runs instead (16-key tiles, running sums in
// registers) and, given 4 sequences a thread, one task per sequence covers all its kv heads, so
// each key row is read whole, the next tile prefetched while this one computes. 64 sequences of
// 340 tokens x 30 layers (2 threads, AVX-512 EPYC): smollm2 shapes (9 query heads, 3 kv) 57-60 ->
// 48-50 ms a step, qwen2.5-0.5b's (14, 2) 48 -> 33 ms; the engine benchmark's SmolLM2 run +9.5%.
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef __AVX2__
#include <immintrin.h>

// exp(x) for x <= 0 (softmax arguments): Arm optimized-routines' expf as ggml vectorizes it,
// ~1 ulp; arguments below -87 flush to 0, which softmax wants.
static inline __m256 exp_le0(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.f));
    const __m256 r = _mm256_set1_ps(0x1.8p23f);
    const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), r);
    const __m256 n = _mm256_sub_ps(z, r);
    const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f),
                                      _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
    const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
    const __m256 k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1))));
    const __m256 u = _mm256_mul_ps(b, b);
    const __m256 j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
                        _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
        u, _mm256_mul_ps(_mm256_set1_ps(0x1.ffffecp-1f), b));
    return _mm256_fmadd_ps(j, k, k);
}

// (a0..a7) of 8 lanes each -> the 8 lane sums, in order
static inline __m256 fold8(const __m256 a[8]) {
    const __m256 s01 = _mm256_hadd_ps(a[0], a[1]), s23 = _mm256_hadd_ps(a[2], a[3]);
    const __m256 s45 = _mm256_hadd_ps(a[4], a[5]), s67 = _mm256_hadd_ps(a[6], a[7]);
    const __m256 s0123 = _mm256_hadd_ps(s01, s23), s4567 = _mm256_hadd_ps(s45, s67);
    return _mm256_add_ps(_mm256_permute2f128_ps(s0123, s4567, 0x20), _mm256_permute2f128_ps(s0123, s4567, 0x31));
}

static inline float hmax8(__m256 x) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static inline float hsum8(__m256 x) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

enum { MAX_G = 32, MAX_C8 = 32 };  // up to 32 query heads per kv head, head_dim up to 256

// 8 cache values at element i of p, float32 or bfloat16 (the upper half of a float32)
static inline __attribute__((always_inline)) __m256 load8(const char *p, int64_t i, const int bf) {
    if (bf)
        return _mm256_castsi256_ps(
            _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p + 2 * i))), 16));
    return _mm256_loadu_ps((const float *)p + i);
}

// `bf` (a constant at each call): the cache holds bfloat16, 2 bytes an element, else float32
static inline __attribute__((always_inline)) void attend_impl(const float *qh, float *oh, const char *kc,
                                                              const char *vc, const int64_t *table, int64_t len,
                                                              int64_t first, int64_t g, int64_t hkv, int64_t h,
                                                              int64_t d, int64_t bs, float scale, const int bf) {
    const int64_t c8 = d / 8, es = bf ? 2 : 4;  // bytes per element
    __m256 acc[MAX_G * MAX_C8];
    float m[MAX_G], l[MAX_G], p[MAX_G * 8];
    for (int64_t x = 0; x < g * c8; x++) acc[x] = _mm256_setzero_ps();
    for (int64_t gi = 0; gi < g; gi++) { m[gi] = -FLT_MAX; l[gi] = 0.f; }
    const char *kt[8], *vt[8];
    const int64_t row = hkv * d * es;  // bytes from one token's keys to the next token's within a block
    for (int64_t t0 = first; t0 < len; t0 += 8) {
        const int64_t nt = len - t0 < 8 ? len - t0 : 8;
        // one division per tile, then walk the block (tiles may straddle two blocks)
        int64_t blk = t0 / bs, off = t0 % bs;
        const char *kb = kc + (table[blk] * bs * hkv + h) * d * es, *vb = vc + (table[blk] * bs * hkv + h) * d * es;
        for (int64_t j = 0; j < 8; j++) {
            if (j < nt) {
                if (off == bs) {
                    off = 0;
                    blk++;
                    kb = kc + (table[blk] * bs * hkv + h) * d * es;
                    vb = vc + (table[blk] * bs * hkv + h) * d * es;
                }
                kt[j] = kb + off * row;
                vt[j] = vb + off * row;
                off++;
            } else {  // padding lanes read a valid key, then are masked
                kt[j] = kt[0];
                vt[j] = vt[0];
            }
        }
        // three tiles ahead, into L2: blocks are scattered, so the hardware prefetcher cannot see
        // them coming. Measured on 64 sequences of 375 tokens x 30 layers (smollm2 shapes, 2
        // threads, AVX-512 EPYC): no prefetch 101 ms/step, into L1 (T0) 99-119 ms, into L2 (T2)
        // 61-62 ms; L1's few fill buffers stall on so many lines in flight.
        if (t0 + 24 < len) {
            const int64_t tp = t0 + 24, np = len - tp < 8 ? len - tp : 8;
            int64_t pb = tp / bs, po = tp % bs;
            for (int64_t j = 0; j < np; j++, po++) {
                if (po == bs) { po = 0; pb++; }
                const int64_t base = ((table[pb] * bs + po) * hkv + h) * d * es;
                const char *kn = kc + base, *vn = vc + base;
                for (int64_t b = 0; b < d * es; b += 64) {
                    _mm_prefetch(kn + b, _MM_HINT_T2);
                    _mm_prefetch(vn + b, _MM_HINT_T2);
                }
            }
        }
        const __m256 valid = _mm256_cmp_ps(_mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_ps((float)nt), _CMP_LT_OQ);
        for (int64_t gi = 0; gi < g; gi++) {
            const float *qg = qh + gi * d;
            __m256 a[8];
            for (int64_t j = 0; j < 8; j++) a[j] = _mm256_setzero_ps();
            for (int64_t c = 0; c < c8; c++) {
                const __m256 qv = _mm256_loadu_ps(qg + 8 * c);
                for (int64_t j = 0; j < 8; j++) a[j] = _mm256_fmadd_ps(qv, load8(kt[j], 8 * c, bf), a[j]);
            }
            __m256 s = _mm256_mul_ps(fold8(a), _mm256_set1_ps(scale));
            s = _mm256_blendv_ps(_mm256_set1_ps(-FLT_MAX), s, valid);
            const float mt = hmax8(s);
            if (mt > m[gi]) {  // a new running max: rescale what was summed so far
                const float corr = expf(m[gi] - mt);
                l[gi] *= corr;
                const __m256 cv = _mm256_set1_ps(corr);
                for (int64_t c = 0; c < c8; c++) acc[gi * c8 + c] = _mm256_mul_ps(acc[gi * c8 + c], cv);
                m[gi] = mt;
            }
            const __m256 e = _mm256_and_ps(exp_le0(_mm256_sub_ps(s, _mm256_set1_ps(m[gi]))), valid);
            l[gi] += hsum8(e);
            _mm256_storeu_ps(p + gi * 8, e);
        }
        // p . V: each accumulator is loaded and stored once per tile (acc lives in memory: its
        // size is known only at run time), the tile's 8 values streamed through it
        for (int64_t c = 0; c < c8; c++) {
            __m256 v[8];
            for (int64_t j = 0; j < 8; j++) v[j] = load8(vt[j], 8 * c, bf);  // masked lanes: p = 0
            for (int64_t gi = 0; gi < g; gi++) {
                __m256 a = acc[gi * c8 + c];
                for (int64_t j = 0; j < 8; j++) a = _mm256_fmadd_ps(_mm256_set1_ps(p[gi * 8 + j]), v[j], a);
                acc[gi * c8 + c] = a;
            }
        }
    }
    for (int64_t gi = 0; gi < g; gi++) {
        const __m256 inv = _mm256_set1_ps(1.f / l[gi]);
        for (int64_t c = 0; c < c8; c++) _mm256_storeu_ps(oh + gi * d + 8 * c, _mm256_mul_ps(acc[gi * c8 + c], inv));
    }
}

static void attend_one(const float *qh, float *oh, const char *kc, const char *vc, const int64_t *table,
                       int64_t len, int64_t first, int64_t g, int64_t hkv, int64_t h, int64_t d, int64_t bs,
                       float scale, int bf) {
    if (bf)
        attend_impl(qh, oh, kc, vc, table, len, first, g, hkv, h, d, bs, scale, 1);
    else
        attend_impl(qh, oh, kc, vc, table, len, first, g, hkv, h, d, bs, scale, 0);
}


#ifdef __AVX512F__
#include <omp.h>

// The AVX-512 form for head_dim 32, 64, 128 or 256 (C = head_dim / 16 vectors a row): 16-key
// tiles, and the running output of a group of up to GQ(C) query heads held in registers while a
// tile's values stream through it (one FMA per value vector and head, no reload of the sums).
// Its arithmetic alone is not what bounds it: on cached data either form reads ~25 GB/s a
// thread, from memory ~10. What moved it is the read pattern: a plain sum over one kv head's
// third of every key row goes at 16 GB/s (2 threads), over whole rows at 23.

static inline __m512 exp16_le0(__m512 x) {  // exp_le0 above, 16 lanes
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.f));
    const __m512 r = _mm512_set1_ps(0x1.8p23f);
    const __m512 z = _mm512_fmadd_ps(x, _mm512_set1_ps(0x1.715476p+0f), r);
    const __m512 n = _mm512_sub_ps(z, r);
    const __m512 b = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.7f7d1cp-20f),
                                      _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e4p-1f), x));
    const __m512i e = _mm512_slli_epi32(_mm512_castps_si512(z), 23);
    const __m512 k = _mm512_castsi512_ps(_mm512_add_epi32(e, _mm512_castps_si512(_mm512_set1_ps(1))));
    const __m512 u = _mm512_mul_ps(b, b);
    const __m512 j = _mm512_fmadd_ps(
        _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(0x1.0e4020p-7f), b, _mm512_set1_ps(0x1.573e2ep-5f)), u,
                        _mm512_fmadd_ps(_mm512_set1_ps(0x1.555e66p-3f), b, _mm512_set1_ps(0x1.fffdb6p-2f))),
        u, _mm512_mul_ps(_mm512_set1_ps(0x1.ffffecp-1f), b));
    return _mm512_fmadd_ps(j, k, k);
}

// a[0..15] of 16 lanes each -> lane j holds the sum of a[j]'s lanes (38 instructions for 16 sums)
static inline __m512 fold16(const __m512 a[16]) {
    __m512 t[8], u[4], w[2];
    for (int i = 0; i < 8; i++)  // t[i]: a[2i] in lanes 0-7, a[2i+1] in 8-15, 2 partial sums a lane
        t[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xEE));
    for (int i = 0; i < 4; i++)  // u[i]: a[4i + k] in 128-bit block k, 4 partials
        u[i] = _mm512_add_ps(_mm512_shuffle_f32x4(t[2 * i], t[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(t[2 * i], t[2 * i + 1], 0xDD));
    for (int i = 0; i < 2; i++)  // w[i], block k: a[8i + k] in lanes 0-1, a[8i + 4 + k] in 2-3
        w[i] = _mm512_add_ps(_mm512_shuffle_ps(u[2 * i], u[2 * i + 1], 0x44),
                             _mm512_shuffle_ps(u[2 * i], u[2 * i + 1], 0xEE));
    // block k: the sums of a[k], a[k + 4], a[k + 8], a[k + 12]; then into lane order
    const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(w[0], w[1], 0x88), _mm512_shuffle_ps(w[0], w[1], 0xDD));
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    return _mm512_permutexvar_ps(order, r);
}

static inline __attribute__((always_inline)) __m512 load16(const char *p, int64_t i, const int bf) {
    if (bf)
        return _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p + 2 * i))), 16));
    return _mm512_loadu_ps((const float *)p + i);
}

#ifndef PF_HINT
#define PF_HINT _MM_HINT_T2
#endif

// One tile (up to 16 keys, `valid` the live ones, `off` bytes into each key row) for GN query
// heads: scores, the online softmax, then the tile's values into the heads' running sums `acc`
// (GN, 16 C).
static inline __attribute__((always_inline)) void tile16(const float *q, float *acc, float *m, float *l,
                                                         const char *const kt[16], const char *const vt[16],
                                                         const char *const kn[16], const char *const vn[16],
                                                         int64_t off, int64_t nt, __mmask16 valid, float scale,
                                                         const int C, const int GN, const int bf) {
    float p[8][16];
    const int es = bf ? 2 : 4;
    // the next tile's keys and values of these heads, into L2 while this one computes: spread
    // over the tile's work so that few misses are in flight at once
    for (int j = 0; j < 16; j++)
        for (int b = 0; b < 16 * C * es; b += 64) _mm_prefetch(kn[j] + off + b, PF_HINT);
    for (int gi = 0; gi < GN; gi++) {
        __m512 a[16];
        for (int j = 0; j < 16; j++) a[j] = _mm512_setzero_ps();
        for (int c = 0; c < C; c++) {
            const __m512 qv = _mm512_loadu_ps(q + (gi * C + c) * 16);
            for (int j = 0; j < 16; j++) a[j] = _mm512_fmadd_ps(qv, load16(kt[j] + off, 16 * c, bf), a[j]);
        }
        __m512 s = _mm512_mul_ps(fold16(a), _mm512_set1_ps(scale));
        s = _mm512_mask_blend_ps(valid, _mm512_set1_ps(-FLT_MAX), s);
        const float mt = _mm512_reduce_max_ps(s);
        if (mt > m[gi]) {  // a new running max: rescale what was summed so far
            const float corr = expf(m[gi] - mt);
            l[gi] *= corr;
            const __m512 cv = _mm512_set1_ps(corr);
            for (int c = 0; c < C; c++)
                _mm512_storeu_ps(acc + (gi * C + c) * 16, _mm512_mul_ps(_mm512_loadu_ps(acc + (gi * C + c) * 16), cv));
            m[gi] = mt;
        }
        const __m512 e = _mm512_maskz_mov_ps(valid, exp16_le0(_mm512_sub_ps(s, _mm512_set1_ps(m[gi]))));
        l[gi] += _mm512_reduce_add_ps(e);
        _mm512_storeu_ps(p[gi], e);
    }
    __m512 o[8][16];
    for (int gi = 0; gi < GN; gi++)
        for (int c = 0; c < C; c++) o[gi][c] = _mm512_loadu_ps(acc + (gi * C + c) * 16);
    for (int64_t j = 0; j < nt; j++) {
        for (int b = 0; b < 16 * C * es; b += 64) _mm_prefetch(vn[j] + off + b, PF_HINT);
        for (int c = 0; c < C; c++) {
            const __m512 v = load16(vt[j] + off, 16 * c, bf);
            for (int gi = 0; gi < GN; gi++) o[gi][c] = _mm512_fmadd_ps(_mm512_set1_ps(p[gi][j]), v, o[gi][c]);
        }
    }
    for (int gi = 0; gi < GN; gi++)
        for (int c = 0; c < C; c++) _mm512_storeu_ps(acc + (gi * C + c) * 16, o[gi][c]);
}


// registers hold GN x C running sums: up to 32 values a head-row in all
#define GQ(C) ((C) <= 4 ? 4 : 16 / (C))
enum { MAX_ACC = 16384 };  // floats of running sums one task holds: query heads x head_dim

// The rows of keys t0 .. t0 + 15 (those below len; the rest repeat the first, to be masked).
static inline void rows16(const char *kt[16], const char *vt[16], const char *kc, const char *vc,
                          const int64_t *table, int64_t t0, int64_t len, int64_t bs, int64_t row) {
    const int64_t nt = len - t0 < 16 ? len - t0 : 16;
    int64_t blk = t0 / bs, off = t0 % bs;
    const char *kb = kc + table[blk] * bs * row, *vb = vc + table[blk] * bs * row;
    for (int64_t j = 0; j < 16; j++) {
        if (j < nt) {
            if (off == bs) {
                off = 0;
                blk++;
                kb = kc + table[blk] * bs * row;
                vb = vc + table[blk] * bs * row;
            }
            kt[j] = kb + off * row;
            vt[j] = vb + off * row;
            off++;
        } else {
            kt[j] = kt[0];
            vt[j] = vt[0];
        }
    }
}

// kv heads h0 .. h0 + nh - 1 of one sequence (their g query heads each, rows of `qh` / `oh`
// from h0's first). All heads of a sequence in one task read each key row whole: on 64 sequences
// of 340 tokens (smollm2 shapes, 2 threads) a plain read of that pattern goes at 23 GB/s, one
// head's third of every row at 16 GB/s.
static inline __attribute__((always_inline)) void attend16_impl(const float *qh, float *oh, const char *kc,
                                                                const char *vc, const int64_t *table, int64_t len,
                                                                int64_t first, int64_t g, int64_t hkv, int64_t h0,
                                                                int64_t nh, int64_t bs, float scale, const int C,
                                                                const int bf) {
    const int64_t d = 16 * C, es = bf ? 2 : 4, row = hkv * d * es, nq = nh * g;
    float acc[MAX_ACC], m[MAX_ACC / 32], l[MAX_ACC / 32];
    memset(acc, 0, sizeof(float) * nq * d);
    for (int64_t i = 0; i < nq; i++) { m[i] = -FLT_MAX; l[i] = 0.f; }
    const char *ptr[2][2][16];  // [tile parity][keys, values][key]: this tile's rows and the next's
    rows16(ptr[0][0], ptr[0][1], kc, vc, table, first, len, bs, row);
    for (int64_t t0 = first, t = 0; t0 < len; t0 += 16, t ^= 1) {
        const int64_t nt = len - t0 < 16 ? len - t0 : 16;
        const char *const *kt = ptr[t][0], *const *vt = ptr[t][1];
        if (t0 + 16 < len)
            rows16(ptr[t ^ 1][0], ptr[t ^ 1][1], kc, vc, table, t0 + 16, len, bs, row);
        else  // nothing ahead: prefetch this tile again (it is in cache)
            for (int j = 0; j < 16; j++) { ptr[t ^ 1][0][j] = kt[j]; ptr[t ^ 1][1][j] = vt[j]; }
        const char *const *kn = ptr[t ^ 1][0], *const *vn = ptr[t ^ 1][1];
        const __mmask16 valid = (__mmask16)((1u << nt) - 1);
        for (int64_t hi = 0; hi < nh; hi++) {
            const int64_t koff = (h0 + hi) * d * es;
            for (int64_t g0 = 0; g0 < g; g0 += GQ(C)) {
                const int64_t gn = g - g0 < GQ(C) ? g - g0 : GQ(C), r = hi * g + g0;
                const float *q = qh + r * d;
                float *a = acc + r * d;
                switch (gn) {  // each count its own unrolled code
                case 1: tile16(q, a, m + r, l + r, kt, vt, kn, vn, koff, nt, valid, scale, C, 1, bf); break;
                case 2: tile16(q, a, m + r, l + r, kt, vt, kn, vn, koff, nt, valid, scale, C, GQ(C) >= 2 ? 2 : 1, bf); break;
                case 3: tile16(q, a, m + r, l + r, kt, vt, kn, vn, koff, nt, valid, scale, C, GQ(C) >= 3 ? 3 : 1, bf); break;
                default: tile16(q, a, m + r, l + r, kt, vt, kn, vn, koff, nt, valid, scale, C, GQ(C) >= 4 ? 4 : 1, bf); break;
                }
            }
        }
    }
    for (int64_t i = 0; i < nq; i++) {
        const __m512 inv = _mm512_set1_ps(1.f / l[i]);
        for (int64_t c = 0; c < C; c++)
            _mm512_storeu_ps(oh + i * d + 16 * c, _mm512_mul_ps(_mm512_loadu_ps(acc + i * d + 16 * c), inv));
    }
}

#define WIDE(C, BF) attend16_impl(qh, oh, kc, vc, table, len, first, g, hkv, h0, nh, bs, scale, C, BF)

// head_dim 32, 64, 128 or 256 and nh x g x head_dim <= MAX_ACC: returns 1 when done here, 0 for
// the AVX2 form
static int attend_wide(const float *qh, float *oh, const char *kc, const char *vc, const int64_t *table,
                       int64_t len, int64_t first, int64_t g, int64_t hkv, int64_t h0, int64_t nh, int64_t d,
                       int64_t bs, float scale, int bf) {
    if (nh * g * d > MAX_ACC) return 0;
    switch (d * 2 + bf) {
    case 64: WIDE(2, 0); return 1;
    case 65: WIDE(2, 1); return 1;
    case 128: WIDE(4, 0); return 1;
    case 129: WIDE(4, 1); return 1;
    case 256: WIDE(8, 0); return 1;
    case 257: WIDE(8, 1); return 1;
    case 512: WIDE(16, 0); return 1;
    case 513: WIDE(16, 1); return 1;
    default: return 0;
    }
}
#endif  // __AVX512F__

#else  // portable form: one dot and one expf per score

enum { MAX_G = 32, MAX_C8 = 32 };

static inline float load1(const char *p, int64_t i, int bf) {
    if (!bf) return ((const float *)p)[i];
    const uint32_t u = (uint32_t)((const uint16_t *)p)[i] << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void attend_one(const float *qh, float *oh, const char *kc, const char *vc, const int64_t *table,
                       int64_t len, int64_t first, int64_t g, int64_t hkv, int64_t h, int64_t d, int64_t bs,
                       float scale, int bf) {
    const int64_t es = bf ? 2 : 4;
    float acc[MAX_G * MAX_C8 * 8], m[MAX_G], l[MAX_G];
    memset(acc, 0, sizeof(float) * g * d);
    for (int64_t gi = 0; gi < g; gi++) { m[gi] = -FLT_MAX; l[gi] = 0.f; }
    for (int64_t t = first; t < len; t++) {
        const int64_t slot = table[t / bs] * bs + t % bs;
        const char *k = kc + (slot * hkv + h) * d * es, *v = vc + (slot * hkv + h) * d * es;
        for (int64_t gi = 0; gi < g; gi++) {
            float s = 0.f;
            for (int64_t c = 0; c < d; c++) s += qh[gi * d + c] * load1(k, c, bf);
            s *= scale;
            float w;
            if (s > m[gi]) {
                const float corr = expf(m[gi] - s);
                l[gi] *= corr;
                for (int64_t c = 0; c < d; c++) acc[gi * d + c] *= corr;
                m[gi] = s;
                w = 1.f;
            } else {
                w = expf(s - m[gi]);
            }
            l[gi] += w;
            for (int64_t c = 0; c < d; c++) acc[gi * d + c] += w * load1(v, c, bf);
        }
    }
    for (int64_t gi = 0; gi < g; gi++)
        for (int64_t c = 0; c < d; c++) oh[gi * d + c] = acc[gi * d + c] / l[gi];
}
#endif

// Returns 0, or -1 when the shape is beyond the kernel's fixed buffers (the caller then uses torch).
int paged_decode(const float *q, float *out, const void *kc, const void *vc, const int64_t *rows,
                 const int64_t *lens, const int64_t *tables, int64_t max_blocks, int64_t n, int64_t hq, int64_t hkv,
                 int64_t d, int64_t bs, float scale, int64_t window, int64_t kv_bf16) {
    const int64_t g = hq / hkv;
    if (g > MAX_G || d / 8 > MAX_C8 || d % 8) return -1;
    // OpenMP here is torch's own runtime (same soname, already loaded): no second thread pool
#ifdef __AVX512F__
    // whole sequences a task, all kv heads reading each key row at once, when there are enough
    // sequences to keep the threads busy: 64 sequences of 340 tokens x 30 layers (smollm2
    // shapes, 2 threads) 38 ms a step against 54 ms a (sequence, kv head) a task
    if (n >= 4 * omp_get_max_threads() && hq * d <= MAX_ACC) {
        int done = 1;
#pragma omp parallel for schedule(dynamic, 1) reduction(& : done)
        for (int64_t i = 0; i < n; i++) {
            const int64_t len = lens[i], first = (window > 0 && len > window) ? len - window : 0;
            done &= attend_wide(q + rows[i] * hq * d, out + rows[i] * hq * d, (const char *)kc, (const char *)vc,
                                tables + i * max_blocks, len, first, g, hkv, 0, hkv, d, bs, scale, (int)kv_bf16);
        }
        if (done) return 0;  // else a head_dim the wide form lacks: every row again below
    }
#endif
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int64_t i = 0; i < n; i++) {
        for (int64_t h = 0; h < hkv; h++) {
            const int64_t len = lens[i];
            const int64_t first = (window > 0 && len > window) ? len - window : 0;
            const float *qh = q + (rows[i] * hq + h * g) * d;
            float *oh = out + (rows[i] * hq + h * g) * d;
#ifdef __AVX512F__
            if (attend_wide(qh, oh, (const char *)kc, (const char *)vc, tables + i * max_blocks, len, first, g, hkv,
                            h, 1, d, bs, scale, (int)kv_bf16))
                continue;
#endif
            attend_one(qh, oh, (const char *)kc, (const char *)vc, tables + i * max_blocks, len, first, g, hkv, h, d,
                       bs, scale, (int)kv_bf16);
        }
    }
    return 0;
}
