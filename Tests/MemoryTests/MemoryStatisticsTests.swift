import Foundation
import Memory
import Testing
import _TestSupport

#if canImport(Glibc)
  import Glibc
#endif

@Suite("jemalloc statistics")
struct MemoryStatisticsTests {
  @Test(.measuresMemory) func jemallocServesMalloc() throws {
    try MemoryStatistics.verifyJemallocIsTheAllocator()
  }

  @Test(.measuresMemory) func allocationsMoveTheProcessCounters() throws {
    let before = try MemoryStatistics.allocatedBytes()
    let block = malloc(8 << 20)!
    block.storeBytes(of: 1, as: UInt8.self)
    let during = try MemoryStatistics.allocatedBytes()
    free(block)
    // Process-wide: tests on other threads may free memory meanwhile, so allow slack.
    #expect(during - before >= 7 << 20)
    #expect(try MemoryStatistics.residentBytes() > 0)
    #expect(try MemoryStatistics.mappedBytes() >= MemoryStatistics.activeBytes())
  }

  @Test(.measuresMemory) func threadCounterOnlySeesThisThread() throws {
    let before = try MemoryStatistics.threadAllocatedBytes()
    let block = malloc(5 << 20)!
    block.storeBytes(of: 1, as: UInt8.self)
    free(block)
    #expect(try MemoryStatistics.threadAllocatedBytes() - before >= 5 << 20)
  }

  @Test(.measuresMemory) func threadPeakSeesATransientBlock() throws {
    let (_, peak) = try MemoryStatistics.measurePeak {
      let block = malloc(3 << 20)!
      block.storeBytes(of: 1, as: UInt8.self)
      free(block)
    }
    #expect(peak == MemoryStatistics.sizeClassBytes(forRequest: 3 << 20))
  }

  /// A block that C code mallocs and frees between two other allocations (as OpenBLAS does
  /// inside a call) is counted to the byte, however small, at whatever moment it lives.
  @Test(.measuresMemory, arguments: [48, 4000, 48_000, 70_000])
  func peakSeesABlockAllocatedAndFreedInsideACFunction(blockBytes: Int) throws {
    typealias Allocate = @convention(c) (Int) -> UnsafeMutableRawPointer?
    typealias Release = @convention(c) (UnsafeMutableRawPointer?) -> Void
    // Through the process's C symbols, so the compiler can neither see nor elide them.
    let allocate = unsafeBitCast(dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc")!, to: Allocate.self)
    let release = unsafeBitCast(dlsym(UnsafeMutableRawPointer(bitPattern: 0), "free")!, to: Release.self)
    let firstBytes = 100_000, secondBytes = 100_000
    let (_, peak) = MemoryStatistics.measurePeak {
      let first = allocate(firstBytes)
      release(first)
      let inner = allocate(blockBytes)  // alive only here, with nothing else
      release(inner)
      let second = allocate(secondBytes)
      release(second)
    }
    let expected = max(
      MemoryStatistics.sizeClassBytes(forRequest: firstBytes), MemoryStatistics.sizeClassBytes(forRequest: blockBytes),
      MemoryStatistics.sizeClassBytes(forRequest: secondBytes))
    #expect(peak == expected)
    // The same block on top of a live one: the peak is their sum.
    let (_, stacked) = MemoryStatistics.measurePeak {
      let first = allocate(firstBytes)
      let inner = allocate(blockBytes)
      release(inner)
      release(first)
    }
    #expect(
      stacked
        == MemoryStatistics.sizeClassBytes(forRequest: firstBytes)
        + MemoryStatistics.sizeClassBytes(forRequest: blockBytes))
  }

  @Test(.measuresMemory) func nestedMeasurementsEachSeeTheirOwnPeak() throws {
    let (inner, outer) = MemoryStatistics.measurePeak {
      let held = malloc(1 << 20)!
      defer { free(held) }
      return MemoryStatistics.measurePeak {
        let block = malloc(64 << 10)!
        free(block)
      }.peakBytes
    }
    #expect(inner == MemoryStatistics.sizeClassBytes(forRequest: 64 << 10))
    #expect(outer == MemoryStatistics.sizeClassBytes(forRequest: 1 << 20) + inner)
  }

  @Test(.measuresMemory) func otherThreadsAreNotCounted() throws {
    let (_, peak) = MemoryStatistics.measurePeak {
      let thread = Thread {
        let block = malloc(8 << 20)!
        block.storeBytes(of: 1, as: UInt8.self)
        free(block)
      }
      thread.start()
      while !thread.isFinished { usleep(100) }
    }
    #expect(peak < 1 << 20)
  }

  @Test(.measuresMemory, arguments: [1, 8, 9, 100, 4097, 20_000, 1 << 20])
  func sizeClassesRoundUp(requestBytes: Int) {
    let rounded = MemoryStatistics.sizeClassBytes(forRequest: requestBytes)
    #expect(rounded >= requestBytes)
    #expect(rounded < requestBytes * 2 || requestBytes < 16)
    let block = malloc(requestBytes)!
    #expect(MemoryStatistics.usableBytes(of: block) == rounded)
    free(block)
  }
}
