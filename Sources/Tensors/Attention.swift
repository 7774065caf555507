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
  /// Each (sample, head) is three matrix products through BLAS; the heads are first copied
  /// into contiguous blocks `[3, b, heads, s, d/heads]`. The softmax probabilities
  /// `[b, heads, s, s]` are kept for backward, as are the blocks.
  ///
  /// `dropoutMask` `[b, heads, s, s]` (0, or `1/(1−p)` for a kept weight) applies dropout to
  /// the attention weights, as `nn.MultiheadAttention(dropout: p)` does in training: the
  /// values are weighted by `P ⊙ mask`, and backward goes through the same mask.
  /// - Precondition: `qkv` is `[b, s, 3d]` with `d` a multiple of `heads`; the mask, when
  ///   given, is `[b, heads, s, s]`.
  public static func causalSelfAttention(_ qkv: Tensor, heads: Int, dropoutMask: Tensor? = nil) -> Tensor {
    precondition(qkv.rank == 3 && qkv.shape[2] % 3 == 0, "attention needs [b, s, 3d], got \(qkv.shape)")
    let (samples, length, width) = (qkv.shape[0], qkv.shape[1], qkv.shape[2] / 3)
    precondition(heads >= 1 && width % heads == 0, "\(width) features do not split into \(heads) heads")
    let headWidth = width / heads
    let scale = 1 / Float(headWidth).squareRoot()
    let computes = qkv.hasElements
    // [3, b, h, s, dh]: q, k, v of each (sample, head) contiguous.
    let blocks = Tensor(uninitializedShape: [3, samples, heads, length, headWidth])
    if computes { splitHeads(qkv.storage.base, into: blocks.storage.base, samples, length, width, heads, parts: 3) }
    let probabilities = Tensor(uninitializedShape: [samples, heads, length, length])
    let headOutputs = Tensor(uninitializedShape: [samples, heads, length, headWidth])
    precondition(
      dropoutMask.map { $0.shape == [samples, heads, length, length] } ?? true,
      "the attention dropout mask must be \([samples, heads, length, length])")
    let block = length * headWidth, square = length * length, part = samples * heads * block
    // With dropout, one head's dropped weights P ⊙ mask, made when needed.
    let dropped = dropoutMask.map { _ in Tensor(uninitializedShape: [length, length]) }
    let oneThread = computes && runsOnOneThread(length: length, headWidth: headWidth)
    withOneThread(oneThread) {
      for pair in 0..<(samples * heads) {
        let q = blocks.storage.base + pair * block, k = q + part, v = k + part
        let p = probabilities.storage.base + pair * square, o = headOutputs.storage.base + pair * block
        // S = Q·Kᵀ, then the causal softmax of S·scale, row by row.
        gemm(
          q, k, p, m: length, n: length, k: headWidth, transposeA: false, transposeB: true, accumulate: false,
          computes: computes, oneThreadHeld: oneThread)
        if computes { causalSoftmaxRows(p, length: length, scale: scale) }
        // O = P·V (or (P ⊙ mask)·V)
        let weights = droppedWeights(p, dropoutMask, dropped, pair: pair, square: square, computes: computes)
        gemm(
          weights, v, o, m: length, n: headWidth, k: length, transposeA: false, transposeB: false, accumulate: false,
          computes: computes, oneThreadHeld: oneThread)
        if !computes { break }
      }
    }
    _ = dropped
    let result = Tensor(uninitializedShape: [samples, length, width])
    if computes { mergeHeads(headOutputs.storage.base, into: result.storage.base, samples, length, width, heads, parts: 1) }
    return record(result, inputs: [qkv]) { g in
      let computes = g.hasElements
      let gradientHeads = Tensor(uninitializedShape: [samples, heads, length, headWidth])
      if computes { splitHeads(g.storage.base, into: gradientHeads.storage.base, samples, length, width, heads, parts: 1) }
      let gradientBlocks = Tensor(uninitializedShape: [3, samples, heads, length, headWidth])
      let gradientScores = Tensor(uninitializedShape: [length, length])
      let droppedGradient = dropoutMask.map { _ in Tensor(uninitializedShape: [length, length]) }
      let oneThread = computes && runsOnOneThread(length: length, headWidth: headWidth)
      withOneThread(oneThread) {
        for pair in 0..<(samples * heads) {
          let q = blocks.storage.base + pair * block, k = q + part, v = k + part
          let p = probabilities.storage.base + pair * square, dO = gradientHeads.storage.base + pair * block
          let dQ = gradientBlocks.storage.base + pair * block, dK = dQ + part, dV = dK + part
          let dS = gradientScores.storage.base
          // dV = Pᵀ·dO, dP = dO·Vᵀ (with dropout: (P ⊙ mask)ᵀ·dO, and dP ⊙ mask)
          let weights = droppedWeights(p, dropoutMask, droppedGradient, pair: pair, square: square, computes: computes)
          gemm(
            weights, dO, dV, m: length, n: headWidth, k: length, transposeA: true, transposeB: false,
            accumulate: false, computes: computes, oneThreadHeld: oneThread)
          gemm(
            dO, v, dS, m: length, n: length, k: headWidth, transposeA: false, transposeB: true, accumulate: false,
            computes: computes, oneThreadHeld: oneThread)
          if computes, let dropoutMask {
            let mask = dropoutMask.storage.base + pair * square
            for index in 0..<square { dS[index] *= mask[index] }
          }
          // dS = P ⊙ (dP − Σ_row dP ⊙ P) · scale (masked entries have P = 0).
          if computes { softmaxBackwardRows(dS, probabilities: p, length: length, scale: scale) }
          // dQ = dS·K, dK = dSᵀ·Q
          gemm(
            dS, k, dQ, m: length, n: headWidth, k: length, transposeA: false, transposeB: false, accumulate: false,
            computes: computes, oneThreadHeld: oneThread)
          gemm(
            dS, q, dK, m: length, n: headWidth, k: length, transposeA: true, transposeB: false, accumulate: false,
            computes: computes, oneThreadHeld: oneThread)
          if !computes { break }
        }
      }
      _ = droppedGradient
      let gradient = Tensor(uninitializedShape: qkv.shape)
      if computes {
        mergeHeads(gradientBlocks.storage.base, into: gradient.storage.base, samples, length, width, heads, parts: 3)
      }
      return [gradient]
    }
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
  /// dropout mask `p ⊙ mask` written into `scratch`.
  @inline(__always)
  static func droppedWeights(
    _ p: UnsafeMutablePointer<Float>, _ mask: Tensor?, _ scratch: Tensor?, pair: Int, square: Int, computes: Bool
  ) -> UnsafeMutablePointer<Float> {
    guard let mask, let scratch else { return p }
    let target = scratch.storage.base
    if computes {
      let m = mask.storage.base + pair * square
      for index in 0..<square { target[index] = p[index] * m[index] }
    }
    return target
  }

  /// Copies `[b, s, parts·d]` into `[parts, b, h, s, d/h]`.
  static func splitHeads(
    _ source: UnsafePointer<Float>, into target: UnsafeMutablePointer<Float>, _ samples: Int, _ length: Int,
    _ width: Int, _ heads: Int, parts: Int
  ) {
    forEachHeadRow(samples, length, width, heads, parts) { packed, blocked, count in
      (target + blocked).update(from: source + packed, count: count)
    }
  }

  /// Copies `[parts, b, h, s, d/h]` back into `[b, s, parts·d]`.
  static func mergeHeads(
    _ source: UnsafePointer<Float>, into target: UnsafeMutablePointer<Float>, _ samples: Int, _ length: Int,
    _ width: Int, _ heads: Int, parts: Int
  ) {
    forEachHeadRow(samples, length, width, heads, parts) { packed, blocked, count in
      (target + packed).update(from: source + blocked, count: count)
    }
  }

  /// Calls `body` with the offsets of one head's row in the packed layout `[b, s, parts·d]`
  /// and in the blocked layout `[parts, b, h, s, d/h]`, and the row's length, for every row.
  @inline(__always)
  static func forEachHeadRow(
    _ samples: Int, _ length: Int, _ width: Int, _ heads: Int, _ parts: Int, _ body: (Int, Int, Int) -> Void
  ) {
    let headWidth = width / heads
    for part in 0..<parts {
      for sample in 0..<samples {
        for head in 0..<heads {
          let blocked = ((part * samples + sample) * heads + head) * length * headWidth
          for t in 0..<length {
            body((sample * length + t) * parts * width + part * width + head * headWidth, blocked + t * headWidth, headWidth)
          }
        }
      }
    }
  }

  /// Row `t` of the `[s, s]` scores becomes the softmax of `scale · scores[t, 0…t]`, and 0
  /// beyond `t` (the causal mask), in place; sums in Double.
  static func causalSoftmaxRows(_ scores: UnsafeMutablePointer<Float>, length: Int, scale: Float) {
    for t in 0..<length {
      let row = scores + t * length
      var largest = -Float.infinity
      for j in 0...t { largest = max(largest, row[j] * scale) }
      var total: Double = 0
      for j in 0...t {
        let e = expf(row[j] * scale - largest)
        row[j] = e
        total += Double(e)
      }
      let inverse = Float(1 / total)
      for j in 0...t { row[j] *= inverse }
      for j in (t + 1)..<length { row[j] = 0 }
    }
  }

  /// `dS[t, j] = P[t, j] · (dP[t, j] − Σ_j' dP[t, j'] P[t, j']) · scale`, in place over dP.
  static func softmaxBackwardRows(
    _ gradient: UnsafeMutablePointer<Float>, probabilities: UnsafePointer<Float>, length: Int, scale: Float
  ) {
    for t in 0..<length {
      let row = gradient + t * length, p = probabilities + t * length
      var dot: Double = 0
      for j in 0..<length { dot += Double(row[j]) * Double(p[j]) }
      let offset = Float(dot)
      for j in 0..<length { row[j] = p[j] * (row[j] - offset) * scale }
    }
  }
}

