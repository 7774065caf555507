/// A binary elementwise operation, specialized into each broadcasting loop.
protocol ElementwiseOperation {
  static func apply(_ a: Float, _ b: Float) -> Float
}

enum Addition: ElementwiseOperation {
  @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a + b }
}
enum Subtraction: ElementwiseOperation {
  @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a - b }
}
enum Multiplication: ElementwiseOperation {
  @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a * b }
}
enum Division: ElementwiseOperation {
  @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a / b }
}

extension Tensor {
  /// The shape two shapes broadcast to under NumPy/PyTorch rules, or `nil` when they do not.
  public static func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int]? {
    let rank = Swift.max(a.count, b.count)
    var result = [Int](repeating: 1, count: rank)
    for axis in 0..<rank {
      let x = axis < rank - a.count ? 1 : a[axis - (rank - a.count)]
      let y = axis < rank - b.count ? 1 : b[axis - (rank - b.count)]
      guard x == y || x == 1 || y == 1 else { return nil }
      result[axis] = x == 1 ? y : x
    }
    return result
  }

  /// Writes the element strides of a tensor of `shape` laid out inside `outputShape` (0 on
  /// broadcast axes) to `strides`, `outputShape.count` of them.
  static func broadcastStrides(_ shape: [Int], in outputShape: [Int], into strides: UnsafeMutablePointer<Int>) {
    strides.initialize(repeating: 0, count: outputShape.count)
    var step = 1
    let offset = outputShape.count - shape.count
    for axis in stride(from: shape.count - 1, through: 0, by: -1) {
      strides[axis + offset] = shape[axis] == 1 ? 0 : step
      step *= shape[axis]
    }
  }

  /// `Operation` applied to `a` and `b` broadcast together; no graph.
  static func broadcasting<Operation: ElementwiseOperation>(
    _ a: Tensor, _ b: Tensor, _: Operation.Type
  ) -> Tensor {
    guard let shape = broadcastShape(a.shape, b.shape) else {
      preconditionFailure("shapes \(a.shape) and \(b.shape) do not broadcast")
    }
    let result = Tensor(uninitializedShape: shape)
    let x = a.storage.base, y = b.storage.base, out = result.storage.base
    let n = result.count
    if a.shape == b.shape {
      // Split between two threads when large (``ParallelWork``; traced too).
      zipping(x, y, into: out, count: n, computes: result.hasElements) { x, y, out, n in
        for i in 0..<n { out[i] = Operation.apply(x[i], y[i]) }
      }
      return result
    }
    guard result.hasElements else { return result }
    if b.count == 1 {
      let value = y[0]
      for i in 0..<n { out[i] = Operation.apply(x[i], value) }
      return result
    }
    if a.count == 1 {
      let value = x[0]
      for i in 0..<n { out[i] = Operation.apply(value, y[i]) }
      return result
    }
    guard n > 0 else { return result }
    let rank = shape.count
    // The strides and the multi-index live on the stack: a kernel allocates nothing that a
    // shape-only trace (which skips it) would not see.
    withUnsafeTemporaryAllocation(of: Int.self, capacity: 3 * rank) { scratch in
      let stridesA = scratch.baseAddress!, stridesB = stridesA + rank, index = stridesB + rank
      broadcastStrides(a.shape, in: shape, into: stridesA)
      broadcastStrides(b.shape, in: shape, into: stridesB)
      index.initialize(repeating: 0, count: rank)
      let inner = shape[rank - 1]
      let innerA = stridesA[rank - 1], innerB = stridesB[rank - 1]
      var offsetA = 0, offsetB = 0, position = 0
      while position < n {
        if innerA == 1 && innerB == 1 {
          for j in 0..<inner { out[position + j] = Operation.apply(x[offsetA + j], y[offsetB + j]) }
        } else {
          for j in 0..<inner {
            out[position + j] = Operation.apply(x[offsetA + j * innerA], y[offsetB + j * innerB])
          }
        }
        position += inner
        // Advance the multi-index over all axes but the last.
        var axis = rank - 2
        while axis >= 0 {
          index[axis] += 1
          offsetA += stridesA[axis]
          offsetB += stridesB[axis]
          if index[axis] < shape[axis] { break }
          offsetA -= stridesA[axis] * shape[axis]
          offsetB -= stridesB[axis] * shape[axis]
          index[axis] = 0
          axis -= 1
        }
      }
    }
    return result
  }

  /// Sums a broadcast gradient back down to `shape`; no graph.
  func reduced(toShape target: [Int]) -> Tensor {
    if shape == target { return self }
    let leading = rank - target.count
    var axes = Array(0..<leading)
    for axis in 0..<target.count where target[axis] == 1 && shape[axis + leading] != 1 {
      axes.append(axis + leading)
    }
    return summed(alongAxes: axes, keepingDimensions: false, recording: false)
      .reshaped(to: target, recording: false)
  }

  /// `a + b`, broadcasting.
  public static func + (a: Tensor, b: Tensor) -> Tensor {
    let result = broadcasting(a, b, Addition.self)
    // Shapes only: backward needs no values, so neither operand is kept.
    let (shapeA, shapeB) = (a.shape, b.shape)
    return record(result, inputs: [a, b]) { g in
      [g.reduced(toShape: shapeA), g.reduced(toShape: shapeB)]
    }
  }

  /// `a - b`, broadcasting.
  public static func - (a: Tensor, b: Tensor) -> Tensor {
    let result = broadcasting(a, b, Subtraction.self)
    let (shapeA, shapeB, needsB) = (a.shape, b.shape, b.isDifferentiable)
    return record(result, inputs: [a, b]) { g in
      [
        g.reduced(toShape: shapeA),
        needsB ? g.mapped { x, y, n in for i in 0..<n { y[i] = -x[i] } }.reduced(toShape: shapeB) : nil,
      ]
    }
  }

  /// `a * b` elementwise, broadcasting.
  public static func * (a: Tensor, b: Tensor) -> Tensor {
    let result = broadcasting(a, b, Multiplication.self)
    let x = a.detached(), y = b.detached()
    return record(result, inputs: [a, b]) { g in
      [
        a.isDifferentiable ? broadcasting(g, y, Multiplication.self).reduced(toShape: a.shape) : nil,
        b.isDifferentiable ? broadcasting(g, x, Multiplication.self).reduced(toShape: b.shape) : nil,
      ]
    }
  }

  /// `a / b` elementwise, broadcasting.
  public static func / (a: Tensor, b: Tensor) -> Tensor {
    let result = broadcasting(a, b, Division.self)
    let y = b.detached(), quotient = result.detached()
    return record(result, inputs: [a, b]) { g in
      let ga = broadcasting(g, y, Division.self)
      return [
        a.isDifferentiable ? ga.reduced(toShape: a.shape) : nil,
        // d(a/b)/db = -(a/b)/b, so the gradient is -(g/b)·(a/b).
        b.isDifferentiable
          ? (-broadcasting(ga, quotient, Multiplication.self).detached()).reduced(toShape: b.shape) : nil,
      ]
    }
  }

  public static func + (a: Tensor, b: Float) -> Tensor { a + Tensor(scalar: b) }
  public static func - (a: Tensor, b: Float) -> Tensor { a - Tensor(scalar: b) }
  public static func * (a: Tensor, b: Float) -> Tensor { a * Tensor(scalar: b) }
  public static func / (a: Tensor, b: Float) -> Tensor { a / Tensor(scalar: b) }
  public static func + (a: Float, b: Tensor) -> Tensor { Tensor(scalar: a) + b }
  public static func - (a: Float, b: Tensor) -> Tensor { Tensor(scalar: a) - b }
  public static func * (a: Float, b: Tensor) -> Tensor { Tensor(scalar: a) * b }
  public static func / (a: Float, b: Tensor) -> Tensor { Tensor(scalar: a) / b }
}
