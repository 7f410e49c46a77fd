// Paged decode attention over a block table, reading keys/values in place (no gather copy).
// q, out: (N, Hq, D) float32; k_cache, v_cache: (num_blocks, bs, Hkv, D) float32.
// Row i attends positions [max(0, len_i - window), len_i) of its sequence. D must be a multiple of 8.
#include <math.h>
#include <stdint.h>
#include <float.h>
#include <string.h>

typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4)));

static inline float hsum(v8 x) {
    return ((x[0] + x[4]) + (x[1] + x[5])) + ((x[2] + x[6]) + (x[3] + x[7]));
}

void paged_decode(const float* q, float* out, const float* kc, const float* vc,
                  const int64_t* rows, const int64_t* lens, const int64_t* tables, int64_t max_blocks,
                  int64_t n, int64_t hq, int64_t hkv, int64_t d, int64_t bs, float scale, int64_t window) {
    const int64_t g = hq / hkv, c8 = d / 8;
    // OpenMP here is torch's own runtime (same soname, already loaded): no second thread pool
    #pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int64_t i = 0; i < n; i++) {
        for (int64_t h = 0; h < hkv; h++) {
            v8 qv[g * c8], acc[g * c8];
            float m[g], l[g], s[bs * g];
            const float* qh = q + (rows[i] * hq + h * g) * d;
            for (int64_t x = 0; x < g * c8; x++) {
                qv[x] = *(const v8u*)(qh + 8 * x) * scale;
                acc[x] = (v8){0};
            }
            for (int64_t gi = 0; gi < g; gi++) { m[gi] = -FLT_MAX; l[gi] = 0.f; }
            const int64_t len = lens[i];
            const int64_t first = (window > 0 && len > window) ? len - window : 0;
            for (int64_t b = first / bs; b * bs < len; b++) {
                const int64_t base = tables[i * max_blocks + b] * bs - b * bs;  // slot of position t: base + t
                const int64_t t0 = b * bs > first ? b * bs : first;
                const int64_t t1 = (b + 1) * bs < len ? (b + 1) * bs : len;
                for (int64_t t = t0; t < t1; t++) {
                    const float* kt = kc + ((base + t) * hkv + h) * d;
                    for (int64_t gi = 0; gi < g; gi++) {
                        v8 sum = {0};
                        for (int64_t c = 0; c < c8; c++) sum += qv[gi * c8 + c] * *(const v8u*)(kt + 8 * c);
                        s[gi * bs + (t - t0)] = hsum(sum);
                    }
                }
                const int64_t nt = t1 - t0;
                for (int64_t gi = 0; gi < g; gi++) {
                    float mb = m[gi];
                    for (int64_t t = 0; t < nt; t++) mb = s[gi * bs + t] > mb ? s[gi * bs + t] : mb;
                    if (mb > m[gi]) {
                        const float corr = expf(m[gi] - mb);
                        l[gi] *= corr;
                        for (int64_t c = 0; c < c8; c++) acc[gi * c8 + c] *= corr;
                        m[gi] = mb;
                    }
                    for (int64_t t = 0; t < nt; t++) {
                        const float p = expf(s[gi * bs + t] - mb);
                        s[gi * bs + t] = p;
                        l[gi] += p;
                    }
                }
                for (int64_t t = t0; t < t1; t++) {
                    const float* vt = vc + ((base + t) * hkv + h) * d;
                    for (int64_t gi = 0; gi < g; gi++) {
                        const float p = s[gi * bs + (t - t0)];
                        for (int64_t c = 0; c < c8; c++) acc[gi * c8 + c] += p * *(const v8u*)(vt + 8 * c);
                    }
                }
            }
            for (int64_t gi = 0; gi < g; gi++) {
                float* o = out + (rows[i] * hq + h * g + gi) * d;
                const float inv = 1.f / l[gi];
                for (int64_t c = 0; c < c8; c++) *(v8u*)(o + 8 * c) = acc[gi * c8 + c] * inv;
            }
        }
    }
}
