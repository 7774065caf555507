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
    // An output or an input's gradient with fewer rows than columns is cut by columns.
    if m < n && !transposeA { #expect(!halves.cutsRows) }
    guard let step = CoreBalance.step(byRows: halves.cutsRows) else {
      // Kernels whose cut of this side stays fixed (``CoreBalance/steps``).
      #expect(halves.movableCuts == nil)
      return
    }
    let cuts = try #require(halves.movableCuts, "\(m) × \(n) × \(k): the cut should move")
    #expect(cuts.step == step)
    let length = halves.length
    let strides = BLASCall.Strides.contiguous(m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB)
    for start in [BLASCall.Start.zero, .row(UnsafePointer(bias.storage.base))] {
      let whole = Tensor(zeros: [m, n])
      BLASCall.onOneThread {
        BLASCall.multiply(
          a.storage.base, b.storage.base, whole.storage.base, m: m, n: n, k: k, transposeA: transposeA,
          transposeB: transposeB, strides: strides, start: start, oneThread: true)
      }
      for multiple in cuts.multiples {
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
    switch BLASKernels.coreName {
    case "Cooperlake", "SkylakeX", "Sandybridge", "Prescott":
      #expect(CoreBalance.steps.rows == 16 && CoreBalance.steps.columns == 16)
    case "Haswell", "Zen":
      #expect(CoreBalance.steps.rows == 12 && CoreBalance.steps.columns == nil)
    default:
      #expect(CoreBalance.steps.rows == nil && CoreBalance.steps.columns == nil)
    }
    for byRows in [true, false] {
      guard let step = CoreBalance.step(byRows: byRows) else {
        // Kernels whose cut of this side stays fixed: no product's cut of it moves.
        #expect(CoreBalance.cuts(along: 1024, across: 512, k: 784, byRows: byRows) == nil)
        continue
      }
      let cuts = try #require(CoreBalance.cuts(along: 1024, across: 512, k: 784, byRows: byRows))
      #expect(cuts.step == step)
      // 384 to 640 rows or columns of 1,024, as multiples of the step.
      #expect(cuts.multiples == (384 + step - 1) / step...640 / step)
      for length in [384, 500, 1024, 4096] {
        let range = try #require(CoreBalance.cuts(along: length, across: 512, k: 512, byRows: byRows))
        #expect(range.multiples.count >= 2)
        #expect(Double(range.multiples.lowerBound * step) >= 0.375 * Double(length))
        #expect(Double(range.multiples.upperBound * step) <= 0.625 * Double(length))
      }
      // Fewer than two cuts fit, or a part would be too small for the blocked kernels (as the
      // MLP's 64 × 512 · 512 × 512 at micro-batch 64: 192 columns of 512 make 6.3 million
      // multiply-adds).
      #expect(CoreBalance.cuts(along: 40, across: 4096, k: 4096, byRows: byRows) == nil)
      #expect(CoreBalance.cuts(along: 1024, across: 16, k: 256, byRows: byRows) == nil)
      #expect(CoreBalance.cuts(along: 512, across: 64, k: 512, byRows: byRows) == nil)
    }
    // The multiple nearest the share, within the cuts.
    let cuts = CoreBalance.Cuts(step: 16, multiples: 24...40)
    #expect(cuts.part(of: 1024, share: 0.5) == 512)
    #expect(cuts.part(of: 1024, share: 0.1) == 384)
    #expect(cuts.part(of: 1024, share: 0.9) == 640)
    #expect(CoreBalance.Cuts(step: 16, multiples: 12...20).part(of: 512, share: 0.5) == 256)
    // Twelve rows at a time: 512 · 0.5 / 12 = 21.3, so 21 · 12 rows of 512.
    #expect(CoreBalance.Cuts(step: 12, multiples: 16...26).part(of: 512, share: 0.5) == 252)
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
