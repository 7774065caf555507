import Foundation
import Testing
import _TestSupport

/// Inputs that would need more memory than any machine has, or that are malformed, are
/// refused with one line and exit status 1, quickly, before anything large is allocated;
/// none traps.
@Suite("Refusals before allocating")
struct RefusalTests {
  static let directory = try! CommandRunner.temporaryDirectory()

  /// A CSV file of `rows` rows of `features` values and a class label below 6.
  static func data(named name: String, header: String? = nil, features: Int = 4, rows: Int = 8, cell: String? = nil)
    throws -> String
  {
    let url = directory.appendingPathComponent(name)
    var lines = [header ?? ((0..<features).map { "x\($0)" } + ["y"]).joined(separator: ",")]
    for row in 0..<rows {
      var cells = (0..<features).map { "\(Double($0 + row) / 10)" }
      if row == 1, let cell { cells[0] = cell }
      lines.append((cells + ["\(row % 6)"]).joined(separator: ","))
    }
    try Data(lines.joined(separator: "\n").utf8).write(to: url)
    return url.path
  }

  /// Runs `arguments` and checks one line on standard error, exit status 1, no crash,
  /// under `seconds`, naming `words`.
  func expectRefused(_ arguments: [String], mentioning words: [String], seconds: Double = 10) throws {
    let start = Date()
    let result = try CommandRunner.run(arguments)
    let elapsed = Date().timeIntervalSince(start)
    #expect(!result.crashed, "\(arguments): crashed: \(result.error.prefix(300))")
    #expect(result.status == 1, "\(arguments): status \(result.status): \(result.error.prefix(300))")
    let lines = result.error.split(separator: "\n").filter { !$0.isEmpty }
    #expect(lines.count == 1, "\(arguments): \(lines.count) lines: \(result.error.prefix(300))")
    #expect(result.error.count < 1000, "\(arguments): a message of \(result.error.count) characters")
    for word in words { #expect(result.error.contains(word), "\(arguments): \(result.error.prefix(300))") }
    #expect(elapsed < seconds, "\(arguments) took \(elapsed) s")
  }

  @Test func modelsLargerThanTheBudgetAreRefusedBeforeTheyAreBuilt() throws {
    // 3.2 GB of parameters: refused by the plan on the shape-only model, at once.
    let path = try Self.data(named: "wide.csv", features: 1000, rows: 2)
    try expectRefused(
      [
        "train", "--data", path, "--model", "linear(1000,800000)", "--loss", "cross-entropy", "--target-batch", "8",
        "--budget", "1MB", "--epochs", "1",
      ], mentioning: ["too small", "give at least --budget"], seconds: 3)
  }

  @Test func absurdSizesAreRefused() throws {
    let plan = ["plan", "--loss", "cross-entropy", "--target-batch", "8", "--budget", "1MB"]
    try expectRefused(
      plan + ["--model", "linear(1073741824,1073741824)", "--input-shape", "1073741824"], mentioning: ["2^40"])
    try expectRefused(
      plan + ["--model", "conv2d(1073741824,1073741824,3)", "--input-shape", "1073741824x3x3"],
      mentioning: ["2^40"])
    try expectRefused(
      plan + ["--model", "conv2d(3,8,3)", "--input-shape", "99999999999x99999999999"],
      mentioning: ["--input-shape", "2^40"])
    try expectRefused(
      ["plan", "--model", "linear(4,6)", "--input-shape", "4", "--target-batch", "2305843009213693952", "--budget",
       "8000000TB"], mentioning: ["8000000TB", "1 EiB"])
  }

  @Test(.measuresMemory) func stepsLargerThanTheMachineAreNotRun() throws {
    try expectRefused(
      ["bench", "--model", "linear(4,6)", "--input-shape", "4", "--micro-batches", "10000000000", "--loss",
       "cross-entropy"], mentioning: ["--micro-batches", "10000000000"])
    try expectRefused(
      ["plan", "--model", "linear(4,6)", "--input-shape", "4", "--target-batch", "8", "--budget", "1MB", "--measure",
       "--measure-at", "1000000000000", "--loss", "cross-entropy"], mentioning: ["--measure-at", "1000000000000"])
  }

  @Test(.measuresMemory) func stepsTooLongToTimeAreNotTimed() throws {
    try expectRefused(
      ["bench", "--model", "linear(4,6)", "--input-shape", "4", "--micro-batches", "1,2", "--target-batch",
       "1000000000000", "--loss", "cross-entropy"], mentioning: ["1000000000000", "micro-steps"])
  }

  /// The largest target batch and budget there are still plan (no arithmetic overflows).
  @Test func extremeButValidSizesArePlanned() throws {
    let result = try CommandRunner.run([
      "plan", "--model", "conv2d(3,8,3,padding=1) relu flatten linear(512,10)", "--input-shape", "3x8x8",
      "--target-batch", "\(Int.max)", "--budget", "1000000TB", "--optimizer", "adam", "--loss", "cross-entropy",
    ])
    #expect(!result.crashed && result.status == 0, "\(result.error.prefix(300))")
    #expect(result.output.contains("target batch         \(Int.max)"))
  }

  @Test func hugeTargetBatchesAreSummarised() throws {
    let result = try CommandRunner.run([
      "plan", "--model", "linear(48,6)", "--input-shape", "48", "--target-batch", "1000000000000", "--budget", "1MB",
      "--loss", "cross-entropy",
    ])
    #expect(result.status == 0, "\(result.error)")
    #expect(result.output.count < 5000)
    #expect(result.output.contains(" × "), "\(result.output)")
  }

  @Test func filesThatAreNotRegularAreNotRead() throws {
    let path = try Self.data(named: "small.csv")
    try expectRefused(
      ["evaluate", "--model", "linear(4,6)", "--data", path, "--init", "/dev/zero", "--loss", "cross-entropy"],
      mentioning: ["/dev/zero", "not a regular file"])
    try expectRefused(
      ["evaluate", "--model", "linear(4,6)", "--data", "/dev/zero", "--init", path, "--loss", "cross-entropy"],
      mentioning: ["/dev/zero", "not a regular file"])
  }

  /// Files larger than the process can read into memory are refused, not read until an
  /// allocation fails: a 100 MB (sparse) file under a 512 MiB data limit.
  @Test(.limitsProcessMemory) func filesTooLargeForTheProcessAreNotRead() throws {
    let big = Self.directory.appendingPathComponent("big.bin").path
    FileManager.default.createFile(atPath: big, contents: nil)
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: big))
    try handle.truncate(atOffset: 100 << 20)
    try handle.close()
    let small = try Self.data(named: "fits.csv")
    for arguments in [
      ["train", "--data", big, "--model", "linear(4,6)", "--batch", "2", "--epochs", "1"],
      ["evaluate", "--data", small, "--model", "linear(4,6)", "--init", big],
    ] {
      let quoted = arguments.map { "'\($0)'" }.joined(separator: " ")
      let process = Process()
      process.executableURL = URL(fileURLWithPath: "/bin/sh")
      process.arguments = ["-c", "ulimit -d 524288; exec '\(CommandRunner.executable.path)' \(quoted)"]
      let error = Pipe()
      process.standardError = error
      process.standardOutput = Pipe()
      try process.run()
      let message = String(decoding: CommandRunner.readAll(error.fileHandleForReading.fileDescriptor), as: UTF8.self)
      process.waitUntilExit()
      #expect(process.terminationReason == .exit && process.terminationStatus == 1, "\(arguments): \(message.prefix(300))")
      #expect(message.contains("more than this process can read into memory"), "\(message.prefix(300))")
    }
  }

  @Test func negativeNumbersGetARealMessage() throws {
    let path = try Self.data(named: "negative.csv")
    let train = ["train", "--data", path, "--model", "linear(4,6)", "--loss", "cross-entropy", "--epochs", "1"]
    try expectRefused(train + ["--batch", "4", "--lr", "-1"], mentioning: ["--lr must be positive, got -1"])
    try expectRefused(train + ["--batch", "4", "--momentum", "-0.5"], mentioning: ["--momentum", "-0.5"])
    try expectRefused(train + ["--batch", "-4"], mentioning: ["--batch", "-4"])
  }

  @Test func malformedInputsAreRefused() throws {
    let plan = ["plan", "--input-shape", "2", "--target-batch", "8", "--budget", "1MB", "--loss", "mse"]
    try expectRefused(plan + ["--model", "linear(2,3,bias=false,bias=true)"], mentioning: ["bias", "twice"])
    try expectRefused(
      ["plan", "--model", "linear(2,3)", "--input-shape", "2", "--target-batch", "8"], mentioning: ["--budget is required"])
    let nul = try Self.data(named: "nul.csv", cell: "1\u{0}5")
    try expectRefused(
      ["train", "--data", nul, "--model", "linear(4,6)", "--loss", "cross-entropy", "--epochs", "1", "--batch", "4"],
      mentioning: ["line 3", "\\0"])
    let duplicate = try Self.data(named: "duplicate.csv", header: "a,b,c,y,y", features: 4)
    try expectRefused(
      ["train", "--data", duplicate, "--label-column", "y", "--model", "linear(4,6)", "--loss", "cross-entropy",
       "--epochs", "1", "--batch", "4"], mentioning: ["\"y\"", "3, 4"])
  }

  @Test func longValuesAreCutInMessages() throws {
    let long = try Self.data(named: "long.csv", cell: String(repeating: "z", count: 5_000_000))
    try expectRefused(
      ["train", "--data", long, "--model", "linear(4,6)", "--loss", "cross-entropy", "--epochs", "1", "--batch", "4"],
      mentioning: ["zzzz…zzzz", "5000000 bytes"])
  }
}
