#!/usr/bin/env bash
# Fuzzes GradAccum's parsers with libFuzzer (and AddressSanitizer), each for a bounded time.
# Usage: scripts/fuzz.sh [seconds per target, default 600] [target ...]
# Targets: Safetensors CSV ModelSpecification Budget CommandLine Sequences. Findings go to Fuzz/Findings/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-600}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(Safetensors CSV ModelSpecification Budget CommandLine Sequences)
swift build --package-path Fuzz --scratch-path .build-fuzz -Xswiftc -sanitize=fuzzer,address
for target in "${TARGETS[@]}"; do
  work=".build-fuzz/corpus/$target"
  mkdir -p "$work" "Fuzz/Findings/$target"
  echo "== $target: ${SECONDS_PER_TARGET}s"
  # -malloc_limit_mb: any single allocation above 256 MiB is a finding (no allocation may be
  # driven by an unchecked length); -timeout: an input taking over 10 s is a hang.
  ".build-fuzz/debug/Fuzz$target" "$work" "Fuzz/Corpus/$target" \
    -max_total_time="$SECONDS_PER_TARGET" -malloc_limit_mb=256 -rss_limit_mb=2048 -timeout=10 \
    -max_len=4096 -artifact_prefix="Fuzz/Findings/$target/" -print_final_stats=1
done
