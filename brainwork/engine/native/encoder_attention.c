// Bidirectional attention of a padded encoder batch, read straight from the q/k/v projections.
//
// Why: MiniLM's and BERT's heads are small (head_dim 32-64) and sentences short, so torch's
// scaled_dot_product_attention spends its time on per-(batch, head) overhead and on the
// transposes into and out of (B, heads, T, D): 2.2-2.5 s of an 11 s all-MiniLM-L6-v2 run over
// 2,000 sentences (~56 GFLOPS on 2 threads). Here each (sequence, head) is one task: its keys,
// transposed, and its values are widened to float32 once into per-thread scratch, then queries
// go QB at a time (8 with AVX-512, 4 with AVX2: scores for 2 x LANES keys per pass, softmax,
// values), written into the (B, T, H) layout the output projection reads. Right-padded rows:
// keys at or past a sequence's length are left out, exactly as a key mask does; padded query
// rows still attend to the real keys (their outputs are what SDPA gives them).
//
// Arithmetic in float32 whatever the input dtype (bfloat16 inputs widened exactly; outputs
// rounded to nearest even), exp by range reduction + degree-6 polynomial (max rel. error 2.5e-7
// over [-87, 0]).
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__)
enum { LANES = 16 };
#else
enum { LANES = 8 };  // AVX2's width; without AVX the compiler splits it
#endif
typedef float vf __attribute__((vector_size(LANES * 4)));
typedef int32_t vi __attribute__((vector_size(LANES * 4)));
// queries per pass (key and value loads shared by QB rows): 2 x QB accumulators of the scores
// and of the values stay in registers (32 of them with AVX-512, 16 with AVX2)
#if defined(__AVX512F__)
enum { QB = 8 };
#else
enum { QB = 4 };
#endif

static inline vf vload(const float *p) {
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf vset1(float x) { return (vf){0} + x; }
static inline vf vmax(vf a, vf b) {  // lane-wise: C has no vector ?:, so select by the compare mask
    const vi m = a > b;
    return (vf)(((vi)a & m) | ((vi)b & ~m));
}

// e^x for x <= 0 (scores minus their row's max): x = n ln2 + r, |r| <= ln2 / 2, 2^n from bits
static inline vf vexp(vf x) {
    x = vmax(x, vset1(-87.0f));  // e^-87 ~ 1.6e-38: still a normal float, and 2^n stays in range
    const vf magic = vset1(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
    const vf t = x * 1.44269504f + magic;
    const vf n = t - magic;
    const vf r = (x - n * 0.693145752f) - n * 1.42860677e-6f;  // ln 2 split hi + lo
    vf p = vset1(1.0f / 720) * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const vi e = ((vi)t - (vi)magic + 127) << 23;  // the integer n sits in t's low mantissa bits
    return p * (vf)e;
}

static inline float hmax(vf v) {
    float m = v[0];
    for (int i = 1; i < LANES; i++) m = v[i] > m ? v[i] : m;
    return m;
}
static inline float hsum(vf v) {
    float s = 0.0f;
    for (int i = 0; i < LANES; i++) s += v[i];
    return s;
}

static inline float load1(const void *p, int64_t i, int bf16) {
    if (!bf16) return ((const float *)p)[i];
    const uint32_t u = (uint32_t)((const uint16_t *)p)[i] << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
typedef uint16_t vh __attribute__((vector_size(LANES * 2)));
typedef uint32_t vu __attribute__((vector_size(LANES * 4)));
static inline void store_vec(void *p, int64_t i, vf x, int bf16) {
    if (!bf16) {
        memcpy((float *)p + i, &x, sizeof x);
        return;
    }
    const vu u = (vu)x;
    const vh h = __builtin_convertvector((u + 0x7FFF + ((u >> 16) & 1)) >> 16, vh);  // nearest even (no NaNs here)
    memcpy((uint16_t *)p + i, &h, sizeof h);
}

// One (sequence, head): kt (d, lp) keys transposed, vv (len, d) values, s (QB, lp) scores.
static void head_task(const void *q, const void *k, const void *v, void *out, int64_t tq, int64_t len, int64_t d,
                      int64_t q_row, int64_t kv_row, int64_t o_row, float scale, int bf16, float *kt, float *vv,
                      float *s) {
    const int64_t lp = (len + 2 * LANES - 1) / (2 * LANES) * (2 * LANES);
    for (int64_t j = 0; j < lp; j++)
        for (int64_t c = 0; c < d; c++) kt[c * lp + j] = j < len ? load1(k, j * kv_row + c, bf16) : 0.0f;
    for (int64_t j = 0; j < len; j++)
        for (int64_t c = 0; c < d; c++) vv[j * d + c] = load1(v, j * kv_row + c, bf16);
    float qs[QB][512];
    for (int64_t i0 = 0; i0 < tq; i0 += QB) {
        const int64_t nq = tq - i0 < QB ? tq - i0 : QB;
        for (int r = 0; r < QB; r++)  // rows past nq repeat row 0: computed, never written
            for (int64_t c = 0; c < d; c++) qs[r][c] = load1(q, (i0 + (r < nq ? r : 0)) * q_row + c, bf16) * scale;
        for (int64_t j = 0; j < lp; j += 2 * LANES) {  // scores: 2 x QB accumulators in flight
            vf a[QB][2] = {{{0}}};
            for (int64_t c = 0; c < d; c++) {
                const vf k0 = vload(kt + c * lp + j), k1 = vload(kt + c * lp + j + LANES);
                for (int r = 0; r < QB; r++) a[r][0] += qs[r][c] * k0, a[r][1] += qs[r][c] * k1;
            }
            for (int r = 0; r < QB; r++) vstore(s + r * lp + j, a[r][0]), vstore(s + r * lp + j + LANES, a[r][1]);
        }
        float inv[QB];
        for (int r = 0; r < QB; r++) {  // softmax over the len real keys
            float *sr = s + r * lp;
            // padded scores (0: their keys are zero) must not set the max: real scores far below 0
            // would all clamp to e^-87 and weigh the same
            for (int64_t j = len; j < lp; j++) sr[j] = -INFINITY;
            vf m = vload(sr);
            for (int64_t j = LANES; j < lp; j += LANES) {
                m = vmax(m, vload(sr + j));
            }
            const vf mx = vset1(hmax(m));
            for (int64_t j = 0; j < lp; j += LANES) vstore(sr + j, vexp(vload(sr + j) - mx));
            for (int64_t j = len; j < lp; j++) sr[j] = 0.0f;  // -inf came out as e^-87, not 0
            vf sum = {0};
            for (int64_t j = 0; j < lp; j += LANES) sum += vload(sr + j);
            inv[r] = 1.0f / hsum(sum);
        }
        for (int64_t c0 = 0; c0 < d; c0 += 2 * LANES) {  // values: QB rows x up to 2 vectors of d
            const int two = c0 + LANES < d;
            vf o[QB][2] = {{{0}}};
            for (int64_t j = 0; j < len; j++) {
                const vf v0 = vload(vv + j * d + c0), v1 = two ? vload(vv + j * d + c0 + LANES) : v0;
                for (int r = 0; r < QB; r++) {
                    const float p = s[r * lp + j];
                    o[r][0] += p * v0;
                    if (two) o[r][1] += p * v1;
                }
            }
            for (int r = 0; r < nq; r++)
                for (int h = 0; h <= two; h++) store_vec(out, (i0 + r) * o_row + c0 + h * LANES, o[r][h] * inv[r], bf16);
        }
    }
}

// q (B, tq, *) with rows q_row apart and sequences q_batch apart, its head h at column h * d; k,
// v alike with kv_row / kv_batch and t key rows; out (B, tq, heads * d) contiguous. lens (B,)
// int64: the real keys of each sequence (a prefix). bf16: inputs and output bfloat16, else
// float32. Returns 0, or -1 for a head size it does not take (d a multiple of LANES, <= 512),
// -2 when out of memory.
int encoder_attention(const void *q, const void *k, const void *v, void *out, const int64_t *lens, int64_t batch,
                      int64_t tq, int64_t t, int64_t heads, int64_t d, int64_t q_row, int64_t q_batch,
                      int64_t kv_row, int64_t kv_batch, float scale, int bf16) {
    if (d % LANES || d > 512) return -1;
    const int64_t lp = (t + 2 * LANES - 1) / (2 * LANES) * (2 * LANES);
    const int64_t el = bf16 ? 2 : 4, hd = heads * d;
    int failed = 0;
#pragma omp parallel
    {
        float *kt = malloc(sizeof(float) * (size_t)(d * lp));
        float *vv = malloc(sizeof(float) * (size_t)(t * d));
        float *s = malloc(sizeof(float) * (size_t)(QB * lp));
        if (!kt || !vv || !s) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp barrier
        if (!failed) {
#pragma omp for schedule(dynamic, 1)
            for (int64_t task = 0; task < batch * heads; task++) {
                const int64_t b = task / heads, h = task % heads;
                const int64_t len = lens[b] < t ? lens[b] : t;
                char *o = (char *)out + el * (b * tq * hd + h * d);
                if (len <= 0) {  // nothing to attend to: zeros rather than SDPA's NaNs
                    for (int64_t i = 0; i < tq; i++) memset(o + el * i * hd, 0, (size_t)(el * d));
                    continue;
                }
                head_task((const char *)q + el * (b * q_batch + h * d), (const char *)k + el * (b * kv_batch + h * d),
                          (const char *)v + el * (b * kv_batch + h * d), o, tq, len, d, q_row, kv_row, hd, scale, bf16,
                          kt, vv, s);
            }
        }
        free(kt), free(vv), free(s);
    }
    return failed ? -2 : 0;
}
