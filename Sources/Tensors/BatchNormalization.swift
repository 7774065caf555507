extension Tensor {
  /// Batch normalization in training mode, as PyTorch's `F.batch_norm(…, training=True)`:
  /// every channel (axis 1) of `input` `[N, C, …]` is shifted by the mean and divided by
  /// `√(variance + ε)` of its `N·…` values (biased variance), then multiplied by `weight`
  /// and shifted by `bias` (both `[C]`, optional).
  ///
  /// One pass computes the statistics, one the output; backward uses PyTorch's closed form
  /// (`dx = w/σ · (dy − mean(dy) − x̂ · mean(dy · x̂))`) without keeping `x̂`.
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
    if output.hasElements {
      let x = input.storage.base, y = output.storage.base
      for c in 0..<channels {
        var total: Double = 0
        for sample in 0..<n {
          let row = x + (sample * channels + c) * inner
          for i in 0..<inner { total += Double(row[i]) }
        }
        let average = total / Double(count)
        var squares: Double = 0
        for sample in 0..<n {
          let row = x + (sample * channels + c) * inner
          for i in 0..<inner {
            let d = Double(row[i]) - average
            squares += d * d
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
          for i in 0..<inner { y[offset + i] = x[offset + i] * scale + shift }
        }
      }
    }
    let x = input.detached(), w = weight?.detached()
    let inputs = [input] + (weight.map { [$0] } ?? []) + (bias.map { [$0] } ?? [])
    let result = record(output, inputs: inputs) { g in
      let gradientInput = input.isDifferentiable ? Tensor(uninitializedShape: input.shape) : nil
      let gradientWeight = weight?.isDifferentiable == true ? Tensor(uninitializedShape: [channels]) : nil
      let gradientBias = bias?.isDifferentiable == true ? Tensor(uninitializedShape: [channels]) : nil
      if g.hasElements {
        let gy = g.storage.base, xs = x.storage.base
        for c in 0..<channels {
          let average = mean.storage.base[c]
          let inverse = 1 / (variance.storage.base[c] + epsilon).squareRoot()
          var sumGradient: Double = 0, sumProduct: Double = 0
          for sample in 0..<n {
            let offset = (sample * channels + c) * inner
            for i in 0..<inner {
              let dy = Double(gy[offset + i])
              sumGradient += dy
              sumProduct += dy * Double((xs[offset + i] - average) * inverse)
            }
          }
          gradientWeight?.storage.base[c] = Float(sumProduct)
          gradientBias?.storage.base[c] = Float(sumGradient)
          guard let gradientInput else { continue }
          let scale = inverse * (w?.storage.base[c] ?? 1)
          let meanGradient = Float(sumGradient / Double(count)), meanProduct = Float(sumProduct / Double(count))
          let dx = gradientInput.storage.base
          for sample in 0..<n {
            let offset = (sample * channels + c) * inner
            for i in 0..<inner {
              let normalized = (xs[offset + i] - average) * inverse
              dx[offset + i] = scale * (gy[offset + i] - meanGradient - normalized * meanProduct)
            }
          }
        }
      }
      return [gradientInput] + (weight != nil ? [gradientWeight] : []) + (bias != nil ? [gradientBias] : [])
    }
    return (result, mean, variance)
  }
}
