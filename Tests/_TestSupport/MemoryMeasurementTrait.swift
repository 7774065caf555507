import Memory
import Testing

/// Whether this process's allocations reach jemalloc, so that its statistics measure them.
/// They do not under AddressSanitizer, whose allocator replaces jemalloc's (see
/// docs/errors.md, "Sanitizers"); tests that measure memory are then skipped.
public let jemallocMeasuresAllocations: Bool = (try? MemoryStatistics.verifyJemallocIsTheAllocator()) != nil

extension Trait where Self == ConditionTrait {
  /// For tests that measure memory with jemalloc (directly, or by running the command-line
  /// tool, which refuses to train without it).
  public static var measuresMemory: Self {
    .enabled(if: jemallocMeasuresAllocations, "measures memory with jemalloc, which is not the allocator here")
  }

  /// For tests that run the tool under a `ulimit` on its memory: AddressSanitizer reserves
  /// terabytes of shadow address space at start and cannot run there.
  public static var limitsProcessMemory: Self {
    .enabled(if: jemallocMeasuresAllocations, "AddressSanitizer cannot start under a memory limit")
  }
}
