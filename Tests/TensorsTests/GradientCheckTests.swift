import Tensors
import Testing
import _TestSupport

@Suite("Finite-difference gradient checks")
struct GradientCheckTests {
  @Test(arguments: [([3, 4], [3, 4]), ([3, 4], [4]), ([2, 1, 4], [3, 1]), ([], [2, 3]), ([5, 1], [1, 5])])
  func broadcastingArithmetic(shapes: ([Int], [Int])) {
    let a = randomTensor(shapes.0, seed: 1), b = randomTensor(shapes.1, low: 0.5, high: 2, seed: 2)
    checkGradients(of: [a, b]) { $0[0] + $0[1] }
    checkGradients(of: [a, b]) { $0[0] - $0[1] }
    checkGradients(of: [a, b]) { $0[0] * $0[1] }
    checkGradients(of: [a, b]) { $0[0] / $0[1] }
  }

  @Test func scalarArithmetic() {
    let a = randomTensor([2, 3], low: 0.5, high: 2)
    checkGradients(of: [a]) { 3 - $0[0] * 2 + 1 }
    checkGradients(of: [a]) { 2 / $0[0] - $0[0] / 4 }
    checkGradients(of: [a]) { -$0[0] }
  }

  @Test func unaryFunctions() {
    let positive = randomTensor([3, 5], low: 0.2, high: 3)
    let any = randomTensor([3, 5], low: -3, high: 3)
    checkGradients(of: [any]) { $0[0].exp() }
    checkGradients(of: [positive]) { $0[0].log() }
    checkGradients(of: [positive]) { $0[0].squareRoot() }
    checkGradients(of: [positive]) { $0[0].raised(to: 2) }
    checkGradients(of: [positive]) { $0[0].raised(to: -1.5) }
    checkGradients(of: [any]) { $0[0].tanh() }
    checkGradients(of: [any]) { $0[0].sigmoid() }
    checkGradients(of: [any]) { $0[0].gelu() }
  }

  @Test func kinkedFunctionsAwayFromTheKink() {
    // Values at least 0.1 from 0, so a finite-difference step of 0.01 never crosses the kink.
    let values: [Float] = [-2, -0.5, -0.1, 0.1, 0.7, 3, -1.2, 0.4]
    let x = Tensor(values, shape: [2, 4])
    checkGradients(of: [x], step: 1e-2) { $0[0].relu() }
    checkGradients(of: [x], step: 1e-2) { $0[0].absoluteValue() }
  }

  @Test(arguments: [(false, false), (false, true), (true, false), (true, true)])
  func matrixProduct(flags: (Bool, Bool)) {
    let a = randomTensor(flags.0 ? [4, 3] : [3, 4], seed: 3)
    let b = randomTensor(flags.1 ? [5, 4] : [4, 5], seed: 4)
    checkGradients(of: [a, b]) {
      Tensor.matmul($0[0], $0[1], transposingLeft: flags.0, transposingRight: flags.1)
    }
  }

  @Test func reductions() {
    let x = randomTensor([2, 3, 4])
    checkGradients(of: [x]) { $0[0].sum() }
    checkGradients(of: [x]) { $0[0].mean() }
    checkGradients(of: [x]) { $0[0].sum(alongAxes: [1]) }
    checkGradients(of: [x]) { $0[0].sum(alongAxes: [0, 2], keepingDimensions: true) }
    checkGradients(of: [x]) { $0[0].mean(alongAxes: [-1]) }
    checkGradients(of: [x]) { $0[0].mean(alongAxes: [0, 1], keepingDimensions: true) }
  }

  @Test func reshapingAndTransposing() {
    let x = randomTensor([2, 3, 4])
    checkGradients(of: [x]) { $0[0].reshaped(to: [6, -1]) }
    checkGradients(of: [x]) { $0[0].transposed() }
    checkGradients(of: [x]) { $0[0].transposed(0, 2) }
  }

  @Test func softmaxFamily() {
    let x = randomTensor([3, 4, 2], low: -3, high: 3)
    checkGradients(of: [x]) { $0[0].softmax() }
    checkGradients(of: [x]) { $0[0].softmax(alongAxis: 1) }
    checkGradients(of: [x]) { $0[0].logSoftmax() }
    checkGradients(of: [x]) { $0[0].logSoftmax(alongAxis: 0) }
  }

  @Test func gatheringLabels() {
    let x = randomTensor([4, 3])
    checkGradients(of: [x]) { $0[0].gathering(labels: [2, 0, 1, 2]) }
    checkGradients(of: [x]) { $0[0].gathering(labels: [2, -100, 1, -100], ignoring: -100) }
  }

  @Test func compositeGraphWithSharedInputs() {
    // x is used three times; its gradient must be the sum over all paths.
    let x = randomTensor([3, 3], low: 0.5, high: 1.5)
    checkGradients(of: [x]) { inputs in
      let x = inputs[0]
      return (Tensor.matmul(x, x) * x).tanh().logSoftmax() + x.sum(alongAxes: [0])
    }
  }
}
