import Accumulation
import DataLoading
import Dispatch
import Memory
import NeuralNetwork
import Optimizers
import Tensors

/// Which segments recompute their activations in backward instead of keeping them
/// (`Layer.recomputing(_:through:)`): transformer blocks and convolution stages
/// (``NeuralNetwork/Sequential/recomputableSegments``); and whether the transformer blocks
/// that keep theirs leave out their attention weights and GELU outputs
/// (``NeuralNetwork/Sequential/selectiveRecomputation``).
public enum RecomputePolicy: String, Sendable, CaseIterable {
  /// Keep every activation.
  case none
  /// Recompute every segment.
  case all
  /// Keep every activation except the transformer blocks' attention weights and GELU
  /// outputs, which their backward computes again (selective recomputation).
  case selective
  /// The segments and micro-batch the planner predicts to train fastest within the budget.
  case auto

  /// The model's segments that can recompute, by layer position (none for a model that is
  /// not a `Sequential`).
  public static func segments(of model: any Layer) -> [Range<Int>] {
    (model as? Sequential)?.recomputableSegments ?? []
  }

  /// The model's segments that are transformer blocks: those that selective recomputation
  /// applies to when they do not recompute whole.
  public static func blockSegments(of model: any Layer) -> [Range<Int>] {
    segments(of: model).filter { (model as? Sequential)?.layers[$0.lowerBound] is TransformerBlock }
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

  /// Whether the model's transformer blocks that keep their activations leave out their
  /// attention weights and GELU outputs (`Sequential.selectiveRecomputation`).
  public static func isSelective(_ model: any Layer) -> Bool {
    (model as? Sequential)?.selectiveRecomputation ?? false
  }

  /// Sets `model` as `policy` says without a budget: `all` every segment recomputing (heads
  /// shared between two threads), `selective` the blocks selective, `none` (and `auto`,
  /// before it chooses) keeping every activation.
  public static func apply(_ policy: RecomputePolicy, to model: any Layer) {
    apply(policy == .all ? segments(of: model) : [], selective: policy == .selective, to: model)
  }

  /// Sets `segments` of `model` to recompute and every other one not; `lean`: recomputed
  /// blocks run their attention one head at a time; `selective`: the blocks that do not
  /// recompute keep their activations but the attention weights and GELU outputs.
  public static func apply(_ segments: [Range<Int>], lean: Bool = false, selective: Bool = false, to model: any Layer) {
    (model as? Sequential)?.recomputedSegments = segments
    (model as? Sequential)?.leanRecomputation = lean
    (model as? Sequential)?.selectiveRecomputation = selective
  }

  /// Sets `model` to recompute as `source` does (the same segments, lean or not, selective
  /// or not), for a real model measured or timed as a shape-only one was planned. Returns
  /// `model`.
  @discardableResult
  public static func applySame(as source: any Layer, to model: any Layer) -> any Layer {
    apply(recomputed(in: source), lean: isLean(source), selective: isSelective(source), to: model)
    return model
  }

  /// `layers 2, 3` or `layers 0–2, 4–6`: segments by layer position.
  public static func describe(_ segments: [Range<Int>]) -> String {
    let parts = segments.map { $0.count == 1 ? "\($0.lowerBound)" : "\($0.lowerBound)–\($0.upperBound - 1)" }
    return (segments.count == 1 && segments[0].count == 1 ? "layer " : "layers ") + parts.joined(separator: ", ")
  }

  /// `layers 2, 3 (activations recomputed in backward, attention one head at a time; …)`:
  /// the recomputed segments, whether lean, and `detail` (such as the cost) after them;
  /// `selective`: the other blocks' attention weights and GELU outputs too (alone when no
  /// segment recomputes).
  public static func describe(
    _ segments: [Range<Int>], lean: Bool, selective: Bool = false, detail: String? = nil
  ) -> String {
    var parts: [String] = []
    if !segments.isEmpty {
      parts.append("activations recomputed in backward" + (lean ? ", attention one head at a time" : ""))
    }
    if selective {
      parts.append((segments.isEmpty ? "" : "other blocks' ") + "attention weights and GELU outputs recomputed in backward")
    }
    if let detail { parts.append(detail) }
    let what = segments.isEmpty ? (selective ? "selective" : "none") : describe(segments)
    return what + (parts.isEmpty ? "" : " (" + parts.joined(separator: "; ") + ")")
  }
}

extension MemoryEstimator {
  /// Sets which segments of the estimator's model recompute (`lean`, `selective`: see
  /// ``RecomputePolicy/apply(_:lean:selective:to:)``), and traces one step so that the
  /// one-time allocations of code that now runs are not counted in a prediction.
  public func recompute(_ segments: [Range<Int>], lean: Bool = false, selective: Bool = false) {
    RecomputePolicy.apply(segments, lean: lean, selective: selective, to: model)
    warmUp()
  }
}

/// The planner's choice of recomputed segments and micro-batch.
public enum RecomputeChoice {
  /// One option: the segments that recompute (`lean`: their attention one head
  /// at a time; `selective`: the other transformer blocks without their attention weights
  /// and GELU outputs), the largest micro-batch that fits (0: none), and the step's
  /// multiply-adds per sample at that micro-batch.
  public struct Option: Sendable, Equatable {
    public var segments: [Range<Int>]
    public var lean: Bool
    public var selective: Bool
    public var microBatch: Int
    public var multiplyAddsPerSample: Double

    public init(
      segments: [Range<Int>], lean: Bool = false, selective: Bool = false, microBatch: Int,
      multiplyAddsPerSample: Double
    ) {
      (self.segments, self.lean, self.selective, self.microBatch, self.multiplyAddsPerSample) =
        (segments, lean, selective, microBatch, multiplyAddsPerSample)
    }

    /// Whether anything is recomputed: a segment, or selectively.
    public var recomputes: Bool { !segments.isEmpty || selective }

    /// Whether this option recomputes at least what `other` does (its segments, lean if
    /// `other` is, selective if `other` is) and holds no more samples: then it cannot be
    /// the faster of the two.
    public func isDominated(by other: Option) -> Bool {
      self != other && other.segments.allSatisfy(segments.contains) && (lean || !other.lean)
        && (selective || !other.selective) && microBatch <= other.microBatch
    }

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
  /// segments, the same set with the other transformer blocks selective, and the set lean,
  /// each only when it holds a larger micro-batch (never faster otherwise). The model's
  /// segments are left as they were.
  public static func options(estimator: MemoryEstimator, upTo limit: Int, bytes: Int) -> [Option] {
    let model = estimator.model
    let before = RecomputePolicy.recomputed(in: model), wasLean = RecomputePolicy.isLean(model)
    let wasSelective = RecomputePolicy.isSelective(model)
    defer { estimator.recompute(before, lean: wasLean, selective: wasSelective) }
    func option(_ segments: [Range<Int>], lean: Bool = false, selective: Bool = false) -> Option {
      estimator.recompute(segments, lean: lean, selective: selective)
      let m = Planner.largestMicroBatch(estimator: estimator, upTo: limit, bytes: bytes) ?? 0
      let work = m > 0 ? Double(estimator.multiplyAdds(microBatch: m)) / Double(m) : 0
      return Option(segments: segments, lean: lean, selective: selective, microBatch: m, multiplyAddsPerSample: work)
    }
    let blocks = RecomputePolicy.blockSegments(of: model)
    return candidates(estimator: estimator).flatMap { segments in
      var found = [option(segments)]
      if !blocks.allSatisfy(segments.contains), found[0].microBatch < limit {
        let selective = option(segments, selective: true)
        if selective.microBatch > found[0].microBatch { found.append(selective) }
      }
      if !segments.isEmpty, found[0].microBatch < limit {
        let lean = option(segments, lean: true)
        if lean.microBatch > found[0].microBatch { found.append(lean) }
      }
      return found
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
  /// activations when none fits. Returns the segments that recompute (whether lean or
  /// selective: ``RecomputePolicy/isLean(_:)``, ``RecomputePolicy/isSelective(_:)``).
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
    // An option recomputing more than another for no more samples cannot be faster.
    let fitting = candidates.filter { option in
      option.microBatch > 0 && !candidates.contains { option.isDominated(by: $0) }
    }
    let chosen: Option?
    if let timing, fitting.count > 1 {
      // Timings on a busy machine move by a few percent: an option within 5% of the fastest
      // counts as as fast, and the one recomputing least among those wins (candidates come
      // fewest segments first, selective before lean).
      // Two rounds, the options in turn, so that a slow moment of the machine does not
      // fall on one option alone; each keeps its better round.
      var rates = [Double](repeating: 0, count: fitting.count)
      for _ in 0..<2 {
        for (index, option) in fitting.enumerated() { rates[index] = max(rates[index], timing.samplesPerSecond(of: option)) }
      }
      let timed = Array(zip(fitting, rates))
      let fastest = rates.max()!
      chosen = timed.first { $0.1 >= 0.95 * fastest }!.0
    } else {
      chosen = best(of: fitting)
    }
    estimator.recompute(chosen?.segments ?? [], lean: chosen?.lean ?? false, selective: chosen?.selective ?? false)
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
    let lean = RecomputePolicy.isLean(model), selective = RecomputePolicy.isSelective(model)
    defer {
      measurement.stepper.optimizer.zeroGradients(model.parameters)
      running.restore()
      RecomputePolicy.apply(segments, lean: lean, selective: selective, to: model)
    }
    RecomputePolicy.apply(option.segments, lean: option.lean, selective: option.selective, to: model)
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
