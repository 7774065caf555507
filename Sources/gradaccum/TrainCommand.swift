import ArgumentParser
import Foundation
import GradAccum

struct TrainCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "train",
    abstract: "Train a model on a CSV file, with exact gradient accumulation.",
    discussion: """
      Manual mode: --batch N micro-batches, --accumulate K of them per optimizer step. Each \
      micro-batch's loss is scaled by its size over its window's size, so every step, the \
      last partial window of an epoch included, follows the gradient of its window's mean loss.
      """)

  @Option(help: "CSV file with a header row; features are all columns but the label.")
  var data: String

  @Option(help: "The label column, by header name or 0-based index (default: the last).")
  var labelColumn: String?

  @OptionGroup var modelOptions: ModelOptions

  @Option(help: "Loss: mse, cross-entropy or bce.")
  var loss: LossChoice

  @Option(help: "Epochs to train.")
  var epochs: Int

  @Option(help: "Samples per micro-batch.")
  var batch: Int

  @Option(help: "Micro-batches per optimizer step.")
  var accumulate: Int = 1

  @Flag(help: "Visit samples in file order instead of a seeded shuffle per epoch.")
  var noShuffle = false

  @Flag(help: "Drop a last micro-batch of an epoch smaller than --batch.")
  var dropLast = false

  @Option(help: "Seed for initialization, shuffling and dropout.")
  var seed: UInt64 = 0

  @Option(name: .customLong("init"), help: "Initial weights: a safetensors file with PyTorch's state_dict names.")
  var initial: String?

  @Option(help: "Write the final weights to this safetensors file.")
  var save: String?

  @Option(help: "Write one JSON object per optimizer step, then a summary, to this file.")
  var log: String?

  @Flag(help: "Print nothing but errors.")
  var quiet = false

  func validate() throws {
    guard epochs >= 1 else { throw UsageError("--epochs is \(epochs), expected an integer ≥ 1") }
    guard batch >= 1 else { throw UsageError("--batch is \(batch), expected an integer ≥ 1") }
    guard accumulate >= 1 else { throw UsageError("--accumulate is \(accumulate), expected an integer ≥ 1") }
  }

  func run() throws {
    try userFacing { try MemoryStatistics.verifyJemallocIsTheAllocator() }
    let specification = try modelOptions.parsedModel()
    let loss = self.loss.loss
    let optimizer = try modelOptions.makeOptimizer()
    let inputShape = try modelOptions.inputShape.map { try parseShape($0, option: "--input-shape") }
    let dataset = try userFacing {
      try CSVReader.load(
        path: data, labelColumn: labelColumn, labelKind: loss.labelKind,
        inputShape: inputShape)
    }
    let model = specification.build(seed: seed)
    try checkCompatible(model: model, loss: loss, dataset: dataset, path: data)
    if let initial { try userFacing { try model.loadState(path: initial) } }
    let trainingLog = try log.map { path in try userFacing { try TrainingLog(path: path, budgetBytes: nil) } }
    let stepper = WindowStepper(model: model, optimizer: optimizer, loss: loss)
    let run = TrainingRun(
      schedule: .fixed(microBatch: batch, accumulationCount: accumulate), epochs: epochs, shuffle: !noShuffle,
      seed: seed, dropLast: dropLast)
    if !quiet {
      print(
        "training \(specification) on \(dataset.count) samples from \(data): \(epochs) epochs, micro-batch \(batch), \(accumulate) per step, \(optimizer.name)"
      )
    }
    let report = run.run(dataset, stepper: stepper, log: trainingLog) { _ in
    } onEpoch: { epoch, loss in
      if !quiet { print("epoch \(epoch)/\(epochs)  loss \(loss)") }
    }
    if !quiet {
      print(
        "\(report.steps) optimizer steps, \(String(format: "%.0f", report.samplesPerSecond)) samples/s, max peak \(formatBytes(report.maxPeakBytes))"
      )
    }
    if let save {
      try userFacing { try model.saveState(path: save) }
      if !quiet { print("saved weights to \(save)") }
    }
  }
}

/// Bytes as MiB with two decimals.
func formatBytes(_ bytes: Int) -> String {
  String(format: "%.2f MiB", Double(bytes) / 1_048_576)
}
