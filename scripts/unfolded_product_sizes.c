// Single-threaded sgemm speed of a convolution's unfolded products, one sample per product
// against G samples per product (the samples' columns side by side): what batching the
// unfolding would change. Used for docs/benchmarks.md ("Unfolding several samples at once").
//
// Build and run (OpenBLAS from Debian's libopenblas-dev):
//   cc -O2 scripts/unfolded_product_sizes.c -o /tmp/unfolded -lopenblas
//   /tmp/unfolded OUTPUTS PLANE PATCH SAMPLES G     (e.g. 64 256 288 64 4)
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: %s OUTPUTS PLANE PATCH SAMPLES G\n", argv[0]);
    return 2;
  }
  int outputs = atoi(argv[1]), plane = atoi(argv[2]), patch = atoi(argv[3]);
  int samples = atoi(argv[4]), group = atoi(argv[5]);
  if (outputs < 1 || plane < 1 || patch < 1 || group < 1 || samples < group || samples % group) {
    fprintf(stderr, "expected positive sizes and SAMPLES a multiple of G\n");
    return 2;
  }
  long columns = (long)plane * group;
  float *weight = malloc(sizeof(float) * outputs * patch);
  float *unfolded = malloc(sizeof(float) * patch * columns);
  float *output = malloc(sizeof(float) * outputs * columns);
  for (long i = 0; i < (long)outputs * patch; i++) weight[i] = 1e-3f * (i % 7);
  for (long i = 0; i < patch * columns; i++) unfolded[i] = 1e-3f * (i % 5);
  for (long i = 0; i < outputs * columns; i++) output[i] = 0;
  openblas_set_num_threads(1);
  double best = 1e30;
  for (int round = 0; round < 7; round++) {
    double start = seconds();
    // The same workspace each time, as a convolution reuses its lane's workspace.
    for (int sample = 0; sample < samples; sample += group)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, outputs, (int)columns, patch, 1, weight, patch,
                  unfolded, (int)columns, 1, output, (int)columns);
    double elapsed = seconds() - start;
    if (elapsed < best) best = elapsed;
  }
  printf("outputs %d, plane %d, patch %d, %d samples, %d per product: %.3f ms, %.1f GFLOP/s\n", outputs, plane,
         patch, samples, group, best * 1e3, 2.0 * outputs * plane * patch * samples / best / 1e9);
  free(weight);
  free(unfolded);
  free(output);
  return 0;
}
