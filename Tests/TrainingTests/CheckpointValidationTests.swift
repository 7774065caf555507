import Foundation
import GradAccum
import Testing
import _TestSupport

#if canImport(Glibc)
  import Glibc
#endif

/// A checkpoint resumes only the run it belongs to, undamaged, and under this run's budget.
@Suite("Checkpoint validation")
struct CheckpointValidationTests {
  static let spec = "linear(16,48) relu linear(48,5)"

  func makeTrainer(
    spec: String = spec, optimizer: Optimizer? = nil, budgetMicroBatch: Int = 12, checkpoint: String? = nil
  ) throws -> Trainer {
    let model = try ModelSpecification(parsing: spec).build(seed: 8)
    let optimizer = try optimizer ?? Adam(learningRate: 0.01)
    var options = TrainerOptions()
    options.checkpointPath = checkpoint
    let estimator = try MemoryEstimator(model: model, sampleShape: [16], loss: .crossEntropy, optimizer: optimizer)
    let budget = MemoryBudget.bytes(
      Int(Double(estimator.estimate(microBatch: budgetMicroBatch).peakBytes + 64) / 0.99) + 1)
    return try Trainer(
      model: model, optimizer: optimizer, loss: .crossEntropy, targetBatch: 32, memoryBudget: budget, options: options)
  }

  /// A checkpoint of a run stopped mid-window (so it holds accumulated gradients too).
  func writeCheckpoint() throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("gradaccum-check-\(UUID()).ckpt").path
    let trainer = try makeTrainer(checkpoint: path)
    var microSteps = 0
    trainer.onEvent = { [unowned trainer] event in
      guard case .microStep = event else { return }
      microSteps += 1
      if microSteps == 5 { trainer.requestStop() }
    }
    try trainer.fit(classificationData(count: 100, features: 16, classes: 5, seed: 4), epochs: 2)
    return path
  }

  func expectRefusal(_ path: String, by trainer: Trainer, mentioning words: [String]) {
    do {
      try trainer.resume(from: path)
      Issue.record("resumed from \(path), expected a refusal mentioning \(words)")
    } catch {
      for word in words { #expect(error.description.contains(word), "\(error)") }
    }
  }

  /// A byte of the header (in the metadata), of the first tensor's data and of the last
  /// tensor's data.
  @Test(arguments: [100, -4000, -1])
  func aFlippedByteIsRefused(position: Int) throws {
    let path = try writeCheckpoint()
    defer { try? FileManager.default.removeItem(atPath: path) }
    var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    bytes[position >= 0 ? position : bytes.count + position] ^= 0x10
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    expectRefusal(path, by: try makeTrainer(), mentioning: position >= 0 ? [path] : [path, "damaged", "checksum"])
  }

  @Test func anEditedMicroBatchInTheMetadataIsRefused() throws {
    let path = try writeCheckpoint()
    defer { try? FileManager.default.removeItem(atPath: path) }
    var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    // Same length, so the offsets stay valid: only the checksum can tell.
    let key = Array(#"\"microBatch\":"#.utf8)
    let start = try #require((0...(bytes.count - key.count)).first { Array(bytes[$0..<($0 + key.count)]) == key })
    let digit = start + key.count
    bytes[digit] = bytes[digit] == UInt8(ascii: "9") ? UInt8(ascii: "8") : UInt8(ascii: "9")
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    expectRefusal(path, by: try makeTrainer(), mentioning: ["damaged"])
  }

  @Test func anotherOptimizerIsRefused() throws {
    let path = try writeCheckpoint()
    defer { try? FileManager.default.removeItem(atPath: path) }
    expectRefusal(path, by: try makeTrainer(optimizer: try SGD(learningRate: 0.1)), mentioning: ["adam", "sgd"])
    expectRefusal(path, by: try makeTrainer(optimizer: try AdamW(learningRate: 0.01)), mentioning: ["adam", "adamw"])
    expectRefusal(
      path, by: try makeTrainer(optimizer: try Adam(learningRate: 0.01, amsgrad: true)), mentioning: ["optimizer state"])
  }

  @Test func anotherModelIsRefused() throws {
    let path = try writeCheckpoint()
    defer { try? FileManager.default.removeItem(atPath: path) }
    expectRefusal(
      path, by: try makeTrainer(spec: "linear(16,48) tanh linear(48,5)"),
      mentioning: ["linear(16,48) relu linear(48,5)", "linear(16,48) tanh linear(48,5)"])
  }

  /// A lower budget re-plans: the checkpoint's micro-batch is not reused, and the rest of the
  /// unfinished window is split for the new plan.
  @Test(.measuresMemory) func aLowerBudgetRePlans() throws {
    let path = try writeCheckpoint()
    defer { try? FileManager.default.removeItem(atPath: path) }
    let before = try makeTrainer().plan.microBatch
    let trainer = try makeTrainer(budgetMicroBatch: 5)
    #expect(trainer.plan.microBatch == 5 && before == 12)
    try trainer.resume(from: path)
    #expect(trainer.plan.microBatch == 5)
    #expect(trainer.warnings.contains { $0.contains("budget") })
    var records: [StepRecord] = []
    trainer.onEvent = { if case .step(let record) = $0 { records.append(record) } }
    let report = try trainer.fit(classificationData(count: 100, features: 16, classes: 5, seed: 4), epochs: 2)
    #expect(report.budgetViolations == 0)
    // The first window began under the old plan (its peak was measured then); what is left
    // of it runs at the new micro-batch.
    let first = try #require(records.first)
    #expect(first.microBatches.reduce(0, +) == 32 && first.microBatches.last! <= 5, "\(first.microBatches)")
    let later = records.dropFirst().map(\.peakBytes)
    #expect(!later.isEmpty && later.allSatisfy { $0 <= trainer.memoryBudget!.bytes }, "\(later)")
  }

  @Test func stalePartialFilesAreRemoved() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("gradaccum-partial-\(UUID())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let path = directory.appendingPathComponent("run.ckpt").path
    // A process that has ended, and one that runs (this one's parent).
    let ended = Process()
    ended.executableURL = URL(fileURLWithPath: "/bin/true")
    try ended.run()
    ended.waitUntilExit()
    let stale = path + ".partial-\(ended.processIdentifier)"
    let live = path + ".partial-\(getppid())"
    FileManager.default.createFile(atPath: stale, contents: Data([1, 2, 3]))
    FileManager.default.createFile(atPath: live, contents: Data([1, 2, 3]))
    try AtomicFile.write([4, 5, 6], to: path)
    #expect(!FileManager.default.fileExists(atPath: stale))
    #expect(FileManager.default.fileExists(atPath: live))
    #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data([4, 5, 6]))
  }
}
