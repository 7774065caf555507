#!/usr/bin/env bash
# Runs the test suite under AddressSanitizer and LeakSanitizer (docs/errors.md, "Sanitizers").
#
# Two adjustments make the run meaningful:
# - jemalloc exports C++ operator new/delete, so without ASan's own (libclang_rt.asan_cxx,
#   which a Swift link does not include) memory from one allocator is freed by the other;
#   it is linked in whole.
# - ASan's allocator replaces jemalloc's, so tests that measure memory with jemalloc are
#   skipped (they are marked .measuresMemory); everything else runs.
# Usage: scripts/sanitize.sh [extra swift test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
runtime=$(ls "$(dirname "$(dirname "$(readlink -f "$(command -v swift)")")")"/lib/clang/*/lib/linux/libclang_rt.asan_cxx-x86_64.a | head -1)
flags=(--sanitize=address --scratch-path .build-asan
  -Xlinker --whole-archive -Xlinker "$runtime" -Xlinker --no-whole-archive)
swift build --build-tests "${flags[@]}"
LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=0" \
  ASAN_OPTIONS="detect_leaks=1" swift test --skip-build "${flags[@]}" "$@"
