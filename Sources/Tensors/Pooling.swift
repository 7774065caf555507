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

  func pooled2D(kernel: Int, stride: Int, maximum: Bool) -> Tensor {
    precondition(rank == 4 && kernel >= 1 && stride >= 1, "pooling needs [N, C, H, W], got \(shape)")
    let (n, channels, height, width) = (shape[0], shape[1], shape[2], shape[3])
    let outputHeight = (height - kernel) / stride + 1, outputWidth = (width - kernel) / stride + 1
    precondition(outputHeight >= 1 && outputWidth >= 1, "a \(kernel)×\(kernel) window does not fit \(shape)")
    let result = Tensor(uninitializedShape: [n, channels, outputHeight, outputWidth])
    // For max pooling, the flat index of each window's maximum (exact in Float up to 2²⁴).
    let positions = maximum ? Tensor(uninitializedShape: result.shape) : nil
    if result.hasElements {
      let x = storage.base, y = result.storage.base
      let scale = 1 / Float(kernel * kernel)
      for plane in 0..<(n * channels) {
        let source = x + plane * height * width
        for oy in 0..<outputHeight {
          for ox in 0..<outputWidth {
            let out = (plane * outputHeight + oy) * outputWidth + ox
            var best = -Float.infinity, bestIndex = 0, total: Float = 0
            for ky in 0..<kernel {
              for kx in 0..<kernel {
                let index = (oy * stride + ky) * width + ox * stride + kx
                let value = source[index]
                total += value
                if value > best || (value.isNaN && !best.isNaN) {
                  best = value
                  bestIndex = index
                }
              }
            }
            if let positions {
              y[out] = best
              positions.storage.base[out] = Float(plane * height * width + bestIndex)
            } else {
              y[out] = total * scale
            }
          }
        }
      }
    }
    let inputShape = shape
    return Tensor.record(result, inputs: [self]) { g in
      let gradient = Tensor(zeros: inputShape)
      guard gradient.hasElements else { return [gradient] }
      let gy = g.storage.base, dx = gradient.storage.base
      if let positions {
        for i in 0..<g.count { dx[Int(positions.storage.base[i])] += gy[i] }
      } else {
        let scale = 1 / Float(kernel * kernel)
        for plane in 0..<(n * channels) {
          for oy in 0..<outputHeight {
            for ox in 0..<outputWidth {
              let share = gy[(plane * outputHeight + oy) * outputWidth + ox] * scale
              for ky in 0..<kernel {
                for kx in 0..<kernel {
                  dx[plane * height * width + (oy * stride + ky) * width + ox * stride + kx] += share
                }
              }
            }
          }
        }
      }
      return [gradient]
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
