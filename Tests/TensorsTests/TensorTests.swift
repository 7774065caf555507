import Foundation
import Testing
import VectorKernels
import _TestSupport

@testable import Tensors

@Suite("Tensor values and autograd semantics")
struct TensorTests {
  @Test func broadcastingForwardValues() {
    let a = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
    let b = Tensor([10, 20, 30], shape: [3])
    #expect((a + b).values == [11, 22, 33, 14, 25, 36])
    let column = Tensor([1, 2], shape: [2, 1])
    #expect((a * column).values == [1, 2, 3, 8, 10, 12])
    #expect((a - 1).values == [0, 1, 2, 3, 4, 5])
    #expect(Tensor.broadcastShape([2, 1, 4], [3, 1]) == [2, 3, 4])
    #expect(Tensor.broadcastShape([2, 3], [4]) == nil)
  }

  @Test func matrixProductValues() {
    let a = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
    let b = Tensor([7, 8, 9, 10, 11, 12], shape: [3, 2])
    #expect(Tensor.matmul(a, b).values == [58, 64, 139, 154])
    // aᵀ·aᵀᵀ… with flags: (aᵀ)(bᵀ) where a is [3,2]ᵀ view.
    #expect(Tensor.matmul(b, a, transposingLeft: true, transposingRight: true).values == [58, 139, 64, 154])
  }

  @Test func reductionValues() {
    let x = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
    #expect(x.sum().scalarValue == 21)
    #expect(x.sum(alongAxes: [0]).values == [5, 7, 9])
    #expect(x.sum(alongAxes: [1], keepingDimensions: true).shape == [2, 1])
    #expect(x.mean(alongAxes: [1]).values == [2, 5])
    #expect(x.transposed().values == [1, 4, 2, 5, 3, 6])
  }

  @Test func softmaxIsStableForLargeLogits() {
    let x = Tensor([1000, 1001, 1002, -1000, 0, 1000], shape: [2, 3])
    let y = x.softmax().values
    expectClose(Array(y[0..<3]), [0.09003057, 0.24472848, 0.66524094], relative: 1e-5)
    #expect(y.allSatisfy { $0.isFinite })
    let logY = x.logSoftmax().values
    expectClose(Array(logY[0..<3]), [-2.40760596, -1.40760596, -0.40760596], relative: 1e-4)
    #expect(logY[3] == -2000)
  }

  @Test func geluUsesTheErfForm() {
    // torch.nn.functional.gelu(tensor([-1., 0.5, 2.])) with approximate='none'.
    expectClose(Tensor([-1, 0.5, 2], shape: [3]).gelu().values, [-0.15865526, 0.34573123, 1.9544997], relative: 1e-6)
  }

  /// The vector erf and exp behind GELU, against the C library in Double on a dense grid
  /// (and GELU and its derivative with them).
  @Test func vectorErfAndExpAreAccurate() {
    let grid = (0..<200_003).map { Float(-10 + 20 * Double($0) / 200_002) }
    var worstErf: Double = 0, worstExp: Double = 0
    for v in grid {
      worstErf = max(worstErf, abs(Double(VectorMath.erf(v)) - Foundation.erf(Double(v))))
      let reference = Foundation.exp(Double(-0.5 * v * v))
      if reference > 1e-37 {
        worstExp = max(worstExp, abs(Double(VectorMath.expNonPositive(-0.5 * v * v)) - reference) / reference)
      }
    }
    #expect(worstErf < 5e-7, "erf error \(worstErf)")
    #expect(worstExp < 3e-7, "exp relative error \(worstExp)")
    let x = Tensor(grid, shape: [grid.count], requiresGradient: true)
    let y = x.gelu()
    y.backward(seed: Tensor(repeating: 1, shape: [grid.count]))
    let values = y.values, slopes = x.gradient!.values
    for (index, v) in grid.enumerated() {
      let d = Double(v), cdf = 0.5 * (1 + Foundation.erf(d / 2.squareRoot()))
      let pdf = Foundation.exp(-0.5 * d * d) / (2 * Double.pi).squareRoot()
      #expect(abs(Double(values[index]) - d * cdf) <= 1e-6 * max(1, abs(d)), "gelu(\(v))")
      #expect(abs(Double(slopes[index]) - (cdf + d * pdf)) <= 2e-6, "gelu'(\(v))")
      if abs(Double(values[index]) - d * cdf) > 1e-6 * max(1, abs(d)) { break }
    }
  }

  /// The GELU kernels run compiled for this CPU's widest vectors (`VectorKernels`); they
  /// must give the `VectorMath` formulas' results bit for bit, so that every CPU computes
  /// the same: on a dense grid, at the clamps, infinities and NaN, and at odd lengths that
  /// leave a vector tail.
  @Test func geluKernelsEqualTheFormulas() {
    var inputs = (0..<100_003).map { Float(-12 + 24 * Double($0) / 100_002) }
    inputs += [-87.5, -4, 4, -0, 0, .infinity, -.infinity, .nan, .leastNonzeroMagnitude, -.greatestFiniteMagnitude]
    let gradients = inputs.indices.map { Float(1 + ($0 % 7)) * 0.37 }
    let root: Float = 0.70710678118654752440, densityScale: Float = 0.39894228040143267794
    for count in [inputs.count, 1, 15, 17, 33] {
      var values = [Float](repeating: 0, count: count), slopes = values
      Tensor.geluValues(inputs, &values, count)
      Tensor.geluGradient(gradients, inputs, &slopes, count)
      // In place (output = input, output = g), as recomputation's backward runs them.
      var inPlaceValues = Array(inputs.prefix(count)), inPlaceSlopes = Array(gradients.prefix(count))
      inPlaceValues.withUnsafeMutableBufferPointer { Tensor.geluValues($0.baseAddress!, $0.baseAddress!, count) }
      inPlaceSlopes.withUnsafeMutableBufferPointer { Tensor.geluGradient($0.baseAddress!, inputs, $0.baseAddress!, count) }
      #expect(inPlaceValues.map(\.bitPattern) == values.map(\.bitPattern))
      #expect(inPlaceSlopes.map(\.bitPattern) == slopes.map(\.bitPattern))
      for i in 0..<count {
        let x = inputs[i]
        let value = 0.5 * x * (1 + VectorMath.erf(x * root))
        let cdf = 0.5 * (1 + VectorMath.erf(x * root))
        let slope = gradients[i] * (cdf + x * (densityScale * VectorMath.expNonPositive(-0.5 * x * x)))
        #expect(values[i].bitPattern == value.bitPattern || (values[i].isNaN && value.isNaN), "gelu(\(x))")
        #expect(slopes[i].bitPattern == slope.bitPattern || (slopes[i].isNaN && slope.isNaN), "gelu'(\(x))")
      }
    }
  }

  /// The softmaxes' exponentials run compiled for this CPU's widest vectors too
  /// (`gradaccum_exponentials`): bit for bit `VectorMath.expNonPositive(scale·x − shift)`,
  /// in place or not, at lengths that leave a vector tail, with the sum of what they wrote.
  @Test func exponentialKernelEqualsTheFormula() {
    let grid: [Float] = (0..<20_011).map { Float(-100 + 100 * Double($0) / 20_010) }
    let inputs: [Float] = grid + [-87.5, -0, 0, -.infinity, .nan]
    for (scale, shift) in [(Float(1), Float(0)), (0.17677669, 3.5)] {
      for count in [inputs.count, 1, 15, 17, 33] {
        var values = [Float](repeating: 0, count: count)
        let total = VectorMath.exponentials(inputs, count: count, scale: scale, shift: shift, into: &values)
        var inPlace = Array(inputs.prefix(count))
        _ = inPlace.withUnsafeMutableBufferPointer {
          VectorMath.exponentials($0.baseAddress!, count: count, scale: scale, shift: shift, into: $0.baseAddress!)
        }
        #expect(inPlace.map(\.bitPattern) == values.map(\.bitPattern))
        for i in 0..<count {
          let x = inputs[i]
          let expected = VectorMath.expNonPositive(x * scale - shift)
          #expect(values[i].bitPattern == expected.bitPattern || (values[i].isNaN && expected.isNaN), "exp(\(x))")
        }
        let sum = VectorMath.sum(values, count: count)
        #expect(total.bitPattern == sum.bitPattern || (total.isNaN && sum.isNaN))
      }
    }
  }

  /// Log-softmax's gradient evaluates `exp` in double precision and rounds once: against
  /// `exp` in Double rounded to Float on a dense grid down to where floats underflow, every
  /// value within one unit in the last place and all but a few equal.
  @Test func logSoftmaxGradientKernelRoundsExpCorrectly() {
    let grid: [Float] = (0..<400_001).map { Float(-110 * Double($0) / 400_000) }
    let inputs: [Float] = grid + [-0, -.infinity, -1e-30, -300]
    // g = 0 and total = −1 leave exp(x) itself.
    var output = [Float](repeating: 0, count: inputs.count)
    let zeros = [Float](repeating: 0, count: inputs.count)
    gradaccum_log_softmax_gradient(zeros, inputs, -1, &output, inputs.count)
    var unequal = 0
    for (index, x) in inputs.enumerated() {
      let expected = Float(Foundation.exp(Double(x)))
      if output[index] != expected { unequal += 1 }
      #expect(abs(output[index] - expected) <= expected.ulp, "exp(\(x)): \(output[index]) against \(expected)")
    }
    #expect(unequal <= 2, "\(unequal) values differ from the correctly rounded exp")
    // And the gradient itself: g − exp(log p)·total.
    var gradient = [Float](repeating: 0, count: 3)
    gradaccum_log_softmax_gradient([0.5, -1, 2], [-0.5, -2, -0.25], 1.5, &gradient, 3)
    for (index, (g, y)) in zip([Float(0.5), -1, 2], [Float(-0.5), -2, -0.25]).enumerated() {
      #expect(gradient[index] == g - Float(Foundation.exp(Double(y))) * 1.5)
    }
  }

  @Test func gradientsAccumulateAcrossBackwardCallsUntilCleared() {
    let w = Tensor([1, 2], shape: [2], requiresGradient: true)
    (w * 3).sum().backward()
    (w * w).sum().backward()
    #expect(w.gradient?.values == [3 + 2, 3 + 4])
    w.zeroGradient()
    #expect(w.gradient?.values == [0, 0])
    w.clearGradient()
    #expect(w.gradient == nil)
  }

  @Test func backwardReleasesTheGraph() {
    let w = Tensor([1, 2], shape: [2], requiresGradient: true)
    let hidden = w.exp()
    let loss = hidden.sum()
    #expect(loss.isDifferentiable)
    loss.backward()
    #expect(!hidden.isDifferentiable)
    #expect(!loss.isDifferentiable)
  }

  @Test func constantsRecordNoGraph() {
    let x = Tensor([1, 2], shape: [2])
    #expect(!(x * x).exp().isDifferentiable)
  }

  @Test func reshapeSharesElements() {
    let x = Tensor([1, 2, 3, 4], shape: [2, 2])
    let y = x.reshaped(to: [4])
    #expect(y.storage === x.storage)
    #expect(y.shape == [4])
  }

  @Test func randomGeneratorIsSeeded() {
    var a = RandomGenerator(seed: 7), b = RandomGenerator(seed: 7), c = RandomGenerator(seed: 8)
    let first = (0..<4).map { _ in a.uniform(0, 1) }
    #expect(first == (0..<4).map { _ in b.uniform(0, 1) })
    #expect(first != (0..<4).map { _ in c.uniform(0, 1) })
    var normal = RandomGenerator(seed: 3)
    let samples = (0..<20_000).map { _ in normal.normal() }
    let mean = samples.reduce(0, +) / Float(samples.count)
    let variance = samples.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(samples.count)
    #expect(abs(mean) < 0.03 && abs(variance - 1) < 0.05)
  }
}

@Suite("Gradient recording")
struct GradientRecordingTests {
  /// A graph that is never differentiated is freed with its output: no op's backward
  /// closure may hold the op's own result (a cycle that leaked every such graph).
  @Test func aDroppedGraphIsFreed() {
    let x = Tensor([0.5, -1, 2, 3], shape: [2, 2], requiresGradient: true)
    let weight = Tensor([1, 2, 3, 4], shape: [2, 2], requiresGradient: true)
    let operations: [(String, (Tensor) -> Tensor)] = [
      ("exp", { $0.exp() }), ("squareRoot", { $0.absoluteValue().squareRoot() }), ("relu", { $0.relu() }),
      ("tanh", { $0.tanh() }), ("sigmoid", { $0.sigmoid() }), ("gelu", { $0.gelu() }),
      ("softmax", { $0.softmax(alongAxis: -1) }), ("logSoftmax", { $0.logSoftmax(alongAxis: -1) }),
      ("matmul", { Tensor.matmul($0, weight) }), ("linear", { Tensor.linear($0, weight: weight, bias: nil) }),
      ("quotient", { $0 / (weight + 1) }), ("sum", { $0.sum(alongAxes: [0]) }),
      ("batch normalization", { Tensor.batchNormalization($0, weight: nil, bias: nil, epsilon: 1e-5).output }),
      ("squared error", { Tensor.squaredErrorSum($0, weight) }),
    ]
    for (name, operation) in operations {
      weak var output: Tensor?
      do {
        let y = operation(x * 2)
        #expect(y.isDifferentiable, "\(name)")
        output = y
      }
      #expect(output == nil, "\(name): the output of a graph nobody differentiates was not freed")
    }
  }

  @Test func withoutRecordingMakesPlainTensors() {
    let w = Tensor([1, 2], shape: [2], requiresGradient: true)
    let inside = GradientRecording.withoutRecording { (w * w).exp().sum() }
    #expect(!inside.isDifferentiable)
    #expect(abs(inside.scalarValue - 57.316_788) < 1e-3)  // e¹ + e⁴
    #expect(!GradientRecording.isPaused)
    #expect((w * w).isDifferentiable)
  }
}

/// Work split between two threads: every index once, and the same values as on one thread.
@Suite("Parallel elementwise work")
struct ParallelWorkTests {
  @Test(arguments: [1, 2, 1000, ParallelWork.minimumElements - 1, ParallelWork.minimumElements, 100_003])
  func everyIndexOnce(count: Int) {
    ParallelWork.prepare()
    let visits = UnsafeMutablePointer<Int32>.allocate(capacity: max(count, 1))
    defer { visits.deallocate() }
    visits.initialize(repeating: 0, count: max(count, 1))
    ParallelWork.split(count) { range in for i in range { visits[i] += 1 } }
    #expect((0..<count).allSatisfy { visits[$0] == 1 })
    var ran = false
    ParallelWork.split(count, computes: false) { _ in ran = true }
    #expect(!ran || count < 2, "a traced split runs nothing")
  }

  /// Large elementwise ops (split) against the same ops on slices small enough to run on
  /// one thread: equal bit for bit, forward and backward.
  @Test func splitKernelsMatchOneThread() {
    let count = 4 * ParallelWork.minimumElements + 3
    let x = randomTensor([count], low: -3, high: 3, seed: 5)
    x.requiresGradient = true
    let y = x.gelu()
    (y * y).sum().backward()
    let chunk = 1000
    for start in stride(from: 0, to: count, by: chunk) {
      let part = Tensor(Array(x.values[start..<min(start + chunk, count)]), shape: [min(chunk, count - start)])
      part.requiresGradient = true
      let py = part.gelu()
      (py * py).sum().backward()
      #expect(py.values == Array(y.values[start..<min(start + chunk, count)]))
      #expect(part.gradient!.values == Array(x.gradient!.values[start..<min(start + chunk, count)]))
    }
    // Layer normalization, rows split: outputs and input gradients equal those of slices
    // too small to split; parameter gradients (summed per half, then added) within rounding.
    let (rows, width) = (512, 128)
    let input = randomTensor([rows, width], seed: 7), weight = randomTensor([width], seed: 8)
    let bias = randomTensor([width], seed: 9), upstream = randomTensor([rows, width], seed: 10)
    for t in [input, weight, bias] { t.requiresGradient = true }
    let normalized = Tensor.layerNormalization(input, weight: weight, bias: bias, epsilon: 1e-5)
    (normalized * upstream).sum().backward()
    var weightSum = [Double](repeating: 0, count: width), biasSum = weightSum
    for start in stride(from: 0, to: rows, by: 64) {
      let range = (start * width)..<((start + 64) * width)
      let part = Tensor(Array(input.values[range]), shape: [64, width])
      let w = Tensor(weight.values, shape: [width]), b = Tensor(bias.values, shape: [width])
      for t in [part, w, b] { t.requiresGradient = true }
      let y = Tensor.layerNormalization(part, weight: w, bias: b, epsilon: 1e-5)
      (y * Tensor(Array(upstream.values[range]), shape: [64, width])).sum().backward()
      #expect(y.values == Array(normalized.values[range]))
      #expect(part.gradient!.values == Array(input.gradient!.values[range]))
      for i in 0..<width {
        weightSum[i] += Double(w.gradient!.values[i])
        biasSum[i] += Double(b.gradient!.values[i])
      }
    }
    expectClose(weight.gradient!.values, weightSum.map { Float($0) }, relative: 1e-4)
    expectClose(bias.gradient!.values, biasSum.map { Float($0) }, relative: 1e-4)
    // Column sums (a bias's gradient), columns split: each the rows added in order.
    // Widths that leave blocks of 64, of 16 and single columns, split or not.
    for (rows, columns) in [(600, 128), (600, 200), (600, 83), (3, 7), (1, 64)] {
      let matrix = randomTensor([rows, columns], seed: 11)
      let sums = matrix.summedKeepingDimension(0).values
      for column in 0..<columns {
        var total: Float = 0
        for row in 0..<rows { total += matrix.values[row * columns + column] }
        #expect(sums[column] == total, "\(rows) × \(columns), column \(column)")
      }
    }
    let logits = randomTensor([300, 257], seed: 6)
    let logRows = logits.logSoftmax().values
    for r in [0, 149, 150, 299] {
      let one = Tensor(Array(logits.values[(r * 257)..<((r + 1) * 257)]), shape: [1, 257]).logSoftmax().values
      #expect(one == Array(logRows[(r * 257)..<((r + 1) * 257)]))
    }
  }
}

@Suite("Matrix products of every shape")
struct MatrixProductShapeTests {
  /// Operands inside wider rows (leading dimensions beyond their widths, as one head's
  /// slice of packed projections): the contiguous product's values on every kernel path,
  /// and the padding around the output untouched.
  @Test func leadingDimensionsMatchContiguousOperands() {
    let pad = 3
    for (m, n, k) in [(1, 7, 5), (6, 1, 5), (6, 7, 1), (1, 1, 4), (9, 8, 17), (130, 80, 9)] {
      for transposeA in [false, true] {
        for transposeB in [false, true] {
          let a = randomTensor(transposeA ? [k, m] : [m, k], seed: 41), b = randomTensor(transposeB ? [n, k] : [k, n], seed: 42)
          let expected = Tensor(zeros: [m, n])
          Tensor.multiply(a, b, transposeA, transposeB, into: expected, accumulating: false)
          // Each stored row widened by `pad` values of 99.
          func widened(_ t: Tensor) -> (values: [Float], stride: Int) {
            let (rows, columns) = (t.shape[0], t.shape[1])
            var out = [Float](repeating: 99, count: rows * (columns + pad))
            for r in 0..<rows { for c in 0..<columns { out[r * (columns + pad) + c] = t.values[r * columns + c] } }
            return (out, columns + pad)
          }
          let (wa, lda) = widened(a), (wb, ldb) = widened(b)
          var wc = [Float](repeating: 99, count: m * (n + pad))
          wa.withUnsafeBufferPointer { pa in
            wb.withUnsafeBufferPointer { pb in
              wc.withUnsafeMutableBufferPointer { pc in
                Tensor.gemm(
                  pa.baseAddress!, pb.baseAddress!, pc.baseAddress!, m: m, n: n, k: k, transposeA: transposeA,
                  transposeB: transposeB, accumulate: false, computes: true, lda: lda, ldb: ldb, ldc: n + pad)
              }
            }
          }
          for i in 0..<m {
            for j in 0..<n {
              let (value, reference) = (wc[i * (n + pad) + j], expected.values[i * n + j])
              #expect(abs(value - reference) <= 1e-5 * max(1, abs(reference)), "\(m)×\(n)×\(k) ᵀ\(transposeA)\(transposeB)")
            }
            #expect(wc[(i * (n + pad) + n)..<((i + 1) * (n + pad))].allSatisfy { $0 == 99 })
          }
        }
      }
    }
  }

  /// Every kernel GradAccum picks (sgemm on one thread or several, sgemv, sger), with sizes
  /// on both sides of their limits, against the definition in Double, with and without
  /// accumulation.
  @Test(arguments: [false, true])
  func everyKernelMatchesTheDefinition(accumulating: Bool) {
    let sizes = [1, 2, 3, 4, 5, 8, 9, 17, 130]
    var checked = 0
    for m in sizes {
      for n in [1, 2, 7, 80] {
        for k in sizes {
          for transposeA in [false, true] {
            for transposeB in [false, true] {
              let a = randomTensor(transposeA ? [k, m] : [m, k], seed: UInt64(m * 1000 + k))
              let b = randomTensor(transposeB ? [n, k] : [k, n], seed: UInt64(n * 1000 + k + 7))
              let c = randomTensor([m, n], seed: 3)
              let start = c.values
              Tensor.multiply(a, b, transposeA, transposeB, into: c, accumulating: accumulating)
              let (av, bv, cv) = (a.values, b.values, c.values)
              for i in 0..<m {
                for j in 0..<n {
                  var total = accumulating ? Double(start[i * n + j]) : 0
                  for t in 0..<k {
                    let x = transposeA ? av[t * m + i] : av[i * k + t]
                    let y = transposeB ? bv[j * k + t] : bv[t * n + j]
                    total += Double(x) * Double(y)
                  }
                  let value = cv[i * n + j]
                  if abs(Double(value) - total) > 1e-4 * max(1, abs(total)) {
                    Issue.record("m \(m) n \(n) k \(k) ᵀA \(transposeA) ᵀB \(transposeB): \(value) ≠ \(total)")
                    return
                  }
                }
              }
              checked += 1
            }
          }
        }
      }
    }
    #expect(checked == 9 * 4 * 9 * 4)
    // 130 × 130 × 130 uses OpenBLAS's threads.
    #expect(BLASThreading.defaultThreads == 1 || BLASThreading.usesThreads(m: 130, n: 130, k: 130))
  }
}

/// The masked AVX-512 unfolding and folding of windows that keep the plane's extents give
/// the loops' results bit for bit: planes narrower than, as wide as and wider than 16
/// columns, padding beyond the window's reach, dilation, and columns side by side.
@Suite("Masked unfolding")
struct MaskedUnfoldingTests {
  @Test(
    .enabled(if: Tensor.runsMaskedKernels, "needs AVX-512F"),
    arguments: [
      (3, 1, 1, 8, 8), (3, 1, 1, 5, 6), (5, 2, 1, 17, 19), (3, 2, 2, 6, 5), (1, 0, 1, 3, 4), (3, 1, 1, 1, 4),
      (5, 2, 1, 2, 1), (3, 1, 1, 32, 32), (3, 1, 1, 33, 3), (7, 3, 1, 16, 16),
    ])
  func maskedEqualsLoops(kernel: Int, padding: Int, dilation: Int, height: Int, width: Int) {
    let channels = 3, plane = height * width
    let geometry = WindowGeometry(kernelHeight: kernel, kernelWidth: kernel, padding: padding, dilation: dilation)
    let rows = channels * kernel * kernel
    var generator = RandomGenerator(seed: 41)
    let source = (0..<(channels * plane)).map { _ in Float.random(in: -1...1, using: &generator) }
    // Two samples side by side: rows twice the plane apart, this one at the second place.
    let rowStride = 2 * plane
    func unfold(masked: Bool) -> [Float] {
      var columns = [Float](repeating: .nan, count: rows * rowStride)
      columns.withUnsafeMutableBufferPointer { out in
        source.withUnsafeBufferPointer { input in
          Tensor.im2col(
            input.baseAddress!, channels: channels, height: height, width: width, geometry: geometry,
            outputHeight: height, outputWidth: width, into: out.baseAddress! + plane, rowStride: rowStride,
            masked: masked)
        }
      }
      return columns
    }
    let (masked, loops) = (unfold(masked: true), unfold(masked: false))
    #expect(masked.map(\.bitPattern) == loops.map(\.bitPattern))
    #expect(masked.contains { $0 != 0 && !$0.isNaN }, "some values unfolded")
    // Folding adds into a gradient that already holds values.
    let columns = (0..<(rows * rowStride)).map { _ in Float.random(in: -1...1, using: &generator) }
    let start = (0..<(channels * plane)).map { _ in Float.random(in: -1...1, using: &generator) }
    func fold(masked: Bool) -> [Float] {
      var scratch = columns, target = start
      scratch.withUnsafeMutableBufferPointer { input in
        target.withUnsafeMutableBufferPointer { out in
          Tensor.col2im(
            input.baseAddress! + plane, channels: channels, height: height, width: width, geometry: geometry,
            outputHeight: height, outputWidth: width, into: out.baseAddress!, rowStride: rowStride, masked: masked)
        }
      }
      return target
    }
    let (maskedFold, loopsFold) = (fold(masked: true), fold(masked: false))
    #expect(maskedFold.map(\.bitPattern) == loopsFold.map(\.bitPattern))
    #expect(maskedFold != start, "something was added")
  }
}

/// 2×2 max pooling with stride 2 in the AVX-512 kernels gives the Swift loops' maxima,
/// positions and gradients bit for bit: rows of 16 windows and more, leftover windows,
/// odd extents, ties, NaN, zeros of both signs and negative windows.
@Suite("Masked max pooling")
struct MaskedPoolingTests {
  @Test(.enabled(if: Tensor.runsMaskedKernels, "needs AVX-512F"), arguments: [(32, 32), (5, 34), (9, 9), (2, 66), (3, 2)])
  func maskedEqualsLoops(height: Int, width: Int) {
    let planes = 3, count = planes * height * width
    var generator = RandomGenerator(seed: 43)
    // Few distinct values, so that windows tie; some NaN, some -0.
    let palette: [Float] = [-2, -1, -0.0, 0, 0.5, 1, 3, .nan]
    let values = (0..<count).map { _ in palette[Int.random(in: 0..<palette.count, using: &generator)] }
    let outputs = planes * (height / 2) * (width / 2)
    let seed = (0..<outputs).map { index in index % 7 == 0 ? -0.0 : Float.random(in: -1...1, using: &generator) }
    func run(masked: Bool) -> (values: [UInt32], gradient: [UInt32]) {
      // A freed block of the gradient's size holding NaN, which the allocator is likely to
      // hand out again: every position of the gradient must be written.
      _ = Tensor(repeating: .nan, shape: [1, planes, height, width]).values.count
      let x = Tensor(values, shape: [1, planes, height, width], requiresGradient: true)
      let y = x.pooled2D(kernel: 2, stride: 2, maximum: true, masked: masked)
      y.backward(seed: Tensor(seed, shape: y.shape))
      return (y.values.map(\.bitPattern), x.gradient!.values.map(\.bitPattern))
    }
    let (masked, loops) = (run(masked: true), run(masked: false))
    #expect(masked.values == loops.values)
    #expect(masked.gradient == loops.gradient)
    #expect(masked.gradient.contains { Float(bitPattern: $0) != 0 }, "gradients reach the maxima")
  }
}
