#include "AllocationHooks.h"

#include <pthread.h>
#include <stddef.h>

// From libjemalloc (its own header would redeclare the whole malloc family).
int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen);
size_t malloc_usable_size(void *ptr);

// jemalloc 5.3's hook interface (include/jemalloc/internal/hook.h), installed through
// mallctl("experimental.hooks.install"). The type arguments say which function was called
// (malloc, posix_memalign, realloc, …); the counting below does not depend on them.
typedef void (*hook_alloc)(void *extra, int type, void *result, uintptr_t result_raw, uintptr_t args_raw[3]);
typedef void (*hook_dalloc)(void *extra, int type, void *address, uintptr_t args_raw[3]);
typedef void (*hook_expand)(
  void *extra, int type, void *address, size_t old_usize, size_t new_usize, uintptr_t result_raw,
  uintptr_t args_raw[4]);
typedef struct {
  hook_alloc alloc_hook;
  hook_dalloc dalloc_hook;
  hook_expand expand_hook;
  void *extra;
} hooks_t;

static __thread int open_scopes;
static __thread int64_t net_bytes;
static __thread int64_t peak_bytes;
static __thread int64_t interval_peak_bytes;

// jemalloc calls the allocation hook after the block exists and the free hook before it
// is released, so the block's usable size can be read in both.
static void on_allocation(void *extra, int type, void *result, uintptr_t result_raw, uintptr_t args_raw[3]) {
  (void)extra, (void)type, (void)result_raw, (void)args_raw;
  if (open_scopes == 0 || result == NULL) return;
  net_bytes += (int64_t)malloc_usable_size(result);
  if (net_bytes > peak_bytes) peak_bytes = net_bytes;
  if (net_bytes > interval_peak_bytes) interval_peak_bytes = net_bytes;
}

static void on_free(void *extra, int type, void *address, uintptr_t args_raw[3]) {
  (void)extra, (void)type, (void)args_raw;
  if (open_scopes == 0 || address == NULL) return;
  net_bytes -= (int64_t)malloc_usable_size(address);
}

// A reallocation that grows or shrinks a block in place.
static void on_resize(
  void *extra, int type, void *address, size_t old_usize, size_t new_usize, uintptr_t result_raw,
  uintptr_t args_raw[4]) {
  (void)extra, (void)type, (void)address, (void)result_raw, (void)args_raw;
  if (open_scopes == 0) return;
  net_bytes += (int64_t)new_usize - (int64_t)old_usize;
  if (net_bytes > peak_bytes) peak_bytes = net_bytes;
  if (net_bytes > interval_peak_bytes) interval_peak_bytes = net_bytes;
}

static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static int install_result = -1;

static void install(void) {
  static hooks_t hooks = {on_allocation, on_free, on_resize, NULL};
  void *handle = NULL;
  size_t handle_size = sizeof(handle);
  install_result = mallctl("experimental.hooks.install", &handle, &handle_size, &hooks, sizeof(hooks));
}

int allocation_hooks_install(void) {
  pthread_once(&install_once, install);
  return install_result;
}

void allocation_peak_begin(allocation_peak_scope *scope) {
  scope->baseline = net_bytes;
  scope->enclosing_peak = peak_bytes;
  peak_bytes = net_bytes;
  open_scopes += 1;
}

int64_t allocation_peak_end(const allocation_peak_scope *scope) {
  open_scopes -= 1;
  int64_t peak = peak_bytes - scope->baseline;
  if (scope->enclosing_peak > peak_bytes) peak_bytes = scope->enclosing_peak;
  return peak > 0 ? peak : 0;
}

int64_t allocation_net_bytes(void) { return net_bytes; }

int64_t allocation_interval_peak(void) {
  int64_t peak = interval_peak_bytes;
  interval_peak_bytes = net_bytes;
  return peak;
}
