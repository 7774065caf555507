// The MLP's matrix products (784-512-512-10: each layer's output X·Wᵀ, weight gradient
// Gᵀ·X and, past the first layer, input gradient G·W) at one micro-batch, GFLOP/s over all
// of them, run one of these ways:
//   halves     as GradAccum ran them before its cuts followed the cores: each large product
//              cut in two fixed halves (rows of the output when it has at least as many
//              rows as columns, else columns), each half a one-thread sgemm, one on this
//              thread and one on a helper that waits for work;
//   following  as GradAccum runs them: the cut follows the rates the two threads measured
//              on the products before (CoreBalance's rule, two_threads.h);
//   shared     one packed copy of the operand every output row needs (the weights, or the
//              gradient in a weight gradient), packed by both threads, then blocks of 48
//              output rows claimed one at a time by whichever thread is free, each packing
//              its own rows; built on OpenBLAS's packing routines and kernel of the family
//              that runs (exported by Debian's OpenBLAS, not part of its API), with
//              OpenBLAS's blocking, so that with the AVX-512, Sandybridge and Prescott
//              kernels every element sums in the order of one whole sgemm (checked at the
//              start; with Haswell and Zen the weight gradients differ in some last bits,
//              which the check reports);
//   threaded   one call with OpenBLAS's own two threads;
//   single     one call on one thread;
//   independent  two threads, each running every product whole on one thread, on operands
//              of its own, with no hand-over between them (GFLOP/s of both together): the
//              products as two separate trainings would run them.
// Products with fewer than 2^23 multiply-adds run whole on this thread in every way, as in
// GradAccum. GEMM_P and GEMM_Q in the environment replace OpenBLAS's blocking (rows and
// inner indices per packed block) for every way. Used for docs/benchmarks.md ("Side by side
// with this build"). Run each way in its own process: after a threaded call OpenBLAS's
// worker spins for a while, taking a core from the helper.
//
// Build and run (OpenBLAS from Debian's libopenblas-dev):
//   cc -O2 scripts/mlp_product_rates.c -o /tmp/mlp_rates -lopenblas -lpthread -ldl -lm
//   OPENBLAS_CORETYPE=Cooperlake /tmp/mlp_rates 1024 halves   (or another way; add `first`
//   for the first layer's output product alone)
#define _GNU_SOURCE
#include <cblas.h>
#include <ctype.h>
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "two_threads.h"

// C[m, n] = op(A) · op(B), row-major, contiguous.
struct product {
  int m, n, k, transposeA, transposeB;
  const float *a, *b;
  float *c;
};

static int lda(struct product p) { return p.transposeA ? p.m : p.k; }
static int ldb(struct product p) { return p.transposeB ? p.k : p.n; }

static void sgemm(struct product p, int m, int n, const float *a, const float *b, float *c) {
  cblas_sgemm(CblasRowMajor, p.transposeA ? CblasTrans : CblasNoTrans, p.transposeB ? CblasTrans : CblasNoTrans, m, n,
              p.k, 1, a, lda(p), b, ldb(p), 0, c, p.n);
}

static int cutsRows(struct product p) {
  return p.m >= p.n || (p.transposeA && !p.transposeB && p.k < 256 && p.m >= 32);
}

// The rows (or columns) before `cut` when `part` is 0, the rest when 1.
static void runPart(struct product p, int cut, int part) {
  int first = part == 0 ? 0 : cut;
  if (cutsRows(p)) {
    sgemm(p, part == 0 ? cut : p.m - cut, p.n, p.a + (p.transposeA ? first : (long)first * lda(p)), p.b,
          p.c + (long)first * p.n);
  } else {
    sgemm(p, p.m, part == 0 ? cut : p.n - cut, p.a, p.b + (p.transposeB ? (long)first * ldb(p) : first), p.c + first);
  }
}

// --- shared: OpenBLAS's packing routines and kernel, driven here -------------------------
// In OpenBLAS's column-major terms the row-major C = op(A)·op(B) is Cᵀ = op(B)ᵀ·op(A)ᵀ: its
// "A" (packed once, shared) is our B, its "B" (packed per block of 64 of our rows) our A.
typedef int (*packing)(long, long, const float *, long, float *);
typedef int (*multiplying)(long, long, long, float, const float *, const float *, float *, long);
static packing packTransposedA, packA, packB, packTransposedB;
static multiplying kernel;
extern int *gotoblas;  // OpenBLAS's table of the running family: [4] P, [5] Q, [6] R, [7] unroll of M
enum { rowsPerBlock = 48, maxBlocks = 64 };  // 48: a multiple of 12 and 16 (CoreBalance's steps)
static float *sharedPacked, *ownPacked[2];
static long packedOffset[maxBlocks][maxBlocks];
static int innerStart[maxBlocks], innerLength[maxBlocks], innerBlocks, outerStart[maxBlocks], outerLength[maxBlocks],
    outerBlocks;
static struct product current;
static atomic_int nextRows, packedBy;

static void *symbol(const char *routine) {
  char family[32], name[96];
  snprintf(family, sizeof family, "%s", openblas_get_corename());
  for (char *c = family; *c; c++) *c = (char)toupper(*c);
  snprintf(name, sizeof name, "%s_%s", routine, family);
  void *found = dlsym(RTLD_DEFAULT, name);
  if (!found) {
    fprintf(stderr, "this OpenBLAS does not export %s (the `shared` way needs a DYNAMIC_ARCH build)\n", name);
    exit(1);
  }
  return found;
}

// OpenBLAS's rule for a block of `remaining` at most `size` long.
static int blockLength(int remaining, int size, int unroll) {
  if (remaining >= 2 * size) return size;
  if (remaining > size) return (remaining / 2 + unroll - 1) / unroll * unroll;
  return remaining;
}

static void sharedWork(int self) {
  struct product p = current;
  // Column-major view: its A is op(B)ᵀ (p.n × p.k), its B op(A)ᵀ (p.k × p.m), its C p.n × p.m.
  int transposedA = p.transposeB, transposedB = p.transposeA, ldA = ldb(p), ldB = lda(p);
  for (int block = self; block < innerBlocks * outerBlocks; block += 2) {
    int l = block / outerBlocks, i = block % outerBlocks;
    float *into = sharedPacked + packedOffset[l][i];
    if (!transposedA) packTransposedA(innerLength[l], outerLength[i], p.b + outerStart[i] + (long)innerStart[l] * ldA, ldA, into);
    else packA(innerLength[l], outerLength[i], p.b + innerStart[l] + (long)outerStart[i] * ldA, ldA, into);
  }
  atomic_fetch_add(&packedBy, 1);
  while (atomic_load(&packedBy) < 2) {
  }
  for (;;) {
    int first = atomic_fetch_add(&nextRows, rowsPerBlock);
    if (first >= p.m) break;
    int rows = p.m - first < rowsPerBlock ? p.m - first : rowsPerBlock;
    memset(p.c + (long)first * p.n, 0, sizeof(float) * rows * p.n);
    for (int l = 0; l < innerBlocks; l++) {
      if (!transposedB) packB(innerLength[l], rows, p.a + innerStart[l] + (long)first * ldB, ldB, ownPacked[self]);
      else packTransposedB(innerLength[l], rows, p.a + first + (long)innerStart[l] * ldB, ldB, ownPacked[self]);
      for (int i = 0; i < outerBlocks; i++)
        kernel(outerLength[i], rows, innerLength[l], 1, sharedPacked + packedOffset[l][i], ownPacked[self],
               p.c + outerStart[i] + (long)first * p.n, p.n);
    }
  }
}

static void sharedSetUp(int largestSide) {
  packTransposedA = symbol("sgemm_itcopy");
  packA = symbol("sgemm_incopy");
  packB = symbol("sgemm_oncopy");
  packTransposedB = symbol("sgemm_otcopy");
  kernel = symbol("sgemm_kernel");
  long side = largestSide + 64;
  sharedPacked = aligned_alloc(4096, sizeof(float) * side * side);
  for (int t = 0; t < 2; t++) ownPacked[t] = aligned_alloc(4096, sizeof(float) * side * (rowsPerBlock + 16));
}

static void sharedBlocks(struct product p) {
  int unroll = gotoblas[7];
  innerBlocks = outerBlocks = 0;
  for (int at = 0; at < p.k; at += innerLength[innerBlocks++]) {
    innerStart[innerBlocks] = at;
    innerLength[innerBlocks] = blockLength(p.k - at, gotoblas[5], unroll);
  }
  for (int at = 0; at < p.n; at += outerLength[outerBlocks++]) {
    outerStart[outerBlocks] = at;
    outerLength[outerBlocks] = blockLength(p.n - at, gotoblas[4], unroll);
  }
  long offset = 0;
  for (int l = 0; l < innerBlocks; l++)
    for (int i = 0; i < outerBlocks; i++) {
      packedOffset[l][i] = offset;
      offset += (long)innerLength[l] * ((outerLength[i] + unroll - 1) / unroll * unroll);
    }
}

// --- the helper thread and the ways ------------------------------------------------------
enum way { halves, following, shared, threaded, single, independent };
static enum way chosen;
static int cut;
static double took[2];  // each thread's seconds in its part of the last product

// This thread's part (lane 0) or the helper's (lane 1) of the current product.
static void runLane(int lane) {
  if (chosen == shared) {
    sharedWork(lane);
  } else {
    double start = seconds();
    runPart(current, cut, lane);
    took[lane] = seconds() - start;
  }
}

static double share = 0.5;

static void run(struct product p) {
  if ((double)p.m * p.n * p.k < (1 << 23) || chosen == threaded || chosen == single || chosen == independent) {
    sgemm(p, p.m, p.n, p.a, p.b, p.c);
    return;
  }
  current = p;
  int length = cutsRows(p) ? p.m : p.n;
  if (chosen == shared) {
    sharedBlocks(p);
    atomic_store(&nextRows, 0);
    atomic_store(&packedBy, 0);
  } else {
    cut = chosen == following ? balancedCut(length, 16, share) : length / 2;
  }
  runBothLanes();
  if (chosen == following) share = movedShare(share, cut / took[0], (length - cut) / took[1]);
}

// Every product in turn, `rounds` times.
static void runRounds(const struct product *products, int count, int rounds) {
  for (int round = 0; round < rounds; round++)
    for (int index = 0; index < count; index++) run(products[index]);
}

// The step's products at `batch` (or the first alone) on operands of their own, into
// `products`; returns their floating-point operations.
static double built(int batch, int firstOnly, struct product *products, int *count) {
  int widths[4] = {784, 512, 512, 10};
  double flops = 0;
  *count = 0;
  for (int layer = 0; layer < 3; layer++) {
    int in = widths[layer], out = widths[layer + 1];
    float *x = filled((long)batch * in), *w = filled((long)out * in), *g = filled((long)batch * out);
    products[(*count)++] = (struct product){batch, out, in, 0, 1, x, w, filled((long)batch * out)};
    if (firstOnly) return 2.0 * batch * in * out;
    products[(*count)++] = (struct product){out, in, batch, 1, 0, g, x, filled((long)out * in)};
    flops += 4.0 * batch * in * out;
    if (layer > 0) {
      products[(*count)++] = (struct product){batch, in, out, 0, 0, g, w, filled((long)batch * in)};
      flops += 2.0 * batch * in * out;
    }
  }
  return flops;
}

// `independent`: each of two threads runs every product whole, `rounds` times, on operands
// of its own, with no hand-over between them.
struct alone {
  struct product products[8];
  int count, rounds;
  pthread_barrier_t *started;
  double *finished;
};

static void *runAlone(void *context) {
  struct alone *work = context;
  for (int pass = 0; pass < 2; pass++) {  // a warm-up pass, then the timed one
    pthread_barrier_wait(work->started);
    runRounds(work->products, work->count, work->rounds);
    *work->finished = seconds();
  }
  return NULL;
}

static double independentSeconds(struct product *products, int count, int batch, int firstOnly, int rounds) {
  pthread_barrier_t started;
  pthread_barrier_init(&started, NULL, 2);
  double finished[2];
  struct alone mine = {.count = count, .rounds = rounds, .started = &started, .finished = &finished[0]};
  memcpy(mine.products, products, sizeof(struct product) * count);
  struct alone other = {.rounds = rounds, .started = &started, .finished = &finished[1]};
  built(batch, firstOnly, other.products, &other.count);
  pthread_t thread;
  pthread_create(&thread, NULL, runAlone, &other);
  double start = 0;
  for (int pass = 0; pass < 2; pass++) {
    pthread_barrier_wait(&started);
    start = seconds();
    runRounds(products, count, rounds);
    finished[0] = seconds();
  }
  pthread_join(thread, NULL);
  return (finished[0] > finished[1] ? finished[0] : finished[1]) - start;
}

int main(int argc, char **argv) {
  const char *names[] = {"halves", "following", "shared", "threaded", "single", "independent"};
  int found = -1;
  for (int w = 0; argc >= 3 && w < 6; w++)
    if (!strcmp(argv[2], names[w])) found = w;
  if (argc < 3 || argc > 4 || atoi(argv[1]) < 1 || found < 0 || (argc == 4 && strcmp(argv[3], "first"))) {
    fprintf(stderr, "usage: %s MICRO_BATCH halves|following|shared|threaded|single|independent [first]\n", argv[0]);
    return 2;
  }
  int batch = atoi(argv[1]);
  chosen = (enum way)found;
  if (getenv("GEMM_P")) gotoblas[4] = atoi(getenv("GEMM_P"));
  if (getenv("GEMM_Q")) gotoblas[5] = atoi(getenv("GEMM_Q"));
  if (getenv("GEMM_P") || getenv("GEMM_Q"))  // R: what is left of OpenBLAS's 128 MiB buffer, with room
    gotoblas[6] = (int)((0.8 * (128 << 20) - 4.0 * gotoblas[4] * gotoblas[5]) / (4.0 * gotoblas[5])) / 64 * 64;
  // `first`: the first layer's output product alone (MICRO_BATCH × 784 · 784 × 512).
  int firstOnly = argc == 4;
  struct product products[8];
  int productCount = 0;
  double flops = built(batch, firstOnly, products, &productCount);
  openblas_set_num_threads(chosen == threaded ? 2 : 1);
  if (chosen == halves || chosen == following || chosen == shared) startHelper(runLane);
  if (chosen == shared) {
    sharedSetUp(batch > 1024 ? batch : 1024);
    for (int index = 0; index < productCount; index++) {  // each product's bits against one whole sgemm
      struct product p = products[index];
      float *whole = malloc(sizeof(float) * p.m * p.n);
      sgemm(p, p.m, p.n, p.a, p.b, whole);
      run(p);
      long differing = 0;
      double largest = 0;
      for (long at = 0; at < (long)p.m * p.n; at++) {
        double difference = fabs((double)whole[at] - p.c[at]) / (fabs((double)whole[at]) + 1e-30);
        differing += memcmp(&whole[at], &p.c[at], sizeof(float)) != 0;
        largest = difference > largest ? difference : largest;
      }
      if (differing)
        fprintf(stderr, "shared: product %d (%d x %d x %d): %ld of %ld elements differ from one whole sgemm (by at most %.1e of it)\n",
                index, p.m, p.n, p.k, differing, (long)p.m * p.n, largest);
      free(whole);
    }
  }
  int rounds = 2000000000.0 / flops > 20 ? (int)(2000000000.0 / flops) : 20;
  double elapsed = 0;
  if (chosen == independent) {  // both threads' products over the time until both are done
    elapsed = independentSeconds(products, productCount, batch, firstOnly, rounds);
    flops *= 2;
  } else {
    for (int pass = 0; pass < 2; pass++) {  // a warm-up pass, then the timed one
      double start = seconds();
      runRounds(products, productCount, rounds);
      elapsed = seconds() - start;
    }
  }
  if (chosen == halves || chosen == following || chosen == shared) stopHelper();
  printf("micro-batch %d, %s: %.2f ms per step's products, %.0f GFLOP/s\n", batch, argv[2],
         elapsed / rounds / (chosen == independent ? 2 : 1) * 1e3,
         flops * rounds / elapsed / 1e9);
  return 0;
}
