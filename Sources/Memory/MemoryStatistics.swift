import AllocationHooks
import CJemalloc

#if canImport(Glibc)
  import Glibc
#endif

/// Why jemalloc's statistics cannot be read.
public enum MemoryError: Error, Equatable, Sendable, CustomStringConvertible {
  /// `mallctl(name)` failed with `code`.
  case mallctlFailed(name: String, code: Int32)
  /// Allocations do not move jemalloc's counters: another allocator serves `malloc`.
  case jemallocNotInUse

  public var description: String {
    switch self {
    case .mallctlFailed(let name, let code):
      "jemalloc's mallctl(\"\(name)\") failed with error \(code); GradAccum needs jemalloc 5.3 built with statistics (Debian: libjemalloc-dev)"
    case .jemallocNotInUse:
      "allocations do not reach jemalloc, so memory cannot be measured; link libjemalloc (Debian: libjemalloc-dev) and do not preload another allocator"
    }
  }
}

/// jemalloc's view of this process's memory, through `mallctl`.
///
/// Every tensor buffer is a plain `malloc`, so these counters see all of it.
public enum MemoryStatistics {
  /// Reads a `mallctl` value of type `T`.
  static func read<T>(_ name: String, as type: T.Type) throws(MemoryError) -> T {
    var size = MemoryLayout<T>.size
    let pointer = UnsafeMutablePointer<T>.allocate(capacity: 1)
    defer { pointer.deallocate() }
    let code = mallctl(name, pointer, &size, nil, 0)
    guard code == 0 else { throw .mallctlFailed(name: name, code: code) }
    return pointer.pointee
  }

  /// Calls a `mallctl` that takes and returns nothing (`thread.peak.reset`).
  static func trigger(_ name: String) throws(MemoryError) {
    let code = mallctl(name, nil, nil, nil, 0)
    guard code == 0 else { throw .mallctlFailed(name: name, code: code) }
  }

  /// Refreshes the process-wide statistics (`epoch`), which jemalloc caches.
  static func refresh() throws(MemoryError) {
    var written: UInt64 = 1
    var read: UInt64 = 0
    var size = MemoryLayout<UInt64>.size
    let code = mallctl("epoch", &read, &size, &written, MemoryLayout<UInt64>.size)
    guard code == 0 else { throw .mallctlFailed(name: "epoch", code: code) }
  }

  /// Bytes the application has allocated and not freed (`stats.allocated`), process-wide.
  public static func allocatedBytes() throws(MemoryError) -> Int {
    try refresh()
    return Int(try read("stats.allocated", as: Int.self))
  }

  /// Bytes in active pages (`stats.active`).
  public static func activeBytes() throws(MemoryError) -> Int {
    try refresh()
    return try read("stats.active", as: Int.self)
  }

  /// Bytes in physically resident pages (`stats.resident`).
  public static func residentBytes() throws(MemoryError) -> Int {
    try refresh()
    return try read("stats.resident", as: Int.self)
  }

  /// Bytes in mapped extents (`stats.mapped`).
  public static func mappedBytes() throws(MemoryError) -> Int {
    try refresh()
    return try read("stats.mapped", as: Int.self)
  }

  /// The bytes jemalloc reserves for a request of `requestBytes` (its size class).
  public static func sizeClassBytes(forRequest requestBytes: Int) -> Int {
    Int(nallocx(Swift.max(requestBytes, 1), 0))
  }

  /// The bytes jemalloc reserved for the live block at `pointer` (its size class).
  public static func usableBytes(of pointer: UnsafeMutableRawPointer) -> Int {
    malloc_usable_size(pointer)
  }

  /// The transient peak of `body`: the most bytes alive at once on this thread during it,
  /// beyond what was alive when it started, counted to the byte (0 when jemalloc's hooks
  /// cannot be installed; ``installAllocationHooks()`` says why).
  ///
  /// jemalloc's allocation hooks see every allocation and free of the thread, including
  /// those a library such as OpenBLAS makes and releases inside one call (jemalloc's own
  /// `thread.peak` is refreshed only every 64 KiB of activity and can miss them). Scopes
  /// nest: an enclosing measurement sees everything an inner one sees.
  public static func measurePeak<Result>(
    _ body: () throws -> Result
  ) rethrows -> (result: Result, peakBytes: Int) {
    guard hooksInstalled else { return (try body(), 0) }
    var scope = allocation_peak_scope()
    allocation_peak_begin(&scope)
    let result: Result
    do {
      result = try body()
    } catch {
      _ = allocation_peak_end(&scope)
      throw error
    }
    return (result, Int(allocation_peak_end(&scope)))
  }

  static let hooksInstalled = (try? installAllocationHooks()) != nil

  /// Inside ``measurePeak(_:)``: the bytes the calling thread holds now (from an arbitrary
  /// origin) and the most it held at any moment since the previous reading.
  public static func allocationReading() -> (nowBytes: Int, intervalPeakBytes: Int) {
    let peak = Int(allocation_interval_peak())
    return (Int(allocation_net_bytes()), peak)
  }

  /// Installs GradAccum's allocation hooks in jemalloc (once per process), which
  /// ``measurePeak(_:)`` counts with.
  public static func installAllocationHooks() throws(MemoryError) {
    let code = allocation_hooks_install()
    guard code == 0 else { throw .mallctlFailed(name: "experimental.hooks.install", code: code) }
  }

  /// Bytes the calling thread has allocated since it started (`thread.allocated`); it
  /// only grows, and other threads do not move it.
  public static func threadAllocatedBytes() throws(MemoryError) -> Int {
    Int(try read("thread.allocated", as: UInt64.self))
  }

  /// Live pointers to the calling thread's cumulative allocated and deallocated byte
  /// counters (`thread.allocatedp`, `thread.deallocatedp`): reading them costs a load.
  public static func threadCounters() throws(MemoryError) -> ThreadCounters {
    ThreadCounters(
      allocated: try read("thread.allocatedp", as: UnsafeMutablePointer<UInt64>.self),
      deallocated: try read("thread.deallocatedp", as: UnsafeMutablePointer<UInt64>.self))
  }

  /// Checks that `malloc` is jemalloc's: an allocation through the process's `malloc`
  /// symbol must move this thread's `thread.allocated` counter.
  public static func verifyJemallocIsTheAllocator() throws(MemoryError) {
    typealias Allocate = @convention(c) (Int) -> UnsafeMutableRawPointer?
    // Looked up at run time, so the compiler cannot see (and elide) the allocation, and
    // so the check exercises the symbol every library of the process binds to.
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc") else { throw .jemallocNotInUse }
    let allocate = unsafeBitCast(symbol, to: Allocate.self)
    let probeBytes = 1 << 22
    let before = try threadAllocatedBytes()
    guard let block = allocate(probeBytes) else { throw .jemallocNotInUse }
    defer { free(block) }
    let during = try threadAllocatedBytes()
    guard during - before >= probeBytes else { throw .jemallocNotInUse }
  }
}

/// The calling thread's jemalloc counters, read without a call into the allocator.
/// Valid on the thread that made them only.
public struct ThreadCounters: @unchecked Sendable {
  let allocated: UnsafeMutablePointer<UInt64>
  let deallocated: UnsafeMutablePointer<UInt64>

  /// Bytes the thread has allocated and not freed (can be negative when it frees what
  /// other threads allocated).
  public var netBytes: Int { Int(truncatingIfNeeded: allocated.pointee &- deallocated.pointee) }
}
