// One matrix product cut in two parts, both at once on two threads as GradAccum runs them
// (`BLASCall.Halves`: each part a one-thread sgemm, one on this thread, one on a helper that
// spins waiting for work). Used for docs/benchmarks.md ("Which half of a weight's gradient
// to cut", "Cores at different speeds"). Three ways to run it:
//
//   product_cuts M N K TRANSPOSE_A TRANSPOSE_B [ROUNDS]
//     alternates the halves by rows, the halves by columns and the whole product on this
//     thread alone, and prints the GFLOP/s of each (median over rounds, each round the best
//     of 10 runs of 10 products), rows / columns per round and two threads over one;
//   product_cuts --balance M N K TRANSPOSE_A TRANSPOSE_B [ROUNDS [STEP]]
//     alternates the longer side (rows when M >= N, else columns) cut in fixed halves and cut
//     where the threads' measured rates say (as `CoreBalance`: the calling thread's share
//     moved 0.3 of the way toward its rate against both after each product, kept within
//     0.375-0.625, cut at a multiple of STEP, 16 unless given: 12 for the rows with
//     `Haswell` and `Zen`), and prints per round the GFLOP/s of each and each thread's rate
//     in the halves;
//   product_cuts --bits M N K TRANSPOSE_A TRANSPOSE_B STEP
//     counts the cuts of rows, and of columns, at multiples of STEP whose product differs in
//     any bit from the whole product on one thread.
//
// for C[M, N] = op(A) · op(B) over K, row-major; e.g. `512 784 1024 1 0` is the MLP's first
// weight gradient Gᵀ·X at micro-batch 1,024. Build (OpenBLAS from Debian's libopenblas-dev):
//   cc -O2 scripts/product_cuts.c -o /tmp/product_cuts -lopenblas -lpthread
// and run with OPENBLAS_CORETYPE=Cooperlake (or another kernel family) set.
#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "two_threads.h"

static int m, n, k, transposeA, transposeB;
static const float *a, *b;
static float *c;
// How the product is cut: by rows (else columns), after `cut` rows or columns.
static int cutsRows, cut;
// The seconds each part of the last product took, on this thread and on the helper, and
// their sums since they were last set to zero.
static double partSeconds[2], partTotals[2];

// Rows (or columns) `first` up to `last` of C = op(A) · op(B) into `out`, with the whole
// operands' leading dimensions.
static void runPart(int first, int last, int byRows, float *out) {
  int lda = transposeA ? m : k, ldb = transposeB ? k : n;
  int rows = byRows ? last - first : m, columns = byRows ? n : last - first;
  if (rows <= 0 || columns <= 0) return;
  const float *left = a + (byRows ? (transposeA ? first : (long)first * lda) : 0);
  const float *right = b + (byRows ? 0 : (transposeB ? (long)first * ldb : first));
  cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans, rows,
              columns, k, 1, left, lda, right, ldb, 0, out + (byRows ? (long)first * n : first), n);
}

// Part 0 (before the cut) or 1 (after it), timed.
static void runHalf(int half) {
  double start = seconds();
  int length = cutsRows ? m : n;
  runPart(half == 0 ? 0 : cut, half == 0 ? cut : length, cutsRows, c);
  partSeconds[half] = seconds() - start;
  partTotals[half] += partSeconds[half];
}

// Both parts of the product, one here and one on the helper.
static void runProduct(void) { runBothLanes(); }

// The whole product on this thread alone.
static void runWhole(void) { runPart(0, m, 1, c); }

// The calling thread's share of the rows (or columns), moved after each product by
// `runBalanced`.
static double share = 0.5;

// The multiple of rows or columns `runBalanced` cuts at.
static int balanceStep = 16;

static void runBalanced(void) {
  const int length = cutsRows ? m : n;
  cut = balancedCut(length, balanceStep, share);
  runProduct();
  share = movedShare(share, cut / partSeconds[0], (length - cut) / partSeconds[1]);
}

// GFLOP/s of `product`: the best of 10 runs of 10 products.
static double rate(void (*product)(void)) {
  product();
  double best = 1e30;
  for (int run = 0; run < 10; run++) {
    double start = seconds();
    for (int index = 0; index < 10; index++) product();
    double elapsed = (seconds() - start) / 10;
    if (elapsed < best) best = elapsed;
  }
  return 2.0 * m * n * k / best / 1e9;
}

// The cuts of rows and of columns at multiples of `step` that change any bit.
static void countDifferingCuts(int step) {
  float *whole = malloc(sizeof(float) * (long)m * n);
  runPart(0, m, 1, whole);
  for (int byRows = 1; byRows >= 0; byRows--) {
    int length = byRows ? m : n, tried = 0, differing = 0;
    char where[4096] = "";
    for (int at = step; at < length; at += step) {
      runPart(0, at, byRows, c);
      runPart(at, length, byRows, c);
      tried++;
      if (memcmp(c, whole, sizeof(float) * (long)m * n) != 0) {
        differing++;
        size_t used = strlen(where);
        snprintf(where + used, sizeof where - used, " %d", at);
      }
    }
    printf("%s cuts at multiples of %d: %d of %d differ from the whole product%s%s\n", byRows ? "row" : "column", step,
           differing, tried, differing ? ", after" : "", where);
  }
  free(whole);
}

int main(int argc, char **argv) {
  int balance = argc > 1 && strcmp(argv[1], "--balance") == 0, bits = argc > 1 && strcmp(argv[1], "--bits") == 0;
  int argument = balance || bits ? 2 : 1;
  if (argc < argument + 5 || argc > argument + (balance ? 7 : 6) || (bits && argc != argument + 6)) {
    fprintf(stderr, "usage: %s M N K TRANSPOSE_A TRANSPOSE_B [ROUNDS]\n       %s --balance M N K TRANSPOSE_A "
            "TRANSPOSE_B [ROUNDS [STEP]]\n       %s --bits M N K TRANSPOSE_A TRANSPOSE_B STEP\n", argv[0], argv[0],
            argv[0]);
    return 2;
  }
  m = atoi(argv[argument]), n = atoi(argv[argument + 1]), k = atoi(argv[argument + 2]);
  transposeA = atoi(argv[argument + 3]) != 0, transposeB = atoi(argv[argument + 4]) != 0;
  int last = argc >= argument + 6 ? atoi(argv[argument + 5]) : 8;
  if (argc == argument + 7) balanceStep = atoi(argv[argument + 6]);
  if (m < 2 || n < 2 || k < 1 || last < 1 || (!bits && last > 100) || (balance && m < 384 && n < 384) ||
      balanceStep < 1 || balanceStep > 64) {
    fprintf(stderr, "M and N must be 2 or more (one of them 384 or more with --balance), K 1 or more, ROUNDS 1 to "
            "100, STEP 1 or more (1 to 64 with --balance); got %d %d %d, %d, %d\n", m, n, k, last, balanceStep);
    return 2;
  }
  a = filled((long)m * k), b = filled((long)k * n), c = malloc(sizeof(float) * (long)m * n);
  openblas_set_num_threads(1);
  if (bits) {
    countDifferingCuts(last);
    return 0;
  }
  int rounds = last;
  startHelper(runHalf);
  double firstRates[100], secondRates[100], whole[100], ratios[100], scaling[100];
  if (balance) {
    cutsRows = m >= n;
    int length = cutsRows ? m : n, breadth = cutsRows ? n : m;
    printf("%d x %d x %d%s%s cut by %s, GFLOP/s per round: fixed halves (this thread's rate, the helper's), "
           "following the rates (share)\n", m, n, k, transposeA ? ", A transposed" : "",
           transposeB ? ", B transposed" : "", cutsRows ? "rows" : "columns");
    for (int round = 0; round < rounds; round++) {
      cut = length / 2;
      partTotals[0] = partTotals[1] = 0;
      firstRates[round] = rate(runProduct);
      // 111 products: the warm-up and 10 runs of 10.
      double mine = 111 * 2.0 * cut * breadth * k / partTotals[0] / 1e9;
      double theirs = 111 * 2.0 * (length - cut) * breadth * k / partTotals[1] / 1e9;
      secondRates[round] = rate(runBalanced);
      ratios[round] = secondRates[round] / firstRates[round];
      printf("  %.0f (%.0f, %.0f), %.0f (%.2f)\n", firstRates[round], mine, theirs, secondRates[round], share);
    }
    printf("fixed halves %.0f, following the rates %.0f GFLOP/s (medians); following / fixed per round, median %.3f\n",
           median(firstRates, rounds), median(secondRates, rounds), median(ratios, rounds));
  } else {
    printf("%d x %d x %d%s%s, GFLOP/s per round (rows, columns, whole on one thread):", m, n, k,
           transposeA ? ", A transposed" : "", transposeB ? ", B transposed" : "");
    for (int round = 0; round < rounds; round++) {
      cutsRows = 1, cut = m / 2;
      firstRates[round] = rate(runProduct);
      cutsRows = 0, cut = n / 2;
      secondRates[round] = rate(runProduct);
      whole[round] = rate(runWhole);
      ratios[round] = firstRates[round] / secondRates[round];
      scaling[round] = (firstRates[round] > secondRates[round] ? firstRates[round] : secondRates[round]) / whole[round];
      printf(" (%.0f, %.0f, %.0f)", firstRates[round], secondRates[round], whole[round]);
    }
    printf("\nrows %.0f, columns %.0f, whole on one thread %.0f GFLOP/s (medians); rows / columns per round, median "
           "%.3f; two threads over one, median %.2f\n",
           median(firstRates, rounds), median(secondRates, rounds), median(whole, rounds), median(ratios, rounds),
           median(scaling, rounds));
  }
  stopHelper();
  return 0;
}
