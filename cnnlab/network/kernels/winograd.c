/* The four data transforms of a 3x3 'same' convolution (stride 1) by Winograd's F(4x4, 3x3), over
 * channels-last (NHWC) fp32 maps, 8 channels at a time; the products between them are 36 matrix
 * products that the caller runs (torch.bmm), one per position of the 6x6 tile.
 *
 *   V = B^T d B       a 6x6 input patch d (zero past the map's edge) per 4x4 output tile
 *   y = A^T M A       the 4x4 output tile from the 36 products M, cut at the map's edge
 *   dM = A g A^T      the adjoint of the output transform: the output gradient g of one tile
 *   dd = B dV B^T     the adjoint of the input transform, the patches added where tiles overlap
 *
 * Tiles are numbered t = (image * th + tile row) * tw + tile column, th = ceil(h / 4),
 * tw = ceil(w / 4); a transformed map is (36, tiles, channels). Lavin and Gray's matrices (2016),
 * points 0, 1, -1, 2, -2 and infinity. Each output sums the same terms as the direct convolution
 * in another order and through the transforms, so it agrees with it to fp32 rounding of values
 * about 10x the size of the result's, not bitwise; no sum depends on the thread count.
 */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

typedef __m256 v8;

/* 1 where the transforms run on OpenMP threads (the compiler had it), else 0: one thread */
int winograd_threaded(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

#define SET(x) _mm256_set1_ps(x)
#define ADD _mm256_add_ps
#define SUB _mm256_sub_ps
#define FMA _mm256_fmadd_ps   /* a * b + c */
#define FNMA _mm256_fnmadd_ps /* c - a * b */

/* o = B^T d (6 -> 6), d and o strided by s vectors */
static inline __attribute__((always_inline)) void bt(const v8 *d, v8 *o, int s) {
    const v8 d0 = d[0], d1 = d[s], d2 = d[2 * s], d3 = d[3 * s], d4 = d[4 * s], d5 = d[5 * s];
    o[0] = FMA(SET(4), d0, FNMA(SET(5), d2, d4));
    o[s] = FNMA(SET(4), ADD(d1, d2), ADD(d3, d4));
    o[2 * s] = FMA(SET(4), SUB(d1, d2), SUB(d4, d3));
    o[3 * s] = FMA(SET(2), SUB(d3, d1), SUB(d4, d2));
    o[4 * s] = FMA(SET(2), SUB(d1, d3), SUB(d4, d2));
    o[5 * s] = FMA(SET(4), d1, FNMA(SET(5), d3, d5));
}

/* o = B i (6 -> 6): the adjoint of bt */
static inline __attribute__((always_inline)) void b(const v8 *i, v8 *o, int s) {
    const v8 i0 = i[0], i1 = i[s], i2 = i[2 * s], i3 = i[3 * s], i4 = i[4 * s], i5 = i[5 * s];
    o[0] = _mm256_mul_ps(SET(4), i0);
    o[s] = FMA(SET(4), ADD(SUB(i2, i1), i5), _mm256_mul_ps(SET(2), SUB(i4, i3)));
    o[2 * s] = SUB(FNMA(SET(5), i0, _mm256_mul_ps(SET(-4), ADD(i1, i2))), ADD(i3, i4));
    o[3 * s] = FNMA(SET(5), i5, FMA(SET(2), SUB(i3, i4), SUB(i1, i2)));
    o[4 * s] = ADD(ADD(ADD(i0, i1), ADD(i2, i3)), i4);
    o[5 * s] = i5;
}

/* o = A^T m (6 -> 4) */
static inline __attribute__((always_inline)) void at(const v8 *m, v8 *o, int s) {
    const v8 m0 = m[0], m1 = m[s], m2 = m[2 * s], m3 = m[3 * s], m4 = m[4 * s], m5 = m[5 * s];
    const v8 p12 = ADD(m1, m2), d12 = SUB(m1, m2), p34 = ADD(m3, m4), d34 = SUB(m3, m4);
    o[0] = ADD(ADD(m0, p12), p34);
    o[s] = FMA(SET(2), d34, d12);
    o[2 * s] = FMA(SET(4), p34, p12);
    o[3 * s] = ADD(FMA(SET(8), d34, d12), m5);
}

/* o = A g (4 -> 6): the adjoint of at */
static inline __attribute__((always_inline)) void a(const v8 *g, v8 *o, int s) {
    const v8 g0 = g[0], g1 = g[s], g2 = g[2 * s], g3 = g[3 * s];
    const v8 p02 = ADD(g0, g2), p13 = ADD(g1, g3);
    const v8 e = FMA(SET(4), g2, g0), f = FMA(SET(4), g3, g1); /* g0 + 4 g2, g1 + 4 g3 */
    o[0] = g0;
    o[s] = ADD(p02, p13);
    o[2 * s] = SUB(p02, p13);
    o[3 * s] = FMA(SET(2), f, e);
    o[4 * s] = FNMA(SET(2), f, e);
    o[5 * s] = g3;
}

static float *scratch(size_t floats) {
    size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
    return (float *)aligned_alloc(64, bytes ? bytes : 64);
}

/* v (36, T, c) = B^T d B of every tile of x (n, h, w, c) */
void winograd_input(const float *x, float *v, int n, int h, int w, int c, int threads) {
    const int th = (h + 3) / 4, tw = (w + 3) / 4, hp = 4 * th + 2, wp = 4 * tw + 2;
    const size_t T = (size_t)n * th * tw, rs = (size_t)wp * c;
#pragma omp parallel num_threads(threads)
    {
        float *xp = scratch((size_t)hp * rs);
        memset(xp, 0, (size_t)hp * rs * sizeof(float));
#pragma omp for schedule(static)
        for (int im = 0; im < n; im++) {
            for (int y = 0; y < h; y++) /* the zero border stays zero */
                memcpy(xp + (size_t)(y + 1) * rs + c, x + ((size_t)im * h + y) * w * c, (size_t)w * c * sizeof(float));
            for (int ti = 0; ti < th; ti++)
                for (int tj = 0; tj < tw; tj++) {
                    const size_t t = ((size_t)im * th + ti) * tw + tj;
                    const float *top = xp + (size_t)(4 * ti) * rs + (size_t)(4 * tj) * c;
                    for (int ch = 0; ch < c; ch += 8) {
                        v8 d[36], u[36];
                        for (int r = 0; r < 6; r++)
                            for (int k = 0; k < 6; k++) d[6 * r + k] = _mm256_loadu_ps(top + r * rs + (size_t)k * c + ch);
                        for (int k = 0; k < 6; k++) bt(d + k, u + k, 6);      /* columns */
                        for (int r = 0; r < 6; r++) bt(u + 6 * r, d + 6 * r, 1); /* rows */
                        for (int xi = 0; xi < 36; xi++) _mm256_storeu_ps(v + ((size_t)xi * T + t) * c + ch, d[xi]);
                    }
                }
        }
        free(xp);
    }
}

/* dx (n, h, w, c) = the sum over tiles of B dv B^T, each at its patch (the adjoint of winograd_input) */
void winograd_input_adjoint(const float *dv, float *dx, int n, int h, int w, int c, int threads) {
    const int th = (h + 3) / 4, tw = (w + 3) / 4, hp = 4 * th + 2, wp = 4 * tw + 2;
    const size_t T = (size_t)n * th * tw, rs = (size_t)wp * c;
#pragma omp parallel num_threads(threads)
    {
        float *dp = scratch((size_t)hp * rs);
#pragma omp for schedule(static)
        for (int im = 0; im < n; im++) {
            memset(dp, 0, (size_t)hp * rs * sizeof(float));
            for (int ti = 0; ti < th; ti++)
                for (int tj = 0; tj < tw; tj++) {
                    const size_t t = ((size_t)im * th + ti) * tw + tj;
                    float *top = dp + (size_t)(4 * ti) * rs + (size_t)(4 * tj) * c;
                    for (int ch = 0; ch < c; ch += 8) {
                        v8 d[36], u[36];
                        for (int xi = 0; xi < 36; xi++) d[xi] = _mm256_loadu_ps(dv + ((size_t)xi * T + t) * c + ch);
                        for (int k = 0; k < 6; k++) b(d + k, u + k, 6);
                        for (int r = 0; r < 6; r++) b(u + 6 * r, d + 6 * r, 1);
                        for (int r = 0; r < 6; r++)
                            for (int k = 0; k < 6; k++) {
                                float *p = top + r * rs + (size_t)k * c + ch;
                                _mm256_storeu_ps(p, ADD(_mm256_loadu_ps(p), d[6 * r + k]));
                            }
                    }
                }
            for (int y = 0; y < h; y++)
                memcpy(dx + ((size_t)im * h + y) * w * c, dp + (size_t)(y + 1) * rs + c, (size_t)w * c * sizeof(float));
        }
        free(dp);
    }
}

/* where tile t of an (n, h, w) map lies: its image, tile row and column, and the rows and columns
 * of its 4x4 outputs inside the map (fewer than 4 at the bottom and right edges) */
typedef struct { int im, ti, tj, nr, nc; } tile;
static inline tile tile_at(long t, int h, int w) {
    const int th = (h + 3) / 4, tw = (w + 3) / 4;
    tile p = {(int)(t / ((long)th * tw)), (int)(t / tw % th), (int)(t % tw), 4, 4};
    p.nr = h - 4 * p.ti < 4 ? h - 4 * p.ti : 4;
    p.nc = w - 4 * p.tj < 4 ? w - 4 * p.tj : 4;
    return p;
}

/* y (n, h, w, c) = A^T m A of every tile (m: (36, T, c)) */
void winograd_output(const float *m, float *y, int n, int h, int w, int c, int threads) {
    const long T = (long)n * ((h + 3) / 4) * ((w + 3) / 4);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long t = 0; t < T; t++) {
        const tile p = tile_at(t, h, w);
        float *top = y + (((size_t)p.im * h + 4 * p.ti) * w + 4 * p.tj) * c; /* the tile's first output */
        for (int ch = 0; ch < c; ch += 8) {
            v8 d[36], u[24], o[16];
            for (int xi = 0; xi < 36; xi++) d[xi] = _mm256_loadu_ps(m + ((size_t)xi * T + t) * c + ch);
            for (int r = 0; r < 6; r++) at(d + 6 * r, u + 4 * r, 1); /* rows: (6, 4) */
            for (int k = 0; k < 4; k++) at(u + k, o + k, 4);          /* columns: (4, 4) */
            for (int r = 0; r < p.nr; r++)
                for (int k = 0; k < p.nc; k++) _mm256_storeu_ps(top + ((size_t)r * w + k) * c + ch, o[4 * r + k]);
        }
    }
}

/* dm (36, T, c) = A g A^T of every tile of g (n, h, w, c), zero past the map's edge (the adjoint of
 * winograd_output) */
void winograd_output_adjoint(const float *g, float *dm, int n, int h, int w, int c, int threads) {
    const long T = (long)n * ((h + 3) / 4) * ((w + 3) / 4);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long t = 0; t < T; t++) {
        const tile p = tile_at(t, h, w);
        const float *top = g + (((size_t)p.im * h + 4 * p.ti) * w + 4 * p.tj) * c; /* the tile's first output */
        for (int ch = 0; ch < c; ch += 8) {
            v8 o[16], u[24], d[36];
            for (int r = 0; r < 4; r++)
                for (int k = 0; k < 4; k++)
                    o[4 * r + k] = r < p.nr && k < p.nc ? _mm256_loadu_ps(top + ((size_t)r * w + k) * c + ch)
                                                        : _mm256_setzero_ps();
            for (int k = 0; k < 4; k++) a(o + k, u + k, 4);           /* columns: (6, 4) */
            for (int r = 0; r < 6; r++) a(u + 4 * r, d + 6 * r, 1);   /* rows: (6, 6) */
            for (int xi = 0; xi < 36; xi++) _mm256_storeu_ps(dm + ((size_t)xi * T + t) * c + ch, d[xi]);
        }
    }
}
