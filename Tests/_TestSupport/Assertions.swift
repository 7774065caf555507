import Tensors
import Testing

/// Whether `actual` is within `relative · max(|expected|, floor)` of `expected`.
public func isClose(_ actual: Float, _ expected: Float, relative: Float = 1e-5, floor: Float = 1) -> Bool {
  if actual.isNaN || expected.isNaN { return actual.isNaN && expected.isNaN }
  return abs(actual - expected) <= relative * max(abs(expected), floor)
}

/// Records an issue for every element of `actual` that is not close to `expected`.
public func expectClose(
  _ actual: [Float], _ expected: [Float], relative: Float = 1e-5, floor: Float = 1,
  _ comment: String = "", sourceLocation: SourceLocation = #_sourceLocation
) {
  #expect(
    actual.count == expected.count, "\(comment): \(actual.count) values, expected \(expected.count)",
    sourceLocation: sourceLocation)
  for (index, (a, e)) in zip(actual, expected).enumerated() where !isClose(a, e, relative: relative, floor: floor) {
    Issue.record("\(comment) element \(index): \(a), expected \(e)", sourceLocation: sourceLocation)
    return
  }
}

/// The largest elementwise relative difference of two equally long arrays.
public func maximumRelativeDifference(_ a: [Float], _ b: [Float], floor: Float = 1e-6) -> Float {
  zip(a, b).map { abs($0 - $1) / max(abs($1), floor) }.max() ?? 0
}

/// Checks `function`'s gradients with respect to each of `inputs` against central finite
/// differences of `Σ function(inputs) · w` for fixed random weights `w`.
///
/// Gradients from ``Tensor/backward()`` must agree within `tolerance · max(|numeric|, 0.1)`.
public func checkGradients(
  of inputs: [Tensor], step: Float = 1e-2, tolerance: Float = 2e-2,
  sourceLocation: SourceLocation = #_sourceLocation, _ function: ([Tensor]) -> Tensor
) {
  var generator = RandomGenerator(seed: 99)
  let probe = function(inputs.map { $0.detached() })
  let weights = Tensor(uniformShape: probe.shape, low: 0.5, high: 1.5, generator: &generator)
  func objective(_ values: [Tensor]) -> Double {
    let output = function(values)
    var total: Double = 0
    for (o, w) in zip(output.values, weights.values) { total += Double(o) * Double(w) }
    return total
  }
  for input in inputs {
    input.requiresGradient = true
    input.clearGradient()
  }
  (function(inputs) * weights).sum().backward()
  for (index, input) in inputs.enumerated() {
    guard let analytic = input.gradient?.values else {
      Issue.record("input \(index) received no gradient", sourceLocation: sourceLocation)
      continue
    }
    for element in 0..<input.count {
      let original = input.mutableBuffer[element]
      input.mutableBuffer[element] = original + step
      let plus = objective(inputs.map { $0.detached() })
      input.mutableBuffer[element] = original - step
      let minus = objective(inputs.map { $0.detached() })
      input.mutableBuffer[element] = original
      let numeric = Float((plus - minus) / Double(2 * step))
      if abs(analytic[element] - numeric) > tolerance * max(abs(numeric), 0.1) {
        Issue.record(
          "input \(index) element \(element): backward gives \(analytic[element]), finite differences \(numeric)",
          sourceLocation: sourceLocation)
        return
      }
    }
  }
}

/// A tensor of uniform values in `[low, high)` with a fixed seed.
public func randomTensor(_ shape: [Int], low: Float = -1, high: Float = 1, seed: UInt64 = 1) -> Tensor {
  var generator = RandomGenerator(seed: seed)
  return Tensor(uniformShape: shape, low: low, high: high, generator: &generator)
}
