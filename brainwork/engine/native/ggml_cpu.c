// llama.cpp's CPU arithmetic in C: the same float operations in the same order as ggml's AVX2
// kernels, so results equal ggml's bit for bit (checked against ggml itself and against the torch
// emulation in brainwork/numerics). Two kernels:
//   ggml_block_mm  a Q4_0/Q4_1/Q5_0/Q8_0 weight (raw GGUF blocks) times float activations, which
//                  are first quantized to Q8_0/Q8_1 blocks as ggml's quantize_row_q8_x does;
//   ggml_attn      ggml's one-chunk flash attention over a paged float16 KV cache.
// Compiled without fp contraction: every fma here is written out, as ggml's intrinsics are, and
// ggml's plain `a*b + c` (the softmax sum) must stay two roundings.
#pragma GCC optimize("fp-contract=off")

#include <immintrin.h>
#include <omp.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { Q4_0 = 0, Q4_1 = 1, Q5_0 = 2, Q8_0 = 3 };
static const int BLOCK_BYTES[] = {18, 20, 22, 34};

static inline float f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }
static inline uint16_t f32_to_f16(float f) { return _cvtss_sh(f, 0); }  // round to nearest even

static inline float hsum_float_8(__m256 x) {  // (hi + lo), then pairs: ggml's order
    __m128 r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

static inline int32_t hsum_i32_8(__m256i v) {
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4E));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xB1));
    return _mm_cvtsi128_si32(t);
}

// 8 int32 lanes, lane l = sum of the 4 products at bytes 4l..4l+3, as float. With VNNI one
// instruction gives the same lanes (ggml's mul_sum_us8_pairs_float does the same): the pair sums
// of maddubs never saturate here (|a| <= 128, |y| <= 127), so both are the exact sums.
static inline __m256 dot_us8(__m256i ax, __m256i sy) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sy));
#elif defined(__AVXVNNI__)
    return _mm256_cvtepi32_ps(_mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), ax, sy));
#else
    __m256i dot = _mm256_maddubs_epi16(ax, sy);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), dot));
#endif
}
static inline __m256 dot_i8(__m256i x, __m256i y) {
    return dot_us8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

static inline __m256i nibbles_32(const uint8_t *qs) {  // low nibbles = values 0..15, high = 16..31
#ifdef __GFNI__  // the 16 bytes loaded into both halves, then one bit-matrix op per byte: the low
    // nibble in the lower half, the high one in the upper
    const __m256i raw = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    return _mm256_gf2p8affine_epi64_epi8(
        raw, _mm256_set_epi64x(0x1020408000000000, 0x1020408000000000, 0x0102040800000000, 0x0102040800000000), 0);
#else
    __m128i t = _mm_loadu_si128((const __m128i *)qs);
    __m256i b = _mm256_insertf128_si256(_mm256_castsi128_si256(t), _mm_srli_epi16(t, 4), 1);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
#endif
}

// quantize_row_q8_0 / q8_1 (AVX2): d = amax/127, codes = round_half_even(x * (127/amax)),
// Q8_1 also s = fp16(d * sum(codes)). d and s are kept as the float of their fp16, block b's at
// d16[b * ds] (ds = the row count: the matmuls read a block's scales of several rows at once).
static void quantize_q8(const float *x, int64_t k, int8_t *codes, float *d16, float *s16, int64_t ds) {
    for (int64_t b = 0; b < k / 32; b++) {
        const float *v = x + 32 * b;
        float amax = 0.0f;
        int sum = 0;
#if defined(__AVX512VL__)  // as ggml's AVX2 loop: max of |v| by lanes, codes by round-to-nearest-even
        const __m256 sign = _mm256_set1_ps(-0.0f);
        __m256 vs[4], mx = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) vs[i] = _mm256_loadu_ps(v + 8 * i), mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, vs[i]));
        __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(mx, 1), _mm256_castps256_ps128(mx));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
        const float d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        __m256i total = _mm256_setzero_si256();
        for (int i = 0; i < 4; i++) {
            const __m256 r = _mm256_round_ps(_mm256_mul_ps(vs[i], _mm256_set1_ps(id)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            const __m256i c = _mm256_cvtps_epi32(r);
            _mm_storel_epi64((__m128i *)(codes + 32 * b + 8 * i), _mm256_cvtepi32_epi8(c));
            total = _mm256_add_epi32(total, c);
        }
        sum = hsum_i32_8(total);
#else
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(v[i]));
        const float d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        for (int i = 0; i < 32; i++) {
            int c = (int)nearbyintf(v[i] * id);
            codes[32 * b + i] = (int8_t)c;
            sum += c;
        }
#endif
        d16[b * ds] = f16_to_f32(f32_to_f16(d));
        if (s16) s16[b * ds] = f16_to_f32(f32_to_f16(d * (float)sum));
    }
}

// One weight block: its 32 codes (signed, or unsigned nibbles for Q4_1), d and (Q4_1) m.
static inline __attribute__((always_inline)) __m256i weight_block(int qtype, const uint8_t *w, float *dw, float *mw) {
    *dw = f16_to_f32(*(const uint16_t *)w);
    if (qtype == Q4_0) return _mm256_sub_epi8(nibbles_32(w + 2), _mm256_set1_epi8(8));
    if (qtype == Q4_1) {
        *mw = f16_to_f32(*(const uint16_t *)(w + 2));
        return nibbles_32(w + 4);
    }
    if (qtype == Q5_0) {  // nibble | 0xF0 where the fifth bit is clear: (nibble | bit << 4) - 16 as int8
        uint32_t qh;
        memcpy(&qh, w + 2, 4);
        const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
        __m256i bits = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), shuf);  // byte i holds qh's byte i / 8
        bits = _mm256_or_si256(bits, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));  // all ones iff bit i % 8 set
        bits = _mm256_cmpeq_epi8(bits, _mm256_set1_epi64x(-1));
        return _mm256_or_si256(nibbles_32(w + 6), _mm256_andnot_si256(bits, _mm256_set1_epi8((char)0xF0)));
    }
    return _mm256_loadu_si256((const __m256i *)(w + 2));
}

// Activation rows against weight rows. Every (row, weight row) pair keeps ggml's order:
// acc = fma(d_w * d_x, lanes, acc) block after block, then hsum (+ summs for Q4_1, itself
// summs = fma(m_w, s_x, summs) block after block). xd, xs: (k/32, m) scales, block b of row r at
// [b * m + r]; the pointers given here start at the first row.

// `mr` (<= 4) rows against one weight row, its blocks decoded once for all rows.
static inline __attribute__((always_inline)) void dot_rows(int qtype, int mr, const uint8_t *w, const int8_t *xq,
                                                           const float *xd, const float *xs, int64_t m, int64_t nb,
                                                           int64_t k, float *y, int64_t ystride) {
    __m256 acc[4];
    float summs[4];
    for (int r = 0; r < mr; r++) acc[r] = _mm256_setzero_ps(), summs[r] = 0.0f;
    const int bytes = BLOCK_BYTES[qtype];
    for (int64_t b = 0; b < nb; b++, w += bytes) {
        float dw, mw = 0.0f;
        const __m256i qx = weight_block(qtype, w, &dw, &mw);
        const __m256i ax = qtype == Q4_1 ? qx : _mm256_sign_epi8(qx, qx);
        for (int r = 0; r < mr; r++) {
            const __m256i qy = _mm256_loadu_si256((const __m256i *)(xq + r * k + 32 * b));
            const __m256 q = dot_us8(ax, qtype == Q4_1 ? qy : _mm256_sign_epi8(qy, qx));
            if (qtype == Q4_1) summs[r] = fmaf(mw, xs[b * m + r], summs[r]);
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dw * xd[b * m + r]), q, acc[r]);  // fp16 x fp16: exact
        }
    }
    for (int r = 0; r < mr; r++) y[r * ystride] = qtype == Q4_1 ? hsum_float_8(acc[r]) + summs[r] : hsum_float_8(acc[r]);
}

// 8 rows against one weight row: the weight block decoded once for 8 rows, 8 scale products
// from one vector multiply. The same per-pair steps as dot_rows.
static inline __attribute__((always_inline)) void dot_rows8(int qtype, const uint8_t *w, const int8_t *xq,
                                                            const float *xd, const float *xs, int64_t m, int64_t nb,
                                                            int64_t k, float *y, int64_t ystride) {
    __m256 acc[8];
    __m256 summs = _mm256_setzero_ps();  // Q4_1: lane r is row r's
    for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
    const int bytes = BLOCK_BYTES[qtype];
    for (int64_t b = 0; b < nb; b++, w += bytes) {
        float dw, mw = 0.0f;
        const __m256i qx = weight_block(qtype, w, &dw, &mw);
        const __m256i ax = qtype == Q4_1 ? qx : _mm256_sign_epi8(qx, qx);
        const __m256 dwv = _mm256_set1_ps(dw);
        if (qtype == Q4_1) summs = _mm256_fmadd_ps(_mm256_set1_ps(mw), _mm256_loadu_ps(xs + b * m), summs);
        for (int r = 0; r < 8; r++) {
            const __m256i qy = _mm256_loadu_si256((const __m256i *)(xq + r * k + 32 * b));
            const __m256 q = dot_us8(ax, qtype == Q4_1 ? qy : _mm256_sign_epi8(qy, qx));
            // the scale product per row from a broadcast load of xd: a vector of all 8 products
            // stored and read back one float at a time stalls on store-to-load forwarding
            acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(dwv, _mm256_broadcast_ss(xd + b * m + r)), q, acc[r]);
        }
    }
    float sm[8];
    _mm256_storeu_ps(sm, summs);
    for (int r = 0; r < 8; r++) y[r * ystride] = qtype == Q4_1 ? hsum_float_8(acc[r]) + sm[r] : hsum_float_8(acc[r]);
}

#if defined(__AVX512VNNI__) && defined(__AVX512VL__) && defined(__AVX512BW__)
#define WIDE_TILES 1
// Tiles of 8 activation rows x 2 weight rows with VNNI. The weight codes go in as unsigned bytes
// (Q4_0 nibble, Q5_0 nibble | bit << 4, Q8_0 code + 128; Q4_1's nibbles already are) and the
// dpbusd accumulator starts at -OFFSET * (the activation's 4-value sums), a per-row vector made
// once per matmul: lane l is then sum (code - OFFSET) * q8 over its 4 values, the same exact
// integer that the sign trick gives, so every float step after it is ggml's. This drops the two
// sign operations per row and block and decodes each weight block once per 8 rows.
static const int OFFSET[] = {8, 0, 16, 128};

// a block's codes as unsigned bytes (see OFFSET)
static inline __attribute__((always_inline)) __m256i codes_u8(int qtype, const uint8_t *w) {
    if (qtype == Q4_0) return nibbles_32(w + 2);
    if (qtype == Q4_1) return nibbles_32(w + 4);
    if (qtype == Q5_0) {  // qh's bit i is value i's fifth bit: a byte mask as it stands
        uint32_t qh;
        memcpy(&qh, w + 2, 4);
        const __m256i nib = nibbles_32(w + 6);
        return _mm256_mask_add_epi8(nib, (__mmask32)qh, nib, _mm256_set1_epi8(16));
    }
    return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(w + 2)), _mm256_set1_epi8((char)0x80));
}

static inline __attribute__((always_inline)) __m256i weight_u8(int qtype, const uint8_t *w, float *dw, float *mw) {
    *dw = f16_to_f32(*(const uint16_t *)w);
    if (qtype == Q4_1) *mw = f16_to_f32(*(const uint16_t *)(w + 2));
    return codes_u8(qtype, w);
}

// The 8-row tiles read the activations of a group of 8 rows block by block, each block's data
// side by side so that every offset within a tile is a constant: `wide` holds, for rows g*8..g*8+7
// (g < m/8) and block b, codes (8, 32) int8 at tile_codes(), offset sums (8, 8) int32 at
// tile_sums() (lane l of row i: -OFFSET * the sum of its values 4l..4l+3; not for Q4_1) and the
// rows' d (8,) at tile_scales(). 2.125 * m * k bytes in all.
static inline int8_t *tile_codes(int8_t *wide, int64_t g, int64_t nb) { return wide + g * nb * 256; }
static inline int32_t *tile_sums(int8_t *wide, int64_t m8, int64_t k, int64_t g, int64_t nb) {
    return (int32_t *)(wide + m8 * k) + g * nb * 64;
}
static inline float *tile_scales(int8_t *wide, int64_t m8, int64_t k, int64_t g, int64_t nb) {
    return (float *)(wide + 2 * m8 * k) + g * nb * 8;
}

// the 8 sums of one row's block b, -OFFSET * each lane's 4-value sum of the codes xq, at
// sums + stride * b (8: row-major; 64: an 8-row tile's order)
static inline void offset_sums(int qtype, const int8_t *xq, int64_t nb, int32_t *sums, int64_t stride) {
    const __m256i neg = _mm256_set1_epi32(-OFFSET[qtype]);
    for (int64_t b = 0; b < nb; b++) {
        const __m256i qy = _mm256_loadu_si256((const __m256i *)(xq + 32 * b));
        const __m256i s4 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), qy);
        _mm256_storeu_si256((__m256i *)(sums + stride * b), _mm256_mullo_epi32(s4, neg));
    }
}

// row r (< m/8*8) of xq / xd into `wide`
static inline void tile_row(int qtype, const int8_t *xq, const float *xd, int64_t r, int64_t m, int64_t k,
                            int8_t *wide) {
    const int64_t nb = k / 32, m8 = m / 8 * 8, g = r / 8, i = r % 8;
    int8_t *codes = tile_codes(wide, g, nb) + 32 * i;
    float *scales = tile_scales(wide, m8, k, g, nb) + i;
    for (int64_t b = 0; b < nb; b++) {
        memcpy(codes + 256 * b, xq + r * k + 32 * b, 32);
        scales[8 * b] = xd[b * m + r];
    }
    if (qtype != Q4_1) offset_sums(qtype, xq + r * k, nb, tile_sums(wide, m8, k, g, nb) + 8 * i, 64);
}

// rows 8g..8g+7 against weight rows j, j+1 (w: row j's blocks, the next row row_bytes on); every
// (row, weight row) pair takes dot_rows's steps: acc = fma(d_w * d_x, lanes, acc), hsum (+ summs)
static inline __attribute__((always_inline)) void tile8x2(int qtype, const uint8_t *w, int64_t row_bytes,
                                                          const int8_t *codes, const int32_t *sums,
                                                          const float *scales, const float *xs, int64_t m, int64_t nb,
                                                          float *y, int64_t n) {
    __m256 acc[2][8], summs[2];
    for (int j = 0; j < 2; j++) {
        summs[j] = _mm256_setzero_ps();
        for (int r = 0; r < 8; r++) acc[j][r] = _mm256_setzero_ps();
    }
    const int bytes = BLOCK_BYTES[qtype];
    for (int64_t b = 0; b < nb; b++, w += bytes, codes += 256, sums += 64, scales += 8) {
        float dw[2], mw[2] = {0.0f, 0.0f};
        // the next pair's rows, while these are in use: the weight stream runs ahead of the tiles
        _mm_prefetch((const char *)(w + 2 * row_bytes), _MM_HINT_T0);
        _mm_prefetch((const char *)(w + 3 * row_bytes), _MM_HINT_T0);
        const __m256i u0 = weight_u8(qtype, w, dw, mw);
        const __m256i u1 = weight_u8(qtype, w + row_bytes, dw + 1, mw + 1);
        const __m256 d0 = _mm256_set1_ps(dw[0]), d1 = _mm256_set1_ps(dw[1]);
        if (qtype == Q4_1) {
            const __m256 sx = _mm256_loadu_ps(xs + b * m);
            summs[0] = _mm256_fmadd_ps(_mm256_set1_ps(mw[0]), sx, summs[0]);
            summs[1] = _mm256_fmadd_ps(_mm256_set1_ps(mw[1]), sx, summs[1]);
        }
        // the 16 scale products d_w * d_x (fp16 x fp16: exact). The dot, the products and the fma
        // all run on the same two pipes (FP0/FP1 on Zen 4), which bound this loop: but for Q4_1
        // (whose summs take those pipes' other slots) two multiplies make all 16 products, each
        // then broadcast from its lane by a permute, which runs elsewhere (+5-10% at 16-64 rows)
        const __m256 sc8 = _mm256_loadu_ps(scales);
        const __m256 p0 = _mm256_mul_ps(d0, sc8), p1 = _mm256_mul_ps(d1, sc8);
        for (int r = 0; r < 8; r++) {
            const __m256i qy = _mm256_loadu_si256((const __m256i *)(codes + 32 * r));
            const __m256i c = qtype == Q4_1 ? _mm256_setzero_si256() : _mm256_loadu_si256((const __m256i *)(sums + 8 * r));
            const __m256 q0 = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(c, u0, qy));
            const __m256 q1 = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(c, u1, qy));
            if (qtype == Q4_1) {
                const __m256 xdr = _mm256_broadcast_ss(scales + r);
                acc[0][r] = _mm256_fmadd_ps(_mm256_mul_ps(d0, xdr), q0, acc[0][r]);
                acc[1][r] = _mm256_fmadd_ps(_mm256_mul_ps(d1, xdr), q1, acc[1][r]);
            } else {
                const __m256i lane = _mm256_set1_epi32(r);
                acc[0][r] = _mm256_fmadd_ps(_mm256_permutexvar_ps(lane, p0), q0, acc[0][r]);
                acc[1][r] = _mm256_fmadd_ps(_mm256_permutexvar_ps(lane, p1), q1, acc[1][r]);
            }
        }
    }
    float sm[2][8];
    _mm256_storeu_ps(sm[0], summs[0]);
    _mm256_storeu_ps(sm[1], summs[1]);
    for (int r = 0; r < 8; r++)
        for (int j = 0; j < 2; j++)
            y[r * n + j] = qtype == Q4_1 ? hsum_float_8(acc[j][r]) + sm[j][r] : hsum_float_8(acc[j][r]);
}

// weight-row pairs j0..j1 against row groups g0..g1 in 8x2 tiles, one loop per block type
static __attribute__((noinline)) void tile_block(int qtype, const uint8_t *w, int64_t row_bytes, int8_t *wide,
                                                 const float *xs, int64_t m, int64_t k, float *y, int64_t n,
                                                 int64_t j0, int64_t j1, int64_t g0, int64_t g1) {
    const int64_t nb = k / 32, m8 = m / 8 * 8;
#define TILES(Q)                                                                                                  \
    for (int64_t j = j0; j < j1; j += 2)                                                                          \
        for (int64_t g = g0; g < g1; g++)                                                                         \
            tile8x2(Q, w + j * row_bytes, row_bytes, tile_codes(wide, g, nb), tile_sums(wide, m8, k, g, nb),      \
                    tile_scales(wide, m8, k, g, nb), xs ? xs + 8 * g : NULL, m, nb, y + 8 * g * n + j, n);
    switch (qtype) {
        case Q4_0: TILES(Q4_0) break;
        case Q4_1: TILES(Q4_1) break;
        case Q5_0: TILES(Q5_0) break;
        default: TILES(Q8_0) break;
    }
#undef TILES
}

// The rows after the last full tile (m % 8 of them) keep the row-major codes of xq; their offset
// sums go after the tiles' data in `wide`, (m % 8, k/32, 8) int32.
static inline int32_t *rest_sums(int8_t *wide, int64_t m8, int64_t k) {
    return (int32_t *)(wide + ((2 * m8 * k + m8 * k / 8 + 63) & ~(int64_t)63));
}

// mr (<= 4) rows against two weight rows w0, w1 (outputs y0[r * n], y1[r * n]), the same steps as
// tile8x2 (one row: decode). No software prefetch: with this little work per byte the hardware's
// stream prefetch does better, on two streams far apart (two adjacent rows read side by side look
// like one stream going back and forth, and ran at half the speed from memory).
static inline __attribute__((always_inline)) void rows_x2(int qtype, int mr, const uint8_t *w0, const uint8_t *w1,
                                                          const int8_t *xq, const int32_t *sums, const float *xd,
                                                          const float *xs, int64_t m, int64_t nb, int64_t k, float *y0,
                                                          float *y1, int64_t n) {
    __m256 acc[2][4];
    float summs[2][4];
    for (int j = 0; j < 2; j++)
        for (int r = 0; r < mr; r++) acc[j][r] = _mm256_setzero_ps(), summs[j][r] = 0.0f;
    const int bytes = BLOCK_BYTES[qtype];
    for (int64_t b = 0; b < nb; b++, w0 += bytes, w1 += bytes) {
        float dw[2], mw[2] = {0.0f, 0.0f};
        const __m256i u0 = weight_u8(qtype, w0, dw, mw);
        const __m256i u1 = weight_u8(qtype, w1, dw + 1, mw + 1);
        const __m256 d0 = _mm256_set1_ps(dw[0]), d1 = _mm256_set1_ps(dw[1]);
        for (int r = 0; r < mr; r++) {
            const __m256i qy = _mm256_loadu_si256((const __m256i *)(xq + r * k + 32 * b));
            const __m256i c = qtype == Q4_1 ? _mm256_setzero_si256()
                                            : _mm256_loadu_si256((const __m256i *)(sums + (r * nb + b) * 8));
            const __m256 xdr = _mm256_broadcast_ss(xd + b * m + r);
            if (qtype == Q4_1) {
                summs[0][r] = fmaf(mw[0], xs[b * m + r], summs[0][r]);
                summs[1][r] = fmaf(mw[1], xs[b * m + r], summs[1][r]);
            }
            acc[0][r] = _mm256_fmadd_ps(_mm256_mul_ps(d0, xdr), _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(c, u0, qy)), acc[0][r]);
            acc[1][r] = _mm256_fmadd_ps(_mm256_mul_ps(d1, xdr), _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(c, u1, qy)), acc[1][r]);
        }
    }
    for (int r = 0; r < mr; r++) {
        y0[r * n] = qtype == Q4_1 ? hsum_float_8(acc[0][r]) + summs[0][r] : hsum_float_8(acc[0][r]);
        y1[r * n] = qtype == Q4_1 ? hsum_float_8(acc[1][r]) + summs[1][r] : hsum_float_8(acc[1][r]);
    }
}

// One activation row (xq, its block scales xd[b * m], xs[b * m]) against `nw` (<= 4) weight rows
// w[t], outputs y[t]: rows_x2's steps with each block's scale products from one 4-lane multiply.
// The weight's fp16 d (and Q4_1 m, next to it) convert together; [d, m] * [d_x, s_x] gives d*d_x
// (broadcast for the fma) and m*s_x, exact products both, and lane 1 of a running 4-lane sum is
// summs' fma(m, s_x, summs). Four rows at once: each row's fma chain waits on its last result,
// and with k = 576 (18 blocks) a row is too short for the next one's chain to overlap it.
static inline __attribute__((always_inline)) void row1_xn(int qtype, int nw, const uint8_t *const *w,
                                                          const int8_t *xq, const int32_t *sums, const float *xd,
                                                          const float *xs, int64_t m, int64_t nb, float *const *y) {
    __m256 acc[4];
    __m128 sm[4];
    for (int t = 0; t < nw; t++) acc[t] = _mm256_setzero_ps(), sm[t] = _mm_setzero_ps();
    const int bytes = BLOCK_BYTES[qtype];
    for (int64_t b = 0; b < nb; b++) {
        const __m256i qy = _mm256_loadu_si256((const __m256i *)(xq + 32 * b));
        const __m256i c = qtype == Q4_1 ? _mm256_setzero_si256() : _mm256_loadu_si256((const __m256i *)(sums + 8 * b));
        __m128 sx = _mm_load_ss(xd + b * m);
        if (qtype == Q4_1) sx = _mm_insert_ps(sx, _mm_load_ss(xs + b * m), 0x10);  // [d_x, s_x, 0, 0]
        for (int t = 0; t < nw; t++) {
            const uint8_t *wb = w[t] + b * bytes;
            // non-temporal: a step's weights (100 MB) are never read again before they would be
            // evicted anyway; streamed through the caches they evict what is (keys and values,
            // activations, the interpreter's own state between calls). ~10% off a SmolLM2 step.
            _mm_prefetch((const char *)(wb + 512), _MM_HINT_NTA);
            int32_t dm;  // d, and m for Q4_1 (else the first code bytes: lane 1 is unused then)
            memcpy(&dm, wb, 4);
            const __m128 p = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(dm)), sx);
            if (qtype == Q4_1) sm[t] = _mm_add_ps(sm[t], p);
            const __m256 q = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(c, codes_u8(qtype, wb), qy));
            acc[t] = _mm256_fmadd_ps(_mm256_broadcastss_ps(p), q, acc[t]);
        }
    }
    for (int t = 0; t < nw; t++)
        *y[t] = qtype == Q4_1 ? hsum_float_8(acc[t]) + _mm_cvtss_f32(_mm_movehdup_ps(sm[t])) : hsum_float_8(acc[t]);
}

// weight rows j0..j1 (an even count) against rows m8..m (fewer than 8), up to 4 at a time; row j
// of the first half goes with row j + half
static __attribute__((noinline)) void rest_block(int qtype, const uint8_t *w, int64_t row_bytes, const int8_t *xq,
                                                 const int32_t *sums, const float *xd, const float *xs, int64_t m,
                                                 int64_t m8, int64_t k, float *y, int64_t n, int64_t j0, int64_t j1) {
    const int64_t nb = k / 32, half = (j1 - j0) / 2;
#define ROWS(Q, MR)                                                                                             \
    rows_x2(Q, MR, w + j * row_bytes, w + (j + half) * row_bytes, xq + r * k, sums + (r - m8) * nb * 8, xd + r, \
            xs ? xs + r : NULL, m, nb, k, y + r * n + j, y + r * n + j + half, n)
#define REST(Q)                                                                                                 \
    for (int64_t j = j0; j < j0 + half; j++)                                                                    \
        for (int64_t r = m8; r < m; r += 4) switch (m - r) {                                                    \
                case 1: ROWS(Q, 1); break;                                                                      \
                case 2: ROWS(Q, 2); break;                                                                      \
                case 3: ROWS(Q, 3); break;                                                                      \
                default: ROWS(Q, 4); break;                                                                     \
            }
#define ONE(Q)                                                                                                  \
    for (int64_t j = j0; j < j0 + q4; j++) {                                                                    \
        const uint8_t *ws[4] = {w + j * row_bytes, w + (j + q4) * row_bytes, w + (j + 2 * q4) * row_bytes,      \
                                w + (j + 3 * q4) * row_bytes};                                                  \
        float *ys[4] = {y + m8 * n + j, y + m8 * n + j + q4, y + m8 * n + j + 2 * q4, y + m8 * n + j + 3 * q4}; \
        row1_xn(Q, 4, ws, xq + m8 * k, sums, xd + m8, xs ? xs + m8 : NULL, m, nb, ys);                          \
    }                                                                                                           \
    for (int64_t j = j0 + 4 * q4; j < j1; j++) {                                                                \
        const uint8_t *ws[1] = {w + j * row_bytes};                                                             \
        float *ys[1] = {y + m8 * n + j};                                                                        \
        row1_xn(Q, 1, ws, xq + m8 * k, sums, xd + m8, xs ? xs + m8 : NULL, m, nb, ys);                          \
    }
    // one row (decode): four weight rows at a time, from the four quarters of the range (four
    // streams far apart, as rows_x2's two halves)
    const int64_t q4 = (j1 - j0) / 4;
    if (m - m8 == 1) switch (qtype) {
            case Q4_0: ONE(Q4_0) break;
            case Q4_1: ONE(Q4_1) break;
            case Q5_0: ONE(Q5_0) break;
            default: ONE(Q8_0) break;
        }
    else switch (qtype) {
            case Q4_0: REST(Q4_0) break;
            case Q4_1: REST(Q4_1) break;
            case Q5_0: REST(Q5_0) break;
            default: REST(Q8_0) break;
        }
#undef ONE
#undef REST
#undef ROWS
}
#endif

static inline __attribute__((always_inline)) void mm_rows(int qtype, const uint8_t *w, int64_t n, int64_t k,
                                                          const int8_t *xq, const float *xd, const float *xs,
                                                          int8_t *wide, int64_t m, float *y) {
    const int64_t nb = k / 32, row_bytes = nb * BLOCK_BYTES[qtype];
#ifdef WIDE_TILES
    const int64_t m8 = m / 8 * 8;  // rows done in 8x2 tiles, the rest in 4x2 or smaller
    const int64_t n2 = n / 2 * 2;
    // this thread's share of the weight-row pairs, the same in every block of 64 rows, so no
    // barrier between them; the tiles run in a function of their own (not in the outlined omp
    // body, where the compiler keeps the loop's bounds and pointers in memory)
    const int64_t pairs = n2 / 2, nth = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t j0 = 2 * (pairs * tid / nth), j1 = 2 * (pairs * (tid + 1) / nth);
    for (int64_t g0 = 0; g0 < m8 / 8; g0 += 8)  // 64 rows at a time: their codes and sums stay in L2
        tile_block(qtype, w, row_bytes, wide, xs, m, k, y, n, j0, j1, g0, g0 + 8 < m8 / 8 ? g0 + 8 : m8 / 8);
    if (m8 < m) rest_block(qtype, w, row_bytes, xq, rest_sums(wide, m8, k), xd, xs, m, m8, k, y, n, j0, j1);
    if (n2 < n) {  // an odd last weight row
#pragma omp single nowait
        {
            const uint8_t *wj = w + n2 * row_bytes;
            int64_t r = 0;
            for (; r + 8 <= m; r += 8)
                dot_rows8(qtype, wj, xq + r * k, xd + r, xs ? xs + r : NULL, m, nb, k, y + r * n + n2, n);
            for (; r < m; r++)
                dot_rows(qtype, 1, wj, xq + r * k, xd + r, xs ? xs + r : NULL, m, nb, k, y + r * n + n2, n);
        }
    }
#pragma omp barrier
#else
    (void)wide;
#pragma omp for schedule(static)
    for (int64_t j = 0; j < n; j++) {
        const uint8_t *wj = w + j * row_bytes;
        int64_t r = 0;
        for (; r + 8 <= m; r += 8)
            dot_rows8(qtype, wj, xq + r * k, xd + r, xs ? xs + r : NULL, m, nb, k, y + r * n + j, n);
        for (; r + 4 <= m; r += 4)
            dot_rows(qtype, 4, wj, xq + r * k, xd + r, xs ? xs + r : NULL, m, nb, k, y + r * n + j, n);
        for (; r < m; r++)
            dot_rows(qtype, 1, wj, xq + r * k, xd + r, xs ? xs + r : NULL, m, nb, k, y + r * n + j, n);
    }
#endif
}

// The `*_team` forms below are called by every thread of an enclosing parallel region (or by
// one thread outside any): their loops are `omp for`, with its barrier at the end. The public
// functions wrap them in a region of their own; the decoder stack runs them all in one region.

// y (m, n) = x (m, k) times the n rows of w; xq (m, k), xd, xs (k/32, m) scratch for the
// quantized activations (xs only for Q4_1), wide (2.125 m k bytes) for their 8-row tile form
// (unused without AVX-512 VNNI).
static void block_mm_team(int qtype, const uint8_t *w, int64_t n, int64_t k, const float *x, int64_t m, float *y,
                          int8_t *xq, float *xd, float *xs, int8_t *wide) {
    if (qtype != Q4_1) xs = NULL;
    if (m == 1) {  // a decode's one row: each thread quantizes it into scratch of its own (the
        // scratch holds a row per thread), so its dot products start without waiting at a barrier
        const int64_t tid = omp_get_thread_num();
        xq += tid * k, xd += tid * (k / 32), xs = xs ? xs + tid * (k / 32) : NULL, wide += tid * k;
        quantize_q8(x, k, xq, xd, xs, 1);
#ifdef WIDE_TILES
        if (qtype != Q4_1) offset_sums(qtype, xq, k / 32, rest_sums(wide, 0, k), 8);
#endif
    } else {
#pragma omp for schedule(static)
        for (int64_t r = 0; r < m; r++) {
            quantize_q8(x + r * k, k, xq + r * k, xd + r, xs ? xs + r : NULL, m);
#ifdef WIDE_TILES  // the row's tile form (or offset sums) from what this iteration just wrote
            const int64_t m8 = m / 8 * 8;
            if (r < m8)
                tile_row(qtype, xq, xd, r, m, k, wide);
            else if (qtype != Q4_1)
                offset_sums(qtype, xq + r * k, k / 32, rest_sums(wide, m8, k) + (r - m8) * (k / 32) * 8, 8);
#endif
        }
    }
    switch (qtype) {  // one loop specialized per block type
        case Q4_0: mm_rows(Q4_0, w, n, k, xq, xd, xs, wide, m, y); break;
        case Q4_1: mm_rows(Q4_1, w, n, k, xq, xd, xs, wide, m, y); break;
        case Q5_0: mm_rows(Q5_0, w, n, k, xq, xd, xs, wide, m, y); break;
        default: mm_rows(Q8_0, w, n, k, xq, xd, xs, wide, m, y); break;
    }
}

// bytes of `wide` scratch for m rows of k values
static inline size_t wide_bytes(int64_t m, int64_t k) { return (size_t)(m * k * 2 + m * k / 8 + 128); }

// y (m, n) = x (m, k) times the n rows of w (raw blocks, n x k/32 blocks). Returns 0, or -1 on
// a bad argument.
// scratch rows for m activation rows: a row per thread at least (block_mm_team's one-row case)
static inline int64_t scratch_rows(int64_t m) { return m > omp_get_max_threads() ? m : omp_get_max_threads(); }

int ggml_block_mm(int qtype, const uint8_t *w, int64_t n, int64_t k, const float *x, int64_t m, float *y) {
    if (qtype < 0 || qtype > 3 || k % 32) return -1;
    const int64_t nb = k / 32, rows = scratch_rows(m);
    int8_t *xq = malloc((size_t)(rows * k));
    float *xd = malloc(sizeof(float) * (size_t)(rows * nb));
    float *xs = qtype == Q4_1 ? malloc(sizeof(float) * (size_t)(rows * nb)) : NULL;
    int8_t *wide = malloc(wide_bytes(rows, k));
    if (!xq || !xd || (qtype == Q4_1 && !xs) || !wide) {
        free(xq), free(xd), free(xs), free(wide);
        return -1;
    }
#pragma omp parallel if (n * m * nb > 4096)  // small products: a thread team costs more than it saves
    block_mm_team(qtype, w, n, k, x, m, y, xq, xd, xs, wide);
    free(xq), free(xd), free(xs), free(wide);
    return 0;
}

static int is_interleave(const int64_t *order, int64_t d) {
    if (!order) return 0;
    for (int64_t j = 0; j < d; j++)
        if (order[j] != j / 2 + (j % 2) * (d / 2)) return 0;
    return 1;
}

// One query row of every head over its sequence's keys, as ggml's flash_attn_ext_f16_one_chunk:
// float16 query, keys in position order (masked ones skipped), running max M and sum
// S = S*ms + vs (two roundings), float16 value accumulator rounded after every key.
//   q, out (rows, hq, d) float32; k_cache, v_cache (blocks, bs, hkv, d) float16;
//   row_seq (rows) index into tables (seqs, nb); row_pos (rows) the query's position;
//   window 0 = none; order (d) the q.k summation order (NULL = natural).
// attn_heads does `nh` (<= MAX_RUN) heads of one row that share a KV head in one pass over the
// keys: each key and value is converted from float16 once for all of them, and their chains of
// dependent steps (dot, max, exp, accumulator update) interleave. Each head's steps are the ones
// ggml does for it alone (the query's float16 values are converted to float once here, where
// ggml converts them at every key: the same floats).
enum { MAX_RUN = 4 };

// the first key a query at `pos` sees (window 0 = all of them)
static inline int64_t first_key(int64_t pos, int64_t window) {
    return window > 0 && pos - window + 1 > 0 ? pos - window + 1 : 0;
}

// this thread's equal share [*a, *e) of `all` row-heads, in attention over a few rows
static inline void head_share(int64_t all, int64_t *a, int64_t *e) {
    const int64_t nth = omp_get_num_threads(), tid = omp_get_thread_num();
    *a = all * tid / nth, *e = all * (tid + 1) / nth;
}

static void attn_heads(const float *q, float *out, const uint16_t *k_cache, const uint16_t *v_cache,
                       const int64_t *table, int64_t pos, int64_t h0, int nh, int64_t hkv, int64_t kvh, int64_t d,
                       int64_t bs, float scale, int64_t window, const int64_t *order, int interleaved) {
    float qf[MAX_RUN][512];
    uint16_t k16[512], acc[MAX_RUN][512];
    float M[MAX_RUN], S[MAX_RUN];
    for (int h = 0; h < nh; h++) {
        const float *qr = q + (h0 + h) * d;
        for (int64_t i = 0; i < d; i++) qf[h][i] = f16_to_f32(f32_to_f16(qr[order ? order[i] : i]));
        memset(acc[h], 0, sizeof(uint16_t) * (size_t)d);  // +0.0 in float16
        M[h] = -INFINITY, S[h] = 0.0f;
    }
    const int64_t first = first_key(pos, window);
    for (int64_t p = first; p <= pos; p++) {
        const int64_t cell = (table[p / bs] * bs + p % bs) * hkv + kvh;
        const uint16_t *kp = k_cache + cell * d, *vp = v_cache + cell * d;
        if (order && !interleaved) {
            for (int64_t i = 0; i < d; i++) k16[i] = kp[order[i]];
            kp = k16;
        }
        // ggml_vec_dot_f16 (AVX2) for every head: 4 accumulators of 8 lanes over steps of 32, then
        // a fixed tree. `interleaved`: k is stored in rotate-half order and read in ggml's order for
        // `llama` files (slot j holds element j/2 + (j%2) d/2): a chunk's 8 slots are 4 elements of
        // each half, unpacked in registers instead of gathered one by one. Same products, same order.
        __m256 sv[MAX_RUN][4];
        for (int h = 0; h < nh; h++)
            for (int j = 0; j < 4; j++) sv[h][j] = _mm256_setzero_ps();
        for (int64_t i = 0; i < d; i += 32)
            for (int j = 0; j < 4; j++) {
                __m128i ka;
                if (interleaved) {
                    const int64_t c = (i + 8 * j) / 2;  // first element of this chunk in each half
                    ka = _mm_unpacklo_epi16(_mm_loadl_epi64((const __m128i *)(kp + c)),
                                            _mm_loadl_epi64((const __m128i *)(kp + d / 2 + c)));
                } else {
                    ka = _mm_loadu_si128((const __m128i *)(kp + i + 8 * j));
                }
                const __m256 x = _mm256_cvtph_ps(ka);
                for (int h = 0; h < nh; h++) sv[h][j] = _mm256_fmadd_ps(x, _mm256_loadu_ps(qf[h] + i + 8 * j), sv[h][j]);
            }
        float ms[MAX_RUN], vs[MAX_RUN];
        for (int h = 0; h < nh; h++) {
            __m256 t = _mm256_add_ps(_mm256_add_ps(sv[h][0], sv[h][2]), _mm256_add_ps(sv[h][1], sv[h][3]));
            __m128 t0 = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
            __m128 t1 = _mm_hadd_ps(t0, t0);
            const float s = _mm_cvtss_f32(_mm_hadd_ps(t1, t1)) * scale;
            ms[h] = 1.0f, vs[h] = 1.0f;
            if (s > M[h]) {
                const float old = M[h];
                M[h] = s;
                ms[h] = expf(old - s);
                const __m256 vms = _mm256_set1_ps(ms[h]);
                for (int64_t i = 0; i < d; i += 8) {
                    __m256 a = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(acc[h] + i)));
                    _mm_storeu_si128((__m128i *)(acc[h] + i), _mm256_cvtps_ph(_mm256_mul_ps(a, vms), 0));
                }
            } else {
                vs[h] = expf(s - M[h]);
            }
        }
        for (int64_t i = 0; i < d; i += 8) {
            const __m256 v = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(vp + i)));
            for (int h = 0; h < nh; h++) {
                __m256 a = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(acc[h] + i)));
                _mm_storeu_si128((__m128i *)(acc[h] + i), _mm256_cvtps_ph(_mm256_fmadd_ps(v, _mm256_set1_ps(vs[h]), a), 0));
            }
        }
        for (int h = 0; h < nh; h++) S[h] = S[h] * ms[h] + vs[h];
    }
    for (int h = 0; h < nh; h++) {
        const float inv = S[h] == 0.0f ? 0.0f : 1.0f / S[h];
        float *o = out + (h0 + h) * d;
        for (int64_t i = 0; i < d; i++) o[i] = f16_to_f32(acc[h][i]) * inv;
    }
}

// Every thread of the team: many rows (prefill) share out (row, KV head) items dynamically, as
// the later rows of a prompt see more keys; a few rows (decode) give each thread an equal share
// of the row-heads, cut into runs that share a KV head. A barrier at the end either way.
static void attn_team(const float *q, float *out, const uint16_t *k_cache, const uint16_t *v_cache,
                      const int64_t *row_seq, const int64_t *row_pos, const int64_t *tables, int64_t nb, int64_t rows,
                      int64_t hq, int64_t hkv, int64_t d, int64_t bs, float scale, int64_t window, const int64_t *order) {
    const int64_t group = hq / hkv, nth = omp_get_num_threads();
    const int interleaved = is_interleave(order, d);
#define HEADS(R, H, NH)                                                                                            \
    attn_heads(q + (R) * hq * d, out + (R) * hq * d, k_cache, v_cache, tables + row_seq[R] * nb, row_pos[R], H, NH, \
               hkv, (H) / group, d, bs, scale, window, order, interleaved)
    if (rows * hkv >= 4 * nth) {
#pragma omp for schedule(dynamic, 1)
        for (int64_t rg = 0; rg < rows * hkv; rg++)
            for (int64_t h = (rg % hkv) * group; h < (rg % hkv + 1) * group; h += MAX_RUN)
                HEADS(rg / hkv, h, (int)((rg % hkv + 1) * group - h < MAX_RUN ? (rg % hkv + 1) * group - h : MAX_RUN));
    } else {
        int64_t a, end;
        head_share(rows * hq, &a, &end);
        while (a < end) {
            const int64_t r = a / hq, h = a % hq, stop = r * hq + (h / group + 1) * group;  // this KV head's last + 1
            int64_t run = (stop < end ? stop : end) - a;
            run = run < MAX_RUN ? run : MAX_RUN;
            HEADS(r, h, (int)run);
            a += run;
        }
#pragma omp barrier
    }
#undef HEADS
}

int ggml_attn(const float *q, float *out, const uint16_t *k_cache, const uint16_t *v_cache,
              const int64_t *row_seq, const int64_t *row_pos, const int64_t *tables, int64_t nb,
              int64_t rows, int64_t hq, int64_t hkv, int64_t d, int64_t bs, float scale, int64_t window,
              const int64_t *order) {
    if (d % 32 || d > 512 || hq % hkv) return -1;
#pragma omp parallel
    attn_team(q, out, k_cache, v_cache, row_seq, row_pos, tables, nb, rows, hq, hkv, d, bs, scale, window, order);
    return 0;
}

// ---- element-wise ops of llama.cpp's graph ---------------------------------------------------

// ggml_compute_forward_rms_norm_f32 then ggml_mul by the weight: float squares summed in double
// in order, scale = 1.0f / sqrtf(mean + eps), y = (x * scale) * w.
static void rms_norm_row(const float *xr, const float *w, float *yr, int64_t n, float eps) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(xr[i] * xr[i]);
    const float mean = (float)(sum / (double)n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int64_t i = 0; i < n; i++) yr[i] = (xr[i] * scale) * w[i];
}

void ggml_rms_norm(const float *x, const float *w, float *y, int64_t rows, int64_t n, float eps) {
#pragma omp parallel for schedule(static) if (rows > 1)
    for (int64_t r = 0; r < rows; r++) rms_norm_row(x + r * n, w, y + r * n, n, eps);
}

// ggml_v_expf (AVX2 + FMA; Arm optimized-routines' expf) and ggml_v_silu, step for step
static inline __m256 v_expf(__m256 x) {
    const __m256 r = _mm256_set1_ps(0x1.8p23f);
    const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), r);
    const __m256 n = _mm256_sub_ps(z, r);
    const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f),
                                      _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
    const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
    const __m256 k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1))));
    const __m256i c = _mm256_castps_si256(
        _mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.f), n), _mm256_set1_ps(126), _CMP_GT_OQ));
    const __m256 u = _mm256_mul_ps(b, b);
    const __m256 j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
                        _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
        u, _mm256_mul_ps(_mm256_set1_ps(0x1.ffffecp-1f), b));
    if (!_mm256_movemask_ps(_mm256_castsi256_ps(c))) return _mm256_fmadd_ps(j, k, k);
    const __m256i g = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
                                       _mm256_set1_epi32((int)0x82000000u));
    const __m256 s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f000000)));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
    const __m256i d = _mm256_castps_si256(
        _mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.f), n), _mm256_set1_ps(192), _CMP_GT_OQ));
    return _mm256_or_ps(
        _mm256_and_ps(_mm256_castsi256_ps(d), _mm256_mul_ps(s1, s1)),
        _mm256_andnot_ps(_mm256_castsi256_ps(d),
                         _mm256_or_ps(_mm256_and_ps(_mm256_castsi256_ps(c), _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1)),
                                      _mm256_andnot_ps(_mm256_castsi256_ps(c), _mm256_fmadd_ps(k, j, k)))));
}

// silu(x) = x / (1 + expf(-x)) over `count` floats: ggml_v_silu 8 at a time, its scalar form
// (glibc expf) for a tail, as ggml_vec_silu_f32 / ggml_vec_swiglu_f32 split a row.
static void silu_row(const float *xr, float *yr, int64_t n) {
    int64_t i = 0;
    for (; i + 7 < n; i += 8) {
        const __m256 v = _mm256_loadu_ps(xr + i);
        const __m256 den = _mm256_add_ps(_mm256_set1_ps(1), v_expf(_mm256_sub_ps(_mm256_setzero_ps(), v)));
        _mm256_storeu_ps(yr + i, _mm256_div_ps(v, den));
    }
    for (; i < n; i++) yr[i] = xr[i] / (1.0f + expf(-xr[i]));
}

void ggml_silu(const float *x, float *y, int64_t rows, int64_t n) {
#pragma omp parallel for schedule(static) if (rows > 1)
    for (int64_t r = 0; r < rows; r++) silu_row(x + r * n, y + r * n, n);
}

// RoPE on x (rows, heads, d) in place, pairs (i, i + d/2), cos/sin (rows, d/2) from ggml's cache:
// x0*cos - x1*sin and x0*sin + x1*cos with the fmas gcc put in ggml's rotate_pairs.
static void rope_row(float *xr, const float *c, const float *s, int64_t heads, int64_t d) {
    const int64_t half = d / 2;
    for (int64_t h = 0; h < heads; h++) {
        float *v = xr + h * d;
        for (int64_t i = 0; i < half; i++) {
            const float x0 = v[i], x1 = v[i + half];
            v[i] = fmaf(x0, c[i], -(x1 * s[i]));
            v[i + half] = fmaf(x0, s[i], x1 * c[i]);
        }
    }
}

void ggml_rope(float *x, const float *cs, const float *sn, int64_t rows, int64_t heads, int64_t d) {
    for (int64_t r = 0; r < rows; r++) rope_row(x + r * heads * d, cs + r * (d / 2), sn + r * (d / 2), heads, d);
}

// ---- K-quants (super-blocks of 256) for one-row chunks -----------------------------------------
// The kernels llama.cpp runs (AVX2) when an activation row is alone, on the weights as
// numerics/blocks.py unpacks them: `codes` (n, k) uint8 in value order, per-block scales (and
// Q4_K mins) as small integers, d / dmin float32 (from fp16). All integer sums are exact, so only
// their grouping into lanes and the float steps after them must be ggml's (kquant_linear.py has
// the same arithmetic in torch and says which kernel does what).

// quantize_row_q8_K: max = the first value of largest magnitude, iscale = -127 / max,
// codes = min(127, nearest(iscale * x)), d = 1 / iscale; bsum16 = sums of 16 codes.
// mat4 (ggml_quantize_mat_q8_K_4x8, the activations of the repacked Q4_K gemm): iscale =
// -127 / amax when some value equals +amax, else 127 / amax; codes clamped to -128..127.
// block b's codes at q + b * qstride (256: row-major; 2048: an 8-row tile's order)
static void quantize_q8_k(const float *x, int64_t k, int8_t *q, int64_t qstride, float *d, int32_t *bsum16, int mat4) {
    for (int64_t b = 0; b < k / 256; b++) {
        const float *v = x + 256 * b;
        int8_t *c = q + qstride * b;
        float amax = 0.0f, mx = 0.0f;
        for (int i = 0; i < 256; i++)
            if (fabsf(v[i]) > amax) amax = fabsf(v[i]), mx = v[i];
        if (amax == 0.0f) {
            d[b] = 0.0f;
            memset(c, 0, 256);
            for (int i = 0; i < 16; i++) bsum16[16 * b + i] = 0;
            continue;
        }
        int pos = 0;
        for (int i = 0; i < 256 && mat4; i++) pos |= v[i] == amax;
        const float iscale = mat4 ? (pos ? -127.0f / amax : 127.0f / amax) : -127.0f / mx;
        for (int i = 0; i < 256; i++) {
            const int r = (int)nearbyintf(iscale * v[i]);
            c[i] = (int8_t)(r > 127 ? 127 : r < -128 ? -128 : r);
        }
        d[b] = 1.0f / iscale;
        for (int i = 0; i < 16; i++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += c[16 * i + j];
            bsum16[16 * b + i] = s;
        }
    }
}

// exact int: sum over the 32 values at c/y of scale * q * q8 (q unsigned), as 8 int32 lanes
// v + madd(p16, scl): one VNNI instruction where there is one (the same exact int32 sums)
static inline __m256i add_madd16(__m256i v, __m256i p16, __m256i scl) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpwssd_epi32(v, p16, scl);
#else
    return _mm256_add_epi32(v, _mm256_madd_epi16(p16, scl));
#endif
}

static inline __m256i scaled_dot32(const uint8_t *c, const int8_t *y, __m256i scl) {
    const __m256i p16 = _mm256_maddubs_epi16(_mm256_loadu_si256((const __m256i *)c), _mm256_loadu_si256((const __m256i *)y));
    return _mm256_madd_epi16(p16, scl);
}

// Q6_K vec_dot's lane offsets: lane l = 32 * (bsum[2l] s[2l] + bsum[2l+1] s[2l+1]), from 8 + 8
// products whose pairs hadd adds (its lane order 0 1 4 5 | 2 3 6 7 put back by the permute)
static inline __m256i q6_offsets(const int32_t *bsum, const int8_t *s) {
    const __m256i p0 = _mm256_mullo_epi32(_mm256_loadu_si256((const __m256i *)bsum),
                                          _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)s)));
    const __m256i p1 = _mm256_mullo_epi32(_mm256_loadu_si256((const __m256i *)(bsum + 8)),
                                          _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(s + 8))));
    return _mm256_slli_epi32(_mm256_permute4x64_epi64(_mm256_hadd_epi32(p0, p1), 0xD8), 5);
}

// ggml_vec_dot_q6_K_q8_K: lane l of a super-block = sum over values p with (p % 32) / 4 == l of
// q * q8 * scale (q unsigned 0..63) - 32 * (bsum[2l] scale[2l] + bsum[2l+1] scale[2l+1]);
// acc = fma(d_y * d_w, lanes, acc) block after block, then hsum.
// the codes of the super-block two ahead, non-temporal as row1_xn's weight stream: one-row
// K-quant matmuls read every code once (the few extra rows of a chunk reuse them from L1 at once)
static inline void stream_ahead(const uint8_t *c) {
    for (int i = 0; i < 256; i += 64) _mm_prefetch((const char *)(c + 512 + i), _MM_HINT_NTA);
}

static float dot_q6_k(const uint8_t *codes, const int8_t *sc, const float *dw, const int8_t *q8, const float *dy,
                      const int32_t *bsum16, int64_t nb) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *c = codes + 256 * b;
        const int8_t *y = q8 + 256 * b, *s = sc + 16 * b;
        stream_ahead(c);
        __m256i sumi = _mm256_setzero_si256();
        for (int g = 0; g < 8; g++)  // 32 values; int16 lanes 0..7 take scale 2g, 8..15 scale 2g + 1
            sumi = _mm256_add_epi32(sumi, scaled_dot32(c + 32 * g, y + 32 * g,
                                                       _mm256_set_m128i(_mm_set1_epi16(s[2 * g + 1]), _mm_set1_epi16(s[2 * g]))));
        sumi = _mm256_sub_epi32(sumi, q6_offsets(bsum16 + 16 * b, s));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dy[b] * dw[b]), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_float_8(acc);
}

// ggml_gemv_q4_K_8x8_q8_K (the repacked Q4_K of llama.cpp's CPU_REPACK buffer): one exact int per
// super-block, I = sum_j scale_j (q . q8)_j and Imin = sum_j min_j bsum32_j; acc = fma(I, d_w d_y,
// acc), acc_min = fma(Imin, dmin_w d_y, acc_min); result acc - acc_min.
static float dot_q4_k_gemv(const uint8_t *codes, const uint8_t *sc, const uint8_t *mn, const float *dw,
                           const float *dminw, const int8_t *q8, const float *dy, const int32_t *bsum16, int64_t nb) {
    float acc = 0.0f, acc_min = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *c = codes + 256 * b;
        const int8_t *y = q8 + 256 * b;
        stream_ahead(c);
        __m256i sumi = _mm256_setzero_si256();
        int32_t imin = 0;
        for (int j = 0; j < 8; j++) {
            sumi = _mm256_add_epi32(sumi, scaled_dot32(c + 32 * j, y + 32 * j, _mm256_set1_epi16(sc[8 * b + j])));
            imin += mn[8 * b + j] * (bsum16[16 * b + 2 * j] + bsum16[16 * b + 2 * j + 1]);
        }
        acc = fmaf((float)hsum_i32_8(sumi), dw[b] * dy[b], acc);
        acc_min = fmaf((float)imin, dminw[b] * dy[b], acc_min);
    }
    return acc - acc_min;
}

// ggml's tiled Q6_K matmul (8+ rows): one exact int per super-block, S1 = sum scale * (q - 32) * q8;
// acc = fma(d_w * S1, d_y, acc) block after block.
static float dot_q6_k_tiled(const uint8_t *codes, const int8_t *sc, const float *dw, const int8_t *q8, const float *dy,
                            const int32_t *bsum16, int64_t nb) {
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const int8_t *s = sc + 16 * b;
        __m256i sumi = _mm256_setzero_si256();
        for (int g = 0; g < 8; g++)
            sumi = _mm256_add_epi32(sumi, scaled_dot32(codes + 256 * b + 32 * g, q8 + 256 * b + 32 * g,
                                                       _mm256_set_m128i(_mm_set1_epi16(s[2 * g + 1]), _mm_set1_epi16(s[2 * g]))));
        int32_t off = 0;
        for (int i = 0; i < 16; i++) off += bsum16[16 * b + i] * s[i];
        const int32_t s1 = hsum_i32_8(sumi) - 32 * off;
        acc = fmaf(dw[b] * (float)s1, dy[b], acc);
    }
    return acc;
}

// ggml_gemm_q4_K_8x8_q8_K (groups of 4 rows, mat4 activations): per pair of sub-blocks s one exact
// int I_s and Imin_s; acc = fma(I_s, d_w d_y, acc), acc_min = fma(Imin_s, dmin_w d_y, acc_min).
static float dot_q4_k_gemm(const uint8_t *codes, const uint8_t *sc, const uint8_t *mn, const float *dw,
                           const float *dminw, const int8_t *q8, const float *dy, const int32_t *bsum16, int64_t nb) {
    float acc = 0.0f, acc_min = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const float dd = dw[b] * dy[b], ddm = dminw[b] * dy[b];
        for (int p = 0; p < 4; p++) {
            const int j = 2 * p;
            const __m256i v = _mm256_add_epi32(
                scaled_dot32(codes + 256 * b + 32 * j, q8 + 256 * b + 32 * j, _mm256_set1_epi16(sc[8 * b + j])),
                scaled_dot32(codes + 256 * b + 32 * j + 32, q8 + 256 * b + 32 * j + 32, _mm256_set1_epi16(sc[8 * b + j + 1])));
            const int32_t imin = mn[8 * b + j] * (bsum16[16 * b + 2 * j] + bsum16[16 * b + 2 * j + 1]) +
                                 mn[8 * b + j + 1] * (bsum16[16 * b + 2 * j + 2] + bsum16[16 * b + 2 * j + 3]);
            acc = fmaf((float)hsum_i32_8(v), dd, acc);
            acc_min = fmaf((float)imin, ddm, acc_min);
        }
    }
    return acc - acc_min;
}

// 8 int32 vectors -> lane i = the sum of v[i]'s lanes. Integer sums are exact in any order, so
// the per-pair ints below equal the one-row kernels' hsum_i32_8 bit for bit.
static inline __m256i fold8_i32(const __m256i v[8]) {
    const __m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    const __m256i c = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(a, c, 0x20), _mm256_permute2x128_si256(a, c, 0x31));
}

// The Q8_K activations. Row-major: q8 (m, k), dy (m, k/256), bs (m, k/16). For kq_rows8 the first
// m/8*8 rows are also kept in 8-row tile order, every offset within a tile a constant: codes of
// group g (rows 8g..8g+7) at q8 + 8g*k as (k/256, 8, 256) in place of the row-major rows, dyt as
// (m/8, k/256, 8) and bst as (m/8, k/16, 8).
typedef struct {
    const int8_t *q8;
    const float *dyt, *dy;
    const int32_t *bst, *bs;
    int64_t m, k;
} Rows8;

static inline __m256i bsum8(const Rows8 *R, int64_t i, int64_t r) {  // 16-value sum i of rows r..r+7
    return _mm256_loadu_si256((const __m256i *)(R->bst + ((r / 8) * (R->k / 16) + i) * 8));
}

// Q6_K: the int32 lanes of sum scale * q * q8 over one super-block, for rows y, y + k, ..., y + 7k
// against the codes c (v[i] for row i; each lane as scaled_dot32 gives it).
static inline __attribute__((always_inline)) void q6_ints8(const uint8_t *c, const int8_t *s, const int8_t *y,
                                                          int64_t k, __m256i v[8]) {
    for (int i = 0; i < 8; i++) v[i] = _mm256_setzero_si256();
    for (int g = 0; g < 8; g++) {
        const __m256i cg = _mm256_loadu_si256((const __m256i *)(c + 32 * g));
        const __m256i scl = _mm256_set_m128i(_mm_set1_epi16(s[2 * g + 1]), _mm_set1_epi16(s[2 * g]));
        for (int i = 0; i < 8; i++) {
            const __m256i yi = _mm256_loadu_si256((const __m256i *)(y + i * k + 32 * g));
            v[i] = add_madd16(v[i], _mm256_maddubs_epi16(cg, yi), scl);
        }
    }
}

// One weight row against rows r..r+7; each lane runs its pair's one-row recipe (the same ints,
// the same float steps in the same order) with the weight codes loaded once for all 8.
// Q4_K gemv: acc = fma(I, d_w d_y, acc), acc_min = fma(Imin, dmin_w d_y, acc_min) per super-block;
// Q4_K gemm: the same per pair of sub-blocks; Q6_K tiled: acc = fma(d_w * S1, d_y, acc).
static inline __attribute__((always_inline)) __m256 kq_rows8(int kind, const uint8_t *cj, const void *scales,
                                                             const uint8_t *mj, const float *dj, const float *dminj,
                                                             const Rows8 *R, int64_t r) {
    const int64_t nb = R->k / 256;
    __m256 acc = _mm256_setzero_ps(), acc_min = _mm256_setzero_ps();
    __m256i v[8];
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *c = cj + 256 * b;
        const int8_t *y = R->q8 + r * R->k + 2048 * b;  // tile order: row i at y + 256 i
        const __m256 dy = _mm256_loadu_ps(R->dyt + ((r / 8) * nb + b) * 8);
        if (kind == 6) {  // Q6_K tiled: S1 = sum scale * q * q8 - 32 * sum scale * bsum16
            const int8_t *s = (const int8_t *)scales + 16 * b;
            q6_ints8(c, s, y, 256, v);
            __m256i off = _mm256_setzero_si256();
            for (int i = 0; i < 16; i++)
                off = _mm256_add_epi32(off, _mm256_mullo_epi32(bsum8(R, 16 * b + i, r), _mm256_set1_epi32(s[i])));
            const __m256i s1 = _mm256_sub_epi32(fold8_i32(v), _mm256_slli_epi32(off, 5));
            const __m256 ws1 = _mm256_mul_ps(_mm256_set1_ps(dj[b]), _mm256_cvtepi32_ps(s1));
            acc = _mm256_fmadd_ps(ws1, dy, acc);
            continue;
        }
        const uint8_t *sc = (const uint8_t *)scales + 8 * b, *mn = mj + 8 * b;
        const __m256 dd = _mm256_mul_ps(_mm256_set1_ps(dj[b]), dy), ddm = _mm256_mul_ps(_mm256_set1_ps(dminj[b]), dy);
        const int pairs = kind == 4 ? 1 : 4;  // gemv: one int per super-block; gemm: one per 2 sub-blocks
        const int per = 8 / pairs;
        for (int p = 0; p < pairs; p++) {
            for (int i = 0; i < 8; i++) v[i] = _mm256_setzero_si256();
            __m256i imin = _mm256_setzero_si256();
            for (int jj = p * per; jj < (p + 1) * per; jj++) {
                const __m256i cg = _mm256_loadu_si256((const __m256i *)(c + 32 * jj));
                const __m256i scl = _mm256_set1_epi16(sc[jj]);
                for (int i = 0; i < 8; i++) {
                    const __m256i yi = _mm256_loadu_si256((const __m256i *)(y + i * 256 + 32 * jj));
                    v[i] = add_madd16(v[i], _mm256_maddubs_epi16(cg, yi), scl);
                }
                const __m256i b32 = _mm256_add_epi32(bsum8(R, 16 * b + 2 * jj, r), bsum8(R, 16 * b + 2 * jj + 1, r));
                imin = _mm256_add_epi32(imin, _mm256_mullo_epi32(b32, _mm256_set1_epi32(mn[jj])));
            }
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(fold8_i32(v)), dd, acc);
            acc_min = _mm256_fmadd_ps(_mm256_cvtepi32_ps(imin), ddm, acc_min);
        }
    }
    return _mm256_sub_ps(acc, acc_min);  // Q6_K: acc_min stays 0 (x - 0 = x)
}

// Q6_K's one-row vec_dot for rows r..r+7 against one weight row: each row keeps its own 8 float
// lanes (acc[i]) as dot_q6_k does; the codes of a super-block are loaded once for all 8.
static inline void q6_vec_rows8(const uint8_t *cj, const int8_t *sj, const float *dj, const Rows8 *R, int64_t r,
                                float *y, int64_t ystride) {
    const int64_t nb = R->k / 256;
    __m256 acc[8];
    __m256i v[8];
    for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const int8_t *s = sj + 16 * b;
        q6_ints8(cj + 256 * b, s, R->q8 + r * R->k + 256 * b, R->k, v);
        for (int i = 0; i < 8; i++) {
            const int64_t row = r + i;
            const __m256i sumi = _mm256_sub_epi32(v[i], q6_offsets(R->bs + row * nb * 16 + 16 * b, s));
            acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(R->dy[row * nb + b] * dj[b]), _mm256_cvtepi32_ps(sumi), acc[i]);
        }
    }
    for (int i = 0; i < 8; i++) y[i * ystride] = hsum_float_8(acc[i]);
}

// weight rows j0..j1 against rows r0..r1 (multiples of 8) with kernel `kind` (see kquant_team)
static __attribute__((noinline)) void kq_block(int kind, const uint8_t *codes, const void *scales, const uint8_t *mins,
                                               const float *d, const float *dmin, const Rows8 *R, float *y, int64_t n,
                                               int64_t j0, int64_t j1, int64_t r0, int64_t r1) {
    const int64_t k = R->k, nb = k / 256;
    for (int64_t j = j0; j < j1; j++) {
        const uint8_t *cj = codes + j * k;
        const void *sj = kind >= 6 ? (const void *)((const int8_t *)scales + j * nb * 16)
                                   : (const void *)((const uint8_t *)scales + j * nb * 8);
        const uint8_t *mj = kind < 6 ? mins + j * nb * 8 : NULL;
        const float *dminj = kind < 6 ? dmin + j * nb : NULL;
        float out[8];
        for (int64_t r = r0; r < r1; r += 8) {
            switch (kind) {  // one inlined copy per kernel
                case 7: q6_vec_rows8(cj, (const int8_t *)sj, d + j * nb, R, r, y + r * n + j, n); continue;
                case 4: _mm256_storeu_ps(out, kq_rows8(4, cj, sj, mj, d + j * nb, dminj, R, r)); break;
                case 5: _mm256_storeu_ps(out, kq_rows8(5, cj, sj, mj, d + j * nb, dminj, R, r)); break;
                default: _mm256_storeu_ps(out, kq_rows8(6, cj, sj, mj, d + j * nb, dminj, R, r)); break;
            }
            for (int i = 0; i < 8; i++) y[(r + i) * n + j] = out[i];
        }
    }
}

// y (m, n) = x (m, k) times a Q6_K (qtype 6) or repacked Q4_K (qtype 4) weight, every activation
// row on its own (one-row chunks; Q6_K below ggml's tiled-kernel row count; Q4_K below 4 rows).
// codes (n, k) uint8; scales (n, k/256, 16) int8 for Q6_K, (n, k/256, 8) uint8 for Q4_K with mins
// alike; d, dmin (n, k/256) float32. Returns 0, -1 on a bad argument, -2 when out of memory.
// mode 1 runs ggml's multi-row kernel instead: Q6_K's tiled matmul (a chunk of 8+ rows), Q4_K's
// gemm (rows in groups of 4; m must be a multiple of 4). Either way rows go 8 at a time where
// there are 8 (same bits). q8, dy, bs: scratch for the Q8_K activations, (m, k), (m, k/256),
// (m, k/16); dyt, bst: dy and bs in tile order for the 8-row tiles (see Rows8).
static void kquant_team(int qtype, const uint8_t *codes, const void *scales, const uint8_t *mins, const float *d,
                        const float *dmin, int64_t n, int64_t k, const float *x, int64_t m, float *y, int mode,
                        int8_t *q8, float *dy, int32_t *bs, float *dyt, int32_t *bst) {
    const int64_t nb = k / 256;
    const int mat4 = mode && qtype == 4;
    // kernel of the 8-row tiles: 4 = Q4_K gemv, 5 = Q4_K gemm, 6 = Q6_K tiled, 7 = Q6_K vec_dot
    const int kind = qtype == 4 ? (mode ? 5 : 4) : mode ? 6 : 7;
    const int64_t tiled = m / 8 * 8;
    const int transposed = tiled && kind != 7;  // only kq_rows8 reads dyt and bst
    if (m == 1) {  // a decode's one row: each thread quantizes it into scratch of its own (a row per
        // thread), so the dot products below start without waiting at a barrier
        const int64_t tid = omp_get_thread_num();
        q8 += tid * k, dy += tid * nb, bs += tid * nb * 16;
        quantize_q8_k(x, k, q8, 256, dy, bs, mat4);
    } else {
#pragma omp for schedule(static)
        for (int64_t r = 0; r < m; r++) {
            const int tile = transposed && r < tiled;
            const int64_t g = r / 8, i = r % 8;
            quantize_q8_k(x + r * k, k, tile ? q8 + g * 8 * k + 256 * i : q8 + r * k, tile ? 2048 : 256, dy + r * nb,
                          bs + r * nb * 16, mat4);
            if (!tile) continue;
            for (int64_t b = 0; b < nb; b++) dyt[(g * nb + b) * 8 + i] = dy[r * nb + b];
            for (int64_t j = 0; j < nb * 16; j++) bst[(g * nb * 16 + j) * 8 + i] = bs[r * nb * 16 + j];
        }
    }
    const Rows8 R = {q8, dyt, dy, bst, bs, m, k};
    // rows in blocks of 16 (their Q8_K codes stay in L1/L2 while every weight row passes); each
    // thread takes the same weight rows in every block, so no barrier between them; the tiles run
    // in a function of their own (not in the outlined omp body, which keeps its state in memory)
    const int64_t nth = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t j0 = n * tid / nth, j1 = n * (tid + 1) / nth;
    for (int64_t r0 = 0; r0 < tiled; r0 += 16)
        kq_block(kind, codes, scales, mins, d, dmin, &R, y, n, j0, j1, r0, r0 + 16 < tiled ? r0 + 16 : tiled);
#pragma omp for schedule(static)
    for (int64_t j = 0; j < n; j++)
        for (int64_t r = tiled; r < m; r++) {
            const int8_t *xr = q8 + r * k;
            const int32_t *br = bs + r * nb * 16;
            const float *dr = dy + r * nb;
            const uint8_t *cj = codes + j * k;
            float v;
            if (qtype == 6) {
                const int8_t *sj = (const int8_t *)scales + j * nb * 16;
                v = mode ? dot_q6_k_tiled(cj, sj, d + j * nb, xr, dr, br, nb) : dot_q6_k(cj, sj, d + j * nb, xr, dr, br, nb);
            } else {
                const uint8_t *sj = (const uint8_t *)scales + j * nb * 8, *mj = mins + j * nb * 8;
                v = mode ? dot_q4_k_gemm(cj, sj, mj, d + j * nb, dmin + j * nb, xr, dr, br, nb)
                         : dot_q4_k_gemv(cj, sj, mj, d + j * nb, dmin + j * nb, xr, dr, br, nb);
            }
            y[r * n + j] = v;
        }
}

int ggml_kquant_mm_mode(int qtype, const uint8_t *codes, const void *scales, const uint8_t *mins, const float *d,
                        const float *dmin, int64_t n, int64_t k, const float *x, int64_t m, float *y, int mode) {
    if ((qtype != 4 && qtype != 6) || k % 256 || (mode && qtype == 4 && m % 4)) return -1;
    const int64_t nb = k / 256, rows = scratch_rows(m);
    int8_t *q8 = malloc((size_t)(rows * k));
    float *dy = malloc(sizeof(float) * (size_t)(rows * nb));
    int32_t *bs = malloc(sizeof(int32_t) * (size_t)(rows * nb * 16));
    float *dyt = malloc(sizeof(float) * (size_t)(m * nb));
    int32_t *bst = malloc(sizeof(int32_t) * (size_t)(m * nb * 16));
    if (!q8 || !dy || !bs || !dyt || !bst) {
        free(q8), free(dy), free(bs), free(dyt), free(bst);
        return -2;
    }
#pragma omp parallel
    kquant_team(qtype, codes, scales, mins, d, dmin, n, k, x, m, y, mode, q8, dy, bs, dyt, bst);
    free(q8), free(dy), free(bs), free(dyt), free(bst);
    return 0;
}

// ---- a whole llama decoder stack in one call ------------------------------------------------
// The block of brainwork/models/llama.py (pre-norm attention with RoPE over the paged float16
// cache, then a SwiGLU MLP) with the kernels above, in the module path's order of operations, for
// every layer in one call. Why: at one decoding row each layer's dozen Python module calls cost
// more than its arithmetic. Equal to the module path bit for bit (tests/test_ggml_native.py).

// One matmul as the module path has it: a GGUF block32 weight (kind = its qtype, `w` the raw
// blocks) or a K-quant run row by row (kind 4 = repacked Q4_K, 6 = Q6_K; `w` the codes), then
// its bias.
typedef struct {
    int32_t kind;
    int64_t n;  // output features
    const uint8_t *w;
    const void *scales;
    const uint8_t *mins;
    const float *d, *dmin, *bias;  // bias NULL: none
} StackMat;

typedef struct {
    StackMat qkv[3];  // q | k | v outputs, in 1 (fused) or 3 matmuls
    StackMat gate_up[2];  // gate | up, in 1 or 2
    StackMat o, down;
    int32_t n_qkv, n_gate_up;
    const float *norm1, *norm2;  // (hidden,) RMSNorm multipliers as GGUF stores them
    uint16_t *k_cache, *v_cache;  // (blocks, block_size, kv_heads, head_dim) float16
    int64_t window;  // 0 = none
} StackLayer;

typedef struct {
    int64_t hidden, heads, kv_heads, head_dim, inter, block_size;
    float eps, scale;
    const int64_t *order;  // q.k summation order (NULL = natural)
    int64_t rows;  // this step's flat batch
    const float *cos, *sin;  // (rows, head_dim / 2) ggml's RoPE cache at each row's position
    const int64_t *slots;  // (rows,) cache slot of each row's key/value
    const int64_t *row_seq, *row_pos, *tables;  // as ggml_attn
    int64_t table_width;
} StackStep;

// scratch shared by the team, sized for the widest matmul input of any layer
typedef struct {
    int8_t *xq;
    float *xd, *xs;  // block32 activations (Q8_0 / Q8_1)
    int8_t *wide;  // their 8-row tile form
    int8_t *q8;
    float *dy, *dyt;
    int32_t *bs, *bst;  // K-quant activations (Q8_K), row-major and transposed
} StackScratch;

static int stack_mat_ok(const StackMat *M, int64_t k) {
    return M->kind >= 0 && M->kind <= 3 ? k % 32 == 0 : (M->kind == 4 || M->kind == 6) && k % 256 == 0;
}

static void stack_mat(const StackMat *M, const float *x, int64_t m, int64_t k, float *y, const StackScratch *t) {
    if (M->kind < 4)
        block_mm_team(M->kind, M->w, M->n, k, x, m, y, t->xq, t->xd, t->xs, t->wide);
    else
        kquant_team(M->kind, M->w, M->scales, M->mins, M->d, M->dmin, M->n, k, x, m, y, 0, t->q8, t->dy, t->bs, t->dyt, t->bst);
    if (M->bias) {
#pragma omp for schedule(static)
        for (int64_t r = 0; r < m; r++)
            for (int64_t i = 0; i < M->n; i++) y[r * M->n + i] = y[r * M->n + i] + M->bias[i];
    }
}

// y (m, sum of n) = the outputs of `count` matmuls side by side (a fused one writes y directly)
static void stack_mats(const StackMat *mats, int32_t count, const float *x, int64_t m, int64_t k, float *y, float *tmp,
                       const StackScratch *t) {
    if (count == 1) {
        stack_mat(mats, x, m, k, y, t);
        return;
    }
    int64_t total = 0, col = 0;
    for (int32_t i = 0; i < count; i++) total += mats[i].n;
    for (int32_t i = 0; i < count; i++) {
        stack_mat(mats + i, x, m, k, tmp, t);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < m; r++) memcpy(y + r * total + col, tmp + r * mats[i].n, sizeof(float) * (size_t)mats[i].n);
        col += mats[i].n;
    }
}

// The keys and values this thread's heads of a one-row step will read in layer L, asked into L1
// before the layer's first matmul: the step's 100 MB of weights stream through the caches
// between one layer's attention and the next, so they come from memory, one dependent key at a
// time, where these requests overlap the matmul instead.
static void prefetch_kv(const StackLayer *L, const StackStep *s) {
    const int64_t hq = s->heads, hkv = s->kv_heads, group = hq / hkv, d = s->head_dim, bs = s->block_size;
    const int64_t pos = s->row_pos[0], *table = s->tables + s->row_seq[0] * s->table_width;
    int64_t a, e;
    head_share(hq, &a, &e);  // attn_team's split of the row's heads
    for (int64_t p = first_key(pos, L->window); p < pos; p++)  // the row's own key is written in this layer
        for (int64_t kvh = a / group; kvh <= (e - 1) / group; kvh++) {
            const int64_t cell = (table[p / bs] * bs + p % bs) * hkv + kvh;
            for (int64_t i = 0; i < d * 2; i += 64) {
                _mm_prefetch((const char *)(L->k_cache + cell * d) + i, _MM_HINT_T0);
                _mm_prefetch((const char *)(L->v_cache + cell * d) + i, _MM_HINT_T0);
            }
        }
}

// One decoding row through every layer. Every thread keeps its own copy of the row's residual
// stream, normed input, rotated query and activation and runs the row-wise steps (norms, RoPE,
// SiLU, residual adds) on it itself: the same operations on the same values as the many-row path,
// but no thread waits for another to finish them. Only the matmul outputs (columns split between
// the threads), the cache writes and the attention output are shared, with a barrier after each.
// own: (hidden + hidden + q dims + inter) floats of this thread's scratch.
static void stack_one_row(float *x, const StackLayer *layers, int64_t n_layers, const StackStep *s, float *qkv,
                          float *att, float *gu, float *out, float *tmp, const StackScratch *t, float *own) {
    const int64_t hid = s->hidden, d = s->head_dim, inter = s->inter, hq = s->heads, hkv = s->kv_heads;
    const int64_t qd = hq * d, kd = hkv * d;
    float *xr = own, *h = own + hid, *q = own + 2 * hid, *act = own + 2 * hid + qd;
    memcpy(xr, x, sizeof(float) * (size_t)hid);
    const float *c = s->cos, *sn = s->sin;
    for (int64_t l = 0; l < n_layers; l++) {
        const StackLayer *L = layers + l;
        prefetch_kv(L, s);
        rms_norm_row(xr, L->norm1, h, hid, s->eps);
        stack_mats(L->qkv, L->n_qkv, h, 1, hid, qkv, tmp, t);
        memcpy(q, qkv, sizeof(float) * (size_t)qd);
        rope_row(q, c, sn, hq, d);
#pragma omp single  // k rotated in place, k and v into the float16 cache; its barrier before attention
        {
            float *kr = qkv + qd;
            rope_row(kr, c, sn, hkv, d);
            uint16_t *kc = L->k_cache + s->slots[0] * kd, *vc = L->v_cache + s->slots[0] * kd;
            const float *v = kr + kd;
            for (int64_t i = 0; i < kd; i++) kc[i] = f32_to_f16(kr[i]), vc[i] = f32_to_f16(v[i]);
        }
        attn_team(q, att, L->k_cache, L->v_cache, s->row_seq, s->row_pos, s->tables, s->table_width, 1, hq, hkv, d,
                  s->block_size, s->scale, L->window, s->order);
        stack_mat(&L->o, att, 1, qd, out, t);
        for (int64_t i = 0; i < hid; i++) xr[i] = xr[i] + out[i];
        rms_norm_row(xr, L->norm2, h, hid, s->eps);
        stack_mats(L->gate_up, L->n_gate_up, h, 1, hid, gu, tmp, t);
        silu_row(gu, act, inter);
        for (int64_t i = 0; i < inter; i++) act[i] = act[i] * gu[inter + i];
        stack_mat(&L->down, act, 1, inter, out, t);
        for (int64_t i = 0; i < hid; i++) xr[i] = xr[i] + out[i];
    }  // no barrier here: the next writer of `out` (o) and of `gu` (gate/up) comes after the
       // next layer's q/k/v matmul, whose closing barrier every thread passes first
#pragma omp single nowait
    memcpy(x, xr, sizeof(float) * (size_t)hid);
}

// x (rows, hidden) float32, updated in place through `n_layers` blocks, all in one thread team.
// Returns 0, -1 on a bad argument (checked before any work), -2 when out of memory.
int ggml_llama_stack(float *x, const StackLayer *layers, int64_t n_layers, const StackStep *s) {
    const int64_t n = s->rows, hid = s->hidden, d = s->head_dim, inter = s->inter, hq = s->heads, hkv = s->kv_heads;
    const int64_t qd = hq * d, kd = hkv * d, nqkv = qd + 2 * kd, half = d / 2;
    if (d % 32 || d > 512 || hq % hkv) return -1;
    for (int64_t l = 0; l < n_layers; l++) {
        const StackLayer *L = layers + l;
        int ok = stack_mat_ok(&L->o, qd) && stack_mat_ok(&L->down, inter);
        for (int32_t i = 0; i < L->n_qkv; i++) ok &= stack_mat_ok(L->qkv + i, hid);
        for (int32_t i = 0; i < L->n_gate_up; i++) ok &= stack_mat_ok(L->gate_up + i, hid);
        if (!ok) return -1;
    }
    const int64_t widest = 2 * inter > nqkv ? 2 * inter : nqkv;
    int64_t kmax = hid > qd ? hid : qd;
    kmax = kmax > inter ? kmax : inter;
    float *h = malloc(sizeof(float) * (size_t)(n * hid));  // normed input of a sub-block
    float *qkv = malloc(sizeof(float) * (size_t)(n * nqkv));
    float *q = malloc(sizeof(float) * (size_t)(n * qd));  // (rows, heads, d) rotated queries
    float *att = malloc(sizeof(float) * (size_t)(n * qd));
    float *gu = malloc(sizeof(float) * (size_t)(n * 2 * inter));
    float *act = malloc(sizeof(float) * (size_t)(n * inter));
    float *out = malloc(sizeof(float) * (size_t)(n * hid));
    float *tmp = malloc(sizeof(float) * (size_t)(n * widest));  // one part of an unfused projection
    const int64_t srows = scratch_rows(n);
    StackScratch t = {
        malloc((size_t)(srows * kmax)), malloc(sizeof(float) * (size_t)(srows * kmax / 32)),
        malloc(sizeof(float) * (size_t)(srows * kmax / 32)), malloc(wide_bytes(srows, kmax)),
        malloc((size_t)(srows * kmax)),
        malloc(sizeof(float) * (size_t)(srows * kmax / 256 + 1)), malloc(sizeof(float) * (size_t)(n * kmax / 256 + 1)),
        malloc(sizeof(int32_t) * (size_t)(srows * kmax / 16 + 16)), malloc(sizeof(int32_t) * (size_t)(n * kmax / 16 + 16)),
    };
    const int rc = !h || !qkv || !q || !att || !gu || !act || !out || !tmp || !t.xq || !t.xd || !t.xs || !t.wide || !t.q8 ||
                           !t.dy || !t.dyt || !t.bs || !t.bst
                       ? -2
                       : 0;
    float *own = n == 1 ? malloc(sizeof(float) * (size_t)(omp_get_max_threads() * (2 * hid + qd + inter))) : NULL;
    if (!rc && n == 1 && own) {
#pragma omp parallel
        stack_one_row(x, layers, n_layers, s, qkv, att, gu, out, tmp, &t,
                      own + omp_get_thread_num() * (2 * hid + qd + inter));
    } else if (!rc) {
#pragma omp parallel
        for (int64_t l = 0; l < n_layers; l++) {
            const StackLayer *L = layers + l;
#pragma omp for schedule(static)
            for (int64_t r = 0; r < n; r++) rms_norm_row(x + r * hid, L->norm1, h + r * hid, hid, s->eps);
            stack_mats(L->qkv, L->n_qkv, h, n, hid, qkv, tmp, &t);
#pragma omp for schedule(static)
            for (int64_t r = 0; r < n; r++) {  // RoPE on q and k; k and v into the float16 cache (nearest even)
                const float *c = s->cos + r * half, *sn = s->sin + r * half;
                float *kr = qkv + r * nqkv + qd;  // k rotated in place (its row of qkv is not read again)
                memcpy(q + r * qd, qkv + r * nqkv, sizeof(float) * (size_t)qd);
                rope_row(q + r * qd, c, sn, hq, d);
                rope_row(kr, c, sn, hkv, d);
                uint16_t *kc = L->k_cache + s->slots[r] * kd, *vc = L->v_cache + s->slots[r] * kd;
                const float *v = kr + kd;
                for (int64_t i = 0; i < kd; i++) kc[i] = f32_to_f16(kr[i]), vc[i] = f32_to_f16(v[i]);
            }
            attn_team(q, att, L->k_cache, L->v_cache, s->row_seq, s->row_pos, s->tables, s->table_width, n, hq, hkv, d,
                      s->block_size, s->scale, L->window, s->order);
            stack_mat(&L->o, att, n, qd, out, &t);
#pragma omp for schedule(static)
            for (int64_t r = 0; r < n; r++) {
                for (int64_t i = 0; i < hid; i++) x[r * hid + i] = x[r * hid + i] + out[r * hid + i];
                rms_norm_row(x + r * hid, L->norm2, h + r * hid, hid, s->eps);
            }
            stack_mats(L->gate_up, L->n_gate_up, h, n, hid, gu, tmp, &t);
#pragma omp for schedule(static)
            for (int64_t r = 0; r < n; r++) {
                float *a = act + r * inter;
                const float *g = gu + r * 2 * inter;
                silu_row(g, a, inter);
                for (int64_t i = 0; i < inter; i++) a[i] = a[i] * g[inter + i];
            }
            stack_mat(&L->down, act, n, inter, out, &t);
#pragma omp for schedule(static)
            for (int64_t r = 0; r < n; r++)
                for (int64_t i = 0; i < hid; i++) x[r * hid + i] = x[r * hid + i] + out[r * hid + i];
        }
    }
    free(h), free(qkv), free(q), free(att), free(gu), free(act), free(out), free(tmp), free(own);
    free(t.xq), free(t.xd), free(t.xs), free(t.wide), free(t.q8), free(t.dy), free(t.dyt), free(t.bs), free(t.bst);
    return rc;
}
