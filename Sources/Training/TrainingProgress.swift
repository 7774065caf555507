import Accumulation

/// Where a run is and what it has done so far; saved in checkpoints, so that a resumed run
/// continues exactly (same windows, same micro-batches, same loss bookkeeping).
struct TrainingProgress: Codable, Equatable {
  /// Epochs finished.
  var epoch = 0
  /// Windows of the current epoch finished.
  var window = 0
  /// Micro-batch sizes of the current window (empty between windows).
  var windowSizes: [Int] = []
  /// Micro-batches of the current window done.
  var microIndex = 0
  /// The current window's loss so far.
  var windowLoss: Double = 0
  /// The current window's largest measured peak so far.
  var windowPeak = 0
  /// Sample-weighted loss total and samples of the current epoch.
  var epochLossTotal: Double = 0
  var epochSamples = 0
  /// Mean loss of every finished epoch.
  var epochLosses: [Float] = []
  var steps = 0
  var samplesSeen = 0
  var maxPeakBytes = 0
  var violations = 0
  var skippedSteps = 0
  /// Wall-clock seconds of training so far.
  var seconds: Double = 0
  /// Data parallel: seconds spent in the gradient reductions, in total.
  var reductionSeconds: Double = 0
  var interrupted = false

  mutating func finishWindow(_ record: StepRecord) {
    epochLossTotal += Double(record.loss) * Double(record.samples)
    epochSamples += record.samples
    samplesSeen += record.samples
    steps += 1
    maxPeakBytes = max(maxPeakBytes, record.peakBytes)
    window += 1
    windowSizes = []
    microIndex = 0
  }

  /// Moves past a window that was skipped (no optimizer step).
  mutating func skipWindow() {
    skippedSteps += 1
    window += 1
    windowSizes = []
    microIndex = 0
  }

  /// Ends the epoch; returns its mean loss.
  mutating func finishEpoch() -> Float {
    let loss = epochSamples > 0 ? Float(epochLossTotal / Double(epochSamples)) : .nan
    epochLosses.append(loss)
    epoch += 1
    window = 0
    epochLossTotal = 0
    epochSamples = 0
    return loss
  }

  func report(epochs: Int) -> TrainingReport {
    TrainingReport(
      epochLosses: epochLosses, steps: steps, samplesPerSecond: seconds > 0 ? Double(samplesSeen) / seconds : 0,
      maxPeakBytes: maxPeakBytes, budgetViolations: violations, interrupted: interrupted, skippedSteps: skippedSteps,
      reductionSeconds: reductionSeconds)
  }
}
