extension Tensor {
  /// Normalizes a possibly negative axis; precondition that it exists.
  func normalizedAxis(_ axis: Int) -> Int {
    let normalized = axis < 0 ? axis + rank : axis
    precondition(normalized >= 0 && normalized < rank, "axis \(axis) is out of range for shape \(shape)")
    return normalized
  }

  /// Sizes of the axes before, at and after `axis`, as loop bounds.
  func loopBounds(around axis: Int) -> (outer: Int, extent: Int, inner: Int) {
    (shape[..<axis].elementCount, shape[axis], shape[(axis + 1)...].elementCount)
  }

  /// The sum over one axis, kept as extent 1; accumulated in `Double`.
  func summedKeepingDimension(_ axis: Int) -> Tensor {
    var outputShape = shape
    outputShape[axis] = 1
    let result = Tensor(uninitializedShape: outputShape)
    let (outer, extent, inner) = loopBounds(around: axis)
    let x = storage.base, out = result.storage.base
    if outer == 1 && inner > 1 {
      // Column sums of a matrix (a bias's gradient): the columns split between two threads
      // (``ParallelWork``; traced too), each summed over the rows in order.
      ParallelWork.split(inner, elementsPerItem: extent, computes: result.hasElements) { columns in
        VectorMath.columnSums(
          x + columns.lowerBound, rows: extent, stride: inner, count: columns.count, into: out + columns.lowerBound)
      }
      return result
    }
    guard result.hasElements else { return result }
    if inner == 1 {
      // A contiguous run: accumulated in Double.
      for o in 0..<outer {
        var total: Double = 0
        let row = x + o * extent
        for j in 0..<extent { total += Double(row[j]) }
        out[o] = Float(total)
      }
    } else {
      // Each outer slice's column sums, vectorized; no temporary buffer, so the memory of a
      // reduction is exactly its result.
      for o in 0..<outer {
        VectorMath.columnSums(x + o * extent * inner, rows: extent, stride: inner, count: inner, into: out + o * inner)
      }
    }
    return result
  }

  /// The sum over `axes` (all axes when empty is not meant: pass them explicitly).
  func summed(alongAxes axes: [Int], keepingDimensions: Bool, recording: Bool) -> Tensor {
    let normalized = Set(axes.map(normalizedAxis)).sorted()
    var result = self
    for axis in normalized { result = result.summedKeepingDimension(axis) }
    if result === self { result = copy() }
    let keptShape = result.shape
    let outputShape =
      keepingDimensions
      ? keptShape : shape.enumerated().filter { !normalized.contains($0.offset) }.map(\.element)
    result = result.reshaped(to: outputShape, recording: false)
    guard recording else { return result }
    let inputShape = shape
    return Tensor.record(result, inputs: [self]) { g in
      // Broadcast the gradient back over the summed axes.
      [
        Tensor.broadcasting(
          Tensor(repeating: 0, shape: inputShape), g.reshaped(to: keptShape, recording: false), Addition.self)
      ]
    }
  }

  /// The sum of all elements, a scalar.
  public func sum() -> Tensor {
    summed(alongAxes: Array(0..<rank), keepingDimensions: false, recording: true)
  }

  /// The sum over `axes`; with `keepingDimensions` the summed axes stay with extent 1.
  public func sum(alongAxes axes: [Int], keepingDimensions: Bool = false) -> Tensor {
    summed(alongAxes: axes, keepingDimensions: keepingDimensions, recording: true)
  }

  /// The mean of all elements, a scalar.
  public func mean() -> Tensor {
    sum() / Float(Swift.max(count, 1))
  }

  /// The mean over `axes`; with `keepingDimensions` the averaged axes stay with extent 1.
  public func mean(alongAxes axes: [Int], keepingDimensions: Bool = false) -> Tensor {
    let extent = Set(axes.map(normalizedAxis)).map { shape[$0] }.reduce(1, *)
    return sum(alongAxes: axes, keepingDimensions: keepingDimensions) / Float(extent)
  }
}

extension Tensor {
  /// `Σ (predicted − expected)²` over all elements, a scalar, in one pass (accumulated in
  /// `Double`); backward writes `2 (predicted − expected) · g` in one pass too, without the
  /// difference and square tensors a composition would keep.
  /// - Precondition: both have the same number of elements (`expected` is read in
  ///   `predicted`'s order).
  public static func squaredErrorSum(_ predicted: Tensor, _ expected: Tensor) -> Tensor {
    precondition(
      predicted.count == expected.count, "squared error of \(predicted.shape) against \(expected.shape)")
    let result = Tensor(uninitializedShape: [])
    if result.hasElements {
      // Blocks of 1024 summed in 16 Float lanes, blocks added in Double: vectorized and
      // as accurate as a pairwise sum.
      let p = predicted.storage.base, e = expected.storage.base
      let count = predicted.count
      var total: Double = 0
      var start = 0
      while start < count {
        let end = Swift.min(start + 1024, count)
        var lanes = SIMD16<Float>()
        var i = start
        while i + 16 <= end {
          let d =
            UnsafeRawPointer(p + i).loadUnaligned(as: SIMD16<Float>.self)
            - UnsafeRawPointer(e + i).loadUnaligned(as: SIMD16<Float>.self)
          lanes += d * d
          i += 16
        }
        var block = Double(lanes.sum())
        while i < end {
          let d = p[i] - e[i]
          block += Double(d * d)
          i += 1
        }
        total += block
        start = end
      }
      result.storage.base[0] = Float(total)
    }
    let p = predicted.detached(), e = expected.detached()
    return record(result, inputs: [predicted, expected]) { g in
      func gradient(sign: Float) -> Tensor {
        let out = Tensor(uninitializedShape: p.shape)
        guard out.hasElements else { return out }
        let scale = 2 * sign * g.storage.base[0]
        let x = p.storage.base, y = e.storage.base, o = out.storage.base
        for i in 0..<p.count { o[i] = scale * (x[i] - y[i]) }
        return out
      }
      return [
        predicted.isDifferentiable ? gradient(sign: 1) : nil,
        expected.isDifferentiable ? gradient(sign: -1).reshaped(to: e.shape, recording: false) : nil,
      ]
    }
  }
}
