// The MLP's matrix products (784-512-512-10: each layer's output X·Wᵀ, weight gradient
// Gᵀ·X and, past the first layer, input gradient G·W) at one micro-batch, on two cores,
// GFLOP/s over all of them: either as GradAccum runs them (each cut in two halves, rows of
// the output when it has at least as many rows as columns, else columns, each half a
// one-thread sgemm, one on this thread and one on a helper that spins waiting for work) or
// as one call with OpenBLAS's own two threads. Used for docs/benchmarks.md ("Side by side
// with this build"). Run each way in its own process: after a threaded call OpenBLAS's
// worker spins for a while, taking a core from the helper.
//
// Build and run (OpenBLAS from Debian's libopenblas-dev):
//   cc -O2 scripts/mlp_product_rates.c -o /tmp/mlp_rates -lopenblas -lpthread
//   OPENBLAS_CORETYPE=Cooperlake /tmp/mlp_rates 1024 halves   (or: threaded; add `first` for
//   the first layer's output product alone)
#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

// C[m, n] = op(A) · op(B), row-major, contiguous.
struct product {
  int m, n, k, transposeA, transposeB;
  const float *a, *b;
  float *c;
};

static void run(struct product p) {
  int lda = p.transposeA ? p.m : p.k, ldb = p.transposeB ? p.k : p.n;
  cblas_sgemm(CblasRowMajor, p.transposeA ? CblasTrans : CblasNoTrans, p.transposeB ? CblasTrans : CblasNoTrans,
              p.m, p.n, p.k, 1, p.a, lda, p.b, ldb, 0, p.c, p.n);
}

// Half 0 or 1 of a product, with the full operands' leading dimensions.
static void runHalf(struct product p, int half) {
  int lda = p.transposeA ? p.m : p.k, ldb = p.transposeB ? p.k : p.n, ldc = p.n;
  int cutsRows = p.m >= p.n || (p.transposeA && !p.transposeB && p.k < 256 && p.m >= 32);
  int cut = (cutsRows ? p.m : p.n) / 2;
  int first = half == 0 ? 0 : cut;
  int m = cutsRows ? (half == 0 ? cut : p.m - cut) : p.m;
  int n = cutsRows ? p.n : (half == 0 ? cut : p.n - cut);
  const float *a = p.a + (cutsRows ? (p.transposeA ? first : (long)first * lda) : 0);
  const float *b = p.b + (cutsRows ? 0 : (p.transposeB ? (long)first * ldb : first));
  float *c = p.c + (cutsRows ? (long)first * ldc : first);
  cblas_sgemm(CblasRowMajor, p.transposeA ? CblasTrans : CblasNoTrans, p.transposeB ? CblasTrans : CblasNoTrans,
              m, n, p.k, 1, a, lda, b, ldb, 0, c, ldc);
}

static struct product products[8];
static int productCount;
static atomic_int posted, finished;  // products handed to the helper, and done by it
static int total;

static void *helper(void *unused) {
  (void)unused;
  for (int done = 0; done < total;) {
    while (atomic_load(&posted) <= done) sched_yield();
    runHalf(products[done % productCount], 1);
    done++;
    atomic_store(&finished, done);
  }
  return NULL;
}

static float *filled(long count) {
  float *values = malloc(sizeof(float) * count);
  for (long i = 0; i < count; i++) values[i] = 1e-3f * (float)(i % 7);
  return values;
}

int main(int argc, char **argv) {
  if (argc < 3 || argc > 4 || atoi(argv[1]) < 1 || (strcmp(argv[2], "halves") && strcmp(argv[2], "threaded")) ||
      (argc == 4 && strcmp(argv[3], "first"))) {
    fprintf(stderr, "usage: %s MICRO_BATCH halves|threaded [first]\n", argv[0]);
    return 2;
  }
  int batch = atoi(argv[1]), halves = strcmp(argv[2], "halves") == 0;
  // `first`: the first layer's output product alone (MICRO_BATCH × 784 · 784 × 512).
  int firstOnly = argc == 4;
  int widths[4] = {784, 512, 512, 10};
  double flops = 0;
  for (int layer = 0; layer < 3; layer++) {
    int in = widths[layer], out = widths[layer + 1];
    float *x = filled((long)batch * in), *w = filled((long)out * in), *g = filled((long)batch * out);
    products[productCount++] = (struct product){batch, out, in, 0, 1, x, w, filled((long)batch * out)};
    if (firstOnly) {
      flops = 2.0 * batch * in * out;
      break;
    }
    products[productCount++] = (struct product){out, in, batch, 1, 0, g, x, filled((long)out * in)};
    flops += 4.0 * batch * in * out;
    if (layer > 0) {
      products[productCount++] = (struct product){batch, in, out, 0, 0, g, w, filled((long)batch * in)};
      flops += 2.0 * batch * in * out;
    }
  }
  int rounds = 2000000000.0 / flops > 20 ? (int)(2000000000.0 / flops) : 20;
  total = rounds * productCount * 2;  // a warm-up pass, then the timed one
  openblas_set_num_threads(halves ? 1 : 2);
  pthread_t thread;
  if (halves) pthread_create(&thread, NULL, helper, NULL);
  double start = 0;
  for (int index = 0; index < total; index++) {
    if (index == total / 2) start = seconds();
    struct product p = products[index % productCount];
    if (halves) {
      atomic_store(&posted, index + 1);
      runHalf(p, 0);
      while (atomic_load(&finished) <= index) sched_yield();
    } else {
      run(p);
    }
  }
  double elapsed = seconds() - start;
  if (halves) pthread_join(thread, NULL);
  printf("micro-batch %d, %s: %.2f ms per step's products, %.0f GFLOP/s\n", batch, argv[2],
         elapsed / (rounds) * 1e3, flops * rounds / elapsed / 1e9);
  return 0;
}
