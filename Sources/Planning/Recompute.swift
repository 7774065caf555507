import Accumulation
import DataLoading
import Dispatch
import Memory
import NeuralNetwork
import Optimizers
import Tensors

/// Which segments recompute their activations in backward instead of keeping them
/// (`Layer.recomputing(_:through:)`): transformer blocks and convolution stages
/// (``NeuralNetwork/Sequential/recomputableSegments``).
public enum RecomputePolicy: String, Sendable, CaseIterable {
  /// Keep every activation.
  case none
  /// Recompute every segment.
  case all
  /// The segments and micro-batch the planner predicts to train fastest within the budget.
  case auto

  /// The model's segments that can recompute, by layer position (none for a model that is
  /// not a `Sequential`).
  public static func segments(of model: any Layer) -> [Range<Int>] {
    (model as? Sequential)?.recomputableSegments ?? []
  }

  /// The model's segments that recompute now.
  public static func recomputed(in model: any Layer) -> [Range<Int>] {
    (model as? Sequential)?.recomputedSegments ?? []
  }

  /// Whether the model's recomputed transformer blocks run their attention one
  /// head at a time (`Sequential.leanRecomputation`).
  public static func isLean(_ model: any Layer) -> Bool {
    (model as? Sequential)?.leanRecomputation ?? false
  }

  /// Sets every segment of `model` to recompute (`true`) or not, heads shared between two
  /// threads.
  public static func apply(_ recomputes: Bool, to model: any Layer) {
    apply(recomputes ? segments(of: model) : [], to: model)
  }

  /// Sets `segments` of `model` to recompute and every other one not; `lean`: recomputed
  /// blocks run their attention one head at a time.
  public static func apply(_ segments: [Range<Int>], lean: Bool = false, to model: any Layer) {
    (model as? Sequential)?.recomputedSegments = segments
    (model as? Sequential)?.leanRecomputation = lean
  }

  /// Sets `model` to recompute as `source` does (the same segments, lean or not), for a
  /// real model measured or timed as a shape-only one was planned. Returns `model`.
  @discardableResult
  public static func applySame(as source: any Layer, to model: any Layer) -> any Layer {
    apply(recomputed(in: source), lean: isLean(source), to: model)
    return model
  }

  /// `layers 2, 3` or `layers 0–2, 4–6`: segments by layer position.
  public static func describe(_ segments: [Range<Int>]) -> String {
    let parts = segments.map { $0.count == 1 ? "\($0.lowerBound)" : "\($0.lowerBound)–\($0.upperBound - 1)" }
    return (segments.count == 1 && segments[0].count == 1 ? "layer " : "layers ") + parts.joined(separator: ", ")
  }

  /// `layers 2, 3 (activations recomputed in backward, attention one head at a time; …)`:
  /// the recomputed segments, whether lean, and `detail` (such as the cost) after them.
  public static func describe(_ segments: [Range<Int>], lean: Bool, detail: String? = nil) -> String {
    describe(segments) + " (activations recomputed in backward" + (lean ? ", attention one head at a time" : "")
      + (detail.map { "; " + $0 } ?? "") + ")"
  }
}

extension MemoryEstimator {
  /// Sets which segments of the estimator's model recompute (`lean`: see
  /// ``RecomputePolicy/apply(_:lean:to:)``), and traces one step so that the one-time
  /// allocations of code that now runs are not counted in a prediction.
  public func recompute(_ segments: [Range<Int>], lean: Bool = false) {
    RecomputePolicy.apply(segments, lean: lean, to: model)
    warmUp()
  }
}

/// The planner's choice of recomputed segments and micro-batch.
public enum RecomputeChoice {
  /// One option: the segments that recompute (`lean`: their attention one head
  /// at a time), the largest micro-batch that fits (0: none), and the step's multiply-adds
  /// per sample at that micro-batch.
  public struct Option: Sendable, Equatable {
    public var segments: [Range<Int>]
    public var lean: Bool
    public var microBatch: Int
    public var multiplyAddsPerSample: Double

    public init(segments: [Range<Int>], lean: Bool = false, microBatch: Int, multiplyAddsPerSample: Double) {
      (self.segments, self.lean, self.microBatch, self.multiplyAddsPerSample) =
        (segments, lean, microBatch, multiplyAddsPerSample)
    }

    /// Whether any segment recomputes.
    public var recomputes: Bool { !segments.isEmpty }

    /// Predicted samples per second, up to a constant: the arithmetic per sample (each
    /// recomputed segment's forward included, as traced), and a micro-batch of `m` running at
    /// `m / (m + 4)` of a large one's efficiency (small products pack and dispatch as much
    /// as large ones for less work).
    public var relativeThroughput: Double {
      guard microBatch > 0, multiplyAddsPerSample > 0 else { return 0 }
      return Double(microBatch) / Double(microBatch + 4) / multiplyAddsPerSample
    }
  }

  /// The option with the highest predicted throughput among those that fit; on a tie the
  /// one recomputing fewer segments (earlier in `options`). `nil` when none fits.
  public static func best(of options: [Option]) -> Option? {
    var best: Option?
    for option in options where option.microBatch > 0 {
      if best.map({ option.relativeThroughput > $0.relativeThroughput }) ?? true { best = option }
    }
    return best
  }

  /// The sets of segments worth comparing: every subset of up to four segments, fewest
  /// first; beyond four, the first `j` in the order of the activation bytes they keep at one
  /// sample (most first), for every `j`.
  static func candidates(estimator: MemoryEstimator) -> [[Range<Int>]] {
    let segments = RecomputePolicy.segments(of: estimator.model)
    if segments.count <= 4 {
      let subsets = (0..<(1 << segments.count)).map { mask in
        segments.indices.filter { mask & (1 << $0) != 0 }.map { segments[$0] }
      }
      return subsets.sorted { $0.count < $1.count }
    }
    estimator.recompute([])
    let kept = estimator.estimate(microBatch: 1).layerActivationBytes
    let ordered = segments.sorted { a, b in
      a.reduce(0) { $0 + kept[$1, default: 0] } > b.reduce(0) { $0 + kept[$1, default: 0] }
    }
    return (0...ordered.count).map { Array(ordered.prefix($0)).sorted { $0.lowerBound < $1.lowerBound } }
  }

  /// The options for `estimator`'s model (see ``candidates(estimator:)``): each one's
  /// largest micro-batch up to `limit` within `bytes`, and its arithmetic; after a set of
  /// segments, the same set lean when that holds a larger micro-batch (never faster
  /// otherwise). The model's segments are left as they were.
  public static func options(estimator: MemoryEstimator, upTo limit: Int, bytes: Int) -> [Option] {
    let before = RecomputePolicy.recomputed(in: estimator.model), wasLean = RecomputePolicy.isLean(estimator.model)
    defer { estimator.recompute(before, lean: wasLean) }
    func option(_ segments: [Range<Int>], lean: Bool) -> Option {
      estimator.recompute(segments, lean: lean)
      let m = Planner.largestMicroBatch(estimator: estimator, upTo: limit, bytes: bytes) ?? 0
      let work = m > 0 ? Double(estimator.multiplyAdds(microBatch: m)) / Double(m) : 0
      return Option(segments: segments, lean: lean, microBatch: m, multiplyAddsPerSample: work)
    }
    return candidates(estimator: estimator).flatMap { segments in
      let shared = option(segments, lean: false)
      guard !segments.isEmpty, shared.microBatch < limit else { return [shared] }
      let lean = option(segments, lean: true)
      return lean.microBatch > shared.microBatch ? [shared, lean] : [shared]
    }
  }

  /// Sets every segment of `estimator`'s model to recompute (`--recompute all`), lean only
  /// when sharing the heads between two threads does not fit one sample within `budget`
  /// less the margin (lean needs the least memory there is, and errors then name it).
  public static func applyAll(estimator: MemoryEstimator, budget: MemoryBudget, marginBytes: Int?) {
    let segments = RecomputePolicy.segments(of: estimator.model)
    let usable = budget.bytes - Planner.marginBytes(budgetBytes: budget.bytes, fixed: marginBytes)
    estimator.recompute(segments)
    if !segments.isEmpty && Planner.largestMicroBatch(estimator: estimator, upTo: 1, bytes: usable) == nil {
      estimator.recompute(segments, lean: true)
    }
  }

  /// Sets `estimator`'s model to the best option within `budget` less the margin
  /// (`marginBytes`, `nil` for 1%), for micro-batches of up to `limit` samples; keeps
  /// activations when none fits. Returns the segments that recompute (whether lean:
  /// ``RecomputePolicy/isLean(_:)``).
  ///
  /// With `timing`, the options that fit are timed (``RecomputeTiming``) and the fastest
  /// measured wins: the arithmetic of ``Option/relativeThroughput`` leaves out what
  /// recomputation repeats besides products (softmax, GELU, normalization), which on a CPU
  /// can cost as much. Without, ``best(of:)`` decides.
  @discardableResult
  public static func applyBest(
    estimator: MemoryEstimator, upTo limit: Int, budget: MemoryBudget, marginBytes: Int?,
    timing: RecomputeTiming? = nil
  ) -> [Range<Int>] {
    let usable = budget.bytes - Planner.marginBytes(budgetBytes: budget.bytes, fixed: marginBytes)
    let candidates = options(estimator: estimator, upTo: limit, bytes: usable)
    let chosen: Option?
    if let timing, candidates.filter({ $0.microBatch > 0 }).count > 1 {
      // Timings on a busy machine move by a few percent: an option within 5% of the fastest
      // counts as as fast, and the one recomputing fewest segments among those wins
      // (candidates come fewest first).
      // Two rounds, the options in turn, so that a slow moment of the machine does not
      // fall on one option alone; each keeps its better round.
      let fitting = candidates.filter { $0.microBatch > 0 }
      var rates = [Double](repeating: 0, count: fitting.count)
      for _ in 0..<2 {
        for (index, option) in fitting.enumerated() { rates[index] = max(rates[index], timing.samplesPerSecond(of: option)) }
      }
      let timed = Array(zip(fitting, rates))
      let fastest = rates.max()!
      chosen = timed.first { $0.1 >= 0.95 * fastest }!.0
    } else {
      chosen = best(of: candidates)
    }
    estimator.recompute(chosen?.segments ?? [], lean: chosen?.lean ?? false)
    return chosen?.segments ?? []
  }
}

/// Times recomputation options on a real model: micro-steps of the option's micro-batch of
/// random samples, with the option's segments recomputing. The model is put back as it was
/// (buffers, counters, random states, segments; gradients zeroed; weights never changed).
public struct RecomputeTiming {
  let model: any Layer
  /// Random samples of the model's kind, and the micro-step's loss.
  let measurement: MemoryMeasurement

  /// `nil` for a model without elements (shape-only), which cannot run.
  public init?(model: any Layer, loss: Loss, sampleShape: [Int]) {
    guard model.parameters.allSatisfy(\.hasElements), let optimizer = try? SGD(learningRate: 0),
      let measurement = try? MemoryMeasurement(model: model, optimizer: optimizer, loss: loss, sampleShape: sampleShape)
    else { return nil }
    (self.model, self.measurement) = (model, measurement)
  }

  /// Samples per second of `option`'s micro-step (forward and backward of its micro-batch,
  /// without the optimizer step, which a window takes once whatever its micro-batches: the
  /// fastest of the runs made in about 60 ms, at least three, after one warm-up). The
  /// weights are not touched; the gradients are zeroed after.
  public func samplesPerSecond(of option: RecomputeChoice.Option) -> Double {
    let running = LayerRunningState(of: model), segments = RecomputePolicy.recomputed(in: model)
    let lean = RecomputePolicy.isLean(model)
    defer {
      measurement.stepper.optimizer.zeroGradients(model.parameters)
      running.restore()
      RecomputePolicy.apply(segments, lean: lean, to: model)
    }
    RecomputePolicy.apply(option.segments, lean: option.lean, to: model)
    let batch = measurement.randomDataset(samples: option.microBatch).batch(at: Array(0..<option.microBatch))
    func microStep() {
      WindowStepper.microStep(
        model: model, loss: measurement.stepper.loss, batch: batch, windowItems: option.microBatch)
    }
    microStep()
    var fastest = Double.infinity, spent = 0.0, runs = 0
    while runs < 3 || spent < 0.06 && runs < 50 {
      let start = DispatchTime.now().uptimeNanoseconds
      microStep()
      let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
      (fastest, spent, runs) = (min(fastest, seconds), spent + seconds, runs + 1)
    }
    return Double(option.microBatch) / fastest
  }
}
