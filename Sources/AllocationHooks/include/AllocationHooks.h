// Exact per-thread allocation accounting through jemalloc's allocation hooks.
//
// jemalloc's own thread peak (`thread.peak.read`) is refreshed only every 64 KiB of
// allocation activity, so a block that a library mallocs and frees inside one call can
// come and go unseen. The hooks installed here see every allocation, reallocation and
// free of the process; a thread that has opened a peak scope counts its own, to the byte
// (jemalloc's usable size, the same figure its `thread.allocated` counter adds).
#ifndef GRADACCUM_ALLOCATION_HOOKS_H
#define GRADACCUM_ALLOCATION_HOOKS_H

#include <stdint.h>

/// The state of the enclosing scope, saved by `allocation_peak_begin` and restored by
/// `allocation_peak_end`.
typedef struct {
  int64_t baseline;
  int64_t enclosing_peak;
} allocation_peak_scope;

/// Installs the hooks once per process (later calls return the first result).
/// Returns 0 on success, or the error of `mallctl("experimental.hooks.install")`.
int allocation_hooks_install(void);

/// Starts counting the calling thread's allocations from zero; scopes nest.
void allocation_peak_begin(allocation_peak_scope *scope);

/// The most bytes the calling thread had allocated and not freed at any moment since the
/// matching `allocation_peak_begin`, beyond what it had then (never negative).
int64_t allocation_peak_end(const allocation_peak_scope *scope);

/// Bytes the calling thread has allocated and not freed since its first scope began
/// (counted only while a scope is open).
int64_t allocation_net_bytes(void);

/// The most bytes (as `allocation_net_bytes` counts them) the calling thread held at any
/// moment since the previous call, which starts the next interval. Inside a scope, this
/// finds short-lived blocks that come and go between two points of interest.
int64_t allocation_interval_peak(void);

#endif
