#if canImport(Glibc)
  import Glibc
#endif

/// Where a large product's rows are cut between the calling thread and the helper
/// (``BLASCall/Halves``): by how fast each core ran the products before.
///
/// A core of a virtual machine can run OpenBLAS's products a third slower than the other
/// for seconds at a time (a neighbour on the host sharing what it caches), while a loop of
/// multiply-adds on it keeps its speed. With fixed halves every product then waits for the
/// slower core. So the calling thread's share of the rows follows the two cores' measured
/// rates, within ``lowestShare`` and ``highestShare``, and the rows are cut at a multiple
/// of ``rowStep``. Such cuts give the bits of the whole product on one thread, so results
/// do not depend on where the cut falls, and so not on timing; products whose cut may not
/// move are cut in fixed halves.
///
/// Read and written under ``BLASCall``'s thread-count lock held exclusively, by the thread
/// that holds it (``helperSeconds`` by the helper working for that thread).
enum CoreBalance {
  /// Rows are cut at multiples of this many, or `nil` where the cut stays fixed: 16 with
  /// the kernel families whose row tile divides 16, where no cut at a multiple of 16 changes
  /// a bit (`scripts/product_cuts.c --bits`: `Cooperlake`, `SkylakeX`, `Sandybridge`,
  /// `Prescott`). `Haswell` and `Zen` compute rows in tiles of 6: there every such cut but
  /// the multiples of 48 changes the last places of some values, and multiples of 48 would
  /// leave equal cores with parts up to 6% apart (240 and 272 of 512 rows), so there, as
  /// with families not measured, the cut stays in fixed halves.
  static let rowStep: Int? = {
    switch BLASKernels.coreName {
    case "Cooperlake", "SkylakeX", "Sandybridge", "Prescott": 16
    default: nil
    }
  }()

  /// The calling thread's share of the rows is kept within these.
  static let lowestShare = 0.375, highestShare = 0.625

  /// The fewest multiply-adds in either part: far above OpenBLAS's small-matrix and direct
  /// `sgemm` kernels (at most 7.3 million), which sum in another order than the blocked one.
  static let smallestPart = 1 << 23

  /// How far one product's measured rates move the share (the rest is the past).
  static let weightOfLatest = 0.3

  /// The calling thread's share of the rows, following the measured rates.
  nonisolated(unsafe) static var share = 0.5

  /// The seconds the last product's first part took, on the calling thread.
  nonisolated(unsafe) static var callerSeconds = 0.0
  /// The seconds its second part took, on the helper (or on the calling thread too, when the
  /// helper came late); written before the helper reports the part done.
  nonisolated(unsafe) static var helperSeconds = 0.0

  /// The cuts a product of `m` rows may take, as multiples of ``rowStep`` (the first and
  /// the last of them): `nil` where the cut stays fixed, when fewer than two fit within the
  /// shares, or when a part would have fewer than ``smallestPart`` multiply-adds.
  static func cuts(m: Int, n: Int, k: Int) -> ClosedRange<Int>? {
    guard let rowStep else { return nil }
    let first = (Int((Double(m) * lowestShare).rounded(.up)) + rowStep - 1) / rowStep
    let last = Int(Double(m) * highestShare) / rowStep
    guard last > first, (m - last * rowStep) &* n &* k >= smallestPart, first * rowStep &* n &* k >= smallestPart
    else { return nil }
    return first...last
  }

  /// The rows the calling thread takes at `share`: the multiple of ``rowStep`` nearest it,
  /// within `cuts` (from ``cuts(m:n:k:)``).
  static func rows(of m: Int, within cuts: ClosedRange<Int>, share: Double = share) -> Int {
    let step = rowStep ?? 1
    let multiple = Int((share * Double(m) / Double(step)).rounded())
    return Swift.min(Swift.max(multiple, cuts.lowerBound), cuts.upperBound) * step
  }

  /// `share` moved by ``weightOfLatest`` toward the calling thread's rate against both, and
  /// kept within the bounds; unchanged unless both rates are positive and finite.
  static func moved(_ share: Double, callerRate: Double, helperRate: Double) -> Double {
    guard callerRate > 0, helperRate > 0, callerRate.isFinite, helperRate.isFinite else { return share }
    let moved = share + weightOfLatest * (callerRate / (callerRate + helperRate) - share)
    return Swift.min(Swift.max(moved, lowestShare), highestShare)
  }

  /// Moves ``share`` by the rates of the last product's parts (``callerSeconds``,
  /// ``helperSeconds``).
  static func record(callerRows: Int, helperRows: Int) {
    share = moved(
      share, callerRate: Double(callerRows) / callerSeconds, helperRate: Double(helperRows) / helperSeconds)
  }

  /// Seconds on the monotonic clock.
  static func now() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) * 1e-9
  }
}
