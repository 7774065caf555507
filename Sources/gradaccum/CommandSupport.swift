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

/// The optimizer named on the command line.
enum OptimizerChoice: String, ExpressibleByArgument, CaseIterable {
  case sgd, adam, adamw
}

/// The CSV file a command reads samples from.
struct DataOptions: ParsableArguments {
  @Option(help: "CSV file with a header row; features are all columns but the label.")
  var data: String

  @Option(help: "The label column, by header name or 0-based index (default: the last).")
  var labelColumn: String?

  @Option(
    parsing: .unconditional,
    help: "Multiply every feature by this factor, such as 0.0625 for the digits' pixels 0–16 (default 1).")
  var featureScale: Float = 1

  func validate() throws {
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
