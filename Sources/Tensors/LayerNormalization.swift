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
    let source = input.storage.base, y = output.storage.base, scale = weight.storage.base, b = bias.storage.base
    let stats = statistics.storage.base
    // Rows are independent: split between two threads (``ParallelWork``).
    ParallelWork.split(rows, elementsPerItem: width, computes: output.hasElements) { range in
      for row in range {
        let source = source + row * width, target = y + row * width
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
        for i in 0..<width { target[i] = (source[i] - average) * inverse * scale[i] + b[i] }
      }
    }
    let x = input.detached(), w = weight.detached()
    return record(output, inputs: [input, weight, bias]) { g in
      let gradientInput = input.isDifferentiable ? Tensor(uninitializedShape: input.shape) : nil
      let gradientWeight = weight.isDifferentiable ? Tensor(zeros: [width]) : nil
      let gradientBias = bias.isDifferentiable ? Tensor(zeros: [width]) : nil
      // Rows split between two threads: the second half sums its parameter gradients
      // apart (fixed halves: the same sums whichever thread runs them), added after.
      let parallel = ParallelWork.splits(rows, elementsPerItem: width)
      let partial = parallel && (gradientWeight != nil || gradientBias != nil) ? Tensor(zeros: [2, width]) : nil
      let gy = g.storage.base, xs = x.storage.base, ws = w.storage.base, stats = statistics.storage.base
      ParallelWork.split(rows, elementsPerItem: width, computes: g.hasElements) { range in
        let second = range.lowerBound > 0 && partial != nil
        let dw = second ? partial?.storage.base : gradientWeight?.storage.base
        let db = second ? partial.map { $0.storage.base + width } : gradientBias?.storage.base
        for row in range {
          let dy = gy + row * width, source = xs + row * width
          let average = stats[2 * row], inverse = stats[2 * row + 1]
          var sumGradient: Float = 0, sumProduct: Float = 0
          for i in 0..<width {
            let normalized = (source[i] - average) * inverse
            let d = dy[i] * ws[i]
            sumGradient += d
            sumProduct += d * normalized
          }
          if gradientWeight != nil, let dw {
            for i in 0..<width { dw[i] += dy[i] * (source[i] - average) * inverse }
          }
          if gradientBias != nil, let db {
            VectorMath.add(dy, into: db, count: width)
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
      if g.hasElements, let partial {
        let p = partial.storage.base
        if let gradientWeight { VectorMath.add(p, into: gradientWeight.storage.base, count: width) }
        if let gradientBias { VectorMath.add(p + width, into: gradientBias.storage.base, count: width) }
      }
      return [gradientInput, gradientWeight, gradientBias]
    }
  }
}
