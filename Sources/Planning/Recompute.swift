import Memory
import NeuralNetwork

/// Which segments recompute their activations in backward instead of keeping them
/// (`Layer.recomputing(_:through:)`): today the model's transformer blocks.
public enum RecomputePolicy: String, Sendable, CaseIterable {
  /// Keep every activation.
  case none
  /// Recompute every transformer block.
  case all
  /// Whichever of the two the planner predicts to train faster within the budget.
  case auto

  /// The model's segments that can recompute.
  public static func segments(of model: any Layer) -> [TransformerBlock] {
    guard let sequential = model as? Sequential else { return (model as? TransformerBlock).map { [$0] } ?? [] }
    return sequential.layers.compactMap { $0 as? TransformerBlock }
  }

  /// Sets every segment of `model` to recompute (`true`) or not.
  public static func apply(_ recomputes: Bool, to model: any Layer) {
    for block in segments(of: model) { block.recomputes = recomputes }
  }
}

/// The planner's choice between keeping activations and recomputing them.
public enum RecomputeChoice {
  /// One option: whether segments recompute, the largest micro-batch that fits (0: none),
  /// and the step's multiply-adds per sample at that micro-batch.
  public struct Option: Sendable, Equatable {
    public var recomputes: Bool
    public var microBatch: Int
    public var multiplyAddsPerSample: Double

    /// Predicted samples per second, up to a constant: the arithmetic per sample, and a
    /// micro-batch of `m` running at `m / (m + 4)` of a large one's efficiency (small
    /// products pack and dispatch as much as large ones for less work).
    public var relativeThroughput: Double {
      guard microBatch > 0, multiplyAddsPerSample > 0 else { return 0 }
      return Double(microBatch) / Double(microBatch + 4) / multiplyAddsPerSample
    }
  }

  /// The option with the higher predicted throughput among those that fit (`none` on a tie
  /// or when neither fits).
  public static func best(of options: [Option]) -> Option? {
    let fitting = options.filter { $0.microBatch > 0 }
    return fitting.max { a, b in
      a.relativeThroughput != b.relativeThroughput ? a.relativeThroughput < b.relativeThroughput : a.recomputes && !b.recomputes
    }
  }

  /// The options for `estimator`'s model with segments kept and recomputed: each one's
  /// largest micro-batch up to `limit` within `bytes`, and its arithmetic. The model's
  /// segments are left as they were.
  public static func options(estimator: MemoryEstimator, upTo limit: Int, bytes: Int) -> [Option] {
    let segments = RecomputePolicy.segments(of: estimator.model)
    let before = segments.map(\.recomputes)
    defer { for (block, value) in zip(segments, before) { block.recomputes = value } }
    return [false, true].map { recomputes in
      for block in segments { block.recomputes = recomputes }
      let m = Planner.largestMicroBatch(estimator: estimator, upTo: limit, bytes: bytes) ?? 0
      let work = m > 0 ? Double(estimator.multiplyAdds(microBatch: m)) / Double(m) : 0
      return Option(recomputes: recomputes, microBatch: m, multiplyAddsPerSample: work)
    }
  }

  /// Sets `estimator`'s model to the option ``best(of:)`` picks within `budget` less the
  /// margin (`marginBytes`, `nil` for 1%), for micro-batches of up to `limit` samples; keeps
  /// activations when neither fits. Returns whether the segments recompute.
  @discardableResult
  public static func applyBest(
    estimator: MemoryEstimator, upTo limit: Int, budget: MemoryBudget, marginBytes: Int?
  ) -> Bool {
    let usable = budget.bytes - Planner.marginBytes(budgetBytes: budget.bytes, fixed: marginBytes)
    let recomputes = best(of: options(estimator: estimator, upTo: limit, bytes: usable))?.recomputes ?? false
    RecomputePolicy.apply(recomputes, to: estimator.model)
    return recomputes
  }
}
