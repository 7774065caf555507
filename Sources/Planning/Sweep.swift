import Accumulation
import DataLoading
import Foundation
import Memory
import NeuralNetwork
import Optimizers
import Tensors

/// Memory and speed of training across micro-batch sizes: for each size, the predicted and
/// the measured peak of a training step, the samples per second of full training steps,
/// and, for a target batch, the time of one optimizer step made of such micro-batches.
public struct Sweep {
  /// One micro-batch size's figures.
  public struct Point: Sendable, Equatable {
    public var microBatch: Int
    public var predictedPeakBytes: Int
    public var measuredPeakBytes: Int
    /// Samples per second of training steps of one micro-batch (median of the repeats).
    public var samplesPerSecond: Double
    /// Seconds of one optimizer step of `targetBatch` samples in micro-batches of this
    /// size (median of the repeats), when a target batch was given.
    public var stepSeconds: Double?
  }

  public let estimator: MemoryEstimator
  public let measurement: MemoryMeasurement

  /// - Parameters: the shape-only `estimator` of the model, and a `measurement` with a real
  ///   copy of it.
  public init(estimator: MemoryEstimator, measurement: MemoryMeasurement) {
    self.estimator = estimator
    self.measurement = measurement
  }

  /// The most micro-steps one timed optimizer step may take.
  public static let maximumTimedMicroSteps = 100_000

  /// Refuses to time optimizer steps of `targetBatch` samples in micro-batches as small as
  /// `microBatch` when one would take more than ``maximumTimedMicroSteps`` micro-steps.
  public static func checkTimedWindow(targetBatch: Int, microBatch: Int) throws(PlanningError) {
    guard microBatch >= 1, targetBatch / microBatch < maximumTimedMicroSteps else {
      throw .timedWindowTooLong(targetBatch: targetBatch, microBatch: microBatch)
    }
  }

  /// Measures one size. `repeat` timed runs (after one warm-up) give the medians.
  public func point(microBatch: Int, targetBatch: Int?, repeat repeats: Int) -> Point {
    let measured = measurement.peakBytes(microBatch: microBatch)
    let stepper = measurement.stepper
    // One micro-batch of samples; windows of the target batch cycle through them, so the
    // data costs the same whatever the target batch.
    let dataset = measurement.randomDataset(samples: microBatch)
    let single = [Array(0..<microBatch)]
    let warmUp = DispatchTime.now().uptimeNanoseconds
    _ = stepper.step(window: single, of: dataset)
    // Each timed run repeats the step for about 50 ms, so that short steps are not timed
    // one by one against the clock's and the scheduler's granularity.
    let once = Double(DispatchTime.now().uptimeNanoseconds - warmUp) / 1e9
    let stepsPerRun = max(1, min(1000, Int(0.05 / max(once, 1e-6))))
    var times: [Double] = []
    for _ in 0..<max(1, repeats) {
      let start = DispatchTime.now().uptimeNanoseconds
      for _ in 0..<stepsPerRun { _ = stepper.step(window: single, of: dataset) }
      times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 / Double(stepsPerRun))
    }
    var stepSeconds: Double?
    if let targetBatch {
      var offset = 0
      let window = Plan.balancedSizes(samples: targetBatch, microBatch: min(microBatch, targetBatch)).map { size in
        defer { offset += size }
        return (offset..<(offset + size)).map { $0 % microBatch }
      }
      var windowTimes: [Double] = []
      for _ in 0..<max(1, repeats) {
        let start = DispatchTime.now().uptimeNanoseconds
        _ = stepper.step(window: window, of: dataset)
        windowTimes.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
      }
      stepSeconds = Self.median(windowTimes)
    }
    return Point(
      microBatch: microBatch, predictedPeakBytes: estimator.estimate(microBatch: microBatch).peakBytes,
      measuredPeakBytes: measured, samplesPerSecond: Double(microBatch) / Self.median(times), stepSeconds: stepSeconds)
  }

  /// Runs one warm-up step of `microBatch` random samples, then exactly `count` more in
  /// ``countedSteps(_:window:dataset:)``: untimed and unmeasured, for an instruction
  /// counter (callgrind's `--toggle-collect='*countedSteps*'` counts just those steps).
  public func runSteps(microBatch: Int, count: Int) {
    let dataset = measurement.randomDataset(samples: microBatch)
    let window = [Array(0..<microBatch)]
    _ = measurement.stepper.step(window: window, of: dataset)
    countedSteps(count, window: window, dataset: dataset)
  }

  /// `count` training steps of `window`: the only code an instruction count collects.
  @inline(never)
  func countedSteps(_ count: Int, window: [[Int]], dataset: TensorDataset) {
    for _ in 0..<count { _ = measurement.stepper.step(window: window, of: dataset) }
  }

  static func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.count % 2 == 1
      ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
  }
}
