// jemalloc (Debian libjemalloc-dev) replaces the C library's malloc in the executables that link
// it. Only mallctl is declared here: jemalloc.h redeclares malloc and friends, which the C
// library's module already declares.
#include <stdint.h>
#include <stdlib.h>

int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen);

/// jemalloc's version (e.g. "5.3.0-0-g54eaed1…") when jemalloc is the process's malloc, else NULL:
/// a megabyte taken with malloc must show in jemalloc's count of this thread's allocations.
/// Calling it also keeps the library linked under --as-needed.
static inline const char *gps_jemalloc_version(void) {
  uint64_t before = 0, after = 0;
  size_t length = sizeof(uint64_t);
  if (mallctl("thread.allocated", &before, &length, NULL, 0) != 0) return NULL;
  void *volatile block = malloc(1 << 20);
  length = sizeof(uint64_t);
  int failed = mallctl("thread.allocated", &after, &length, NULL, 0);
  free(block);
  if (failed != 0 || after - before < (1 << 20)) return NULL;
  const char *version = NULL;
  length = sizeof(version);
  if (mallctl("version", (void *)&version, &length, NULL, 0) != 0) return NULL;
  return version;
}
