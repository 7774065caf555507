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

__attribute__((target("avx512f"))) void gradaccum_unfold_keeping_extents(
    const float *source, long channels, long height, long width, long kernel_height, long kernel_width,
    long padding, long dilation, float *columns, long row_stride) {
  const long plane = height * width, chunks = (plane + 15) / 16, window = kernel_height * kernel_width;
  __mmask16 masks[MASKED_CHUNKS];
  for (long ky = 0; ky < kernel_height; ky++) {
    for (long kx = 0; kx < kernel_width; kx++) {
      const long row_shift = ky * dilation - padding, column_shift = kx * dilation - padding;
      reading_lanes(height, width, row_shift, column_shift, masks);
      const intptr_t offset = (intptr_t)(row_shift * width + column_shift) * (intptr_t)sizeof(float);
      for (long c = 0; c < channels; c++) {
        // Integer addresses: the masked lanes of a load are never read (nor can they fault).
        const intptr_t input = (intptr_t)(source + c * plane) + offset;
        float *target = columns + (c * window + ky * kernel_width + kx) * row_stride;
        for (long chunk = 0; chunk < chunks; chunk++) {
          const __m512 values =
              _mm512_maskz_loadu_ps(masks[chunk], (const void *)(input + chunk * 16 * (intptr_t)sizeof(float)));
          _mm512_mask_storeu_ps(target + chunk * 16, plane_lanes(chunk, plane), values);
        }
      }
    }
  }
}

__attribute__((target("avx512f"))) void gradaccum_fold_keeping_extents(
    const float *columns, long channels, long height, long width, long kernel_height, long kernel_width,
    long padding, long dilation, float *target, long row_stride) {
  const long plane = height * width, chunks = (plane + 15) / 16, window = kernel_height * kernel_width;
  __mmask16 masks[MASKED_CHUNKS];
  // Each input position receives its additions window position by window position, in
  // order, as when the channels are the outer loop: one channel's positions take additions
  // from that channel's column rows only.
  for (long ky = 0; ky < kernel_height; ky++) {
    for (long kx = 0; kx < kernel_width; kx++) {
      const long row_shift = ky * dilation - padding, column_shift = kx * dilation - padding;
      reading_lanes(height, width, row_shift, column_shift, masks);
      const intptr_t offset = (intptr_t)(row_shift * width + column_shift) * (intptr_t)sizeof(float);
      for (long c = 0; c < channels; c++) {
        const intptr_t output = (intptr_t)(target + c * plane) + offset;
        const float *source = columns + (c * window + ky * kernel_width + kx) * row_stride;
        for (long chunk = 0; chunk < chunks; chunk++) {
          const __mmask16 lanes = masks[chunk];
          if (!lanes) continue;
          float *at = (float *)(output + chunk * 16 * (intptr_t)sizeof(float));
          const __m512 sum =
              _mm512_add_ps(_mm512_maskz_loadu_ps(lanes, at), _mm512_maskz_loadu_ps(lanes, source + chunk * 16));
          _mm512_mask_storeu_ps(at, lanes, sum);
        }
      }
    }
  }
}
