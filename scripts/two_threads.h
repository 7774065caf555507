// What the two-thread programs share (`product_cuts.c`, `paired_gradients.c`,
// `mlp_product_rates.c`, `fma_peak.c`): the clock, operands filled the same way, a median, where
// `CoreBalance` cuts a product and how it moves the calling thread's share, and the helper
// thread that takes the second lane of each piece of work.
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

static inline double seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

// `count` values in [-1, 1), the same in every run.
static inline float *filled(long count) {
  float *values = malloc(sizeof(float) * count);
  unsigned state = 1;
  for (long i = 0; i < count; i++) {
    state = state * 1664525u + 1013904223u;
    values[i] = (float)(state >> 8) / 16777216.0f * 2 - 1;
  }
  return values;
}

static inline int ascending(const void *x, const void *y) {
  double u = *(const double *)x, v = *(const double *)y;
  return (u > v) - (u < v);
}

// Sorts `values`.
static inline double median(double *values, int count) {
  qsort(values, count, sizeof(double), ascending);
  return count % 2 ? values[count / 2] : (values[count / 2 - 1] + values[count / 2]) / 2;
}

// The rows or columns of `length` the calling thread takes at `share`, as `CoreBalance`
// cuts them: the multiple of `step` nearest it, within 0.375-0.625 of `length`.
static inline int balancedCut(int length, int step, double share) {
  int first = ((int)(length * 0.375 + 0.999999) + step - 1) / step, last = (int)(length * 0.625) / step;
  int multiple = (int)(share * length / step + 0.5);
  return (multiple < first ? first : multiple > last ? last : multiple) * step;
}

// `share` moved 0.3 of the way toward the calling thread's rate against both, kept within
// 0.375-0.625, as `CoreBalance` moves it after each product.
static inline double movedShare(double share, double callerRate, double helperRate) {
  double moved = share + 0.3 * (callerRate / (callerRate + helperRate) - share);
  return moved < 0.375 ? 0.375 : moved > 0.625 ? 0.625 : moved;
}

// The work both threads run, as `lanes(0)` on this thread and `lanes(1)` on the helper.
static void (*lanes)(int lane);
static atomic_int lanesPosted, lanesFinished, lanesStopping;  // pieces handed over, done by the helper
static pthread_t lanesHelper;

static void *runHelperLanes(void *unused) {
  (void)unused;
  for (int done = 0;; done++) {
    while (atomic_load(&lanesPosted) <= done) {
      if (atomic_load(&lanesStopping)) return NULL;
      sched_yield();
    }
    lanes(1);
    atomic_store(&lanesFinished, done + 1);
  }
}

// Starts the helper, which waits for work, spinning on `sched_yield`.
static inline void startHelper(void (*work)(int lane)) {
  lanes = work;
  pthread_create(&lanesHelper, NULL, runHelperLanes, NULL);
}

// Runs lane 0 here and lane 1 on the helper; returns when both are done.
static inline void runBothLanes(void) {
  int handed = atomic_load(&lanesPosted) + 1;
  atomic_store(&lanesPosted, handed);
  lanes(0);
  while (atomic_load(&lanesFinished) < handed) sched_yield();
}

// Ends the helper once the work handed to it is done.
static inline void stopHelper(void) {
  atomic_store(&lanesStopping, 1);
  pthread_join(lanesHelper, NULL);
}
