import DataLoading
import Memory
import NeuralNetwork
import Optimizers
import Tensors

/// What one optimizer step did.
public struct StepRecord: Sendable, Equatable {
  /// 1-based optimizer step, counted over the whole run.
  public var step: Int
  /// 1-based epoch.
  public var epoch: Int
  /// Samples in the window (`W`).
  public var samples: Int
  /// The window's mean loss, unscaled (what one big batch would report).
  public var loss: Float
  /// The learning rate this step used.
  public var learningRate: Float
  /// Samples in each micro-batch, in order.
  public var microBatches: [Int]
  /// Persistent bytes plus the largest measured transient peak of the window's micro-steps.
  public var peakBytes: Int
}

/// Runs windows: every micro-batch forward and backward with its loss scaled so that the
/// accumulated gradient is the gradient of the window's mean loss, then one optimizer step.
///
/// The scaling follows the three rules: a micro-batch's summed loss is divided by the item
/// count of the whole window, counted before the first backward. For per-sample losses
/// (mean squared error, binary cross-entropy) that is `(mᵢ / W) · Lᵢ`; for cross-entropy
/// it counts the labels that are not ignored, so padded labels spread unevenly over
/// micro-batches still give the full window's gradient.
public final class WindowStepper {
  public let model: any Layer
  public let optimizer: Optimizer
  public let loss: Loss
  public let learningRateSchedule: any LearningRateSchedule
  /// The rate the schedule scales.
  public let baseLearningRate: Float
  /// Optimizer steps taken so far.
  public private(set) var stepCount: Int

  public init(
    model: any Layer, optimizer: Optimizer, loss: Loss,
    learningRateSchedule: any LearningRateSchedule = ConstantLearningRate(), stepCount: Int = 0
  ) {
    self.model = model
    self.optimizer = optimizer
    self.loss = loss
    self.learningRateSchedule = learningRateSchedule
    self.baseLearningRate = optimizer.learningRate
    self.stepCount = stepCount
  }

  /// Accumulates the gradients of one window's micro-batches and steps the optimizer once.
  /// - Returns: the step's record (its `epoch` is left 0 for the caller to set).
  public func step(window microBatches: [Batch]) -> StepRecord {
    let parameters = model.parameters
    // Rule 3: the window's item count, before any backward.
    let windowItems = microBatches.reduce(0) { $0 + loss.itemCount(targets: $1.targets) }
    var windowLoss: Double = 0
    var transientPeak = 0
    for batch in microBatches {
      try? MemoryStatistics.resetThreadPeak()
      let output = model(batch.inputs)
      let scaled = loss(output, batch.targets, reduction: .sum) / Float(windowItems)
      windowLoss += Double(scaled.scalarValue)
      scaled.backward()
      transientPeak = Swift.max(transientPeak, (try? MemoryStatistics.threadPeakBytes()) ?? 0)
    }
    let learningRate = learningRateSchedule.learningRate(atStep: stepCount, baseLearningRate: baseLearningRate)
    optimizer.learningRate = learningRate
    optimizer.update(parameters)
    optimizer.zeroGradients(parameters)
    stepCount += 1
    return StepRecord(
      step: stepCount, epoch: 0, samples: microBatches.reduce(0) { $0 + $1.count }, loss: Float(windowLoss),
      learningRate: learningRate, microBatches: microBatches.map(\.count),
      peakBytes: persistentBytes() + transientPeak)
  }

  /// Bytes alive for the whole run, as jemalloc reserves them: parameters, their
  /// gradients, optimizer state and buffers.
  public func persistentBytes() -> Int {
    let tensors =
      model.namedState.map(\.tensor) + model.parameters.compactMap(\.gradient)
      + optimizer.namedState.map(\.tensor)
    return tensors.reduce(0) { $0 + MemoryStatistics.sizeClassBytes(forRequest: $1.elementBytes) }
  }
}
