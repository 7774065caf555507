import Accumulation
import Foundation

/// Writes a JSON Lines log: one object per optimizer step, then a summary object.
///
/// Step records have the keys `epoch`, `step`, `samples`, `loss` (the window mean), `lr`,
/// `micro_batches`, `peak_bytes` and `budget_bytes` (null without a budget); the summary has
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

  /// Appends one step record.
  public func write(_ record: StepRecord) {
    let sizes = record.microBatches.map(String.init).joined(separator: ",")
    line(
      "{\"epoch\":\(record.epoch),\"step\":\(record.step),\"samples\":\(record.samples),"
        + "\"loss\":\(Self.number(record.loss)),\"lr\":\(Self.number(record.learningRate)),"
        + "\"micro_batches\":[\(sizes)],\"peak_bytes\":\(record.peakBytes),"
        + "\"budget_bytes\":\(budgetBytes.map(String.init) ?? "null")}")
  }

  /// Appends a memory-guard event: a micro-step of `microBatch` samples measured
  /// `measuredPeakBytes`, over the budget, and the rest of the run uses `newMicroBatch`.
  /// The record has `"event": "memory_guard"` and no `loss`, so step readers can skip it.
  public func writeGuardEvent(epoch: Int, step: Int, microBatch: Int, measuredPeakBytes: Int, newMicroBatch: Int) {
    line(
      "{\"event\":\"memory_guard\",\"epoch\":\(epoch),\"step\":\(step),\"micro_batch\":\(microBatch),"
        + "\"measured_peak_bytes\":\(measuredPeakBytes),\"budget_bytes\":\(budgetBytes.map(String.init) ?? "null"),"
        + "\"new_micro_batch\":\(newMicroBatch)}")
  }

  /// Appends a skipped-window event (`"event": "skipped_step"`).
  public func writeSkipEvent(_ value: NonFiniteValue) {
    line(
      "{\"event\":\"skipped_step\",\"epoch\":\(value.epoch),\"step\":\(value.step),"
        + "\"location\":\"\(value.location)\",\"budget_bytes\":\(budgetBytes.map(String.init) ?? "null")}")
  }

  /// Appends the summary.
  public func write(_ report: TrainingReport) {
    let losses = report.epochLosses.map(Self.number).joined(separator: ",")
    line(
      "{\"summary\":true,\"epoch_losses\":[\(losses)],\"max_peak_bytes\":\(report.maxPeakBytes),"
        + "\"budget_violations\":\(report.budgetViolations),"
        + "\"samples_per_second\":\(Self.number(Float(report.samplesPerSecond))),\"steps\":\(report.steps)}")
  }

  func line(_ text: String) {
    handle.write(Data((text + "\n").utf8))
  }

  /// A JSON number (the shortest decimal that reads back as the same `Float`); non-finite
  /// values, which JSON cannot hold, become `null`.
  static func number(_ value: Float) -> String {
    value.isFinite ? "\(value)" : "null"
  }
}
