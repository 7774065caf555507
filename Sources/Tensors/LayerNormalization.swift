extension Tensor {
  /// Layer normalization over the last axis, as PyTorch's `F.layer_norm(x, [n], w, b, ε)`:
  /// each row of `n` values is shifted by its mean and divided by `√(variance + ε)` (biased
  /// variance, statistics in Double), then multiplied by `weight` and shifted by `bias`
  /// (both `[n]`).
  ///
  /// One fused op: the forward pass keeps each row's mean and `1/σ` (`[rows, 2]`), backward
  /// uses the closed form `dx = 1/σ · (d − mean(d) − x̂ · mean(d · x̂))` with `d = dy · w`.
  public static func layerNormalization(_ input: Tensor, weight: Tensor, bias: Tensor, epsilon: Float) -> Tensor {
    let width = input.shape.last ?? 0
    precondition(width >= 1 && weight.shape == [width] && bias.shape == [width], "layer norm of \(input.shape) needs weight and bias [\(width)]")
    let rows = input.count / width
    let output = Tensor(uninitializedShape: input.shape)
    let statistics = Tensor(uninitializedShape: [rows, 2])
    if output.hasElements {
      let x = input.storage.base, y = output.storage.base, w = weight.storage.base, b = bias.storage.base
      let stats = statistics.storage.base
      for row in 0..<rows {
        let source = x + row * width, target = y + row * width
        var total: Double = 0
        for i in 0..<width { total += Double(source[i]) }
        let mean = total / Double(width)
        var squares: Double = 0
        for i in 0..<width {
          let d = Double(source[i]) - mean
          squares += d * d
        }
        let inverse = Float(1 / (squares / Double(width) + Double(epsilon)).squareRoot())
        let average = Float(mean)
        stats[2 * row] = average
        stats[2 * row + 1] = inverse
        for i in 0..<width { target[i] = (source[i] - average) * inverse * w[i] + b[i] }
      }
    }
    let x = input.detached(), w = weight.detached()
    return record(output, inputs: [input, weight, bias]) { g in
      let gradientInput = input.isDifferentiable ? Tensor(uninitializedShape: input.shape) : nil
      let gradientWeight = weight.isDifferentiable ? Tensor(zeros: [width]) : nil
      let gradientBias = bias.isDifferentiable ? Tensor(zeros: [width]) : nil
      if g.hasElements {
        let gy = g.storage.base, xs = x.storage.base, ws = w.storage.base, stats = statistics.storage.base
        for row in 0..<rows {
          let dy = gy + row * width, source = xs + row * width
          let average = stats[2 * row], inverse = stats[2 * row + 1]
          var sumGradient: Float = 0, sumProduct: Float = 0
          for i in 0..<width {
            let normalized = (source[i] - average) * inverse
            let d = dy[i] * ws[i]
            sumGradient += d
            sumProduct += d * normalized
          }
          if let gradientWeight, let gradientBias {
            let dw = gradientWeight.storage.base, db = gradientBias.storage.base
            for i in 0..<width {
              dw[i] += dy[i] * (source[i] - average) * inverse
              db[i] += dy[i]
            }
          } else if let gradientWeight {
            let dw = gradientWeight.storage.base
            for i in 0..<width { dw[i] += dy[i] * (source[i] - average) * inverse }
          } else if let gradientBias {
            let db = gradientBias.storage.base
            for i in 0..<width { db[i] += dy[i] }
          }
          guard let gradientInput else { continue }
          let meanGradient = sumGradient / Float(width), meanProduct = sumProduct / Float(width)
          let dx = gradientInput.storage.base + row * width
          for i in 0..<width {
            let normalized = (source[i] - average) * inverse
            dx[i] = inverse * (dy[i] * ws[i] - meanGradient - normalized * meanProduct)
          }
        }
      }
      return [gradientInput, gradientWeight, gradientBias]
    }
  }
}
