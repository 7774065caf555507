import VectorKernels
#if canImport(Glibc)
  import Glibc
#endif

extension Tensor {
  /// A new tensor of the same shape whose elements `kernel` writes from this one's.
  /// `kernel` receives the input, the output and the element count and loops itself; each
  /// output element depends only on the input element at its place, so large tensors are
  /// split between two threads (``ParallelWork``).
  func mapped(
    _ kernel: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void
  ) -> Tensor {
    let result = Tensor(uninitializedShape: shape)
    let input = storage.base, output = result.storage.base
    ParallelWork.split(count, computes: result.hasElements) { range in
      kernel(input + range.lowerBound, output + range.lowerBound, range.count)
    }
    return result
  }

  /// A new tensor from two same-shaped tensors, elementwise (split between two threads
  /// as ``mapped(_:)``).
  static func zipped(
    _ a: Tensor, _ b: Tensor,
    _ kernel: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void
  ) -> Tensor {
    precondition(a.shape == b.shape, "elementwise shapes differ: \(a.shape) and \(b.shape)")
    let result = Tensor(uninitializedShape: a.shape)
    zipping(a.storage.base, b.storage.base, into: result.storage.base, count: a.count, computes: result.hasElements, kernel)
    return result
  }

  /// `kernel` over `count` elements of `a` and `b` into `out` (which may be `a`), split
  /// between two threads as ``mapped(_:)``; nothing is computed unless `computes`.
  static func zipping(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, count: Int,
    computes: Bool,
    _ kernel: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void
  ) {
    ParallelWork.split(count, computes: computes) { range in
      kernel(a + range.lowerBound, b + range.lowerBound, out + range.lowerBound, range.count)
    }
  }

  /// `-self`.
  public static prefix func - (x: Tensor) -> Tensor {
    let result = x.mapped { input, output, n in for i in 0..<n { output[i] = -input[i] } }
    return record(result, inputs: [x]) { g in
      [g.mapped { input, output, n in for i in 0..<n { output[i] = -input[i] } }]
    }
  }

  /// e raised to each element.
  public func exp() -> Tensor {
    let result = mapped { input, output, n in for i in 0..<n { output[i] = expf(input[i]) } }
    let output = result.detached()
    return Tensor.record(result, inputs: [self]) { g in
      [Tensor.zipped(g, output) { g, y, out, n in for i in 0..<n { out[i] = g[i] * y[i] } }]
    }
  }

  /// The natural logarithm of each element.
  public func log() -> Tensor {
    let result = mapped { input, output, n in for i in 0..<n { output[i] = logf(input[i]) } }
    let x = detached()
    return Tensor.record(result, inputs: [self]) { g in
      [Tensor.zipped(g, x) { g, x, out, n in for i in 0..<n { out[i] = g[i] / x[i] } }]
    }
  }

  /// The square root of each element.
  public func squareRoot() -> Tensor {
    let result = mapped { input, output, n in for i in 0..<n { output[i] = sqrtf(input[i]) } }
    let output = result.detached()
    return Tensor.record(result, inputs: [self]) { g in
      [Tensor.zipped(g, output) { g, y, out, n in for i in 0..<n { out[i] = g[i] / (2 * y[i]) } }]
    }
  }

  /// Each element raised to `exponent`.
  public func raised(to exponent: Float) -> Tensor {
    let result = mapped { input, output, n in
      if exponent == 2 {
        for i in 0..<n { output[i] = input[i] * input[i] }
      } else {
        for i in 0..<n { output[i] = powf(input[i], exponent) }
      }
    }
    let x = detached()
    return Tensor.record(result, inputs: [self]) { g in
      [
        Tensor.zipped(g, x) { g, x, out, n in
          if exponent == 2 {
            for i in 0..<n { out[i] = g[i] * 2 * x[i] }
          } else {
            for i in 0..<n { out[i] = g[i] * exponent * powf(x[i], exponent - 1) }
          }
        }
      ]
    }
  }

  /// The absolute value of each element (gradient 0 at 0, as PyTorch).
  public func absoluteValue() -> Tensor {
    let result = mapped { input, output, n in for i in 0..<n { output[i] = Swift.abs(input[i]) } }
    let x = detached()
    return Tensor.record(result, inputs: [self]) { g in
      [
        Tensor.zipped(g, x) { g, x, out, n in
          for i in 0..<n { out[i] = x[i] > 0 ? g[i] : (x[i] < 0 ? -g[i] : 0) }
        }
      ]
    }
  }

  /// `max(0, x)` for each element (gradient 0 at 0, as PyTorch).
  public func relu() -> Tensor {
    let result = mapped { input, output, n in for i in 0..<n { output[i] = Swift.max(input[i], 0) } }
    let output = result.detached()
    return Tensor.record(result, inputs: [self]) { g in
      [
        Tensor.zipped(g, output) { g, y, out, n in
          // Sixteen lanes at a time (the scalar form does not vectorize).
          var i = 0
          while i + 16 <= n {
            let gradient = UnsafeRawPointer(g + i).loadUnaligned(as: SIMD16<Float>.self)
            let output = UnsafeRawPointer(y + i).loadUnaligned(as: SIMD16<Float>.self)
            let kept = SIMD16<Float>(repeating: 0).replacing(with: gradient, where: output .> 0)
            UnsafeMutableRawPointer(out + i).storeBytes(of: kept, as: SIMD16<Float>.self)
            i += 16
          }
          while i < n {
            out[i] = y[i] > 0 ? g[i] : 0
            i += 1
          }
        }
      ]
    }
  }

  /// The hyperbolic tangent of each element.
  public func tanh() -> Tensor {
    let result = mapped { input, output, n in for i in 0..<n { output[i] = tanhf(input[i]) } }
    let output = result.detached()
    return Tensor.record(result, inputs: [self]) { g in
      [Tensor.zipped(g, output) { g, y, out, n in for i in 0..<n { out[i] = g[i] * (1 - y[i] * y[i]) } }]
    }
  }

  /// The logistic sigmoid `1 / (1 + e^-x)` of each element.
  public func sigmoid() -> Tensor {
    let result = mapped { input, output, n in
      for i in 0..<n {
        let x = input[i]
        // Stable on both sides: never exponentiates a large positive number.
        if x >= 0 {
          output[i] = 1 / (1 + expf(-x))
        } else {
          let e = expf(x)
          output[i] = e / (1 + e)
        }
      }
    }
    let output = result.detached()
    return Tensor.record(result, inputs: [self]) { g in
      [Tensor.zipped(g, output) { g, y, out, n in for i in 0..<n { out[i] = g[i] * y[i] * (1 - y[i]) } }]
    }
  }

  /// The Gaussian error linear unit `x · Φ(x)` in its exact erf form (PyTorch's default,
  /// `approximate='none'`).
  public func gelu() -> Tensor {
    let result = mapped(Tensor.geluValues)
    let x = detached()
    return Tensor.record(result, inputs: [self]) { g in [Tensor.zipped(g, x, Tensor.geluGradient)] }
  }

  /// `output[i] = gelu(input[i])`: the straight-line erf of ``VectorMath``, compiled for
  /// the CPU's widest vectors (`VectorKernels`, the same results on every CPU).
  static func geluValues(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>, _ n: Int) {
    gradaccum_gelu(input, output, n)
  }

  /// `out[i] = g[i] · gelu′(x[i])`; `out` may be `g` (each element reads only its own).
  /// Compiled for the CPU's widest vectors, as ``geluValues(_:_:_:)``.
  static func geluGradient(
    _ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ n: Int
  ) {
    gradaccum_gelu_gradient(g, x, out, n)
  }
}
