// LeakSanitizer defaults for GradAccum programs; see sanitizers.c. Nothing to call.
const char *__lsan_default_suppressions(void);
const char *__lsan_default_options(void);
