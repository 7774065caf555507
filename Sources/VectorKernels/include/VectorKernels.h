#ifndef GRADACCUM_VECTOR_KERNELS_H
#define GRADACCUM_VECTOR_KERNELS_H

/// Elementwise kernels compiled once per vector width (AVX-512, AVX2, SSE2) and chosen when
/// the program loads, by the CPU it runs on. Each does the same operations in the same order
/// on every width (no contraction into fused multiply-adds, no reassociation), so results
/// are the same bit for bit on every CPU, and the same as the formulas in `VectorMath`.

/// `output[i] = 0.5·x·(1 + erf(x/√2))` for `count` values (`output` may be `input`).
void gradaccum_gelu(const float *input, float *output, long count);

/// `output[i] = g[i]·(Φ(x[i]) + x[i]·φ(x[i]))`, the gradient through GELU (`output` may be `g`).
void gradaccum_gelu_gradient(const float *g, const float *x, float *output, long count);

/// `output[i] = exp(scale·values[i] − shift)` for exponents ≤ 0, by `VectorMath.expNonPositive`'s
/// formula (`output` may be `values`): the softmaxes' exponentials.
void gradaccum_exponentials(const float *values, float *output, long count, float scale, float shift);

/// `output[i] = g[i] − exp(logP[i])·total`, log-softmax's gradient along a line whose
/// gradient sums to `total`, with `exp` evaluated in double precision and rounded once (the
/// correctly rounded value: the probabilities are the gradient itself, where a few units in
/// the last place add up over a run). `output` may be `g`.
void gradaccum_log_softmax_gradient(const float *g, const float *log_probabilities, float total, float *output, long count);

#endif
