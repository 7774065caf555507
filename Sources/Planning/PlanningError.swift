import Memory
import NeuralNetwork

/// Why no plan can be made.
public enum PlanningError: Error, Equatable, Sendable, CustomStringConvertible {
  /// The target batch is not a positive number of samples.
  case invalidTargetBatch(Int)
  /// A fixed schedule's micro-batch is not a positive number of samples.
  case invalidMicroBatch(Int)
  /// A fixed schedule's accumulation count is not positive (or makes a window too large to
  /// count).
  case invalidAccumulationCount(Int)
  /// The dataset size is not a positive number of samples.
  case invalidDatasetSize(Int)
  /// The model cannot take the samples, or the loss the targets.
  case shape(ShapeError)
  /// The input shape was not given and the model's first layer does not declare one.
  case unknownInputShape
  /// Even one sample per micro-batch does not fit: micro-batch 1 needs `minimumBytes`
  /// (persistent and transient bytes in `breakdown`); with the trainer's safety margin of
  /// `marginBytes`, the budget must be at least their sum.
  case budgetTooSmall(budgetBytes: Int, minimumBytes: Int, breakdown: String, marginBytes: Int)
  /// Timing an optimizer step of `targetBatch` samples in micro-batches of `microBatch` would
  /// run more micro-steps than ``Sweep/maximumTimedMicroSteps``.
  case timedWindowTooLong(targetBatch: Int, microBatch: Int)

  public var description: String {
    switch self {
    case .invalidTargetBatch(let value):
      "target batch is \(value), expected a positive number of samples"
    case .invalidMicroBatch(let value):
      "micro-batch is \(value), expected a positive number of samples"
    case .invalidAccumulationCount(let value):
      "accumulation count is \(value), expected a positive number of micro-batches per step (and a window that can be counted)"
    case .invalidDatasetSize(let value):
      "dataset size is \(value), expected a positive number of samples"
    case .shape(let error):
      error.description
    case .unknownInputShape:
      "the model's input shape is unknown: its first layer does not declare one; give it in the trainer's options (inputShape)"
    case .timedWindowTooLong(let targetBatch, let microBatch):
      "timing a step of \(targetBatch) samples in micro-batches of \(microBatch) would run \(targetBatch / microBatch + (targetBatch % microBatch == 0 ? 0 : 1)) micro-steps, more than \(Sweep.maximumTimedMicroSteps); time a smaller target batch"
    case .budgetTooSmall(let budgetBytes, let minimumBytes, let breakdown, let marginBytes):
      Self.budgetMessage(budget: budgetBytes, minimum: minimumBytes, breakdown: breakdown, margin: marginBytes)
    }
  }

  /// The smallest budget that trains, margin included (``budgetTooSmall(budgetBytes:minimumBytes:breakdown:marginBytes:)`` only).
  public var smallestBudgetBytes: Int? {
    if case .budgetTooSmall(_, let minimum, _, let margin) = self { minimum + margin } else { nil }
  }

  /// What is wrong, without the advice that ends ``description`` (so that a front end can
  /// give the advice in its own words).
  public var problemDescription: String {
    guard case .budgetTooSmall(let budget, let minimum, let breakdown, let margin) = self else { return description }
    var message = "budget \(MemoryBudget.format(bytes: budget)) (\(budget) bytes) is too small: "
    message += "even a micro-batch of 1 needs \(MemoryBudget.format(bytes: minimum)) (\(minimum) bytes; \(breakdown))"
    if margin > 0 { message += ", and training keeps a safety margin of \(margin) bytes" }
    return message
  }

  static func budgetMessage(budget: Int, minimum: Int, breakdown: String, margin: Int) -> String {
    PlanningError.budgetTooSmall(budgetBytes: budget, minimumBytes: minimum, breakdown: breakdown, marginBytes: margin)
      .problemDescription + "; the smallest budget that trains is \(minimum + margin) bytes"
  }
}
