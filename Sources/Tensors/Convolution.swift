import CBLAS

/// The geometry of a 2-D convolution or pooling window over NCHW tensors.
public struct WindowGeometry: Sendable, Equatable {
  public var kernelHeight: Int, kernelWidth: Int
  public var stride: Int, padding: Int, dilation: Int

  /// - Parameters: kernel extents, stride, zero padding and dilation, as PyTorch's.
  public init(kernelHeight: Int, kernelWidth: Int, stride: Int = 1, padding: Int = 0, dilation: Int = 1) {
    self.kernelHeight = kernelHeight
    self.kernelWidth = kernelWidth
    self.stride = stride
    self.padding = padding
    self.dilation = dilation
  }

  /// The output extent along an axis of extent `size`, or a value < 1 when the window does
  /// not fit.
  public func outputExtent(_ size: Int, kernel: Int) -> Int {
    (size + 2 * padding - dilation * (kernel - 1) - 1) / stride + 1
  }
}

extension WindowGeometry {
  /// The output columns `ox` whose input column `ox·stride + offset` lies in `[0, width)`.
  func validColumns(offset: Int, width: Int, outputWidth: Int) -> Range<Int> {
    let start = offset >= 0 ? 0 : (-offset + stride - 1) / stride
    let limit = width - offset
    let end = limit <= 0 ? 0 : Swift.min(outputWidth, (limit - 1) / stride + 1)
    return Swift.min(start, end)..<end
  }
}

extension Tensor {
  /// Unfolds one sample `[C, H, W]` (at `source`) into columns `[C·kh·kw, Ho·Wo]`: each
  /// output row is a strided run of one input row (a copy at stride 1), zeros outside.
  static func im2col(
    _ source: UnsafePointer<Float>, channels: Int, height: Int, width: Int, geometry g: WindowGeometry,
    outputHeight: Int, outputWidth: Int, into columns: UnsafeMutablePointer<Float>
  ) {
    var row = 0
    for c in 0..<channels {
      for ky in 0..<g.kernelHeight {
        for kx in 0..<g.kernelWidth {
          let target = columns + row * outputHeight * outputWidth
          let offset = kx * g.dilation - g.padding
          let valid = g.validColumns(offset: offset, width: width, outputWidth: outputWidth)
          for oy in 0..<outputHeight {
            let y = oy * g.stride - g.padding + ky * g.dilation
            let out = target + oy * outputWidth
            guard y >= 0 && y < height && !valid.isEmpty else {
              out.update(repeating: 0, count: outputWidth)
              continue
            }
            if valid.lowerBound > 0 { out.update(repeating: 0, count: valid.lowerBound) }
            if valid.upperBound < outputWidth {
              (out + valid.upperBound).update(repeating: 0, count: outputWidth - valid.upperBound)
            }
            let input = source + (c * height + y) * width + offset
            // Rows are short: an inline loop beats a memmove call per row.
            if g.stride == 1 {
              for ox in valid { out[ox] = input[ox] }
            } else {
              for ox in valid { out[ox] = input[ox * g.stride] }
            }
          }
          row += 1
        }
      }
    }
  }

  /// Folds columns `[C·kh·kw, Ho·Wo]` back, adding into one sample's gradient `[C, H, W]`.
  static func col2im(
    _ columns: UnsafePointer<Float>, channels: Int, height: Int, width: Int, geometry g: WindowGeometry,
    outputHeight: Int, outputWidth: Int, into target: UnsafeMutablePointer<Float>
  ) {
    var row = 0
    for c in 0..<channels {
      for ky in 0..<g.kernelHeight {
        for kx in 0..<g.kernelWidth {
          let source = columns + row * outputHeight * outputWidth
          let offset = kx * g.dilation - g.padding
          let valid = g.validColumns(offset: offset, width: width, outputWidth: outputWidth)
          for oy in 0..<outputHeight {
            let y = oy * g.stride - g.padding + ky * g.dilation
            guard y >= 0 && y < height else { continue }
            let input = source + oy * outputWidth
            let output = target + (c * height + y) * width + offset
            if g.stride == 1 {
              VectorMath.add(input + valid.lowerBound, into: output + valid.lowerBound, count: valid.count)
            } else {
              for ox in valid { output[ox &* g.stride] += input[ox] }
            }
          }
          row += 1
        }
      }
    }
  }

  /// A 2-D convolution of `input` `[N, C, H, W]` with `weight` `[O, C, kh, kw]` and an
  /// optional `bias` `[O]`, as PyTorch's `conv2d` (groups = 1): each sample is unfolded
  /// (im2col, one `[C·kh·kw, Ho·Wo]` workspace at a time) and multiplied by the weight with
  /// `cblas_sgemm`. Backward recomputes the columns rather than keeping them.
  ///
  /// When each sample's products allocate nothing on one OpenBLAS thread (probed), the
  /// samples are shared between two threads (``ParallelWork``), each with its own workspace
  /// (traced) and its products on one OpenBLAS thread: two samples at once on two cores
  /// rather than each small product split between OpenBLAS's threads. The second half's
  /// weight and bias gradients are summed apart and added after (fixed halves: the same sums
  /// whichever thread runs them).
  public static func convolution2D(
    _ input: Tensor, weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Int = 0, dilation: Int = 1
  ) -> Tensor {
    precondition(
      input.rank == 4 && weight.rank == 4 && input.shape[1] == weight.shape[1],
      "conv2d shapes \(input.shape), \(weight.shape)")
    let (n, channels, height, width) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
    let outputs = weight.shape[0]
    let geometry = WindowGeometry(
      kernelHeight: weight.shape[2], kernelWidth: weight.shape[3], stride: stride, padding: padding, dilation: dilation)
    let outputHeight = geometry.outputExtent(height, kernel: geometry.kernelHeight)
    let outputWidth = geometry.outputExtent(width, kernel: geometry.kernelWidth)
    precondition(outputHeight >= 1 && outputWidth >= 1, "the conv2d window does not fit \(input.shape)")
    let plane = outputHeight * outputWidth
    let patch = channels * geometry.kernelHeight * geometry.kernelWidth
    let sampleSize = channels * height * width
    let samples = SampleLanes(samples: n, outputs: outputs, patch: patch, plane: plane)
    let lanes = samples.lanes
    let result = Tensor(uninitializedShape: [n, outputs, outputHeight, outputWidth])
    let computes = result.hasElements
    let shared = computes && lanes == 2
    do {
      let columns = Tensor(uninitializedShape: [lanes, patch, plane])
      withOneThread(shared) {
        ParallelWork.forEach(n, lanes: lanes, shared: shared, computes: computes) { sample, lane in
          let workspace = columns.storage.base + lane * patch * plane
          if computes {
            im2col(
              input.storage.base + sample * sampleSize, channels: channels, height: height, width: width,
              geometry: geometry, outputHeight: outputHeight, outputWidth: outputWidth, into: workspace)
          }
          let out = result.storage.base + sample * outputs * plane
          // The bias is written first and the product added to it (no separate pass).
          if computes, let bias {
            for o in 0..<outputs { (out + o * plane).update(repeating: bias.storage.base[o], count: plane) }
          }
          gemm(
            weight.storage.base, workspace, out, m: outputs, n: plane, k: patch, transposeA: false,
            transposeB: false, accumulate: bias != nil, computes: computes, oneThreadHeld: lanes == 2)
        }
      }
    }
    let x = input.detached(), w = weight.detached()
    let inputs = [input, weight] + (bias.map { [$0] } ?? [])
    return record(result, inputs: inputs) { g in
      let computes = g.hasElements
      let shared = computes && lanes == 2
      // Zeroed one sample at a time, by the thread that folds that sample's columns into it.
      let gradientInput = input.isDifferentiable ? Tensor(uninitializedShape: input.shape) : nil
      let weightIsLeaf = weight.requiresGradient && weight.node == nil
      // A parameter's gradient is accumulated in place (under shape tracing it is assumed to
      // exist, as in a prepared training step, so nothing is allocated for it).
      let accumulatesInPlace = weightIsLeaf && (weight.storedGradient != nil || !computes)
      var gradientWeight: Tensor? = nil
      // Whether the first sample's product adds to the gradient (false: it overwrites a
      // buffer that zeroGradient() cleared).
      var addsToWeightGradient = true
      if weight.isDifferentiable {
        if accumulatesInPlace {
          if computes, let (buffer, accumulate) = weight.gradientForWriting() {
            gradientWeight = buffer
            addsToWeightGradient = accumulate
          }
        } else {
          gradientWeight = Tensor(zeros: weight.shape)
        }
      }
      let gradientBias = bias?.isDifferentiable == true ? Tensor(zeros: [outputs]) : nil
      // The second half's weight and bias gradients, summed apart when the samples are split.
      let partial = lanes == 2 && weight.isDifferentiable ? Tensor(uninitializedShape: weight.shape) : nil
      let partialBias = lanes == 2 && gradientBias != nil ? Tensor(zeros: [outputs]) : nil
      let columns = Tensor(uninitializedShape: [lanes, patch, plane])
      let columnGradient = gradientInput != nil ? Tensor(uninitializedShape: [lanes, patch, plane]) : nil
      let half = n / 2
      withOneThread(shared) {
        ParallelWork.forEach(n, lanes: lanes, shared: shared, computes: computes) { sample, lane in
          let gy = g.storage.base + sample * outputs * plane
          let workspace = columns.storage.base + lane * patch * plane
          // Lane 1 (the second half, when split) sums into `partial`, starting afresh.
          let target = lane == 1 ? partial : gradientWeight
          let first = lane == 1 ? sample == half : sample == 0
          if let target {
            if computes {
              im2col(
                x.storage.base + sample * sampleSize, channels: channels, height: height, width: width,
                geometry: geometry, outputHeight: outputHeight, outputWidth: outputWidth, into: workspace)
            }
            // dW += dY · colsᵀ
            gemm(
              gy, workspace, target.storage.base, m: outputs, n: patch, k: plane, transposeA: false,
              transposeB: true, accumulate: !first || (lane == 0 && addsToWeightGradient),
              computes: computes && target.hasElements, oneThreadHeld: lanes == 2)
          } else if weightIsLeaf && !computes {
            traceProduct(
              m: outputs, n: patch, k: plane, transposeA: false, transposeB: true, oneThreadHeld: lanes == 2)
          }
          if computes, let biasTarget = lane == 1 ? partialBias : gradientBias {
            // db += Σ over the plane of dY, per output channel.
            let gb = biasTarget.storage.base
            for o in 0..<outputs { gb[o] += VectorMath.sum(gy + o * plane, count: plane) }
          }
          if let gradientInput, let columnGradient {
            // dcols = Wᵀ · dY, folded back into dX.
            let scratch = columnGradient.storage.base + lane * patch * plane
            gemm(
              w.storage.base, gy, scratch, m: patch, n: plane, k: outputs, transposeA: true,
              transposeB: false, accumulate: false, computes: computes, oneThreadHeld: lanes == 2)
            if computes {
              let target = gradientInput.storage.base + sample * sampleSize
              target.update(repeating: 0, count: sampleSize)
              col2im(
                scratch, channels: channels, height: height, width: width, geometry: geometry,
                outputHeight: outputHeight, outputWidth: outputWidth, into: target)
            }
          }
        }
      }
      if computes {
        // The first half (at least one sample) wrote the gradients; the second's sums are added.
        if let partial, let gradientWeight {
          VectorMath.add(partial.storage.base, into: gradientWeight.storage.base, count: weight.count)
        }
        if let partialBias, let gradientBias {
          VectorMath.add(partialBias.storage.base, into: gradientBias.storage.base, count: outputs)
        }
      }
      // A leaf weight's gradient was accumulated in place.
      let weightResult: Tensor? = accumulatesInPlace ? nil : gradientWeight
      return [gradientInput, weightResult] + (bias != nil ? [gradientBias] : [])
    }
  }

  /// How a convolution's samples are shared between threads: two lanes when there are two
  /// samples or more, enough work, and none of the per-sample products allocates inside BLAS
  /// on one OpenBLAS thread (probed; asked before any one-thread region, since a probe takes
  /// the BLAS lock); else one.
  struct SampleLanes {
    let samples: Int, outputs: Int, patch: Int, plane: Int

    var lanes: Int {
      guard ParallelWork.splits(samples, elementsPerItem: patch * plane), let allocates = BLASCall.productAllocates
      else { return 1 }
      let allocating =
        allocates(outputs, plane, patch, false, false) || allocates(outputs, patch, plane, false, true)
        || allocates(patch, plane, outputs, true, false)
      return allocating ? 1 : 2
    }
  }
}
