import Accumulation
import Memory
import NeuralNetwork
import Optimizers
import Tensors

/// Plans micro-batches of variable-length sequences under a byte budget.
///
/// A micro-batch of `b` samples right-padded to length `s` is predicted exactly, by the
/// same shape tracer as fixed-size samples (a ``MemoryEstimator`` per padded length). A
/// window is composed by length: its samples sorted longest first, each micro-batch starts
/// with the longest sample left (which sets its padded length) and takes the next ones while
/// the predicted peak stays within the budget less the margin. Short samples share a
/// micro-batch; long ones go alone. For a peak that grows with `b` and `s`, this gives the
/// fewest micro-batches a window can have.
public final class SequencePlanner {
  public let model: any Layer
  public let loss: Loss
  public let optimizer: Optimizer
  /// Samples per window.
  public let targetBatch: Int
  /// The budget.
  public let budgetBytes: Int
  /// Bytes kept free below the budget (1% by default).
  public let marginBytes: Int
  /// The margin as given (`nil`: 1% of whichever budget), for the smallest budgets.
  let fixedMargin: Int?
  /// Processes training together (data parallel), for the reduction buffer.
  public let processes: Int
  /// Multiplies predicted transient bytes (tests of the memory guard only).
  package var transientScale: Double = 1
  var estimators: [Int: MemoryEstimator] = [:]
  var capacities: [Int: Int] = [:]

  /// - Parameters:
  ///   - model: the model (shape-only is enough), whose input is a sequence of ids.
  ///   - targetBatch: samples per window, ≥ 1.
  ///   - budget: the budget; `marginBytes` kept free below it (`nil`: 1%).
  ///   - processes: processes training together; `targetBatch` is then one process's share.
  /// - Throws: ``PlanningError/invalidTargetBatch(_:)``.
  public init(
    model: any Layer, loss: Loss, optimizer: Optimizer, targetBatch: Int, budget: MemoryBudget,
    marginBytes: Int? = nil, processes: Int = 1
  ) throws(PlanningError) {
    guard targetBatch >= 1 else { throw .invalidTargetBatch(targetBatch) }
    self.model = model
    self.loss = loss
    self.optimizer = optimizer
    self.targetBatch = targetBatch
    self.processes = processes
    budgetBytes = budget.bytes
    fixedMargin = marginBytes
    self.marginBytes = Planner.marginBytes(budgetBytes: budget.bytes, fixed: marginBytes)
  }

  /// The bytes a micro-step's predicted peak may reach: the budget less the margin.
  public var usableBytes: Int { max(1, budgetBytes - marginBytes) }

  /// The estimator of micro-batches padded to `length` tokens.
  /// - Throws: ``PlanningError/shape(_:)`` when the model cannot take `length` tokens.
  public func estimator(paddedLength length: Int) throws(PlanningError) -> MemoryEstimator {
    if let estimator = estimators[length] { return estimator }
    let estimator = try MemoryEstimator(
      model: model, sampleShape: [length], targetShape: [length], loss: loss, optimizer: optimizer,
      processes: processes)
    estimator.transientScale = transientScale
    estimators[length] = estimator
    return estimator
  }

  /// The predicted memory of a micro-batch of `samples` padded to `length` tokens.
  public func estimate(samples: Int, paddedLength length: Int) throws(PlanningError) -> MemoryEstimate {
    try estimator(paddedLength: length).estimate(microBatch: samples)
  }

  /// The most samples (at most the target batch) padded to `length` whose predicted peak
  /// stays within ``usableBytes``; 0 when not even one does.
  public func capacity(paddedLength length: Int) throws(PlanningError) -> Int {
    if let capacity = capacities[length] { return capacity }
    let capacity =
      Planner.largestMicroBatch(estimator: try estimator(paddedLength: length), upTo: targetBatch, bytes: usableBytes)
      ?? 0
    capacities[length] = capacity
    return capacity
  }

  /// The smallest budget (margin included) under which one sample of `length` tokens trains.
  public func smallestBudget(paddedLength length: Int) throws(PlanningError) -> Int {
    Planner.smallestBudget(
      peakBytes: try estimate(samples: 1, paddedLength: length).peakBytes, fixedMargin: fixedMargin)
  }

  /// The longest length up to `limit` of which one sample fits (0 when none does): the
  /// length to truncate samples to under this budget.
  public func longestFittingLength(upTo limit: Int) throws(PlanningError) -> Int {
    guard limit >= 1, try capacity(paddedLength: 1) > 0 else { return 0 }
    var low = 1, high = limit + 1
    while high - low > 1 {
      let middle = low + (high - low) / 2
      if try capacity(paddedLength: middle) > 0 { low = middle } else { high = middle }
    }
    return low
  }

  /// The micro-batch sizes of a window whose lengths are `sortedLengths` (longest first).
  /// - Throws: ``PlanningError/budgetTooSmall(budgetBytes:minimumBytes:breakdown:marginBytes:)``
  ///   when one sample of the longest length does not fit.
  public func compose(sortedLengths: [Int]) throws(PlanningError) -> [Int] {
    var failure: PlanningError?
    let sizes = Self.compose(sortedLengths: sortedLengths) { length in
      do throws(PlanningError) {
        return try capacity(paddedLength: length)
      } catch {
        failure = error
        return 0
      }
    }
    if let failure { throw failure }
    guard let sizes else {
      let longest = sortedLengths.first ?? 1
      let one = try estimate(samples: 1, paddedLength: longest)
      let required = try smallestBudget(paddedLength: longest)
      throw .budgetTooSmall(
        budgetBytes: budgetBytes, minimumBytes: one.peakBytes,
        breakdown: "one sample of \(longest) tokens needs \(one.peakBytes) bytes", marginBytes: required - one.peakBytes)
    }
    return sizes
  }

  /// Greedy composition by length: each micro-batch takes the longest sample left and as
  /// many of the next (shorter) ones as `capacity` of its padded length allows. `nil` when
  /// a sample's length has capacity 0.
  public static func compose(sortedLengths: [Int], capacity: (Int) -> Int) -> [Int]? {
    var sizes: [Int] = []
    var start = 0
    while start < sortedLengths.count {
      let room = capacity(sortedLengths[start])
      guard room >= 1 else { return nil }
      let size = min(room, sortedLengths.count - start)
      sizes.append(size)
      start += size
    }
    return sizes
  }

  /// Indices of a window's samples in the order micro-batches take them: longest first,
  /// ties in the window's order.
  public static func lengthOrder(_ indices: [Int], lengths: [Int]) -> [Int] {
    indices.enumerated().sorted { a, b in
      lengths[a.element] != lengths[b.element] ? lengths[a.element] > lengths[b.element] : a.offset < b.offset
    }.map(\.element)
  }

  /// The plan of a whole data set whose windows hold samples of `windowLengths`.
  /// - Throws: ``PlanningError/budgetTooSmall(budgetBytes:minimumBytes:breakdown:marginBytes:)``
  ///   when the longest sample does not fit.
  public func plan(windowLengths: [[Int]]) throws(PlanningError) -> SequencePlan {
    var microBatchCounts: [Int] = []
    var shapes: [SequencePlan.MicroBatchShape: Int] = [:]
    var paddedTokens = 0, windowPaddedTokens = 0, tokens = 0
    for lengths in windowLengths {
      let sorted = lengths.sorted(by: >)
      let sizes = try compose(sortedLengths: sorted)
      microBatchCounts.append(sizes.count)
      tokens += lengths.reduce(0, +)
      windowPaddedTokens += lengths.count * (sorted.first ?? 0)
      var start = 0
      for size in sizes {
        let shape = SequencePlan.MicroBatchShape(samples: size, paddedLength: sorted[start])
        shapes[shape, default: 0] += 1
        paddedTokens += size * sorted[start]
        start += size
      }
    }
    var predicted: [(shape: SequencePlan.MicroBatchShape, peakBytes: Int)] = []
    for shape in shapes.keys {
      predicted.append((shape, try estimate(samples: shape.samples, paddedLength: shape.paddedLength).peakBytes))
    }
    predicted.sort { $0.peakBytes != $1.peakBytes ? $0.peakBytes > $1.peakBytes : $0.shape.samples > $1.shape.samples }
    let longest = windowLengths.lazy.compactMap { $0.max() }.max() ?? 1
    return SequencePlan(
      targetBatch: targetBatch, budgetBytes: budgetBytes, marginBytes: marginBytes,
      persistent: try estimator(paddedLength: longest).persistent, microBatchCounts: microBatchCounts,
      tokens: tokens, paddedTokens: paddedTokens, windowPaddedTokens: windowPaddedTokens,
      heaviest: predicted.map { SequencePlan.PredictedShape(shape: $0.shape, predictedPeakBytes: $0.peakBytes) },
      longestLength: longest, smallestBudgetBytes: try smallestBudget(paddedLength: longest))
  }
}

/// How a data set of sequences trains under a budget: micro-batches per window, the
/// padding they carry, and the heaviest micro-batches' predicted peaks.
public struct SequencePlan: Sendable, Equatable {
  /// A micro-batch: its samples and the length they are padded to.
  public struct MicroBatchShape: Hashable, Sendable {
    public var samples: Int
    public var paddedLength: Int

    public init(samples: Int, paddedLength: Int) {
      self.samples = samples
      self.paddedLength = paddedLength
    }
  }
  /// A micro-batch shape with its predicted peak.
  public struct PredictedShape: Sendable, Equatable {
    public var shape: MicroBatchShape
    public var predictedPeakBytes: Int
  }
  public var targetBatch: Int
  public var budgetBytes: Int
  public var marginBytes: Int
  public var persistent: PersistentMemory
  /// Micro-batches of each window, in order.
  public var microBatchCounts: [Int]
  /// Tokens in the samples.
  public var tokens: Int
  /// Tokens with padding, micro-batches padded to their longest sample.
  public var paddedTokens: Int
  /// Tokens with padding if each window were padded to its longest sample.
  public var windowPaddedTokens: Int
  /// Every micro-batch shape the plan uses, heaviest predicted peak first.
  public var heaviest: [PredictedShape]
  /// The longest sample.
  public var longestLength: Int
  /// The smallest budget (margin included) under which the longest sample trains.
  public var smallestBudgetBytes: Int

  /// Optimizer steps per epoch.
  public var windows: Int { microBatchCounts.count }
  /// The largest predicted peak of any micro-batch.
  public var largestPredictedPeakBytes: Int { heaviest.first?.predictedPeakBytes ?? persistent.totalBytes }
  /// The share of padded positions when micro-batches are padded to their longest sample.
  public var paddingFraction: Double { paddedTokens > 0 ? Double(paddedTokens - tokens) / Double(paddedTokens) : 0 }
  /// The share of padded positions when each window is padded to its longest sample.
  public var windowPaddingFraction: Double {
    windowPaddedTokens > 0 ? Double(windowPaddedTokens - tokens) / Double(windowPaddedTokens) : 0
  }
}
