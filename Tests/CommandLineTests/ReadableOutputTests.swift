import Foundation
import Testing
import _TestSupport

/// Output a person reads at a glance: units that follow the size, labels that say what a
/// number is, a finished run that says so, checkpoints usable as weights.
@Suite("Readable output")
struct ReadableOutputTests {
  static let model = "linear(64,32) relu linear(32,10)"

  // Exact predictions (the 48 KB plan) need jemalloc to count the objects a step makes.
  @Test(.measuresMemory) func smallBudgetsPrintInKiB() throws {
    let result = try CommandRunner.run([
      "plan", "--model", Self.model, "--input-shape", "64", "--target-batch", "64", "--budget", "120KB",
      "--optimizer", "adam",
    ])
    #expect(result.status == 0, "\(result.error)")
    #expect(result.output.contains("budget            120.00 KiB   122880 bytes"), "\(result.output)")
    #expect(!result.output.contains("MiB"), "\(result.output)")
    // What each number is: the largest micro-batch, then one window's micro-batches.
    #expect(result.output.contains("largest micro-batch  64 (the largest that fits the budget)"), "\(result.output)")
    #expect(result.output.contains("each window          1 micro-batch: 64"), "\(result.output)")
    let tight = try CommandRunner.run([
      "plan", "--model", Self.model, "--input-shape", "64", "--target-batch", "64", "--budget", "45KB",
      "--optimizer", "adam",
    ])
    #expect(tight.output.contains("each window          10 micro-batches: 7, 7, 7, 7, 6, 6, 6, 6, 6, 6"), "\(tight.output)")
  }

  @Test(.measuresMemory) func resumingAFinishedRunSaysSoAndCheckpointsAreWeights() throws {
    let directory = try CommandRunner.temporaryDirectory()
    let checkpoint = directory.appendingPathComponent("run.ckpt").path
    let train = [
      "train", "--data", digitsPath, "--model", Self.model, "--epochs", "1", "--target-batch", "64", "--budget",
      "200KB", "--quiet",
    ]
    #expect(try CommandRunner.run(train + ["--checkpoint", checkpoint]).status == 0)
    let again = try CommandRunner.run(train.filter { $0 != "--quiet" } + ["--resume", checkpoint])
    #expect(again.status == 0, "\(again.error)")
    #expect(again.output.contains("already finished 1 epoch"), "\(again.output)")
    #expect(again.output.contains("give --epochs 2 or more"), "\(again.output)")
    let evaluated = try CommandRunner.run([
      "evaluate", "--data", digitsPath, "--model", Self.model, "--init", checkpoint, "--json",
    ])
    #expect(evaluated.status == 0, "\(evaluated.error)")
    #expect(evaluated.output.contains("\"sample_count\":1797"), "\(evaluated.output)")
  }
}
