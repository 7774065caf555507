// One matrix product cut in two halves, by the rows of its output or by its columns, both
// halves at once on two threads as GradAccum runs them (`BLASCall.Halves`: each half a
// one-thread sgemm, one on this thread, one on a helper that spins waiting for work).
// Alternates the two cuts for several rounds and prints each cut's GFLOP/s (median over
// rounds, each round the best of 10 runs of 10 products) and the ratio rows / columns per
// round. Used for docs/benchmarks.md ("Which half of a weight's gradient to cut").
//
// Build and run (OpenBLAS from Debian's libopenblas-dev):
//   cc -O2 scripts/product_cuts.c -o /tmp/product_cuts -lopenblas -lpthread
//   OPENBLAS_CORETYPE=Cooperlake /tmp/product_cuts M N K TRANSPOSE_A TRANSPOSE_B [ROUNDS]
// for C[M, N] = op(A) · op(B) over K, row-major; e.g. `512 784 1024 1 0` is the MLP's first
// weight gradient Gᵀ·X at micro-batch 1,024.
#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static int m, n, k, transposeA, transposeB;
static const float *a, *b;
static float *c;
static int cutsRows;

// Half 0 or 1 of C = op(A) · op(B), cut as `cutsRows` says, with the whole operands'
// leading dimensions.
static void runHalf(int half) {
  int lda = transposeA ? m : k, ldb = transposeB ? k : n;
  int cut = (cutsRows ? m : n) / 2, first = half == 0 ? 0 : cut;
  int rows = cutsRows ? (half == 0 ? cut : m - cut) : m;
  int columns = cutsRows ? n : (half == 0 ? cut : n - cut);
  const float *left = a + (cutsRows ? (transposeA ? first : (long)first * lda) : 0);
  const float *right = b + (cutsRows ? 0 : (transposeB ? (long)first * ldb : first));
  float *out = c + (cutsRows ? (long)first * n : first);
  cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans, rows,
              columns, k, 1, left, lda, right, ldb, 0, out, n);
}

static atomic_int posted, finished, stopping;

static void *helper(void *unused) {
  (void)unused;
  for (int done = 0;;) {
    while (atomic_load(&posted) <= done) {
      if (atomic_load(&stopping)) return NULL;
      sched_yield();
    }
    runHalf(1);
    done++;
    atomic_store(&finished, done);
  }
}

static int handed;

// Both halves of the product, one here and one on the helper.
static void runProduct(void) {
  handed++;
  atomic_store(&posted, handed);
  runHalf(0);
  while (atomic_load(&finished) < handed) sched_yield();
}

// GFLOP/s of the product cut as `rows` says: the best of 10 runs of 10 products.
static double rate(int rows) {
  cutsRows = rows;
  runProduct();
  double best = 1e30;
  for (int run = 0; run < 10; run++) {
    double start = seconds();
    for (int product = 0; product < 10; product++) runProduct();
    double elapsed = (seconds() - start) / 10;
    if (elapsed < best) best = elapsed;
  }
  return 2.0 * m * n * k / best / 1e9;
}

static float *filled(long count) {
  float *values = malloc(sizeof(float) * count);
  for (long i = 0; i < count; i++) values[i] = 1e-3f * (float)(i % 7);
  return values;
}

static int ascending(const void *x, const void *y) {
  double u = *(const double *)x, v = *(const double *)y;
  return (u > v) - (u < v);
}

static double median(double *values, int count) {
  qsort(values, count, sizeof(double), ascending);
  return count % 2 ? values[count / 2] : (values[count / 2 - 1] + values[count / 2]) / 2;
}

int main(int argc, char **argv) {
  if (argc < 6 || argc > 7) {
    fprintf(stderr, "usage: %s M N K TRANSPOSE_A TRANSPOSE_B [ROUNDS]\n", argv[0]);
    return 2;
  }
  m = atoi(argv[1]), n = atoi(argv[2]), k = atoi(argv[3]);
  transposeA = atoi(argv[4]) != 0, transposeB = atoi(argv[5]) != 0;
  int rounds = argc == 7 ? atoi(argv[6]) : 8;
  if (m < 2 || n < 2 || k < 1 || rounds < 1 || rounds > 100) {
    fprintf(stderr, "M and N must be 2 or more, K 1 or more, ROUNDS 1 to 100; got %s %s %s %d\n", argv[1], argv[2],
            argv[3], rounds);
    return 2;
  }
  a = filled((long)m * k), b = filled((long)k * n), c = filled((long)m * n);
  openblas_set_num_threads(1);
  pthread_t thread;
  pthread_create(&thread, NULL, helper, NULL);
  double rows[100], columns[100], ratios[100];
  printf("%d x %d x %d%s%s, GFLOP/s per round (rows, columns):", m, n, k, transposeA ? ", A transposed" : "",
         transposeB ? ", B transposed" : "");
  for (int round = 0; round < rounds; round++) {
    rows[round] = rate(1);
    columns[round] = rate(0);
    ratios[round] = rows[round] / columns[round];
    printf(" (%.0f, %.0f)", rows[round], columns[round]);
  }
  atomic_store(&stopping, 1);
  pthread_join(thread, NULL);
  double rowsMedian = median(rows, rounds), columnsMedian = median(columns, rounds);
  printf("\nrows %.0f, columns %.0f GFLOP/s (medians); rows / columns per round, median %.3f\n", rowsMedian,
         columnsMedian, median(ratios, rounds));
  return 0;
}
