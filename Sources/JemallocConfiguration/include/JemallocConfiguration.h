// jemalloc's options for GradAccum programs; see configuration.c. Nothing to call.
extern const char *malloc_conf;
