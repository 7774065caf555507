import CBLAS

#if canImport(Glibc)
  import Glibc
#endif

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

  /// `input · weightᵀ + bias`, as PyTorch's `F.linear`, in one product: the output starts
  /// as copies of the bias and `sgemm` adds the product to it, so there is no separate
  /// product tensor and no pass to add the bias. `input` `[N, in]`, `weight` `[out, in]`,
  /// `bias` `[out]`.
  public static func linear(_ input: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
    precondition(
      input.rank == 2 && weight.rank == 2 && input.shape[1] == weight.shape[1],
      "linear needs [N, in] and [out, in], got \(input.shape) and \(weight.shape)")
    let (n, outputs, inputs) = (input.shape[0], weight.shape[0], weight.shape[1])
    precondition(bias.map { $0.shape == [outputs] } ?? true, "linear bias must be [\(outputs)]")
    let result = Tensor(uninitializedShape: [n, outputs])
    let computes = result.hasElements && input.hasElements && weight.hasElements
    // Every row starts as the bias (written by the thread that computes that part).
    gemm(
      input.storage.base, weight.storage.base, result.storage.base, m: n, n: outputs, k: inputs, transposeA: false,
      transposeB: true, accumulate: false, computes: computes, startingRow: bias?.storage.base)
    let x = input.detached(), w = weight.detached()
    return record(result, inputs: [input, weight] + (bias.map { [$0] } ?? [])) { g in
      // dX = G·W, dW += Gᵀ·X, db += Σ rows of G.
      let gradientInput = input.isDifferentiable ? product(g, w, false, false) : nil
      let gradientWeight = weight.isDifferentiable ? gradientProduct(for: weight, g, x, true, false) : nil
      let gradientBias =
        bias?.isDifferentiable == true ? g.summedKeepingDimension(0).reshaped(to: [outputs], recording: false) : nil
      return [gradientInput, gradientWeight] + (bias != nil ? [gradientBias] : [])
    }
  }

  /// `gelu(input) · weightᵀ + bias`, the values and gradients of
  /// `linear(input.gelu(), weight:, bias:)` bit for bit, keeping only `input` for backward:
  /// the GELU is computed again in backward (for the weight's gradient, then freed) and the
  /// input's gradient is formed in place of the product's. Half the activations of that
  /// pair, for one more GELU; used where activations are recomputed anyway.
  public static func linearOfGELU(_ input: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
    let result = GradientRecording.withoutRecording { linear(input.gelu(), weight: weight, bias: bias) }
    let outputs = weight.shape[0]
    let x = input.detached(), w = weight.detached(), needsInput = input.isDifferentiable
    return record(result, inputs: [input, weight] + (bias.map { [$0] } ?? [])) { g in
      // dW += Gᵀ·gelu(X), db += Σ rows of G: the GELU is freed on return.
      func parameterGradients() -> (Tensor?, Tensor?) {
        let activated = x.mapped(geluValues)
        return (
          weight.isDifferentiable ? gradientProduct(for: weight, g, activated, true, false) : nil,
          bias?.isDifferentiable == true ? g.summedKeepingDimension(0).reshaped(to: [outputs], recording: false) : nil
        )
      }
      let (gradientWeight, gradientBias) = parameterGradients()
      // dX = (G·W) ⊙ gelu′(X), in place.
      var gradientInput: Tensor?
      if needsInput {
        let product = product(g, w, false, false)
        zipping(
          product.storage.base, x.storage.base, into: product.storage.base, count: product.count,
          computes: product.hasElements, geluGradient)
        gradientInput = product
      }
      return [gradientInput, gradientWeight] + (bias != nil ? [gradientBias] : [])
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
      traceProduct(
        m: transposeLeft ? left.shape[1] : left.shape[0], n: transposeRight ? right.shape[0] : right.shape[1],
        k: transposeLeft ? left.shape[0] : left.shape[1], transposeA: transposeLeft, transposeB: transposeRight)
      return nil
    }
    if let (gradient, accumulate) = input.gradientForWriting() {
      multiply(left, right, transposeLeft, transposeRight, into: gradient, accumulating: accumulate)
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

  /// `c = op(a)·op(b)` (or `c += …` when `accumulating`) through ``gemm(_:_:_:m:n:k:transposeA:transposeB:accumulate:computes:)``.
  package static func multiply(
    _ a: Tensor, _ b: Tensor, _ transposeA: Bool, _ transposeB: Bool, into c: Tensor,
    accumulating: Bool
  ) {
    let m = c.shape[0], n = c.shape[1]
    let k = transposeA ? a.shape[0] : a.shape[1]
    gemm(
      a.storage.base, b.storage.base, c.storage.base, m: m, n: n, k: k, transposeA: transposeA,
      transposeB: transposeB, accumulate: accumulating, computes: c.hasElements && a.hasElements && b.hasElements)
  }

  /// Records under shape tracing the product that ``gemm(_:_:_:m:n:k:transposeA:transposeB:accumulate:computes:oneThreadHeld:lda:ldb:ldc:)``
  /// would run: whole, or as the two halves it would cut it into (``BLASCall/Halves``).
  static func traceProduct(m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool, oneThreadHeld: Bool = false) {
    guard m > 0 && n > 0 && k > 0, let trace = ShapeTracing.current else { return }
    if !oneThreadHeld, let halves = BLASCall.Halves(m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB) {
      halves.trace()
    } else {
      trace.recordMatrixProduct(
        m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB, oneThread: oneThreadHeld)
    }
  }

  /// `C[m, n] (+)= op(A) · op(B)` on row-major matrices through ``BLASCall``: contiguous
  /// unless leading dimensions (`lda`, `ldb`, `ldc`: elements from one stored row to the
  /// next, `nil` for contiguous) say otherwise, as for one head's slice of packed
  /// projections. Under shape tracing only the product is recorded (for what BLAS allocates
  /// inside it, which does not depend on the leading dimensions). `oneThreadHeld`: the
  /// caller runs inside ``BLASCall/onOneThread(_:)`` (OpenBLAS on one thread, the lock
  /// held), and so does the product whatever its extents (traced as such). `startingRow`
  /// (`n` values, without `accumulate`): every row of `C` starts as it, `C = row + A·B`
  /// (a bias), written by the thread that computes that part of `C`.
  static func gemm(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>, m: Int, n: Int, k: Int,
    transposeA: Bool, transposeB: Bool, accumulate: Bool, computes: Bool, oneThreadHeld: Bool = false,
    lda: Int? = nil, ldb: Int? = nil, ldc: Int? = nil, startingRow: UnsafePointer<Float>? = nil
  ) {
    if m == 0 || n == 0 { return }
    guard computes else {
      traceProduct(m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB, oneThreadHeld: oneThreadHeld)
      return
    }
    let halves =
      oneThreadHeld || k == 0 ? nil : BLASCall.Halves(m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB)
    let strides = BLASCall.Strides(
      a: lda ?? (transposeA ? m : k), b: ldb ?? (transposeB ? k : n), c: ldc ?? n)
    let start: BLASCall.Start = accumulate ? .adding : startingRow.map { .row($0) } ?? .zero
    if let halves {
      halves.run(a, b, c, strides: strides, start: start)
      return
    }
    BLASCall.multiply(
      a, b, c, m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB, strides: strides,
      start: start, oneThread: oneThreadHeld)
  }
}

/// The one place GradAccum calls BLAS: `C[m, n] += α · op(A) · op(B)` on contiguous row-major
/// matrices (m, n, k ≥ 1), with the kernel and the thread count chosen from the extents.
///
/// A product with a single row or column is a matrix-vector product (`cblas_sgemv`) and one
/// with `k = 1` a rank-1 update (`cblas_sger`): neither packs the matrix as `sgemm` does,
/// which at micro-batch 1 is most of the work. (Hand-written SIMD kernels for 2 to 8 rows
/// were measured slower than single-threaded `sgemm`.)
///
/// What OpenBLAS allocates inside a call depends on the CPU's kernels (a job table for its
/// threads, buffers in the AVX-512 small-matrix kernels, …), so the planner does not model
/// it by rule: ``probe(m:n:k:transposeA:transposeB:measuring:)`` makes the same call on
/// scratch operands and lets the caller measure it.
public enum BLASCall {
  /// OpenBLAS's thread count is process-wide. Calls that lower it to one hold this lock
  /// exclusively (as do probes); calls that use the threads share it. So every product,
  /// real or probed, runs with the thread count its extents give it, whatever other
  /// threads do, and allocates what the probe of its extents measured.
  static let threadCountLock = ReadWriteLock()

  /// Leading dimensions of the three operands of a product.
  package struct Strides {
    var a: Int, b: Int, c: Int

    /// Contiguous operands of `op(A)[m, k] · op(B)[k, n]`.
    static func contiguous(m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool) -> Strides {
      Strides(a: transposeA ? m : k, b: transposeB ? k : n, c: n)
    }
  }

  /// `C += α · op(A) · op(B)` whole: on one OpenBLAS thread when its extents say so
  /// (``BLASThreading``), else on OpenBLAS's threads.
  package static func run(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>, m: Int, n: Int, k: Int,
    transposeA: Bool, transposeB: Bool, alpha: Float, strides: Strides? = nil
  ) {
    precondition(max(m, n, k) <= Int(Int32.max), "BLAS takes 32-bit extents, got \(m)×\(k)·\(k)×\(n)")
    // Small products run on one thread: OpenBLAS's threads cost more than they save there.
    if BLASThreading.defaultThreads > 1 && !BLASThreading.usesThreads(m: m, n: n, k: k) {
      threadCountLock.exclusively {
        runSingleThreaded(
          a, b, c, m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB, alpha: alpha, strides: strides)
      }
    } else {
      threadCountLock.shared {
        call(a, b, c, m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB, alpha: alpha, strides: strides)
      }
    }
  }

  /// A product large enough for two cores (``cuts(m:n:k:)``), cut into two halves (rows of
  /// `C` when it has at least as many rows as columns, else columns), each run on one
  /// OpenBLAS thread: the lower on the calling thread, the upper on ``ParallelWork``'s helper
  /// (both on the calling thread when the helper is busy). Only two threads then work, with
  /// no OpenBLAS thread spinning beside the helper for the same core, and the halves allocate
  /// nothing (probed: the helper's allocations would not be the measured thread's), so
  /// neither does the product (OpenBLAS's job table is not made).
  struct Halves {
    let m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool
    /// Whether the rows of `C` are cut, else its columns.
    let cutsRows: Bool
    /// Where the rows or columns may be cut instead of in halves, following the cores'
    /// speeds (``CoreBalance``): `nil` when the cut is fixed.
    let movableCuts: CoreBalance.Cuts?

    /// `nil` when the product runs whole: on one thread by rule, without a helper thread, or
    /// when a half would allocate inside BLAS (or that is unknown). Asked outside any
    /// one-thread region, since a probe takes the BLAS lock. The cut moves only where no
    /// part it can make allocates either.
    init?(m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool) {
      guard ParallelWork.helper != nil, Self.cuts(m: m, n: n, k: k), let allocates = productAllocates else {
        return nil
      }
      let cutsRows = Self.cutsRows(m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB)
      let (length, breadth) = cutsRows ? (m, n) : (n, m)
      (self.m, self.n, self.k) = (m, n, k)
      (self.transposeA, self.transposeB, self.cutsRows) = (transposeA, transposeB, cutsRows)
      func partsAllocate(callerPart: Int) -> Bool {
        let (lower, upper) = Self.parts(m: m, n: n, cutsRows: cutsRows, callerPart: callerPart)
        return allocates(lower.m, lower.n, k, transposeA, transposeB)
          || allocates(upper.m, upper.n, k, transposeA, transposeB)
      }
      if partsAllocate(callerPart: length / 2) { return nil }
      // The parts of the first and the last cut, probed: those between are of sizes between
      // theirs, all above the sizes where OpenBLAS changes its path.
      movableCuts = CoreBalance.cuts(along: length, across: breadth, k: k, byRows: cutsRows).flatMap { cuts in
        partsAllocate(callerPart: cuts.part(of: length, share: 0))
          || partsAllocate(callerPart: cuts.part(of: length, share: 1)) ? nil : cuts
      }
    }

    /// Whether the rows of `C` are cut, else its columns: the longer side, but the rows of a
    /// weight's gradient `Gᵀ·X` (of 32 rows or more) summed over fewer than 256 rows (a
    /// small micro-batch), or with fewer than twice as many columns as rows, whichever is
    /// longer. Measured on one product per thread (`Cooperlake`, `SkylakeX`, `Haswell`,
    /// `Sandybridge` kernels): cutting the columns of a `512 × 784` `Gᵀ·X` over 16 rows
    /// took 240 µs against 67 µs for its rows with the AVX-512 kernels (88 µs whole on one
    /// thread), over 1 row 50 against 24 µs, and from 1.0 to 1.4× the rows' time over 4 to
    /// 192 rows with every family. Both halves at once on two threads, as a step runs them
    /// (`scripts/product_cuts.c`), its rows are also faster over 256 and 1,024 rows, by 1–10%
    /// with every family (`Zen` too), while with four times as many columns as rows
    /// (`128 × 512`, `64 × 288`) the columns are as fast or up to 20% faster.
    static func cutsRows(m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool) -> Bool {
      m >= n || (transposeA && !transposeB && m >= 32 && (k < 256 || 2 * m > n))
    }

    /// Products of at least this many multiply-adds are cut (when their longer side has 32
    /// or more): also the smaller ones that OpenBLAS runs on one thread, such as a
    /// micro-batch of 4 through a 784 × 512 layer or one sample's matrix-vector products,
    /// which read half the weights each on two cores.
    static let multiplyAddsToCut = 1 << 18

    /// Whether a product is cut: one that OpenBLAS would thread, or one of at least
    /// ``multiplyAddsToCut`` multiply-adds whose halves are 16 rows or columns wide or more.
    static func cuts(m: Int, n: Int, k: Int) -> Bool {
      BLASThreading.usesThreads(m: m, n: n, k: k) || (m &* n &* k >= multiplyAddsToCut && Swift.max(m, n) >= 32)
    }

    /// Under shape tracing: the hand-over (its bytes) and the two one-thread products.
    func trace() {
      ParallelWork.split(2, elementsPerItem: ParallelWork.minimumElements, computes: false) { _ in }
      let (lower, upper) = Self.parts(m: m, n: n, cutsRows: cutsRows, callerPart: length / 2)
      for half in 0..<2 {
        let (m, n) = half == 0 ? lower : upper
        ShapeTracing.current?.recordMatrixProduct(
          m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB, oneThread: true)
      }
    }

    /// `C (+)= A·B` as `start` says, the halves on two threads, each starting its own part
    /// of `C`; where the cut may move, the calling thread's rows or columns as
    /// ``CoreBalance`` says, each part timed to move it for the next product.
    func run(
      _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>, strides: Strides,
      start: Start
    ) {
      threadCountLock.exclusively {
        let callerPart = movableCuts.map { $0.part(of: length) }
        let seconds = run(a, b, c, strides: strides, start: start, callerPart: callerPart)
        if let callerPart {
          CoreBalance.record(callerPart: callerPart, helperPart: length - callerPart, seconds: seconds)
        }
      }
    }

    /// The rows of `C` when they are cut, else its columns.
    var length: Int { cutsRows ? m : n }

    /// The extents `(m, n)` of the two parts of `C[m, n]` when the calling thread takes
    /// `callerPart` of its rows (or columns).
    static func parts(
      m: Int, n: Int, cutsRows: Bool, callerPart: Int
    ) -> (lower: (m: Int, n: Int), upper: (m: Int, n: Int)) {
      if cutsRows { return ((m: callerPart, n: n), (m: m - callerPart, n: n)) }
      return ((m: m, n: callerPart), (m: m, n: n - callerPart))
    }

    /// The product cut after `callerPart` rows or columns (one of ``movableCuts``), or in
    /// the fixed halves when `nil`; returns the seconds each part took when the cut may move
    /// (zeros otherwise). The caller holds ``threadCountLock`` exclusively.
    @discardableResult
    func run(
      _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>, strides: Strides,
      start: Start, callerPart: Int?
    ) -> (caller: Double, helper: Double) {
      let (lower, upper) = Self.parts(m: m, n: n, cutsRows: cutsRows, callerPart: callerPart ?? length / 2)
      let timed = movableCuts != nil
      // Each part's seconds, written by the thread that ran it; read after both are done.
      var seconds = (caller: 0.0, helper: 0.0)
      openblas_set_num_threads(1)
      ParallelWork.split(2, elementsPerItem: ParallelWork.minimumElements) { range in
        for index in range {
          let (m, n) = index == 0 ? lower : upper
          // Where the half starts: 0, or the lower half's rows or columns.
          let first = index == 0 ? 0 : cutsRows ? lower.m : lower.n
          // Rows of C start rows of op(A); columns of C start columns of op(B).
          let a = a + (cutsRows ? (transposeA ? first : first * strides.a) : 0)
          let b = b + (cutsRows ? 0 : (transposeB ? first * strides.b : first))
          let c = c + (cutsRows ? first * strides.c : first)
          let started = timed ? CoreBalance.now() : 0
          multiply(
            a, b, c, m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB, strides: strides,
            start: cutsRows ? start : start.columns(from: first), oneThread: true)
          if timed {
            let took = CoreBalance.now() - started
            if index == 0 { seconds.caller = took } else { seconds.helper = took }
          }
        }
      }
      openblas_set_num_threads(Int32(BLASThreading.defaultThreads))
      return seconds
    }
  }

  /// What `C` holds before a product adds `op(A) · op(B)` to it.
  package enum Start {
    /// Its contents (`C += A·B`).
    case adding
    /// Zeros (`C = A·B`).
    case zero
    /// Every row the same `n` values (`C = row + A·B`, a bias).
    case row(UnsafePointer<Float>)

    /// The same start for the columns of `C` from `column` on.
    func columns(from column: Int) -> Start {
      if case .row(let values) = self { return .row(values + column) }
      return self
    }
  }

  /// `C (+)= op(A) · op(B)` from `start`, as one product: on one OpenBLAS thread when
  /// `oneThread` (the caller holds the one-thread region), else with the thread count its
  /// extents give it (``run(_:_:_:m:n:k:transposeA:transposeB:alpha:strides:)``).
  static func multiply(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>, m: Int, n: Int, k: Int,
    transposeA: Bool, transposeB: Bool, strides: Strides, start: Start, oneThread: Bool
  ) {
    if k == 1, case .zero = start {
      writeOuterProduct(a, b, c, m: m, n: n, transposeA: transposeA, transposeB: transposeB, strides: strides)
      return
    }
    // On one thread a product into zeros is `sgemm` with β = 0, which writes C without
    // reading it (OpenBLAS's small-matrix kernels then skip a pass over C; the others zero
    // it first, as below). Otherwise C is set here and every kernel adds to it (β = 1):
    // with its own threads OpenBLAS's β = 0 is a slower extra pass.
    var beta: Float = 1
    switch start {
    case .adding: break
    case .zero where oneThread && m > 1 && n > 1 && k > 1: beta = 0
    case .zero:
      if strides.c == n {
        c.update(repeating: 0, count: m * n)
      } else {
        for row in 0..<m { (c + row * strides.c).update(repeating: 0, count: n) }
      }
    case .row(let values):
      for row in 0..<m { (c + row * strides.c).update(from: values, count: n) }
    }
    if k == 0 { return }
    if oneThread {
      call(
        a, b, c, m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB, alpha: 1, strides: strides,
        beta: beta)
    } else {
      run(a, b, c, m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB, alpha: 1, strides: strides)
    }
  }

  /// `C = op(A) · op(B)` for `k = 1` (a weight's gradient at micro-batch 1), written in one
  /// pass over `C` rather than zeroing it and adding a rank-1 update: the same products, so
  /// the same values as `sger`, which allocates nothing either.
  static func writeOuterProduct(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>, m: Int, n: Int,
    transposeA: Bool, transposeB: Bool, strides: Strides
  ) {
    for i in 0..<m {
      let left = a[transposeA ? i : i * strides.a], row = c + i * strides.c
      if transposeB {
        for j in 0..<n { row[j] = left * b[j * strides.b] }
      } else {
        for j in 0..<n { row[j] = left * b[j] }
      }
    }
  }

  /// Runs `body` with OpenBLAS on one thread and ``threadCountLock`` held: for a run of
  /// products that each use one thread by rule (``BLASThreading/usesThreads(m:n:k:)``), so
  /// that the thread count is switched twice rather than around every product (switching
  /// puts OpenBLAS's threads to sleep, and the next threaded product must wake them).
  static func onOneThread(_ body: () -> Void) {
    guard BLASThreading.defaultThreads > 1 else { return body() }
    threadCountLock.exclusively {
      openblas_set_num_threads(1)
      body()
      openblas_set_num_threads(Int32(BLASThreading.defaultThreads))
    }
  }

  /// ``call(_:_:_:m:n:k:transposeA:transposeB:alpha:)`` with OpenBLAS on one thread; the
  /// caller holds ``threadCountLock``.
  static func runSingleThreaded(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>, m: Int, n: Int, k: Int,
    transposeA: Bool, transposeB: Bool, alpha: Float, strides: Strides? = nil
  ) {
    openblas_set_num_threads(1)
    call(a, b, c, m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB, alpha: alpha, strides: strides)
    openblas_set_num_threads(Int32(BLASThreading.defaultThreads))
  }

  /// The BLAS call itself, with OpenBLAS's thread count as it stands; operands contiguous
  /// unless `strides` gives their leading dimensions. `beta` 0 (for `sgemm` only, all
  /// extents above 1) overwrites `C`; otherwise the product is added to it.
  static func call(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>, m: Int, n: Int, k: Int,
    transposeA: Bool, transposeB: Bool, alpha: Float, strides: Strides? = nil, beta: Float = 1
  ) {
    let one: Float = 1
    let ld = strides ?? .contiguous(m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB)
    if m == 1 {
      // cᵀ = op(B)ᵀ · aᵀ; op(A) is one row of k values (a stored column when transposed).
      cblas_sgemv(
        CblasRowMajor, transposeB ? CblasNoTrans : CblasTrans, Int32(transposeB ? n : k), Int32(transposeB ? k : n),
        alpha, b, Int32(ld.b), a, Int32(transposeA ? ld.a : 1), one, c, 1)
    } else if n == 1 {
      // op(B) is one column of k values (a stored row when transposed); c one column.
      cblas_sgemv(
        CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, Int32(transposeA ? k : m), Int32(transposeA ? m : k),
        alpha, a, Int32(ld.a), b, Int32(transposeB ? 1 : ld.b), one, c, Int32(ld.c))
    } else if k == 1 {
      cblas_sger(
        CblasRowMajor, Int32(m), Int32(n), alpha, a, Int32(transposeA ? 1 : ld.a), b, Int32(transposeB ? ld.b : 1), c,
        Int32(ld.c))
    } else {
      cblas_sgemm(
        CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans, Int32(m),
        Int32(n), Int32(k), alpha, a, Int32(ld.a), b, Int32(ld.b), beta, c, Int32(ld.c))
    }
  }

  /// Whether a product `op(A)[m, k] · op(B)[k, n]` (extents, transposes) allocates inside
  /// BLAS when it runs on one OpenBLAS thread, as probed; set by the planner (`nil`:
  /// unknown, taken as yes). Products run on a helper thread only when they allocate
  /// nothing: its allocations are not the measured thread's.
  nonisolated(unsafe) public static var productAllocates: ((Int, Int, Int, Bool, Bool) -> Bool)?

  /// Products of at most this many multiply-adds are probed with their arithmetic (about a
  /// millisecond, and at most 16 MiB of output written); larger ones with α = 0, which
  /// OpenBLAS's interfaces and level-3 drivers (read in 0.3.21 and 0.3.28) take after
  /// choosing their path, and which returns before touching the operands. OpenBLAS's
  /// threaded job table, the allocation that matters for large products, is made before
  /// that return. A test checks that both probes agree wherever both can run.
  public static let arithmeticProbeLimit = 1 << 22

  /// Makes the call GradAccum makes for `C[m, n] += op(A) · op(B)` on scratch operands
  /// (anonymous memory that is never GradAccum's allocation), twice, and returns what
  /// `measuring` returns for the second call (the first absorbs one-time initialization).
  /// - Parameters:
  ///   - arithmetic: whether the probe computes (α = 1) or only takes the path (α = 0); by
  ///     default, products up to ``arithmeticProbeLimit`` multiply-adds compute.
  ///   - oneThread: run on one OpenBLAS thread whatever the extents (as inside
  ///     ``onOneThread(_:)``), else on the threads the extents give it.
  ///   - measuring: runs the call it is given and measures it (for example the bytes the
  ///     thread allocates inside it).
  /// - Returns: `nil` when the operands' address space cannot be had, or an extent is
  ///   beyond BLAS's 32-bit integers.
  public static func probe<Measure>(
    m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool, arithmetic: Bool? = nil, oneThread: Bool = false,
    measuring: (() -> Void) -> Measure
  ) -> Measure? {
    precondition(m >= 1 && n >= 1 && k >= 1, "a probed product has positive extents, got \(m)×\(k)·\(k)×\(n)")
    let (mk, o1) = m.multipliedReportingOverflow(by: k)
    let (kn, o2) = k.multipliedReportingOverflow(by: n)
    let (mn, o3) = m.multipliedReportingOverflow(by: n)
    let (mnk, o4) = mn.multipliedReportingOverflow(by: k)
    // BLAS takes 32-bit extents: a larger product cannot run at all.
    guard !(o1 || o2 || o3 || o4), max(m, n, k) <= Int(Int32.max) else { return nil }
    let computes = arithmetic ?? (mnk <= arithmeticProbeLimit)
    guard let a = ScratchMatrix(count: mk), let b = ScratchMatrix(count: kn), let c = ScratchMatrix(count: mn) else {
      return nil
    }
    let alpha: Float = computes ? 1 : 0
    let singleThreaded =
      BLASThreading.defaultThreads > 1 && (oneThread || !BLASThreading.usesThreads(m: m, n: n, k: k))
    func product() {
      if singleThreaded {
        runSingleThreaded(
          a.base, b.base, c.base, m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB, alpha: alpha)
      } else {
        call(a.base, b.base, c.base, m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB, alpha: alpha)
      }
    }
    var measure: Measure?
    threadCountLock.exclusively {
      _ = measuring(product)
      measure = measuring(product)
    }
    return measure
  }
}

/// A reader-writer lock (`pthread_rwlock_t`).
final class ReadWriteLock: @unchecked Sendable {
  private let lock = UnsafeMutablePointer<pthread_rwlock_t>.allocate(capacity: 1)

  init() { pthread_rwlock_init(lock, nil) }

  deinit {
    pthread_rwlock_destroy(lock)
    lock.deallocate()
  }

  /// Runs `body` while no other thread holds the lock.
  func exclusively(_ body: () -> Void) {
    // glibc reports a thread taking it twice (EDEADLK) instead of hanging: stop there.
    let status = pthread_rwlock_wrlock(lock)
    precondition(status == 0, "the BLAS thread-count lock was taken twice by one thread (error \(status))")
    defer { pthread_rwlock_unlock(lock) }
    body()
  }

  /// Runs `body` while no other thread holds the lock exclusively.
  func shared(_ body: () -> Void) {
    let status = pthread_rwlock_rdlock(lock)
    precondition(status == 0, "the BLAS thread-count lock was taken twice by one thread (error \(status))")
    defer { pthread_rwlock_unlock(lock) }
    body()
  }
}

/// Zero-filled floats in an anonymous private mapping (not a `malloc` block, so allocator
/// statistics do not see it; pages that are only read cost no memory). Unmapped on release.
final class ScratchMatrix {
  let base: UnsafeMutablePointer<Float>
  let byteCount: Int

  init?(count: Int) {
    let (bytes, overflow) = Swift.max(count, 1).multipliedReportingOverflow(by: MemoryLayout<Float>.stride)
    guard !overflow else { return nil }
    let address = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
    guard let address, address != MAP_FAILED else { return nil }
    base = address.bindMemory(to: Float.self, capacity: Swift.max(count, 1))
    byteCount = bytes
  }

  deinit { munmap(base, byteCount) }
}
/// When GradAccum lets OpenBLAS use its threads for a product.
///
/// Measured on 2 cores with products of the sizes of an MLP's layers: with fewer than 16
/// rows, columns or inner indices, OpenBLAS's threaded `sgemm` is slower than one thread
/// (about 1.5–2× at 4 rows), and from 16 on two threads win. OpenBLAS itself keeps products
/// of at most `65536 × 4` multiply-adds on one thread; GradAccum keeps those of at most
/// 2²¹, such as one attention head's `128 × 128 × 32` scores: the thread switch and the
/// wake-up of OpenBLAS's sleeping threads cost more than the second core saves there.
public enum BLASThreading {
  /// Products with more multiply-adds than this may use threads.
  public static let multiplyAddThreshold = 1 << 21
  /// The smallest extent (rows, columns or inner) of a product that uses threads.
  public static let minimumExtent = 16
  /// OpenBLAS's thread count when the process started (`OPENBLAS_NUM_THREADS` or the cores).
  public static let defaultThreads = Int(openblas_get_num_threads())

  /// Whether `[m, k] · [k, n]` runs on OpenBLAS's threads (and allocates their job table).
  public static func usesThreads(m: Int, n: Int, k: Int) -> Bool {
    defaultThreads > 1 && Swift.min(m, n, k) >= minimumExtent && m * n * k > multiplyAddThreshold
  }
}

/// Which OpenBLAS kernels this process runs, and which ones suit the CPU.
///
/// OpenBLAS picks its kernels once, when it is loaded, from the CPU's model number. A CPU
/// newer than the OpenBLAS build (such as a recent Xeon under Debian's OpenBLAS 0.3.21) gets
/// the generic `Prescott` (SSE3) kernels even when it has AVX-512, and runs `sgemm` at a
/// fraction of its speed. Newer OpenBLAS releases choose by the CPU's features for such
/// models; ``recommendedCoreType(coreName:flags:)`` makes the same choice, for a program
/// to set `OPENBLAS_CORETYPE` before OpenBLAS loads (the `gradaccum` command does, by
/// starting itself again). Every kernel family is planned exactly (``BLASCall`` probes the
/// kernels that run).
public enum BLASKernels {
  /// The kernel family OpenBLAS chose (`Prescott`, `Haswell`, `SkylakeX`, …).
  public static var coreName: String { String(cString: openblas_get_corename()) }

  /// The kernel family to ask for, or `nil` to keep OpenBLAS's choice: only when OpenBLAS
  /// fell back to generic kernels (`Prescott`, `Core2`, `Nehalem` and older names) on a
  /// CPU whose `flags` (as `/proc/cpuinfo` lists them) have AVX-512 (`Cooperlake` with
  /// bfloat16, else `SkylakeX`) or AVX2 with FMA (`Haswell`).
  public static func recommendedCoreType(coreName: String, flags: Set<String>) -> String? {
    let generic: Set<String> = ["prescott", "core2", "nehalem", "penryn", "dunnington", "atom", "banias", "katmai"]
    guard generic.contains(coreName.lowercased()) else { return nil }
    if flags.isSuperset(of: ["avx512f", "avx512vl", "avx512bw", "avx512dq", "avx512cd"]) {
      return flags.contains("avx512_bf16") ? "Cooperlake" : "SkylakeX"
    }
    if flags.isSuperset(of: ["avx2", "fma"]) { return "Haswell" }
    return nil
  }

  /// The CPU's feature flags from `/proc/cpuinfo` (empty where it cannot be read).
  public static func cpuFlags() -> Set<String> {
    guard let file = fopen("/proc/cpuinfo", "r") else { return [] }
    defer { fclose(file) }
    var line: UnsafeMutablePointer<CChar>?
    var capacity = 0
    defer { free(line) }
    while getline(&line, &capacity, file) > 0, let line {
      let text = String(cString: line)
      if text.hasPrefix("flags") {
        let list = text.split(separator: ":", maxSplits: 1).last ?? ""
        return Set(list.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }).map(String.init))
      }
    }
    return []
  }
}
