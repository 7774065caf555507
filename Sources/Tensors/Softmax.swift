import VectorKernels
#if canImport(Glibc)
  import Glibc
#endif

extension Tensor {
  /// `exp(x) / sum(exp(x))` along `axis`, computed stably (the maximum is subtracted first).
  public func softmax(alongAxis axis: Int = -1) -> Tensor {
    let axis = normalizedAxis(axis)
    let (outer, extent, inner) = loopBounds(around: axis)
    let result = Tensor(uninitializedShape: shape)
    let x = storage.base, y = result.storage.base
    for o in 0..<(result.hasElements ? outer : 0) {
      for i in 0..<inner {
        let base = o * extent * inner + i
        var maximum = -Float.infinity
        for j in 0..<extent { maximum = Swift.max(maximum, x[base + j * inner]) }
        var total: Float = 0
        for j in 0..<extent {
          let e = expf(x[base + j * inner] - maximum)
          y[base + j * inner] = e
          total += e
        }
        for j in 0..<extent { y[base + j * inner] /= total }
      }
    }
    let output = result.detached()
    return Tensor.record(result, inputs: [self]) { g in
      // dx = y · (g − Σ g·y)
      let gradient = Tensor(uninitializedShape: output.shape)
      let gy = g.storage.base, yy = output.storage.base, dx = gradient.storage.base
      for o in 0..<(gradient.hasElements ? outer : 0) {
        for i in 0..<inner {
          let base = o * extent * inner + i
          var dot: Float = 0
          for j in 0..<extent { dot += gy[base + j * inner] * yy[base + j * inner] }
          for j in 0..<extent {
            let at = base + j * inner
            dx[at] = yy[at] * (gy[at] - dot)
          }
        }
      }
      return [gradient]
    }
  }

  /// `x − log(sum(exp(x)))` along `axis`, computed stably.
  public func logSoftmax(alongAxis axis: Int = -1) -> Tensor {
    let axis = normalizedAxis(axis)
    let (outer, extent, inner) = loopBounds(around: axis)
    let result = Tensor(uninitializedShape: shape)
    let x = storage.base, y = result.storage.base
    // Lines are independent: split between two threads (``ParallelWork``).
    ParallelWork.split(outer, elementsPerItem: extent * inner, computes: result.hasElements) { lines in
      for o in lines {
        if inner == 1 {
          // Contiguous lines (the usual last axis): 16 lanes at a time.
          let line = x + o * extent
          let maximum = VectorMath.maximum(line, count: extent)
          // The exponentials pass through the output line, overwritten below.
          let total = VectorMath.exponentials(line, count: extent, scale: 1, shift: maximum, into: y + o * extent)
          let logTotal = maximum + logf(total)
          for j in 0..<extent { y[o * extent + j] = line[j] - logTotal }
          continue
        }
        for i in 0..<inner {
          let base = o * extent * inner + i
          var maximum = -Float.infinity
          for j in 0..<extent { maximum = Swift.max(maximum, x[base + j * inner]) }
          var total: Float = 0
          for j in 0..<extent { total += expf(x[base + j * inner] - maximum) }
          let logTotal = maximum + logf(total)
          for j in 0..<extent { y[base + j * inner] = x[base + j * inner] - logTotal }
        }
      }
    }
    let output = result.detached()
    return Tensor.record(result, inputs: [self]) { g in
      // dx = g − softmax · Σ g
      let gradient = Tensor(uninitializedShape: output.shape)
      let gy = g.storage.base, yy = output.storage.base, dx = gradient.storage.base
      ParallelWork.split(outer, elementsPerItem: extent * inner, computes: gradient.hasElements) { lines in
        for o in lines {
          if inner == 1 {
            // dx = g − exp(log-softmax) · Σ g, with exp correctly rounded (in double, vector
            // lanes): the probabilities are the gradient itself, and the straight-line float
            // exp's 3e-7 error there moved AdamW's accumulated weights past 1e-4 of one big
            // batch's.
            let base = o * extent
            let total = VectorMath.sum(gy + base, count: extent)
            gradaccum_log_softmax_gradient(gy + base, yy + base, total, dx + base, extent)
            continue
          }
          for i in 0..<inner {
            let base = o * extent * inner + i
            var total: Float = 0
            for j in 0..<extent { total += gy[base + j * inner] }
            for j in 0..<extent {
              let at = base + j * inner
              dx[at] = gy[at] - expf(yy[at]) * total
            }
          }
        }
      }
      return [gradient]
    }
  }
}
