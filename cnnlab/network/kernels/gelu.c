/* GELU, x * Phi(x) with Phi the standard normal CDF (the exact, erf form of torch's nn.GELU), over
 * a dense fp32 array, and where asked its derivative Phi(x) + x phi(x) in the same pass, so the
 * backward pass is one product (g * d) instead of a second evaluation of erf and exp.
 *
 * With z = |x| / sqrt(2) and t = 1 / (1 + z / 2):
 *     erfc(z) = exp(-z^2) erfcx(z),   erfcx(z) = t P(t)   (P: degree 10, fitted to erfcx on
 *                                                           t in (0, 1], 2e-7 relative in fp32)
 *     Phi(x) = erfc(z) / 2 for x < 0, 1 - erfc(z) / 2 for x >= 0
 *     phi(x) = exp(-z^2) / sqrt(2 pi)
 * so one exponential serves both, and Phi keeps its relative accuracy in the left tail. The
 * results agree with ATen's to a few fp32 roundings. NaN stays NaN; GELU(+inf) = +inf and
 * GELU(-inf) is NaN, as in ATen. The threads take equal runs of the array: the results do not
 * depend on their number.
 */
#include <immintrin.h>
#include <stddef.h>
#include <string.h>

/* e^a for a <= 88, 0 below -87 (where it would not be a normal float): a = n ln 2 + r,
 * |r| <= ln 2 / 2, e^r by its Taylor series to r^7 (relative error under 6e-9), times 2^n put
 * into the exponent bits */
static inline __m256 exp8(__m256 a) {
    const __m256 normal = _mm256_cmp_ps(a, _mm256_set1_ps(-87.0f), _CMP_GE_OQ);
    a = _mm256_min_ps(_mm256_max_ps(a, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(a, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), a); /* ln 2, high bits */
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);   /* ln 2, the rest */
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), normal);
}

/* 1 where the pass runs on OpenMP threads (the compiler had it), else 0: one thread */
int gelu_threaded(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* y = GELU(x) for 8 values, and d = its derivative where d is wanted */
static inline void gelu8(__m256 x, __m256 *y, __m256 *d) {
    static const float P[11] = {0.282094806432724f, 0.2820938527584076f, 0.24688059091567993f,
                                0.17537671327590942f, 0.09300126880407333f, -0.057234980165958405f,
                                0.12709513306617737f, -0.4469854533672333f, 0.486185759305954f,
                                -0.23086093366146088f, 0.04235326126217842f};
    const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
    const __m256 z = _mm256_mul_ps(_mm256_andnot_ps(sign, x), _mm256_set1_ps(0.70710678118654752f));
    const __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(z, _mm256_set1_ps(0.5f), one));
    __m256 p = _mm256_set1_ps(P[10]);
    for (int k = 9; k >= 0; k--) p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(P[k]));
    const __m256 e = exp8(_mm256_mul_ps(_mm256_xor_ps(z, sign), z));   /* exp(-z^2) */
    const __m256 half = _mm256_mul_ps(_mm256_mul_ps(t, p), _mm256_mul_ps(e, _mm256_set1_ps(0.5f))); /* erfc(z) / 2 */
    const __m256 neg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
    const __m256 phi = _mm256_blendv_ps(_mm256_sub_ps(one, half), half, neg);
    *y = _mm256_mul_ps(x, phi);
    if (d) *d = _mm256_fmadd_ps(_mm256_mul_ps(x, e), _mm256_set1_ps(0.3989422804014327f), phi);
}

/* y[i] = GELU(x[i]) for i < n; d[i] = GELU'(x[i]) where d is not NULL */
void gelu_forward(const float *x, float *y, float *d, long n, int threads) {
    const long blocks = n / 8;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (long b = 0; b < blocks; b++) {
        __m256 yv, dv;
        gelu8(_mm256_loadu_ps(x + 8 * b), &yv, d ? &dv : NULL);
        _mm256_storeu_ps(y + 8 * b, yv);
        if (d) _mm256_storeu_ps(d + 8 * b, dv);
    }
    const long rest = n - 8 * blocks;
    if (rest) { /* the last values, through an 8-value buffer */
        float in[8] = {0}, out[8], der[8];
        memcpy(in, x + 8 * blocks, rest * sizeof(float));
        __m256 yv, dv;
        gelu8(_mm256_loadu_ps(in), &yv, d ? &dv : NULL);
        _mm256_storeu_ps(out, yv);
        memcpy(y + 8 * blocks, out, rest * sizeof(float));
        if (d) {
            _mm256_storeu_ps(der, dv);
            memcpy(d + 8 * blocks, der, rest * sizeof(float));
        }
    }
}
