import Memory
import NeuralNetwork

/// Why no plan can be made.
public enum PlanningError: Error, Equatable, Sendable, CustomStringConvertible {
  /// The target batch is not a positive number of samples.
  case invalidTargetBatch(Int)
  /// The dataset size is not a positive number of samples.
  case invalidDatasetSize(Int)
  /// The model cannot take the samples, or the loss the targets.
  case shape(ShapeError)
  /// The input shape was not given and the model's first layer does not declare one.
  case unknownInputShape
  /// Even one sample per micro-batch does not fit: the smallest budget that would, and the
  /// persistent and transient bytes at one sample.
  case budgetTooSmall(budgetBytes: Int, minimumBytes: Int, breakdown: String)

  public var description: String {
    switch self {
    case .invalidTargetBatch(let value):
      "target batch is \(value), expected a positive number of samples"
    case .invalidDatasetSize(let value):
      "dataset size is \(value), expected a positive number of samples"
    case .shape(let error):
      error.description
    case .unknownInputShape:
      "the model's input shape is unknown: its first layer does not declare one; give it in the trainer's options (inputShape)"
    case .budgetTooSmall(let budgetBytes, let minimumBytes, let breakdown):
      "budget \(MemoryBudget.format(bytes: budgetBytes)) (\(budgetBytes) bytes) is too small: even a micro-batch of 1 needs \(MemoryBudget.format(bytes: minimumBytes)) (\(minimumBytes) bytes; \(breakdown)); give at least --budget \(minimumBytes)"
    }
  }
}
