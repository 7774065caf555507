#if canImport(Glibc)
  import Glibc
#endif

/// Where a large product is cut between the calling thread and the helper
/// (``BLASCall/Halves``): by how fast each core ran the products before.
///
/// A core of a virtual machine can run OpenBLAS's products a third slower than the other
/// for seconds at a time (a neighbour on the host sharing what it caches), while a loop of
/// multiply-adds on it keeps its speed. With fixed halves every product then waits for the
/// slower core. So the calling thread's share of the rows (or of the columns, in a product
/// cut by columns) follows the two cores' measured rates, within ``lowestShare`` and
/// ``highestShare``, and the cut falls at a multiple of that side's ``steps``. Such
/// cuts give the bits of the whole product on one thread, so results do not depend on where
/// the cut falls, and so not on timing; products whose cut may not move are cut in fixed
/// halves.
///
/// ``share`` is read and written under ``BLASCall``'s thread-count lock held exclusively, by
/// the thread that holds it.
enum CoreBalance {
  /// The multiples of rows and of columns a product is cut at, or `nil` for a side whose
  /// cut stays fixed: where no cut at such a multiple changes a bit (`scripts/product_cuts.c
  /// --bits`), for each kernel family measured.
  ///
  /// - Rows: 16 with `Cooperlake`, `SkylakeX`, `Sandybridge` and `Prescott`; 12 with
  ///   `Haswell` and `Zen`, whose kernels compute rows in tiles of 6 (every cut at an odd
  ///   multiple of 6, and so at a multiple of 16 that is not one of 48, changes the last
  ///   places of some values).
  /// - Columns: 16 with `Cooperlake`, `SkylakeX`, `Sandybridge` and `Prescott`. With
  ///   `Haswell` and `Zen` every cut of the columns but the one in halves changes bits (at
  ///   multiples of 8 to 128), so theirs stay in fixed halves.
  ///
  /// With families not measured both cuts stay in fixed halves.
  static let steps: (rows: Int?, columns: Int?) = {
    switch BLASKernels.coreName {
    case "Cooperlake", "SkylakeX", "Sandybridge", "Prescott": (16, 16)
    case "Haswell", "Zen": (12, nil)
    default: (nil, nil)
    }
  }()

  /// ``steps``' multiple for the rows (`byRows`) or the columns.
  static func step(byRows: Bool) -> Int? { byRows ? steps.rows : steps.columns }

  /// The cuts a product may take along one side: multiples of ``step`` rows or columns,
  /// from `multiples.lowerBound · step` to `multiples.upperBound · step`.
  struct Cuts: Equatable {
    let step: Int, multiples: ClosedRange<Int>

    /// The rows or columns the calling thread takes at `share` of `length`: the multiple of
    /// ``step`` nearest it, within ``multiples``.
    func part(of length: Int, share: Double = CoreBalance.share) -> Int {
      let multiple = Int((share * Double(length) / Double(step)).rounded())
      return Swift.min(Swift.max(multiple, multiples.lowerBound), multiples.upperBound) * step
    }
  }

  /// The calling thread's share of the rows or columns is kept within these.
  static let lowestShare = 0.375, highestShare = 0.625

  /// The fewest multiply-adds in either part: far above OpenBLAS's small-matrix and direct
  /// `sgemm` kernels (at most 7.3 million), which sum in another order than the blocked one.
  static let smallestPart = 1 << 23

  /// How far one product's measured rates move the share (the rest is the past).
  static let weightOfLatest = 0.3

  /// The calling thread's share of the rows or columns, following the measured rates.
  nonisolated(unsafe) static var share = 0.5

  /// The cuts a product may take along its side of `length` rows (`byRows`) or columns, the
  /// other side `breadth` long: `nil` where that side's cut stays fixed, when fewer than two
  /// fit within the shares, or when a part would have fewer than ``smallestPart``
  /// multiply-adds.
  static func cuts(along length: Int, across breadth: Int, k: Int, byRows: Bool) -> Cuts? {
    guard let step = step(byRows: byRows) else { return nil }
    let first = (Int((Double(length) * lowestShare).rounded(.up)) + step - 1) / step
    let last = Int(Double(length) * highestShare) / step
    guard last > first, (length - last * step) &* breadth &* k >= smallestPart,
      first * step &* breadth &* k >= smallestPart
    else { return nil }
    return Cuts(step: step, multiples: first...last)
  }

  /// `share` moved by ``weightOfLatest`` toward the calling thread's rate against both, and
  /// kept within the bounds; unchanged unless both rates are positive and finite.
  static func moved(_ share: Double, callerRate: Double, helperRate: Double) -> Double {
    guard callerRate > 0, helperRate > 0, callerRate.isFinite, helperRate.isFinite else { return share }
    let moved = share + weightOfLatest * (callerRate / (callerRate + helperRate) - share)
    return Swift.min(Swift.max(moved, lowestShare), highestShare)
  }

  /// Moves ``share`` by the rates of a product's parts: `callerPart` rows or columns in
  /// `seconds.caller` on the calling thread, `helperPart` in `seconds.helper` on the helper
  /// (or on the calling thread too, when the helper came late).
  static func record(callerPart: Int, helperPart: Int, seconds: (caller: Double, helper: Double)) {
    share = moved(
      share, callerRate: Double(callerPart) / seconds.caller, helperRate: Double(helperPart) / seconds.helper)
  }

  /// Seconds on the monotonic clock.
  static func now() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) * 1e-9
  }
}
