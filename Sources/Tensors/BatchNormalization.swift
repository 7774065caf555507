extension Tensor {
  /// Batch normalization in training mode, as PyTorch's `F.batch_norm(…, training=True)`:
  /// every channel (axis 1) of `input` `[N, C, …]` is shifted by the mean and divided by
  /// `√(variance + ε)` of its `N·…` values (biased variance), then multiplied by `weight`
  /// and shifted by `bias` (both `[C]`, optional).
  ///
  /// One pass computes the statistics, one the output; backward uses PyTorch's closed form
  /// (`dx = w/σ · (dy − mean(dy) − x̂ · mean(dy · x̂))`) without keeping `x̂`. Sums are in
  /// Double, four running sums per row; channels are independent and shared between two
  /// threads (``ParallelWork``) when large.
  /// - Returns: the output and the batch's per-channel `mean` and biased `variance`
  ///   (constants, `[C]`), from which a layer updates its running statistics.
  public static func batchNormalization(
    _ input: Tensor, weight: Tensor?, bias: Tensor?, epsilon: Float
  ) -> (output: Tensor, mean: Tensor, variance: Tensor) {
    precondition(input.rank >= 2, "batch normalization needs [N, C, …], got \(input.shape)")
    let (n, channels) = (input.shape[0], input.shape[1])
    let inner = input.shape.dropFirst(2).reduce(1, *)
    precondition(weight.map { $0.shape == [channels] } ?? true, "weight must be [\(channels)]")
    precondition(bias.map { $0.shape == [channels] } ?? true, "bias must be [\(channels)]")
    let output = Tensor(uninitializedShape: input.shape)
    let mean = Tensor(uninitializedShape: [channels])
    let variance = Tensor(uninitializedShape: [channels])
    let count = n * inner
    let source = input.storage.base, y = output.storage.base
    ParallelWork.split(channels, elementsPerItem: count, computes: output.hasElements) { channelRange in
      for c in channelRange {
        var total: Double = 0
        for sample in 0..<n {
          total += VectorMath.doubleSum(source + (sample * channels + c) * inner, count: inner) { Double($0) }
        }
        let average = total / Double(count)
        var squares: Double = 0
        for sample in 0..<n {
          squares += VectorMath.doubleSum(source + (sample * channels + c) * inner, count: inner) {
            let d = Double($0) - average
            return d * d
          }
        }
        let biased = squares / Double(count)
        mean.storage.base[c] = Float(average)
        variance.storage.base[c] = Float(biased)
        let inverse = Float(1 / (biased + Double(epsilon)).squareRoot())
        let scale = inverse * (weight?.storage.base[c] ?? 1)
        let shift = (bias?.storage.base[c] ?? 0) - Float(average) * scale
        for sample in 0..<n {
          let offset = (sample * channels + c) * inner
          scaledRow(source + offset, into: y + offset, count: inner, scale: scale, shift: shift)
        }
      }
    }
    let x = input.detached(), w = weight?.detached()
    let inputs = [input] + (weight.map { [$0] } ?? []) + (bias.map { [$0] } ?? [])
    let result = record(output, inputs: inputs) { g in
      let gradientInput = input.isDifferentiable ? Tensor(uninitializedShape: input.shape) : nil
      let gradientWeight = weight?.isDifferentiable == true ? Tensor(uninitializedShape: [channels]) : nil
      let gradientBias = bias?.isDifferentiable == true ? Tensor(uninitializedShape: [channels]) : nil
      let gy = g.storage.base, xs = x.storage.base
      ParallelWork.split(channels, elementsPerItem: count, computes: g.hasElements) { channelRange in
        for c in channelRange {
          let average = mean.storage.base[c]
          let inverse = 1 / (variance.storage.base[c] + epsilon).squareRoot()
          var sumGradient: Double = 0, sumProduct: Double = 0
          for sample in 0..<n {
            let offset = (sample * channels + c) * inner
            sumGradient += VectorMath.doubleSum(gy + offset, count: inner) { Double($0) }
            sumProduct += VectorMath.doubleSum(inner) { i in Double(gy[offset + i]) * Double((xs[offset + i] - average) * inverse) }
          }
          gradientWeight?.storage.base[c] = Float(sumProduct)
          gradientBias?.storage.base[c] = Float(sumGradient)
          guard let gradientInput else { continue }
          let scale = inverse * (w?.storage.base[c] ?? 1)
          let meanGradient = Float(sumGradient / Double(count)), meanProduct = Float(sumProduct / Double(count))
          for sample in 0..<n {
            let offset = (sample * channels + c) * inner
            normalizedGradientRow(
              gy + offset, xs + offset, into: gradientInput.storage.base + offset, count: inner, average: average,
              inverse: inverse, scale: scale, meanGradient: meanGradient, meanProduct: meanProduct)
          }
        }
      }
      return [gradientInput] + (weight != nil ? [gradientWeight] : []) + (bias != nil ? [gradientBias] : [])
    }
    return (result, mean, variance)
  }
}

/// `y[i] = x[i]·scale + shift`: a plain loop over local values, which vectorizes.
private func scaledRow(
  _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int, scale: Float, shift: Float
) {
  for i in 0..<count { y[i] = x[i] * scale + shift }
}

/// `dx[i] = scale · (dy[i] − meanGradient − x̂[i] · meanProduct)` with `x̂ = (x − average)·inverse`.
private func normalizedGradientRow(
  _ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, into dx: UnsafeMutablePointer<Float>, count: Int,
  average: Float, inverse: Float, scale: Float, meanGradient: Float, meanProduct: Float
) {
  for i in 0..<count {
    let normalized = (x[i] - average) * inverse
    dx[i] = scale * (dy[i] - meanGradient - normalized * meanProduct)
  }
}
