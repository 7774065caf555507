import Accumulation
import DataLoading
import Foundation
import Memory
import NeuralNetwork
import Optimizers
import Tensors

/// How a ``Trainer`` cuts windows into micro-batches.
public enum TrainingSchedule: Sendable, Equatable {
  /// The largest micro-batch whose step fits in the budget, windows balanced (rule 1), and
  /// every micro-step checked against the budget.
  case planned(MemoryBudget)
  /// Micro-batches of `microBatch` samples, `accumulationCount` per window (the last of an
  /// epoch's last window may be smaller); no budget.
  case fixed(microBatch: Int, accumulationCount: Int)
}

/// Something that happened during training, as ``Trainer/onEvent`` receives it.
public enum TrainingEvent: Sendable {
  /// A micro-step finished: its samples and its measured peak (persistent bytes plus the
  /// step's transient peak).
  case microStep(samples: Int, peakBytes: Int)
  /// An optimizer step finished.
  case step(StepRecord)
  /// An epoch finished: its number (1-based) and its sample-weighted mean loss.
  case epoch(number: Int, loss: Float)
  /// A message that is not an error: batch statistics under accumulation, a checkpoint
  /// written under another budget, a window skipped for a non-finite value.
  case warning(String)
  /// The memory guard saw a micro-step of `microBatch` samples measure `peakBytes`, over
  /// `budgetBytes`; training goes on with micro-batches of sizes measured within the
  /// budget (at most `nextMicroBatch`), or stops when there are none (`nil`).
  case overBudget(microBatch: Int, peakBytes: Int, budgetBytes: Int, nextMicroBatch: Int?)

  /// The event as one line for a person (`nil` for the ones a progress display shows
  /// itself: micro-steps, steps, epochs).
  public var message: String? {
    switch self {
    case .warning(let text): text
    case .overBudget(let microBatch, let peak, let budget, let next):
      "memory guard: a micro-step of \(microBatch) samples measured \(peak) bytes, over the budget of \(budget)"
        + (next.map { "; training goes on with micro-batches of sizes already measured within it (at most \($0))" }
          ?? "; training stops")
    case .microStep, .step, .epoch: nil
    }
  }
}

/// Why training cannot go on.
public enum TrainingError: Error, Equatable, Sendable, CustomStringConvertible {
  case logNotWritable(path: String)
  case invalidSetting(name: String, value: String, expected: String)
  case checkpoint(String)
  /// The file to resume from is a weights file (or an older checkpoint), not a checkpoint.
  case notACheckpoint(path: String)
  case nonFinite(NonFiniteValue)
  /// The dataset's targets do not fit the loss and the model's output.
  case targets(TargetError)
  /// A micro-step of `microBatch` samples measured `peakBytes`, over the budget, and the rest
  /// of the run cannot be made of micro-batch sizes measured within it; training stopped
  /// (with a checkpoint, if one is configured) rather than risk going over again.
  case budgetExceeded(microBatch: Int, peakBytes: Int, budgetBytes: Int)
  /// Sample `sample` (0-based) of `length` tokens does not fit the budget even alone:
  /// training it needs at least `smallestBudgetBytes`, or samples truncated to
  /// `longestFittingLength` tokens (0 when not even one token fits).
  case sequenceDoesNotFit(
    sample: Int, length: Int, budgetBytes: Int, smallestBudgetBytes: Int, longestFittingLength: Int)

  public var description: String {
    switch self {
    case .nonFinite:
      problemDescription + "; lower the learning rate or check the data, then resume from the checkpoint if one was written"
    case .budgetExceeded(_, let peak, _):
      problemDescription
        + "; a budget of at least \(peak + max(peak / 100, 64)) bytes trains, resumed from the checkpoint if one was written"
    case .notACheckpoint:
      problemDescription + "; to start from weights alone, load them into the model (loadState)"
    case .sequenceDoesNotFit(_, _, _, let smallest, let longest):
      problemDescription
        + "; give a budget of at least \(smallest) bytes"
        + (longest > 0 ? ", or truncate samples to at most \(longest) tokens" : "")
    default:
      problemDescription
    }
  }

  /// What is wrong, without the advice that ends ``description`` (so that a front end can
  /// give the advice in its own words).
  public var problemDescription: String {
    switch self {
    case .logNotWritable(let path): "cannot write the training log \(path)"
    case .checkpoint(let message): message
    case .notACheckpoint(let path):
      "\(path) is not a GradAccum checkpoint (no checksummed gradaccum.progress metadata of version 2)"
    case .nonFinite(let value): "non-finite values at \(value)"
    case .invalidSetting(let name, let value, let expected): "\(name) is \(value), expected \(expected)"
    case .targets(let error): "the dataset's targets: \(error)"
    case .sequenceDoesNotFit(let sample, let length, let budget, let smallest, _):
      "sample \(sample) has \(length) tokens, and one sample of that length needs a budget of \(smallest) bytes (\(MemoryBudget.format(bytes: smallest))), more than \(budget) bytes"
    case .budgetExceeded(let microBatch, let peak, let budget):
      "a micro-step of \(microBatch) sample\(microBatch == 1 ? "" : "s") measured \(peak) bytes, over the budget of \(budget) bytes, and no smaller micro-batch has been measured within the budget, so training stopped rather than go over it again"
    }
  }

  /// The budget that would have held the step that went over
  /// (``budgetExceeded(microBatch:peakBytes:budgetBytes:)`` only).
  public var sufficientBudgetBytes: Int? {
    if case .budgetExceeded(_, let peak, _) = self { peak + max(peak / 100, 64) } else { nil }
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
  /// Windows skipped: their loss or gradient was not finite, or they had no label to predict.
  public var skippedSteps: Int = 0
  /// The processes that trained together.
  public var worldSize: Int = 1
  /// Data parallel: seconds this process spent in the gradient reductions, in total.
  public var reductionSeconds: Double = 0

  public init(
    epochLosses: [Float], steps: Int, samplesPerSecond: Double, maxPeakBytes: Int, budgetViolations: Int,
    interrupted: Bool = false, skippedSteps: Int = 0, reductionSeconds: Double = 0
  ) {
    self.skippedSteps = skippedSteps
    self.reductionSeconds = reductionSeconds
    self.epochLosses = epochLosses
    self.steps = steps
    self.samplesPerSecond = samplesPerSecond
    self.maxPeakBytes = maxPeakBytes
    self.budgetViolations = budgetViolations
    self.interrupted = interrupted
  }
}
