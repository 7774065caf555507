import CBLAS
import VectorKernels

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
  /// Whether every output plane has the input's extents at stride 1 ("same" padding, such
  /// as a 3×3 window with padding 1): then the window position `(ky, kx)` reads the input
  /// plane shifted by one constant offset, `(ky·dilation − padding)·W + kx·dilation −
  /// padding` in the flattened plane, so a row of the unfolded columns is one contiguous copy
  /// of the plane, with zeros where the shift leaves it (``ShiftedPlane``).
  func keepsExtents(height: Int, width: Int, outputHeight: Int, outputWidth: Int) -> Bool {
    stride == 1 && outputHeight == height && outputWidth == width
  }

  /// The output columns `ox` whose input column `ox·stride + offset` lies in `[0, width)`.
  func validColumns(offset: Int, width: Int, outputWidth: Int) -> Range<Int> {
    let start = offset >= 0 ? 0 : (-offset + stride - 1) / stride
    let limit = width - offset
    let end = limit <= 0 ? 0 : Swift.min(outputWidth, (limit - 1) / stride + 1)
    return Swift.min(start, end)..<end
  }
}

/// One window position `(ky, kx)` of a convolution: output position `(oy, ox)` reads input
/// row `oy·stride + rowShift` and column `ox·stride + columnShift`. Where the window keeps
/// the plane's extents (``WindowGeometry/keepsExtents(height:width:outputHeight:outputWidth:)``,
/// stride 1), output position `i` of the flattened `[H, W]` plane reads input position
/// `i + rowShift·W + columnShift` when its row and column land inside the plane, and zero
/// padding otherwise: ``rows``, ``columns``, ``run`` and ``offset`` describe that case.
struct ShiftedPlane {
  let height: Int, width: Int, rowShift: Int, columnShift: Int

  /// The output rows that read inside the plane.
  var rows: Range<Int> { Swift.max(0, -rowShift)..<Swift.max(Swift.max(0, -rowShift), Swift.min(height, height - rowShift)) }
  /// The output columns that read inside the plane.
  var columns: Range<Int> { Swift.max(0, -columnShift)..<Swift.max(Swift.max(0, -columnShift), Swift.min(width, width - columnShift)) }
  /// The flattened output positions from the first inside to the last inside, one
  /// contiguous run (columns outside in between are fixed up by the caller).
  var run: Range<Int> {
    guard !rows.isEmpty && !columns.isEmpty else { return 0..<0 }
    return (rows.lowerBound * width + columns.lowerBound)..<((rows.upperBound - 1) * width + columns.upperBound)
  }
  /// What to add to an output position to get the input position it reads.
  var offset: Int { rowShift * width + columnShift }

  /// Calls `body(channel, row, position)` for every row of a sample's unfolded columns, in
  /// order: each channel's window positions.
  static func forEach(
    channels: Int, height: Int, width: Int, geometry g: WindowGeometry, _ body: (Int, Int, ShiftedPlane) -> Void
  ) {
    var row = 0
    for c in 0..<channels {
      for ky in 0..<g.kernelHeight {
        for kx in 0..<g.kernelWidth {
          body(
            c, row,
            ShiftedPlane(
              height: height, width: width, rowShift: ky * g.dilation - g.padding,
              columnShift: kx * g.dilation - g.padding))
          row += 1
        }
      }
    }
  }

  /// Zeros at `positions` of `target`: a run as short as a window's column shift (one float
  /// for a 3×3 window), stored directly. A loop of zero stores is compiled into a `memset`
  /// call, which for one or two floats costs many times the stores.
  static func storeZeros(_ target: UnsafeMutablePointer<Float>, at positions: Range<Int>) {
    switch positions.count {
    case 0: break
    case 1: target[positions.lowerBound] = 0
    case 2:
      target[positions.lowerBound] = 0
      target[positions.lowerBound + 1] = 0
    default: (target + positions.lowerBound).update(repeating: 0, count: positions.count)
    }
  }

  /// Calls `body` with every run of output positions, inside the rows that read the plane,
  /// whose columns fall outside it (at most one run per row side).
  func forEachOutsideRun(_ body: (Range<Int>) -> Void) {
    let columns = self.columns
    for row in rows {
      if columns.lowerBound > 0 { body((row * width)..<(row * width + columns.lowerBound)) }
      if columns.upperBound < width { body((row * width + columns.upperBound)..<((row + 1) * width)) }
    }
  }
}

extension Tensor {
  /// Whether the CPU has AVX-512F, so that windows that keep the plane's extents unfold and
  /// fold, and 2×2 max pooling runs, in the masked AVX-512 kernels of `VectorKernels`.
  static let runsMaskedKernels = gradaccum_has_avx512f() != 0

  /// Whether ``im2col(_:channels:height:width:geometry:outputHeight:outputWidth:into:rowStride:zerosInPlace:masked:)``
  /// and ``col2im(_:channels:height:width:geometry:outputHeight:outputWidth:into:rowStride:masked:)``
  /// hand a window to the masked kernels: `masked`, a window that keeps the plane's extents,
  /// and a plane the kernels take.
  static func windowRunsMasked(_ masked: Bool, keepsExtents: Bool, height: Int, width: Int) -> Bool {
    masked && keepsExtents && gradaccum_unfolds_masked(height, width) != 0
  }

  /// Unfolds one sample `[C, H, W]` (at `source`) into columns `[C·kh·kw, Ho·Wo]`, rows
  /// `rowStride` floats apart (`Ho·Wo` unless several samples are side by side): each
  /// output row is a strided run of one input row (a copy at stride 1), zeros outside.
  ///
  /// Where the zeros go depends only on the geometry, not on the sample: `zerosInPlace`
  /// says the columns already hold another sample unfolded with the same geometry and row
  /// stride, so that only the values are written (short zero runs at each row's start and
  /// end cost a `memset` call each, hundreds of thousands per step of a wide convolution).
  ///
  /// `masked`: on a CPU with AVX-512, a window that keeps the plane's extents is unfolded by
  /// `gradaccum_unfold_keeping_extents` (the flattened plane 16 positions at a time, masked
  /// loads, no bounds to test per run); the same values as the loops below.
  static func im2col(
    _ source: UnsafePointer<Float>, channels: Int, height: Int, width: Int, geometry g: WindowGeometry,
    outputHeight: Int, outputWidth: Int, into columns: UnsafeMutablePointer<Float>, rowStride: Int,
    zerosInPlace: Bool = false, masked: Bool = runsMaskedKernels
  ) {
    let keepsExtents = g.keepsExtents(height: height, width: width, outputHeight: outputHeight, outputWidth: outputWidth)
    if windowRunsMasked(masked, keepsExtents: keepsExtents, height: height, width: width) {
      gradaccum_unfold_keeping_extents(
        source, channels, height, width, g.kernelHeight, g.kernelWidth, g.padding, g.dilation, columns, rowStride)
      return
    }
    if keepsExtents {
      // One contiguous copy per window position; then zeros where the shift leaves the plane.
      let plane = height * width
      ShiftedPlane.forEach(channels: channels, height: height, width: width, geometry: g) { c, row, shifted in
        let target = columns + row * rowStride, run = shifted.run
        if run.isEmpty {
          if !zerosInPlace { target.update(repeating: 0, count: plane) }
        } else {
          if !zerosInPlace {
            target.update(repeating: 0, count: run.lowerBound)
            (target + run.upperBound).update(repeating: 0, count: plane - run.upperBound)
          }
          (target + run.lowerBound).update(from: source + c * plane + run.lowerBound + shifted.offset, count: run.count)
          // Inside the run, where the copy read the next row: as long as the column shift
          // (one float for a 3×3 window), stored directly, not through a `memset` call.
          shifted.forEachOutsideRun { ShiftedPlane.storeZeros(target, at: $0) }
        }
      }
      return
    }
    ShiftedPlane.forEach(channels: channels, height: height, width: width, geometry: g) { c, row, position in
      let target = columns + row * rowStride
      let valid = g.validColumns(offset: position.columnShift, width: width, outputWidth: outputWidth)
      for oy in 0..<outputHeight {
        let y = oy * g.stride + position.rowShift
        let out = target + oy * outputWidth
        guard y >= 0 && y < height && !valid.isEmpty else {
          if !zerosInPlace { out.update(repeating: 0, count: outputWidth) }
          continue
        }
        // A few floats of padding at either edge.
        if !zerosInPlace {
          for ox in 0..<valid.lowerBound { out[ox] = 0 }
          for ox in valid.upperBound..<outputWidth { out[ox] = 0 }
        }
        let input = source + (c * height + y) * width + position.columnShift
        // Rows are short: an inline loop beats a memmove call per row.
        if g.stride == 1 {
          for ox in valid { out[ox] = input[ox] }
        } else {
          for ox in valid { out[ox] = input[ox * g.stride] }
        }
      }
    }
  }

  /// Folds columns `[C·kh·kw, Ho·Wo]` (rows `rowStride` floats apart) back, adding into one
  /// sample's gradient `[C, H, W]`. Where the window keeps the plane's extents, the columns
  /// that read padding are set to zero on the way (they are scratch), so that each window
  /// position adds one contiguous run: `x + 0 = x`, the same sums as adding row by row.
  /// `masked`: as for ``im2col(_:channels:height:width:geometry:outputHeight:outputWidth:into:rowStride:zerosInPlace:masked:)``,
  /// `gradaccum_fold_keeping_extents` (which leaves the columns as they are).
  static func col2im(
    _ columns: UnsafeMutablePointer<Float>, channels: Int, height: Int, width: Int, geometry g: WindowGeometry,
    outputHeight: Int, outputWidth: Int, into target: UnsafeMutablePointer<Float>, rowStride: Int,
    masked: Bool = runsMaskedKernels
  ) {
    let keepsExtents = g.keepsExtents(height: height, width: width, outputHeight: outputHeight, outputWidth: outputWidth)
    if windowRunsMasked(masked, keepsExtents: keepsExtents, height: height, width: width) {
      gradaccum_fold_keeping_extents(
        columns, channels, height, width, g.kernelHeight, g.kernelWidth, g.padding, g.dilation, target, rowStride)
      return
    }
    if keepsExtents {
      let plane = height * width
      ShiftedPlane.forEach(channels: channels, height: height, width: width, geometry: g) { c, row, shifted in
        let source = columns + row * rowStride, run = shifted.run
        guard !run.isEmpty else { return }
        shifted.forEachOutsideRun { ShiftedPlane.storeZeros(source, at: $0.clamped(to: run)) }
        VectorMath.add(
          source + run.lowerBound, into: target + c * plane + run.lowerBound + shifted.offset, count: run.count)
      }
      return
    }
    ShiftedPlane.forEach(channels: channels, height: height, width: width, geometry: g) { c, row, position in
      let source = columns + row * rowStride
      let valid = g.validColumns(offset: position.columnShift, width: width, outputWidth: outputWidth)
      for oy in 0..<outputHeight {
        let y = oy * g.stride + position.rowShift
        guard y >= 0 && y < height else { continue }
        let input = source + oy * outputWidth
        let output = target + (c * height + y) * width + position.columnShift
        if g.stride == 1 {
          VectorMath.add(input + valid.lowerBound, into: output + valid.lowerBound, count: valid.count)
        } else {
          for ox in valid { output[ox &* g.stride] += input[ox] }
        }
      }
    }
  }

  /// A 2-D convolution of `input` `[N, C, H, W]` with `weight` `[O, C, kh, kw]` and an
  /// optional `bias` `[O]`, as PyTorch's `conv2d` (groups = 1): the samples are unfolded
  /// (im2col) `samplesPerProduct` at a time, side by side in one `[C·kh·kw, G·Ho·Wo]`
  /// workspace, and multiplied by the weight with `cblas_sgemm`. Backward recomputes the
  /// columns rather than keeping them.
  ///
  /// One sample per product is the default. Several make the products wider, which pays
  /// where one sample's plane is small (a product of 64 columns runs well below `sgemm`'s
  /// speed); their output passes through a `[O, G·Ho·Wo]` staging buffer (and the output's
  /// gradient too, in backward), since samples side by side are not NCHW.
  ///
  /// When each group's products allocate nothing on one OpenBLAS thread (probed), the
  /// groups are shared between two threads (``ParallelWork``), each with its own workspace
  /// (traced) and its products on one OpenBLAS thread: two groups at once on two cores
  /// rather than each small product split between OpenBLAS's threads. The second half's
  /// weight and bias gradients are summed apart and added after (fixed halves: the same sums
  /// whichever thread runs them).
  /// - Precondition: `samplesPerProduct ≥ 1`.
  public static func convolution2D(
    _ input: Tensor, weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Int = 0, dilation: Int = 1,
    samplesPerProduct: Int = 1
  ) -> Tensor {
    precondition(
      input.rank == 4 && weight.rank == 4 && input.shape[1] == weight.shape[1],
      "conv2d shapes \(input.shape), \(weight.shape)")
    precondition(samplesPerProduct >= 1, "samplesPerProduct is \(samplesPerProduct), expected ≥ 1")
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
    let groups = ProductGroups(samples: n, perProduct: samplesPerProduct, plane: plane)
    let columnsPerGroup = groups.perProduct * plane
    let lanes = SampleLanes(groups: groups, outputs: outputs, patch: patch).lanes
    let result = Tensor(uninitializedShape: [n, outputs, outputHeight, outputWidth])
    let computes = result.hasElements
    let shared = computes && lanes == 2
    /// Unfolds a group's samples side by side into its lane's `workspace`, rows `span` (the
    /// group's columns) apart; the zeros only where the workspace does not hold them yet
    /// (``ProductGroups/findsZerosInPlace(_:lanes:)``).
    func unfold(_ source: Tensor, _ samples: Range<Int>, into workspace: UnsafeMutablePointer<Float>) {
      let zerosInPlace = groups.findsZerosInPlace(samples, lanes: lanes)
      for (index, sample) in samples.enumerated() {
        im2col(
          source.storage.base + sample * sampleSize, channels: channels, height: height, width: width,
          geometry: geometry, outputHeight: outputHeight, outputWidth: outputWidth, into: workspace + index * plane,
          rowStride: samples.count * plane, zerosInPlace: zerosInPlace)
      }
    }
    do {
      let workspaces = Tensor(uninitializedShape: [lanes, patch, columnsPerGroup])
      let staging = groups.stages ? Tensor(uninitializedShape: [lanes, outputs, columnsPerGroup]) : nil
      withOneThread(shared) {
        groups.forEach(lanes: lanes, shared: shared, computes: computes) { samples, lane in
          let workspace = workspaces.storage.base + lane * patch * columnsPerGroup
          let span = samples.count * plane
          if computes { unfold(input, samples, into: workspace) }
          // One sample: straight into the output. Several: into staging, then to each sample.
          let out = staging.map { $0.storage.base + lane * outputs * columnsPerGroup }
            ?? result.storage.base + samples.lowerBound * outputs * plane
          // The bias is written first and the product added to it (no separate pass).
          if computes, let bias {
            for o in 0..<outputs { (out + o * span).update(repeating: bias.storage.base[o], count: span) }
          }
          gemm(
            weight.storage.base, workspace, out, m: outputs, n: span, k: patch, transposeA: false,
            transposeB: false, accumulate: bias != nil, computes: computes, oneThreadHeld: lanes == 2)
          if computes && staging != nil {
            groups.copy(out, rowStride: span, toSamples: samples, of: result.storage.base, outputs: outputs)
          }
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
      // Whether the first group's product adds to the gradient (false: it overwrites a
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
      // The second half's weight and bias gradients, summed apart when the groups are split.
      let partial = lanes == 2 && weight.isDifferentiable ? Tensor(uninitializedShape: weight.shape) : nil
      let partialBias = lanes == 2 && gradientBias != nil ? Tensor(zeros: [outputs]) : nil
      let workspaces = Tensor(uninitializedShape: [lanes, patch, columnsPerGroup])
      let columnGradient = gradientInput != nil ? Tensor(uninitializedShape: [lanes, patch, columnsPerGroup]) : nil
      // Several samples' output gradients side by side, as the products take them.
      let staging = groups.stages ? Tensor(uninitializedShape: [lanes, outputs, columnsPerGroup]) : nil
      let half = groups.count / 2
      withOneThread(shared) {
        groups.forEach(lanes: lanes, shared: shared, computes: computes) { samples, lane in
          let span = samples.count * plane
          let gy: UnsafePointer<Float>
          if let staging {
            let gathered = staging.storage.base + lane * outputs * columnsPerGroup
            if computes {
              groups.copy(fromSamples: samples, of: g.storage.base, outputs: outputs, to: gathered, rowStride: span)
            }
            gy = UnsafePointer(gathered)
          } else {
            gy = UnsafePointer(g.storage.base + samples.lowerBound * outputs * plane)
          }
          let workspace = workspaces.storage.base + lane * patch * columnsPerGroup
          // Lane 1 (the second half, when split) sums into `partial`, starting afresh.
          let target = lane == 1 ? partial : gradientWeight
          let group = samples.lowerBound / groups.perProduct
          let first = lane == 1 ? group == half : group == 0
          if let target {
            if computes { unfold(x, samples, into: workspace) }
            // dW += dY · colsᵀ
            gemm(
              gy, workspace, target.storage.base, m: outputs, n: patch, k: span, transposeA: false,
              transposeB: true, accumulate: !first || (lane == 0 && addsToWeightGradient),
              computes: computes && target.hasElements, oneThreadHeld: lanes == 2)
          } else if weightIsLeaf && !computes {
            traceProduct(
              m: outputs, n: patch, k: span, transposeA: false, transposeB: true, oneThreadHeld: lanes == 2)
          }
          if computes, let biasTarget = lane == 1 ? partialBias : gradientBias {
            // db += Σ over the plane of dY, per output channel.
            let gb = biasTarget.storage.base
            for o in 0..<outputs { gb[o] += VectorMath.sum(gy + o * span, count: span) }
          }
          if let gradientInput, let columnGradient {
            // dcols = Wᵀ · dY, folded back into dX.
            let scratch = columnGradient.storage.base + lane * patch * columnsPerGroup
            gemm(
              w.storage.base, gy, scratch, m: patch, n: span, k: outputs, transposeA: true,
              transposeB: false, accumulate: false, computes: computes, oneThreadHeld: lanes == 2)
            if computes {
              for (index, sample) in samples.enumerated() {
                let target = gradientInput.storage.base + sample * sampleSize
                target.update(repeating: 0, count: sampleSize)
                col2im(
                  scratch + index * plane, channels: channels, height: height, width: width, geometry: geometry,
                  outputHeight: outputHeight, outputWidth: outputWidth, into: target, rowStride: span)
              }
            }
          }
        }
      }
      if computes {
        // The first half (at least one group) wrote the gradients; the second's sums are added.
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

  /// The samples of a convolution taken `perProduct` at a time (the last group may hold
  /// fewer), and how each group's output and gradient move between NCHW and the
  /// side-by-side layout of its products.
  struct ProductGroups {
    let samples: Int, perProduct: Int, plane: Int

    init(samples: Int, perProduct: Int, plane: Int) {
      (self.samples, self.plane) = (samples, plane)
      self.perProduct = Swift.max(1, Swift.min(perProduct, samples))
    }

    /// How many groups.
    var count: Int { (samples + perProduct - 1) / perProduct }
    /// Whether outputs pass through a staging buffer (more than one sample per product).
    var stages: Bool { perProduct > 1 }

    /// The samples of group `index`.
    func samples(_ index: Int) -> Range<Int> { (index * perProduct)..<Swift.min(samples, (index + 1) * perProduct) }

    /// Whether a lane's workspace, when `group` (a full group) is unfolded into it, already
    /// holds the zeros of that unfolding: every group but the first of its lane (as
    /// ``forEach(lanes:shared:computes:_:)`` deals them) follows a full group of the same
    /// lane, whose unfolding left zeros in the same places. A smaller last group has other
    /// row strides and writes its own.
    func findsZerosInPlace(_ group: Range<Int>, lanes: Int) -> Bool {
      let index = group.lowerBound / perProduct
      return group.count == perProduct && index != 0 && !(lanes == 2 && index == count / 2)
    }

    /// Calls `body(samples, lane)` for every group, as ``ParallelWork/forEach(_:lanes:shared:computes:_:)``
    /// does for items. Under shape tracing (`computes` false) also for a last group smaller
    /// than the others: its products have other extents, which a trace records.
    func forEach(lanes: Int, shared: Bool, computes: Bool, _ body: (Range<Int>, Int) -> Void) {
      ParallelWork.forEach(count, lanes: lanes, shared: shared, computes: computes) { body(samples($0), $1) }
      if !computes && count > 1 && samples % perProduct != 0 { body(samples(count - 1), lanes == 2 ? 1 : 0) }
    }

    /// Copies rows `[outputs, samples.count · plane]` (`rowStride` apart) to the samples'
    /// places in an NCHW tensor at `target`.
    func copy(
      _ source: UnsafePointer<Float>, rowStride: Int, toSamples group: Range<Int>, of target: UnsafeMutablePointer<Float>,
      outputs: Int
    ) {
      for (index, sample) in group.enumerated() {
        for o in 0..<outputs {
          (target + (sample * outputs + o) * plane).update(from: source + o * rowStride + index * plane, count: plane)
        }
      }
    }

    /// The reverse: the samples' `[outputs, plane]` of the NCHW tensor at `source` side by
    /// side into rows `rowStride` apart at `target`.
    func copy(
      fromSamples group: Range<Int>, of source: UnsafePointer<Float>, outputs: Int, to target: UnsafeMutablePointer<Float>,
      rowStride: Int
    ) {
      for (index, sample) in group.enumerated() {
        for o in 0..<outputs {
          (target + o * rowStride + index * plane).update(from: source + (sample * outputs + o) * plane, count: plane)
        }
      }
    }
  }

  /// How a convolution's groups of samples are shared between threads: two lanes when
  /// there are two groups or more, enough work, and none of the groups' products (of the
  /// full groups and of a smaller last one) allocates inside BLAS on one OpenBLAS thread
  /// (probed; asked before any one-thread region, since a probe takes the BLAS lock); else
  /// one.
  struct SampleLanes {
    let groups: ProductGroups, outputs: Int, patch: Int

    var lanes: Int {
      let full = groups.perProduct * groups.plane
      guard ParallelWork.splits(groups.count, elementsPerItem: patch * full), let allocates = BLASCall.productAllocates
      else { return 1 }
      let widths = Set([full, groups.samples(groups.count - 1).count * groups.plane])
      let allocating = widths.contains { width in
        allocates(outputs, width, patch, false, false) || allocates(outputs, patch, width, false, true)
          || allocates(patch, width, outputs, true, false)
      }
      return allocating ? 1 : 2
    }
  }
}
