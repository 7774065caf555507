/// jemalloc's size classes, read through `mallctl`: every request is rounded up to one of
/// them (`arenas.bin.<i>.size` for small sizes, `arenas.lextent.<i>.size` for large ones),
/// and this is what the allocator's statistics count.
public struct SizeClasses: Sendable, Equatable {
  /// Every class, ascending.
  public let classBytes: [Int]

  /// Reads the classes of the running jemalloc.
  public init() throws(MemoryError) {
    let binCount = Int(try MemoryStatistics.read("arenas.nbins", as: UInt32.self))
    let largeCount = Int(try MemoryStatistics.read("arenas.nlextents", as: UInt32.self))
    var classes: [Int] = []
    classes.reserveCapacity(binCount + largeCount)
    for index in 0..<binCount { classes.append(try MemoryStatistics.read("arenas.bin.\(index).size", as: Int.self)) }
    for index in 0..<largeCount {
      classes.append(try MemoryStatistics.read("arenas.lextent.\(index).size", as: Int.self))
    }
    classBytes = classes
  }

  /// The bytes jemalloc reserves for a request of `requestBytes` (≥ 1): the smallest class
  /// that holds it.
  public func roundedBytes(forRequest requestBytes: Int) -> Int {
    let request = Swift.max(requestBytes, 1)
    var low = 0, high = classBytes.count
    while low < high {
      let middle = (low + high) / 2
      if classBytes[middle] < request { low = middle + 1 } else { high = middle }
    }
    return low < classBytes.count ? classBytes[low] : MemoryStatistics.sizeClassBytes(forRequest: request)
  }
}
