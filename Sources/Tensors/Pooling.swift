import VectorKernels

extension Tensor {
  /// Max pooling of `[N, C, H, W]` over `kernel × kernel` windows with `stride` (PyTorch's
  /// default stride is the kernel) and no padding. Gradients go to each window's maximum
  /// (the first one on ties, as PyTorch).
  public func maxPooled2D(kernel: Int, stride: Int? = nil) -> Tensor {
    pooled2D(kernel: kernel, stride: stride ?? kernel, maximum: true)
  }

  /// Average pooling of `[N, C, H, W]` over `kernel × kernel` windows with `stride` (default
  /// the kernel) and no padding.
  public func averagePooled2D(kernel: Int, stride: Int? = nil) -> Tensor {
    pooled2D(kernel: kernel, stride: stride ?? kernel, maximum: false)
  }

  /// Planes (`N·C` of them) are shared between two threads (``ParallelWork``) when large
  /// enough; every output element is computed the same way whichever thread runs it.
  /// `masked`: 2×2 max pooling with stride 2 runs in the AVX-512 kernels where the CPU has
  /// them (``runsMaskedKernels``), else in the Swift loops; the same values either way.
  func pooled2D(kernel: Int, stride: Int, maximum: Bool, masked: Bool = runsMaskedKernels) -> Tensor {
    precondition(rank == 4 && kernel >= 1 && stride >= 1, "pooling needs [N, C, H, W], got \(shape)")
    let (n, channels, height, width) = (shape[0], shape[1], shape[2], shape[3])
    let outputHeight = (height - kernel) / stride + 1, outputWidth = (width - kernel) / stride + 1
    precondition(outputHeight >= 1 && outputWidth >= 1, "a \(kernel)×\(kernel) window does not fit \(shape)")
    let result = Tensor(uninitializedShape: [n, channels, outputHeight, outputWidth])
    // For max pooling, the index of each window's maximum within its plane (exact in Float
    // for planes of up to 2²⁴ values, whatever the batch).
    let positions = maximum ? Tensor(uninitializedShape: result.shape) : nil
    let planeSize = height * width, outputPlane = outputHeight * outputWidth
    // 2×2 windows with stride 2, the common case, sixteen at a time with AVX-512 where the CPU
    // has it (the same values and positions as `maximumPlane`, and the same gradients).
    let poolsMasked = maximum && masked && kernel == 2 && stride == 2 && planeSize < 1 << 24
    let x = storage.base, y = result.storage.base
    ParallelWork.split(n * channels, elementsPerItem: planeSize, computes: result.hasElements) { planes in
      for plane in planes {
        let offset = plane * planeSize
        let out = y + plane * outputPlane
        if let positions, poolsMasked {
          gradaccum_max_pool_2x2(x + offset, width, outputHeight, outputWidth, out, positions.storage.base + plane * outputPlane)
        } else if let positions {
          Self.maximumPlane(
            x + offset, width: width, kernel: kernel, stride: stride, outputHeight: outputHeight,
            outputWidth: outputWidth, into: out, positions: positions.storage.base + plane * outputPlane)
        } else {
          let scale = 1 / Float(kernel * kernel)
          for oy in 0..<outputHeight {
            for ox in 0..<outputWidth {
              let corner = x + offset + oy * stride * width + ox * stride
              var total: Float = 0
              for ky in 0..<kernel {
                for kx in 0..<kernel { total += corner[ky * width + kx] }
              }
              out[oy * outputWidth + ox] = total * scale
            }
          }
        }
      }
    }
    let inputShape = shape
    return Tensor.record(result, inputs: [self]) { g in
      let gradient = Tensor(uninitializedShape: inputShape)
      let gy = g.storage.base, dx = gradient.storage.base
      // Each plane's gradient gets only its own plane's outputs, so planes split freely;
      // each thread zeroes its own planes first.
      ParallelWork.split(n * channels, elementsPerItem: planeSize, computes: gradient.hasElements) { planes in
        if let positions, poolsMasked {
          // Every position written, the zeros too.
          for plane in planes {
            gradaccum_max_pool_2x2_gradient(
              gy + plane * outputPlane, positions.storage.base + plane * outputPlane, height, width, outputHeight,
              outputWidth, dx + plane * planeSize)
          }
          return
        }
        (dx + planes.lowerBound * planeSize).update(repeating: 0, count: planes.count * planeSize)
        if let positions {
          for plane in planes {
            let target = dx + plane * planeSize, base = plane * outputPlane
            for i in base..<(base + outputPlane) { target[Int(positions.storage.base[i])] += gy[i] }
          }
          return
        }
        let scale = 1 / Float(kernel * kernel)
        for plane in planes {
          for oy in 0..<outputHeight {
            for ox in 0..<outputWidth {
              let share = gy[plane * outputPlane + oy * outputWidth + ox] * scale
              let corner = dx + plane * planeSize + oy * stride * width + ox * stride
              for ky in 0..<kernel {
                for kx in 0..<kernel { corner[ky * width + kx] += share }
              }
            }
          }
        }
      }
      return [gradient]
    }
  }

  /// One plane's max pooling: each window's maximum (NaN wins; the first one on ties, as
  /// PyTorch) and its index in the plane, as a Float.
  @inline(__always)
  static func maximumPlane(
    _ source: UnsafePointer<Float>, width: Int, kernel: Int, stride: Int, outputHeight: Int,
    outputWidth: Int, into out: UnsafeMutablePointer<Float>, positions: UnsafeMutablePointer<Float>
  ) {
    // `value` replaces `best` when larger, or NaN (and a NaN stays): the same as
    // `value > best || (value.isNaN && !best.isNaN)`, written as selects rather than
    // branches, which random data would mispredict.
    @inline(__always) func keep(_ candidate: Int, _ best: inout Float, _ index: inout Int) {
      let value = source[candidate]
      let replaces = !best.isNaN && !(value <= best)
      best = replaces ? value : best
      index = replaces ? candidate : index
    }
    @inline(__always) func keepLanes(
      _ value: SIMD8<Float>, _ place: Int32, _ best: inout SIMD8<Float>, _ index: inout SIMD8<Int32>
    ) {
      let replaces = (best .== best) .& .!(value .<= best)
      best.replace(with: value, where: replaces)
      index.replace(with: place, where: replaces)
    }
    if kernel == 2 && stride == 2 && outputHeight * 2 * width <= Int(Int32.max) {
      // The common case: eight windows at a time in vector lanes (even and odd columns of
      // two rows), then one at a time.
      let steps = SIMD8<Int32>(0, 2, 4, 6, 8, 10, 12, 14)
      for oy in 0..<outputHeight {
        let top = 2 * oy * width
        var ox = 0
        while ox + 8 <= outputWidth {
          let first = top + 2 * ox
          let upper = UnsafeRawPointer(source + first).loadUnaligned(as: SIMD16<Float>.self)
          let lower = UnsafeRawPointer(source + first + width).loadUnaligned(as: SIMD16<Float>.self)
          var best = upper.evenHalf
          var index = SIMD8<Int32>(repeating: 0)
          keepLanes(upper.oddHalf, 1, &best, &index)
          keepLanes(lower.evenHalf, Int32(width), &best, &index)
          keepLanes(lower.oddHalf, Int32(width + 1), &best, &index)
          UnsafeMutableRawPointer(out + oy * outputWidth + ox).storeBytes(of: best, as: SIMD8<Float>.self)
          let flat = index &+ steps &+ Int32(first)
          UnsafeMutableRawPointer(positions + oy * outputWidth + ox).storeBytes(
            of: SIMD8<Float>(flat), as: SIMD8<Float>.self)
          ox += 8
        }
        for ox in ox..<outputWidth {
          let first = top + 2 * ox
          var index = first, best = source[first]
          keep(first + 1, &best, &index)
          keep(first + width, &best, &index)
          keep(first + width + 1, &best, &index)
          out[oy * outputWidth + ox] = best
          positions[oy * outputWidth + ox] = Float(index)
        }
      }
      return
    }
    for oy in 0..<outputHeight {
      for ox in 0..<outputWidth {
        let corner = oy * stride * width + ox * stride
        var best = source[corner], index = corner
        for ky in 0..<kernel {
          for kx in 0..<kernel { keep(corner + ky * width + kx, &best, &index) }
        }
        out[oy * outputWidth + ox] = best
        positions[oy * outputWidth + ox] = Float(index)
      }
    }
  }
}

extension Tensor {
  /// Adaptive average pooling of `[N, C, H, W]` to `[N, C, outputHeight, outputWidth]`, as
  /// PyTorch's `adaptive_avg_pool2d`: output row `i` averages input rows
  /// `⌊i·H/Ho⌋ ..< ⌈(i+1)·H/Ho⌉` (windows may overlap when `H` is not a multiple), and the
  /// same for columns.
  public func adaptiveAveragePooled2D(outputHeight: Int, outputWidth: Int) -> Tensor {
    precondition(
      rank == 4 && outputHeight >= 1 && outputWidth >= 1, "adaptive pooling needs [N, C, H, W], got \(shape)")
    let (n, channels, height, width) = (shape[0], shape[1], shape[2], shape[3])
    func window(_ index: Int, _ output: Int, _ input: Int) -> Range<Int> {
      (index * input / output)..<(((index + 1) * input + output - 1) / output)
    }
    let result = Tensor(uninitializedShape: [n, channels, outputHeight, outputWidth])
    if result.hasElements {
      let x = storage.base, y = result.storage.base
      for plane in 0..<(n * channels) {
        let source = x + plane * height * width
        for oy in 0..<outputHeight {
          let rows = window(oy, outputHeight, height)
          for ox in 0..<outputWidth {
            let columns = window(ox, outputWidth, width)
            var total: Float = 0
            for iy in rows { for ix in columns { total += source[iy * width + ix] } }
            y[(plane * outputHeight + oy) * outputWidth + ox] = total / Float(rows.count * columns.count)
          }
        }
      }
    }
    let inputShape = shape
    return Tensor.record(result, inputs: [self]) { g in
      let gradient = Tensor(zeros: inputShape)
      guard gradient.hasElements else { return [gradient] }
      let gy = g.storage.base, dx = gradient.storage.base
      for plane in 0..<(n * channels) {
        for oy in 0..<outputHeight {
          let rows = window(oy, outputHeight, height)
          for ox in 0..<outputWidth {
            let columns = window(ox, outputWidth, width)
            let share = gy[(plane * outputHeight + oy) * outputWidth + ox] / Float(rows.count * columns.count)
            for iy in rows { for ix in columns { dx[plane * height * width + iy * width + ix] += share } }
          }
        }
      }
      return [gradient]
    }
  }
}
