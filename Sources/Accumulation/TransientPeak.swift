import Memory
import Tensors

/// Measures the transient peak of a piece of code on the calling thread with jemalloc:
/// the most bytes alive at once beyond those alive when it started.
///
/// jemalloc's own thread peak (`thread.peak.read`) is updated only every 64 KiB of
/// allocation activity, so it can miss the moment right after a tensor allocation, which
/// is where transient peaks happen. The measurement therefore also reads the thread's
/// allocated and deallocated counters after every tensor allocation, and reports the larger
/// of the two.
public enum TransientPeak {
  final class Sampler: TensorAllocationObserver, @unchecked Sendable {
    let counters: ThreadCounters
    var baseline = 0
    var maximum = 0

    init(counters: ThreadCounters) { self.counters = counters }

    func afterAllocation() {
      maximum = max(maximum, counters.netBytes - baseline)
    }
  }

  /// Runs `body` and returns its result with its transient peak in bytes (0 when jemalloc's
  /// statistics cannot be read).
  public static func measure<Result>(_ body: () throws -> Result) rethrows -> (result: Result, peakBytes: Int) {
    guard let counters = try? MemoryStatistics.threadCounters() else { return (try body(), 0) }
    let sampler = Sampler(counters: counters)
    return try TensorAllocations.$observer.withValue(sampler) {
      try? MemoryStatistics.resetThreadPeak()
      sampler.baseline = counters.netBytes
      let result = try body()
      let jemallocPeak = (try? MemoryStatistics.threadPeakBytes()) ?? 0
      return (result, max(jemallocPeak, sampler.maximum))
    }
  }
}
