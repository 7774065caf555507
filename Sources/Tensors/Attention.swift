#if canImport(Glibc)
  import Glibc
#endif

extension Tensor {
  /// Causal multi-head self-attention on packed projections, as `nn.MultiheadAttention`
  /// with a causal mask computes it after its input projection: `qkv` `[b, s, 3d]` holds
  /// the queries, keys and values (in that order along the last axis), each split into
  /// `heads` slices of `d / heads`; every head attends from position `t` to positions
  /// `0…t`, with scores scaled by `1/√(d/heads)`. The result is the heads' outputs side by
  /// side, `[b, s, d]` (before the output projection).
  ///
  /// Each (sample, head) is three matrix products through BLAS, straight on its slices of
  /// `qkv` and of the result (leading dimensions `3d` and `d`: no copies of the heads), each
  /// cut at the middle position so that the block of weights above the diagonal, zero under
  /// the causal mask, is never multiplied (``HeadLayout/causalCut``); `qkv` is kept for
  /// backward. With `keepsWeights` the softmax probabilities
  /// `[b, heads, s, s]` are kept too; without, the forward pass holds one head's `[s, s]` at
  /// a time and backward computes each head's probabilities again, by the same product and
  /// softmax (so bit for bit the same values), for one more product per head:
  /// `b · heads · s²` floats fewer kept. Heads are shared between two threads, each with its
  /// own `[s, s]` scratch, when there is enough work; without kept weights,
  /// `oneHeadAtATime` runs backward's heads one at a time on the calling thread: two
  /// `[s, s]` fewer at its peak, for a slower pass (the choice of recomputation under the
  /// tightest budgets; the forward's scratch is freed before that peak, so the forward
  /// shares its heads either way).
  ///
  /// `dropoutMask` `[b, heads, s, s]` (0, or `1/(1−p)` for a kept weight) applies dropout to
  /// the attention weights, as `nn.MultiheadAttention(dropout: p)` does in training: the
  /// values are weighted by `P ⊙ mask`, and backward goes through the same mask.
  /// - Precondition: `qkv` is `[b, s, 3d]` with `d` a multiple of `heads`; the mask, when
  ///   given, is `[b, heads, s, s]`.
  public static func causalSelfAttention(
    _ qkv: Tensor, heads: Int, dropoutMask: Tensor? = nil, keepsWeights: Bool = true, oneHeadAtATime: Bool = false
  ) -> Tensor {
    precondition(qkv.rank == 3 && qkv.shape[2] % 3 == 0, "attention needs [b, s, 3d], got \(qkv.shape)")
    let (samples, length, width) = (qkv.shape[0], qkv.shape[1], qkv.shape[2] / 3)
    precondition(heads >= 1 && width % heads == 0, "\(width) features do not split into \(heads) heads")
    precondition(
      dropoutMask.map { $0.shape == [samples, heads, length, length] } ?? true,
      "the attention dropout mask must be \([samples, heads, length, length])")
    let layout = HeadLayout(samples: samples, length: length, width: width, heads: heads)
    let computes = qkv.hasElements
    // Heads run on one thread, or on two with one scratch `[s, s]` each (lane); without
    // kept weights and one head at a time, backward on one (the forward's scratch is gone
    // by backward's peak, so the forward shares its heads in every case).
    let lanes = layout.lanes
    let backwardLanes = keepsWeights || !oneHeadAtATime ? lanes : 1
    let probabilities = Tensor(
      uninitializedShape: keepsWeights ? [samples, heads, length, length] : [lanes, length, length])
    let result = Tensor(uninitializedShape: [samples, length, width])
    // With dropout, one head's dropped weights P ⊙ mask, made when needed.
    let dropped = dropoutMask.map { _ in Tensor(uninitializedShape: [lanes, length, length]) }
    let oneThread = computes && runsOnOneThread(length: length, headWidth: layout.headWidth)
    let shared = computes && lanes == 2 && layout.sharesPairs
    withOneThread(oneThread) {
      ParallelWork.forEach(layout.pairs, lanes: lanes, shared: shared, computes: computes) { pair, lane in
        let q = qkv.storage.base + layout.packed(pair), k = q + width, v = k + width
        let p = probabilities.storage.base + (keepsWeights ? pair : lane) * layout.square
        layout.weights(q, k, into: p, computes: computes, oneThread: oneThread)
        // O = P·V (or (P ⊙ mask)·V), into the head's columns of the result.
        let weights = droppedWeights(
          p, dropoutMask, dropped, pair: pair, lane: lane, square: layout.square, computes: computes)
        layout.product(
          .lower, weights, lda: length, v, ldb: 3 * width, into: result.storage.base + layout.merged(pair), ldc: width,
          computes: computes, oneThread: oneThread)
      }
    }
    _ = dropped
    let kept = keepsWeights ? probabilities : nil
    return record(result, inputs: [qkv]) { g in
      let computes = g.hasElements, lanes = backwardLanes
      let gradient = Tensor(uninitializedShape: qkv.shape)
      // One head's dP, then dS in place; without kept weights, its probabilities again.
      let gradientScores = Tensor(uninitializedShape: [lanes, length, length])
      let recomputed = kept == nil ? Tensor(uninitializedShape: [lanes, length, length]) : nil
      let droppedGradient = dropoutMask.map { _ in Tensor(uninitializedShape: [lanes, length, length]) }
      let oneThread = computes && runsOnOneThread(length: length, headWidth: layout.headWidth)
      let shared = computes && lanes == 2 && layout.sharesPairs
      let n = length
      withOneThread(oneThread) {
        ParallelWork.forEach(layout.pairs, lanes: lanes, shared: shared, computes: computes) { pair, lane in
          let q = qkv.storage.base + layout.packed(pair), k = q + width, v = k + width
          let dQ = gradient.storage.base + layout.packed(pair), dK = dQ + width, dV = dK + width
          let dO = g.storage.base + layout.merged(pair), dS = gradientScores.storage.base + lane * layout.square
          let p: UnsafeMutablePointer<Float>
          if let kept {
            p = kept.storage.base + pair * layout.square
          } else {
            p = recomputed!.storage.base + lane * layout.square
            layout.weights(q, k, into: p, computes: computes, oneThread: oneThread)
          }
          // dV = Pᵀ·dO, dP = dO·Vᵀ (with dropout: (P ⊙ mask)ᵀ·dO, and dP ⊙ mask), on or
          // below the diagonal.
          let weights = droppedWeights(
            p, dropoutMask, droppedGradient, pair: pair, lane: lane, square: layout.square, computes: computes)
          layout.product(
            .lowerTransposed, weights, lda: n, dO, ldb: width, into: dV, ldc: 3 * width, computes: computes,
            oneThread: oneThread)
          layout.product(
            .scores, dO, lda: width, v, ldb: 3 * width, into: dS, ldc: n, computes: computes, oneThread: oneThread)
          if computes, let dropoutMask {
            let mask = dropoutMask.storage.base + pair * layout.square
            for t in 0..<n {
              for index in (t * n)...(t * n + t) { dS[index] *= mask[index] }
            }
          }
          // dS = P ⊙ (dP − Σ_row dP ⊙ P) · scale, 0 above the diagonal.
          if computes { softmaxBackwardRows(dS, probabilities: p, length: n, scale: layout.scale) }
          // dQ = dS·K, dK = dSᵀ·Q
          layout.product(
            .lower, dS, lda: n, k, ldb: 3 * width, into: dQ, ldc: 3 * width, computes: computes, oneThread: oneThread)
          layout.product(
            .lowerTransposed, dS, lda: n, q, ldb: 3 * width, into: dK, ldc: 3 * width, computes: computes,
            oneThread: oneThread)
        }
      }
      _ = (droppedGradient, recomputed, gradientScores)
      return [gradient]
    }
  }

  /// Where each (sample, head) of causal self-attention lives in the packed layouts: its
  /// queries in `[b, s, 3d]` (keys `d` and values `2d` further along each row) and its
  /// output columns in `[b, s, d]`.
  struct HeadLayout {
    let samples: Int, length: Int, width: Int, heads: Int
    var headWidth: Int { width / heads }
    var square: Int { length * length }
    var scale: Float { 1 / Float(headWidth).squareRoot() }
    var pairs: Int { samples * heads }

    init(samples: Int, length: Int, width: Int, heads: Int) {
      (self.samples, self.length, self.width, self.heads) = (length == 0 ? 0 : samples, length, width, heads)
    }

    /// 2 when the (sample, head) pairs may be shared between two threads
    /// (``ParallelWork``): there is enough work and each pair's products run on one
    /// OpenBLAS thread. Each lane has its own `[s, s]` scratch.
    var lanes: Int {
      ParallelWork.splits(pairs, elementsPerItem: square) && Tensor.runsOnOneThread(length: length, headWidth: headWidth)
        ? 2 : 1
    }

    /// Whether the pairs are shared between two threads: two lanes, and none of a pair's
    /// products allocates inside BLAS (probed, through ``BLASCall/productAllocates``), since
    /// what the other thread allocated would be outside this thread's measured bytes. Asked
    /// before any one-thread region is entered: a probe takes the BLAS lock.
    var sharesPairs: Bool {
      guard lanes == 2, let allocates = BLASCall.productAllocates else { return false }
      // Each product asked in turn rather than from a list: a real step must allocate
      // nothing that its trace does not.
      for kind in 0..<3 {
        for block in 0..<blocks {
          let product = blockProduct(CausalProduct(rawValue: kind)!, block: block)
          if allocates(product.m, product.n, product.k, product.transposeA, product.transposeB) { return false }
        }
      }
      return true
    }

    /// Where the products of a head cut its positions, `[0, h)` and `[h, s)`: the block of
    /// the `[s, s]` weights above the diagonal at `[0, h) × [h, s)`, all zeros under the
    /// causal mask, is then never multiplied (a quarter of each product). No cut (`s`)
    /// below 64 positions, where two smaller products cost more than they save.
    var causalCut: Int { length >= 64 ? length / 2 : length }

    /// The products a head's product is cut into: 2, or 1 without a cut.
    var blocks: Int { causalCut < length ? 2 : 1 }

    /// The extents of `kind`'s product for rows `[0, h)` of `C` (`block` 0) or `[h, s)`
    /// (`block` 1), and where it starts: the first row of `C` and of `A` (`row`), a column
    /// of `A` (`aColumn`) and a row of `B` (`bRow`).
    func blockProduct(_ kind: CausalProduct, block: Int) -> (
      m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool, row: Int, aColumn: Int, bRow: Int
    ) {
      let (s, h, dh) = (length, causalCut, headWidth)
      let (start, rows, through) = block == 0 ? (0, h, h) : (h, s - h, s)
      switch kind {
      case .scores:
        // C[rows, 0..<through] = X[rows] · Y[0..<through]ᵀ
        return (rows, through, dh, false, true, start, 0, 0)
      case .lower:
        // C[rows] = P[rows, 0..<through] · X[0..<through]
        return (rows, dh, through, false, false, start, 0, 0)
      case .lowerTransposed:
        // C[rows] = P[start..<s, rows]ᵀ · X[start..<s]
        return (rows, dh, s - start, true, false, start, start, start)
      }
    }

    /// One of a head's three kinds of product, on or below the diagonal of its `[s, s]`
    /// operand or result, as ``blocks`` products. `A` and `B` have leading dimensions
    /// `lda` and `ldb` (`s` for the weights), `C` `ldc`. Under ``CausalProduct/scores`` the
    /// block above the cut is left as it was; everything that reads it stops at the diagonal.
    func product(
      _ kind: CausalProduct, _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
      into c: UnsafeMutablePointer<Float>, ldc: Int, computes: Bool, oneThread: Bool
    ) {
      for block in 0..<blocks {
        let p = blockProduct(kind, block: block)
        Tensor.gemm(
          a + p.row * lda + p.aColumn, b + p.bRow * ldb, c + p.row * ldc, m: p.m, n: p.n,
          k: p.k, transposeA: p.transposeA, transposeB: p.transposeB, accumulate: false, computes: computes,
          oneThreadHeld: oneThread, lda: lda, ldb: ldb, ldc: ldc)
      }
    }

    /// Offset of head `pair % heads` of sample `pair / heads` in `[b, s, 3d]`.
    func packed(_ pair: Int) -> Int { (pair / heads) * length * 3 * width + (pair % heads) * headWidth }
    /// Offset of the same head in `[b, s, d]`.
    func merged(_ pair: Int) -> Int { (pair / heads) * length * width + (pair % heads) * headWidth }

    /// One head's attention weights: `S = Q·Kᵀ` into `p` (`[s, s]`), then the causal
    /// softmax of `S · scale`, row by row.
    @inline(__always)
    func weights(
      _ q: UnsafeMutablePointer<Float>, _ k: UnsafeMutablePointer<Float>, into p: UnsafeMutablePointer<Float>,
      computes: Bool, oneThread: Bool
    ) {
      product(.scores, q, lda: 3 * width, k, ldb: 3 * width, into: p, ldc: length, computes: computes, oneThread: oneThread)
      if computes { Tensor.causalSoftmaxRows(p, length: length, scale: scale) }
    }
  }

  /// The three kinds of product of one head, whose `[s, s]` operand or result is only
  /// needed on and below the diagonal.
  enum CausalProduct: Int {
    /// `C = X·Yᵀ`, `[s, s]`: the scores `Q·Kᵀ` and the gradient `dO·Vᵀ`.
    case scores
    /// `C = P·X` for `P` zero above the diagonal: the output `P·V` and `dS·K`.
    case lower
    /// `C = Pᵀ·X` for the same `P`: `Pᵀ·dO` and `dSᵀ·Q`.
    case lowerTransposed
  }

  /// Whether every product of one (sample, head) runs on one OpenBLAS thread by rule, so
  /// that the whole loop can run inside one ``BLASCall/onOneThread(_:)`` region.
  static func runsOnOneThread(length: Int, headWidth: Int) -> Bool {
    !BLASThreading.usesThreads(m: length, n: length, k: headWidth)
      && !BLASThreading.usesThreads(m: length, n: headWidth, k: length)
  }

  /// Runs `body` inside a one-thread region when `oneThread`, else as it is.
  static func withOneThread(_ oneThread: Bool, _ body: () -> Void) {
    if oneThread { BLASCall.onOneThread(body) } else { body() }
  }

  /// The weights head `pair` multiplies the values by: its probabilities `p`, or with a
  /// dropout mask `p ⊙ mask` written into lane `lane` of `scratch`.
  @inline(__always)
  static func droppedWeights(
    _ p: UnsafeMutablePointer<Float>, _ mask: Tensor?, _ scratch: Tensor?, pair: Int, lane: Int, square: Int,
    computes: Bool
  ) -> UnsafeMutablePointer<Float> {
    guard let mask, let scratch else { return p }
    let target = scratch.storage.base + lane * square
    if computes {
      let m = mask.storage.base + pair * square
      for index in 0..<square { target[index] = p[index] * m[index] }
    }
    return target
  }

  /// Row `t` of the `[s, s]` scores becomes the softmax of `scale · scores[t, 0…t]`, and 0
  /// beyond `t` (the causal mask), in place; 16 lanes at a time (``VectorMath``).
  static func causalSoftmaxRows(_ scores: UnsafeMutablePointer<Float>, length: Int, scale: Float) {
    for t in 0..<length {
      let row = scores + t * length
      // scale > 0, so the largest scaled score is the scaled largest.
      let largest = VectorMath.maximum(row, count: t + 1) * scale
      let total = VectorMath.exponentials(row, count: t + 1, scale: scale, shift: largest, into: row)
      let inverse = 1 / total
      for j in 0...t { row[j] *= inverse }
      (row + t + 1).update(repeating: 0, count: length - t - 1)
    }
  }

  /// `dS[t, j] = P[t, j] · (dP[t, j] − Σ_j' dP[t, j'] P[t, j']) · scale` for `j ≤ t`, in
  /// place over dP, and 0 above the diagonal (where `P` is 0; dP is not read there).
  static func softmaxBackwardRows(
    _ gradient: UnsafeMutablePointer<Float>, probabilities: UnsafePointer<Float>, length: Int, scale: Float
  ) {
    for t in 0..<length {
      let row = gradient + t * length, p = probabilities + t * length
      let offset = VectorMath.dot(row, p, count: t + 1)
      for j in 0...t { row[j] = p[j] * (row[j] - offset) * scale }
      (row + t + 1).update(repeating: 0, count: length - t - 1)
    }
  }

}
