// jemalloc's options for every program that links GradAccum, read by jemalloc when it
// initializes (the MALLOC_CONF environment variable still overrides them):
//
// - oversize_threshold:0 keeps tensors of 8 MiB and more in the thread's arena like any
//   other allocation, instead of a separate arena that returns their pages at once;
// - muzzy_decay_ms:-1 gives freed pages back to the kernel lazily (MADV_FREE, after the
//   10 s dirty decay) instead of unmapping them, so a training loop that frees and
//   allocates the same tensors every step does not fault in fresh pages every step.
//
// Neither changes what jemalloc counts as allocated, which is what budgets are about.
const char *malloc_conf = "oversize_threshold:0,muzzy_decay_ms:-1";
