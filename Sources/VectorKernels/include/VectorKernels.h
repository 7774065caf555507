#ifndef GRADACCUM_VECTOR_KERNELS_H
#define GRADACCUM_VECTOR_KERNELS_H

/// Elementwise kernels compiled once per vector width (AVX-512, AVX2, SSE2) and chosen when
/// the program loads, by the CPU it runs on. Each does the same operations in the same order
/// on every width (no contraction into fused multiply-adds, no reassociation), so results
/// are the same bit for bit on every CPU, and the same as the formulas in `VectorMath`.
/// The window kernels after `gradaccum_has_avx512f` (unfolding, folding, 2×2 max pooling;
/// `windows.c`) exist for AVX-512 only: callers check that function and otherwise run
/// their own loops, which give the same bits.

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

/// Whether the CPU has AVX-512F, which the unfolding kernels below need (1) or not (0).
int gradaccum_has_avx512f(void);

/// Whether the masked kernels below take a plane of `height × width` (1: up to 32,768
/// positions, whose chunks' masks they keep on the stack) or not (0).
int gradaccum_unfolds_masked(long height, long width);

/// Unfolds one sample `[C, H, W]` for a window that keeps the plane's extents (stride 1,
/// output `H × W`): column row `(c·kh + ky)·kw + kx` (at `columns + row · row_stride`, `H·W`
/// floats) holds input `[c, oy + ky·dilation − padding, x + kx·dilation − padding]` at
/// output position `(oy, x)`, zero where that lies outside the plane. Masked AVX-512 loads
/// and stores over the flattened plane, 16 positions at a time; only where
/// `gradaccum_has_avx512f()` and `gradaccum_unfolds_masked(height, width)`.
void gradaccum_unfold_keeping_extents(
    const float *source, long channels, long height, long width, long kernel_height, long kernel_width,
    long padding, long dilation, float *columns, long row_stride);

/// The reverse, adding: every column entry that reads inside the plane is added to the
/// input position it reads, window positions in order (the same additions, in the same
/// order, as adding row by row). Only where the unfolding kernel may run.
void gradaccum_fold_keeping_extents(
    const float *columns, long channels, long height, long width, long kernel_height, long kernel_width,
    long padding, long dilation, float *target, long row_stride);

/// One plane's 2×2 max pooling with stride 2 (`output_height × output_width` windows of a
/// plane `width` wide): each window's maximum (NaN wins; the first on ties) and its index in
/// the plane as a float, as `Tensor.maximumPlane`, sixteen windows at a time. Only where
/// `gradaccum_has_avx512f()`, for planes of fewer than 2²⁴ positions.
void gradaccum_max_pool_2x2(
    const float *source, long width, long output_height, long output_width, float *out, float *positions);

/// Its gradient into one `height × width` plane, every position written: each window's
/// gradient (plus zero, as when added to zeros) at the position it took its maximum from,
/// zeros elsewhere, the four positions of a window at once, sixteen windows at a time. Only
/// where `gradaccum_max_pool_2x2` may run.
void gradaccum_max_pool_2x2_gradient(
    const float *gradient, const float *positions, long height, long width, long output_height, long output_width,
    float *target);

#endif
