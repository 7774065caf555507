import Tensors

#if canImport(Glibc)
  import Glibc
#endif
import Testing
import _TestSupport

@Suite("Finite-difference gradient checks")
struct GradientCheckTests {
  @Test(arguments: [([3, 4], [3, 4]), ([3, 4], [4]), ([2, 1, 4], [3, 1]), ([], [2, 3]), ([5, 1], [1, 5])])
  func broadcastingArithmetic(shapes: ([Int], [Int])) {
    let a = randomTensor(shapes.0, seed: 1), b = randomTensor(shapes.1, low: 0.5, high: 2, seed: 2)
    checkGradients(of: [a, b]) { $0[0] + $0[1] }
    checkGradients(of: [a, b]) { $0[0] - $0[1] }
    checkGradients(of: [a, b]) { $0[0] * $0[1] }
    checkGradients(of: [a, b]) { $0[0] / $0[1] }
  }

  @Test func scalarArithmetic() {
    let a = randomTensor([2, 3], low: 0.5, high: 2)
    checkGradients(of: [a]) { 3 - $0[0] * 2 + 1 }
    checkGradients(of: [a]) { 2 / $0[0] - $0[0] / 4 }
    checkGradients(of: [a]) { -$0[0] }
  }

  @Test func unaryFunctions() {
    let positive = randomTensor([3, 5], low: 0.2, high: 3)
    let any = randomTensor([3, 5], low: -3, high: 3)
    checkGradients(of: [any]) { $0[0].exp() }
    checkGradients(of: [positive]) { $0[0].log() }
    checkGradients(of: [positive]) { $0[0].squareRoot() }
    checkGradients(of: [positive]) { $0[0].raised(to: 2) }
    checkGradients(of: [positive]) { $0[0].raised(to: -1.5) }
    checkGradients(of: [any]) { $0[0].tanh() }
    checkGradients(of: [any]) { $0[0].sigmoid() }
    checkGradients(of: [any]) { $0[0].gelu() }
  }

  @Test func kinkedFunctionsAwayFromTheKink() {
    // Values at least 0.1 from 0, so a finite-difference step of 0.01 never crosses the kink.
    let values: [Float] = [-2, -0.5, -0.1, 0.1, 0.7, 3, -1.2, 0.4]
    let x = Tensor(values, shape: [2, 4])
    checkGradients(of: [x], step: 1e-2) { $0[0].relu() }
    checkGradients(of: [x], step: 1e-2) { $0[0].absoluteValue() }
  }

  @Test(arguments: [(false, false), (false, true), (true, false), (true, true)])
  func matrixProduct(flags: (Bool, Bool)) {
    let a = randomTensor(flags.0 ? [4, 3] : [3, 4], seed: 3)
    let b = randomTensor(flags.1 ? [5, 4] : [4, 5], seed: 4)
    checkGradients(of: [a, b]) {
      Tensor.matmul($0[0], $0[1], transposingLeft: flags.0, transposingRight: flags.1)
    }
  }

  @Test func reductions() {
    let x = randomTensor([2, 3, 4])
    checkGradients(of: [x]) { $0[0].sum() }
    checkGradients(of: [x]) { $0[0].mean() }
    checkGradients(of: [x]) { $0[0].sum(alongAxes: [1]) }
    checkGradients(of: [x]) { $0[0].sum(alongAxes: [0, 2], keepingDimensions: true) }
    checkGradients(of: [x]) { $0[0].mean(alongAxes: [-1]) }
    checkGradients(of: [x]) { $0[0].mean(alongAxes: [0, 1], keepingDimensions: true) }
    let y = randomTensor([2, 3, 4], seed: 8)
    checkGradients(of: [x, y]) { Tensor.squaredErrorSum($0[0], $0[1]) }
    // The definition: Σ (x − y)².
    let expected = zip(x.values, y.values).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }
    expectClose([Tensor.squaredErrorSum(x, y).scalarValue], [Float(expected)], relative: 1e-6)
  }

  @Test(arguments: [1, 3]) func linear(rows: Int) {
    let x = randomTensor([rows, 4], seed: 21), w = randomTensor([5, 4], seed: 22), b = randomTensor([5], seed: 23)
    checkGradients(of: [x, w, b]) { Tensor.linear($0[0], weight: $0[1], bias: $0[2]) }
    checkGradients(of: [x, w]) { Tensor.linear($0[0], weight: $0[1], bias: nil) }
    // The definition: x · wᵀ + b, row by row.
    let y = Tensor.linear(x, weight: w, bias: b).values
    for r in 0..<rows {
      for o in 0..<5 {
        let dot = (0..<4).reduce(Float(0)) { $0 + x.values[r * 4 + $1] * w.values[o * 4 + $1] }
        #expect(abs(y[r * 5 + o] - (dot + b.values[o])) < 1e-5)
      }
    }
  }

  /// The fused GELU and product: `linear(x.gelu(), …)`'s values and gradients bit for bit,
  /// and gradients that match finite differences.
  @Test(arguments: [1, 3]) func linearOfGELU(rows: Int) {
    let w = randomTensor([5, 4], seed: 32), b = randomTensor([5], seed: 33)
    checkGradients(of: [randomTensor([rows, 4], seed: 31), w, b]) {
      Tensor.linearOfGELU($0[0], weight: $0[1], bias: $0[2])
    }
    var results: [[[Float]]] = []
    for fused in [false, true] {
      let x = randomTensor([rows, 4], seed: 31), w = randomTensor([5, 4], seed: 32), b = randomTensor([5], seed: 33)
      for tensor in [x, w, b] { tensor.requiresGradient = true }
      let y = fused ? Tensor.linearOfGELU(x, weight: w, bias: b) : Tensor.linear(x.gelu(), weight: w, bias: b)
      (y * randomTensor(y.shape, seed: 34)).sum().backward()
      results.append([y.values, x.gradient!.values, w.gradient!.values, b.gradient!.values])
    }
    #expect(results[0] == results[1])
  }

  @Test func reshapingAndTransposing() {
    let x = randomTensor([2, 3, 4])
    checkGradients(of: [x]) { $0[0].reshaped(to: [6, -1]) }
    checkGradients(of: [x]) { $0[0].transposed() }
    checkGradients(of: [x]) { $0[0].transposed(0, 2) }
  }

  @Test func softmaxFamily() {
    let x = randomTensor([3, 4, 2], low: -3, high: 3)
    checkGradients(of: [x]) { $0[0].softmax() }
    checkGradients(of: [x]) { $0[0].softmax(alongAxis: 1) }
    checkGradients(of: [x]) { $0[0].logSoftmax() }
    checkGradients(of: [x]) { $0[0].logSoftmax(alongAxis: 0) }
  }

  @Test func gatheringLabels() {
    let x = randomTensor([4, 3])
    checkGradients(of: [x]) { $0[0].gathering(labels: [2, 0, 1, 2]) }
    checkGradients(of: [x]) { $0[0].gathering(labels: [2, -100, 1, -100], ignoring: -100) }
  }

  @Test func compositeGraphWithSharedInputs() {
    // x is used three times; its gradient must be the sum over all paths.
    let x = randomTensor([3, 3], low: 0.5, high: 1.5)
    checkGradients(of: [x]) { inputs in
      let x = inputs[0]
      return (Tensor.matmul(x, x) * x).tanh().logSoftmax() + x.sum(alongAxes: [0])
    }
  }
}

@Suite("Finite-difference gradient checks: convolution and pooling")
struct ConvolutionGradientTests {
  @Test(arguments: [(1, 0, 1, true), (2, 1, 1, true), (1, 1, 2, false), (2, 2, 1, true)])
  func convolution(stride: Int, padding: Int, dilation: Int, bias: Bool) {
    let x = randomTensor([2, 2, 5, 6], seed: 5)
    let w = randomTensor([3, 2, 3, 2], seed: 6)
    let b = randomTensor([3], seed: 7)
    checkGradients(of: bias ? [x, w, b] : [x, w]) {
      Tensor.convolution2D(
        $0[0], weight: $0[1], bias: bias ? $0[2] : nil, stride: stride, padding: padding, dilation: dilation)
    }
  }

  /// Windows that keep the plane's extents ("same" padding) unfold and fold each window
  /// position as one shifted copy of the plane: against the definition, summed directly,
  /// and against finite differences, including planes narrower or shorter than the
  /// window's reach (whole positions in the padding) and dilation.
  @Test(arguments: [(3, 1, 1, 5, 6), (5, 2, 1, 4, 7), (3, 2, 2, 6, 5), (1, 0, 1, 3, 4), (3, 1, 1, 1, 4), (5, 2, 1, 2, 1)])
  func convolutionKeepingTheExtents(kernel: Int, padding: Int, dilation: Int, height: Int, width: Int) {
    let (n, c, o) = (2, 3, 4)
    let x = randomTensor([n, c, height, width], seed: 15)
    let w = randomTensor([o, c, kernel, kernel], seed: 16)
    let b = randomTensor([o], seed: 17)
    let y = Tensor.convolution2D(x, weight: w, bias: b, padding: padding, dilation: dilation)
    #expect(y.shape == [n, o, height, width])
    var expected = [Float]()
    for sample in 0..<n {
      for out in 0..<o {
        for oy in 0..<height {
          for ox in 0..<width {
            var sum = Double(b.values[out])
            for channel in 0..<c {
              for ky in 0..<kernel {
                for kx in 0..<kernel {
                  let (iy, ix) = (oy + ky * dilation - padding, ox + kx * dilation - padding)
                  guard iy >= 0 && iy < height && ix >= 0 && ix < width else { continue }
                  sum +=
                    Double(x.values[((sample * c + channel) * height + iy) * width + ix])
                    * Double(w.values[((out * c + channel) * kernel + ky) * kernel + kx])
                }
              }
            }
            expected.append(Float(sum))
          }
        }
      }
    }
    expectClose(y.values, expected, relative: 1e-5)
    checkGradients(of: [x, w, b]) {
      Tensor.convolution2D($0[0], weight: $0[1], bias: $0[2], padding: padding, dilation: dilation)
    }
  }

  /// Several samples unfolded side by side per product (the last group smaller) give what
  /// one sample per product gives, to rounding (the sums over a group's columns run in
  /// another order), output and every gradient; and finite differences agree.
  @Test(arguments: [(1, 1), (2, 0)])
  func samplesSideBySide(stride: Int, padding: Int) {
    let x = randomTensor([7, 2, 6, 5], seed: 25)
    let w = randomTensor([3, 2, 3, 3], seed: 26)
    let b = randomTensor([3], seed: 27)
    func run(_ perProduct: Int) -> [[Float]] {
      let (x, w, b) = (x.detached(), w.detached(), b.detached())
      for tensor in [x, w, b] { tensor.requiresGradient = true }
      let y = Tensor.convolution2D(x, weight: w, bias: b, stride: stride, padding: padding, samplesPerProduct: perProduct)
      (y * y).sum().backward()
      return [y.values, x.gradient!.values, w.gradient!.values, b.gradient!.values]
    }
    let one = run(1)
    for perProduct in [2, 3, 8] {
      for (a, e) in zip(run(perProduct), one) { expectClose(a, e, relative: 1e-5, "\(perProduct) per product") }
    }
    checkGradients(of: [x, w, b]) {
      Tensor.convolution2D($0[0], weight: $0[1], bias: $0[2], stride: stride, padding: padding, samplesPerProduct: 3)
    }
  }

  @Test func convolutionMatchesTheDefinition() {
    // One sample, one channel, a 3×3 input and a 2×2 kernel: each output is a dot product.
    let x = Tensor((1...9).map(Float.init), shape: [1, 1, 3, 3])
    let w = Tensor([1, 0, -1, 2], shape: [1, 1, 2, 2])
    let y = Tensor.convolution2D(x, weight: w, bias: Tensor([0.5], shape: [1]))
    // [1·1 + 2·0 − 4 + 2·5, …]
    let expected: [Float] = [7.5, 9.5, 13.5, 15.5]  // 1 − 3 + 2·5 + 0.5, 2 − 4 + 2·6 + 0.5, …
    #expect(y.values == expected)
    let padded = Tensor.convolution2D(x, weight: Tensor([1], shape: [1, 1, 1, 1]), bias: nil, stride: 2, padding: 1)
    #expect(padded.shape == [1, 1, 3, 3])
    // Stride 2 with padding 1 samples positions −1, 1, 3 of each axis: only the centre is inside.
    let centre: [Float] = [0, 0, 0, 0, 5, 0, 0, 0, 0]
    #expect(padded.values == centre)
  }

  @Test func pooling() {
    // Distinct values so that no finite-difference step changes which element is the maximum.
    let x = Tensor((0..<72).map { Float(($0 * 37) % 72) / 10 }, shape: [2, 1, 6, 6])
    checkGradients(of: [x], step: 1e-3) { $0[0].maxPooled2D(kernel: 2) }
    checkGradients(of: [x], step: 1e-3) { $0[0].maxPooled2D(kernel: 3, stride: 2) }
    checkGradients(of: [x]) { $0[0].averagePooled2D(kernel: 2) }
    checkGradients(of: [x]) { $0[0].averagePooled2D(kernel: 3, stride: 1) }
    // Adaptive pooling, with windows that overlap (5 → 3) and that do not (6 → 3).
    checkGradients(of: [x]) { $0[0].adaptiveAveragePooled2D(outputHeight: 4, outputWidth: 5) }
    checkGradients(of: [x]) { $0[0].adaptiveAveragePooled2D(outputHeight: 3, outputWidth: 3) }
    // The definition: 5 → 3 takes rows 0..<2, 1..<4, 3..<5 (PyTorch's floor/ceil bounds).
    let row = Tensor([1, 2, 3, 4, 5], shape: [1, 1, 1, 5])
    expectClose(row.adaptiveAveragePooled2D(outputHeight: 1, outputWidth: 3).values, [1.5, 3, 4.5], relative: 1e-6)
    let small = Tensor([1, 5, 2, 0, 3, 4, 8, 6, 7, 1, 2, 9, 0, 3, 4, 5], shape: [1, 1, 4, 4])
    #expect(small.adaptiveAveragePooled2D(outputHeight: 2, outputWidth: 2).values == [3.25, 4, 2.75, 5])
    #expect(small.maxPooled2D(kernel: 2).values == [5, 8, 7, 9])
    #expect(small.averagePooled2D(kernel: 2).values == [3.25, 4, 2.75, 5])
  }

  /// 2 × 2 max pooling takes eight windows at a time when a row has eight or more: against
  /// the definition (the first maximum on ties, a NaN wins), values and where the gradient
  /// goes, on rows of 10 windows (eight in lanes, two one at a time) with many ties.
  @Test func maxPoolingLanesMatchTheDefinition() {
    let (n, c, h, w) = (2, 3, 6, 20)
    var values = (0..<(n * c * h * w)).map { Float(($0 * 7919) % 5) }
    values[37] = .nan
    values[w * h + 3] = -.infinity
    let x = Tensor(values, shape: [n, c, h, w], requiresGradient: true)
    let y = x.maxPooled2D(kernel: 2)
    y.backward(seed: Tensor(repeating: 1, shape: y.shape))
    var expected: [Float] = [], routed = [Float](repeating: 0, count: values.count)
    for plane in 0..<(n * c) {
      for oy in 0..<(h / 2) {
        for ox in 0..<(w / 2) {
          var best = -Float.infinity, at = -1
          for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            let index = plane * h * w + (2 * oy + dy) * w + 2 * ox + dx
            if at < 0 || values[index] > best || (values[index].isNaN && !best.isNaN) {
              (best, at) = (values[index], index)
            }
          }
          expected.append(best)
          routed[at] += 1
        }
      }
    }
    #expect(zip(y.values, expected).allSatisfy { $0.bitPattern == $1.bitPattern })
    #expect(x.gradient!.values == routed)
  }

  /// Where each window's maximum was is kept per plane, so that the gradient goes to the
  /// right place in tensors beyond 2²⁴ values (where a flat index in a Float would round).
  @Test func maxPoolingGradientBeyondTwoToThe24Values() {
    let (planes, side) = (5, 2048)
    let planeSize = side * side
    // Increasing within each plane: every window's maximum is its bottom-right value.
    let x = Tensor(
      (0..<(planes * planeSize)).map { Float($0 % planeSize) }, shape: [1, planes, side, side], requiresGradient: true)
    let y = x.maxPooled2D(kernel: 2)
    y.backward(seed: Tensor(repeating: 1, shape: y.shape))
    let gradient = x.gradient!.values
    let last = (planes - 1) * planeSize
    for (oy, ox) in [(0, 0), (0, 1), (511, 700), (1023, 1023)] {
      #expect(gradient[last + (2 * oy + 1) * side + 2 * ox + 1] == 1, "window \(oy), \(ox)")
      #expect(gradient[last + (2 * oy) * side + 2 * ox] == 0)
    }
    #expect(gradient[last...].reduce(0, +) == Float(planeSize / 4))
  }
}

@Suite("Finite-difference gradient checks: batch normalization")
struct BatchNormalizationGradientTests {
  @Test(arguments: [[4, 3], [3, 2, 5], [2, 3, 2, 3]])
  func batchNormalization(shape: [Int]) {
    let channels = shape[1]
    let x = randomTensor(shape, seed: 11)
    let w = randomTensor([channels], low: 0.5, high: 1.5, seed: 12), b = randomTensor([channels], seed: 13)
    checkGradients(of: [x, w, b], step: 1e-2, tolerance: 3e-2) {
      Tensor.batchNormalization($0[0], weight: $0[1], bias: $0[2], epsilon: 1e-5).output
    }
    checkGradients(of: [x], step: 1e-2, tolerance: 3e-2) {
      Tensor.batchNormalization($0[0], weight: nil, bias: nil, epsilon: 1e-5).output
    }
  }

  @Test func batchNormalizationMatchesTheDefinition() {
    // Two samples, two channels, two positions: channel 0 holds 1, 2, 5, 8 (mean 4,
    // biased variance 7.5), channel 1 holds 0, 0, 4, 4 (mean 2, variance 4).
    let x = Tensor([1, 2, 0, 0, 5, 8, 4, 4], shape: [2, 2, 2])
    let (y, mean, variance) = Tensor.batchNormalization(
      x, weight: Tensor([2, 1], shape: [2]), bias: Tensor([0, 10], shape: [2]), epsilon: 0.5)
    #expect(mean.values == [4, 2])
    #expect(variance.values == [7.5, 4])
    let s0 = 2 / Float(8).squareRoot(), s1 = 1 / Float(4.5).squareRoot()
    expectClose(
      y.values, [-3 * s0, -2 * s0, 10 - 2 * s1, 10 - 2 * s1, 1 * s0, 4 * s0, 10 + 2 * s1, 10 + 2 * s1],
      relative: 1e-6)
    // Normalized values carry no gradient through a constant shift of one channel.
    let shifted = x.detached()
    shifted.requiresGradient = true
    let out = Tensor.batchNormalization(shifted, weight: nil, bias: nil, epsilon: 1e-5).output
    (out * Tensor([1, 1, 0, 0, 1, 1, 0, 0], shape: [2, 2, 2])).sum().backward()
    #expect(shifted.gradient!.values.allSatisfy { abs($0) < 1e-6 })
  }
}

@Suite("Sequence ops")
struct SequenceOpTests {
  @Test func embeddingGathersRowsAndScattersGradients() {
    let weight = randomTensor([5, 3], seed: 4)
    // Repeated ids: their gradients add up in one row.
    let ids = Tensor([1, 4, 1, 0, 2, 1], shape: [2, 3])
    let rows = Tensor.embedding(ids: ids, weight: weight)
    #expect(rows.shape == [2, 3, 3])
    #expect(Array(rows.values[0..<3]) == Array(weight.values[3..<6]))
    checkGradients(of: [weight]) { Tensor.embedding(ids: ids, weight: $0[0]) }
  }

  @Test func positionsAddPerTimeStep() {
    let x = randomTensor([2, 3, 4], seed: 5), positions = randomTensor([6, 4], seed: 6)
    let y = Tensor.addingPositions(x, positions)
    #expect(y.values[4 * 3 + 1] == x.values[4 * 3 + 1] + positions.values[1])
    checkGradients(of: [x, positions]) { Tensor.addingPositions($0[0], $0[1]) }
  }
}

@Suite("Causal self-attention")
struct AttentionTests {
  /// Against a direct computation of the definition for every (sample, head): short
  /// sequences run each head's products whole, from 64 positions they are cut at the middle
  /// position (`HeadLayout.causalCut`; 67 leaves halves of 33 and 34).
  @Test(arguments: [(2, 4, 6, 2), (1, 64, 8, 2), (2, 67, 4, 2)])
  func matchesTheDefinition(shape: (Int, Int, Int, Int)) {
    let (b, s, d, h) = shape
    let qkv = randomTensor([b, s, 3 * d], seed: 7)
    let out = Tensor.causalSelfAttention(qkv, heads: h).values
    let x = qkv.values, dh = d / h
    for sample in 0..<b {
      for head in 0..<h {
        for t in 0..<s {
          func q(_ t: Int, _ c: Int) -> Float { x[(sample * s + t) * 3 * d + head * dh + c] }
          func k(_ t: Int, _ c: Int) -> Float { x[(sample * s + t) * 3 * d + d + head * dh + c] }
          func v(_ t: Int, _ c: Int) -> Float { x[(sample * s + t) * 3 * d + 2 * d + head * dh + c] }
          let scores = (0...t).map { j in (0..<dh).reduce(Float(0)) { $0 + q(t, $1) * k(j, $1) } / Float(dh).squareRoot() }
          let largest = scores.max()!
          let weights = scores.map { expf($0 - largest) }
          let total = weights.reduce(0, +)
          for c in 0..<dh {
            let expected = (0...t).reduce(Float(0)) { $0 + weights[$1] / total * v($1, c) }
            #expect(abs(out[(sample * s + t) * d + head * dh + c] - expected) < 1e-5)
          }
        }
      }
    }
  }

  @Test(arguments: [(1, 3, 4, 1), (2, 4, 6, 2), (2, 1, 4, 2), (1, 5, 8, 4), (1, 67, 4, 2)])
  func gradientsMatchFiniteDifferences(shape: (Int, Int, Int, Int)) {
    let (b, s, d, h) = shape
    let qkv = randomTensor([b, s, 3 * d], seed: 8)
    checkGradients(of: [qkv], step: 1e-2, tolerance: 3e-2) { Tensor.causalSelfAttention($0[0], heads: h) }
  }

  /// With the products cut at the diagonal (67 positions), dropout's gradients through the
  /// kept weights, and without kept weights (computed again in backward), still match
  /// finite differences.
  @Test func cutProductsWithDropoutMatchFiniteDifferences() {
    let (b, s, d, h) = (1, 67, 4, 2)
    let qkv = randomTensor([b, s, 3 * d], seed: 12)
    var generator = RandomGenerator(seed: 5)
    let mask = Tensor((0..<(b * h * s * s)).map { _ in generator.uniform(0, 1) < 0.2 ? 0 : 1 / 0.8 }, shape: [b, h, s, s])
    checkGradients(of: [qkv], step: 1e-2, tolerance: 3e-2) { Tensor.causalSelfAttention($0[0], heads: h, dropoutMask: mask) }
    checkGradients(of: [qkv], step: 1e-2, tolerance: 3e-2) {
      Tensor.causalSelfAttention($0[0], heads: h, dropoutMask: mask, keepsWeights: false)
    }
  }

  /// Dropout on the attention weights: with a mask of ones it is the plain op; with a
  /// mask of zeros and 1/(1−p) its gradients match finite differences.
  @Test func dropoutMaskIsDifferentiated() {
    let (b, s, d, h) = (2, 4, 6, 2)
    let qkv = randomTensor([b, s, 3 * d], seed: 10)
    let ones = Tensor(Array(repeating: 1, count: b * h * s * s), shape: [b, h, s, s])
    #expect(Tensor.causalSelfAttention(qkv, heads: h, dropoutMask: ones).values == Tensor.causalSelfAttention(qkv, heads: h).values)
    var generator = RandomGenerator(seed: 3)
    let mask = Tensor((0..<(b * h * s * s)).map { _ in generator.uniform(0, 1) < 0.3 ? 0 : 1 / 0.7 }, shape: [b, h, s, s])
    #expect(Tensor.causalSelfAttention(qkv, heads: h, dropoutMask: mask).values != Tensor.causalSelfAttention(qkv, heads: h).values)
    checkGradients(of: [qkv], step: 1e-2, tolerance: 3e-2) { Tensor.causalSelfAttention($0[0], heads: h, dropoutMask: mask) }
  }

  /// Without kept weights (recomputed per head in backward): the same values and the same
  /// gradients bit for bit, dropout included, and gradients that match finite differences.
  @Test(arguments: [(1, 3, 4, 1), (2, 4, 6, 2), (2, 1, 4, 2), (1, 5, 8, 4)])
  func weightsRecomputedInBackwardGiveTheSameGradients(shape: (Int, Int, Int, Int)) {
    let (b, s, d, h) = shape
    var generator = RandomGenerator(seed: 4)
    let mask = Tensor((0..<(b * h * s * s)).map { _ in generator.uniform(0, 1) < 0.3 ? 0 : 1 / 0.7 }, shape: [b, h, s, s])
    for dropoutMask in [nil, mask] {
      var gradients: [[Float]] = [], values: [[Float]] = []
      for keepsWeights in [true, false] {
        let qkv = randomTensor([b, s, 3 * d], seed: 12)
        qkv.requiresGradient = true
        let out = Tensor.causalSelfAttention(qkv, heads: h, dropoutMask: dropoutMask, keepsWeights: keepsWeights)
        values.append(out.values)
        (out * randomTensor(out.shape, seed: 13)).sum().backward()
        gradients.append(qkv.gradient!.values)
      }
      #expect(values[0] == values[1] && gradients[0] == gradients[1])
    }
    let qkv = randomTensor([b, s, 3 * d], seed: 8)
    checkGradients(of: [qkv], step: 1e-2, tolerance: 3e-2) {
      Tensor.causalSelfAttention($0[0], heads: h, dropoutMask: mask, keepsWeights: false)
    }
  }

  /// A lean backward (heads one at a time on this thread) against heads shared between two
  /// threads and against kept weights, at a size whose heads the two threads share: the
  /// same values and gradients bit for bit, dropout included.
  @Test func oneHeadAtATimeGivesTheSameGradients() {
    let (b, s, d, h) = (2, 128, 16, 2)
    var generator = RandomGenerator(seed: 5)
    let mask = Tensor((0..<(b * h * s * s)).map { _ in generator.uniform(0, 1) < 0.3 ? 0 : 1 / 0.7 }, shape: [b, h, s, s])
    for dropoutMask in [nil, mask] {
      var gradients: [[Float]] = [], values: [[Float]] = []
      for (keepsWeights, lean) in [(true, false), (false, false), (false, true)] {
        let qkv = randomTensor([b, s, 3 * d], seed: 14)
        qkv.requiresGradient = true
        let out = Tensor.causalSelfAttention(
          qkv, heads: h, dropoutMask: dropoutMask, keepsWeights: keepsWeights, oneHeadAtATime: lean)
        values.append(out.values)
        (out * randomTensor(out.shape, seed: 15)).sum().backward()
        gradients.append(qkv.gradient!.values)
      }
      #expect(values[0] == values[1] && values[0] == values[2])
      #expect(gradients[0] == gradients[1] && gradients[0] == gradients[2])
    }
  }

  /// Causality: a later token never changes an earlier position's output.
  @Test func laterTokensDoNotReachBack() {
    let qkv = randomTensor([1, 5, 12], seed: 9)
    let changed = qkv.copy()
    for c in 0..<12 { changed.mutableBuffer[4 * 12 + c] += 1 }
    let a = Tensor.causalSelfAttention(qkv, heads: 2).values, bValues = Tensor.causalSelfAttention(changed, heads: 2).values
    #expect(Array(a[0..<(4 * 4)]) == Array(bValues[0..<(4 * 4)]))
  }
}
