// Rotary position embedding (rotate-half layout) applied in place to q and k rows.
//
// Why: in torch, `x * cos + rotate_half(x) * sin` for q and k is ten ops a layer (two cats, two
// negs, four muls, two adds), each a pass over memory and a dispatch; here it is one call and one
// pass. q and k are usually views of the fused q/k/v projection's output, so they are rotated
// where they lie, without a copy.
//
// q: n rows of hq heads of d floats, row i at q + i * q_row, heads contiguous (stride d);
// k likewise with hkv heads and row stride k_row; cos, sin: (n, d) contiguous, the tables of
// `layers/rotary.RotaryEmbedding` (mscale already in). For j < d/2, with a = x[j], b = x[j + d/2]:
//   x[j] = a * cos[j] - b * sin[j];  x[j + d/2] = b * cos[j + d/2] + a * sin[j + d/2]
// Each product is rounded before the sum (no fused multiply-add), as torch's separate ops do, so
// the result is bit-equal to the torch path.
#include <stdint.h>

#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

static inline void rotate(float *x, const float *c, const float *s, int64_t half) {
#pragma omp simd
    for (int64_t j = 0; j < half; j++) {
        const float a = x[j], b = x[j + half];
        const float lo = a * c[j], lo2 = b * s[j];
        const float hi = b * c[j + half], hi2 = a * s[j + half];
        x[j] = lo - lo2;
        x[j + half] = hi + hi2;
    }
}

int rope_inplace(float *q, int64_t q_row, int64_t hq, float *k, int64_t k_row, int64_t hkv, const float *cos,
                 const float *sin, int64_t n, int64_t d) {
    const int64_t half = d / 2;
#pragma omp parallel for schedule(static) if (n * (hq + hkv) * d >= 32768)
    for (int64_t i = 0; i < n; i++) {
        const float *c = cos + i * d, *s = sin + i * d;
        for (int64_t h = 0; h < hq; h++) rotate(q + i * q_row + h * d, c, s, half);
        for (int64_t h = 0; h < hkv; h++) rotate(k + i * k_row + h * d, c, s, half);
    }
    return 0;
}
