import Foundation
import GradAccum
import Testing
import _TestSupport

/// The commands on sequence data: JSON Lines and separated text, plans by length, training
/// under a budget and in manual mode, evaluation, generation, and every bad input refused
/// with one line naming the file and the line.
@Suite("Sequence data on the command line")
struct SequenceCommandTests {
  static let model = "embedding(16,8) positionalembedding(24,8) transformerblock(8,2,ff=16) layernorm(8) linear(8,16)"
  static let byteModel = "embedding(256,8) positionalembedding(64,8) transformerblock(8,2,ff=16) layernorm(8) linear(8,256)"

  /// 30 samples of 2 to 24 tokens (a few long), every fourth with a masked prompt.
  static func writeJSONLines(in directory: URL) throws -> String {
    var generator = RandomGenerator(seed: 9)
    var lines: [String] = []
    for index in 0..<30 {
      let length = index % 7 == 0 ? 18 + index % 7 : 2 + Int(generator.next() % 8)
      let ids = (0..<length).map { _ in Int(generator.next() % 16) }
      if index % 4 == 0 {
        let labels = ids.enumerated().map { $0.offset < 2 ? -100 : $0.element }
        lines.append("{\"input_ids\": \(ids), \"labels\": \(labels)}")
      } else {
        lines.append("{\"input_ids\": \(ids)}")
      }
    }
    let path = directory.appendingPathComponent("data.jsonl").path
    try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
    return path
  }

  static func write(_ text: String, _ name: String, in directory: URL) throws -> String {
    let path = directory.appendingPathComponent(name).path
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
  }

  @Test func badSequenceInputIsOneLineNamingTheFileAndLine() throws {
    let directory = try CommandRunner.temporaryDirectory()
    let cases: [(String, String, [String])] = [
      ("{\"input_ids\": [1, 2]}\nnot json\n", "line 2: not a JSON object", []),
      ("{\"input_ids\": [1, 2]}\n{\"labels\": [1]}\n", "line 2: no \"input_ids\"", []),
      ("{\"input_ids\": [1, 2, 3], \"labels\": [1, 2]}\n", "line 1: labels has 2 values and input_ids 3", []),
      ("{\"input_ids\": [1, 2]}\n\n{\"input_ids\": [1, 99]}\n", "line 3: input_ids[1] is 99, outside the embedding's vocabulary of 16", []),
      ("{\"input_ids\": [1, 2.5]}\n", "line 1: input_ids[1] is 2.5; expected an integer", []),
      ("{\"input_ids\": []}\n", "line 1: input_ids is empty", []),
      ("\n  \n", "has no samples", []),
      ("{\"input_ids\": \(Array(repeating: 1, count: 30))}\n", "line 1: the sample has 30 tokens, more than the 24 positions of positionalembedding(24,8); give --max-length 24", []),
    ]
    for (index, (text, message, extra)) in cases.enumerated() {
      let path = try Self.write(text, "bad\(index).jsonl", in: directory)
      let result = try CommandRunner.run(
        ["train", "--data", path, "--model", Self.model, "--batch", "2", "--epochs", "1"] + extra)
      #expect(result.status != 0, "\(text)")
      #expect(result.error.contains(path) && result.error.contains(message), "\(result.error)")
      #expect(result.error.split(separator: "\n").count == 1, "\(result.error)")
    }
    // Text needs its separator.
    let text = try Self.write("a\n%\nb\n", "text.txt", in: directory)
    let noSeparator = try CommandRunner.run(["train", "--data", text, "--model", Self.byteModel, "--batch", "1", "--epochs", "1"])
    #expect(noSeparator.status != 0 && noSeparator.error.contains("--separator"), "\(noSeparator.error)")
  }

  /// `--max-length` makes a sample longer than the positional table train.
  @Test(.measuresMemory) func truncationMakesALongSampleTrain() throws {
    let directory = try CommandRunner.temporaryDirectory()
    let long = try Self.write(
      "{\"input_ids\": \(Array(repeating: 1, count: 30))}\n", "long.jsonl", in: directory)
    let truncated = try CommandRunner.run([
      "train", "--data", long, "--model", Self.model, "--batch", "1", "--epochs", "1", "--max-length", "24", "--quiet",
    ])
    #expect(truncated.status == 0, "\(truncated.error)")
  }

  /// A sample that does not fit the budget alone: refused before training, naming its line,
  /// its length, the smallest budget and the --max-length that fits.
  @Test func aSampleTooLongForTheBudgetNamesItsLineAndTheWayOut() throws {
    let directory = try CommandRunner.temporaryDirectory()
    let data = try Self.writeJSONLines(in: directory)
    let plan = try CommandRunner.run([
      "plan", "--data", data, "--model", Self.model, "--target-batch", "8", "--budget", "1GB", "--json",
    ])
    #expect(plan.status == 0, "\(plan.error)")
    let object = try #require(try JSONSerialization.jsonObject(with: Data(plan.output.utf8)) as? [String: Any])
    let smallest = try #require(object["smallest_budget_bytes"] as? Int)
    let result = try CommandRunner.run([
      "train", "--data", data, "--model", Self.model, "--target-batch", "8", "--budget", "\(smallest - 2000)",
      "--epochs", "1",
    ])
    #expect(result.status != 0)
    #expect(result.error.contains("\(data) line 1: the sample has 18 tokens"), "\(result.error)")
    #expect(result.error.contains("--budget \(smallest)") && result.error.contains("--max-length"), "\(result.error)")
  }

  /// plan --data: every window composed by length within the budget, less padding than
  /// padding whole windows, and the heaviest micro-batches measured as predicted.
  @Test(.measuresMemory) func planReportsTheDataSetAndMeasures() throws {
    let directory = try CommandRunner.temporaryDirectory()
    let data = try Self.writeJSONLines(in: directory)
    let loose = try CommandRunner.run([
      "plan", "--data", data, "--model", Self.model, "--target-batch", "8", "--budget", "1GB", "--json",
    ])
    let smallest = try #require(
      (try JSONSerialization.jsonObject(with: Data(loose.output.utf8)) as? [String: Any])?["smallest_budget_bytes"] as? Int)
    let budget = smallest * 3 / 2
    let result = try CommandRunner.run([
      "plan", "--data", data, "--model", Self.model, "--target-batch", "8", "--budget", "\(budget)", "--measure",
      "--json",
    ])
    #expect(result.status == 0, "\(result.error)")
    let object = try #require(try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any])
    #expect(object["budget_bytes"] as? Int == budget && object["windows"] as? Int == 4)
    let perWindow = try #require(object["micro_batches_per_window"] as? [String: Any])
    #expect((perWindow["max"] as? Int ?? 0) >= 2)
    #expect((object["padding_fraction"] as? Double ?? 1) < (object["window_padding_fraction"] as? Double ?? 0))
    #expect((object["largest_predicted_peak_bytes"] as? Int ?? .max) <= budget)
    let measurements = try #require(object["measurements"] as? [[String: Any]])
    #expect(measurements.count >= 2)
    for measurement in measurements {
      let predicted = measurement["predicted_peak_bytes"] as? Int ?? 0
      let measured = measurement["measured_peak_bytes"] as? Int ?? 1
      #expect(abs(Double(predicted - measured)) <= 0.02 * Double(measured), "\(measurement)")
      #expect(measurement["samples"] is Int && measurement["padded_length"] is Int)
    }
    let text = try CommandRunner.run([
      "plan", "--data", data, "--model", Self.model, "--target-batch", "8", "--budget", "\(budget)",
    ])
    #expect(text.output.contains("composed by length") && text.output.contains("padding each window"), "\(text.output)")
  }

  /// Automatic and manual mode on sequences end at the same weights: length-aware
  /// micro-batches under a tight budget against one padded batch per window.
  @Test(.measuresMemory) func automaticAndManualModeTrainTheSameSequences() throws {
    let directory = try CommandRunner.temporaryDirectory()
    let data = try Self.writeJSONLines(in: directory)
    let plan = try CommandRunner.run([
      "plan", "--data", data, "--model", Self.model, "--target-batch", "8", "--budget", "1GB", "--json",
      "--optimizer", "sgd", "--momentum", "0.9",
    ])
    let smallest = try #require(
      (try JSONSerialization.jsonObject(with: Data(plan.output.utf8)) as? [String: Any])?["smallest_budget_bytes"] as? Int)
    let common = [
      "--data", data, "--model", Self.model, "--epochs", "2", "--optimizer", "sgd", "--momentum", "0.9", "--lr", "0.05",
      "--quiet",
    ]
    let automatic = directory.appendingPathComponent("automatic.safetensors").path
    let log = directory.appendingPathComponent("log.jsonl").path
    let first = try CommandRunner.run(
      ["train"] + common + ["--target-batch", "8", "--budget", "\(smallest)", "--save", automatic, "--log", log])
    #expect(first.status == 0, "\(first.error)")
    let manual = directory.appendingPathComponent("manual.safetensors").path
    let second = try CommandRunner.run(["train"] + common + ["--batch", "4", "--accumulate", "2", "--save", manual])
    #expect(second.status == 0, "\(second.error)")
    let a = try SafetensorsFile.read(path: automatic), b = try SafetensorsFile.read(path: manual)
    for name in a.entries.keys.sorted() {
      expectClose(try a.floatTensor(name).values, try b.floatTensor(name).values, relative: 1e-4)
    }
    let steps = try CommandRunner.logRecords(at: log).filter { $0["loss"] != nil }
    #expect(steps.count == 8)
    #expect(steps.contains { ($0["micro_batches"] as? [Int])?.count ?? 0 >= 2 })
    for step in steps {
      #expect((step["peak_bytes"] as? Int ?? .max) <= smallest)
      #expect((step["tokens"] as? Int ?? 0) > 0)
      #expect((step["padded_lengths"] as? [Int])?.count == (step["micro_batches"] as? [Int])?.count)
    }
  }

  /// A text file with a separator trains under a budget (bytes as tokens), its loss falls,
  /// and evaluate and generate read the saved weights.
  @Test(.measuresMemory) func separatedTextTrainsEvaluatesAndGenerates() throws {
    let directory = try CommandRunner.temporaryDirectory()
    let text = (0..<24).map { "sample \($0): " + String(repeating: "ab", count: 1 + $0 % 9) + "\n" }
      .joined(separator: "%\n")
    let data = try Self.write(text, "texts.txt", in: directory)
    let weights = directory.appendingPathComponent("bytes.safetensors").path
    let log = directory.appendingPathComponent("log.jsonl").path
    let train = try CommandRunner.run([
      "train", "--data", data, "--separator", "%", "--model", Self.byteModel, "--target-batch", "8", "--budget", "2MB",
      "--epochs", "6", "--optimizer", "adamw", "--lr", "0.02", "--save", weights, "--log", log,
    ])
    #expect(train.status == 0, "\(train.error)")
    #expect(train.output.contains("0 budget violations"), "\(train.output)")
    let losses = try CommandRunner.logRecords(at: log).compactMap { $0["loss"] as? Double }
    #expect(losses.count == 18 && losses.last! < losses.first! * 0.8, "\(losses)")
    let evaluation = try CommandRunner.run([
      "evaluate", "--data", data, "--separator", "%", "--model", Self.byteModel, "--init", weights, "--json",
    ])
    let object = try #require(try JSONSerialization.jsonObject(with: Data(evaluation.output.utf8)) as? [String: Any])
    let loss = try #require(object["loss"] as? Double), perplexity = try #require(object["perplexity"] as? Double)
    #expect(abs(perplexity - exp(loss)) < 1e-3 * perplexity)
    #expect(object["token_count"] as? Int == Array(text.utf8).count - 23 * 2 - 24)  // minus separators and first tokens
    // Greedy generation is deterministic and continues the prompt.
    let arguments = ["generate", "--model", Self.byteModel, "--init", weights, "--prompt", "sample", "--tokens", "12"]
    let once = try CommandRunner.run(arguments), twice = try CommandRunner.run(arguments)
    #expect(once.status == 0 && once.output == twice.output && once.output.hasPrefix("sample"), "\(once.error)")
    let json = try CommandRunner.run(arguments + ["--json"])
    let ids = try #require(
      (try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any])?["input_ids"] as? [Int])
    #expect(ids.count == 18 && Array(ids.prefix(6)) == Array("sample".utf8).map(Int.init))
    // The first generated token is the argmax of the model's last logits.
    let model = try ModelSpecification(parsing: Self.byteModel).build(seed: 0)
    try model.loadState(path: weights)
    let next = model.generate(prompt: Array("sample".utf8).map(Int.init), count: 1)
    #expect(next.last == ids[6])
    let sampled = try CommandRunner.run(arguments + ["--temperature", "0.8", "--top-k", "3", "--seed", "4", "--json"])
    #expect(sampled.status == 0, "\(sampled.error)")
    let wrongPrompt = try CommandRunner.run([
      "generate", "--model", Self.model, "--init", weights, "--prompt", "hi", "--tokens", "1",
    ])
    #expect(wrongPrompt.status != 0 && wrongPrompt.error.contains("--prompt-ids"), "\(wrongPrompt.error)")
    let badIDs = try CommandRunner.run([
      "generate", "--model", Self.byteModel, "--init", weights, "--prompt-ids", "1,300", "--tokens", "1",
    ])
    #expect(badIDs.status != 0 && badIDs.error.contains("from 0 to 255"), "\(badIDs.error)")
  }

  @Test(.measuresMemory) func benchReportsTokensPerSecond() throws {
    let result = try CommandRunner.run([
      "bench", "--model", Self.model, "--sequence-length", "12", "--micro-batches", "1,2", "--repeat", "1",
    ])
    #expect(result.status == 0, "\(result.error)")
    #expect(result.output.contains("tokens/s") && result.output.contains("sequences of 12 tokens"), "\(result.output)")
  }
}

/// Every option check added with sequences, data parallel and recomputation: one line, a
/// non-zero status, the value named.
@Suite("Sequence and recompute option errors")
struct SequenceOptionErrorTests {
  static let token = "embedding(16,8) positionalembedding(8,8) transformerblock(8,2) linear(8,16)"

  @Test(arguments: [
    (["generate", "--model", token, "--init", "w.safetensors", "--tokens", "1"], "give one of --prompt TEXT and --prompt-ids"),
    (["generate", "--model", token, "--init", "w.safetensors", "--prompt-ids", "1", "--tokens", "-1"], "--tokens is -1"),
    (["generate", "--model", token, "--init", "w.safetensors", "--prompt-ids", "1", "--tokens", "1", "--temperature", "-1"], "--temperature is -1.0"),
    (["generate", "--model", token, "--init", "w.safetensors", "--prompt-ids", "1", "--tokens", "1", "--top-k", "0"], "--top-k is 0"),
    (["generate", "--model", "linear(4,2)", "--init", "w.safetensors", "--prompt-ids", "1", "--tokens", "1"], "generate needs a token model"),
    (["bench", "--model", token, "--sequence-length", "0"], "--sequence-length is 0"),
    (["bench", "--model", token, "--sequence-length", "4", "--input-shape", "4"], "cannot be mixed"),
    (["bench", "--model", "linear(4,2)", "--sequence-length", "4"], "--sequence-length needs a token model"),
    (["bench", "--model", token, "--sequence-length", "4", "--steps", "0"], "--steps is 0"),
    (["bench", "--model", token, "--sequence-length", "4", "--recompute", "auto"], "bench --recompute takes none, all or selective"),
    (["bench", "--model", token, "--sequence-length", "4", "--recompute", "all", "--compare-recompute"], "leave --recompute at none"),
    (["plan", "--model", token, "--target-batch", "2", "--budget", "1MB", "--data", "x.csv"], "plan --data reads sequence data"),
    (["plan", "--model", token, "--target-batch", "2", "--budget", "1MB", "--data", "x.jsonl", "--dataset-size", "3"], "--dataset-size and --data cannot be mixed"),
    (["plan", "--model", token, "--target-batch", "2", "--budget", "1MB", "--data", "x.jsonl", "--objective", "throughput"], "--objective throughput applies to samples of one shape"),
    (["train", "--data", "x.csv", "--model", "linear(4,2)", "--batch", "1", "--epochs", "1", "--max-length", "3"], "--max-length applies to sequence data"),
    (["train", "--data", "x.jsonl", "--model", token, "--batch", "1", "--epochs", "1", "--max-length", "0"], "--max-length is 0"),
    (["train", "--data", "x.jsonl", "--model", token, "--batch", "1", "--epochs", "1", "--loss", "mse"], "sequence data trains with cross-entropy"),
    (["demo", "--language-model-epochs", "0"], "--language-model-epochs is 0"),
  ])
  func refusedWithOneLine(arguments: [String], message: String) throws {
    let directory = try CommandRunner.temporaryDirectory()
    try "a,b\n1,0\n".write(to: directory.appendingPathComponent("x.csv"), atomically: true, encoding: .utf8)
    try "{\"input_ids\": [1, 2, 3, 4]}\n".write(
      to: directory.appendingPathComponent("x.jsonl"), atomically: true, encoding: .utf8)
    try Data(SafetensorsFile.encode(floats: [], integers: [])).write(to: directory.appendingPathComponent("w.safetensors"))
    let result = try CommandRunner.run(arguments, directory: directory)
    #expect(result.status != 0 && !result.crashed, "\(arguments)")
    #expect(result.error.contains(message), "\(result.error)")
    #expect(result.error.split(separator: "\n").count == 1, "\(result.error)")
  }
}
