import Memory

/// Measures the transient peak of a piece of code on the calling thread with jemalloc:
/// the most bytes alive at once beyond those alive when it started, every allocation of the
/// thread counted (tensors, graph objects, and what BLAS allocates inside a call).
public enum TransientPeak {
  /// Runs `body` and returns its result with its transient peak in bytes (0 when jemalloc's
  /// statistics cannot be read, as under another allocator).
  public static func measure<Result>(_ body: () throws -> Result) rethrows -> (result: Result, peakBytes: Int) {
    try MemoryStatistics.measurePeak(body)
  }
}
