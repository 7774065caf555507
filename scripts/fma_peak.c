// The cores' peak: single-precision multiply-adds in registers (twelve independent sums,
// no memory), on this thread alone and then on this thread and a helper at once, so the
// matrix products' rates can be read as a share of what the cores can do at that moment.
// Uses AVX-512 where the CPU has it, else AVX2 with FMA. Used for docs/benchmarks.md ("How
// close the products are to the cores' peak"). Build:
//   cc -O2 scripts/fma_peak.c -o /tmp/fma_peak -lpthread
// and run `/tmp/fma_peak [ROUNDS]`: per round GFLOP/s of one thread alone, then of each of
// the two at once; last the medians.
#include <stdio.h>

#include "two_threads.h"

enum { sums = 12, maximumRounds = 100 };
static const long repetitions = 50000000;
static int wide;                  // AVX-512, else AVX2
static double laneRates[2];       // GFLOP/s of each lane's last run

typedef float floats16 __attribute__((vector_size(64)));
typedef float floats8 __attribute__((vector_size(32)));

#define SUMS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define START(i) vector s##i = zero + i * 1e-3f;
#define STEP(i) s##i = s##i * x + y;
#define ADD(i) total += s##i[0];

// `repetitions` rounds of `sums` independent multiply-adds (`s * x + y`, one instruction
// each with FMA) on vectors of one width; returns one lane of each sum, so none is left out.
#define MULTIPLY_ADDS(name, features, width)                       \
  __attribute__((target(features))) static float name(void) {       \
    typedef width vector;                                            \
    vector zero = {0}, x = zero + 0.999f, y = zero + 1e-4f;          \
    SUMS(START)                                                      \
    for (long r = 0; r < repetitions; r++) { SUMS(STEP) }            \
    float total = 0;                                                 \
    SUMS(ADD)                                                        \
    return total;                                                    \
  }

MULTIPLY_ADDS(multiplyAdds512, "avx512f", floats16)
MULTIPLY_ADDS(multiplyAdds256, "avx2,fma", floats8)

static volatile float sink;

// One lane's run: its rate into `laneRates[lane]`.
static void run(int lane) {
  double start = seconds();
  sink = wide ? multiplyAdds512() : multiplyAdds256();
  laneRates[lane] = repetitions * sums * (wide ? 32.0 : 16.0) / (seconds() - start) / 1e9;
}

int main(int argc, char **argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 5;
  if (argc > 2 || rounds < 1 || rounds > maximumRounds) {
    fprintf(stderr, "usage: %s [ROUNDS from 1 to %d]\n", argv[0], maximumRounds);
    return 2;
  }
  __builtin_cpu_init();
  wide = __builtin_cpu_supports("avx512f");
  if (!wide && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) {
    fprintf(stderr, "this CPU has neither AVX-512 nor AVX2 with FMA\n");
    return 1;
  }
  double alone[maximumRounds], caller[maximumRounds], helper[maximumRounds];
  startHelper(run);
  printf("%s multiply-adds, GFLOP/s per thread: one alone | both at once\n", wide ? "AVX-512" : "AVX2");
  for (int r = 0; r < rounds; r++) {
    run(0);
    alone[r] = laneRates[0];
    runBothLanes();
    caller[r] = laneRates[0];
    helper[r] = laneRates[1];
    printf("round %d: %.1f | %.1f %.1f\n", r + 1, alone[r], caller[r], helper[r]);
  }
  stopHelper();
  printf("medians: %.1f | %.1f %.1f\n", median(alone, rounds), median(caller, rounds), median(helper, rounds));
  return 0;
}
