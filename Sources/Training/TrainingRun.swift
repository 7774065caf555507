import Accumulation
import DataLoading
import Foundation
import NeuralNetwork
import Optimizers
import Tensors

/// Why training cannot go on.
public enum TrainingError: Error, Equatable, Sendable, CustomStringConvertible {
  case logNotWritable(path: String)
  case invalidSetting(name: String, value: String, expected: String)
  case checkpoint(String)
  case nonFinite(NonFiniteValue)
  /// A micro-step of one sample went over the budget: the micro-batch cannot go lower.
  /// A micro-step of `microBatch` samples measured `peakBytes`, over the budget, and the rest
  /// of the run cannot be made of micro-batch sizes measured within it; training stopped
  /// (with a checkpoint, if one is configured) rather than risk going over again.
  case budgetExceeded(microBatch: Int, peakBytes: Int, budgetBytes: Int)

  public var description: String {
    switch self {
    case .logNotWritable(let path): "cannot write the training log \(path)"
    case .checkpoint(let message): message
    case .nonFinite(let value):
      "non-finite values at \(value); lower the learning rate or check the data, and continue with --resume if a checkpoint was written"
    case .invalidSetting(let name, let value, let expected): "\(name) is \(value), expected \(expected)"
    case .budgetExceeded(let microBatch, let peak, let budget):
      "a micro-step of \(microBatch) sample\(microBatch == 1 ? "" : "s") measured \(peak) bytes, over the budget of \(budget) bytes, and no smaller micro-batch has been measured within the budget, so training stopped rather than go over it again; give at least --budget \(peak + max(peak / 100, 64)) and continue with --resume if a checkpoint was written"
    }
  }
}

/// What a training run did.
public struct TrainingReport: Sendable, Equatable {
  /// Per epoch, the sample-weighted mean of its window losses.
  public var epochLosses: [Float]
  /// Optimizer steps taken.
  public var steps: Int
  /// Samples trained on per second of wall-clock time.
  public var samplesPerSecond: Double
  /// The largest measured peak of any step.
  public var maxPeakBytes: Int
  /// Micro-steps whose measured peak exceeded the budget.
  public var budgetViolations: Int
  /// Whether the run stopped early on request (after a checkpoint, if one was asked for).
  public var interrupted: Bool = false
  /// Windows skipped because their loss or gradient was not finite.
  public var skippedSteps: Int = 0

  public init(
    epochLosses: [Float], steps: Int, samplesPerSecond: Double, maxPeakBytes: Int, budgetViolations: Int,
    interrupted: Bool = false, skippedSteps: Int = 0
  ) {
    self.skippedSteps = skippedSteps
    self.epochLosses = epochLosses
    self.steps = steps
    self.samplesPerSecond = samplesPerSecond
    self.maxPeakBytes = maxPeakBytes
    self.budgetViolations = budgetViolations
    self.interrupted = interrupted
  }
}

/// Trains a model over a dataset for some epochs, window by window.
public struct TrainingRun {
  public var schedule: WindowSchedule
  public var epochs: Int
  public var shuffle: Bool
  public var seed: UInt64
  public var dropLast: Bool
  public var budgetBytes: Int?
  /// What to do when a window's loss or gradient is not finite.
  public var onNonFinite: NonFinitePolicy = .stop

  /// - Parameters:
  ///   - schedule: how windows and micro-batches are cut.
  ///   - epochs: ≥ 1.
  ///   - shuffle, seed: a seeded shuffle per epoch, or the dataset's order.
  ///   - dropLast: drop a last micro-batch smaller than the rest.
  ///   - budgetBytes: the byte budget steps are checked against, if any.
  public init(
    schedule: WindowSchedule, epochs: Int, shuffle: Bool = true, seed: UInt64 = 0, dropLast: Bool = false,
    budgetBytes: Int? = nil
  ) {
    self.schedule = schedule
    self.epochs = epochs
    self.shuffle = shuffle
    self.seed = seed
    self.dropLast = dropLast
    self.budgetBytes = budgetBytes
  }

  /// Runs every epoch with `stepper`, reporting each step to `log` and `onStep`, and each
  /// finished epoch's (1-based) number and mean loss to `onEpoch`.
  /// - Throws: ``TrainingError/nonFinite(_:)`` when a window's loss or gradient is NaN or
  ///   infinite and ``onNonFinite`` is `.stop` (no parameter changed for that window).
  public func run(
    _ dataset: some Dataset, stepper: WindowStepper, log: TrainingLog? = nil,
    onStep: (StepRecord) -> Void = { _ in }, onEpoch: (Int, Float) -> Void = { _, _ in }
  ) throws(TrainingError) -> TrainingReport {
    stepper.model.setTraining(true)
    stepper.checksFiniteness = true
    let start = Date()
    // The same bookkeeping as the planned trainer's.
    var progress = TrainingProgress()
    for epoch in 0..<epochs {
      let order = DataLoader.sampleOrder(count: dataset.count, epoch: epoch, shuffle: shuffle, seed: seed)
      var position = 0
      for sizes in schedule.windows(sampleCount: dataset.count, dropLast: dropLast) {
        let microBatches = sizes.map { size -> [Int] in
          defer { position += size }
          return Array(order[position..<(position + size)])
        }
        var record = stepper.step(window: microBatches, of: dataset)
        record.epoch = epoch + 1
        if var problem = record.nonFinite {
          problem.epoch = epoch + 1
          guard onNonFinite == .skip else { throw .nonFinite(problem) }
          progress.skipWindow()
          log?.writeSkipEvent(problem)
          continue
        }
        progress.finishWindow(record)
        if let budgetBytes, record.peakBytes > budgetBytes { progress.violations += 1 }
        log?.write(record)
        onStep(record)
      }
      let epochLoss = progress.finishEpoch()
      onEpoch(epoch + 1, epochLoss)
    }
    progress.seconds = Date().timeIntervalSince(start)
    let report = progress.report(epochs: epochs)
    log?.write(report)
    return report
  }
}
