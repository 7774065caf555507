import GradAccum
import Tensors

#if canImport(Glibc)
  import Glibc
#endif
import Testing
import _TestSupport

/// What BLAS allocates inside a product is learnt by probing the library in the process;
/// these tests check the probe against real products on whatever kernels OpenBLAS picked.
@Suite("BLAS workspace probes")
struct BLASWorkspaceTests {
  /// Products that take each of OpenBLAS's paths on one CPU or another: vector kernels,
  /// AVX-512 small-matrix kernels (with and without their operand buffer), single-threaded
  /// and threaded `sgemm`; every transpose.
  static let products: [(m: Int, n: Int, k: Int)] = [
    (1, 512, 784), (64, 1, 512), (33, 17, 1), (2, 6000, 6), (6, 2000, 48), (3, 663, 6), (64, 504, 22),
    (16, 57, 399), (33, 128, 64), (128, 128, 128), (256, 512, 784),
  ]
  static let flags = [(false, false), (false, true), (true, false), (true, true)]

  /// A real product on real tensors, measured: the bytes inside the call beyond its output.
  /// The call made whole (a product that GradAccum cuts in halves is traced as its two
  /// halves, each probed: the prediction tests cover those).
  func measuredWorkspace(m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool) -> Int {
    let a = Tensor(zeros: transposeA ? [k, m] : [m, k]), b = Tensor(zeros: transposeB ? [n, k] : [k, n])
    let output = Tensor(zeros: [m, n])
    func product() {
      BLASCall.run(
        a.storage.base, b.storage.base, output.storage.base, m: m, n: n, k: k, transposeA: transposeA,
        transposeB: transposeB, alpha: 1)
    }
    product()
    return TransientPeak.measure(product).peakBytes
  }

  @Test(.measuresMemory, arguments: products)
  func probeEqualsTheRealProduct(m: Int, n: Int, k: Int) {
    for (transposeA, transposeB) in Self.flags {
      let probed = BLASWorkspace.bytes(m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB)
      let real = measuredWorkspace(m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB)
      #expect(probed == real, "\(m)×\(k)·\(k)×\(n) transposes \(transposeA) \(transposeB)")
    }
  }

  /// Large products are probed with α = 0; OpenBLAS must allocate the same then, on every
  /// path (vector kernels included).
  @Test(.measuresMemory, arguments: products)
  func probingWithoutArithmeticAllocatesTheSame(m: Int, n: Int, k: Int) {
    for (transposeA, transposeB) in Self.flags {
      func probe(_ arithmetic: Bool) -> Int? {
        BLASCall.probe(m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB, arithmetic: arithmetic) {
          MemoryStatistics.measurePeak($0).peakBytes
        }
      }
      #expect(probe(false) == probe(true), "\(m)×\(k)·\(k)×\(n) transposes \(transposeA) \(transposeB)")
    }
  }

  @Test func productsTooLargeToAddressAreUnavailable() {
    let measured = BLASCall.probe(m: 1 << 40, n: 1 << 40, k: 1 << 40, transposeA: false, transposeB: false) { _ in 1 }
    #expect(measured == nil)
    // BLAS counts in 32 bits.
    #expect(BLASCall.probe(m: 1 << 31, n: 2, k: 3, transposeA: false, transposeB: false) { _ in 1 } == nil)
  }
}

/// The trainer's measurement (``TransientPeak``) counts a block that C code mallocs and
/// frees between two tensor allocations, as OpenBLAS does inside a call, to the byte.
@Suite("Measurement sees every allocation")
struct MeasurementTests {
  @Test(.measuresMemory, arguments: [48, 48_000])
  func aCAllocationBetweenTwoTensorsIsCounted(blockBytes: Int) {
    typealias Allocate = @convention(c) (Int) -> UnsafeMutableRawPointer?
    typealias Release = @convention(c) (UnsafeMutableRawPointer?) -> Void
    let allocate = unsafeBitCast(dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc")!, to: Allocate.self)
    let release = unsafeBitCast(dlsym(UnsafeMutableRawPointer(bitPattern: 0), "free")!, to: Release.self)
    func step(cBlock: Bool) {
      do {
        let first = Tensor(zeros: [1000])
        if cBlock { release(allocate(blockBytes)) }
        _ = first
      }
      _ = Tensor(zeros: [10])
    }
    step(cBlock: true)
    let without = TransientPeak.measure { step(cBlock: false) }.peakBytes
    let with = TransientPeak.measure { step(cBlock: true) }.peakBytes
    // The peak is the first tensor's with the block on top: exactly the block more.
    #expect(with - without == MemoryStatistics.sizeClassBytes(forRequest: blockBytes), "without \(without), with \(with)")
  }
}

/// Attention heads shared between two threads (when there is enough work and their
/// products allocate nothing): the values and gradients of running each sample alone (too
/// little work to share), bit for bit, with dropout and with weights recomputed in backward.
@Suite("Attention heads on two threads")
struct SharedAttentionHeadTests {
  @Test(arguments: [true, false]) func sharedHeadsMatchOneSampleAtATime(keepsWeights: Bool) {
    BLASWorkspace.answerAllocationQuestions()
    let (b, s, d, h) = (4, 64, 16, 4)
    var generator = RandomGenerator(seed: 9)
    let mask = Tensor((0..<(b * h * s * s)).map { _ in generator.uniform(0, 1) < 0.2 ? 0 : 1.25 }, shape: [b, h, s, s])
    let qkv = randomTensor([b, s, 3 * d], seed: 3)
    qkv.requiresGradient = true
    let weights = randomTensor([b, s, d], seed: 4)
    let out = Tensor.causalSelfAttention(qkv, heads: h, dropoutMask: mask, keepsWeights: keepsWeights)
    (out * weights).sum().backward()
    for sample in 0..<b {
      let rows = (sample * s * 3 * d)..<((sample + 1) * s * 3 * d)
      let one = Tensor(Array(qkv.values[rows]), shape: [1, s, 3 * d])
      one.requiresGradient = true
      let oneMask = Tensor(
        Array(mask.values[(sample * h * s * s)..<((sample + 1) * h * s * s)]), shape: [1, h, s, s])
      let oneOut = Tensor.causalSelfAttention(one, heads: h, dropoutMask: oneMask, keepsWeights: keepsWeights)
      let oneWeights = Tensor(Array(weights.values[(sample * s * d)..<((sample + 1) * s * d)]), shape: [1, s, d])
      (oneOut * oneWeights).sum().backward()
      #expect(oneOut.values == Array(out.values[(sample * s * d)..<((sample + 1) * s * d)]))
      #expect(one.gradient!.values == Array(qkv.gradient!.values[rows]))
    }
  }
}

/// Convolution samples shared between two threads: outputs and input gradients equal
/// those of one sample at a time bit for bit; the weight's gradient (two halves summed
/// apart) within rounding of the per-sample sum.
@Suite("Convolution samples on two threads")
struct SharedConvolutionTests {
  @Test func sharedSamplesMatchOneSampleAtATime() {
    BLASWorkspace.answerAllocationQuestions()
    let (n, c, size) = (6, 3, 24)
    let input = randomTensor([n, c, size, size], seed: 21)
    let weight = randomTensor([8, c, 3, 3], seed: 22), bias = randomTensor([8], seed: 23)
    for t in [input, weight, bias] { t.requiresGradient = true }
    let out = Tensor.convolution2D(input, weight: weight, bias: bias, padding: 1)
    let upstream = randomTensor(out.shape, seed: 24)
    (out * upstream).sum().backward()
    var weightSum = [Double](repeating: 0, count: weight.count)
    let (inSize, outSize) = (c * size * size, 8 * size * size)
    for sample in 0..<n {
      let one = Tensor(Array(input.values[(sample * inSize)..<((sample + 1) * inSize)]), shape: [1, c, size, size])
      let w = Tensor(weight.values, shape: weight.shape), b = Tensor(bias.values, shape: [8])
      for t in [one, w, b] { t.requiresGradient = true }
      let y = Tensor.convolution2D(one, weight: w, bias: b, padding: 1)
      (y * Tensor(Array(upstream.values[(sample * outSize)..<((sample + 1) * outSize)]), shape: y.shape)).sum().backward()
      #expect(y.values == Array(out.values[(sample * outSize)..<((sample + 1) * outSize)]))
      #expect(one.gradient!.values == Array(input.gradient!.values[(sample * inSize)..<((sample + 1) * inSize)]))
      for i in 0..<weight.count { weightSum[i] += Double(w.gradient!.values[i]) }
    }
    expectClose(weight.gradient!.values, weightSum.map { Float($0) }, relative: 1e-4)
  }
}
