import CBLAS

extension Tensor {
  /// The matrix product `op(a) · op(b)` of two rank-2 tensors, where `op` transposes when
  /// its flag is set. Transposes are passed to `cblas_sgemm` as flags; nothing is copied.
  public static func matmul(
    _ a: Tensor, _ b: Tensor, transposingLeft: Bool = false, transposingRight: Bool = false
  ) -> Tensor {
    let result = product(a, b, transposingLeft, transposingRight)
    let x = a.detached(), y = b.detached()
    return record(result, inputs: [a, b]) { g in
      // Each gradient is op(x)·op(y) for operands and flags that depend on the case.
      let (leftA, rightA, transposeLeftA, transposeRightA): (Tensor, Tensor, Bool, Bool)
      let (leftB, rightB, transposeLeftB, transposeRightB): (Tensor, Tensor, Bool, Bool)
      switch (transposingLeft, transposingRight) {
      case (false, false):  // C = A·B: dA = G·Bᵀ, dB = Aᵀ·G
        (leftA, rightA, transposeLeftA, transposeRightA) = (g, y, false, true)
        (leftB, rightB, transposeLeftB, transposeRightB) = (x, g, true, false)
      case (false, true):  // C = A·Bᵀ: dA = G·B, dB = Gᵀ·A
        (leftA, rightA, transposeLeftA, transposeRightA) = (g, y, false, false)
        (leftB, rightB, transposeLeftB, transposeRightB) = (g, x, true, false)
      case (true, false):  // C = Aᵀ·B: dA = B·Gᵀ, dB = A·G
        (leftA, rightA, transposeLeftA, transposeRightA) = (y, g, false, true)
        (leftB, rightB, transposeLeftB, transposeRightB) = (x, g, false, false)
      case (true, true):  // C = Aᵀ·Bᵀ: dA = Bᵀ·Gᵀ, dB = Gᵀ·Aᵀ
        (leftA, rightA, transposeLeftA, transposeRightA) = (y, g, true, true)
        (leftB, rightB, transposeLeftB, transposeRightB) = (g, x, true, true)
      }
      return [
        a.isDifferentiable ? gradientProduct(for: a, leftA, rightA, transposeLeftA, transposeRightA) : nil,
        b.isDifferentiable ? gradientProduct(for: b, leftB, rightB, transposeLeftB, transposeRightB) : nil,
      ]
    }
  }

  /// The gradient `op(left)·op(right)` for `input`. For a parameter (a leaf that requires
  /// gradients) it is added straight into the parameter's gradient by `sgemm` with β = 1,
  /// which saves a temporary and a pass over it, and `nil` is returned.
  static func gradientProduct(
    for input: Tensor, _ left: Tensor, _ right: Tensor, _ transposeLeft: Bool, _ transposeRight: Bool
  ) -> Tensor? {
    guard input.requiresGradient && input.node == nil else {
      return product(left, right, transposeLeft, transposeRight)
    }
    // Under shape tracing the parameter is left alone: a training step accumulates into
    // a gradient buffer that already exists, which allocates nothing but BLAS's workspace.
    guard left.hasElements && right.hasElements else {
      ShapeTracing.current?.recordMatrixProduct(
        m: transposeLeft ? left.shape[1] : left.shape[0], n: transposeRight ? right.shape[0] : right.shape[1],
        k: transposeLeft ? left.shape[0] : left.shape[1])
      return nil
    }
    if let gradient = input.gradient {
      multiply(left, right, transposeLeft, transposeRight, into: gradient, accumulating: true)
    } else {
      let gradient = Tensor(uninitializedShape: input.shape)
      multiply(left, right, transposeLeft, transposeRight, into: gradient, accumulating: false)
      input.gradient = gradient
    }
    return nil
  }

  /// `op(a) · op(b)` through `cblas_sgemm`; no graph.
  static func product(_ a: Tensor, _ b: Tensor, _ transposeA: Bool, _ transposeB: Bool) -> Tensor {
    precondition(a.rank == 2 && b.rank == 2, "matmul needs rank-2 tensors, got \(a.shape) and \(b.shape)")
    let m = transposeA ? a.shape[1] : a.shape[0]
    let k = transposeA ? a.shape[0] : a.shape[1]
    let kB = transposeB ? b.shape[1] : b.shape[0]
    let n = transposeB ? b.shape[0] : b.shape[1]
    precondition(
      k == kB, "matmul inner extents differ: \(a.shape)\(transposeA ? "ᵀ" : "") · \(b.shape)\(transposeB ? "ᵀ" : "")")
    let result = Tensor(uninitializedShape: [m, n])
    multiply(a, b, transposeA, transposeB, into: result, accumulating: false)
    return result
  }

  /// `c = op(a)·op(b)` (or `c += …` when `accumulating`) through `cblas_sgemm`.
  static func multiply(
    _ a: Tensor, _ b: Tensor, _ transposeA: Bool, _ transposeB: Bool, into c: Tensor,
    accumulating: Bool
  ) {
    let m = c.shape[0], n = c.shape[1]
    let k = transposeA ? a.shape[0] : a.shape[1]
    if m == 0 || n == 0 { return }
    guard c.hasElements && a.hasElements && b.hasElements else {
      ShapeTracing.current?.recordMatrixProduct(m: m, n: n, k: k)
      return
    }
    if k == 0 {
      if !accumulating { c.mutableBuffer.update(repeating: 0) }
      return
    }
    cblas_sgemm(
      CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
      Int32(m), Int32(n), Int32(k), 1, a.storage.base, Int32(a.shape[1]),
      b.storage.base, Int32(b.shape[1]), accumulating ? 1 : 0, c.storage.base, Int32(n))
  }
}
