import Accumulation
import Foundation

/// Writes a JSON Lines log: one object per optimizer step, then a summary object.
///
/// Step records have the keys `epoch`, `step`, `samples`, `loss` (the window mean), `lr`,
/// `micro_batches`, `peak_bytes` and `budget_bytes` (null without a budget), and for sequence
/// data `tokens` (the window's predicted tokens) and `padded_lengths`, and with several
/// processes `shares` (each one's samples of the window); the summary has `world_size` and
/// `epoch_losses`, `max_peak_bytes`, `budget_violations`, `samples_per_second` and `steps`.
public final class TrainingLog {
  let handle: FileHandle
  /// The budget reported in every record, or `nil`.
  public let budgetBytes: Int?

  /// Creates (or truncates) the log at `path`.
  public init(path: String, budgetBytes: Int?) throws(TrainingError) {
    guard FileManager.default.createFile(atPath: path, contents: nil),
      let handle = FileHandle(forWritingAtPath: path)
    else { throw .logNotWritable(path: path) }
    self.handle = handle
    self.budgetBytes = budgetBytes
  }

  deinit { try? handle.close() }

  /// One step, as the log writes it.
  struct StepLine: Encodable {
    var epoch: Int
    var step: Int
    var samples: Int
    @NullWhenAbsent var loss: Float?
    @NullWhenAbsent var lr: Float?
    var microBatches: [Int]
    var peakBytes: Int
    @NullWhenAbsent var budgetBytes: Int?
    /// Sequence data only (absent otherwise).
    var tokens: Int?
    var paddedLengths: [Int]?
    /// Data parallel only: the samples of the window each process took.
    var shares: [Int]?
  }

  /// A memory-guard event (`"event": "memory_guard"`, no `loss`, so step readers skip it).
  struct GuardLine: Encodable {
    var event = "memory_guard"
    var epoch: Int
    var step: Int
    var microBatch: Int
    var measuredPeakBytes: Int
    @NullWhenAbsent var budgetBytes: Int?
    var newMicroBatch: Int
  }

  /// A skipped window (`"event": "skipped_step"`).
  struct SkipLine: Encodable {
    var event = "skipped_step"
    var epoch: Int
    var step: Int
    var location: String
    @NullWhenAbsent var budgetBytes: Int?
  }

  /// The run's summary (`"summary": true`).
  struct SummaryLine: Encodable {
    var summary = true
    var epochLosses: [NullWhenAbsent<Float>]
    var maxPeakBytes: Int
    var budgetViolations: Int
    @NullWhenAbsent var samplesPerSecond: Float?
    var steps: Int
    var worldSize: Int
  }

  /// Appends one step record.
  public func write(_ record: StepRecord) {
    line(
      JSONOutput.line(
        StepLine(
          epoch: record.epoch, step: record.step, samples: record.samples, loss: record.loss.jsonNumber,
          lr: record.learningRate.jsonNumber, microBatches: record.microBatches, peakBytes: record.peakBytes,
          budgetBytes: budgetBytes, tokens: record.tokens, paddedLengths: record.paddedLengths, shares: record.shares)))
  }

  /// Appends a memory-guard event: a micro-step of `microBatch` samples measured
  /// `measuredPeakBytes`, over the budget, and the rest of the run uses `newMicroBatch`
  /// (0: the run stopped).
  public func writeGuardEvent(epoch: Int, step: Int, microBatch: Int, measuredPeakBytes: Int, newMicroBatch: Int) {
    line(
      JSONOutput.line(
        GuardLine(
          epoch: epoch, step: step, microBatch: microBatch, measuredPeakBytes: measuredPeakBytes,
          budgetBytes: budgetBytes, newMicroBatch: newMicroBatch)))
  }

  /// Appends a skipped-window event (`"event": "skipped_step"`).
  public func writeSkipEvent(_ value: NonFiniteValue) {
    line(
      JSONOutput.line(
        SkipLine(epoch: value.epoch, step: value.step, location: value.location, budgetBytes: budgetBytes)))
  }

  /// A held-out evaluation after an epoch (`"event": "validation"`).
  struct ValidationLine: Encodable {
    var event = "validation"
    var epoch: Int
    @NullWhenAbsent var loss: Float?
    @NullWhenAbsent var accuracy: Float?
    var samples: Int
  }

  /// Appends the evaluation of held-out samples after epoch `epoch` (1-based).
  public func writeValidation(epoch: Int, _ evaluation: Evaluation) {
    line(
      JSONOutput.line(
        ValidationLine(
          epoch: epoch, loss: evaluation.loss.jsonNumber, accuracy: evaluation.accuracy?.jsonNumber,
          samples: evaluation.sampleCount)))
  }

  /// Appends the summary.
  public func write(_ report: TrainingReport) {
    line(
      JSONOutput.line(
        SummaryLine(
          epochLosses: report.epochLosses.map { NullWhenAbsent(wrappedValue: $0.jsonNumber) },
          maxPeakBytes: report.maxPeakBytes, budgetViolations: report.budgetViolations,
          samplesPerSecond: Float(report.samplesPerSecond).jsonNumber, steps: report.steps,
          worldSize: report.worldSize)))
  }

  func line(_ text: String) {
    handle.write(Data((text + "\n").utf8))
  }
}
