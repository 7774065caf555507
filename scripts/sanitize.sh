#!/usr/bin/env bash
# Runs the test suite under AddressSanitizer and LeakSanitizer: plain
# `swift test --sanitize=address`, in its own build directory (docs/errors.md, "Sanitizers").
# ASan's allocator replaces jemalloc's, so the tests that measure memory with jemalloc
# (marked .measuresMemory) are skipped; everything else runs.
# Usage: scripts/sanitize.sh [extra swift test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
swift test --sanitize=address --scratch-path .build-asan "$@"
