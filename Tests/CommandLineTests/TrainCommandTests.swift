import Foundation
import GradAccum
import Testing
import _TestSupport

/// Writes the article's data set (seeded) as CSV and returns it as arrays.
func writeArticleData(to url: URL, count: Int = 1000) throws -> (x: [[Double]], y: [Double]) {
  var generator = RandomGenerator(seed: 77)
  var rows = ["x1,x2,y"]
  var xs: [[Double]] = [], ys: [Double] = []
  for _ in 0..<count {
    let x1 = generator.normal(), x2 = generator.normal()
    let y = -2 * x1 + 3.4 * x2 + 4.2 + generator.normal(standardDeviation: 0.01)
    rows.append("\(x1),\(x2),\(y)")
    xs.append([Double(x1), Double(x2)])
    ys.append(Double(y))
  }
  try rows.joined(separator: "\n").write(to: url, atomically: true, encoding: .utf8)
  return (xs, ys)
}

/// The article's linear regression trained in `Double` straight from the formulas:
/// windows of `window` samples, MSE gradient 2/W Σ (w·x + b − y)·(x, 1), SGD.
func articleReference(x: [[Double]], y: [Double], window: Int, epochs: Int, lr: Double) -> [Double] {
  var w = [0.0, 0.0], b = 0.0
  for _ in 0..<epochs {
    for start in stride(from: 0, to: x.count, by: window) {
      let end = min(start + window, x.count)
      var gw = [0.0, 0.0], gb = 0.0
      for i in start..<end {
        let residual = w[0] * x[i][0] + w[1] * x[i][1] + b - y[i]
        gw[0] += 2 * residual * x[i][0] / Double(end - start)
        gw[1] += 2 * residual * x[i][1] / Double(end - start)
        gb += 2 * residual / Double(end - start)
      }
      w[0] -= lr * gw[0]
      w[1] -= lr * gw[1]
      b -= lr * gb
    }
  }
  return [w[0], w[1], b]
}

@Suite("gradaccum train")
struct TrainCommandTests {
  @Test(.measuresMemory, arguments: [(40, 1, 1000), (10, 4, 1000), (10, 4, 1013), (7, 3, 1000)])
  func articleExperimentMatchesTheFormulas(batch: Int, accumulate: Int, count: Int) throws {
    let directory = try CommandRunner.temporaryDirectory()
    let data = directory.appendingPathComponent("article.csv")
    let (x, y) = try writeArticleData(to: data, count: count)
    // A zero initialisation, as in the article, written as PyTorch would.
    let initial = directory.appendingPathComponent("zeros.safetensors").path
    try AtomicFile.write(
      SafetensorsFile.encode(floats: [("0.weight", Tensor(zeros: [1, 2])), ("0.bias", Tensor(zeros: [1]))]), to: initial
    )
    let saved = directory.appendingPathComponent("out.safetensors").path
    let log = directory.appendingPathComponent("log.jsonl").path
    let result = try CommandRunner.run([
      "train", "--data", data.path, "--model", "linear(2,1)", "--loss", "mse", "--optimizer", "sgd", "--lr", "0.01",
      "--epochs", "3", "--batch", "\(batch)", "--accumulate", "\(accumulate)", "--no-shuffle", "--init", initial,
      "--save", saved, "--log", log,
    ])
    #expect(result.status == 0, "\(result.error)")
    let file = try SafetensorsFile.read(path: saved)
    let ours = try file.floatTensor("0.weight").values + file.floatTensor("0.bias").values
    let expected = articleReference(x: x, y: y, window: batch * accumulate, epochs: 3, lr: 0.01)
    expectClose(ours, expected.map(Float.init), relative: 1e-5, floor: 1e-3)
    #expect(result.output.contains("epoch 3/3"))

    // The log: one record per optimizer step with the contract's keys, then a summary.
    let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
    let window = batch * accumulate
    let stepsPerEpoch = (count + window - 1) / window
    #expect(lines.count == 3 * stepsPerEpoch + 1)
    let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
    #expect(
      Set(first.keys) == ["epoch", "step", "samples", "loss", "lr", "micro_batches", "peak_bytes", "budget_bytes"])
    #expect(first["samples"] as? Int == window)
    #expect(first["micro_batches"] as? [Int] == Array(repeating: batch, count: accumulate))
    #expect(first["budget_bytes"] is NSNull)
    #expect((first["peak_bytes"] as? Int ?? 0) > 0)
    let last = try JSONSerialization.jsonObject(with: Data(lines[lines.count - 2].utf8)) as! [String: Any]
    #expect(last["samples"] as? Int == count - (stepsPerEpoch - 1) * window)
    #expect(last["step"] as? Int == 3 * stepsPerEpoch)
    let summary = try JSONSerialization.jsonObject(with: Data(lines.last!.utf8)) as! [String: Any]
    #expect((summary["epoch_losses"] as? [Double])?.count == 3)
    #expect(summary["steps"] as? Int == 3 * stepsPerEpoch)
    for key in ["max_peak_bytes", "budget_violations", "samples_per_second"] { #expect(summary[key] != nil) }
  }

  @Test(.measuresMemory) func savedWeightsResumeAsInitialWeights() throws {
    let directory = try CommandRunner.temporaryDirectory()
    let data = directory.appendingPathComponent("d.csv")
    _ = try writeArticleData(to: data, count: 100)
    let first = directory.appendingPathComponent("a.safetensors").path
    let second = directory.appendingPathComponent("b.safetensors").path
    let common = [
      "train", "--data", data.path, "--model", "linear(2,8) relu linear(8,1)", "--loss", "mse", "--optimizer", "adam",
      "--epochs", "1", "--batch", "10", "--quiet",
    ]
    #expect(try CommandRunner.run(common + ["--save", first]).status == 0)
    let result = try CommandRunner.run(common + ["--init", first, "--save", second])
    #expect(result.status == 0, "\(result.error)")
    #expect(result.output.isEmpty)
    let a = try SafetensorsFile.read(path: first), b = try SafetensorsFile.read(path: second)
    #expect(a.names == ["0.bias", "0.weight", "2.bias", "2.weight"])
    #expect(try a.floatTensor("0.weight").values != b.floatTensor("0.weight").values)
  }
}

@Suite("gradaccum bad input")
struct BadInputTests {
  static let directory = try! CommandRunner.temporaryDirectory()
  static let data: String = {
    let url = directory.appendingPathComponent("ok.csv")
    try! "a,b,label\n1,2,0\n3,4,1\n5,6,2\n".write(to: url, atomically: true, encoding: .utf8)
    return url.path
  }()
  static func file(_ name: String, _ text: String) -> String {
    let url = directory.appendingPathComponent(name)
    try! text.write(to: url, atomically: true, encoding: .utf8)
    return url.path
  }
  static func bytes(_ name: String, _ bytes: [UInt8]) -> String {
    let url = directory.appendingPathComponent(name)
    try! Data(bytes).write(to: url)
    return url.path
  }

  static func train(
    _ extra: [String], data: String = BadInputTests.data, model: String = "linear(2,3)", loss: String = "cross-entropy"
  ) -> [String] {
    ["train", "--data", data, "--model", model, "--loss", loss, "--epochs", "1", "--batch", "2", "--quiet"] + extra
  }

  @Test(arguments: [
    (train([], data: "/nonexistent/data.csv"), "cannot read data file /nonexistent/data.csv: no such file"),
    (train([], data: file("ragged.csv", "a,b,l\n1,2,0\n1,2\n")), "line 3: 2 columns, expected 3"),
    (train([], data: file("text.csv", "a,b,l\n1,two,0\n")), "column b: \"two\" is not a finite number"),
    (train([], data: file("empty.csv", "")), "is empty"),
    (train([], data: file("header.csv", "a,b,l\n")), "has a header but no data rows"),
    (train([], data: file("nanlabel.csv", "a,b,l\n1,2,nan\n")), "label nan is invalid"),
    (train([], data: file("fraction.csv", "a,b,l\n1,2,0.5\n")), "label 0.5 is invalid, expected a class index"),
    (train([], data: file("bigclass.csv", "a,b,l\n1,2,7\n")), "bigclass.csv: label 7 (sample 0) is not a class of a model with 3 outputs"),
    (train([], model: "linear(5,3)"), "linear(5,3) expects 5 input features per sample, got input shape [2]"),
    (train([], model: "linear(2,3"), "unbalanced parentheses"),
    (
      train([], model: "linear(2,1000000) relu linear(1000000,1000000) relu linear(1000000,3)"),
      "more than half of the memory this process may have"
    ),
    (train([], model: "lstm(2,3)"), "unknown layer \"lstm\""),
    (train([], model: ""), "the model specification is empty"),
    (train(["--label-column", "zzz"]), "label column \"zzz\" not found"),
    (train(["--input-shape", "3x0"]), "--input-shape \"3x0\" is not a shape"),
    (train(["--input-shape", "3"]), "2 feature columns do not fill input shape 3"),
    (train(["--lr=-1"]), "--lr must be positive, got -1"),
    (train(["--momentum=-0.5"]), "--momentum must be zero or positive, got -0.5"),
    (train(["--optimizer", "adam", "--momentum", "0.9"]), "--momentum, --dampening and --nesterov apply to sgd only"),
    (train(["--nesterov"]), "momentum is 0.0, expected > 0 with Nesterov momentum"),
    (train(["--accumulate", "0"]), "--accumulate is 0, expected an integer ≥ 1"),
    (train(["--batch", "0"]), "--batch is 0, expected an integer ≥ 1"),
    (train(["--epochs", "0"]), "--epochs is 0, expected an integer ≥ 1"),
    (
      train(["--init", "/nonexistent/w.safetensors"]),
      "cannot read safetensors file /nonexistent/w.safetensors: no such file"
    ),
    (train(["--init", bytes("trunc.safetensors", [16, 0, 0, 0, 0, 0, 0, 0, 123])]), "claims a 16-byte header"),
    (train(["--init", bytes("short.safetensors", [1, 2])]), "is truncated"),
    (
      train(["--init", bytes("notjson.safetensors", [4, 0, 0, 0, 0, 0, 0, 0] + Array("nope".utf8))]),
      "not a JSON object"
    ),
    (
      train([
        "--init",
        bytes(
          "wrongshape.safetensors",
          SafetensorsFile.encode(floats: [("0.weight", Tensor(zeros: [2, 3])), ("0.bias", Tensor(zeros: [3]))])),
      ]), "tensor \"0.weight\": shape [2, 3] in the file, but the model needs [3, 2]"
    ),
    (
      train([
        "--init", bytes("missing.safetensors", SafetensorsFile.encode(floats: [("0.weight", Tensor(zeros: [3, 2]))])),
      ]), "has no tensor \"0.bias\""
    ),
    (
      train([
        "--init",
        bytes(
          "extra.safetensors",
          SafetensorsFile.encode(floats: [
            ("0.weight", Tensor(zeros: [3, 2])), ("0.bias", Tensor(zeros: [3])), ("1.weight", Tensor(zeros: [1])),
          ])),
      ]), "has tensor \"1.weight\", which the model does not have"
    ),
    (train(["--log", "/nonexistent/dir/log.jsonl"]), "cannot write /nonexistent/dir/log.jsonl"),
    (
      train(["--save", "/nonexistent/dir/w.safetensors"]),
      "cannot write /nonexistent/dir/w.safetensors"
    ),
    (train([], loss: "mse"), "mse cannot compare predictions of shape [3, 3] with targets of shape [3]"),
    (train([], model: "linear(2,1)", loss: "bce"), "target 2.0 (sample 2) is outside [0, 1]"),
  ])
  func badInputGivesOneClearLine(arguments: [String], message: String) throws {
    let result = try CommandRunner.run(arguments)
    #expect(!result.crashed)
    #expect(result.status != 0)
    let lines = result.error.split(separator: "\n")
    #expect(lines.count == 1, "\(result.error)")
    #expect(result.error.contains(message), "\(result.error)")
  }

  @Test func unsupportedDTypeIsNamed() throws {
    let header =
      #"{"0.weight":{"dtype":"F16","shape":[3,2],"data_offsets":[0,12]},"0.bias":{"dtype":"F32","shape":[3],"data_offsets":[12,24]}}"#
    var bytes: [UInt8] = []
    withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { bytes.append(contentsOf: $0) }
    bytes += Array(header.utf8) + [UInt8](repeating: 0, count: 24)
    let result = try CommandRunner.run(Self.train(["--init", Self.bytes("f16.safetensors", bytes)]))
    #expect(result.status != 0 && !result.crashed)
    #expect(
      result.error.contains("tensor \"0.weight\": dtype F16 is not supported here, expected F32"), "\(result.error)")
  }
}

@Suite("gradaccum demo")
struct DemoCommandTests {
  @Test(.measuresMemory) func demoShowsAccumulationAgreeingWithTheBigBatch() throws {
    // The language model for 2 epochs (the test runs a debug build).
    let result = try CommandRunner.run(["demo", "--language-model-epochs", "2"])
    #expect(result.status == 0, "\(result.error)")
    #expect(result.output.contains("batch 40"))
    #expect(result.output.contains("10 × 4"))
    #expect(result.output.contains("0.weight"))
    let line = result.output.split(separator: "\n").first {
      $0.contains("largest relative difference of the final weights")
    }
    let value = line.flatMap { Double($0.split(separator: " ").last!) }
    #expect(value != nil && value! < 1e-5)
    // Both digits classifiers (the MLP, then the batch-normalized CNN) accumulate within
    // their budgets and reach at least 95% held-out accuracy.
    let results = result.output.split(separator: "\n").filter { $0.hasPrefix("held-out accuracy") }
    #expect(results.count == 2, "\(result.output)")
    for line in results {
      let accuracy = Double(line.split(separator: " ")[2].dropLast()) ?? 0
      #expect(accuracy >= 95, "\(line)")
      #expect(line.hasSuffix(" 0 budget violations"), "\(line)")
    }
    #expect(result.output.contains("each window          4 micro-batches"), "the CNN's plan should accumulate")
    // The language model: windows composed by length, a falling loss within the budget, a sample.
    #expect(result.output.contains("composed by length"), "\(result.output)")
    let losses = result.output.split(separator: "\n").filter { $0.hasPrefix("epoch ") && $0.contains("token loss") }
      .compactMap { line in line.split(separator: " ").firstIndex(of: "loss").map { Double(line.split(separator: " ")[$0 + 1]) ?? .nan } }
    #expect(losses.count == 2 && losses[1] < losses[0], "\(losses)")
    #expect(result.output.contains("max measured peak") && result.output.contains(" 0 budget violations"))
    #expect(result.output.contains("generated (temperature 0.7, top-k 8):\nThe computer "), "\(result.output)")
  }
}

@Suite("gradaccum argument errors")
struct ArgumentErrorTests {
  @Test(arguments: [
    (["train", "--data", "x.csv"], "Missing expected argument"),
    (
      [
        "train", "--data", "x.csv", "--model", "linear(2,1)", "--loss", "mse", "--epochs", "1", "--batch", "1",
        "--bogus",
      ], "--bogus"
    ),
    (
      ["train", "--data", "x.csv", "--model", "linear(2,1)", "--loss", "hinge", "--epochs", "1", "--batch", "1"],
      "hinge"
    ),
    (
      ["train", "--data", "x.csv", "--model", "linear(2,1)", "--loss", "mse", "--epochs", "one", "--batch", "1"], "one"
    ),
    (["frobnicate"], "frobnicate"),
  ])
  func argumentErrorsAreOneLine(arguments: [String], fragment: String) throws {
    let result = try CommandRunner.run(arguments)
    #expect(result.status != 0 && !result.crashed)
    #expect(result.error.split(separator: "\n").count == 1, "\(result.error)")
    #expect(result.error.contains(fragment), "\(result.error)")
  }

  @Test func helpGoesToStandardOutput() throws {
    let result = try CommandRunner.run(["train", "--help"])
    #expect(result.status == 0)
    #expect(result.output.contains("--accumulate"))
  }
}
