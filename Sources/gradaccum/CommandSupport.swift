import ArgumentParser
import Foundation
import GradAccum
import Tensors

/// A problem with what the user asked for, printed as one line.
struct UsageError: Error, CustomStringConvertible {
  let description: String
  init(_ description: String) { self.description = description }
}

/// Runs a library call, turning its typed error into a one-line message; where the library
/// gives advice, the advice is given in flags.
func userFacing<Result>(_ body: () throws -> Result) throws -> Result {
  do {
    return try body()
  } catch let error as PlanningError {
    guard let budget = error.smallestBudgetBytes else { throw UsageError(error.description) }
    throw UsageError(error.problemDescription + "; give at least --budget \(budget)")
  } catch let error as TrainingError {
    switch error {
    case .nonFinite:
      throw UsageError(
        error.problemDescription
          + "; lower the learning rate or check the data, and continue with --resume if a checkpoint was written")
    case .budgetExceeded:
      throw UsageError(
        error.problemDescription
          + "; give at least --budget \(error.sufficientBudgetBytes!) and continue with --resume if a checkpoint was written")
    case .notACheckpoint:
      throw UsageError(error.problemDescription + "; to start from weights alone, use --init")
    default:
      throw UsageError(error.description)
    }
  } catch let error as CustomStringConvertible {
    throw UsageError(error.description)
  }
}

/// Parses a comma-separated list of positive sizes (`1,8,64`) given to `option`.
func parseSizeList(_ text: String, option: String) throws -> [Int] {
  let sizes = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
  guard !sizes.isEmpty, sizes.allSatisfy({ ($0 ?? 0) >= 1 }) else {
    throw UsageError("\(option) \"\(abbreviated(text))\" is not a list of positive integers such as 1,8,64")
  }
  return sizes.map { $0! }
}

/// Parses `784` or `1x8x8` into a shape (``SampleShape``).
func parseShape(_ text: String, option: String) throws -> [Int] {
  guard let shape = SampleShape.parse(text) else {
    throw UsageError(
      "\(option) \"\(abbreviated(text))\" is not a shape; expected positive integers joined by x, such as 784 or 1x8x8, with at most 2^40 values"
    )
  }
  return shape
}

/// The loss named on the command line.
enum LossChoice: String, ExpressibleByArgument, CaseIterable {
  case mse, crossEntropy = "cross-entropy", bce

  var loss: Loss {
    switch self {
    case .mse: .meanSquaredError
    case .crossEntropy: .crossEntropy
    case .bce: .binaryCrossEntropy
    }
  }
}

extension NonFinitePolicy: ExpressibleByArgument {}
extension RecomputePolicy: ExpressibleByArgument {}

/// What recomputation costs and saves for a model, for `plan`: the smallest budget with
/// activations kept, with transformer blocks selective and with every segment recomputed,
/// and the choice made.
struct RecomputeReport {
  /// The segments that can recompute, and those that do.
  var segments: [Range<Int>]
  var recomputed: [Range<Int>]
  /// Whether the recomputed blocks run their attention one head at a time.
  var lean: Bool
  /// Whether the other transformer blocks recompute their attention weights and GELU
  /// outputs.
  var selective: Bool
  var smallestKeeping: Int
  /// With transformer blocks recomputing selectively (`nil` without blocks).
  var smallestSelective: Int?
  var smallestRecomputing: Int
  /// The step's multiply-adds per sample with the chosen segments, over those keeping
  /// every activation (at one sample): the predicted cost of recomputing.
  var workRatio: Double

  var recomputes: Bool { !recomputed.isEmpty || selective }
  /// The recomputed segments as `[first, last]` layer positions.
  var segmentBounds: [[Int]] { recomputed.map { [$0.lowerBound, $0.upperBound - 1] } }

  /// Measures both extremes on `estimator` (the model's segments are set to the choice
  /// `policy` makes after), or `nil` for a model without recomputable segments.
  static func make(
    estimator: MemoryEstimator, policy: RecomputePolicy, upTo limit: Int, budget: MemoryBudget,
    timing: RecomputeTiming? = nil
  ) -> RecomputeReport? {
    let segments = RecomputePolicy.segments(of: estimator.model)
    guard !segments.isEmpty else { return nil }
    func measure(_ chosen: [Range<Int>], lean: Bool = false, selective: Bool = false) -> (smallest: Int, work: Int) {
      estimator.recompute(chosen, lean: lean, selective: selective)
      return (
        Planner.smallestBudget(peakBytes: estimator.estimate(microBatch: 1).peakBytes, fixedMargin: nil),
        estimator.multiplyAdds(microBatch: 1)
      )
    }
    // The smallest budget recomputing is the lean one's (no more memory than sharing heads).
    let keeping = measure([]), recomputing = measure(segments, lean: true)
    let hasBlocks = !RecomputePolicy.blockSegments(of: estimator.model).isEmpty
    let selectiveSmallest = hasBlocks ? measure([], selective: true).smallest : nil
    let chosen: [Range<Int>]
    switch policy {
    case .none, .selective:
      chosen = []
      estimator.recompute(chosen, selective: policy == .selective)
    case .all:
      chosen = segments
      RecomputeChoice.applyAll(estimator: estimator, budget: budget, marginBytes: nil)
    case .auto:
      chosen = RecomputeChoice.applyBest(
        estimator: estimator, upTo: limit, budget: budget, marginBytes: nil, timing: timing)
    }
    let lean = RecomputePolicy.isLean(estimator.model), selective = RecomputePolicy.isSelective(estimator.model)
    let work = chosen.isEmpty && !selective ? keeping.work : estimator.multiplyAdds(microBatch: 1)
    return RecomputeReport(
      segments: segments, recomputed: chosen, lean: lean && !chosen.isEmpty, selective: selective,
      smallestKeeping: keeping.smallest, smallestSelective: selectiveSmallest,
      smallestRecomputing: recomputing.smallest, workRatio: Double(work) / Double(max(keeping.work, 1)))
  }

  var lines: [String] {
    let cost = String(format: "%+.0f%%", (workRatio - 1) * 100)
    return [
      recomputed.isEmpty && selective
        ? "recompute         \(RecomputePolicy.describe([], lean: false, selective: true, detail: "\(cost) arithmetic per sample"))"
        : recomputes
        ? "recompute         \(recomputed.count) of \(segments.count) segments, \(RecomputePolicy.describe(recomputed, lean: lean, selective: selective, detail: "\(cost) arithmetic per sample"))"
        : "recompute         none (activations kept; \(segments.count) segment\(segments.count == 1 ? "" : "s") could recompute: \(RecomputePolicy.describe(segments)))",
      "smallest budget   \(formatBytes(smallestKeeping)) keeping activations, "
        + (smallestSelective.map { "\(formatBytes($0)) selective, " } ?? "")
        + "\(formatBytes(smallestRecomputing)) recomputing every segment",
    ]
  }
}

/// The optimizer named on the command line.
enum OptimizerChoice: String, ExpressibleByArgument, CaseIterable {
  case sgd, adam, adamw
}

/// The data file a command reads samples from: CSV, or sequences (JSON Lines, or text
/// with a separator).
struct DataOptions: ParsableArguments {
  @Option(
    help:
      "CSV file with a header row (features are all columns but the label); or sequences: a .jsonl file with input_ids (and labels) per line, or text with --separator.")
  var data: String

  @OptionGroup var sequenceOptions: SequenceOptions

  /// Whether the file holds sequences.
  var isSequenceData: Bool { sequenceOptions.isSequenceData(path: data) }

  @Option(help: "The label column, by header name or 0-based index (default: the last).")
  var labelColumn: String?

  @Option(
    parsing: .unconditional,
    help: "Multiply every feature by this factor, such as 0.0625 for the digits' pixels 0–16 (default 1).")
  var featureScale: Float = 1

  func validate() throws {
    try sequenceOptions.check(path: data)
    guard featureScale.isFinite && featureScale != 0 else {
      throw UsageError("--feature-scale must be a finite, non-zero number, got \(featureScale)")
    }
  }

  /// The samples, with labels as `loss` needs them, features folded to `inputShape` and
  /// multiplied by `--feature-scale`.
  func load(loss: Loss, inputShape: [Int]?) throws -> TensorDataset {
    let dataset = try userFacing {
      try CSVReader.load(path: data, labelColumn: labelColumn, labelKind: loss.labelKind, inputShape: inputShape)
    }
    return featureScale == 1 ? dataset : TensorDataset(inputs: dataset.inputs * featureScale, targets: dataset.targets)
  }
}

/// The model and the shape of one sample.
struct ModelOptions: ParsableArguments {
  @Option(help: "The model, PyTorch layer names in lower case: \"linear(784,512) relu linear(512,10)\".")
  var model: String

  @Option(help: "The shape of one sample, D or CxHxW (default: the number of feature columns).")
  var inputShape: String?

  func parsedModel() throws -> ModelSpecification {
    try userFacing { try ModelSpecification(parsing: model) }
  }

  /// `--input-shape`, parsed, if given.
  func parsedInputShape() throws -> [Int]? {
    try inputShape.map { try parseShape($0, option: "--input-shape") }
  }
}

/// The loss.
struct LossOptions: ParsableArguments {
  @Option(help: "Loss: mse, cross-entropy or bce.")
  var loss: LossChoice = .crossEntropy
}

/// The memory budget.
struct BudgetOptions: ParsableArguments {
  @Option(help: "Memory budget, such as 64MB, 64MiB, 1.5GB or bytes.")
  var budget: String?

  /// `--budget`, parsed, if given.
  func parsedBudget() throws -> MemoryBudget? {
    try budget.map { text in try userFacing { try MemoryBudget(parsing: text) } }
  }
}

/// The optimizer and its hyperparameters.
struct OptimizerOptions: ParsableArguments {
  @Option(help: "Optimizer: sgd, adam or adamw.")
  var optimizer: OptimizerChoice = .sgd

  @Option(parsing: .unconditional, help: "Learning rate (default: 0.01 for sgd, 0.001 for adam and adamw).")
  var lr: Float?

  @Option(parsing: .unconditional, help: "SGD momentum.")
  var momentum: Float = 0

  @Option(parsing: .unconditional, help: "SGD dampening.")
  var dampening: Float = 0

  @Flag(help: "SGD Nesterov momentum.")
  var nesterov = false

  @Option(parsing: .unconditional, help: "Weight decay (default: 0, and 0.01 for adamw as in PyTorch).")
  var weightDecay: Float?

  @Flag(help: "Adam and AdamW: keep the maximum of the second moment (AMSGrad).")
  var amsgrad = false

  func validate() throws {
    if let lr, !(lr > 0 && lr.isFinite) { throw UsageError("--lr must be positive, got \(lr)") }
    for (name, value) in [("--momentum", momentum), ("--dampening", dampening), ("--weight-decay", weightDecay ?? 0)]
    where !(value >= 0 && value.isFinite) {
      throw UsageError("\(name) must be zero or positive, got \(value)")
    }
  }

  func makeOptimizer() throws -> Optimizer {
    if optimizer != .sgd && (momentum != 0 || dampening != 0 || nesterov) {
      throw UsageError("--momentum, --dampening and --nesterov apply to sgd only, not \(optimizer.rawValue)")
    }
    if optimizer == .sgd && amsgrad { throw UsageError("--amsgrad applies to adam and adamw only") }
    return try userFacing {
      switch optimizer {
      case .sgd:
        try SGD(
          learningRate: lr ?? 0.01, momentum: momentum, dampening: dampening, weightDecay: weightDecay ?? 0,
          nesterov: nesterov)
      case .adam: try Adam(learningRate: lr ?? 1e-3, weightDecay: weightDecay ?? 0, amsgrad: amsgrad)
      case .adamw: try AdamW(learningRate: lr ?? 1e-3, weightDecay: weightDecay ?? 1e-2, amsgrad: amsgrad)
      }
    }
  }
}

extension Loss {
  /// What the label column must hold for this loss.
  var labelKind: LabelKind {
    if case .crossEntropy = kind { return .classIndex }
    return .value
  }
}

/// Checks that the model takes the data's samples and that the loss can take the data's
/// targets (the library's rule, ``Loss/checkTargetValues(outputShape:targets:)``), naming
/// the file.
func checkCompatible(model: Sequential, loss: Loss, dataset: TensorDataset, path: String) throws {
  let outputShape = try userFacing { try model.outputShape(forInput: dataset.sampleShape) }
  do {
    try loss.checkTargetValues(outputShape: outputShape, targets: dataset.targets)
  } catch {
    throw UsageError("\(path): \(error)")
  }
}

/// The model with shapes only (no parameter holds elements), after checking that its
/// parameters could fit in the memory this process may have: what planning, and every
/// check before training, works on.
func shapeOnlyModel(_ specification: ModelSpecification, seed: UInt64 = 0) throws -> Sequential {
  let shapeOnly = ShapeTracing.run(AllocationTrace()) { specification.build(seed: seed) }
  let (bytes, overflow) = shapeOnly.parameterCount.multipliedReportingOverflow(by: MemoryLayout<Float>.stride)
  let limit = MachineMemory.limitBytes
  guard !overflow, bytes <= limit / 2 else {
    throw UsageError(
      "the model has \(shapeOnly.parameterCount) parameters (\(overflow ? "more than 2^63" : "\(bytes)") bytes), more than half of the memory this process may have (\(limit) bytes)"
    )
  }
  return shapeOnly
}

/// Builds the model for real, after ``shapeOnlyModel(_:seed:)``'s check (so an absurd
/// `linear(1000000,1000000)` is an error, not a failed allocation).
func buildModel(_ specification: ModelSpecification, seed: UInt64) throws -> Sequential {
  _ = try shapeOnlyModel(specification, seed: seed)
  return specification.build(seed: seed)
}

/// Fails with one line unless a training step of each of `microBatches` samples can be
/// run here: its predicted peak within half of the memory this process may have.
func checkRunnable(microBatches: [Int], estimator: MemoryEstimator, option: String) throws {
  let limit = MachineMemory.limitBytes / 2
  let largest = estimator.largestFittingMicroBatch(bytes: limit)
  for size in microBatches {
    let peak = size <= largest ? estimator.estimate(microBatch: size).peakBytes : nil
    guard let peak, peak <= limit else {
      throw UsageError(
        "\(option): a training step of \(size) samples needs \(peak.map { "\($0) bytes" } ?? "more memory than can be counted"), more than half of the memory this process may have (\(MachineMemory.limitBytes) bytes); choose smaller micro-batches"
      )
    }
  }
}

/// Fails with one line when the directory of `path` cannot take a new file, so that a long
/// run does not end without its output.
func checkWritable(_ path: String) throws {
  let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
  guard FileManager.default.isWritableFile(atPath: directory) else {
    throw UsageError("cannot write \(path): directory \(directory) does not exist or is not writable")
  }
}

/// Fails with one line unless jemalloc serves this process's allocations, which every
/// measured training step needs (called once a command's inputs have been checked).
func requireMemoryMeasurement() throws {
  try userFacing { try MemoryStatistics.verifyJemallocIsTheAllocator() }
}

/// How sequence data files are read: JSON Lines (`.jsonl`, `input_ids` and optional
/// `labels`) or text with a separator line (tokens are bytes).
struct SequenceOptions: ParsableArguments {
  @Option(
    help:
      "Text data: samples are separated by lines equal to this, such as %; tokens are bytes (a vocabulary of 256).")
  var separator: String?

  @Option(parsing: .unconditional, help: "Sequence data: keep each sample's first N tokens.")
  var maxLength: Int?

  /// Whether `path` is read as sequences: a `.jsonl` file, or any file with --separator.
  func isSequenceData(path: String) -> Bool { separator != nil || path.lowercased().hasSuffix(".jsonl") }

  func check(path: String) throws {
    if let maxLength, maxLength < 1 { throw UsageError("--max-length is \(maxLength), expected an integer ≥ 1") }
    if path.lowercased().hasSuffix(".txt") && separator == nil {
      throw UsageError(
        "\(path) is text: give --separator LINE, the line that separates its samples (such as %); tokens are bytes")
    }
    if !isSequenceData(path: path) && maxLength != nil {
      throw UsageError("--max-length applies to sequence data (.jsonl, or text with --separator), not \(path)")
    }
  }

  /// The samples of `path`, cut to --max-length.
  func load(path: String) throws -> SequenceDataset {
    try check(path: path)
    let data = try userFacing {
      if let separator { try SequenceReader.loadText(path: path, separator: separator) }
      else { try SequenceReader.loadJSONLines(path: path) }
    }
    return maxLength.map { data.truncated(to: $0) } ?? data
  }

  /// The loss of sequence data: next-token cross-entropy (what `--loss cross-entropy` means
  /// on sequences).
  static func loss(_ choice: LossChoice) throws -> Loss {
    guard choice == .crossEntropy else {
      throw UsageError("sequence data trains with cross-entropy over next tokens, not --loss \(choice.rawValue)")
    }
    return .tokenCrossEntropy
  }

  /// Checks that a token model takes every sample: it starts with an embedding, every id is
  /// in its vocabulary, every label among its outputs, and no sample is longer than its
  /// positional table (naming --max-length).
  func check(_ data: SequenceDataset, model: Sequential, path: String) throws {
    guard let embedding = model.layers.first as? Embedding else {
      throw UsageError(
        "\(path) holds token sequences: the model must start with embedding(V,d), not \(model.layers.first.map { "\($0)" } ?? "nothing")"
      )
    }
    let positions = model.layers.lazy.compactMap { $0 as? PositionalEmbedding }.first
    if let positions, let index = data.lengths.firstIndex(where: { $0 > positions.maxLength }) {
      throw UsageError(
        "\(path) line \(data.lines[index]): the sample has \(data.length(of: index)) tokens, more than the \(positions.maxLength) positions of \(positions); give --max-length \(positions.maxLength) to truncate"
      )
    }
    let outputShape = try userFacing { try model.outputShape(forInput: data.sampleShape) }
    try userFacing {
      try data.check(vocabularySize: embedding.vocabularySize, outputWidth: outputShape.last, maxLength: nil)
    }
  }

  /// Fails, before training, when a sample does not fit the budget alone: names its line
  /// and length, the smallest budget that fits it and the --max-length that fits this one.
  func checkFit(_ data: SequenceDataset, planner: SequencePlanner, path: String) throws {
    let lengths = data.lengths
    guard let longest = lengths.indices.max(by: { lengths[$0] < lengths[$1] }) else { return }
    let fits = try userFacing { try planner.capacity(paddedLength: lengths[longest]) > 0 }
    guard !fits else { return }
    let (smallest, fitting) = try userFacing {
      (
        try planner.smallestBudget(paddedLength: lengths[longest]),
        try planner.longestFittingLength(upTo: lengths[longest])
      )
    }
    throw UsageError(
      "\(path) line \(data.lines[longest]): the sample has \(lengths[longest]) tokens, and one sample of that length needs a budget of \(formatBytes(smallest)), more than --budget \(planner.budgetBytes); give at least --budget \(smallest)"
        + (fitting > 0 ? ", or --max-length \(fitting) to truncate samples to what fits" : ""))
  }
}

extension SequencePlan {
  /// The plan as lines for a person: windows, micro-batches per window, padding saved, the
  /// largest predicted peak and the smallest budget.
  var summary: String {
    let counts = microBatchCounts
    let mean = Double(counts.reduce(0, +)) / Double(max(counts.count, 1))
    var lines = [
      "budget            \(formatBytes(budgetBytes)), safety margin \(formatBytes(marginBytes)) kept free",
      "persistent        \(formatBytes(persistent.totalBytes))",
      "windows           \(windows) of up to \(targetBatch) samples (\(tokens) tokens, longest sample \(longestLength))",
      String(
        format: "micro-batches     %d to %d per window, mean %.2f, composed by length", counts.min() ?? 0,
        counts.max() ?? 0, mean),
      String(
        format: "padding           %.1f%% of padded tokens (padding each window to its longest: %.1f%%)",
        100 * paddingFraction, 100 * windowPaddingFraction),
      "largest peak      \(formatBytes(largestPredictedPeakBytes)) predicted",
      "smallest budget   \(formatBytes(smallestBudgetBytes)) (the longest sample alone)",
    ]
    if let heaviest = heaviest.first {
      lines.append(
        "heaviest          \(heaviest.shape.samples) sample\(heaviest.shape.samples == 1 ? "" : "s") × \(heaviest.shape.paddedLength) tokens")
    }
    return lines.joined(separator: "\n")
  }
}

/// The processes this command runs with: MPI's world when `mpirun` started it (joined once,
/// at start-up), else this process alone, which makes no MPI call.
enum CommandWorld {
  nonisolated(unsafe) static var current: any Communicator = SingleProcess()

  /// Joins `MPI_COMM_WORLD` when launched by `mpirun`.
  static func join() {
    if let world = MPIWorld.joinIfLaunched() { current = world }
  }
}
