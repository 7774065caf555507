#include "VectorKernels.h"

#include <stdint.h>
#include <string.h>

// Every width computes exactly what the formulas say, operation by operation.
#pragma clang fp contract(off)

#define EVERY_WIDTH __attribute__((target_clones("avx512f", "avx2", "default")))

// `erf(x)` as `VectorMath.erf`: a rational function on [-4, 4], clamped beyond (NaN passes).
static inline float erf_rational(float value) {
  float clamped = (-4.0f >= value) ? -4.0f : value;
  float x = (4.0f < clamped) ? 4.0f : clamped;
  float x2 = x * x;
  float p = -2.72614225801306e-10f;
  p = p * x2 + 2.77068142495902e-08f;
  p = p * x2 - 2.10102402082508e-06f;
  p = p * x2 - 5.69250639462346e-05f;
  p = p * x2 - 7.34990630326855e-04f;
  p = p * x2 - 2.95459980854025e-03f;
  p = p * x2 - 1.60960333262415e-02f;
  float q = -1.45660718464996e-05f;
  q = q * x2 - 2.13374055278905e-04f;
  q = q * x2 - 1.68282697438203e-03f;
  q = q * x2 - 7.37332916720468e-03f;
  q = q * x2 - 1.42647390514189e-02f;
  return x * p / q;
}

// `exp(x)` for x ≤ 0 as `VectorMath.expNonPositive`: 2^n · e^r, a degree-7 polynomial.
static inline float exp_nonpositive(float value) {
  float low = (-87.0f >= value) ? -87.0f : value;
  float x = (0.0f < low) ? 0.0f : low;
  float shifted = x * 1.4426950408889634f + 12582912.0f;
  float n = shifted - 12582912.0f;
  float r = x - n * 0.693145751953125f - n * 1.428606765330187e-06f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  uint32_t bits;
  memcpy(&bits, &shifted, sizeof bits);
  bits = (bits - 0x4B400000u + 127u) << 23;
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return value < -87.0f ? 0.0f : p * scale;
}

EVERY_WIDTH void gradaccum_gelu(const float *input, float *output, long count) {
  const float inverse_square_root_two = 0.70710678118654752440f;
  // Each element reads only its own place before writing it, so the output may be the
  // input: vectorized without the overlap check that would send it to the scalar loop.
#pragma clang loop vectorize(assume_safety)
  for (long i = 0; i < count; i++) {
    float x = input[i];
    output[i] = 0.5f * x * (1.0f + erf_rational(x * inverse_square_root_two));
  }
}

EVERY_WIDTH void gradaccum_gelu_gradient(const float *g, const float *x, float *output, long count) {
  const float inverse_square_root_two = 0.70710678118654752440f;
  const float inverse_square_root_two_pi = 0.39894228040143267794f;
  // In place over `g` too (see above).
#pragma clang loop vectorize(assume_safety)
  for (long i = 0; i < count; i++) {
    float v = x[i];
    float cdf = 0.5f * (1.0f + erf_rational(v * inverse_square_root_two));
    float pdf = inverse_square_root_two_pi * exp_nonpositive(-0.5f * v * v);
    output[i] = g[i] * (cdf + v * pdf);
  }
}

EVERY_WIDTH void gradaccum_exponentials(const float *values, float *output, long count, float scale, float shift) {
  // In place over `values` too (see above).
#pragma clang loop vectorize(assume_safety)
  for (long i = 0; i < count; i++) output[i] = exp_nonpositive(values[i] * scale - shift);
}

// `exp(x)` for x ≤ 0 in double precision, rounded once to float: 2^n · e^r with |r| ≤ ln2/2
// and a degree-11 Taylor polynomial (truncation below 1e-14 relative), so the float result
// is the correctly rounded value but for ties closer than that. Exponents below -200 give
// 0 (as the float result of anything below about -104 is); NaN passes.
static inline float exp_nonpositive_rounded(float value) {
  double low = (-200.0 >= (double)value) ? -200.0 : (double)value;
  double x = (0.0 < low) ? 0.0 : low;
  double shifted = x * 1.4426950408889634 + 6755399441055744.0;
  double n = shifted - 6755399441055744.0;
  double r = x - n * 0.6931471805599453;
  double p = 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  // 2^n from the exponent bits: the low bits of `shifted` hold n (-289 ≤ n ≤ 0).
  int64_t bits;
  memcpy(&bits, &shifted, sizeof bits);
  bits = (bits - 0x4338000000000000LL + 1023) << 52;
  double scale;
  memcpy(&scale, &bits, sizeof scale);
  return (float)(p * scale);
}

EVERY_WIDTH void gradaccum_log_softmax_gradient(
    const float *g, const float *log_probabilities, float total, float *output, long count) {
#pragma clang loop vectorize(assume_safety)
  for (long i = 0; i < count; i++) output[i] = g[i] - exp_nonpositive_rounded(log_probabilities[i]) * total;
}
