// The two jemalloc entry points GradAccum uses. jemalloc's own header redeclares the
// whole malloc family, which would clash with the C library's declarations, so only
// these are declared here; the symbols come from libjemalloc (unprefixed on Debian).
#include <stddef.h>

int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen);
size_t nallocx(size_t size, int flags);
size_t malloc_usable_size(void *ptr);
