import Foundation

/// An independent trainer for small MLPs in `Double`, written from the formulas of
/// PyTorch's layers, losses and optimizers (no shared code with the library), to check
/// the library's training against.
public struct ReferenceMLP {
  public enum Activation { case relu, tanh, none }
  public enum LossKind { case mse, crossEntropy(ignoreIndex: Int) }
  public enum OptimizerKind {
    case sgd(lr: Double, momentum: Double, dampening: Double, weightDecay: Double, nesterov: Bool)
    case adam(lr: Double, weightDecay: Double, decoupled: Bool, amsgrad: Bool)
  }

  /// Per layer: weight `[out][in]` row-major, bias `[out]`, and the activation after it.
  public var weights: [[Double]]
  public var biases: [[Double]]
  public let sizes: [Int]
  public let activations: [Activation]
  var state: [[[Double]]] = []
  var steps = 0

  /// - Parameters:
  ///   - sizes: layer widths, input first.
  ///   - parameters: per layer, weight then bias values (as the library's `0.weight`, `0.bias`, …).
  public init(sizes: [Int], activations: [Activation], parameters: [[Float]]) {
    self.sizes = sizes
    self.activations = activations
    weights = stride(from: 0, to: parameters.count, by: 2).map { parameters[$0].map(Double.init) }
    biases = stride(from: 1, to: parameters.count, by: 2).map { parameters[$0].map(Double.init) }
  }

  /// The parameters, in the library's order.
  public var parameters: [[Float]] {
    zip(weights, biases).flatMap { [$0.map(Float.init), $1.map(Float.init)] }
  }

  /// Summed loss and gradients (weights, biases) of one micro-batch, divided by `divisor`.
  func gradients(inputs: [[Double]], targets: [Double], loss: LossKind, divisor: Double)
    -> (loss: Double, weights: [[Double]], biases: [[Double]])
  {
    var gw = weights.map { [Double](repeating: 0, count: $0.count) }
    var gb = biases.map { [Double](repeating: 0, count: $0.count) }
    var total = 0.0
    for (sample, x) in inputs.enumerated() {
      var layerInputs: [[Double]] = []
      var preActivations: [[Double]] = []
      var a = x
      for layer in 0..<weights.count {
        layerInputs.append(a)
        let n = sizes[layer], m = sizes[layer + 1]
        var z = [Double](repeating: 0, count: m)
        for o in 0..<m {
          var s = biases[layer][o]
          for i in 0..<n { s += weights[layer][o * n + i] * a[i] }
          z[o] = s
        }
        preActivations.append(z)
        switch activations[layer] {
        case .relu: a = z.map { max($0, 0) }
        case .tanh: a = z.map { Foundation.tanh($0) }
        case .none: a = z
        }
      }
      var delta: [Double]
      switch loss {
      case .mse:
        let d = a[0] - targets[sample]
        total += d * d
        delta = [2 * d]
      case .crossEntropy(let ignoreIndex):
        let label = Int(targets[sample])
        if label == ignoreIndex {
          delta = [Double](repeating: 0, count: a.count)
        } else {
          let maximum = a.max()!
          let exps = a.map { Foundation.exp($0 - maximum) }
          let sum = exps.reduce(0, +)
          total += Foundation.log(sum) + maximum - a[label]
          delta = exps.map { $0 / sum }
          delta[label] -= 1
        }
      }
      for layer in stride(from: weights.count - 1, through: 0, by: -1) {
        let z = preActivations[layer]
        switch activations[layer] {
        case .relu: delta = zip(delta, z).map { $1 > 0 ? $0 : 0 }
        case .tanh: delta = zip(delta, z).map { $0 * (1 - Foundation.tanh($1) * Foundation.tanh($1)) }
        case .none: break
        }
        let n = sizes[layer], m = sizes[layer + 1]
        let input = layerInputs[layer]
        var previous = [Double](repeating: 0, count: n)
        for o in 0..<m {
          gb[layer][o] += delta[o] / divisor
          for i in 0..<n {
            gw[layer][o * n + i] += delta[o] * input[i] / divisor
            previous[i] += weights[layer][o * n + i] * delta[o]
          }
        }
        delta = previous
      }
    }
    return (total / divisor, gw, gb)
  }

  /// Trains over `inputs` in order for `epochs`, windows of `microBatch × accumulation`
  /// samples (the last may be partial); returns the epoch losses.
  public mutating func train(
    inputs: [[Double]], targets: [Double], loss: LossKind, optimizer: OptimizerKind,
    epochs: Int, microBatch: Int, accumulation: Int
  ) -> [Double] {
    var epochLosses: [Double] = []
    let window = microBatch * accumulation
    for _ in 0..<epochs {
      var epochTotal = 0.0
      for start in stride(from: 0, to: inputs.count, by: window) {
        let end = min(start + window, inputs.count)
        let items: Double
        switch loss {
        case .mse: items = Double(end - start)
        case .crossEntropy(let ignoreIndex):
          items = Double(targets[start..<end].filter { Int($0) != ignoreIndex }.count)
        }
        var gw = weights.map { [Double](repeating: 0, count: $0.count) }
        var gb = biases.map { [Double](repeating: 0, count: $0.count) }
        var windowLoss = 0.0
        for microStart in stride(from: start, to: end, by: microBatch) {
          let microEnd = min(microStart + microBatch, end)
          let g = gradients(
            inputs: Array(inputs[microStart..<microEnd]), targets: Array(targets[microStart..<microEnd]), loss: loss,
            divisor: items)
          windowLoss += g.loss
          for l in 0..<gw.count {
            for i in 0..<gw[l].count { gw[l][i] += g.weights[l][i] }
            for i in 0..<gb[l].count { gb[l][i] += g.biases[l][i] }
          }
        }
        epochTotal += windowLoss * Double(end - start)
        step(weightGradients: gw, biasGradients: gb, optimizer: optimizer)
      }
      epochLosses.append(epochTotal / Double(inputs.count))
    }
    return epochLosses
  }

  mutating func step(weightGradients: [[Double]], biasGradients: [[Double]], optimizer: OptimizerKind) {
    steps += 1
    var values = zip(weights, biases).flatMap { [$0, $1] }
    let grads = zip(weightGradients, biasGradients).flatMap { [$0, $1] }
    if state.isEmpty {
      state = values.map {
        [
          [Double](repeating: 0, count: $0.count), [Double](repeating: 0, count: $0.count),
          [Double](repeating: 0, count: $0.count),
        ]
      }
    }
    for p in 0..<values.count {
      for i in 0..<values[p].count {
        var g = grads[p][i]
        switch optimizer {
        case .sgd(let lr, let momentum, let dampening, let weightDecay, let nesterov):
          g += weightDecay * values[p][i]
          if momentum != 0 {
            let b = steps == 1 ? g : momentum * state[p][0][i] + (1 - dampening) * g
            state[p][0][i] = b
            g = nesterov ? g + momentum * b : b
          }
          values[p][i] -= lr * g
        case .adam(let lr, let weightDecay, let decoupled, let amsgrad):
          if decoupled { values[p][i] *= 1 - lr * weightDecay } else { g += weightDecay * values[p][i] }
          state[p][0][i] = 0.9 * state[p][0][i] + 0.1 * g
          state[p][1][i] = 0.999 * state[p][1][i] + 0.001 * g * g
          state[p][2][i] = max(state[p][2][i], state[p][1][i])
          let v = amsgrad ? state[p][2][i] : state[p][1][i]
          let mHat = state[p][0][i] / (1 - pow(0.9, Double(steps)))
          let vHat = v / (1 - pow(0.999, Double(steps)))
          values[p][i] -= lr * mHat / (vHat.squareRoot() + 1e-8)
        }
      }
    }
    weights = stride(from: 0, to: values.count, by: 2).map { values[$0] }
    biases = stride(from: 1, to: values.count, by: 2).map { values[$0] }
  }
}
