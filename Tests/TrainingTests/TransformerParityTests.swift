import Foundation
import GradAccum
import Testing
import _TestSupport

/// The sequence layers against PyTorch's reference definitions, from the same weights: runs
/// only when `GRADACCUM_PARITY_DIR` names a directory that `scripts/transformer_parity.py`
/// wrote (the tests themselves never need PyTorch).
@Suite(.enabled(if: ProcessInfo.processInfo.environment["GRADACCUM_PARITY_DIR"] != nil))
struct TransformerParityTests {
  @Test func logitsLossAndGradientsMatchPyTorch() throws {
    let directory = URL(fileURLWithPath: ProcessInfo.processInfo.environment["GRADACCUM_PARITY_DIR"]!)
    let reference = try JSONSerialization.jsonObject(
      with: Data(contentsOf: directory.appendingPathComponent("reference.json"))) as! [String: Any]
    let model = try ModelSpecification(parsing: reference["spec"] as! String).build(seed: 0)
    try model.loadState(path: directory.appendingPathComponent("weights.safetensors").path)
    let ids = (reference["ids"] as! [Double]).map(Float.init)
    let labels = (reference["labels"] as! [Double]).map(Float.init)
    let logits = model(Tensor(ids, shape: [2, 7]))
    let expected = (reference["logits"] as! [Double]).map(Float.init)
    let logitDifference = zip(logits.values, expected).map { abs($0 - $1) }.max()!
    let loss = tokenCrossEntropy(logits: logits, labels: Tensor(labels, shape: [2, 7]), reduction: .sum)
    loss.backward()
    var gradientDifference: Float = 0
    for (name, tensor) in model.namedParameters {
      let pytorch = (reference["gradients"] as! [String: [Double]])[name]!.map(Float.init)
      let scale = max(pytorch.map(abs).max()!, 1e-6)
      gradientDifference = max(gradientDifference, zip(tensor.gradient!.values, pytorch).map { abs($0 - $1) }.max()! / scale)
    }
    print("logits within \(logitDifference), loss \(loss.scalarValue) against \(reference["loss"]!), gradients within \(gradientDifference) of their scale")
    #expect(logitDifference < 1e-5)
    #expect(abs(Double(loss.scalarValue) - (reference["loss"] as! Double)) < 1e-4)
    #expect(gradientDifference < 1e-5)
  }
}
