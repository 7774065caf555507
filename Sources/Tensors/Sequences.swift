extension Tensor {
  /// The rows of `weight` `[V, d]` at `ids` (`[…]` of integral values in `0..<V`), as
  /// PyTorch's `F.embedding`: a tensor `ids.shape + [d]`. Backward adds each output row's
  /// gradient into its id's row of the weight's gradient (ids receive none).
  /// - Precondition: every id is an integer in `0..<V` (data readers check them first).
  public static func embedding(ids: Tensor, weight: Tensor) -> Tensor {
    precondition(weight.rank == 2, "embedding needs a [V, d] weight, got \(weight.shape)")
    let (vocabulary, width) = (weight.shape[0], weight.shape[1])
    let result = Tensor(uninitializedShape: ids.shape + [width])
    if result.hasElements {
      let source = weight.storage.base, target = result.storage.base, index = ids.storage.base
      for position in 0..<ids.count {
        let row = Int(index[position])
        precondition(row >= 0 && row < vocabulary && Float(row) == index[position], "id \(index[position]) is not in 0..<\(vocabulary)")
        (target + position * width).update(from: source + row * width, count: width)
      }
    }
    let kept = ids.detached()
    return record(result, inputs: [weight]) { g in
      let gradient = Tensor(zeros: [vocabulary, width])
      if gradient.hasElements {
        let rows = gradient.storage.base, incoming = g.storage.base, index = kept.storage.base
        for position in 0..<kept.count {
          let row = rows + Int(index[position]) * width, from = incoming + position * width
          for j in 0..<width { row[j] += from[j] }
        }
      }
      return [gradient]
    }
  }

  /// `x` `[b, s, d]` plus the first `s` rows of `positions` `[L, d]` at every sample:
  /// `y[i, t] = x[i, t] + positions[t]`, as the reference's learned positional embedding.
  /// Backward passes the gradient to `x` and adds its sum over samples to `positions`.
  /// - Precondition: `s ≤ L` and the widths agree.
  public static func addingPositions(_ x: Tensor, _ positions: Tensor) -> Tensor {
    precondition(x.rank == 3 && positions.rank == 2, "positions need [b, s, d] and [L, d], got \(x.shape), \(positions.shape)")
    let (samples, length, width) = (x.shape[0], x.shape[1], x.shape[2])
    let table = positions.shape[0]
    precondition(length <= table && positions.shape[1] == width, "\(x.shape) does not fit positions \(positions.shape)")
    let result = Tensor(uninitializedShape: x.shape)
    if result.hasElements {
      let source = x.storage.base, rows = positions.storage.base, target = result.storage.base
      let block = length * width
      for sample in 0..<samples {
        let from = source + sample * block, to = target + sample * block
        for i in 0..<block { to[i] = from[i] + rows[i] }
      }
    }
    // Backward needs no values: only whether each operand takes a gradient.
    let (needsInput, needsPositions) = (x.isDifferentiable, positions.isDifferentiable)
    return record(result, inputs: [x, positions]) { g in
      var gradientPositions: Tensor?
      if needsPositions {
        let gradient = Tensor(zeros: [table, width])
        if gradient.hasElements {
          let rows = gradient.storage.base, incoming = g.storage.base
          let block = length * width
          for sample in 0..<samples {
            let from = incoming + sample * block
            for i in 0..<block { rows[i] += from[i] }
          }
        }
        gradientPositions = gradient
      }
      return [needsInput ? g : nil, gradientPositions]
    }
  }
}
