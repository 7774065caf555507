import NeuralNetwork
import Tensors
import Testing
import _TestSupport

#if canImport(Glibc)
  import Glibc
#endif

@Suite("Losses")
struct LossTests {
  @Test func meanSquaredErrorReductions() {
    let predicted = Tensor([1, 2, 3, 4], shape: [4, 1])
    let expected = Tensor([1.5, 2, 1, 4], shape: [4])  // compared row by row, not broadcast
    #expect(meanSquaredError(predicted: predicted, expected: expected).scalarValue == (0.25 + 4) / 4)
    #expect(meanSquaredError(predicted: predicted, expected: expected, reduction: .sum).scalarValue == 4.25)
    #expect(meanSquaredError(predicted: predicted, expected: expected, reduction: .none).values == [0.25, 0, 4, 0])
  }

  @Test func crossEntropyMatchesTheFormula() {
    let logits: [Float] = [1, 2, 0.5, -1, 0, 3]
    let x = Tensor(logits, shape: [2, 3])
    func reference(_ row: Int, _ label: Int) -> Float {
      let z = logits[(row * 3)..<(row * 3 + 3)]
      return log(z.map { exp($0) }.reduce(0, +)) - z[row * 3 + label]
    }
    let none = crossEntropy(logits: x, labels: [1, 2], reduction: .none).values
    expectClose(none, [reference(0, 1), reference(1, 2)], relative: 1e-6)
    expectClose(
      [crossEntropy(logits: x, labels: [1, 2]).scalarValue], [(reference(0, 1) + reference(1, 2)) / 2], relative: 1e-6)
    expectClose(
      [crossEntropy(logits: x, labels: [1, 2], reduction: .sum).scalarValue], [reference(0, 1) + reference(1, 2)],
      relative: 1e-6)
  }

  @Test func crossEntropyIgnoresLabelsAndDividesByTheRest() {
    let x = randomTensor([4, 3])
    let full = crossEntropy(logits: x, labels: [0, -100, 2, -100], reduction: .none).values
    #expect(full[1] == 0 && full[3] == 0)
    expectClose(
      [crossEntropy(logits: x, labels: [0, -100, 2, -100]).scalarValue], [(full[0] + full[2]) / 2], relative: 1e-6)
    expectClose(
      [crossEntropy(logits: x, labels: [0, 7, 2, 7], ignoreIndex: 7).scalarValue], [(full[0] + full[2]) / 2],
      relative: 1e-6)
    #expect(Loss.crossEntropy.itemCount(targets: Tensor([0, -100, 2, -100], shape: [4])) == 2)
  }

  @Test func binaryCrossEntropyIsStableAndMatchesTheFormula() {
    let logits: [Float] = [-2, 0, 3, 50, -50]
    let targets: [Float] = [0, 1, 1, 0, 1]
    let none = binaryCrossEntropy(
      logits: Tensor(logits, shape: [5, 1]), expected: Tensor(targets, shape: [5]), reduction: .none
    ).values
    let expected = zip(logits, targets).map { x, y -> Float in
      let p = 1 / (1 + exp(-Double(x)))
      return Float(-(Double(y) * log(p) + (1 - Double(y)) * log(1 - p)))
    }
    expectClose(Array(none[0..<3]), Array(expected[0..<3]), relative: 1e-6)
    // For |x| = 50 the naive formula overflows; the stable one gives |x|.
    expectClose(Array(none[3..<5]), [50, 50], relative: 1e-6)
  }

  @Test func lossGradientsMatchFiniteDifferences() {
    let predicted = randomTensor([4, 3], seed: 2)
    let targets = randomTensor([4, 3], seed: 3)
    let binary = Tensor([0, 1, 1, 0, 0.3, 1, 0, 1, 0, 1, 1, 0], shape: [4, 3])
    for reduction in Reduction.allCases {
      checkGradients(of: [predicted]) { meanSquaredError(predicted: $0[0], expected: targets, reduction: reduction) }
      checkGradients(of: [predicted]) { crossEntropy(logits: $0[0], labels: [2, -100, 0, 1], reduction: reduction) }
      checkGradients(of: [predicted]) { binaryCrossEntropy(logits: $0[0] * 3, expected: binary, reduction: reduction) }
    }
  }

  @Test func targetShapesAreChecked() throws {
    try Loss.meanSquaredError.checkTargets(outputShape: [1], targets: Tensor(zeros: [5]))
    try Loss.crossEntropy.checkTargets(outputShape: [10], targets: Tensor(zeros: [5]))
    #expect(throws: ShapeError.targetMismatch(loss: "mse", predicted: [5, 3], targets: [5])) {
      try Loss.meanSquaredError.checkTargets(outputShape: [3], targets: Tensor(zeros: [5]))
    }
    #expect(throws: ShapeError.self) {
      try Loss.crossEntropy.checkTargets(outputShape: [2, 2], targets: Tensor(zeros: [5]))
    }
  }
}
