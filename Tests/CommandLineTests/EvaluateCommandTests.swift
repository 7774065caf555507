import Foundation
import GradAccum
import Testing
import _TestSupport

@Suite("gradaccum evaluate")
struct EvaluateCommandTests {
  /// `batchnorm1d(2) linear(2,2)` with chosen weights and running statistics, written as
  /// PyTorch's state_dict, and four labelled samples.
  func writeModelAndData(in directory: URL) throws -> (weights: String, data: String) {
    let weights = directory.appendingPathComponent("model.safetensors").path
    try AtomicFile.write(
      SafetensorsFile.encode(
        floats: [
          ("0.weight", Tensor([2, 1], shape: [2])), ("0.bias", Tensor([0, 1], shape: [2])),
          ("0.running_mean", Tensor([1, -1], shape: [2])), ("0.running_var", Tensor([4, 1], shape: [2])),
          ("1.weight", Tensor([1, 0, 0, 1], shape: [2, 2])), ("1.bias", Tensor([0, 0], shape: [2])),
        ],
        integers: [("0.num_batches_tracked", [5], [])]), to: weights)
    let data = directory.appendingPathComponent("data.csv").path
    try "a,b,label\n3,0,0\n1,1,1\n-1,-1,1\n5,2,0\n".write(toFile: data, atomically: true, encoding: .utf8)
    return (weights, data)
  }

  /// The expected mean cross-entropy and accuracy, from the formulas in Double.
  func expected() -> (loss: Double, accuracy: Double) {
    let rows: [([Double], Int)] = [([3, 0], 0), ([1, 1], 1), ([-1, -1], 1), ([5, 2], 0)]
    var total = 0.0, correct = 0
    for (x, label) in rows {
      // Evaluation mode: (x − running mean) / √(running var + ε) · w + b, then the identity.
      let z = [
        (x[0] - 1) / (4 + 1e-5).squareRoot() * 2 + 0,
        (x[1] + 1) / (1 + 1e-5).squareRoot() * 1 + 1,
      ]
      let logSum = log(exp(z[0]) + exp(z[1]))
      total += logSum - z[label]
      if (z[0] >= z[1] ? 0 : 1) == label { correct += 1 }
    }
    return (total / 4, Double(correct) / 4)
  }

  @Test func reportsLossAndAccuracyInEvaluationMode() throws {
    let directory = try CommandRunner.temporaryDirectory()
    let (weights, data) = try writeModelAndData(in: directory)
    let result = try CommandRunner.run([
      "evaluate", "--model", "batchnorm1d(2) linear(2,2)", "--init", weights, "--data", data, "--batch", "3", "--json",
    ])
    #expect(result.status == 0, "\(result.error)")
    let object = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]
    let (loss, accuracy) = expected()
    expectClose([Float((object?["loss"] as? Double) ?? .nan)], [Float(loss)], relative: 1e-5)
    #expect((object?["accuracy"] as? Double).map { abs($0 - accuracy) < 1e-6 } == true)
    #expect(object?["sample_count"] as? Int == 4)
    let text = try CommandRunner.run([
      "evaluate", "--model", "batchnorm1d(2) linear(2,2)", "--init", weights, "--data", data,
    ])
    #expect(text.output.contains("4 samples: cross-entropy loss"), "\(text.output)")
    #expect(text.output.contains("accuracy \(String(format: "%.2f", 100 * accuracy))%"), "\(text.output)")
  }

  @Test(arguments: [
    (["--model", "batchnorm1d(3) linear(3,2)"], "expects 3 input features"),
    (["--model", "batchnorm1d(2) linear(2,3)"], "shape"),
    (["--model", "linear(2,2)"], "model.safetensors"),
    (["--model", "batchnorm1d(2) linear(2,2)", "--batch", "0"], "--batch is 0"),
  ])
  func badInputsAreOneLine(arguments: [String], message: String) throws {
    let directory = try CommandRunner.temporaryDirectory()
    let (weights, data) = try writeModelAndData(in: directory)
    let result = try CommandRunner.run(["evaluate", "--init", weights, "--data", data] + arguments)
    #expect(result.status != 0 && result.status < 128)
    #expect(result.error.hasPrefix("Error: "), "\(result.error)")
    #expect(result.error.contains(message), "\(result.error)")
    #expect(result.error.split(separator: "\n").count == 1, "\(result.error)")
  }

  @Test func missingWeightsAreNamed() throws {
    let directory = try CommandRunner.temporaryDirectory()
    let (_, data) = try writeModelAndData(in: directory)
    let result = try CommandRunner.run([
      "evaluate", "--model", "linear(2,2)", "--init", "/nonexistent/w.safetensors", "--data", data,
    ])
    #expect(result.status == 1)
    #expect(result.error.contains("/nonexistent/w.safetensors"), "\(result.error)")
  }
}
