// Window kernels for AVX-512: unfolding and folding convolution windows that keep the
// plane's extents, and 2×2 max pooling. Each gives, bit for bit, what the Swift loops of
// `Tensors` give (tested against them); the Swift code calls them only where the CPU has
// AVX-512F (`gradaccum_has_avx512f`).
#include "VectorKernels.h"

#include <immintrin.h>
#include <stdint.h>

int gradaccum_has_avx512f(void) { return __builtin_cpu_supports("avx512f"); }

// The lanes `i` of the chunk at `start` whose position `start + i` lies in `[low, high)`.
static inline uint32_t lanes_within(long start, long low, long high) {
  long first = low - start, end = high - start;
  if (first < 0) first = 0;
  if (end > 16) end = 16;
  if (end <= first) return 0;
  const uint32_t upto = end == 16 ? 0xFFFFu : ((1u << end) - 1u);
  return upto & ~((1u << first) - 1u);
}

// For window position (ky, kx), output position p = y·W + x of the flattened plane reads
// input position p + offset (offset = row_shift·W + column_shift) when row y + row_shift and
// column x + column_shift lie in the plane. Writes, for each 16-position chunk of the plane,
// the lanes that read inside it: row by row, each row's run of such columns.
static void reading_lanes(long height, long width, long row_shift, long column_shift, __mmask16 *masks) {
  const long chunks = (height * width + 15) / 16;
  for (long chunk = 0; chunk < chunks; chunk++) masks[chunk] = 0;
  const long low = column_shift < 0 ? -column_shift : 0;
  const long high = column_shift > 0 ? width - column_shift : width;
  if (high <= low) return;
  for (long y = 0; y < height; y++) {
    if (y + row_shift < 0 || y + row_shift >= height) continue;
    const long first = y * width + low, end = y * width + high;
    for (long chunk = first / 16; chunk * 16 < end; chunk++) {
      masks[chunk] = (__mmask16)(masks[chunk] | lanes_within(chunk * 16, first, end));
    }
  }
}

// The lanes of the last chunk that lie in the plane (all 16 for the others).
static inline __mmask16 plane_lanes(long chunk, long plane) {
  const long left = plane - chunk * 16;
  return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
}

// Chunks of the plane at a time; masks for 2,048 chunks (32,768 positions) on the stack.
enum { MASKED_CHUNKS = 2048 };

int gradaccum_unfolds_masked(long height, long width) { return height * width <= MASKED_CHUNKS * 16; }

// Window position (ky, kx): writes its chunk masks (`reading_lanes`) and returns, in bytes,
// how far the input position an output position reads lies from it.
static intptr_t window_position(
    long ky, long kx, long height, long width, long padding, long dilation, __mmask16 *masks) {
  const long row_shift = ky * dilation - padding, column_shift = kx * dilation - padding;
  reading_lanes(height, width, row_shift, column_shift, masks);
  return (intptr_t)(row_shift * width + column_shift) * (intptr_t)sizeof(float);
}

// Walks every window position and channel of a window that keeps the plane's extents, the
// plane 16 positions at a time: unfolding copies the input positions each chunk reads into
// its column row (zeros elsewhere); folding adds the column row's entries to the input
// positions they read. Window positions are the outer loops, so that their masks are built
// once for every channel; folding still adds into each input position window position by
// window position, in order, since one channel's positions take additions from that
// channel's column rows only.
__attribute__((target("avx512f"), always_inline)) static inline void walk_keeping_extents(
    int folding, float *plane_values, long channels, long height, long width, long kernel_height, long kernel_width,
    long padding, long dilation, float *columns, long row_stride) {
  const long plane = height * width, chunks = (plane + 15) / 16, window = kernel_height * kernel_width;
  __mmask16 masks[MASKED_CHUNKS];
  for (long ky = 0; ky < kernel_height; ky++) {
    for (long kx = 0; kx < kernel_width; kx++) {
      const intptr_t offset = window_position(ky, kx, height, width, padding, dilation, masks);
      for (long c = 0; c < channels; c++) {
        // Integer addresses: the masked lanes of a load or store are never touched (nor can
        // they fault).
        const intptr_t shifted = (intptr_t)(plane_values + c * plane) + offset;
        float *row = columns + (c * window + ky * kernel_width + kx) * row_stride;
        for (long chunk = 0; chunk < chunks; chunk++) {
          const __mmask16 lanes = masks[chunk];
          float *at = (float *)(shifted + chunk * 16 * (intptr_t)sizeof(float));
          if (folding) {
            if (!lanes) continue;
            const __m512 sum = _mm512_add_ps(_mm512_maskz_loadu_ps(lanes, at), _mm512_maskz_loadu_ps(lanes, row + chunk * 16));
            _mm512_mask_storeu_ps(at, lanes, sum);
          } else {
            _mm512_mask_storeu_ps(row + chunk * 16, plane_lanes(chunk, plane), _mm512_maskz_loadu_ps(lanes, at));
          }
        }
      }
    }
  }
}

__attribute__((target("avx512f"))) void gradaccum_unfold_keeping_extents(
    const float *source, long channels, long height, long width, long kernel_height, long kernel_width,
    long padding, long dilation, float *columns, long row_stride) {
  // Only read: the input is not written when unfolding.
  walk_keeping_extents(
      0, (float *)source, channels, height, width, kernel_height, kernel_width, padding, dilation, columns, row_stride);
}

__attribute__((target("avx512f"))) void gradaccum_fold_keeping_extents(
    const float *columns, long channels, long height, long width, long kernel_height, long kernel_width,
    long padding, long dilation, float *target, long row_stride) {
  // Only read: the columns are not written when folding.
  walk_keeping_extents(
      1, target, channels, height, width, kernel_height, kernel_width, padding, dilation, (float *)columns, row_stride);
}

// One 2×2 window's maximum as `Tensor.maximumPlane` keeps it: `value` replaces `best` when
// `best` is not NaN and `value` is larger or NaN (the first maximum on ties; a NaN stays).
static inline void keep_scalar(const float *source, long candidate, float *best, long *index) {
  const float value = source[candidate];
  if (*best == *best && !(value <= *best)) {
    *best = value;
    *index = candidate;
  }
}

__attribute__((target("avx512f"))) void gradaccum_max_pool_2x2(
    const float *source, long width, long output_height, long output_width, float *out, float *positions) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  const __m512i steps = even;
  for (long oy = 0; oy < output_height; oy++) {
    const long top = 2 * oy * width;
    long ox = 0;
    for (; ox + 16 <= output_width; ox += 16) {
      const long first = top + 2 * ox;
      const __m512 u0 = _mm512_loadu_ps(source + first), u1 = _mm512_loadu_ps(source + first + 16);
      const __m512 l0 = _mm512_loadu_ps(source + first + width), l1 = _mm512_loadu_ps(source + first + width + 16);
      __m512 best = _mm512_permutex2var_ps(u0, even, u1);
      __m512i index = _mm512_setzero_si512();
      const __m512 candidates[3] = {
          _mm512_permutex2var_ps(u0, odd, u1), _mm512_permutex2var_ps(l0, even, l1), _mm512_permutex2var_ps(l0, odd, l1)};
      const int places[3] = {1, (int)width, (int)width + 1};
      for (int k = 0; k < 3; k++) {
        const __mmask16 ordered = _mm512_cmp_ps_mask(best, best, _CMP_ORD_Q);
        const __mmask16 replaces = _mm512_mask_cmp_ps_mask(ordered, candidates[k], best, _CMP_NLE_UQ);
        best = _mm512_mask_mov_ps(best, replaces, candidates[k]);
        index = _mm512_mask_mov_epi32(index, replaces, _mm512_set1_epi32(places[k]));
      }
      _mm512_storeu_ps(out + oy * output_width + ox, best);
      const __m512i flat = _mm512_add_epi32(_mm512_add_epi32(index, steps), _mm512_set1_epi32((int)first));
      _mm512_storeu_ps(positions + oy * output_width + ox, _mm512_cvtepi32_ps(flat));
    }
    for (; ox < output_width; ox++) {
      const long first = top + 2 * ox;
      long index = first;
      float best = source[first];
      keep_scalar(source, first + 1, &best, &index);
      keep_scalar(source, first + width, &best, &index);
      keep_scalar(source, first + width + 1, &best, &index);
      out[oy * output_width + ox] = best;
      positions[oy * output_width + ox] = (float)index;
    }
  }
}

__attribute__((target("avx512f"))) void gradaccum_max_pool_2x2_gradient(
    const float *gradient, const float *positions, long height, long width, long output_height, long output_width,
    float *target) {
  // Interleaving two 16-lane halves into 32 consecutive floats.
  const __m512i low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i high = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const __m512i steps = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512 zero = _mm512_setzero_ps();
  for (long oy = 0; oy < output_height; oy++) {
    const long top = 2 * oy * width;
    long ox = 0;
    for (; ox + 16 <= output_width; ox += 16) {
      const long first = top + 2 * ox;
      const long at = oy * output_width + ox;
      // 0 + g, as adding into the zeroed gradient gives (−0 becomes +0).
      const __m512 g = _mm512_add_ps(zero, _mm512_loadu_ps(gradient + at));
      const __m512i place = _mm512_sub_epi32(
          _mm512_cvtps_epi32(_mm512_loadu_ps(positions + at)), _mm512_add_epi32(steps, _mm512_set1_epi32((int)first)));
      const __m512 ue = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(place, _mm512_setzero_si512()), g);
      const __m512 uo = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(place, _mm512_set1_epi32(1)), g);
      const __m512 le = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(place, _mm512_set1_epi32((int)width)), g);
      const __m512 lo = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(place, _mm512_set1_epi32((int)width + 1)), g);
      _mm512_storeu_ps(target + first, _mm512_permutex2var_ps(ue, low, uo));
      _mm512_storeu_ps(target + first + 16, _mm512_permutex2var_ps(ue, high, uo));
      _mm512_storeu_ps(target + first + width, _mm512_permutex2var_ps(le, low, lo));
      _mm512_storeu_ps(target + first + width + 16, _mm512_permutex2var_ps(le, high, lo));
    }
    for (; ox < output_width; ox++) {
      const long first = top + 2 * ox, at = oy * output_width + ox;
      target[first] = target[first + 1] = target[first + width] = target[first + width + 1] = 0;
      target[(long)positions[at]] += gradient[at];
    }
    // A column no window covers (odd width).
    for (long x = 2 * output_width; x < width; x++) target[top + x] = target[top + width + x] = 0;
  }
  // Rows no window covers (odd height).
  for (long index = 2 * output_height * width; index < height * width; index++) target[index] = 0;
}
