// out (M, N) = x (M, K) @ w (N, K)^T (+ bias), float32, for the few rows of a decode step.
//
// Why: torch's float32 GEMM (oneDNN/MKL) runs small M on one core and reads the weights at
// ~10 GB/s; a decode step of a float32 model is that read. Here output columns are split over
// torch's OpenMP threads and each weight row is read once for all rows of x. Measured on 30
// layers of smollm2 shapes (2 threads, AVX-512 EPYC): M=1 39.5 -> 16.7 ms, M=16 71.9 -> 38.0 ms,
// M=64 138 -> 105 ms; even near M=256, so the caller keeps torch above `small_rows`.
//
// Each output is one dot product over K in a fixed order, whatever M is and wherever the row
// sits: a sequence's result does not depend on its batch company.
#include <stdint.h>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#if defined(__AVX512F__)
typedef __m512 vec;
enum { LANES = 16, MR = 4 };  // 4 rows of x x 4 rows of w: 16 accumulators of 32 registers
#define VLOAD _mm512_loadu_ps
#define VFMA _mm512_fmadd_ps
#define VZERO _mm512_setzero_ps
static inline float vsum(vec v) { return _mm512_reduce_add_ps(v); }
#elif defined(__AVX2__)
typedef __m256 vec;
enum { LANES = 8, MR = 2 };  // 2 x 4: 8 accumulators, 4 weights and x fit in 16 registers
#define VLOAD _mm256_loadu_ps
#define VFMA _mm256_fmadd_ps
#define VZERO _mm256_setzero_ps
static inline float vsum(vec x) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#else  // portable: 8 scalar lanes the compiler may vectorize
typedef struct { float v[8]; } vec;
enum { LANES = 8, MR = 2 };
static inline vec VLOAD(const float *p) { vec r; for (int i = 0; i < 8; i++) r.v[i] = p[i]; return r; }
static inline vec VFMA(vec a, vec b, vec c) { for (int i = 0; i < 8; i++) c.v[i] += a.v[i] * b.v[i]; return c; }
static inline vec VZERO(void) { vec r = {{0}}; return r; }
static inline float vsum(vec x) { float s = 0.f; for (int i = 0; i < 8; i++) s += x.v[i]; return s; }
#endif

enum { NR = 4, NB = 16 };  // w rows per tile; w rows per thread task (NB * K floats stay in L1/L2)

// up to MR rows of x (mr of them valid) against w rows n0..n0+nr-1 (nr <= NR)
// pf: where given, the next NR rows of w, fetched a line per row as this tile streams its own
static inline void tile(const float *x, const float *w, float *out, const float *bias, int64_t mr, int64_t nr,
                        int64_t K, int64_t ldo, const float *pf) {
    vec a[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) a[i][j] = VZERO();
    const int64_t kv = K - K % LANES;
    const float *wr[NR];
    for (int j = 0; j < NR; j++) wr[j] = w + (j < nr ? j : 0) * K;  // short tiles repeat row 0, unused
    for (int64_t k = 0; k < kv; k += LANES) {
        vec b[NR];
        for (int j = 0; j < NR; j++) b[j] = VLOAD(wr[j] + k);
        if (pf && (k & 15) == 0)  // one 64-byte line a row every 16 floats
            for (int j = 0; j < NR; j++) __builtin_prefetch(pf + j * K + k, 0, 2);
        for (int i = 0; i < MR; i++) {
            if (i < mr) {
                const vec xv = VLOAD(x + i * K + k);
                for (int j = 0; j < NR; j++) a[i][j] = VFMA(xv, b[j], a[i][j]);
            }
        }
    }
    for (int i = 0; i < mr; i++) {
        for (int j = 0; j < nr; j++) {
            float s = vsum(a[i][j]);
            for (int64_t k = kv; k < K; k++) s += x[i * K + k] * wr[j][k];  // K not a multiple of LANES
            out[i * ldo + j] = bias ? s + bias[j] : s;
        }
    }
}

int small_gemm(const float *x, const float *w, const float *bias, float *out, int64_t M, int64_t K, int64_t N) {
    // OpenMP here is torch's own runtime (same soname, already loaded): no second thread pool
#pragma omp parallel for schedule(static)
    for (int64_t n0 = 0; n0 < N; n0 += NB) {
        const int64_t n1 = n0 + NB < N ? n0 + NB : N;
        for (int64_t m0 = 0; m0 < M; m0 += MR) {
            const int64_t mr = M - m0 < MR ? M - m0 : MR;
            for (int64_t n = n0; n < n1; n += NR) {
                const int64_t nr = n1 - n < NR ? n1 - n : NR;
                // the first pass over these rows fetches the next ones: the hardware prefetcher alone
                // leaves the read at ~15 GB/s (SmolLM2's 49,152 x 576 head, 2 threads: 4 rows of x
                // 6.3 -> 3.9 ms, 16 rows 10.7 -> 7.6 ms; oneDNN 7.5 and 9.3)
                const float *pf = m0 == 0 && n + NR < N ? w + (n + NR) * K : 0;
                tile(x + m0 * K, w + n * K, out + m0 * N + n, bias ? bias + n : 0, mr, nr, K, N, pf);
            }
        }
    }
    return 0;
}

// The same product with w held in oneDNN's blocked layout for float32 linears (what
// `mkldnn._reorder_linear_weight` makes, read in place): blocks of `nb` output columns, each
// `kp` rows of k (K padded with zeros) by `nb` columns, so w[n][k] sits at
// (n / nb) * kp * nb + k * nb + n % nb. A packed layer keeps only this copy; its one- and
// two-row products come here. Each thread takes `pw`-column parts of blocks and streams them
// once, k ascending: every output is one fixed-order sum, whatever M is.
enum { PW = 32 };

static inline __attribute__((always_inline)) void part_rows(const float *x, const float *w, const float *bias,
                                                            float *out, int64_t M, int64_t K, int64_t N, int64_t nb,
                                                            int64_t col0, const int64_t pw) {
    const int64_t nv = N - col0 < pw ? N - col0 : pw;  // valid columns: the last block is padded
    for (int64_t m0 = 0; m0 < M; m0 += 2) {
        const int two = m0 + 1 < M;
        const float *x0 = x + m0 * K, *x1 = two ? x0 + K : x0;
        float a0[PW] = {0}, a1[PW] = {0};
        for (int64_t k = 0; k < K; k++) {
            const float *wk = w + k * nb;
            // 16 k-rows ahead, past the hardware prefetcher's reach: as fast as small_gemm's
            // 4 streams of plain rows at 1-2 rows (10% slower without)
            __builtin_prefetch(wk + 16 * nb, 0, 0);
            __builtin_prefetch(wk + 16 * nb + 16, 0, 0);
            const float v0 = x0[k], v1 = x1[k];
            for (int64_t j = 0; j < pw; j++) {
                a0[j] += v0 * wk[j];
                a1[j] += v1 * wk[j];
            }
        }
        for (int64_t j = 0; j < nv; j++) {
            const float b = bias ? bias[col0 + j] : 0.f;
            out[m0 * N + col0 + j] = a0[j] + b;
            if (two) out[(m0 + 1) * N + col0 + j] = a1[j] + b;
        }
    }
}

// Returns 0, or -1 for a block width it cannot split (none that `blocked_layout` accepts).
int blocked_gemm(const float *x, const float *w, const float *bias, float *out, int64_t M, int64_t K, int64_t N,
                 int64_t nb, int64_t kp) {
    const int64_t pw = nb % PW == 0 ? PW : nb % 16 == 0 ? 16 : nb % 8 == 0 ? 8 : nb;
    if (pw > PW || kp < K) return -1;
    const int64_t parts = nb / pw, blocks = (N + nb - 1) / nb;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < blocks * parts; t++) {
        const int64_t b = t / parts, p = t % parts, col0 = b * nb + p * pw;
        if (col0 >= N) continue;
        const float *wp = w + b * kp * nb + p * pw;
        if (pw == PW)
            part_rows(x, wp, bias, out, M, K, N, nb, col0, PW);  // constant width: the accumulators stay in registers
        else
            part_rows(x, wp, bias, out, M, K, N, nb, col0, pw);
    }
    return 0;
}

// A decode step's product (M up to ~128 rows) on the same blocked weights, AVX-512.
//
// Why: oneDNN's matmul at these M does not overlap the weight's stream from memory with its
// arithmetic: on 30 layers of SmolLM2's shapes its time is the read (~17 ms) plus the FLOPs at
// full rate (64 rows: 77 ms, of which 62 arithmetic). Here each thread takes a contiguous range of
// 32-column parts; while a part computes (for every row of x, from L2), the thread's next part is
// prefetched into L2. Measured on those layers (2 threads, AVX-512 EPYC), oneDNN -> this kernel:
// 1 row 21.8 -> 18.3 ms (blocked_gemm 19.0), 4 rows 20.6 -> 16.6, 16 rows 29.9 -> 21.7,
// 32 rows 46.2 -> 38.2, 64 rows 77.0 -> 70.5, 128 rows 143 -> 137; 256 rows 266 -> 272, so the
// caller keeps oneDNN there. In Qwen2.5-0.5B's larger shapes: 8 rows 66.3 -> 56.9, 32 rows
// 135 -> 122, 64 rows even (242 / 241).
//
// Each output is a sum over k ascending, one fused multiply-add a step, whatever M is and
// wherever the row sits: a sequence's result does not depend on its batch company.
#if defined(__AVX512F__)
#include <omp.h>

enum { DR = 12, DW = 32 };  // rows of x per tile (12 x 2 accumulators of 32 registers); columns per part

static inline __attribute__((always_inline)) void dtile(const float *x, int64_t K, const float *w, int64_t nb,
                                                        float *out, int64_t ldo, const float *bias, __mmask16 m0,
                                                        __mmask16 m1, const char *pf, int pfl, const int R) {
    __m512 a0[DR], a1[DR];
    for (int i = 0; i < R; i++) a0[i] = a1[i] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        const float *wk = w + k * nb;
        const __m512 b0 = _mm512_loadu_ps(wk), b1 = _mm512_loadu_ps(wk + 16);
        if (pfl) {  // the next part's k-th row (its two cache lines), into L2
            _mm_prefetch(pf + k * nb * 4, _MM_HINT_T1);
            if (pfl > 1) _mm_prefetch(pf + k * nb * 4 + 64, _MM_HINT_T1);
        }
        for (int i = 0; i < R; i++) {
            const __m512 xv = _mm512_set1_ps(x[i * K + k]);
            a0[i] = _mm512_fmadd_ps(xv, b0, a0[i]);
            a1[i] = _mm512_fmadd_ps(xv, b1, a1[i]);
        }
    }
    const __m512 c0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    const __m512 c1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
    for (int i = 0; i < R; i++) {
        _mm512_mask_storeu_ps(out + i * ldo, m0, _mm512_add_ps(a0[i], c0));
        _mm512_mask_storeu_ps(out + i * ldo + 16, m1, _mm512_add_ps(a1[i], c1));
    }
}

#define DTILE(r) \
    case r: dtile(xm, K, wp, nb, o, N, bp, m0, m1, pfp, pfl, r); break;

// Returns 0, or -1 where the layout's block width is not a multiple of 32 (the caller keeps oneDNN).
int decode_gemm(const float *x, const float *w, const float *bias, float *out, int64_t M, int64_t K, int64_t N,
                int64_t nb, int64_t kp) {
    if (nb % DW || kp < K) return -1;
    const int64_t parts = nb / DW, tasks = (N + nb - 1) / nb * parts, tiles = (M + DR - 1) / DR;
#pragma omp parallel
    {
        const int64_t nt = omp_get_num_threads(), me = omp_get_thread_num();
        const int64_t t1 = tasks * (me + 1) / nt;
        for (int64_t t = tasks * me / nt; t < t1; t++) {
            const int64_t b = t / parts, col0 = b * nb + t % parts * DW;
            if (col0 >= N) continue;
            const int64_t nv = N - col0 < DW ? N - col0 : DW;  // the last block is zero-padded
            const __mmask16 m0 = nv >= 16 ? 0xFFFF : (__mmask16)((1u << nv) - 1);
            const __mmask16 m1 = nv >= 32 ? 0xFFFF : nv <= 16 ? 0 : (__mmask16)((1u << (nv - 16)) - 1);
            const float *wp = w + b * kp * nb + t % parts * DW, *bp = bias ? bias + col0 : 0;
            const char *next = t + 1 < t1 ? (const char *)(w + (t + 1) / parts * kp * nb + (t + 1) % parts * DW) : 0;
            for (int64_t mt = 0; mt < tiles; mt++) {
                // rows spread evenly over the tiles: 64 rows as 11 x 4 + 10 x 2, not 12 x 5 + 4
                const int64_t r0 = M * mt / tiles, r = M * (mt + 1) / tiles - r0;
                const float *xm = x + r0 * K;
                float *o = out + r0 * N + col0;
                // the next part's two lines a k row: both in the first tile, or one in each of two
                const int pfl = next && mt < 2 ? (tiles == 1 ? 2 : 1) : 0;
                const char *pfp = pfl ? next + mt * 64 : 0;
                switch (r) {
                    DTILE(12) DTILE(11) DTILE(10) DTILE(9) DTILE(8) DTILE(7)
                    DTILE(6) DTILE(5) DTILE(4) DTILE(3) DTILE(2) DTILE(1)
                }
            }
        }
    }
    return 0;
}

int decode_gemm_built(void) { return 1; }
#else
int decode_gemm(const float *x, const float *w, const float *bias, float *out, int64_t M, int64_t K, int64_t N,
                int64_t nb, int64_t kp) {
    (void)x, (void)w, (void)bias, (void)out, (void)M, (void)K, (void)N, (void)nb, (void)kp;
    return -1;
}

int decode_gemm_built(void) { return 0; }
#endif
