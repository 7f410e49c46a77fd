// RMSNorm over the rows of a float32 batch, optionally adding a residual first (a decoder
// block's `x + attention(x)` then its post-attention norm), in one pass over memory and one call.
//
// Why: in torch the norm is six ops (pow, mean, add, rsqrt, mul, mul) and the residual one more,
// each a dispatch (~10 us at a decode step's 64 rows) and a pass over (N, H) at a prefill's 512.
//
// x, res, sum, out: (n, h) contiguous; res may be NULL (then sum is unused). sum = x + res;
// out = (offset + w) * (s / sqrt(mean(s^2) + eps)) with s = x + res (or x), as
// `layers/norm.RMSNorm` computes it; only the order of the sum of squares differs. Each row is
// computed alone: a row's result does not depend on its batch company.
#include <math.h>
#include <stdint.h>

int rms_norm(const float *x, const float *res, float *sum, float *out, const float *w, int64_t n, int64_t h,
             float eps, float offset) {
#pragma omp parallel for schedule(static) if (n * h >= 16384)
    for (int64_t i = 0; i < n; i++) {
        const float *xr = x + i * h;
        float *o = out + i * h;
        const float *s = xr;
        if (res) {
            float *sr = sum + i * h;
            const float *rr = res + i * h;
#pragma omp simd
            for (int64_t c = 0; c < h; c++) sr[c] = xr[c] + rr[c];
            s = sr;
        }
        float ss = 0.f;
#pragma omp simd reduction(+ : ss)
        for (int64_t c = 0; c < h; c++) ss += s[c] * s[c];
        const float inv = 1.f / sqrtf(ss / (float)h + eps);
#pragma omp simd
        for (int64_t c = 0; c < h; c++) o[c] = (offset + w[c]) * (s[c] * inv);
    }
    return 0;
}
