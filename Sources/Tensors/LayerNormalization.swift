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
        let (average, inverse) = rowStatistics(source, width: width, epsilon: epsilon)
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
          let (sumGradient, sumProduct) = gradientSums(
            dy, source, weight: ws, average: average, inverse: inverse, width: width)
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

  /// A row's mean and `1/√(variance + ε)` (biased variance), summed in Double
  /// (``VectorMath/doubleSum(_:count:_:)``, as batch normalization sums its rows).
  static func rowStatistics(_ row: UnsafePointer<Float>, width: Int, epsilon: Float) -> (mean: Float, inverse: Float) {
    let mean = VectorMath.doubleSum(row, count: width) { Double($0) } / Double(width)
    let squares = VectorMath.doubleSum(row, count: width) {
      let d = Double($0) - mean
      return d * d
    }
    return (Float(mean), Float(1 / (squares / Double(width) + Double(epsilon)).squareRoot()))
  }

  /// `Σ d` and `Σ d · x̂` over a row, with `d = dy · w` and `x̂ = (x − mean) / σ`, in
  /// sixteen lanes.
  static func gradientSums(
    _ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, average: Float,
    inverse: Float, width: Int
  ) -> (gradient: Float, product: Float) {
    var gradientLanes = SIMD16<Float>(), productLanes = SIMD16<Float>()
    var i = 0
    while i &+ 16 <= width {
      let normalized = (UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self) - average) * inverse
      let d =
        UnsafeRawPointer(dy + i).loadUnaligned(as: SIMD16<Float>.self)
        * UnsafeRawPointer(weight + i).loadUnaligned(as: SIMD16<Float>.self)
      gradientLanes += d
      productLanes += d * normalized
      i &+= 16
    }
    var gradient = gradientLanes.sum(), product = productLanes.sum()
    while i < width {
      let d = dy[i] * weight[i]
      gradient += d
      product += d * ((x[i] - average) * inverse)
      i &+= 1
    }
    return (gradient, product)
  }
}
