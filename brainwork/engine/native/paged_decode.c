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
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int64_t i = 0; i < n; i++) {
        for (int64_t h = 0; h < hkv; h++) {
            const int64_t len = lens[i];
            const int64_t first = (window > 0 && len > window) ? len - window : 0;
            attend_one(q + (rows[i] * hq + h * g) * d, out + (rows[i] * hq + h * g) * d, (const char *)kc,
                       (const char *)vc, tables + i * max_blocks, len, first, g, hkv, h, d, bs, scale, (int)kv_bf16);
        }
    }
    return 0;
}
