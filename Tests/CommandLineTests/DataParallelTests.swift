import Foundation
import GradAccum
import Testing
import _TestSupport

/// `mpirun -np N gradaccum train`: one global target batch over N processes, exact (equal to
/// one process up to float rounding), with uneven last windows, masked tokens that differ
/// per rank, elastic resume, and one error ending every rank.
@Suite("Data parallel on MPI", .serialized)
struct DataParallelTests {
  static let model = "linear(64,32) relu linear(32,10)"

  /// The first `rows` digits (1,797 ship) as a CSV in `directory`.
  static func digits(rows: Int, in directory: URL) throws -> String {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent()
    let text = try String(
      contentsOf: root.appendingPathComponent("Sources/gradaccum/Resources/digits.csv"), encoding: .utf8)
    let lines = text.split(separator: "\n").prefix(rows + 1)
    let path = directory.appendingPathComponent("digits-\(rows).csv").path
    try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
    return path
  }

  static func train(
    processes: Int, _ arguments: [String], save: String, extra: [String] = []
  ) throws -> CommandRunner.Result {
    let all = ["train"] + arguments + ["--save", save, "--quiet"] + extra
    return processes == 1 ? try CommandRunner.run(all) : try CommandRunner.runParallel(processes: processes, all)
  }

  static func expectSameWeights(_ a: String, _ b: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let x = try SafetensorsFile.read(path: a), y = try SafetensorsFile.read(path: b)
    #expect(x.entries.keys.sorted() == y.entries.keys.sorted(), sourceLocation: sourceLocation)
    for name in x.entries.keys.sorted() {
      let u = try x.floatTensor(name).values, v = try y.floatTensor(name).values
      let scale = u.map(abs).max() ?? 1
      let difference = zip(u, v).map { abs($0 - $1) }.max() ?? 0
      #expect(difference <= 1e-4 * max(scale, 1e-6), "\(name): \(difference)", sourceLocation: sourceLocation)
    }
  }

  /// Adam, budgets that force accumulation per process, 2 and 3 processes against one; the
  /// last window of 129 samples holds 1 sample, so with 3 processes two ranks get none.
  @Test(.measuresMemory) func everyWorldSizeTrainsLikeOneProcess() throws {
    let directory = try CommandRunner.temporaryDirectory()
    let data = try Self.digits(rows: 129, in: directory)
    let arguments = [
      "--data", data, "--feature-scale", "0.0625", "--model", Self.model, "--optimizer", "adam", "--lr", "0.01",
      "--epochs", "2", "--target-batch", "64", "--budget", "60KB",
    ]
    let one = directory.appendingPathComponent("one.safetensors").path
    let single = try Self.train(processes: 1, arguments, save: one)
    #expect(single.status == 0, "\(single.error)")
    for processes in [2, 3] {
      let path = directory.appendingPathComponent("n\(processes).safetensors").path
      let log = directory.appendingPathComponent("n\(processes).jsonl").path
      let result = try Self.train(processes: processes, arguments, save: path, extra: ["--log", log])
      #expect(result.status == 0, "\(result.error)")
      try Self.expectSameWeights(one, path)
      let records = try CommandRunner.logRecords(at: log)
      let steps = records.filter { $0["loss"] != nil }
      #expect(steps.count == 6, "one record per optimizer step")
      #expect(steps.allSatisfy { ($0["peak_bytes"] as? Int ?? .max) <= 60 * 1024 })
      #expect(steps.contains { ($0["micro_batches"] as? [Int])?.count ?? 0 >= 2 }, "the budget forces accumulation")
      let lastShares = steps.last?["shares"] as? [Int]
      #expect(lastShares == (processes == 2 ? [1, 0] : [1, 0, 0]), "\(String(describing: lastShares))")
      let summary = try #require(records.last)
      #expect(summary["world_size"] as? Int == processes && summary["budget_violations"] as? Int == 0)
    }
  }

  /// Masked labels spread unevenly, so each rank's token count differs: the window's
  /// count is the sum, and 2 and 3 processes end where one does.
  @Test(.measuresMemory) func maskedTokenCountsThatDifferPerRank() throws {
    let directory = try CommandRunner.temporaryDirectory()
    var generator = RandomGenerator(seed: 12)
    var lines: [String] = []
    for index in 0..<31 {
      let length = [2, 3, 5, 8, 13, 21][Int(generator.next() % 6)]
      let ids = (0..<length).map { _ in Int(generator.next() % 16) }
      let labels = ids.enumerated().map { index % 3 == 0 && $0.offset < 4 ? -100 : $0.element }
      lines.append("{\"input_ids\": \(ids), \"labels\": \(labels)}")
    }
    let data = directory.appendingPathComponent("masked.jsonl").path
    try (lines.joined(separator: "\n") + "\n").write(toFile: data, atomically: true, encoding: .utf8)
    let arguments = [
      "--data", data, "--model",
      "embedding(16,8) positionalembedding(24,8) transformerblock(8,2,ff=16) layernorm(8) linear(8,16)",
      "--optimizer", "sgd", "--momentum", "0.9", "--lr", "0.05", "--epochs", "2", "--target-batch", "10",
      "--budget", "300KB",
    ]
    let one = directory.appendingPathComponent("one.safetensors").path
    #expect(try Self.train(processes: 1, arguments, save: one).status == 0)
    for processes in [2, 3] {
      let path = directory.appendingPathComponent("n\(processes).safetensors").path
      let log = directory.appendingPathComponent("n\(processes).jsonl").path
      let result = try Self.train(processes: processes, arguments, save: path, extra: ["--log", log])
      #expect(result.status == 0, "\(result.error)")
      try Self.expectSameWeights(one, path)
      let steps = try CommandRunner.logRecords(at: log).filter { $0["loss"] != nil }
      #expect(steps.count == 8 && steps.allSatisfy { ($0["tokens"] as? Int ?? 0) > 0 })
    }
  }

  /// A run checkpointed with 2 processes and resumed with 1 ends where an uninterrupted
  /// run ends.
  @Test(.measuresMemory) func resumingWithAnotherNumberOfProcesses() throws {
    let directory = try CommandRunner.temporaryDirectory()
    let data = try Self.digits(rows: 300, in: directory)
    let arguments = [
      "--data", data, "--feature-scale", "0.0625", "--model", Self.model, "--optimizer", "adam", "--lr", "0.01",
      "--target-batch", "64", "--budget", "60KB",
    ]
    let straight = directory.appendingPathComponent("straight.safetensors").path
    #expect(try Self.train(processes: 1, arguments + ["--epochs", "3"], save: straight).status == 0)
    let checkpoint = directory.appendingPathComponent("run.ckpt").path
    let first = directory.appendingPathComponent("first.safetensors").path
    let part = try Self.train(processes: 2, arguments + ["--epochs", "1", "--checkpoint", checkpoint], save: first)
    #expect(part.status == 0, "\(part.error)")
    let resumed = directory.appendingPathComponent("resumed.safetensors").path
    let rest = try Self.train(
      processes: 1, arguments + ["--epochs", "3", "--resume", checkpoint, "--checkpoint", checkpoint], save: resumed)
    #expect(rest.status == 0, "\(rest.error)")
    try Self.expectSameWeights(straight, resumed)
  }

  /// Bad input ends every rank with one message and a non-zero status, quickly.
  @Test func badInputEndsEveryRank() throws {
    let start = Date()
    let result = try CommandRunner.runParallel(
      processes: 2, ["train", "--data", "/nonexistent/data.csv", "--model", Self.model, "--batch", "4", "--epochs", "1"])
    #expect(result.status != 0)
    let errors = result.error.split(separator: "\n").filter { $0.hasPrefix("Error:") }
    #expect(errors.count == 1 && errors[0].contains("/nonexistent/data.csv"), "\(result.error)")
    #expect(Date().timeIntervalSince(start) < 30)
  }

  /// `plan --world-size N`: one process's plan, its share of the window and the reduction.
  @Test func planShowsOneProcessOfSeveral() throws {
    let arguments = [
      "plan", "--model", "linear(64,2048) relu linear(2048,10)", "--input-shape", "64", "--target-batch", "64",
      "--budget", "3MB", "--json",
    ]
    let alone = try CommandRunner.run(arguments)
    let two = try CommandRunner.run(arguments + ["--world-size", "2"])
    #expect(alone.status == 0 && two.status == 0, "\(two.error)")
    let a = try #require(try JSONSerialization.jsonObject(with: Data(alone.output.utf8)) as? [String: Any])
    let b = try #require(try JSONSerialization.jsonObject(with: Data(two.output.utf8)) as? [String: Any])
    #expect(a["world_size"] as? Int == 1 && a["reduction_buffer_bytes"] as? Int == 0)
    #expect(b["world_size"] as? Int == 2 && b["target_batch"] as? Int == 32)
    // The reduction buffer holds every gradient and the loss, rounded to a size class.
    #expect((b["reduction_buffer_bytes"] as? Int ?? 0) >= 4 * (64 * 2048 + 2048 + 2048 * 10 + 10 + 1))
    #expect((b["reduction_workspace_bytes"] as? Int ?? 0) > 0)
    let text = try CommandRunner.run(Array(arguments.dropLast()) + ["--world-size", "2"])
    #expect(text.output.contains("per process") && text.output.contains("reduction buffer"), "\(text.output)")
    let bad = try CommandRunner.run(Array(arguments.dropLast()) + ["--world-size", "0"])
    #expect(bad.status != 0 && bad.error.contains("--world-size is 0"))
  }

  /// Alone, the command makes no MPI call: a world of one.
  @Test func aloneIsAWorldOfOne() {
    #expect(!MPIWorld.isLaunched)
    let world: any Communicator = SingleProcess()
    #expect(world.size == 1 && world.rank == 0 && world.isLeader)
    #expect(Trainer.shares(samples: 5, processes: 3) == [2, 2, 1])
    #expect(Trainer.shares(samples: 1, processes: 3) == [1, 0, 0])
    #expect(Trainer.largestShare(samples: 64, processes: 3) == 22)
    // Sequences: balanced by tokens, contiguous, every sample once.
    #expect(Trainer.shares(lengths: [40, 2, 2, 2, 2, 2, 30, 4], processes: 2) == [2, 6])
    #expect(Trainer.shares(lengths: [10, 10, 10, 10], processes: 2) == [2, 2])
    #expect(Trainer.shares(lengths: [5], processes: 3) == [0, 1, 0])
    #expect(Trainer.shares(lengths: [3, 3, 3, 3, 3, 3], processes: 3) == [2, 2, 2])
  }
}
