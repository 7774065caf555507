import ArgumentParser
import Foundation
import GradAccum

struct BenchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench",
    abstract: "Measure memory and throughput of training across micro-batch sizes.",
    discussion: """
      For each micro-batch size: the predicted and the jemalloc-measured peak of a training \
      step, samples per second of training steps (median of --repeat runs) and, with \
      --target-batch, the time of one optimizer step. With --budget the table marks what \
      fits, and with --budget and --target-batch the planner's choice. --csv and --svg \
      write the figures and a chart.
      """)

  @OptionGroup var modelOptions: ModelOptions

  @OptionGroup var lossOptions: LossOptions

  @OptionGroup var optimizerOptions: OptimizerOptions

  @OptionGroup var budgetOptions: BudgetOptions

  @Option(help: "Micro-batch sizes, comma-separated (default: powers of two up to 256, or to the target batch).")
  var microBatches: String?

  @Option(parsing: .unconditional, help: "Samples per optimizer step, for step times (and, with --budget, the planner's choice).")
  var targetBatch: Int?

  @Option(help: "Write the table as CSV to this file.")
  var csv: String?

  @Option(help: "Write a chart of throughput and memory against micro-batch to this SVG file.")
  var svg: String?

  @Option(parsing: .unconditional, help: "Timed runs per size (their median is reported).")
  var `repeat`: Int = 5

  @Option(
    parsing: .unconditional,
    help: "Token models: every sample is a sequence of this many tokens (trained with next-token cross-entropy); reports tokens/s too.")
  var sequenceLength: Int?

  @Option(
    help:
      "Segments (transformer blocks, convolution stages) recompute their activations in backward: none, all, or selective (transformer blocks recompute only their attention weights and GELU outputs).")
  var recompute: RecomputePolicy = .none

  @Flag(
    help:
      "Also sweep with every segment (transformer block, convolution stage) recomputing its activations, and with the transformer blocks recomputing selectively when there are any; show every sweep (tables, CSV column recompute: none, all or selective; chart).")
  var compareRecompute = false

  @Option(
    parsing: .unconditional,
    help: "Run exactly N untimed training steps per size and report nothing else (for instruction counters: callgrind --toggle-collect='*countedSteps*').")
  var steps: Int?

  var loss: LossChoice { lossOptions.loss }

  func validate() throws {
    if let sequenceLength {
      guard sequenceLength >= 1 else { throw UsageError("--sequence-length is \(sequenceLength), expected an integer ≥ 1") }
      guard modelOptions.inputShape == nil else {
        throw UsageError("--sequence-length and --input-shape cannot be mixed: a sequence's shape is its length")
      }
    } else if modelOptions.inputShape == nil {
      throw UsageError("--input-shape is required for bench: the shape of one sample, such as 784 or 1x28x28")
    }
    if compareRecompute && recompute != .none {
      throw UsageError("--compare-recompute sweeps with and without recomputation; leave --recompute at none")
    }
    if recompute == .auto {
      throw UsageError("bench --recompute takes none, all or selective (bench measures each micro-batch as asked; auto is for plan and train)")
    }
    if let steps, steps < 1 { throw UsageError("--steps is \(steps), expected an integer ≥ 1") }
    guard `repeat` >= 1 else { throw UsageError("--repeat is \(`repeat`), expected an integer ≥ 1") }
    if let targetBatch, targetBatch < 1 {
      throw UsageError("--target-batch is \(targetBatch), expected an integer ≥ 1")
    }
    if let microBatches { _ = try parseSizeList(microBatches, option: "--micro-batches") }
  }

  func run() throws {
    let specification = try modelOptions.parsedModel()
    let inputShape = try sequenceLength.map { [$0] } ?? modelOptions.parsedInputShape()!
    let lossFunction = try sequenceLength == nil ? loss.loss : SequenceOptions.loss(loss)
    let budget = try budgetOptions.parsedBudget()
    let shapeModel = try shapeOnlyModel(specification)
    RecomputePolicy.apply(recompute, to: shapeModel)
    if sequenceLength != nil, !(shapeModel.layers.first is Embedding) {
      throw UsageError("--sequence-length needs a token model, one that starts with embedding(V,d)")
    }
    let outputShape = try userFacing { try shapeModel.outputShape(forInput: inputShape) }
    /// Predictions for the shape-only model as it is set to recompute now.
    func makeEstimator() throws -> MemoryEstimator {
      try userFacing {
        try MemoryEstimator(
          model: shapeModel, sampleShape: inputShape, targetShape: lossFunction.targetShape(outputShape: outputShape),
          loss: lossFunction, optimizer: try optimizerOptions.makeOptimizer())
      }
    }
    /// Measurements of a real model set to run as the shape-only one is now.
    func makeMeasurement() throws -> MemoryMeasurement {
      try userFacing {
        try MemoryMeasurement(
          model: try Planner.applySameChoices(as: shapeModel, to: buildModel(specification, seed: 0)),
          optimizer: try optimizerOptions.makeOptimizer(), loss: lossFunction, sampleShape: inputShape)
      }
    }
    let estimator = try makeEstimator()
    var chosen: Int?
    if let budget, let targetBatch {
      chosen = try userFacing {
        try Planner.plan(
          estimator: estimator, targetBatch: targetBatch, budget: budget, layerNames: specification.layers.map(\.text)
        ).microBatch
      }
    }
    var sizes =
      try microBatches.map { try parseSizeList($0, option: "--micro-batches") }
      ?? Array(sequence(first: 1) { $0 * 2 }.prefix { $0 <= (targetBatch ?? 256) })
    if let chosen, !sizes.contains(chosen) { sizes.append(chosen) }
    sizes = Array(Set(sizes)).sorted()
    try checkRunnable(microBatches: sizes, estimator: estimator, option: "--micro-batches")
    if let targetBatch, let smallest = sizes.first {
      try userFacing { try Sweep.checkTimedWindow(targetBatch: targetBatch, microBatch: smallest) }
    }
    // Output files are checked before the sweep, which can take minutes.
    for path in [csv, svg].compactMap({ $0 }) { try checkWritable(path) }
    try requireMemoryMeasurement()
    let sweep = Sweep(estimator: estimator, measurement: try makeMeasurement())
    if let steps {
      for size in sizes {
        sweep.runSteps(microBatch: size, count: steps)
        print("micro-batch \(size): \(steps) training step\(steps == 1 ? "" : "s") (kernels OpenBLAS \(BLASKernels.coreName))")
      }
      return
    }
    let optimizerName = try optimizerOptions.makeOptimizer().name
    let lossName = sequenceLength == nil ? loss.rawValue : "token cross-entropy"
    print(
      "model   \(specification)  (\(sequenceLength.map { "sequences of \($0) tokens" } ?? "input \(inputShape.map(String.init).joined(separator: "x"))"), \(lossName), \(optimizerName))"
    )
    if let budget { print("budget  \(budget) (\(budget.bytes) bytes)") }
    print("kernels OpenBLAS \(BLASKernels.coreName), \(BLASThreading.defaultThreads) thread\(BLASThreading.defaultThreads == 1 ? "" : "s")\(recompute == .none ? "" : "; recompute " + RecomputePolicy.describe(RecomputePolicy.recomputed(in: shapeModel), lean: false, selective: RecomputePolicy.isSelective(shapeModel)))")
    print("")
    let points = table(sweep, sizes: sizes, chosen: chosen, budget: budget)
    var comparisons: [(policy: RecomputePolicy, points: [Sweep.Point])] = []
    if compareRecompute {
      guard !RecomputePolicy.segments(of: shapeModel).isEmpty else {
        throw UsageError("--compare-recompute needs a model with transformer blocks or convolution stages, which are what recomputes")
      }
      let policies: [RecomputePolicy] = RecomputePolicy.blockSegments(of: shapeModel).isEmpty ? [.all] : [.all, .selective]
      for policy in policies {
        RecomputePolicy.apply(policy, to: shapeModel)
        let comparison = Sweep(estimator: try makeEstimator(), measurement: try makeMeasurement())
        print("")
        if policy == .selective {
          print("with every transformer block recomputing only its attention weights and GELU outputs in backward:")
        } else {
          print("with every segment (\(RecomputePolicy.describe(RecomputePolicy.segments(of: shapeModel)))) recomputing its activations in backward:")
        }
        print("")
        comparisons.append((policy, table(comparison, sizes: sizes, chosen: nil, budget: budget)))
      }
    }
    if let csv {
      var lines = [
        "micro_batch,predicted_peak_bytes,measured_peak_bytes,samples_per_second,step_seconds"
          + (sequenceLength == nil ? "" : ",tokens_per_second") + (compareRecompute ? ",recompute" : "")
      ]
      for (policy, series) in [(RecomputePolicy.none, points)] + comparisons {
        for point in series {
          lines.append(
            "\(point.microBatch),\(point.predictedPeakBytes),\(point.measuredPeakBytes),\(String(format: "%.3f", point.samplesPerSecond)),\(point.stepSeconds.map { String(format: "%.6f", $0) } ?? "")"
              + (sequenceLength.map { String(format: ",%.1f", point.samplesPerSecond * Double($0)) } ?? "")
              + (compareRecompute ? ",\(policy.rawValue)" : ""))
        }
      }
      try write(lines.joined(separator: "\n") + "\n", to: csv)
    }
    if let svg {
      var chart = SweepChart(
        title: "\(specification), \(lossName), \(optimizerName)", points: points, budgetBytes: budget?.bytes, chosenMicroBatch: chosen)
      chart.comparisons = comparisons.map { (label: $0.policy == .selective ? "selective" : "recomputing", points: $0.points) }
      try write(chart.svg(), to: svg)
    }
  }

  /// Measures every size of `sizes` on `sweep` and prints them as a table.
  func table(_ sweep: Sweep, sizes: [Int], chosen: Int?, budget: MemoryBudget?) -> [Sweep.Point] {
    print("micro-batch   predicted peak   measured peak    samples/s\(sequenceLength == nil ? "" : "     tokens/s")   step seconds   note")
    var points: [Sweep.Point] = []
    for size in sizes {
      let point = sweep.point(microBatch: size, targetBatch: targetBatch, repeat: `repeat`)
      points.append(point)
      var notes: [String] = []
      if let budget { notes.append(point.measuredPeakBytes <= budget.bytes ? "fits" : "over budget") }
      if size == chosen { notes.append("planned") }
      let tokens = sequenceLength.map { String(format: "   %10.0f", point.samplesPerSecond * Double($0)) } ?? ""
      print(
        String(
          format: "%11d   %14d   %13d   %10.0f%@   %12@   %@", size, point.predictedPeakBytes, point.measuredPeakBytes,
          point.samplesPerSecond, tokens, point.stepSeconds.map { String(format: "%.5f", $0) } ?? "-",
          notes.joined(separator: ", ")))
    }
    return points
  }

  func write(_ text: String, to path: String) throws {
    do {
      try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
    } catch {
      throw UsageError("cannot write \(path): \(error.localizedDescription)")
    }
  }
}
