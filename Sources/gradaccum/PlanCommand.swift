import ArgumentParser
import Foundation
import GradAccum

struct PlanCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "plan",
    abstract: "Find the largest micro-batch whose training step fits in a memory budget.",
    discussion: """
      Predicts the training memory of the model per micro-batch size (parameters, gradients, \
      optimizer state and the transient bytes of one micro-step, rounded as jemalloc rounds) \
      and picks the largest micro-batch under the budget, the accumulation count and the \
      window sizes. --measure also runs real training steps and prints predicted against \
      measured peaks.
      """)

  @OptionGroup var modelOptions: ModelOptions

  @OptionGroup var lossOptions: LossOptions

  @OptionGroup var optimizerOptions: OptimizerOptions

  @OptionGroup var budgetOptions: BudgetOptions

  @Option(parsing: .unconditional, help: "Samples per optimizer step (the effective batch).")
  var targetBatch: Int

  @Option(parsing: .unconditional, help: "Dataset size, to plan the epoch's last window.")
  var datasetSize: Int?

  @Option(
    help:
      "Sequence data (.jsonl, or text with --separator): plan every window of the first epoch by its samples' lengths.")
  var data: String?

  @OptionGroup var sequenceOptions: SequenceOptions

  @Option(parsing: .unconditional, help: "With sequence --data: the shuffle's seed, as train's --seed.")
  var seed: UInt64 = 0

  @Flag(help: "With sequence --data: windows in file order, as train's --no-shuffle.")
  var noShuffle = false

  @Option(
    parsing: .unconditional,
    help: "Plan one process of N training together (mpirun -np N): its share of each window, under its own --budget.")
  var worldSize: Int = 1

  @Option(
    help:
      "Segments (transformer blocks, convolution stages) recompute their activations in backward: none, all, selective (transformer blocks recompute only their attention weights and GELU outputs), or auto (the segments and micro-batch the planner predicts to train fastest within the budget).")
  var recompute: RecomputePolicy = .none

  enum Objective: String, ExpressibleByArgument, CaseIterable {
    case memory, throughput
  }

  @Option(
    help:
      "memory: the largest micro-batch that fits; throughput: the fastest of the micro-batches that fit (powers of two and the largest), by measured optimizer-step time."
  )
  var objective: Objective = .memory

  @Flag(help: "Also run real training steps and report predicted against measured peaks.")
  var measure = false

  @Option(
    help: "With --measure: the micro-batch sizes to measure, comma-separated (default: 1, M/4, M/2, M and M + 1).")
  var measureAt: String?

  @Flag(help: "Print one JSON object instead of a table.")
  var json = false

  var loss: LossChoice { lossOptions.loss }

  func validate() throws {
    guard budgetOptions.budget != nil else {
      throw UsageError("--budget is required for plan: the memory to plan for, such as 64MB")
    }
    guard targetBatch >= 1 else { throw UsageError("--target-batch is \(targetBatch), expected an integer ≥ 1") }
    if let datasetSize, datasetSize < 1 {
      throw UsageError("--dataset-size is \(datasetSize), expected an integer ≥ 1")
    }
    guard worldSize >= 1 else { throw UsageError("--world-size is \(worldSize), expected an integer ≥ 1") }
    if let measureAt {
      guard measure else { throw UsageError("--measure-at needs --measure") }
      _ = try parseSizeList(measureAt, option: "--measure-at")
    }
    if let data {
      try sequenceOptions.check(path: data)
      guard sequenceOptions.isSequenceData(path: data) else {
        throw UsageError(
          "plan --data reads sequence data (.jsonl, or text with --separator), not \(data); for a CSV file give --input-shape and --dataset-size")
      }
      if objective == .throughput { throw UsageError("--objective throughput applies to samples of one shape, not sequence --data") }
      if datasetSize != nil { throw UsageError("--dataset-size and --data cannot be mixed: the data set gives the size") }
      return
    }
    guard modelOptions.inputShape != nil else {
      throw UsageError("--input-shape is required for plan: the shape of one sample, such as 784 or 1x28x28")
    }
  }

  func run() throws {
    if let data { return try planSequences(path: data) }
    // Predictions need only jemalloc's size classes; measurements need jemalloc to be the
    // allocator.
    if measure || objective == .throughput {
      try requireMemoryMeasurement()
    }
    let budget = try budgetOptions.parsedBudget()!
    let specification = try modelOptions.parsedModel()
    let inputShape = try modelOptions.parsedInputShape()!
    let optimizer = try optimizerOptions.makeOptimizer()
    // The planned model is shape-only: planning allocates none of its parameters.
    let model = try shapeOnlyModel(specification)
    let outputShape = try userFacing { try model.outputShape(forInput: inputShape) }
    let targetShape = loss.loss.targetShape(outputShape: outputShape)
    let estimator = try userFacing {
      try MemoryEstimator(
        model: model, sampleShape: inputShape, targetShape: targetShape, loss: loss.loss, optimizer: optimizer,
        processes: worldSize)
    }
    // With several processes, one process's plan: the largest share of a window, and the
    // gradient reduction.
    let share = Trainer.largestShare(samples: targetBatch, processes: worldSize)
    let recomputeReport = RecomputeReport.make(
      estimator: estimator, policy: recompute, upTo: share, budget: budget,
      timing: try recomputeTiming(loss: loss.loss, sampleShape: inputShape))
    let reduction =
      worldSize > 1 ? Planner.reductionWorkspaceEstimate(elements: PersistentMemory.communicationElements(model.parameters)) : 0
    var plan = try userFacing {
      try Planner.plan(
        estimator: estimator, targetBatch: share, budget: budget,
        datasetSize: datasetSize.map { Self.largestShare(datasetSize: $0, targetBatch: targetBatch, processes: worldSize) },
        layerNames: specification.layers.map(\.text), reductionWorkspaceBytes: reduction, processes: worldSize)
    }
    var candidates: [(microBatch: Int, stepSeconds: Double)] = []
    if objective == .throughput {
      // Candidates are timed on whole steps of the target batch: sizes too small for that
      // to end in reasonable time are left out.
      try checkRunnable(microBatches: [plan.microBatch], estimator: estimator, option: "--objective throughput")
      try userFacing { try Sweep.checkTimedWindow(targetBatch: targetBatch, microBatch: plan.microBatch) }
      let measurement = try userFacing {
        try MemoryMeasurement(
          model: try Planner.applySameChoices(as: model, to: buildModel(specification, seed: 0)),
          optimizer: try optimizerOptions.makeOptimizer(), loss: loss.loss,
          sampleShape: inputShape)
      }
      let sweep = Sweep(estimator: estimator, measurement: measurement)
      let sizes = Set(sequence(first: 1) { $0 * 2 }.prefix { $0 < plan.microBatch } + [plan.microBatch]).sorted()
        .filter { (try? Sweep.checkTimedWindow(targetBatch: targetBatch, microBatch: $0)) != nil }
      for size in sizes {
        candidates.append((size, sweep.point(microBatch: size, targetBatch: targetBatch, repeat: 3).stepSeconds!))
      }
      let fastest = candidates.min { $0.stepSeconds < $1.stepSeconds }!.microBatch
      let largest = plan.microBatch
      plan = Planner.makePlan(
        estimator: estimator, targetBatch: targetBatch, budget: budget, datasetSize: datasetSize,
        layerNames: specification.layers.map(\.text), microBatch: fastest, marginBytes: plan.marginBytes)
      plan.largestFittingMicroBatch = largest
    }
    var measurements: [(microBatch: Int, predicted: Int, measured: Int)] = []
    if measure {
      try checkRunnable(microBatches: measuredSizes(plan: plan), estimator: estimator, option: "--measure-at")
      // Measured as planned: the same segments recompute.
      let real = Planner.applySameChoices(as: model, to: try buildModel(specification, seed: 0))
      let measurement = try userFacing {
        try MemoryMeasurement(
          model: real, optimizer: try optimizerOptions.makeOptimizer(), loss: loss.loss, sampleShape: inputShape)
      }
      for m in measuredSizes(plan: plan) {
        measurements.append((m, estimator.estimate(microBatch: m).peakBytes, measurement.peakBytes(microBatch: m)))
      }
    }
    if json {
      print(jsonObject(plan: plan, measurements: measurements, candidates: candidates, recompute: recomputeReport))
      return
    }
    print(
      "model   \(specification)  (input \(inputShape.map(String.init).joined(separator: "x")), \(loss.rawValue), \(optimizer.name))"
    )
    print(plan)
    if let recomputeReport {
      print("")
      for line in recomputeReport.lines { print(line) }
    }
    if !candidates.isEmpty {
      print("")
      print("objective: throughput (median optimizer-step time of \(targetBatch) samples, 3 runs)")
      for (size, seconds) in candidates {
        print(
          String(format: "  micro-batch %6d   %9.5f s%@", size, seconds, size == plan.microBatch ? "   fastest" : ""))
      }
    }
    if !measurements.isEmpty {
      print("")
      print("micro-batch   predicted peak   measured peak   difference   within budget")
      for (m, predicted, measured) in measurements {
        let difference = Double(predicted - measured) / Double(measured) * 100
        print(
          String(
            format: "%11d   %14d   %13d   %+9.3f%%   %@", m, predicted, measured, difference,
            measured <= plan.budgetBytes ? "yes" : "no"))
      }
    }
  }

  /// The samples the busiest process holds of a data set of `datasetSize` (its shares of
  /// every window), for the last window of a per-process plan.
  static func largestShare(datasetSize: Int, targetBatch: Int, processes: Int) -> Int {
    let full = datasetSize / targetBatch, rest = datasetSize % targetBatch
    return full * Trainer.largestShare(samples: targetBatch, processes: processes)
      + Trainer.largestShare(samples: rest, processes: processes)
  }

  /// `M`, `M + 1` (when below the target batch), and a few smaller sizes, or --measure-at.
  func measuredSizes(plan: Plan) -> [Int] {
    if let measureAt, let sizes = try? parseSizeList(measureAt, option: "--measure-at") { return sizes }
    let m = plan.microBatch
    var sizes: Set<Int> = [1, m, max(1, m / 2), max(1, m / 4)]
    if m < plan.targetBatch { sizes.insert(m + 1) }
    return sizes.sorted()
  }

  /// `plan --json`: the plan, and with `--measure` the measurements, in the contract's keys.
  struct PlanOutput: Encodable {
    struct SizeCount: Encodable { var size: Int, count: Int }
    struct Layer: Encodable { var position: Int, name: String, activationBytes: Int }
    struct Candidate: Encodable { var microBatch: Int, stepSeconds: Double }
    struct Measurement: Encodable { var microBatch: Int, predictedPeakBytes: Int, measuredPeakBytes: Int }
    var targetBatch: Int
    var microBatch: Int
    var accumulationSteps: Int
    /// Listed while short; a huge window (10^12 samples) is described by its counts only.
    var windowSizes: [Int]?
    var windowSizeCounts: [SizeCount]
    var lastWindowSizes: [Int]?
    var datasetSize: Int?
    var budgetBytes: Int
    var marginBytes: Int
    var persistentBytes: Int
    var parameterBytes: Int
    var gradientBytes: Int
    var optimizerStateBytes: Int
    var bufferBytes: Int
    var transientBytes: Int
    var worldSize: Int
    var reductionBufferBytes: Int
    var reductionWorkspaceBytes: Int
    var predictedPeakBytes: Int
    var headroomBytes: Int
    var layers: [Layer]
    var objective: String
    var candidates: [Candidate]?
    var measurements: [Measurement]?
    /// Models with recomputable segments: whether any recomputes, which (first and last
    /// layer positions), whether their attention runs one head at a time, whether the other
    /// transformer blocks recompute their attention weights and GELU outputs, the
    /// arithmetic per sample against keeping every activation, and the smallest budgets.
    var recompute: Bool?
    var recomputedSegments: [[Int]]?
    var recomputeLean: Bool?
    var recomputeSelective: Bool?
    var recomputeArithmeticRatio: Double?
    var smallestBudgetBytesKeepingActivations: Int?
    var smallestBudgetBytesSelective: Int?
    var smallestBudgetBytesRecomputing: Int?
  }

  func jsonObject(
    plan: Plan, measurements: [(microBatch: Int, predicted: Int, measured: Int)],
    candidates: [(microBatch: Int, stepSeconds: Double)], recompute: RecomputeReport?
  ) -> String {
    JSONOutput.line(
      PlanOutput(
        targetBatch: plan.targetBatch, microBatch: plan.microBatch, accumulationSteps: plan.accumulationCount,
        windowSizes: plan.windowSizes.count <= 4096 ? Array(plan.windowSizes) : nil,
        windowSizeCounts: plan.windowSizes.sizeCounts.map { .init(size: $0.size, count: $0.count) },
        lastWindowSizes: plan.lastWindowSizes.flatMap { $0.count <= 4096 ? Array($0) : nil },
        datasetSize: plan.datasetSize, budgetBytes: plan.budgetBytes, marginBytes: plan.marginBytes,
        persistentBytes: plan.persistent.totalBytes, parameterBytes: plan.persistent.parameterBytes,
        gradientBytes: plan.persistent.gradientBytes, optimizerStateBytes: plan.persistent.optimizerStateBytes,
        bufferBytes: plan.persistent.bufferBytes, transientBytes: plan.transientBytes, worldSize: plan.processes,
        reductionBufferBytes: plan.persistent.communicationBytes, reductionWorkspaceBytes: plan.reductionWorkspaceBytes,
        predictedPeakBytes: plan.predictedPeakBytes, headroomBytes: plan.headroomBytes,
        layers: plan.layerActivations.map { .init(position: $0.position, name: $0.name, activationBytes: $0.bytes) },
        objective: objective.rawValue,
        candidates: candidates.isEmpty ? nil : candidates.map { .init(microBatch: $0.microBatch, stepSeconds: $0.stepSeconds) },
        measurements: measure
          ? measurements.map { .init(microBatch: $0.microBatch, predictedPeakBytes: $0.predicted, measuredPeakBytes: $0.measured) }
          : nil, recompute: recompute?.recomputes, recomputedSegments: recompute?.segmentBounds,
        recomputeLean: recompute?.lean, recomputeSelective: recompute?.selective,
        recomputeArithmeticRatio: recompute?.workRatio, smallestBudgetBytesKeepingActivations: recompute?.smallestKeeping,
        smallestBudgetBytesSelective: recompute?.smallestSelective,
        smallestBudgetBytesRecomputing: recompute?.smallestRecomputing))
  }
}

extension PlanCommand {
  /// With `--recompute auto`, a real copy of the model to time the options on (the choice
  /// is measured, as in training).
  func recomputeTiming(loss: Loss, sampleShape: [Int]) throws -> RecomputeTiming? {
    guard recompute == .auto else { return nil }
    return RecomputeTiming(
      model: try buildModel(try modelOptions.parsedModel(), seed: 0), loss: loss, sampleShape: sampleShape)
  }

  /// `plan --data FILE`: every window of the first epoch composed by length, with the
  /// padding saved, the heaviest micro-batches and (with --measure) their measured peaks.
  func planSequences(path: String) throws {
    if measure { try requireMemoryMeasurement() }
    let budget = try budgetOptions.parsedBudget()!
    let specification = try modelOptions.parsedModel()
    let optimizer = try optimizerOptions.makeOptimizer()
    let loss = try SequenceOptions.loss(self.loss)
    let model = try shapeOnlyModel(specification)
    let data = try sequenceOptions.load(path: path)
    try sequenceOptions.check(data, model: model, path: path)
    // The choice of recomputation at the longest sample, as the trainer makes it.
    let longest = data.lengths.max() ?? 1
    let longestEstimator = try userFacing {
      try MemoryEstimator(
        model: model, sampleShape: [longest], targetShape: [longest], loss: loss, optimizer: optimizer,
        processes: worldSize)
    }
    let recomputeReport = RecomputeReport.make(
      estimator: longestEstimator, policy: recompute,
      upTo: Trainer.largestShare(samples: targetBatch, processes: worldSize), budget: budget,
      timing: try recomputeTiming(loss: loss, sampleShape: [longest]))
    let planner = try userFacing {
      try SequencePlanner(
        model: model, loss: loss, optimizer: optimizer,
        targetBatch: Trainer.largestShare(samples: targetBatch, processes: worldSize), budget: budget,
        processes: worldSize)
    }
    try sequenceOptions.checkFit(data, planner: planner, path: path)
    let lengths = data.lengths
    let order = DataLoader.sampleOrder(count: data.count, epoch: 0, shuffle: !noShuffle, seed: seed)
    // Every process's share of every window (one share per window alone).
    let windows = stride(from: 0, to: data.count, by: targetBatch).flatMap { start in
      let samples = min(targetBatch, data.count - start)
      var offset = start
      return Trainer.shares(lengths: order[start..<(start + samples)].map { lengths[$0] }, processes: worldSize).map {
        share in
        defer { offset += share }
        return order[offset..<(offset + share)].map { lengths[$0] }
      }
    }.filter { !$0.isEmpty }
    let plan = try userFacing { try planner.plan(windowLengths: windows) }
    var measurements: [(shape: SequencePlan.MicroBatchShape, predicted: Int, measured: Int)] = []
    if measure {
      // The heaviest micro-batches, and one sample of the longest length.
      var shapes = plan.heaviest.prefix(3).map(\.shape)
      let longestAlone = SequencePlan.MicroBatchShape(samples: 1, paddedLength: plan.longestLength)
      if !shapes.contains(longestAlone) { shapes.append(longestAlone) }
      // Measured as planned: the same segments recompute.
      let real = Planner.applySameChoices(as: model, to: try buildModel(specification, seed: 0))
      for shape in shapes {
        let measurement = try userFacing {
          try MemoryMeasurement(
            model: real, optimizer: try optimizerOptions.makeOptimizer(), loss: loss, sampleShape: [shape.paddedLength])
        }
        let predicted = try userFacing { try planner.estimate(samples: shape.samples, paddedLength: shape.paddedLength) }
        measurements.append((shape, predicted.peakBytes, measurement.peakBytes(microBatch: shape.samples)))
      }
    }
    if json {
      var output = SequencePlanOutput(plan: plan, measurements: measure ? measurements : nil)
      output.recompute = recomputeReport?.recomputes
      output.recomputedSegments = recomputeReport?.segmentBounds
      output.recomputeLean = recomputeReport?.lean
      output.recomputeSelective = recomputeReport?.selective
      output.recomputeArithmeticRatio = recomputeReport?.workRatio
      output.smallestBudgetBytesKeepingActivations = recomputeReport?.smallestKeeping
      output.smallestBudgetBytesSelective = recomputeReport?.smallestSelective
      output.smallestBudgetBytesRecomputing = recomputeReport?.smallestRecomputing
      print(JSONOutput.line(output))
      return
    }
    print("model   \(specification)  (\(data.count) sequences from \(path), token cross-entropy, \(optimizer.name))")
    print(plan.summary)
    if let recomputeReport { for line in recomputeReport.lines { print(line) } }
    if !measurements.isEmpty {
      print("")
      print("samples × padded length   predicted peak   measured peak   difference   within budget")
      for (shape, predicted, measured) in measurements {
        let difference = Double(predicted - measured) / Double(measured) * 100
        print(
          String(
            format: "%7d × %-14d   %14d   %13d   %+9.3f%%   %@", shape.samples, shape.paddedLength, predicted, measured,
            difference, measured <= plan.budgetBytes ? "yes" : "no"))
      }
    }
  }

  /// `plan --data FILE --json`.
  struct SequencePlanOutput: Encodable {
    struct Range: Encodable { var min: Int, mean: Double, max: Int }
    struct Shape: Encodable { var samples: Int, paddedLength: Int, predictedPeakBytes: Int }
    struct Measurement: Encodable { var samples: Int, paddedLength: Int, predictedPeakBytes: Int, measuredPeakBytes: Int }
    var targetBatch: Int
    var budgetBytes: Int
    var marginBytes: Int
    var persistentBytes: Int
    var windows: Int
    var microBatchesPerWindow: Range
    var tokens: Int
    var paddedTokens: Int
    var windowPaddedTokens: Int
    var paddingFraction: Double
    var windowPaddingFraction: Double
    var longestLength: Int
    var largestPredictedPeakBytes: Int
    var smallestBudgetBytes: Int
    var heaviest: [Shape]
    var measurements: [Measurement]?
    var recompute: Bool?
    var recomputedSegments: [[Int]]?
    var recomputeLean: Bool?
    var recomputeSelective: Bool?
    var recomputeArithmeticRatio: Double?
    var smallestBudgetBytesKeepingActivations: Int?
    var smallestBudgetBytesSelective: Int?
    var smallestBudgetBytesRecomputing: Int?

    init(plan: SequencePlan, measurements: [(shape: SequencePlan.MicroBatchShape, predicted: Int, measured: Int)]?) {
      let counts = plan.microBatchCounts
      targetBatch = plan.targetBatch
      budgetBytes = plan.budgetBytes
      marginBytes = plan.marginBytes
      persistentBytes = plan.persistent.totalBytes
      windows = plan.windows
      microBatchesPerWindow = Range(
        min: counts.min() ?? 0, mean: Double(counts.reduce(0, +)) / Double(max(counts.count, 1)), max: counts.max() ?? 0)
      tokens = plan.tokens
      paddedTokens = plan.paddedTokens
      windowPaddedTokens = plan.windowPaddedTokens
      paddingFraction = plan.paddingFraction
      windowPaddingFraction = plan.windowPaddingFraction
      longestLength = plan.longestLength
      largestPredictedPeakBytes = plan.largestPredictedPeakBytes
      smallestBudgetBytes = plan.smallestBudgetBytes
      heaviest = plan.heaviest.prefix(8).map {
        Shape(samples: $0.shape.samples, paddedLength: $0.shape.paddedLength, predictedPeakBytes: $0.predictedPeakBytes)
      }
      self.measurements = measurements?.map {
        Measurement(
          samples: $0.shape.samples, paddedLength: $0.shape.paddedLength, predictedPeakBytes: $0.predicted,
          measuredPeakBytes: $0.measured)
      }
    }
  }
}
