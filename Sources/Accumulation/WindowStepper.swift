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
  /// Samples in each micro-batch, in order (this process's, when several train together).
  public var microBatches: [Int]
  /// Data parallel: the samples each process took of the window (`nil` for one process).
  public var shares: [Int]?
  /// Persistent bytes plus the largest measured transient peak of the step's micro-steps.
  public var peakBytes: Int
  /// The largest transient peak (jemalloc thread peak) of the step's micro-steps.
  public var transientPeakBytes: Int
  /// Set when the window's loss or gradient was not finite and the stepper checks for it
  /// (``WindowStepper/checksFiniteness``): then no optimizer step was taken.
  public var nonFinite: NonFiniteValue?
  /// For sequence data: the window's predicted tokens (what its loss is divided by).
  public var tokens: Int?
  /// For sequence data: the length each micro-batch was padded to, in order.
  public var paddedLengths: [Int]?

  public init(
    step: Int, epoch: Int, samples: Int, loss: Float, learningRate: Float, microBatches: [Int], peakBytes: Int,
    transientPeakBytes: Int
  ) {
    self.step = step
    self.epoch = epoch
    self.samples = samples
    self.loss = loss
    self.learningRate = learningRate
    self.microBatches = microBatches
    self.peakBytes = peakBytes
    self.transientPeakBytes = transientPeakBytes
  }
}

/// Runs windows: every micro-batch forward and backward with its loss scaled so that the
/// accumulated gradient is the gradient of the window's mean loss, then one optimizer step.
///
/// The scaling follows the three rules: a micro-batch's summed loss is divided by the item
/// count of the whole window, counted before the first backward. For per-sample losses
/// (mean squared error, binary cross-entropy) that is `(mᵢ / W) · Lᵢ`; for cross-entropy
/// it counts the labels that are not ignored, so padded labels spread unevenly over
/// micro-batches still give the full window's gradient.
///
/// Gradient buffers and optimizer state are created when the stepper is made, so the
/// persistent memory exists from the start and every step's peak is persistent bytes plus
/// the transient bytes of one micro-step.
public final class WindowStepper {
  public let model: any Layer
  public let optimizer: Optimizer
  public let loss: Loss
  public let learningRateSchedule: any LearningRateSchedule
  /// The rate the schedule scales.
  public let baseLearningRate: Float
  /// Optimizer steps taken so far (restored when a run resumes).
  public var stepCount: Int
  /// When set, the accumulated gradient is scaled down to this global L2 norm before each
  /// optimizer step (as `torch.nn.utils.clip_grad_norm_`).
  public var gradientClipNorm: Float?
  /// Whether ``step(window:of:)`` checks the window's loss and gradients before stepping;
  /// a non-finite value then discards the window (see ``StepRecord/nonFinite``).
  public var checksFiniteness = false
  /// The processes training together (1: this one alone); with more, ``persistentBytes()``
  /// counts the reduction buffer.
  public var processes = 1

  public init(
    model: any Layer, optimizer: Optimizer, loss: Loss,
    learningRateSchedule: any LearningRateSchedule = ConstantLearningRate(), stepCount: Int = 0,
    gradientClipNorm: Float? = nil
  ) {
    self.gradientClipNorm = gradientClipNorm
    self.model = model
    self.optimizer = optimizer
    self.loss = loss
    self.learningRateSchedule = learningRateSchedule
    self.baseLearningRate = optimizer.learningRate
    self.stepCount = stepCount
    let parameters = model.parameters
    for parameter in parameters { parameter.allocateGradient() }
    optimizer.prepare(parameters)
    // Its start-up allocations before any step is measured.
    ParallelWork.prepare()
  }

  /// One micro-step: forward, the loss summed and divided by `windowItems`, backward
  /// (gradients add into the parameters' gradients). Returns the scaled loss.
  @discardableResult
  public func microStep(_ batch: Batch, windowItems: Int) -> Float {
    Self.microStep(model: model, loss: loss, batch: batch, windowItems: windowItems)
  }

  /// The micro-step of ``microStep(_:windowItems:)`` for any model and loss: the memory
  /// planner traces exactly this code.
  @discardableResult
  public static func microStep(model: any Layer, loss: Loss, batch: Batch, windowItems: Int) -> Float {
    // The model's output is not held here: the loss keeps what its backward needs.
    let scaled = loss(model(batch.inputs), batch.targets, reduction: .sum) / Float(windowItems)
    let value = scaled.scalarValue
    ShapeTracing.current?.mark("backward")
    scaled.backward()
    return value
  }

  /// The optimizer step that ends a window: schedule, clipping of the accumulated
  /// gradient, update, zeroed gradients. Returns the learning rate used.
  public func finishWindow() -> Float {
    let parameters = model.parameters
    if let gradientClipNorm { Self.clipGradients(parameters, maximumNorm: gradientClipNorm) }
    let learningRate = learningRateSchedule.learningRate(atStep: stepCount, baseLearningRate: baseLearningRate)
    optimizer.learningRate = learningRate
    optimizer.update(parameters)
    optimizer.zeroGradients(parameters)
    stepCount += 1
    return learningRate
  }

  /// Scales the gradients of `parameters` so that their global L2 norm is at most
  /// `maximumNorm`, as `torch.nn.utils.clip_grad_norm_` (factor `max / (norm + 1e-6)`,
  /// applied when below 1). Returns the norm before clipping.
  @discardableResult
  public static func clipGradients(_ parameters: [Tensor], maximumNorm: Float) -> Float {
    var total: Double = 0
    for gradient in parameters.compactMap(\.gradient) where gradient.hasElements {
      for value in gradient.buffer { total += Double(value) * Double(value) }
    }
    let norm = Float(total.squareRoot())
    let factor = maximumNorm / (norm + 1e-6)
    if factor < 1 {
      for gradient in parameters.compactMap(\.gradient) where gradient.hasElements {
        let values = gradient.mutableBuffer
        for index in values.indices { values[index] *= factor }
      }
    }
    return norm
  }

  /// Accumulates one window whose micro-batches are the samples of `dataset` at
  /// `microBatches` (index lists), made one at a time, and steps the optimizer once.
  /// - Returns: the step's record (its `epoch` is left 0 for the caller to set).
  public func step(window microBatches: [[Int]], of dataset: some Dataset) -> StepRecord {
    // Rule 3: the window's item count, from the targets alone, before any backward.
    let windowItems = microBatches.reduce(0) { $0 + loss.itemCount(targets: dataset.targets(at: $1)) }
    return step(microBatchCount: microBatches.count, windowItems: windowItems) { dataset.batch(at: microBatches[$0]) }
  }

  /// Accumulates one window of ready-made micro-batches and steps the optimizer once.
  public func step(window microBatches: [Batch]) -> StepRecord {
    let windowItems = microBatches.reduce(0) { $0 + loss.itemCount(targets: $1.targets) }
    return step(microBatchCount: microBatches.count, windowItems: windowItems) { microBatches[$0] }
  }

  func step(microBatchCount: Int, windowItems: Int, batch: (Int) -> Batch) -> StepRecord {
    var windowLoss: Double = 0
    var transientPeak = 0
    var sizes: [Int] = []
    sizes.reserveCapacity(microBatchCount)
    for index in 0..<microBatchCount {
      let (scaledLoss, peak) = TransientPeak.measure {
        let microBatch = batch(index)
        sizes.append(microBatch.count)
        return microStep(microBatch, windowItems: windowItems)
      }
      windowLoss += Double(scaledLoss)
      transientPeak = max(transientPeak, peak)
    }
    if checksFiniteness, let problem = nonFiniteValue(windowLoss: windowLoss, epoch: 0) {
      discardWindow()
      var record = StepRecord(
        step: stepCount, epoch: 0, samples: sizes.reduce(0, +), loss: Float(windowLoss),
        learningRate: optimizer.learningRate,
        microBatches: sizes, peakBytes: persistentBytes() + transientPeak, transientPeakBytes: transientPeak)
      record.nonFinite = problem
      return record
    }
    let (learningRate, updatePeak) = TransientPeak.measure { finishWindow() }
    transientPeak = max(transientPeak, updatePeak)
    return StepRecord(
      step: stepCount, epoch: 0, samples: sizes.reduce(0, +), loss: Float(windowLoss), learningRate: learningRate,
      microBatches: sizes, peakBytes: persistentBytes() + transientPeak, transientPeakBytes: transientPeak)
  }

  /// Bytes alive for the whole run, as jemalloc reserves them: parameters, their
  /// gradients, buffers and optimizer state.
  public func persistentBytes() -> Int {
    PersistentMemory(model: model, optimizer: optimizer, processes: processes).totalBytes
  }
}

/// The persistent bytes of a model and its optimizer, by component, rounded to the
/// allocator's size classes.
public struct PersistentMemory: Sendable, Equatable {
  /// Parameter buffers.
  public var parameterBytes: Int
  /// Gradient buffers (one per parameter).
  public var gradientBytes: Int
  /// Optimizer state (momentum buffers, moment estimates).
  public var optimizerStateBytes: Int
  /// Non-trainable buffers such as running statistics.
  public var bufferBytes: Int
  /// Data parallel only: the flat buffer every gradient (and the window's loss) is packed
  /// into for one reduction per window.
  public var communicationBytes: Int

  /// All of it.
  public var totalBytes: Int {
    parameterBytes + gradientBytes + optimizerStateBytes + bufferBytes + communicationBytes
  }

  /// The persistent bytes of `model` trained by `optimizer`: its parameters, a gradient
  /// per parameter, its buffers and the optimizer's state for every parameter, and with
  /// more than one process (`processes`) the reduction buffer.
  public init(model: any Layer, optimizer: Optimizer, processes: Int = 1) {
    let parameters = model.parameters
    func rounded(_ count: Int) -> Int {
      MemoryStatistics.sizeClassBytes(forRequest: TensorStorage.requestBytes(forCount: count))
    }
    communicationBytes = processes > 1 ? rounded(Self.communicationElements(parameters)) : 0
    parameterBytes = parameters.reduce(0) { $0 + rounded($1.count) }
    gradientBytes = parameterBytes
    bufferBytes = model.namedBuffers.reduce(0) { $0 + rounded($1.tensor.count) }
    optimizerStateBytes = parameters.reduce(0) {
      $0 + optimizer.makeStateTensorCounts(elementCount: $1.count).reduce(0) { $0 + rounded($1) }
    }
  }
}

extension PersistentMemory {
  /// The reduction buffer's elements: every parameter's gradient, then the window's loss.
  public static func communicationElements(_ parameters: [Tensor]) -> Int {
    parameters.reduce(1) { $0 + $1.count }
  }
}

/// What to do when a window's loss or accumulated gradient is not finite.
public enum NonFinitePolicy: String, Sendable, CaseIterable {
  /// Stop the run (after writing a checkpoint, when one is configured).
  case stop
  /// Skip the window: no parameter changes, no optimizer step, and go on.
  case skip
}

/// A NaN or infinite loss or gradient found before an optimizer step.
public struct NonFiniteValue: Error, Equatable, Sendable, CustomStringConvertible {
  /// The optimizer step it would have been (1-based).
  public var step: Int
  /// The epoch (1-based).
  public var epoch: Int
  /// `loss`, or the name of the first parameter whose gradient has a non-finite element.
  public var location: String
  /// The offending value.
  public var value: Float

  public var description: String {
    location == "loss"
      ? "step \(step) (epoch \(epoch)): the window's loss is \(value); no parameter was changed"
      : "step \(step) (epoch \(epoch)): the gradient of \(location) holds \(value); no parameter was changed"
  }
}

extension WindowStepper {
  /// The first non-finite value among the window's loss and the accumulated gradients, in
  /// parameter order, or `nil` when all are finite. `epoch` is used in the report.
  public func nonFiniteValue(windowLoss: Double, epoch: Int) -> NonFiniteValue? {
    if !windowLoss.isFinite {
      return NonFiniteValue(step: stepCount + 1, epoch: epoch, location: "loss", value: Float(windowLoss))
    }
    for (name, parameter) in model.namedParameters {
      guard let gradient = parameter.gradient, gradient.hasElements else { continue }
      if let bad = gradient.buffer.first(where: { !$0.isFinite }) {
        return NonFiniteValue(step: stepCount + 1, epoch: epoch, location: name, value: bad)
      }
    }
    return nil
  }

  /// Drops the window's accumulated gradients without stepping.
  public func discardWindow() {
    optimizer.zeroGradients(model.parameters)
  }
}
