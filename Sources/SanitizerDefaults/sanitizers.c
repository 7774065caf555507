// Defaults that LeakSanitizer reads from any program that links GradAccum, so that
// `swift test --sanitize=address` reports GradAccum's leaks and nothing else. Without a
// sanitizer these functions are never called.

// Objects the test harnesses and Foundation keep until exit (the same list as
// scripts/lsan.supp): XCTest's suite bookkeeping, a side table of Process.run(), and the
// read buffer String(contentsOfFile:) keeps for an empty file, and the input keys
// ArgumentParser builds for an option group and leaves when it exits on a bad value.
const char *__lsan_default_suppressions(void) {
  return "leak:libXCTest.so\n"
         "leak:10Foundation7ProcessC3run\n"
         "leak:FoundationEssentials17readBytesFromFile\n"
         "leak:14ArgumentParser8InputKeyV\n";
}

// Used suppressions are not listed at exit (the command line's errors stay one line).
const char *__lsan_default_options(void) { return "print_suppressions=0"; }
