// A linear layer's two gradient products, dX = G·W and dW = Gᵀ·X, run three ways on two
// threads (this one and a helper that spins waiting for work, as GradAccum's), alternating:
//   fixed      each product cut in halves (dX by rows when it has at least as many rows as
//              columns, else by columns; dW by rows), one half per thread;
//   following  the same cuts, moved after each product as `CoreBalance` moves them (this
//              thread's share 0.3 of the way toward its rate against both, within
//              0.375-0.625, at multiples of 16);
//   paired     dX whole on this thread and dW whole on the helper, at once.
// Used for docs/benchmarks.md ("Cores at different speeds"). Build (OpenBLAS from Debian's
// libopenblas-dev):
//   cc -O2 scripts/paired_gradients.c -o /tmp/paired_gradients -lopenblas -lpthread
// and run `OPENBLAS_CORETYPE=Cooperlake /tmp/paired_gradients BATCH OUTPUTS INPUTS [ROUNDS]`,
// e.g. `256 512 512` for the MLP's second layer at micro-batch 256. Prints per round the
// microseconds of each way (20 runs of 3 layers each) and the share, then the medians of
// fixed / paired and following / paired.
#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "two_threads.h"

static int batch, outputs, inputs;
static float *g, *w, *x, *inputGradient, *weightGradient;
// Whether dX is cut by rows (else columns).
static int inputGradientByRows;

// Rows (or columns) `first` up to `last` of dX = G·W.
static void inputGradientPart(int first, int last) {
  if (inputGradientByRows) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, last - first, inputs, outputs, 1, g + (long)first * outputs,
                outputs, w, inputs, 0, inputGradient + (long)first * inputs, inputs);
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, batch, last - first, outputs, 1, g, outputs, w + first,
                inputs, 0, inputGradient + first, inputs);
  }
}

// Rows `first` up to `last` of dW = Gᵀ·X.
static void weightGradientPart(int first, int last) {
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, last - first, inputs, batch, 1, g + first, outputs, x, inputs,
              0, weightGradient + (long)first * inputs, inputs);
}

// What a hand-over runs: 0 dX in two parts, 1 dW in two parts, 2 the pair.
static int task, cut;
static double partSeconds[2];  // each side's, in the last hand-over

static void work(int side) {
  double start = seconds();
  if (task == 0) {
    int length = inputGradientByRows ? batch : inputs;
    side == 0 ? inputGradientPart(0, cut) : inputGradientPart(cut, length);
  } else if (task == 1) {
    side == 0 ? weightGradientPart(0, cut) : weightGradientPart(cut, outputs);
  } else {
    side == 0 ? inputGradientPart(0, inputGradientByRows ? batch : inputs) : weightGradientPart(0, outputs);
  }
  partSeconds[side] = seconds() - start;
}

// This thread's share of the rows or columns, and whether cuts follow it.
static double share = 0.5;
static int following;

static int callerPart(int length) { return following ? balancedCut(length, 16, share) : length / 2; }

static void handOver(int which) {
  task = which;
  int length = which == 0 ? (inputGradientByRows ? batch : inputs) : outputs;
  if (which < 2) cut = callerPart(length);
  runBothLanes();
  if (which < 2 && following) share = movedShare(share, cut / partSeconds[0], (length - cut) / partSeconds[1]);
}

int main(int argc, char **argv) {
  if (argc < 4 || argc > 5) {
    fprintf(stderr, "usage: %s BATCH OUTPUTS INPUTS [ROUNDS]\n", argv[0]);
    return 2;
  }
  batch = atoi(argv[1]), outputs = atoi(argv[2]), inputs = atoi(argv[3]);
  int rounds = argc == 5 ? atoi(argv[4]) : 8;
  if (batch < 64 || outputs < 64 || inputs < 64 || rounds < 1 || rounds > 100) {
    fprintf(stderr, "BATCH, OUTPUTS and INPUTS must be 64 or more, ROUNDS 1 to 100; got %d %d %d, %d\n", batch, outputs,
            inputs, rounds);
    return 2;
  }
  inputGradientByRows = batch >= inputs;
  g = filled((long)batch * outputs), w = filled((long)outputs * inputs), x = filled((long)batch * inputs);
  inputGradient = filled((long)batch * inputs), weightGradient = filled((long)outputs * inputs);
  openblas_set_num_threads(1);
  startHelper(work);
  double fixedOverPaired[100], followingOverPaired[100];
  printf("dX = G·W and dW = Gᵀ·X, %d × %d layer over %d rows: microseconds per layer (fixed halves, following "
         "halves, paired; share)\n", inputs, outputs, batch);
  for (int round = 0; round < rounds; round++) {
    double total[3] = {0, 0, 0};
    for (int run = 0; run < 20; run++) {
      for (int way = 0; way < 3; way++) {
        following = way == 1;
        double start = seconds();
        for (int layer = 0; layer < 3; layer++) {
          if (way < 2) {
            handOver(0);
            handOver(1);
          } else {
            handOver(2);
          }
        }
        total[way] += seconds() - start;
      }
    }
    fixedOverPaired[round] = total[0] / total[2];
    followingOverPaired[round] = total[1] / total[2];
    printf("  %.0f, %.0f, %.0f (%.2f)\n", total[0] / 60 * 1e6, total[1] / 60 * 1e6, total[2] / 60 * 1e6, share);
  }
  printf("fixed / paired %.3f, following / paired %.3f (medians over rounds)\n", median(fixedOverPaired, rounds),
         median(followingOverPaired, rounds));
  stopHelper();
  return 0;
}
