import GradAccum
@testable import Tensors
import Testing

#if canImport(Glibc)
  import Glibc
#endif
import _TestSupport

/// Large products whose rows or columns are cut where the cores' measured speeds say: every
/// cut they can take gives the bits of the whole product on one thread, so results do not
/// depend on timing; and the share follows the faster core within its bounds.
@Suite("Cuts that follow the cores' speeds")
struct CoreBalanceTests {
  /// Shapes of the MLP's and the transformer's products (an output `X·Wᵀ`, an input's
  /// gradient `G·W`, a weight's gradient `Gᵀ·X`), cut by rows (the first five, one of rows
  /// that are no multiple of the step) and by columns (the rest: fewer rows than columns).
  static let products: [(m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool)] = [
    (1024, 512, 784, false, true), (1000, 512, 512, false, false), (512, 784, 1024, true, false),
    (2048, 384, 128, false, true), (384, 128, 2048, true, false),
    (256, 512, 784, false, true), (200, 512, 512, false, false), (128, 384, 2048, true, false),
  ]

  @Test(arguments: products)
  func everyCutGivesTheWholeProductsBits(_ product: (m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool)) throws {
    BLASWorkspace.answerAllocationQuestions()
    // Products are cut only where a helper thread runs beside the calling one.
    guard ParallelWork.helper != nil else { return }
    let (m, n, k, transposeA, transposeB) = product
    let a = randomTensor(transposeA ? [k, m] : [m, k], seed: 31), b = randomTensor(transposeB ? [n, k] : [k, n], seed: 32)
    let bias = randomTensor([n], seed: 33)
    let halves = try #require(BLASCall.Halves(m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB))
    guard let step = CoreBalance.step else {
      // Kernels whose cut stays fixed (``CoreBalance/step``).
      #expect(halves.movableCuts == nil)
      return
    }
    let cuts = try #require(halves.movableCuts, "\(m) × \(n) × \(k): the cut should move")
    // An output or an input's gradient with fewer rows than columns is cut by columns.
    if m < n && !transposeA { #expect(!halves.cutsRows) }
    let length = halves.length
    let strides = BLASCall.Strides.contiguous(m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB)
    for start in [BLASCall.Start.zero, .row(UnsafePointer(bias.storage.base))] {
      let whole = Tensor(zeros: [m, n])
      BLASCall.onOneThread {
        BLASCall.multiply(
          a.storage.base, b.storage.base, whole.storage.base, m: m, n: n, k: k, transposeA: transposeA,
          transposeB: transposeB, strides: strides, start: start, oneThread: true)
      }
      for multiple in cuts {
        let part = multiple * step
        #expect(
          Double(part) >= CoreBalance.lowestShare * Double(length)
            && Double(part) <= CoreBalance.highestShare * Double(length))
        let cut = Tensor(zeros: [m, n])
        BLASCall.threadCountLock.exclusively {
          halves.run(a.storage.base, b.storage.base, cut.storage.base, strides: strides, start: start, callerPart: part)
        }
        // Bytes compared (the arrays in the expectation would describe half a million values).
        let same = memcmp(cut.storage.base, whole.storage.base, m * n * MemoryLayout<Float>.size) == 0
        let side = halves.cutsRows ? "rows" : "columns"
        #expect(same, "\(m) × \(n) × \(k), cut after \(part) \(side) (\(BLASKernels.coreName))")
      }
    }
  }

  @Test func cutsAreMultiplesOfTheStepWithinTheShares() throws {
    guard let step = CoreBalance.step else {
      // Kernels whose cut stays fixed: no product's cut moves.
      #expect(CoreBalance.cuts(along: 1024, across: 512, k: 784) == nil)
      return
    }
    #expect(step == 16)
    let cuts = try #require(CoreBalance.cuts(along: 1024, across: 512, k: 784))
    #expect(cuts == 24...40)  // 384, 400, …, 640 rows of 1,024
    for length in [384, 500, 1024, 4096] {
      let range = try #require(CoreBalance.cuts(along: length, across: 512, k: 512))
      #expect(range.count >= 2)
      #expect(Double(range.lowerBound * step) >= 0.375 * Double(length))
      #expect(Double(range.upperBound * step) <= 0.625 * Double(length))
    }
    // Fewer than two cuts fit, or a part would be too small for the blocked kernels (as the
    // MLP's 64 × 512 · 512 × 512 at micro-batch 64: 192 columns of 512 make 6.3 million
    // multiply-adds).
    #expect(CoreBalance.cuts(along: 40, across: 4096, k: 4096) == nil)
    #expect(CoreBalance.cuts(along: 1024, across: 16, k: 256) == nil)
    #expect(CoreBalance.cuts(along: 512, across: 64, k: 512) == nil)
    #expect(CoreBalance.part(of: 1024, within: 24...40, share: 0.5) == 512)
    #expect(CoreBalance.part(of: 512, within: 12...20, share: 0.5) == 256)
    #expect(CoreBalance.part(of: 1024, within: 24...40, share: 0.1) == 384)
    #expect(CoreBalance.part(of: 1024, within: 24...40, share: 0.9) == 640)
  }

  @Test func theShareFollowsTheFasterCoreWithinItsBounds() {
    // The calling thread's core twice as fast: a third of the way from 0.5 toward 2/3.
    #expect(abs(CoreBalance.moved(0.5, callerRate: 2, helperRate: 1) - 0.55) < 1e-12)
    #expect(abs(CoreBalance.moved(0.5, callerRate: 1, helperRate: 2) - 0.45) < 1e-12)
    #expect(CoreBalance.moved(0.5, callerRate: 3, helperRate: 3) == 0.5)
    var share = 0.5
    for _ in 0..<50 { share = CoreBalance.moved(share, callerRate: 10, helperRate: 1) }
    #expect(share == CoreBalance.highestShare)
    for _ in 0..<50 { share = CoreBalance.moved(share, callerRate: 1, helperRate: 10) }
    #expect(share == CoreBalance.lowestShare)
    // A part that took no time, or no measurement, leaves the share as it was.
    #expect(CoreBalance.moved(0.52, callerRate: .infinity, helperRate: 1) == 0.52)
    #expect(CoreBalance.moved(0.52, callerRate: 0, helperRate: 1) == 0.52)
    #expect(CoreBalance.moved(0.52, callerRate: .nan, helperRate: 1) == 0.52)
  }
}
