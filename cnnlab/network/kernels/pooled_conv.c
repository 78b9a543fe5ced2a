/* A 3x3 convolution ('same', stride 1) with or without its bias, then 2x2 max pooling (stride 2)
 * and, where asked, a ReLU, as one pass over channels-last (NHWC) fp32 maps, and its backward pass
 * through the pooling's winners.
 *
 * Forward: each pooling window's four conv outputs are summed in registers (16 output channels at a
 * time), the window's maximum and its position are kept, and the full-size conv map is never stored.
 * The same by Winograd's F(2x2, 3x3), a window being one 2x2 tile: 16 products instead of 36, the
 * outputs equal to the direct ones to fp32 rounding (pooled_conv_winograd).
 * Backward: a pooled output's gradient reaches only the window position that won (and only where
 * the ReLU passed it), so the weight and input gradients are sums over those positions alone: a
 * quarter or less of a dense convolution's backward work, the same sums in another order.
 *
 * The batch is split into (at most 16) runs of images with their own partial weight gradients,
 * added in run order, so the results do not depend on the thread count. Ties in a window go to the
 * first position in row-major order, and a NaN wins, as in ATen's max_pool2d.
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHUNKS 16 /* partial weight gradients: the batch in this many runs of whole images */

/* 1 where the kernels run on OpenMP threads (the compiler had it), else 0: one thread */
int pooled_conv_threaded(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

static float *scratch(size_t floats) {
    size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
    return (float *)aligned_alloc(64, bytes ? bytes : 64);
}

/* x (h, w, c) into xp (h + 2, w + 2, c) with a zero border */
static void pad(const float *restrict x, float *restrict xp, int h, int w, int c) {
    size_t row = (size_t)(w + 2) * c;
    memset(xp, 0, row * sizeof(float));
    memset(xp + (size_t)(h + 1) * row, 0, row * sizeof(float));
    for (int y = 0; y < h; y++) {
        float *r = xp + (size_t)(y + 1) * row;
        memset(r, 0, c * sizeof(float));
        memcpy(r + c, x + (size_t)y * w * c, (size_t)w * c * sizeof(float));
        memset(r + (size_t)(w + 1) * c, 0, c * sizeof(float));
    }
}

/* the larger of m and a where a > m or a is NaN (ATen's rule), and its position p */
#define TAKE(m, i, a, p)                                                                     \
    do {                                                                                     \
        __m256 t_ = _mm256_or_ps(_mm256_cmp_ps(a, m, _CMP_GT_OQ), _mm256_cmp_ps(a, a, _CMP_UNORD_Q)); \
        m = _mm256_blendv_ps(m, a, t_);                                                      \
        i = _mm256_blendv_ps(i, _mm256_set1_ps(p), t_);                                      \
    } while (0)

/* res[2 p], res[2 p + 1] = 16 output channels of the conv (wf: their weights, (3, 3, cin, 16) in one
 * block that stays in cache; bias: from the first of them) at NP neighbouring pixels of one row, in
 * is the top-left of the first pixel's 3x3 patch; the sums stay in registers (2 NP of them: 12 for
 * NP = 6, enough to cover the FMA units' latency). */
#define CONV_ROW(NP)                                                                         \
    static inline __attribute__((always_inline)) void conv_row##NP(                          \
        const float *in, const float *wf, const float *bias, int cin, int rs, __m256 *res) {          \
        __m256 acc[2 * (NP)];                                                                \
        for (int p = 0; p < 2 * (NP); p++) acc[p] = _mm256_setzero_ps();                     \
        for (int ky = 0; ky < 3; ky++)                                                       \
            for (int kx = 0; kx < 3; kx++) {                                                 \
                const float *wr = wf + (size_t)((ky * 3 + kx) * cin) * 16;                   \
                const float *ip = in + ky * rs + kx * cin;                                   \
                for (int c = 0; c < cin; c++) {                                              \
                    const __m256 w0 = _mm256_loadu_ps(wr + (size_t)c * 16);                  \
                    const __m256 w1 = _mm256_loadu_ps(wr + (size_t)c * 16 + 8);              \
                    for (int p = 0; p < (NP); p++) {                                         \
                        const __m256 v = _mm256_broadcast_ss(ip + p * cin + c);              \
                        acc[2 * p] = _mm256_fmadd_ps(v, w0, acc[2 * p]);                     \
                        acc[2 * p + 1] = _mm256_fmadd_ps(v, w1, acc[2 * p + 1]);             \
                    }                                                                        \
                }                                                                            \
            }                                                                                \
        const __m256 bl = _mm256_loadu_ps(bias), bh = _mm256_loadu_ps(bias + 8);            \
        for (int p = 0; p < (NP); p++) {                                                     \
            res[2 * p] = _mm256_add_ps(acc[2 * p], bl);                                      \
            res[2 * p + 1] = _mm256_add_ps(acc[2 * p + 1], bh);                              \
        }                                                                                    \
    }
CONV_ROW(2)
CONV_ROW(4)
CONV_ROW(6)

/* One window's 16 channels: the maximum of its four conv outputs (t: its top row's two pixels,
 * u: the bottom row's) and where it was, then the ReLU where relu is set */
static inline __attribute__((always_inline)) void emit(const __m256 *t, const __m256 *u, float *out, uint8_t *arg,
                                                       int relu) {
    __m256 a0 = t[0], b0 = t[1], il = _mm256_setzero_ps(), ih = il;
    TAKE(a0, il, t[2], 1.0f); TAKE(b0, ih, t[3], 1.0f);
    TAKE(a0, il, u[0], 2.0f); TAKE(b0, ih, u[1], 2.0f);
    TAKE(a0, il, u[2], 3.0f); TAKE(b0, ih, u[3], 3.0f);
    if (relu) {
        const __m256 z = _mm256_setzero_ps(); /* max(0, m) keeps a NaN m, as torch.relu does */
        a0 = _mm256_max_ps(z, a0);
        b0 = _mm256_max_ps(z, b0);
    }
    _mm256_storeu_ps(out, a0);
    _mm256_storeu_ps(out + 8, b0);
    if (arg) {
        __m256i p = _mm256_packs_epi32(_mm256_cvttps_epi32(il), _mm256_cvttps_epi32(ih));
        p = _mm256_permute4x64_epi64(p, 0xD8);
        _mm_storeu_si128((__m128i *)arg, _mm_packus_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1)));
    }
}

/* NW neighbouring windows from window column px of window row py, output channels ob..ob+15 */
#define WINDOWS(NW)                                                                          \
    do {                                                                                     \
        __m256 t[4 * (NW)], u[4 * (NW)];                                                     \
        const float *top = xp + (size_t)(2 * py) * rs + (size_t)(2 * px) * cin;              \
        const float *wb = wf + (size_t)ob * 9 * cin; /* the 16 channels' (3, 3, cin, 16) */   \
        conv_row##NW##_(top, wb, bias ? bias + ob : ZEROS, cin, rs, t);                      \
        conv_row##NW##_(top + rs, wb, bias ? bias + ob : ZEROS, cin, rs, u);                 \
        for (int k = 0; k < (NW); k++) {                                                     \
            size_t o = (((size_t)b * ho + py) * wo + px + k) * cout + ob;                    \
            emit(t + 4 * k, u + 4 * k, out + o, arg ? arg + o : NULL, relu);                 \
        }                                                                                    \
    } while (0)
#define conv_row1_ conv_row2
#define conv_row2_ conv_row4
#define conv_row3_ conv_row6

static const float ZEROS[16]; /* the bias of a conv without one */

/* x: (n, h, w, cin); wf: (cout / 16, 3, 3, cin, 16); bias: (cout) or NULL; out: (n, h/2, w/2,
 * cout), with the ReLU where relu is set; arg: (n, h/2, w/2, cout) window positions 0..3, or NULL.
 * cout is a multiple of 16. */
void pooled_conv_forward(const float *x, const float *wf, const float *bias, float *out, uint8_t *arg,
                         int n, int h, int w, int cin, int cout, int relu, int threads) {
    const int ho = h / 2, wo = w / 2, wp = w + 2, rs = wp * cin; /* rs: a padded row */
#pragma omp parallel num_threads(threads)
    {
        float *xp = scratch((size_t)(h + 2) * rs);
#pragma omp for schedule(static)
        for (int b = 0; b < n; b++) {
            pad(x + (size_t)b * h * w * cin, xp, h, w, cin);
            for (int py = 0; py < ho; py++)
                for (int ob = 0; ob < cout; ob += 16) {
                    int px = 0;
                    for (; px + 3 <= wo; px += 3) WINDOWS(3);
                    if (px + 2 <= wo) { WINDOWS(2); px += 2; }
                    if (px < wo) WINDOWS(1);
                }
        }
        free(xp);
    }
}

/* Winograd's F(2x2, 3x3) (Lavin and Gray, 2016): a pooling window's four conv outputs from its 4x4
 * input patch d with 16 products per input and output channel instead of 36,
 *     Y = A^T [ U * V ] A,   V = B^T d B,   U = G g G^T (the weights, transformed once per call),
 * summed over input channels, * elementwise. The same sums in another order: the outputs agree with
 * the direct ones to fp32 rounding, not bitwise. */

/* the 4x4 patch of window q into v (16 rows of cin: v[xi * cin + c]), 8 input channels at a time */
static inline void winograd_input(const float *restrict top, float *restrict v, int cin, int rs) {
    for (int c = 0; c < cin; c += 8) {
        __m256 d[16], t[16];
        for (int r = 0; r < 4; r++)
            for (int k = 0; k < 4; k++) d[4 * r + k] = _mm256_loadu_ps(top + r * rs + k * cin + c);
        for (int k = 0; k < 4; k++) { /* B^T d: rows */
            t[k] = _mm256_sub_ps(d[k], d[8 + k]);
            t[4 + k] = _mm256_add_ps(d[4 + k], d[8 + k]);
            t[8 + k] = _mm256_sub_ps(d[8 + k], d[4 + k]);
            t[12 + k] = _mm256_sub_ps(d[4 + k], d[12 + k]);
        }
        for (int r = 0; r < 4; r++) { /* (B^T d) B: columns */
            float *o = v + (size_t)(4 * r) * cin + c;
            _mm256_storeu_ps(o, _mm256_sub_ps(t[4 * r], t[4 * r + 2]));
            _mm256_storeu_ps(o + cin, _mm256_add_ps(t[4 * r + 1], t[4 * r + 2]));
            _mm256_storeu_ps(o + 2 * cin, _mm256_sub_ps(t[4 * r + 2], t[4 * r + 1]));
            _mm256_storeu_ps(o + 3 * cin, _mm256_sub_ps(t[4 * r + 1], t[4 * r + 3]));
        }
    }
}

/* m[t][xi][16] for NT neighbouring windows (v: the first one's transformed patch, (16 xi, cin), the
 * next ones 16 cin further on) and 16 output channels (u: their transformed weights, (16 xi, cin,
 * 16)): 2 NT sums in registers per xi */
#define WINOGRAD_PRODUCTS(NT)                                                                \
    static inline __attribute__((always_inline)) void winograd_products##NT(                 \
        const float *v, const float *u, int cin, float *m) {                                 \
        for (int xi = 0; xi < 16; xi++) {                                                    \
            __m256 acc[2 * (NT)];                                                            \
            for (int p = 0; p < 2 * (NT); p++) acc[p] = _mm256_setzero_ps();                 \
            const float *ux = u + (size_t)xi * cin * 16, *vx = v + (size_t)xi * cin;         \
            for (int c = 0; c < cin; c++) {                                                  \
                const __m256 w0 = _mm256_loadu_ps(ux + (size_t)c * 16);                      \
                const __m256 w1 = _mm256_loadu_ps(ux + (size_t)c * 16 + 8);                  \
                for (int t = 0; t < (NT); t++) {                                             \
                    const __m256 b = _mm256_broadcast_ss(vx + (size_t)t * 16 * cin + c);     \
                    acc[2 * t] = _mm256_fmadd_ps(b, w0, acc[2 * t]);                         \
                    acc[2 * t + 1] = _mm256_fmadd_ps(b, w1, acc[2 * t + 1]);                 \
                }                                                                            \
            }                                                                                \
            for (int t = 0; t < (NT); t++) {                                                 \
                _mm256_store_ps(m + (t * 16 + xi) * 16, acc[2 * t]);                         \
                _mm256_store_ps(m + (t * 16 + xi) * 16 + 8, acc[2 * t + 1]);                 \
            }                                                                                \
        }                                                                                    \
    }
WINOGRAD_PRODUCTS(1)
WINOGRAD_PRODUCTS(3)
WINOGRAD_PRODUCTS(6)

/* A^T M A for one window's 16 channels (mt: its m[xi][16]) plus the bias: the four outputs as emit
 * takes them (t: top row, u: bottom row, each two pixels of two halves) */
static inline __attribute__((always_inline)) void winograd_output(const float *mt, const float *bias,
                                                                   __m256 *t, __m256 *u) {
    for (int hf = 0; hf < 2; hf++) {
        __m256 s[8], bv = _mm256_loadu_ps(bias + 8 * hf);
        for (int k = 0; k < 4; k++) { /* A^T M: rows */
            const __m256 m0 = _mm256_load_ps(mt + (0 + k) * 16 + 8 * hf), m1 = _mm256_load_ps(mt + (4 + k) * 16 + 8 * hf);
            const __m256 m2 = _mm256_load_ps(mt + (8 + k) * 16 + 8 * hf), m3 = _mm256_load_ps(mt + (12 + k) * 16 + 8 * hf);
            s[k] = _mm256_add_ps(_mm256_add_ps(m0, m1), m2);
            s[4 + k] = _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3);
        }
        for (int r = 0; r < 2; r++) { /* (A^T M) A: columns */
            __m256 *row = r ? u : t;
            row[hf] = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s[4 * r], s[4 * r + 1]), s[4 * r + 2]), bv);
            row[2 + hf] = _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(s[4 * r + 1], s[4 * r + 2]), s[4 * r + 3]), bv);
        }
    }
}

/* pooled_conv_forward by F(2x2, 3x3): u: the transformed weights, (cout / 16, 16, cin, 16); cin a
 * multiple of 8; the rest as there */
void pooled_conv_winograd(const float *x, const float *u, const float *bias, float *out, uint8_t *arg,
                          int n, int h, int w, int cin, int cout, int relu, int threads) {
    const int ho = h / 2, wo = w / 2, nq = ho * wo, rs = (w + 2) * cin;
#pragma omp parallel num_threads(threads)
    {
        float *xp = scratch((size_t)(h + 2) * rs), *v = scratch((size_t)nq * 16 * cin), *m = scratch(6 * 16 * 16);
#pragma omp for schedule(static)
        for (int b = 0; b < n; b++) {
            pad(x + (size_t)b * h * w * cin, xp, h, w, cin);
            for (int q = 0; q < nq; q++)
                winograd_input(xp + (size_t)(2 * (q / wo)) * rs + (size_t)(2 * (q % wo)) * cin, v + (size_t)q * 16 * cin, cin, rs);
            for (int ob = 0; ob < cout; ob += 16) {
                const float *ub = u + (size_t)ob * 16 * cin, *bb = bias ? bias + ob : ZEROS;
                for (int q = 0; q < nq;) {
                    const int nt = nq - q >= 6 ? 6 : nq - q >= 3 ? 3 : 1;
                    if (nt == 6) winograd_products6(v + (size_t)q * 16 * cin, ub, cin, m);
                    else if (nt == 3) winograd_products3(v + (size_t)q * 16 * cin, ub, cin, m);
                    else winograd_products1(v + (size_t)q * 16 * cin, ub, cin, m);
                    for (int t = 0; t < nt; t++, q++) {
                        __m256 tt[4], uu[4];
                        winograd_output(m + t * 256, bb, tt, uu);
                        const size_t o = ((size_t)b * nq + q) * cout + ob;
                        emit(tt, uu, out + o, arg ? arg + o : NULL, relu);
                    }
                }
            }
        }
        free(xp);
        free(v);
        free(m);
    }
}

/* A channel's weight gradient summed in registers over cnt windows: for rows r in [R0, R0 + NR)
 * and vectors j < NV of each, wr[r * kr + 8 j ...] += sum over the windows i of
 * gl[i] * xp[at[i] + r * rs + 8 j ...] (gl, at: the channel's gradients and winners' offsets, in
 * window order). NR and NV are literals, so the sums stay in registers. */
#define GATHER(NR, NV, R0) GATHER_AT(NR, NV, R0, 0)
#define GATHER_AT(NR, NV, R0, J0) /* the same from vector J0 of each row */                  \
    do {                                                                                     \
        __m256 acc[(NR) * (NV)];                                                             \
        for (int r = 0; r < (NR); r++)                                                       \
            for (int j = 0; j < (NV); j++)                                                   \
                acc[r * (NV) + j] = _mm256_load_ps(wr + ((R0) + r) * kr + 8 * ((J0) + j));   \
        for (int i = 0; i < cnt; i++) {                                                      \
            const __m256 v = _mm256_broadcast_ss(gl + i);                                    \
            const float *src = xp + at[i] + (R0) * rs + 8 * (J0);                            \
            for (int r = 0; r < (NR); r++)                                                   \
                for (int j = 0; j < (NV); j++)                                               \
                    acc[r * (NV) + j] = _mm256_fmadd_ps(v, _mm256_loadu_ps(src + r * rs + 8 * j), acc[r * (NV) + j]); \
        }                                                                                    \
        for (int r = 0; r < (NR); r++)                                                       \
            for (int j = 0; j < (NV); j++)                                                   \
                _mm256_store_ps(wr + ((R0) + r) * kr + 8 * ((J0) + j), acc[r * (NV) + j]);   \
    } while (0)

/* The input gradient of one window, 8 input channels (vector j) at a time: the 4x4 patch the
 * window's four 3x3 conv patches cover is summed in registers, half of it (two rows, acc[0..7]) at
 * a time, over the output channels of one chunk, grouped by the position that won (so every
 * product lands in a register known at compile time), then added to dxp. TAPS(P, K0, K1, R0):
 * the channels that won at position P (the set bits of mk[P], their gradients in gq), rows K0..K1
 * of their 3x3 taps, which land in patch rows (P >> 1) + ky, R0 the first row of the half. */
#define TAPS(P, K0, K1, R0)                                                                   \
    do {                                                                                     \
        for (uint64_t m_ = mk[P]; m_; m_ &= m_ - 1) {                                        \
            const int co = __builtin_ctzll(m_);                                              \
            const __m256 v = _mm256_broadcast_ss(gq + co);                                   \
            const float *wk = wsl + (size_t)co * 72;                                         \
            for (int ky = (K0); ky <= (K1); ky++)                                            \
                for (int kx = 0; kx < 3; kx++) {                                             \
                    const int a = ((P) / 2 + ky - (R0)) * 4 + (P) % 2 + kx;                  \
                    acc[a] = _mm256_fmadd_ps(v, _mm256_loadu_ps(wk + (ky * 3 + kx) * 8), acc[a]); \
                }                                                                            \
        }                                                                                    \
    } while (0)

/* dxp (h + 2, w + 2, cin) += the input gradient of one image, cin a multiple of 8. wj: the weights
 * as (cin / 8, cout, 3, 3, 8); gms: the gradients (nq, cout), 0 where none passed; masks: per window
 * and chunk of 64 output channels, which of them won at each of the four positions (with a
 * gradient). One chunk's weights for one j (18 KB) stay in the L1 cache over all the windows. */
static void input_gradient(const float *restrict wj, const float *restrict gms, const uint64_t *restrict masks,
                           float *restrict dxp, int nq, int wo, int rs, int cin, int cout) {
    const int chunks = (cout + 63) / 64;
    for (int j = 0; j < cin / 8; j++)
        for (int cc = 0; cc < chunks; cc++) {
            const float *wsl = wj + ((size_t)j * cout + (size_t)cc * 64) * 72; /* vector j of the chunk's taps */
            for (int q = 0; q < nq; q++) {
                const uint64_t *mk = masks + ((size_t)q * chunks + cc) * 4;
                const float *gq = gms + (size_t)q * cout + (size_t)cc * 64;
                float *corner = dxp + (size_t)(2 * (q / wo)) * rs + (size_t)(2 * (q % wo)) * cin + 8 * j;
                for (int half = 0; half < 2; half++) {
                    __m256 acc[8];
                    for (int a = 0; a < 8; a++) acc[a] = _mm256_setzero_ps();
                    if (half == 0) { /* patch rows 0-1 */
                        TAPS(0, 0, 1, 0); TAPS(1, 0, 1, 0); TAPS(2, 0, 0, 0); TAPS(3, 0, 0, 0);
                    } else { /* patch rows 2-3 */
                        TAPS(0, 2, 2, 2); TAPS(1, 2, 2, 2); TAPS(2, 1, 2, 2); TAPS(3, 1, 2, 2);
                    }
                    for (int r = 0; r < 2; r++)
                        for (int c = 0; c < 4; c++) {
                            float *d = corner + (size_t)(2 * half + r) * rs + (size_t)c * cin;
                            _mm256_storeu_ps(d, _mm256_add_ps(_mm256_loadu_ps(d), acc[r * 4 + c]));
                        }
                }
            }
        }
}

/* One image's share of the backward pass, added to pw (weight gradient rows of kr) and pb (bias
 * gradient); dx of the image where dxp is given. Kept out of the OpenMP region so that its sizes
 * and pointers are plain locals in registers. */
static void backward_image(const float *restrict x, const float *restrict g, const float *restrict out,
                           const uint8_t *restrict arg, const float *restrict wd, float *restrict dx,
                           float *restrict pw, float *restrict pb, float *restrict xp, float *restrict dxp,
                           int *restrict att, float *restrict gmt, float *restrict gms, uint64_t *restrict masks,
                           const int h, const int w, const int cin, const int cout, const int relu) {
    const int ho = h / 2, wo = w / 2, rs = (w + 2) * cin, k3 = 3 * cin, kw = 9 * cin, nq = ho * wo;
    const int kr = (k3 + 7) / 8 * 8, nv = kr / 8;
    pad(x, xp, h, w, cin);
    /* each window and channel: the gradient where the ReLU passed it (else 0) and where its
     * window's winner sits in xp, 8 channels at a time; gms by window (for the input gradient),
     * gmt and att by channel (for the weight gradient) */
    const __m256i one = _mm256_set1_epi32(1), rsv = _mm256_set1_epi32(rs), cinv = _mm256_set1_epi32(cin);
    for (int py = 0; py < ho; py++)
        for (int px = 0; px < wo; px++) {
            const size_t o = ((size_t)py * wo + px) * cout;
            const __m256i corner = _mm256_set1_epi32(2 * py * rs + 2 * px * cin);
            for (int c8 = 0; c8 < cout; c8 += 8) {
                __m256 gv = _mm256_loadu_ps(g + o + c8);
                if (relu) /* where the ReLU stopped it, no gradient */
                    gv = _mm256_and_ps(gv, _mm256_cmp_ps(_mm256_loadu_ps(out + o + c8), _mm256_setzero_ps(), _CMP_GT_OQ));
                _mm256_storeu_ps(gms + o + c8, gv);
                int at8[8];
                const __m256i a = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(arg + o + c8)));
                const __m256i at = _mm256_add_epi32(corner, _mm256_add_epi32(
                    _mm256_mullo_epi32(_mm256_srli_epi32(a, 1), rsv), _mm256_mullo_epi32(_mm256_and_si256(a, one), cinv)));
                _mm256_storeu_si256((__m256i *)at8, at);
                for (int k = 0; k < 8; k++) {
                    const size_t t = (size_t)(c8 + k) * nq + py * wo + px;
                    att[t] = at8[k];
                    gmt[t] = gms[o + c8 + k];
                }
            }
        }
    if (dxp && cin % 8 == 0) { /* per window and chunk of 64 channels: who won where, as bit masks */
        memset(dxp, 0, (size_t)(h + 2) * rs * sizeof(float));
        const int chunks = (cout + 63) / 64;
        memset(masks, 0, (size_t)nq * chunks * 4 * sizeof(uint64_t));
        for (int q = 0; q < nq; q++)
            for (int c8 = 0; c8 < cout; c8 += 8) {
                const size_t o = (size_t)q * cout + c8;
                const __m256 some = _mm256_cmp_ps(_mm256_loadu_ps(gms + o), _mm256_setzero_ps(), _CMP_NEQ_UQ);
                const __m256i a = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(arg + o)));
                uint64_t *mk = masks + ((size_t)q * chunks + c8 / 64) * 4;
                for (int p = 0; p < 4; p++) {
                    const __m256 at_p = _mm256_castsi256_ps(_mm256_cmpeq_epi32(a, _mm256_set1_epi32(p)));
                    mk[p] |= (uint64_t)_mm256_movemask_ps(_mm256_and_ps(at_p, some)) << (c8 % 64);
                }
            }
        input_gradient(wd, gms, masks, dxp, nq, wo, rs, cin, cout);
    } else if (dxp) { /* rows that are not whole vectors: one channel at a time */
        memset(dxp, 0, (size_t)(h + 2) * rs * sizeof(float));
        for (int q = 0; q < nq; q++) {
            const int corner = 2 * (q / wo) * rs + 2 * (q % wo) * cin;
            for (int co = 0; co < cout; co++) {
                const int p = arg[(size_t)q * cout + co];
                const float gq = gms[(size_t)q * cout + co];
                float *restrict dr = dxp + corner + (p >> 1) * rs + (p & 1) * cin;
                const float *restrict wk = wd + (size_t)co * kw;
                if (gq != 0.0f)
                    for (int r = 0; r < 3; r++)
                        for (int k = 0; k < k3; k++) dr[r * rs + k] += gq * wk[r * k3 + k];
            }
        }
    }
    for (int co = 0; co < cout; co++)
        for (int i = 0; i < nq; i++) pb[co] += gmt[(size_t)co * nq + i];
    /* four rows of windows at a time, every channel: their rows of xp stay in the L1 or L2 cache
     * (two rows: 4-15 % slower at fast-c's layers, the loop's end mispredicted twice as often) */
    for (int q0 = 0; q0 < nq; q0 += 4 * wo) {
        for (int co = 0; co < cout; co++) {
            const int cnt = nq - q0 < 4 * wo ? nq - q0 : 4 * wo;
            const int *at = att + (size_t)co * nq + q0;
            const float *gl = gmt + (size_t)co * nq + q0;
            float *wr = pw + (size_t)co * 3 * kr;
            if (nv == 1) GATHER(3, 1, 0);
            else if (nv == 2) GATHER(3, 2, 0);
            else if (nv == 3) GATHER(3, 3, 0);
            else if (nv == 4) GATHER(3, 4, 0);
            else /* wider: 9 (or 6, then 3, then 1) vectors of a row at a time */
                for (int ky = 0; ky < 3; ky++) {
                    int j0 = 0;
                    if (nv % 9 == 0)
                        for (; j0 + 9 <= nv; j0 += 9) GATHER_AT(1, 9, ky, j0);
                    for (; j0 + 6 <= nv; j0 += 6) GATHER_AT(1, 6, ky, j0);
                    for (; j0 + 3 <= nv; j0 += 3) GATHER_AT(1, 3, ky, j0);
                    for (; j0 < nv; j0++) GATHER_AT(1, 1, ky, j0);
                }
        }
    }
    if (dxp)
        for (int y = 0; y < h; y++)
            memcpy(dx + (size_t)y * w * cin, dxp + (size_t)(y + 1) * rs + cin, (size_t)w * cin * sizeof(float));
}

/* The backward pass of pooled_conv_forward. g: the gradient of out; x, out, arg, relu as in the
 * forward (out is read only with relu). wd: the weights, (cin / 8, cout, 3, 3, 8) where cin is a
 * multiple of 8, else (cout, 3, 3, cin), and dx: (n, h, w, cin), both NULL where no input gradient
 * is wanted. dw: (cout, 3, 3, cin) and db: (cout) or NULL, overwritten.
 * A channel's weight gradient is summed in registers over four rows of an image's windows at a time,
 * with a zero gradient where the ReLU stopped it (no branches), 8 taps-by-channels at a time (rows
 * of 3 * cin rounded up to 8: the extra lanes read neighbouring values and are dropped); the input
 * gradient per window, its channels grouped by winning position (input_gradient). */
void pooled_conv_backward(const float *x, const float *g, const float *out, const uint8_t *arg,
                          const float *wd, float *dx, float *dw, float *db,
                          int n, int h, int w, int cin, int cout, int relu, int threads) {
    const int ho = h / 2, wo = w / 2, k3 = 3 * cin, kw = 9 * cin, nq = ho * wo;
    const int kr = (k3 + 7) / 8 * 8;
    const size_t padded = (size_t)(h + 2) * (w + 2) * cin, pooled = (size_t)nq * cout;
    const int per = (n + CHUNKS - 1) / CHUNKS, chunks = (n + per - 1) / per; /* images per chunk, chunks */
    const size_t part = ((size_t)cout * 3 * kr + cout + 15) / 16 * 16; /* a chunk's dw rows, then db */
    float *parts = scratch((size_t)chunks * part);
#pragma omp parallel num_threads(threads)
    {
        float *xp = scratch(padded + kr), *dxp = dx ? scratch(padded) : NULL;
        int *att = (int *)scratch(pooled);
        uint64_t *masks = dx ? (uint64_t *)scratch((size_t)nq * ((cout + 63) / 64) * 8) : NULL;
        float *gmt = scratch(pooled), *gms = scratch(pooled);
        memset(xp + padded, 0, kr * sizeof(float)); /* the slack the last row's extra lanes read */
#pragma omp for schedule(dynamic, 1)
        for (int ch = 0; ch < chunks; ch++) {
            float *pw = parts + (size_t)ch * part;
            memset(pw, 0, part * sizeof(float));
            const int end = (ch + 1) * per < n ? (ch + 1) * per : n;
            for (int b = ch * per; b < end; b++)
                backward_image(x + (size_t)b * h * w * cin, g + b * pooled, out ? out + b * pooled : NULL, arg + b * pooled,
                               wd, dx ? dx + (size_t)b * h * w * cin : NULL, pw, pw + (size_t)cout * 3 * kr,
                               xp, dxp, att, gmt, gms, masks, h, w, cin, cout, relu);
        }
        free(xp);
        free(dxp);
        free(att);
        free(gmt);
        free(gms);
        free(masks);
    }
    for (int co = 0; co < cout; co++) {
        for (int ky = 0; ky < 3; ky++)
            for (int k = 0; k < k3; k++) {
                float s = 0.0f;
                for (int ch = 0; ch < chunks; ch++) s += parts[(size_t)ch * part + ((size_t)co * 3 + ky) * kr + k];
                dw[(size_t)co * kw + ky * k3 + k] = s;
            }
        float s = 0.0f;
        for (int ch = 0; ch < chunks; ch++) s += parts[(size_t)ch * part + (size_t)cout * 3 * kr + co];
        if (db) db[co] = s;
    }
    free(parts);
}
