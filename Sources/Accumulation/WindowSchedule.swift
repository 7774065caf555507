/// How an epoch's samples are split into windows (one optimizer step each) and each window
/// into micro-batches (one forward and backward pass each).
public enum WindowSchedule: Sendable, Equatable {
  /// Manual accumulation: micro-batches of `microBatch` samples (the last of the epoch may
  /// be smaller), `accumulationCount` of them per window; the last window of an epoch may
  /// hold fewer.
  case fixed(microBatch: Int, accumulationCount: Int)

  /// Micro-batch sizes of every window of an epoch of `sampleCount` samples. With
  /// `dropLast`, a last micro-batch smaller than the others is dropped (as a data loader's
  /// `drop_last`).
  public func windows(sampleCount: Int, dropLast: Bool = false) -> [[Int]] {
    switch self {
    case .fixed(let microBatch, let accumulationCount):
      precondition(microBatch >= 1 && accumulationCount >= 1, "micro-batch and accumulation count must be ≥ 1")
      var sizes: [Int] = []
      var remaining = sampleCount
      while remaining > 0 {
        let size = Swift.min(microBatch, remaining)
        if size < microBatch && dropLast { break }
        sizes.append(size)
        remaining -= size
      }
      return stride(from: 0, to: sizes.count, by: accumulationCount).map {
        Array(sizes[$0..<Swift.min($0 + accumulationCount, sizes.count)])
      }
    }
  }
}
