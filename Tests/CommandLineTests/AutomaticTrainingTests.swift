import Foundation
import GradAccum
import Testing
import _TestSupport

/// The digits data set shipped with the command-line tool.
let digitsPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
  .deletingLastPathComponent().appendingPathComponent("Sources/gradaccum/Resources/digits.csv").path

@Suite("gradaccum train, automatic mode")
struct AutomaticTrainingTests {
  static let common = [
    "train", "--data", digitsPath, "--model", "linear(64,32) relu linear(32,10)", "--loss", "cross-entropy",
    "--optimizer", "adam", "--lr", "0.01",
  ]

  /// The budget a too-small budget's message asks for is enough: it includes the trainer's
  /// safety margin, so training runs at micro-batch 1 within it; one byte less is refused.
  @Test(.measuresMemory) func theStatedMinimumBudgetTrains() throws {
    let refused = try CommandRunner.run(Self.common + ["--epochs", "1", "--target-batch", "64", "--budget", "1KB"])
    #expect(refused.status == 1)
    let minimum = refused.error.components(separatedBy: "give at least --budget ").last.flatMap {
      Int($0.prefix { $0.isNumber })
    }
    #expect(minimum != nil, "\(refused.error)")
    guard let minimum else { return }
    let below = try CommandRunner.run(
      Self.common + ["--epochs", "1", "--target-batch", "64", "--budget", "\(minimum - 1)"])
    #expect(below.status == 1 && below.error.contains("(\(minimum - 1) bytes) is too small"), "\(below.error)")
    let directory = try CommandRunner.temporaryDirectory()
    let log = directory.appendingPathComponent("log.jsonl").path
    let result = try CommandRunner.run(
      Self.common + ["--epochs", "1", "--target-batch", "64", "--budget", "\(minimum)", "--log", log])
    #expect(result.status == 0, "\(result.error)")
    #expect(result.output.contains("largest micro-batch  1 "), "\(result.output)")
    let summary = try CommandRunner.logRecords(at: log).last
    #expect((summary?["budget_violations"] as? Int ?? 99) == 0, "\(String(describing: summary))")
  }

  @Test(.measuresMemory) func plansTrainsWithinBudgetAndLogs() throws {
    let directory = try CommandRunner.temporaryDirectory()
    let log = directory.appendingPathComponent("log.jsonl").path
    let result = try CommandRunner.run(
      Self.common + ["--epochs", "2", "--target-batch", "100", "--budget", "80KB", "--log", log])
    #expect(result.status == 0, "\(result.error)")
    #expect(result.output.contains("each window"))
    #expect(result.output.contains("epoch 2/2"))
    let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
    let records = try lines.dropLast().map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    #expect(records.count == 2 * 18)
    #expect(records.allSatisfy { ($0["budget_bytes"] as? Int) == 80 * 1024 })
    #expect(records.allSatisfy { ($0["peak_bytes"] as! Int) <= 80 * 1024 })
    #expect(records.contains { ($0["micro_batches"] as! [Int]).count > 1 })
    // 1797 = 17 × 100 + 97: the last window of each epoch holds 97 samples.
    #expect(records[17]["samples"] as? Int == 97)
    let summary = try JSONSerialization.jsonObject(with: Data(lines.last!.utf8)) as! [String: Any]
    #expect(summary["budget_violations"] as? Int == 0)
    #expect((summary["max_peak_bytes"] as! Int) <= 80 * 1024)
  }

  @Test(arguments: [
    (["--epochs", "1", "--target-batch", "64", "--budget", "1MB", "--batch", "8"], "cannot be mixed"),
    (["--epochs", "1", "--target-batch", "64", "--budget", "1MB", "--accumulate", "2"], "cannot be mixed"),
    (["--epochs", "1", "--target-batch", "64"], "automatic mode needs both --target-batch and --budget"),
    (["--epochs", "1", "--budget", "1MB"], "automatic mode needs both --target-batch and --budget"),
    (["--epochs", "1"], "give --target-batch and --budget (automatic mode) or --batch (manual mode)"),
    (["--epochs", "1", "--target-batch", "0", "--budget", "1MB"], "--target-batch is 0"),
    (["--epochs", "1", "--target-batch", "64", "--budget", "64QB"], "unknown unit"),
    (["--epochs", "1", "--target-batch", "64", "--budget", "1KB"], "is too small: even a micro-batch of 1 needs"),
    (
      ["--epochs", "1", "--target-batch", "64", "--budget", "1MB", "--resume", "/nonexistent.ckpt"],
      "cannot read safetensors file /nonexistent.ckpt"
    ),
    (["--epochs", "1", "--target-batch", "64", "--budget", "1MB", "--clip-grad-norm", "0"], "--clip-grad-norm is 0.0"),
  ])
  func badInputGivesOneClearLine(extra: [String], message: String) throws {
    let result = try CommandRunner.run(Self.common + extra)
    #expect(result.status != 0 && !result.crashed)
    #expect(result.error.split(separator: "\n").count == 1, "\(result.error)")
    #expect(result.error.contains(message), "\(result.error)")
  }

  /// Manual mode is the same loop with a fixed schedule: a run checkpointed after one epoch
  /// and resumed to three ends byte-identical to three uninterrupted epochs (seeded shuffle
  /// and dropout included).
  @Test(.measuresMemory) func manualModeResumesToTheSameBytes() throws {
    let directory = try CommandRunner.temporaryDirectory()
    let manual = [
      "train", "--data", digitsPath, "--model", "linear(64,32) relu dropout(0.2) linear(32,10)", "--loss",
      "cross-entropy", "--optimizer", "adam", "--lr", "0.01", "--batch", "16", "--accumulate", "3", "--seed", "7",
      "--quiet",
    ]
    let straight = directory.appendingPathComponent("straight.safetensors").path
    let resumed = directory.appendingPathComponent("resumed.safetensors").path
    let checkpoint = directory.appendingPathComponent("run.ckpt").path
    #expect(try CommandRunner.run(manual + ["--epochs", "3", "--save", straight]).status == 0)
    let first = try CommandRunner.run(manual + ["--epochs", "1", "--checkpoint", checkpoint])
    #expect(first.status == 0, "\(first.error)")
    let second = try CommandRunner.run(
      manual + ["--epochs", "3", "--resume", checkpoint, "--checkpoint", checkpoint, "--save", resumed])
    #expect(second.status == 0, "\(second.error)")
    #expect(try Data(contentsOf: URL(fileURLWithPath: resumed)) == Data(contentsOf: URL(fileURLWithPath: straight)))
  }

  /// `--drop-last` drops the last partial window in both modes: 600 rows, windows of 64.
  @Test(.measuresMemory, arguments: [["--target-batch", "64", "--budget", "1MB"], ["--batch", "16", "--accumulate", "4"]])
  func dropLastDropsThePartialWindow(mode: [String]) throws {
    let directory = try CommandRunner.temporaryDirectory()
    let rows = try String(contentsOfFile: digitsPath, encoding: .utf8).split(separator: "\n").prefix(601)
    let data = directory.appendingPathComponent("600.csv")
    try Data(rows.joined(separator: "\n").utf8).write(to: data)
    let log = directory.appendingPathComponent("log.jsonl").path
    let result = try CommandRunner.run(
      ["train", "--data", data.path, "--model", "linear(64,32) relu linear(32,10)", "--loss", "cross-entropy",
       "--epochs", "1", "--drop-last", "--quiet", "--log", log] + mode)
    #expect(result.status == 0, "\(result.error)")
    let steps = try CommandRunner.logRecords(at: log).filter { $0["step"] != nil }
    #expect(steps.count == 9)
    #expect(steps.allSatisfy { ($0["samples"] as? Int) == 64 })
  }

  /// `plan` and `train` make one plan: the window sizes `plan` prints are the ones `train`
  /// runs, at budgets that give several accumulation counts.
  @Test(.measuresMemory, arguments: ["46KB", "48KB", "50KB", "56KB", "64KB", "300KB"])
  func planPrintsTheWindowsTrainRuns(budget: String) throws {
    let model = "linear(64,32) relu linear(32,10)"
    let planned = try CommandRunner.run([
      "plan", "--model", model, "--input-shape", "64", "--loss", "cross-entropy", "--optimizer", "adam",
      "--target-batch", "64", "--budget", budget, "--json",
    ])
    #expect(planned.status == 0, "\(planned.error)")
    let plan = try JSONSerialization.jsonObject(with: Data(planned.output.utf8)) as! [String: Any]
    let directory = try CommandRunner.temporaryDirectory()
    let log = directory.appendingPathComponent("log.jsonl").path
    let trained = try CommandRunner.run(
      Self.common + ["--epochs", "1", "--target-batch", "64", "--budget", budget, "--quiet", "--log", log])
    #expect(trained.status == 0, "\(trained.error)")
    let first = try CommandRunner.logRecords(at: log).first
    #expect(first?["micro_batches"] as? [Int] == plan["window_sizes"] as? [Int], "\(budget)")
  }

  /// `--validation-split` holds out a seeded fraction and reports its loss and accuracy
  /// after every epoch, on the terminal and in the log.
  @Test(.measuresMemory) func validationSplitReportsEveryEpoch() throws {
    let directory = try CommandRunner.temporaryDirectory()
    let log = directory.appendingPathComponent("log.jsonl").path
    let result = try CommandRunner.run(
      Self.common + ["--epochs", "2", "--batch", "64", "--validation-split", "0.2", "--log", log])
    #expect(result.status == 0, "\(result.error)")
    #expect(result.output.components(separatedBy: "validation loss").count == 3, "\(result.output)")
    let lines = try CommandRunner.logRecords(at: log)
    let validations = lines.filter { $0["event"] as? String == "validation" }
    #expect(validations.count == 2)
    #expect(validations.allSatisfy { $0["samples"] as? Int == 359 && ($0["accuracy"] as? Double ?? 0) > 0.5 })
    // 1797 − 359 samples train: windows of 64.
    #expect(lines.filter { $0["step"] != nil && $0["event"] == nil }.count == 2 * 23)
    let refused = try CommandRunner.run(Self.common + ["--epochs", "1", "--batch", "64", "--validation-split", "1.5"])
    #expect(refused.status == 1 && refused.error.contains("validation fraction of 1.5"), "\(refused.error)")
  }

  /// `--feature-scale` multiplies every feature (the demo's pixel scaling on the command
  /// line): evaluating with the scale the weights were trained with gives their accuracy.
  @Test(.measuresMemory) func featureScaleScalesTheInputs() throws {
    let directory = try CommandRunner.temporaryDirectory()
    let weights = directory.appendingPathComponent("w.safetensors").path
    let scaled = ["--feature-scale", "0.0625"]
    let trained = try CommandRunner.run(
      Self.common + ["--epochs", "3", "--batch", "32", "--quiet", "--save", weights] + scaled)
    #expect(trained.status == 0, "\(trained.error)")
    func accuracy(_ extra: [String]) throws -> Double {
      let result = try CommandRunner.run(
        ["evaluate", "--data", digitsPath, "--model", "linear(64,32) relu linear(32,10)", "--init", weights, "--json"]
          + extra)
      let object = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]
      return object?["accuracy"] as? Double ?? 0
    }
    #expect(try accuracy(scaled) > 0.9)
    #expect(try accuracy(scaled) > accuracy([]))
    let refused = try CommandRunner.run(Self.common + ["--epochs", "1", "--batch", "32", "--feature-scale", "0"])
    #expect(refused.status != 0 && refused.error.contains("--feature-scale must be a finite, non-zero number"))
  }

  /// A run refused before it starts leaves no log file behind.
  @Test func aRefusedRunLeavesNoLog() throws {
    let directory = try CommandRunner.temporaryDirectory()
    let log = directory.appendingPathComponent("log.jsonl").path
    let result = try CommandRunner.run(
      Self.common + ["--epochs", "1", "--target-batch", "64", "--budget", "1KB", "--log", log])
    #expect(result.status == 1)
    #expect(!FileManager.default.fileExists(atPath: log))
  }

  @Test(.measuresMemory) func resumingFromAWeightsFileIsRefused() throws {
    let directory = try CommandRunner.temporaryDirectory()
    let weights = directory.appendingPathComponent("w.safetensors").path
    #expect(
      try CommandRunner.run(Self.common + ["--epochs", "1", "--batch", "64", "--quiet", "--save", weights]).status == 0)
    let result = try CommandRunner.run(
      Self.common + ["--epochs", "1", "--target-batch", "64", "--budget", "1MB", "--resume", weights])
    #expect(result.status != 0 && result.error.contains("is not a GradAccum checkpoint"), "\(result.error)")
  }

  @Test(.measuresMemory) func interruptedRunResumesToTheSameWeights() throws {
    let directory = try CommandRunner.temporaryDirectory()
    let checkpoint = directory.appendingPathComponent("run.ckpt").path
    let straight = directory.appendingPathComponent("straight.safetensors").path
    let resumed = directory.appendingPathComponent("resumed.safetensors").path
    let arguments =
      Self.common + ["--epochs", "40", "--target-batch", "100", "--budget", "80KB", "--seed", "5", "--quiet"]
    #expect(try CommandRunner.run(arguments + ["--save", straight]).status == 0)

    // Interrupt a run with a checkpoint, as Ctrl-C would.
    let process = Process()
    process.executableURL = CommandRunner.executable
    process.arguments = arguments + ["--checkpoint", checkpoint, "--checkpoint-every", "1"]
    let errorPipe = Pipe()
    process.standardError = errorPipe
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    // The first checkpoint shows that training (and its Ctrl-C handling) has started.
    let deadline = Date().addingTimeInterval(60)
    while !FileManager.default.fileExists(atPath: checkpoint) && Date() < deadline && process.isRunning {
      Thread.sleep(forTimeInterval: 0.01)
    }
    Thread.sleep(forTimeInterval: 0.2)
    process.interrupt()
    let errorText = String(decoding: errorPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    #expect(process.terminationReason == .exit && process.terminationStatus == 0, "\(errorText)")
    #expect(errorText.contains("interrupted: checkpoint written to \(checkpoint)"), "\(errorText)")

    let result = try CommandRunner.run(arguments + ["--resume", checkpoint, "--save", resumed])
    #expect(result.status == 0, "\(result.error)")
    let a = try SafetensorsFile.read(path: straight), b = try SafetensorsFile.read(path: resumed)
    for name in a.names {
      #expect(try a.floatTensor(name).values == b.floatTensor(name).values, "\(name) differs")
    }
  }
}

@Suite("gradaccum train progress")
struct ProgressTests {
  @Test(.measuresMemory) func terminalGetsALiveLineAndPipesALinePerEpoch() throws {
    let arguments = AutomaticTrainingTests.common + ["--epochs", "2", "--target-batch", "100", "--budget", "80KB"]
    // Through a pipe: plain lines, one per epoch, no carriage returns.
    let piped = try CommandRunner.run(arguments)
    #expect(piped.status == 0)
    #expect(!piped.output.contains("\r"))
    #expect(piped.output.contains("epoch 1/2  loss") && piped.output.contains("epoch 2/2  loss"))
    // On a terminal (script(1) gives the command a pseudo-terminal): a live line per step.
    let quoted = ([CommandRunner.executable.path] + arguments).map { "'\($0)'" }.joined(separator: " ")
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/script")
    process.arguments = ["-qec", quoted, "/dev/null"]
    let output = Pipe()
    process.standardOutput = output
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    #expect(process.terminationStatus == 0, "\(text)")
    #expect(text.contains("\r\u{1B}[2Kepoch 1/2  step 1  loss"), "\(text.prefix(500))")
    #expect(text.contains("samples/s  peak") && text.contains("ETA"))
    // --quiet: nothing.
    let quiet = try CommandRunner.run(arguments + ["--quiet"])
    #expect(quiet.status == 0 && quiet.output.isEmpty)
  }

  @Test(.measuresMemory) func interruptWithoutACheckpointSaysSo() throws {
    let process = Process()
    process.executableURL = CommandRunner.executable
    let log = try CommandRunner.temporaryDirectory().appendingPathComponent("log.jsonl").path
    process.arguments =
      AutomaticTrainingTests.common + [
        "--epochs", "200", "--target-batch", "100", "--budget", "80KB", "--quiet", "--log", log,
      ]
    let errorPipe = Pipe()
    process.standardError = errorPipe
    try process.run()
    let deadline = Date().addingTimeInterval(60)
    while (try? String(contentsOfFile: log, encoding: .utf8))?.isEmpty ?? true, Date() < deadline, process.isRunning {
      Thread.sleep(forTimeInterval: 0.01)
    }
    process.interrupt()
    let text = String(decoding: errorPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    #expect(process.terminationReason == .exit && process.terminationStatus == 0, "\(text)")
    #expect(text.contains("interrupted (no --checkpoint was given, so progress is not saved)"), "\(text)")
  }
}

@Suite("gradaccum train, non-finite values")
struct NonFiniteCommandTests {
  @Test(.measuresMemory) func stopIsOneLineAndSkipGoesOn() throws {
    let directory = try CommandRunner.temporaryDirectory()
    let data = directory.appendingPathComponent("article.csv")
    _ = try writeArticleData(to: data, count: 200)
    let arguments = [
      "train", "--data", data.path, "--model", "linear(2,8) relu linear(8,1)", "--loss", "mse", "--optimizer", "sgd",
      "--lr", "1e6", "--epochs", "5", "--target-batch", "20", "--budget", "1MB", "--quiet",
    ]
    let stopped = try CommandRunner.run(arguments)
    #expect(stopped.status != 0 && !stopped.crashed)
    #expect(stopped.error.split(separator: "\n").count == 1, "\(stopped.error)")
    #expect(stopped.error.contains("non-finite values at step"), "\(stopped.error)")
    let skipped = try CommandRunner.run(arguments + ["--on-nonfinite", "skip"])
    #expect(skipped.status == 0, "\(skipped.error)")
    #expect(skipped.error.contains("warning: skipped step"), "\(skipped.error)")
    // Manual mode checks too.
    let manual =
      arguments.filter { !["--target-batch", "20", "--budget", "1MB"].contains($0) } + [
        "--batch", "10", "--accumulate", "2",
      ]
    let manualStopped = try CommandRunner.run(manual)
    #expect(
      manualStopped.status != 0 && manualStopped.error.contains("non-finite values at step"), "\(manualStopped.error)")
    let manualSkipped = try CommandRunner.run(manual.filter { $0 != "--quiet" } + ["--on-nonfinite", "skip"])
    #expect(manualSkipped.status == 0, "\(manualSkipped.error)")
    #expect(manualSkipped.error.contains("warning: skipped step"), "\(manualSkipped.error)")
  }
}

@Suite("gradaccum train, killed while checkpointing")
struct KilledRunTests {
  @Test(.measuresMemory) func aRunKilledWithSIGKILLResumesFromTheFileItLeft() throws {
    let directory = try CommandRunner.temporaryDirectory()
    let checkpoint = directory.appendingPathComponent("run.ckpt").path
    let straight = directory.appendingPathComponent("straight.safetensors").path
    let resumed = directory.appendingPathComponent("resumed.safetensors").path
    let arguments =
      AutomaticTrainingTests.common + [
        "--epochs", "30", "--target-batch", "100", "--budget", "80KB", "--seed", "9", "--quiet",
      ]
    #expect(try CommandRunner.run(arguments + ["--save", straight]).status == 0)
    for delay in [0.05, 0.3] {
      try? FileManager.default.removeItem(atPath: checkpoint)
      let process = Process()
      process.executableURL = CommandRunner.executable
      process.arguments = arguments + ["--checkpoint", checkpoint, "--checkpoint-every", "1"]
      try process.run()
      let deadline = Date().addingTimeInterval(60)
      while !FileManager.default.fileExists(atPath: checkpoint) && Date() < deadline && process.isRunning {
        Thread.sleep(forTimeInterval: 0.005)
      }
      Thread.sleep(forTimeInterval: delay)
      kill(process.processIdentifier, SIGKILL)
      process.waitUntilExit()
      #expect(process.terminationReason == .uncaughtSignal)
      // Whatever moment the kill hit, the file is a whole checkpoint.
      _ = try SafetensorsFile.read(path: checkpoint)
      let result = try CommandRunner.run(arguments + ["--resume", checkpoint, "--save", resumed])
      #expect(result.status == 0, "\(result.error)")
      let a = try SafetensorsFile.read(path: straight), b = try SafetensorsFile.read(path: resumed)
      for name in a.names { #expect(try a.floatTensor(name).values == b.floatTensor(name).values, "\(name) differs") }
    }
  }
}

@Suite("gradaccum train, convolutional network")
struct ConvolutionalTrainingTests {
  @Test(.measuresMemory) func aCNNTrainsOnTheDigitsWithinItsBudget() throws {
    let directory = try CommandRunner.temporaryDirectory()
    let log = directory.appendingPathComponent("log.jsonl").path
    let result = try CommandRunner.run([
      "train", "--data", digitsPath, "--input-shape", "1x8x8", "--model",
      "conv2d(1,8,3,padding=1) relu maxpool2d(2) flatten linear(128,10)",
      "--loss", "cross-entropy", "--optimizer", "adam", "--lr", "0.01", "--epochs", "2", "--target-batch", "64",
      "--budget", "200KB",
      "--log", log, "--quiet",
    ])
    #expect(result.status == 0, "\(result.error)")
    let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
    let summary = try JSONSerialization.jsonObject(with: Data(lines.last!.utf8)) as! [String: Any]
    let losses = summary["epoch_losses"] as! [Double]
    #expect(losses[1] < losses[0] && losses[1] < 0.6)
    #expect(summary["budget_violations"] as? Int == 0)
    #expect((summary["max_peak_bytes"] as! Int) <= 200 * 1024)
  }
}
