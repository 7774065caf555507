#!/usr/bin/env bash
# Instructions of one training step per benchmark model, counted by callgrind: a regression
# guard that does not depend on the machine's noise (docs/benchmarks.md keeps the counts).
#
# Each case runs `gradaccum bench --steps 3` under valgrind with collection only inside the
# three counted steps (--toggle-collect='*countedSteps*'), with OpenBLAS's Haswell (AVX2)
# kernels on one thread, which valgrind can run on any x86-64 CPU with AVX2, whatever
# kernels this CPU would pick. Valgrind 3.19 cannot read the toolchain's DWARF 5, so a copy
# of the binary without debug information (symbols kept) is counted.
# Usage: scripts/instruction_counts.sh [path/to/gradaccum (release)]
set -euo pipefail
cd "$(dirname "$0")/.."
BINARY=${1:-.build/release/gradaccum}
command -v valgrind >/dev/null || { echo "valgrind is needed: apt-get install valgrind" >&2; exit 1; }
COUNTED="$(dirname "$BINARY")/gradaccum-callgrind"
cp "$BINARY" "$COUNTED"
strip -g "$COUNTED"
trap 'rm -f "$COUNTED" "$OUT"' EXIT
OUT=$(mktemp)
STEPS=3
MLP="linear(784,512) relu linear(512,512) relu linear(512,10)"
CNN="conv2d(3,32,3,padding=1) relu maxpool2d(2) conv2d(32,64,3,padding=1) relu maxpool2d(2) flatten linear(4096,10)"
TRANSFORMER="embedding(256,128) positionalembedding(128,128) transformerblock(128,4) transformerblock(128,4) layernorm(128) linear(128,256)"
count() {  # name, samples per step, bench arguments...
  local name=$1 samples=$2
  shift 2
  OPENBLAS_CORETYPE=Haswell OPENBLAS_NUM_THREADS=1 valgrind --tool=callgrind --collect-atstart=no \
    --toggle-collect='*countedSteps*' --callgrind-out-file="$OUT" "$COUNTED" bench "$@" --steps $STEPS >/dev/null 2>&1
  local total
  total=$(awk '/^totals:/ {print $2}' "$OUT")
  printf '| %s | %s | %s |\n' "$name" "$(LC_ALL=en_US.UTF-8 printf "%'d" $((total / STEPS)) 2>/dev/null || echo $((total / STEPS)))" \
    "$((total / STEPS / samples))"
}
echo "| case (SGD, Haswell kernels, 1 thread) | instructions per step | per sample |"
echo "|---|---:|---:|"
count "MLP 784-512-512-10, micro-batch 1" 1 --model "$MLP" --input-shape 784 --micro-batches 1
count "MLP, micro-batch 16" 16 --model "$MLP" --input-shape 784 --micro-batches 16
count "MLP, micro-batch 256" 256 --model "$MLP" --input-shape 784 --micro-batches 256
count "CNN (two conv blocks) on 3×32×32, micro-batch 64" 64 --model "$CNN" --input-shape 3x32x32 --micro-batches 64
count "transformer, 16 × 128 tokens" 16 --model "$TRANSFORMER" --sequence-length 128 --micro-batches 16
