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
  /// The bytes kept free below a budget: `fixed`, or 1% of the budget.
  public static func marginBytes(budgetBytes: Int, fixed: Int?) -> Int { fixed ?? budgetBytes / 100 }

  /// The plan for training `model` with windows of `targetBatch` samples under `budget`,
  /// keeping a safety margin free below it: the one planning function of `plan`, `bench`
  /// and the trainer, so that all three agree.
  /// - Parameters:
  ///   - layerNames: names shown per layer position in the plan (such as `linear(784,512)`).
  ///   - datasetSize: when given, the plan includes the epoch's last window.
  ///   - marginBytes: bytes kept free below the budget; `nil` for 1% of the budget (the
  ///     trainer's default), 0 for none.
  /// - Throws: ``PlanningError`` for a non-positive target batch or dataset size, a model
  ///   that does not take the samples, or a budget below what one sample needs with the
  ///   margin (the error states the smallest budget that trains, margin included, and where
  ///   the bytes go).
  ///   - reductionWorkspaceBytes: data parallel, what the gradient reduction allocates
  ///     (``reductionWorkspaceEstimate(elements:)``, or measured); it must fit as well.
  ///   - processes: the processes sharing each window (`targetBatch` is one's share).
  public static func plan(
    estimator: MemoryEstimator, targetBatch: Int, budget: MemoryBudget, datasetSize: Int? = nil,
    layerNames: [String] = [], marginBytes fixedMargin: Int? = nil, reductionWorkspaceBytes: Int = 0,
    processes: Int = 1
  ) throws(PlanningError) -> Plan {
    let margin = marginBytes(budgetBytes: budget.bytes, fixed: fixedMargin)
    do throws(PlanningError) {
      var plan = try largestFitting(
        estimator: estimator, targetBatch: targetBatch, budget: .bytes(max(1, budget.bytes - margin)),
        datasetSize: datasetSize, layerNames: layerNames)
      let persistent = estimator.persistent
      // The gradient reduction (data parallel) must fit as well as the micro-steps.
      if reductionWorkspaceBytes > 0 && persistent.totalBytes + reductionWorkspaceBytes > max(1, budget.bytes - margin) {
        throw PlanningError.budgetTooSmall(
          budgetBytes: budget.bytes, minimumBytes: persistent.totalBytes + reductionWorkspaceBytes,
          breakdown:
            "persistent \(persistent.totalBytes) (reduction buffer \(persistent.communicationBytes) included), and \(reductionWorkspaceBytes) inside the gradient reduction",
          marginBytes: 0)
      }
      plan.budgetBytes = budget.bytes
      plan.marginBytes = margin
      plan.reductionWorkspaceBytes = reductionWorkspaceBytes
      plan.processes = processes
      return plan
    } catch {
      guard case .budgetTooSmall(_, let stepMinimum, let breakdown, _) = error else { throw error }
      // A budget must hold the reduction too (with several processes).
      let minimum =
        reductionWorkspaceBytes > 0
        ? max(stepMinimum, estimator.persistent.totalBytes + reductionWorkspaceBytes) : stepMinimum
      let required = smallestBudget(peakBytes: minimum, fixedMargin: fixedMargin)
      throw .budgetTooSmall(
        budgetBytes: budget.bytes, minimumBytes: minimum, breakdown: breakdown, marginBytes: required - minimum)
    }
  }

  /// What Open MPI allocates inside an in-place sum of `elements` floats among several
  /// processes, for planning without running MPI (the trainer measures the real reduction
  /// on every process). Measured with Open MPI 4.1 on shared memory, 2 to 4 processes and
  /// messages of 2.3 KB to 17.9 MB: a block of the message's size class and at most 5.8 KB
  /// more, depending on the rank and the algorithm (largest, relative to the message, for
  /// small messages). The estimate is that block and 8 KiB.
  public static func reductionWorkspaceEstimate(elements: Int) -> Int {
    MemoryStatistics.sizeClassBytes(forRequest: elements * MemoryLayout<Float>.stride) + 8192
  }

  /// The smallest budget `B` that holds a step of `peakBytes` with the margin kept free:
  /// `B − margin(B) ≥ peakBytes` (`B − B/100` grows with `B`).
  public static func smallestBudget(peakBytes minimum: Int, fixedMargin: Int?) -> Int {
    func fits(_ budget: Int) -> Bool { budget - marginBytes(budgetBytes: budget, fixed: fixedMargin) >= minimum }
    var required = minimum + marginBytes(budgetBytes: minimum, fixed: fixedMargin)
    while !fits(required) { required += 1 }
    while required > minimum && fits(required - 1) { required -= 1 }
    return required
  }

  /// The largest micro-batch up to `limit` whose predicted peak is at most `bytes`, or
  /// `nil` when one sample does not fit. `A(m)` grows with `m`, so the search doubles `m`
  /// until it no longer fits (or passes the limit) and then bisects.
  public static func largestMicroBatch(estimator: MemoryEstimator, upTo limit: Int, bytes: Int) -> Int? {
    let persistentBytes = estimator.persistent.totalBytes
    // Sizes past this cannot fit; they are not traced.
    let largest = estimator.largestFittingMicroBatch(bytes: bytes)
    func fits(_ m: Int) -> Bool {
      m <= largest && persistentBytes + estimator.transientBytes(microBatch: m) <= bytes
    }
    guard fits(1) else { return nil }
    var low = 1  // fits
    var high = 2
    while high <= limit && fits(high) {
      low = high
      high *= 2
    }
    high = min(high, limit == Int.max ? Int.max : limit + 1)  // does not fit, or past the limit
    while high - low > 1 {
      let middle = low + (high - low) / 2
      if fits(middle) { low = middle } else { high = middle }
    }
    return low
  }

  /// The plan with the largest micro-batch whose peak is at most `budget`.
  static func largestFitting(
    estimator: MemoryEstimator, targetBatch: Int, budget: MemoryBudget, datasetSize: Int?, layerNames: [String]
  ) throws(PlanningError) -> Plan {
    guard targetBatch >= 1 else { throw .invalidTargetBatch(targetBatch) }
    if let datasetSize, datasetSize < 1 { throw .invalidDatasetSize(datasetSize) }
    unfoldSamplesTogetherIfFree(estimator: estimator, upTo: targetBatch, bytes: budget.bytes)
    guard let low = largestMicroBatch(estimator: estimator, upTo: targetBatch, bytes: budget.bytes) else {
      let one = estimator.estimate(microBatch: 1)
      let p = estimator.persistent
      throw .budgetTooSmall(
        budgetBytes: budget.bytes, minimumBytes: one.peakBytes,
        breakdown:
          "parameters \(p.parameterBytes), gradients \(p.gradientBytes), optimizer state \(p.optimizerStateBytes)"
          + (p.bufferBytes > 0 ? ", buffers \(p.bufferBytes)" : "") + ", transient \(one.transientBytes) at 1 sample",
        marginBytes: 0)
    }
    return makePlan(
      estimator: estimator, targetBatch: targetBatch, budget: budget, datasetSize: datasetSize, layerNames: layerNames,
      microBatch: low)
  }

  /// Sets the convolutions of `estimator`'s model to unfold several samples per product
  /// (``NeuralNetwork/Conv2d/unfoldsSamplesTogether``: faster products over small planes,
  /// a larger workspace) only where that costs no samples: where one sample at a time
  /// lets a larger micro-batch up to `limit` fit in `bytes`, they unfold one at a time. The
  /// workspace is thereby bounded by what the budget leaves.
  static func unfoldSamplesTogetherIfFree(estimator: MemoryEstimator, upTo limit: Int, bytes: Int) {
    guard let model = estimator.model as? Sequential, model.unfoldsSamplesTogether != nil,
      model.convolutionsGroupSamples(forInput: estimator.sampleShape)
    else { return }
    func set(_ together: Bool) {
      guard model.unfoldsSamplesTogether != together else { return }
      model.unfoldsSamplesTogether = together
      estimator.warmUp()
    }
    set(true)
    let together = largestMicroBatch(estimator: estimator, upTo: limit, bytes: bytes) ?? 0
    guard together < limit else { return }
    set(false)
    let apart = largestMicroBatch(estimator: estimator, upTo: limit, bytes: bytes) ?? 0
    if apart <= together { set(true) }
  }

  /// Sets `model` to run as `source` (a shape-only copy of it) was planned: the same
  /// segments recomputing (``RecomputePolicy/applySame(as:to:)``) and the convolutions
  /// unfolding their samples the same way. Returns `model`.
  @discardableResult
  public static func applySameChoices(as source: any Layer, to model: any Layer) -> any Layer {
    RecomputePolicy.applySame(as: source, to: model)
    if let source = source as? Sequential, let model = model as? Sequential {
      model.unfoldsSamplesTogether = source.unfoldsSamplesTogether
    }
    return model
  }

  /// The plan for a given micro-batch (which the caller knows to fit), with its windows and
  /// breakdown: for choosing a smaller micro-batch than the largest, such as the fastest.
  public static func makePlan(
    estimator: MemoryEstimator, targetBatch: Int, budget: MemoryBudget, datasetSize: Int? = nil,
    layerNames: [String] = [], microBatch low: Int, marginBytes: Int = 0
  ) -> Plan {
    let estimate = estimator.estimate(microBatch: low)
    let names = layerNames.isEmpty ? Self.layerNames(of: estimator.model) : layerNames
    let layers = estimate.layerActivationBytes.keys.sorted().map { position in
      Plan.LayerActivation(
        position: position, name: position < names.count ? names[position] : "layer \(position)",
        bytes: estimate.layerActivationBytes[position]!)
    }
    return Plan(
      targetBatch: targetBatch, microBatch: low, datasetSize: datasetSize, budgetBytes: budget.bytes,
      marginBytes: marginBytes, persistent: estimator.persistent, transientBytes: estimate.transientBytes,
      layerActivations: layers)
  }

  /// The layers of a `Sequential` model by their descriptions (`linear(64,10)`, `relu`).
  public static func layerNames(of model: any Layer) -> [String] {
    guard let sequential = model as? Sequential else { return [] }
    return sequential.layers.map { layer in
      (layer as? CustomStringConvertible)?.description ?? String(describing: type(of: layer)).lowercased()
    }
  }
}
