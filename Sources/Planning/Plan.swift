import Accumulation
import Memory

/// How training will run under a budget: the micro-batch, the accumulation count, the
/// window sizes, and where the predicted bytes go.
public struct Plan: Sendable, Equatable, CustomStringConvertible {
  /// Samples per optimizer step (`T`).
  public var targetBatch: Int
  /// The largest micro-batch that fits (`M`, at most `T`).
  public var microBatch: Int
  /// Micro-batches per full window (`k = ⌈T / M⌉`).
  public var accumulationCount: Int { windowSizes.count }
  /// The micro-batch sizes of a full window: `k` sizes that add up to `T` and differ by at
  /// most one.
  public var windowSizes: BalancedSizes { Plan.balancedSizes(samples: targetBatch, microBatch: microBatch) }
  /// The micro-batch sizes of an epoch's last, partial window, when a dataset size is known
  /// and is not a multiple of `T`.
  public var lastWindowSizes: BalancedSizes? {
    guard let datasetSize, datasetSize % targetBatch != 0 else { return nil }
    return Plan.balancedSizes(samples: datasetSize % targetBatch, microBatch: microBatch)
  }
  /// The dataset size the last window was computed for.
  public var datasetSize: Int?
  /// The budget (`B`).
  public var budgetBytes: Int
  /// Bytes kept free below the budget when the micro-batch was chosen (the trainer's safety
  /// margin, 1% of the budget by default): the predicted peak is at most `B − margin`.
  public var marginBytes: Int
  /// Parameters, gradients, optimizer state, buffers (`P`).
  public var persistent: PersistentMemory
  /// The transient bytes of a micro-step of `M` samples (`A(M)`).
  public var transientBytes: Int
  /// Per layer (position, name): bytes of activations kept for backward at `M`.
  public var layerActivations: [LayerActivation]

  /// One layer's activations.
  public struct LayerActivation: Sendable, Equatable {
    public var position: Int
    public var name: String
    public var bytes: Int
  }

  /// Data parallel: the bytes MPI allocates inside the window's gradient reduction (0 for
  /// one process); processes are `processes`.
  public var reductionWorkspaceBytes = 0
  /// The processes sharing each window (data parallel); `targetBatch` is then one
  /// process's largest share.
  public var processes = 1
  /// When the micro-batch was chosen for speed below the largest that fits (`plan
  /// --objective throughput`), that largest; `nil` when the micro-batch is the largest.
  public var largestFittingMicroBatch: Int?

  /// `P + max(A(M), reduction)`: the micro-steps' peak, or the gradient reduction's.
  public var predictedPeakBytes: Int { persistent.totalBytes + max(transientBytes, reductionWorkspaceBytes) }
  /// `B − (P + A(M))`.
  public var headroomBytes: Int { budgetBytes - predictedPeakBytes }

  /// `k` sizes adding up to `samples` that differ by at most one, larger first, for
  /// micro-batches of at most `microBatch`: `balancedSizes(40, 12)` is `[10, 10, 10, 10]`
  /// and `balancedSizes(41, 12)` is `[11, 10, 10, 10]`.
  public static func balancedSizes(samples: Int, microBatch: Int) -> BalancedSizes {
    BalancedSizes(samples: samples, microBatch: microBatch)
  }

  /// The number of windows (optimizer steps) in an epoch of `sampleCount` samples.
  public func windowCount(sampleCount: Int, dropLast: Bool = false) -> Int {
    Self.windowCount(sampleCount: sampleCount, targetBatch: targetBatch, dropLast: dropLast)
  }

  /// The number of windows of `targetBatch` samples in an epoch of `sampleCount`.
  public static func windowCount(sampleCount: Int, targetBatch: Int, dropLast: Bool = false) -> Int {
    sampleCount / targetBatch + (sampleCount % targetBatch > 0 && !dropLast ? 1 : 0)
  }

  /// Every window of an epoch of `sampleCount` samples: full windows, then the last
  /// partial one (dropped with `dropLast`).
  public func windows(sampleCount: Int, dropLast: Bool = false) -> [[Int]] {
    var windows = Array(repeating: Array(windowSizes), count: sampleCount / targetBatch)
    let remainder = sampleCount % targetBatch
    if remainder > 0 && !dropLast {
      windows.append(Array(Plan.balancedSizes(samples: remainder, microBatch: microBatch)))
    }
    return windows
  }

  public var description: String {
    func bytes(_ value: Int) -> String { "\(MemoryBudget.format(bytes: value).padding(12)) \(value) bytes" }
    func window(_ sizes: BalancedSizes) -> String {
      "\(sizes.count) micro-batch\(sizes.count == 1 ? "" : "es"): \(sizes.summary)"
    }
    var lines = [
      processes > 1
        ? "target batch         \(targetBatch) per process (the largest share of a window among \(processes) processes; the budget is per process)"
        : "target batch         \(targetBatch)",
      budgetBytes >= MemoryBudget.maximumBytes
        ? "micro-batch          \(microBatch) (fixed)"
        : largestFittingMicroBatch.flatMap { largest -> String? in
          largest == microBatch
            ? nil : "micro-batch          \(microBatch) (the fastest measured; up to \(largest) fit the budget)"
        } ?? "largest micro-batch  \(microBatch) (the largest that fits the budget)",
      "each window          \(window(windowSizes))",
    ]
    if let lastWindowSizes, let datasetSize {
      lines.append("last window          \(window(lastWindowSizes)) (dataset of \(datasetSize))")
    }
    lines += [
      "",
      "memory              predicted",
      "  parameters        \(bytes(persistent.parameterBytes))",
      "  gradients         \(bytes(persistent.gradientBytes))",
      "  optimizer state   \(bytes(persistent.optimizerStateBytes))",
    ]
    if persistent.bufferBytes > 0 { lines.append("  buffers           \(bytes(persistent.bufferBytes))") }
    if persistent.communicationBytes > 0 {
      lines.append("  reduction buffer  \(bytes(persistent.communicationBytes))")
    }
    lines += ["  transient A(\(microBatch))".padding(20) + bytes(transientBytes)]
    if processes > 1 {
      lines.append("  in the reduction  \(bytes(reductionWorkspaceBytes))")
    }
    lines += [
      "  peak              \(bytes(predictedPeakBytes))",
      "  budget            \(bytes(budgetBytes))",
    ]
    if marginBytes > 0 { lines.append("  safety margin     \(bytes(marginBytes)) kept free") }
    lines += [
      "  headroom          \(bytes(headroomBytes))",
    ]
    if !layerActivations.isEmpty {
      lines.append("")
      lines.append("activations kept for backward at micro-batch \(microBatch)")
      let width = max(22, layerActivations.map(\.name.count).max() ?? 0)
      for layer in layerActivations {
        lines.append("  \(String(layer.position).padding(3)) \(layer.name.padding(width)) \(bytes(layer.bytes))")
      }
    }
    return lines.joined(separator: "\n")
  }
}

/// `count` micro-batch sizes that add up to a number of samples and differ by at most one,
/// larger first, computed rather than stored (a window of 10^12 samples costs three
/// integers).
public struct BalancedSizes: RandomAccessCollection, Sendable, Equatable {
  /// How many sizes (`k`).
  public let count: Int
  /// The smaller size.
  public let base: Int
  /// How many of the sizes, first, are `base + 1`.
  public let extra: Int

  /// The balanced split of `samples` into micro-batches of at most `microBatch`.
  public init(samples: Int, microBatch: Int) {
    precondition(samples >= 1 && microBatch >= 1, "samples and micro-batch must be positive")
    count = samples / microBatch + (samples % microBatch == 0 ? 0 : 1)
    base = samples / count
    extra = samples % count
  }

  public var startIndex: Int { 0 }
  public var endIndex: Int { count }
  public subscript(position: Int) -> Int {
    precondition(position >= 0 && position < count, "index \(position) out of 0..<\(count)")
    return position < extra ? base + 1 : base
  }

  /// Each distinct size with how many times it occurs, larger first.
  public var sizeCounts: [(size: Int, count: Int)] {
    (extra > 0 ? [(base + 1, extra)] : []) + (count > extra ? [(base, count - extra)] : [])
  }

  /// The sizes listed (`11, 10, 10, 10`) when there are at most 16, else by count
  /// (`11 × 3, 10 × 999997`).
  public var summary: String {
    count <= 16
      ? map(String.init).joined(separator: ", ")
      : sizeCounts.map { "\($0.size) × \($0.count)" }.joined(separator: ", ")
  }
}

extension String {
  /// The string padded with spaces to `width` characters.
  func padding(_ width: Int) -> String {
    count >= width ? self : self + String(repeating: " ", count: width - count)
  }
}
