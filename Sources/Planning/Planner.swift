import Accumulation
import Memory
import NeuralNetwork
import Optimizers
import Tensors

/// Finds the largest micro-batch whose training step fits in a budget.
///
/// `A(m)` grows with `m`, so the search doubles `m` until it no longer fits (or reaches
/// the target batch) and then bisects, asking the ``MemoryEstimator`` at each step.
public enum Planner {
  /// The plan for training `model` with windows of `targetBatch` samples under `budget`.
  /// - Parameters:
  ///   - layerNames: names shown per layer position in the plan (such as `linear(784,512)`).
  ///   - datasetSize: when given, the plan includes the epoch's last window.
  /// - Throws: ``PlanningError`` for a non-positive target batch or dataset size, a model
  ///   that does not take the samples, or a budget below what one sample needs (the error
  ///   states the minimum budget and where the bytes go).
  public static func plan(
    estimator: MemoryEstimator, targetBatch: Int, budget: MemoryBudget, datasetSize: Int? = nil,
    layerNames: [String] = []
  ) throws(PlanningError) -> Plan {
    guard targetBatch >= 1 else { throw .invalidTargetBatch(targetBatch) }
    if let datasetSize, datasetSize < 1 { throw .invalidDatasetSize(datasetSize) }
    let persistentBytes = estimator.persistent.totalBytes
    // Sizes past this cannot fit; they are not traced.
    let largest = estimator.largestFittingMicroBatch(bytes: budget.bytes)
    func fits(_ m: Int) -> Bool {
      m <= largest && persistentBytes + estimator.transientBytes(microBatch: m) <= budget.bytes
    }
    guard fits(1) else {
      let one = estimator.estimate(microBatch: 1)
      let p = estimator.persistent
      throw .budgetTooSmall(
        budgetBytes: budget.bytes, minimumBytes: one.peakBytes,
        breakdown:
          "parameters \(p.parameterBytes), gradients \(p.gradientBytes), optimizer state \(p.optimizerStateBytes)"
          + (p.bufferBytes > 0 ? ", buffers \(p.bufferBytes)" : "") + ", transient \(one.transientBytes) at 1 sample",
        marginBytes: 0)
    }
    var low = 1  // fits
    var high = 2
    while high <= targetBatch && fits(high) {
      low = high
      high *= 2
    }
    high = min(high, targetBatch == Int.max ? Int.max : targetBatch + 1)  // does not fit, or past the target
    while high - low > 1 {
      let middle = low + (high - low) / 2
      if fits(middle) { low = middle } else { high = middle }
    }
    return makePlan(
      estimator: estimator, targetBatch: targetBatch, budget: budget, datasetSize: datasetSize, layerNames: layerNames,
      microBatch: low)
  }

  /// The plan for a given micro-batch (which the caller knows to fit), with its windows and
  /// breakdown: for choosing a smaller micro-batch than the largest, such as the fastest.
  public static func makePlan(
    estimator: MemoryEstimator, targetBatch: Int, budget: MemoryBudget, datasetSize: Int? = nil,
    layerNames: [String] = [], microBatch low: Int
  ) -> Plan {
    let estimate = estimator.estimate(microBatch: low)
    let names = layerNames.isEmpty ? Self.layerNames(of: estimator.model) : layerNames
    let layers = estimate.layerActivationBytes.keys.sorted().map { position in
      Plan.LayerActivation(
        position: position, name: position < names.count ? names[position] : "layer \(position)",
        bytes: estimate.layerActivationBytes[position]!)
    }
    return Plan(
      targetBatch: targetBatch, microBatch: low, datasetSize: datasetSize, budgetBytes: budget.bytes, persistent: estimator.persistent,
      transientBytes: estimate.transientBytes, layerActivations: layers)
  }

  /// The layers of a `Sequential` model by their descriptions (`linear(64,10)`, `relu`).
  public static func layerNames(of model: any Layer) -> [String] {
    guard let sequential = model as? Sequential else { return [] }
    return sequential.layers.map { layer in
      (layer as? CustomStringConvertible)?.description ?? String(describing: type(of: layer)).lowercased()
    }
  }
}
