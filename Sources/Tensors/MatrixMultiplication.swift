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
      let gradientA: Tensor?
      let gradientB: Tensor?
      switch (transposingLeft, transposingRight) {
      case (false, false):  // C = A·B
        gradientA = a.isDifferentiable ? product(g, y, false, true) : nil
        gradientB = b.isDifferentiable ? product(x, g, true, false) : nil
      case (false, true):  // C = A·Bᵀ
        gradientA = a.isDifferentiable ? product(g, y, false, false) : nil
        gradientB = b.isDifferentiable ? product(g, x, true, false) : nil
      case (true, false):  // C = Aᵀ·B
        gradientA = a.isDifferentiable ? product(y, g, false, true) : nil
        gradientB = b.isDifferentiable ? product(x, g, false, false) : nil
      case (true, true):  // C = Aᵀ·Bᵀ
        gradientA = a.isDifferentiable ? product(y, g, true, true) : nil
        gradientB = b.isDifferentiable ? product(g, x, true, true) : nil
      }
      return [gradientA, gradientB]
    }
  }

  /// `op(a) · op(b)` through `cblas_sgemm`; no graph.
  static func product(_ a: Tensor, _ b: Tensor, _ transposeA: Bool, _ transposeB: Bool) -> Tensor {
    precondition(a.rank == 2 && b.rank == 2, "matmul needs rank-2 tensors, got \(a.shape) and \(b.shape)")
    let m = transposeA ? a.shape[1] : a.shape[0]
    let k = transposeA ? a.shape[0] : a.shape[1]
    let kB = transposeB ? b.shape[1] : b.shape[0]
    let n = transposeB ? b.shape[0] : b.shape[1]
    precondition(k == kB, "matmul inner extents differ: \(a.shape)\(transposeA ? "ᵀ" : "") · \(b.shape)\(transposeB ? "ᵀ" : "")")
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
